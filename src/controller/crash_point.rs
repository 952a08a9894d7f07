//! Named points where a test can make the operator die, as a node failure would kill it: between
//! recording an intent and carrying it out. `LIFEBOAT_CRASH_AT=<point>` makes the process exit at once
//! (no graceful shutdown, the leader Lease is not released) when it reaches that point. Unset, each
//! point costs one comparison against a value read once.

use std::sync::OnceLock;

/// The variable naming the point to die at (for tests of restart safety; never set it in production).
pub const CRASH_AT_ENV: &str = "LIFEBOAT_CRASH_AT";

/// Exits the process with status 137 (as SIGKILL would) when `point` is the one named by
/// `LIFEBOAT_CRASH_AT`.
pub fn reached(point: &str) {
    static CRASH_AT: OnceLock<Option<String>> = OnceLock::new();
    let crash_at = CRASH_AT.get_or_init(|| std::env::var(CRASH_AT_ENV).ok().filter(|p| !p.is_empty()));
    if crash_at.as_deref() == Some(point) {
        eprintln!("{CRASH_AT_ENV}={point}: exiting at this point as a killed operator would");
        std::process::exit(137);
    }
}
