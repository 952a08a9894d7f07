//! Per-object backoff after failed reconciles: the first retry comes soon, repeated failures of the same
//! object wait longer (doubling up to a cap), and a success starts over. One object failing (a
//! namespace whose quota refuses Jobs) then costs little, while a transient API error heals in seconds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The first retry after a failure.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// A failure this long after the previous one starts the count over (the object was healthy between).
const FORGET_AFTER: Duration = Duration::from_secs(600);

pub struct ErrorBackoff {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Default for ErrorBackoff {
    fn default() -> Self {
        Self {
            failures: Mutex::new(HashMap::new()),
        }
    }
}

impl ErrorBackoff {
    /// Records a failure of `key` and returns how long to wait before retrying it, at most `cap`.
    pub fn next_delay(&self, key: &str, cap: Duration) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Entries of objects that stopped failing (or were deleted) expire here rather than pile up.
        failures.retain(|_, (_, at)| at.elapsed() < FORGET_AFTER);
        let entry = failures.entry(key.to_owned()).or_insert((0, Instant::now()));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now();
        delay_after(entry.0, cap)
    }

    /// A reconcile of `key` succeeded: its next failure waits the shortest time again.
    pub fn succeeded(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(key);
    }
}

/// 1 s, 2 s, 4 s, … for the 1st, 2nd, 3rd consecutive failure, never more than `cap`.
pub fn delay_after(consecutive_failures: u32, cap: Duration) -> Duration {
    let doublings = consecutive_failures.saturating_sub(1).min(20);
    FIRST_RETRY.saturating_mul(1 << doublings).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let cap = Duration::from_secs(300);
        let delays: Vec<u64> = (1..=11).map(|n| delay_after(n, cap).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(delay_after(u32::MAX, cap), cap);
        assert_eq!(delay_after(5, Duration::from_secs(5)), Duration::from_secs(5));
    }

    #[test]
    fn each_object_backs_off_on_its_own_and_a_success_starts_over() {
        let backoff = ErrorBackoff::default();
        let cap = Duration::from_secs(300);
        assert_eq!(backoff.next_delay("a", cap), Duration::from_secs(1));
        assert_eq!(backoff.next_delay("a", cap), Duration::from_secs(2));
        assert_eq!(backoff.next_delay("b", cap), Duration::from_secs(1));
        assert_eq!(backoff.next_delay("a", cap), Duration::from_secs(4));
        backoff.succeeded("a");
        assert_eq!(backoff.next_delay("a", cap), Duration::from_secs(1));
    }
}
