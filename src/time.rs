//! Timestamps: RFC 3339 UTC with milliseconds (`2026-11-21T10:15:30.123Z`), the one format records use.

use time::{format_description::FormatItem, macros::format_description, OffsetDateTime};

const RFC3339_MILLIS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// The current UTC time.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Formats a UTC instant as RFC 3339 with milliseconds and `Z`.
pub fn format(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(RFC3339_MILLIS)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00.000Z"))
}

/// The current UTC time, formatted with [`format`].
pub fn now_rfc3339() -> String {
    format(now())
}

/// Parses any RFC 3339 timestamp.
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The current time as Unix milliseconds.
pub fn now_ms() -> i64 {
    unix_ms(now())
}

/// The instant of a Unix timestamp in milliseconds.
pub fn from_unix_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_millis_and_z() {
        let t = from_unix_ms(1_763_720_130_123);
        assert_eq!(format(t), "2025-11-21T10:15:30.123Z");
        assert_eq!(parse(&format(t)), Some(t));
    }
}
