//! Appointments: a visit at a set time. Its links open 15 minutes before
//! the start and expire 30 minutes after the planned end, so a link sent
//! days ahead cannot be used early, nor kept for later.

use crate::error::{Error, Result};

/// Links open this long before the appointment.
pub const OPENS_BEFORE_SECS: u64 = 15 * 60;
/// And stay usable this long after its planned end (a visit that runs over).
pub const GRACE_AFTER_SECS: u64 = 30 * 60;

/// An appointment's times, checked against `now` (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub starts_at: u64,
    pub ends_at: u64,
    /// When its links start to work.
    pub opens_at: u64,
    /// When its links stop working.
    pub expires_at: u64,
}

impl Slot {
    pub fn new(starts_at: u64, duration_min: u64, now: u64) -> Result<Slot> {
        if !(5..=240).contains(&duration_min) {
            return Err(Error::bad_request("duration_min must be between 5 and 240"));
        }
        let ends_at = starts_at.saturating_add(duration_min * 60);
        let expires_at = ends_at.saturating_add(GRACE_AFTER_SECS);
        if expires_at <= now {
            return Err(Error::bad_request("the appointment is in the past"));
        }
        if starts_at > now + 366 * 86_400 {
            return Err(Error::bad_request(
                "the appointment is more than a year ahead",
            ));
        }
        Ok(Slot {
            starts_at,
            ends_at,
            opens_at: starts_at.saturating_sub(OPENS_BEFORE_SECS),
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_opens_before_and_expires_after() {
        let now = 1_000_000;
        let s = Slot::new(now + 3600, 30, now).expect("a slot");
        assert_eq!(s.opens_at, now + 3600 - 900);
        assert_eq!(s.ends_at, now + 3600 + 1800);
        assert_eq!(s.expires_at, s.ends_at + 1800);
    }

    #[test]
    fn bad_slots_are_refused() {
        let now = 1_000_000_000;
        assert!(Slot::new(now, 4, now).is_err());
        assert!(Slot::new(now, 241, now).is_err());
        assert!(Slot::new(now - 7200, 30, now).is_err(), "in the past");
        assert!(Slot::new(now - 3000, 30, now).is_ok(), "running over");
        assert!(Slot::new(now + 367 * 86_400, 30, now).is_err());
    }
}
