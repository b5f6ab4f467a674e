//! Dates as the record prints them: RFC 3339 in UTC for FHIR, and
//! `dd/mm/yyyy` and `HH:MM` in Vietnam time (UTC+7 all year: Vietnam keeps
//! no daylight saving, so a fixed offset is exact and no time zone
//! database is needed).

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};

const VIETNAM: Offset = Offset::constant(7);

/// Unix seconds as an instant. A time beyond what a calendar date can hold
/// (±9999 years: no record has one) prints as the nearest that can.
fn instant(unix: i64) -> Timestamp {
    Timestamp::from_second(unix).unwrap_or(if unix < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// The civil date and time in Vietnam at `unix`.
pub fn vietnam(unix: i64) -> DateTime {
    TimeZone::fixed(VIETNAM).to_datetime(instant(unix))
}

/// RFC 3339 in UTC, e.g. `2025-11-25T08:40:00Z` (a FHIR `instant`/`dateTime`).
pub fn rfc3339(unix: i64) -> String {
    instant(unix).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `dd/mm/yyyy` in Vietnam time.
pub fn vn_date(unix: i64) -> String {
    vietnam(unix).strftime("%d/%m/%Y").to_string()
}

/// `HH:MM` in Vietnam time.
pub fn vn_time(unix: i64) -> String {
    vietnam(unix).strftime("%H:%M").to_string()
}

/// `dd/mm/yyyy HH:MM` in Vietnam time.
pub fn vn_datetime(unix: i64) -> String {
    vietnam(unix).strftime("%d/%m/%Y %H:%M").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2025-11-25 08:40:00 UTC = 15:40 in Vietnam.
    const T0: i64 = 1_764_060_000;

    #[test]
    fn calendar_and_vietnam_time() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(T0), "2025-11-25T08:40:00Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(vn_datetime(T0), "25/11/2025 15:40");
        // 17:00 UTC is already the next day in Vietnam.
        assert_eq!(vn_datetime(T0 + 30_000), "26/11/2025 00:00");
        assert_eq!(vn_date(1_767_200_399), "31/12/2025");
        assert_eq!(vn_date(1_767_200_400), "01/01/2026");
        assert_eq!(vn_time(T0), "15:40");
    }
}
