//! On-call queues and their rosters: a queue is a specialty at a facility
//! ("Nội khoa — BVĐK tỉnh"); a roster says which staff are on call for it
//! and when, in Vietnam's time (UTC+7, no daylight saving). Who is waiting
//! and who is available right now is live state, owned by the signaling hub.

use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone};
use serde::Serialize;

use crate::directory::StaffRole;
use crate::error::{Error, Result};
use crate::ids::{FacilityId, QueueId, StaffId};

/// Vietnam has one time zone and no daylight saving: rosters are in UTC+7.
pub const VIETNAM_OFFSET_SECS: i64 = 7 * 3600;

/// Vietnam's time zone, for rosters and for dates people read.
pub fn vietnam() -> TimeZone {
    TimeZone::fixed(Offset::constant(7))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Queue {
    pub id: QueueId,
    pub facility_id: FacilityId,
    pub facility_name: String,
    pub specialty: String,
    pub name: String,
}

/// One on-call window: a weekday (0 = Monday … 6 = Sunday, or every day)
/// and minutes since local midnight, `start < end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RosterEntry {
    pub id: i64,
    pub queue_id: QueueId,
    pub staff_id: StaffId,
    pub weekday: Option<u8>,
    pub start_min: u16,
    pub end_min: u16,
}

impl RosterEntry {
    /// Whether the window covers the Unix time `at`.
    pub fn covers(&self, at: i64) -> bool {
        let Ok(t) = Timestamp::from_second(at) else {
            return false;
        };
        let local = t.to_zoned(vietnam());
        let weekday = local.weekday().to_monday_zero_offset() as u8;
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        self.weekday.is_none_or(|w| w == weekday)
            && self.start_min <= minute
            && minute < self.end_min
    }
}

/// A window to add to a roster, parsed: weekday 0–6 or every day, `start`
/// and `end` as `HH:MM` with `start < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewWindow {
    pub weekday: Option<u8>,
    pub start_min: u16,
    pub end_min: u16,
}

impl NewWindow {
    pub fn parse(weekday: Option<u8>, start: &str, end: &str) -> Result<NewWindow> {
        if weekday.is_some_and(|w| w > 6) {
            return Err(Error::bad_request("weekday is 0 (Monday) to 6 (Sunday)"));
        }
        let (Some(start_min), Some(end_min)) = (parse_hhmm(start), parse_hhmm(end)) else {
            return Err(Error::bad_request("start and end are times like 07:30"));
        };
        if start_min >= end_min {
            return Err(Error::bad_request("start must be before end"));
        }
        Ok(NewWindow {
            weekday,
            start_min,
            end_min,
        })
    }
}

/// "07:30" → 450.
fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

/// Staff are rostered only on their own facility's queues.
pub fn may_be_rostered(staff_facility: FacilityId, queue: &Queue) -> Result<()> {
    if staff_facility != queue.facility_id {
        return Err(Error::bad_request(
            "staff can be rostered only on their own facility's queues",
        ));
    }
    Ok(())
}

/// Whether a staff member of this role is offered the queue's patients
/// (doctors; nurses and coordinators look after the queue).
pub fn takes_patients(role: StaffRole) -> bool {
    role == StaffRole::Doctor
}

/// A queue's default name: "Nội khoa — BVĐK tỉnh".
pub fn default_name(specialty: &str, facility_name: &str) -> String {
    format!("{specialty} — {facility_name}")
}

/// A phone number as staff see it in the ticket list: enough to tell two
/// apart, not enough to call.
pub fn masked_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().filter(|c| !c.is_whitespace()).collect();
    let keep = chars.len().min(3);
    let hidden = chars.len() - keep;
    let mut out: String = std::iter::repeat_n('•', hidden.min(8)).collect();
    out.extend(&chars[hidden..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(weekday: Option<u8>, start: &str, end: &str) -> RosterEntry {
        RosterEntry {
            id: 1,
            queue_id: QueueId(1),
            staff_id: StaffId(1),
            weekday,
            start_min: parse_hhmm(start).unwrap(),
            end_min: parse_hhmm(end).unwrap(),
        }
    }

    #[test]
    fn staff_see_only_the_end_of_a_phone_number() {
        assert_eq!(masked_phone("0912 345 678"), "•••••••678");
        assert_eq!(masked_phone("+84912345678"), "••••••••678");
        assert_eq!(masked_phone("12"), "12");
        assert_eq!(masked_phone(""), "");
    }

    #[test]
    fn windows_are_in_vietnam_time() {
        // 2026-11-25 (a Wednesday) 01:30 UTC = 08:30 in Hà Nội.
        let t = 1795570200;
        assert!(window(None, "07:00", "17:00").covers(t));
        assert!(
            window(Some(2), "08:30", "08:31").covers(t),
            "Wednesday is 2"
        );
        assert!(!window(Some(3), "07:00", "17:00").covers(t));
        assert!(!window(None, "08:31", "17:00").covers(t));
        assert!(
            !window(None, "00:00", "08:30").covers(t),
            "end is exclusive"
        );
        // 23:30 local the day before is still Tuesday.
        assert!(window(Some(1), "23:00", "24:00").covers(t - 9 * 3600));
    }

    #[test]
    fn times_parse_strictly() {
        assert_eq!(parse_hhmm("07:30"), Some(450));
        assert_eq!(parse_hhmm("24:00"), Some(1440));
        for bad in ["24:01", "7", "07:60", "ab:cd", "-1:00", ""] {
            assert_eq!(parse_hhmm(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_windows_are_refused() {
        assert!(NewWindow::parse(Some(7), "07:00", "08:00").is_err());
        assert!(NewWindow::parse(None, "7h", "08:00").is_err());
        assert!(NewWindow::parse(None, "09:00", "08:00").is_err());
        assert!(NewWindow::parse(None, "23:00", "24:00").is_ok());
    }
}
