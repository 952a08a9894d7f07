//! Durations written the way people write them in runbooks and Kubernetes manifests: `30s`, `15m`, `24h`,
//! `7d`, `1h30m`. The same grammar is enforced by the CRD schema (a pattern plus a CEL rule for
//! positivity), so a value the apiserver accepted always parses here.

use std::fmt;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// The regular expression the apiserver checks (RE2 syntax, anchored).
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h|d))+$";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("duration {0:?} is empty; write it like 30s, 15m, 24h or 1h30m")]
    Empty(String),
    #[error("duration {input:?}: {problem}; write it like 30s, 15m, 24h or 1h30m")]
    Malformed { input: String, problem: &'static str },
    #[error("duration {0:?} must be greater than zero")]
    NotPositive(String),
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parses `1h30m`-style durations. Units: ms, s, m, h, d. Zero is rejected: every duration in the
/// Lifeboat API (RPO, RTO, intervals, timeouts) is meaningless at zero.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    if input.is_empty() {
        return Err(DurationError::Empty(input.to_owned()));
    }
    let malformed = |problem| DurationError::Malformed {
        input: input.to_owned(),
        problem,
    };
    let mut total_ms: u64 = 0;
    let mut rest = input;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(malformed("expected a number before each unit"));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::Overflow(input.to_owned()))?;
        rest = &rest[digits..];
        let (unit_ms, unit_len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            match rest.as_bytes().first() {
                Some(b's') => (1_000, 1),
                Some(b'm') => (60_000, 1),
                Some(b'h') => (3_600_000, 1),
                Some(b'd') => (86_400_000, 1),
                _ => return Err(malformed("each number needs a unit: ms, s, m, h or d")),
            }
        };
        rest = &rest[unit_len..];
        total_ms = value
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| DurationError::Overflow(input.to_owned()))?;
    }
    if total_ms == 0 {
        return Err(DurationError::NotPositive(input.to_owned()));
    }
    Ok(Duration::from_millis(total_ms))
}

/// A measured duration as the status records it (`format_duration`'s output): unlike a spec value it
/// may be zero, e.g. the age of a snapshot taken the moment a drill started.
pub fn parse_measured(input: &str) -> Option<Duration> {
    match parse_duration(input) {
        Ok(duration) => Some(duration),
        Err(DurationError::NotPositive(_)) => Some(Duration::ZERO),
        Err(_) => None,
    }
}

/// Formats a duration the way `kubectl` users read it: `1h2m3s`, `45s`, `250ms`.
pub fn format_duration(duration: Duration) -> String {
    let total_ms = duration.as_millis();
    if total_ms < 1_000 {
        return format!("{total_ms}ms");
    }
    let mut seconds = duration.as_secs();
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds >= size {
            out.push_str(&format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    if seconds > 0 || out.is_empty() {
        out.push_str(&format!("{seconds}s"));
    }
    out
}

/// A positive duration in the API, kept as the user wrote it so that `kubectl get -o yaml` shows the
/// same text that was applied (and GitOps tools see no drift).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DurationString(pub String);

impl DurationString {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn parse(&self) -> Result<Duration, DurationError> {
        parse_duration(&self.0)
    }
}

impl fmt::Display for DurationString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for DurationString {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DurationString".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A positive duration such as 30s, 15m, 24h, 7d or 1h30m (units: ms, s, m, h, d).",
            "pattern": DURATION_PATTERN,
            "maxLength": 32,
            "x-kubernetes-validations": [{
                "rule": "!self.matches('^(0+(ms|s|m|h|d))+$')",
                "message": "must be greater than zero, e.g. 30s, 15m or 24h"
            }]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_runbooks_use() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_measured("0ms"), Some(Duration::ZERO));
        assert_eq!(parse_measured("5s854ms"), Some(Duration::from_millis(5854)));
        assert_eq!(parse_measured("soon"), None);
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("0h30m"), Ok(Duration::from_secs(1_800)));
    }

    #[test]
    fn rejects_what_the_schema_rejects() {
        assert!(matches!(parse_duration(""), Err(DurationError::Empty(_))));
        assert!(matches!(parse_duration("0s"), Err(DurationError::NotPositive(_))));
        assert!(matches!(
            parse_duration("0h0m"),
            Err(DurationError::NotPositive(_))
        ));
        for bad in ["30", "h", "1.5h", "-5m", "5 m", "5w", "1h 30m", "m5"] {
            assert!(
                matches!(parse_duration(bad), Err(DurationError::Malformed { .. })),
                "{bad:?} should be malformed"
            );
        }
        assert!(matches!(
            parse_duration("99999999999999999999d"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn error_messages_say_how_to_write_it() {
        let message = parse_duration("90").unwrap_err().to_string();
        assert!(message.contains("30s, 15m, 24h"), "{message}");
    }

    #[test]
    fn formats_round_trip() {
        for text in ["45s", "1h2m3s", "2d", "250ms", "1h30m"] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(
                parse_duration(&format_duration(parsed)).unwrap(),
                parsed,
                "{text}"
            );
        }
        assert_eq!(format_duration(Duration::from_secs(5_400)), "1h30m");
    }
}
