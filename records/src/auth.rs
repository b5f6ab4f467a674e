//! Staff sessions: how long one lasts, when it has ended, and what a live
//! one says about its holder. The cookie that carries it is `server`'s;
//! the rows are `store`'s.

use crate::directory::Profile;

/// A session's longest life: a working shift.
pub const SESSION_TTL_SECS: i64 = 12 * 3600;
/// A session unused this long has ended.
pub const SESSION_IDLE_SECS: i64 = 3600;
/// `last_seen_at` is written at most this often per session.
pub const LAST_SEEN_GRANULARITY_SECS: i64 = 60;

/// Whether a session that expires at `expires_at` and was last used at
/// `last_seen` is still live at `now`.
pub fn session_live(now: i64, expires_at: i64, last_seen: i64) -> bool {
    now < expires_at && now < last_seen + SESSION_IDLE_SECS
}

/// Whether a use at `now` is worth writing down as the session's last use.
pub fn touch_due(now: i64, last_seen: i64) -> bool {
    now - last_seen >= LAST_SEEN_GRANULARITY_SECS
}

/// When a session opened at `now` expires.
pub fn session_expiry(now: i64) -> i64 {
    now + SESSION_TTL_SECS
}

/// A signed-in staff member, from their session.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub profile: Profile,
    pub session_expires_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_at_its_expiry_or_after_an_idle_hour() {
        let t = 1_000_000;
        let exp = session_expiry(t);
        assert_eq!(exp, t + 12 * 3600);
        assert!(session_live(t, exp, t));
        assert!(session_live(t + 3599, exp, t));
        assert!(!session_live(t + 3600, exp, t), "idle an hour");
        assert!(session_live(exp - 1, exp, exp - 10));
        assert!(!session_live(exp, exp, exp - 10), "expired");
        assert!(!touch_due(t + 59, t));
        assert!(touch_due(t + 60, t));
    }
}
