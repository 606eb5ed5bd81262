//! Time, defined once for both tools: wall-clock nanoseconds since the Unix epoch
//! ([`now_unix_ns`]) and RFC 3339 in both directions ([`rfc3339_ns`], [`parse_unix_ns`]),
//! all on the `time` crate.
use std::time::{SystemTime, UNIX_EPOCH};

use time::{
    OffsetDateTime, UtcOffset,
    format_description::{BorrowedFormatItem, well_known::Rfc3339},
    macros::format_description,
};

/// RFC 3339 in UTC with all nine fractional digits, so timestamps of one file sort as
/// strings and line up in a terminal.
const RFC3339_NANOS: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");

/// Wall-clock nanoseconds since the Unix epoch (0 if the clock is set before 1970).
pub fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// RFC 3339 with nanoseconds, in UTC, for Unix nanoseconds:
/// `2026-12-06T21:19:04.000000001Z`.
pub fn rfc3339_ns(unix_ns: u64) -> String {
    // u64 nanoseconds end in 2554, well inside the `time` crate's range.
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ns))
        .map(|t| t.to_offset(UtcOffset::UTC))
        .ok()
        .and_then(|t| t.format(RFC3339_NANOS).ok())
        .unwrap_or_else(|| format!("@{unix_ns}ns"))
}

/// RFC 3339 in UTC, whole seconds, for Unix seconds (certificate validity):
/// `2026-12-06T21:19:04Z`. Times before 1970 read as the epoch.
pub fn rfc3339_s(unix_s: i64) -> String {
    rfc3339_ns(
        u64::try_from(unix_s.max(0))
            .unwrap_or(0)
            .saturating_mul(1_000_000_000),
    )
    .split_once('.')
    .map_or_else(String::new, |(whole, _)| format!("{whole}Z"))
}

/// Parses an RFC 3339 timestamp (any offset, any number of fractional digits) into Unix
/// nanoseconds; `None` when malformed or before 1970.
pub fn parse_unix_ns(timestamp: &str) -> Option<u64> {
    let t = OffsetDateTime::parse(timestamp, &Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_nine_digits_in_utc_and_parses_back() {
        assert_eq!(rfc3339_ns(0), "1970-01-01T00:00:00.000000000Z");
        let ns = 1_796_591_944_123_456_789;
        let s = rfc3339_ns(ns);
        assert_eq!(s, "2026-12-06T21:19:04.123456789Z");
        assert_eq!(parse_unix_ns(&s), Some(ns));
    }

    #[test]
    fn parses_offsets_and_short_fractions_refuses_garbage() {
        assert_eq!(
            parse_unix_ns("2026-12-06T22:19:04.5+01:00"),
            Some(1_796_591_944_500_000_000)
        );
        assert_eq!(parse_unix_ns("1969-12-31T23:59:59Z"), None);
        assert_eq!(parse_unix_ns("yesterday"), None);
        assert_eq!(parse_unix_ns(""), None);
    }

    #[test]
    fn whole_seconds_for_certificates() {
        assert_eq!(rfc3339_s(1_796_591_944), "2026-12-06T21:19:04Z");
        assert_eq!(rfc3339_s(-5), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn now_is_after_this_code_was_written() {
        assert!(now_unix_ns() > 1_780_000_000_000_000_000);
    }
}
