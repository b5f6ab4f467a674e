//! Staff sign-in rows: what a username's credentials are, sessions (only a
//! token's SHA-256 is stored), and the last TOTP step accepted, so that a
//! code is never taken twice.

use rusqlite::{Connection, OptionalExtension, params};
use tuxa_records::StaffId;
use tuxa_records::auth::{SESSION_IDLE_SECS, SignedIn, session_expiry, session_live, touch_due};
use tuxa_records::directory::Username;

use crate::directory::profile;

/// What the store knows about a username, for checking a sign-in. The
/// TOTP secret is as stored: sealed (the caller opens it).
pub struct StoredCredentials {
    pub id: StaffId,
    pub password_hash: String,
    pub totp_sealed: Vec<u8>,
    pub totp_last_step: u64,
    pub disabled: bool,
}

pub fn credentials(
    c: &Connection,
    username: &Username,
) -> rusqlite::Result<Option<StoredCredentials>> {
    c.query_row(
        "SELECT id, password_hash, totp_secret, totp_last_step, disabled FROM staff WHERE username = ?1",
        [username],
        |r| {
            let last: i64 = r.get(3)?;
            Ok(StoredCredentials {
                id: r.get(0)?,
                password_hash: r.get(1)?,
                totp_sealed: r.get(2)?,
                totp_last_step: u64::try_from(last).unwrap_or(0),
                disabled: r.get(4)?,
            })
        },
    )
    .optional()
}

/// The session for `token_hash` at `now`, if it is live; touches
/// `last_seen_at`. An expired or idle session is deleted.
pub fn live_session(
    c: &Connection,
    token_hash: &[u8],
    now: i64,
) -> rusqlite::Result<Option<SignedIn>> {
    let row: Option<(StaffId, i64, i64)> = c
        .query_row(
            "SELECT staff_id, expires_at, last_seen_at FROM staff_sessions WHERE token_hash = ?1",
            [token_hash],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((staff_id, expires_at, last_seen)) = row else {
        return Ok(None);
    };
    if !session_live(now, expires_at, last_seen) {
        c.execute(
            "DELETE FROM staff_sessions WHERE token_hash = ?1",
            [token_hash],
        )?;
        return Ok(None);
    }
    let Some(profile) = profile(c, staff_id)? else {
        return Ok(None);
    };
    if profile.staff.disabled {
        return Ok(None);
    }
    if touch_due(now, last_seen) {
        c.execute(
            "UPDATE staff_sessions SET last_seen_at = ?1 WHERE token_hash = ?2",
            params![now, token_hash],
        )?;
    }
    Ok(Some(SignedIn {
        profile,
        session_expires_at: expires_at,
    }))
}

/// Records the accepted TOTP step and opens a session, in one transaction.
/// None when the step was taken meanwhile (the same code used twice at
/// once) or the account was disabled meanwhile.
pub fn open_session(
    c: &mut Connection,
    staff: StaffId,
    step: u64,
    token_hash: &[u8; 32],
    now: i64,
) -> rusqlite::Result<Option<SignedIn>> {
    let tx = c.transaction()?;
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    let n = tx.execute(
        "UPDATE staff SET totp_last_step = ?1 WHERE id = ?2 AND totp_last_step < ?1 AND disabled = 0",
        params![step, staff],
    )?;
    if n == 0 {
        return Ok(None);
    }
    // This account's ended sessions go (see `session_live`).
    tx.execute(
        "DELETE FROM staff_sessions WHERE staff_id = ?1 AND (expires_at <= ?2 OR last_seen_at <= ?3)",
        params![staff, now, now - SESSION_IDLE_SECS],
    )?;
    let expires_at = session_expiry(now);
    tx.execute(
        "INSERT INTO staff_sessions(token_hash, staff_id, created_at, expires_at, last_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?3)",
        params![&token_hash[..], staff, now, expires_at],
    )?;
    let profile = profile(&tx, staff)?;
    tx.commit()?;
    Ok(profile.map(|profile| SignedIn {
        profile,
        session_expires_at: expires_at,
    }))
}

/// Ends the session for `token_hash`; whose it was, if it existed.
pub fn end_session(c: &Connection, token_hash: &[u8]) -> rusqlite::Result<Option<StaffId>> {
    c.query_row(
        "DELETE FROM staff_sessions WHERE token_hash = ?1 RETURNING staff_id",
        [token_hash],
        |r| r.get(0),
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tuxa_records::auth::{SESSION_IDLE_SECS, SESSION_TTL_SECS};
    use tuxa_records::directory::{NewFacility, NewStaff, StaffRole, Tier};

    fn with_account() -> (Connection, StaffId) {
        let mut c = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&mut c).unwrap();
        let f = crate::directory::insert_facility(
            &c,
            &NewFacility {
                name: "F".into(),
                tier: Tier::Province,
                parent: None,
            },
            0,
        )
        .unwrap();
        let s = crate::directory::insert_staff(
            &c,
            &NewStaff {
                username: Username::parse("dp.a").unwrap(),
                name: "A".into(),
                role: StaffRole::Coordinator,
                facility: f.id,
                practitioner: None,
            },
            "phc",
            b"sealed",
            0,
        )
        .unwrap();
        (c, s.id)
    }

    #[test]
    fn a_step_opens_one_session_and_sessions_end() {
        let (mut c, id) = with_account();
        let k = credentials(&c, &Username::parse("dp.a").unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                k.id,
                k.password_hash.as_str(),
                &k.totp_sealed[..],
                k.totp_last_step,
                k.disabled
            ),
            (id, "phc", &b"sealed"[..], 0, false)
        );
        assert!(
            credentials(&c, &Username::parse("nobody").unwrap())
                .unwrap()
                .is_none()
        );

        let t = 1_000_000;
        let s = open_session(&mut c, id, 10, &[1; 32], t).unwrap().unwrap();
        assert_eq!(s.session_expires_at, t + SESSION_TTL_SECS);
        // The same step, or an earlier one, opens nothing.
        assert!(open_session(&mut c, id, 10, &[2; 32], t).unwrap().is_none());
        assert!(open_session(&mut c, id, 9, &[2; 32], t).unwrap().is_none());
        assert!(live_session(&c, &[2; 32], t).unwrap().is_none());
        assert_eq!(
            credentials(&c, &Username::parse("dp.a").unwrap())
                .unwrap()
                .unwrap()
                .totp_last_step,
            10
        );

        // Live while used; gone after an idle hour.
        assert_eq!(
            live_session(&c, &[1; 32], t + 600)
                .unwrap()
                .unwrap()
                .profile
                .staff
                .id,
            id
        );
        assert!(
            live_session(&c, &[1; 32], t + 600 + SESSION_IDLE_SECS)
                .unwrap()
                .is_none()
        );
        assert!(
            live_session(&c, &[1; 32], t + 601).unwrap().is_none(),
            "deleted"
        );

        open_session(&mut c, id, 11, &[3; 32], t).unwrap().unwrap();
        assert_eq!(end_session(&c, &[3; 32]).unwrap(), Some(id));
        assert_eq!(end_session(&c, &[3; 32]).unwrap(), None);
        assert!(live_session(&c, &[3; 32], t).unwrap().is_none());

        // A disabled account opens no session.
        crate::directory::set_disabled(&c, id, true).unwrap();
        assert!(open_session(&mut c, id, 12, &[4; 32], t).unwrap().is_none());
    }
}
