//! The append-only audit log: every security-relevant action, hash-chained.
//!
//! Each entry's hash covers the previous entry's hash and the entry's own
//! fields, so changing, deleting or reordering any entry breaks every hash
//! after it. `tuxa verify-audit` walks the chain and names the first entry
//! that does not match. (An attacker who can rewrite the whole file can
//! rebuild the chain; anchoring the head hash elsewhere — a printed report,
//! a second server — is what defeats that, and is for the record work.)

use rusqlite::{Connection, params};
use serde_json::Value;

/// What happened. Stored as its name; never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ServerStarted,
    AdminAuthFailed,
    ConsultationCreated,
    ConsultationEnded,
    LinkMinted,
    LinkRefused,
    Joined,
    Left,
    LobbyEntered,
    ConsentRecorded,
    QueueCreated,
    RosterChanged,
    /// Staff removed a queue ticket (queues.rs; detail: its handle, flags).
    QueueTicketCleared,
    Admitted,
    Refused,
    /// A consultation's record was exported (detail: `format`).
    RecordExported,
    // The directory and staff sign-in (directory.rs, auth.rs).
    LoginSucceeded,
    LoginFailed,
    Logout,
    StaffCreated,
    RoleChanged,
    StaffDisabled,
    StaffEnabled,
    FacilityCreated,
    PractitionerCreated,
    // In-call moderation (hub.rs) and case conferences (conferences.rs).
    MuteRequested,
    ParticipantRemoved,
    RoomLocked,
    RoomUnlocked,
    SecretaryNamed,
    ConferenceRequested,
    ConferenceScheduled,
    ConferenceDeclined,
    ConferenceRescheduled,
    ConferenceCancelled,
    AttachmentAdded,
    AttachmentRead,
    ConclusionEntered,
    // Bad networks (hub.rs): a participant's connection dropped (their
    // place kept for the grace window), and came back.
    ConnectionLost,
    Reconnected,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ServerStarted => "server_started",
            Action::AdminAuthFailed => "admin_auth_failed",
            Action::ConsultationCreated => "consultation_created",
            Action::ConsultationEnded => "consultation_ended",
            Action::LinkMinted => "link_minted",
            Action::LinkRefused => "link_refused",
            Action::Joined => "joined",
            Action::Left => "left",
            Action::LobbyEntered => "lobby_entered",
            Action::ConsentRecorded => "consent_recorded",
            Action::QueueCreated => "queue_created",
            Action::RosterChanged => "roster_changed",
            Action::QueueTicketCleared => "queue_ticket_cleared",
            Action::Admitted => "admitted",
            Action::Refused => "refused",
            Action::RecordExported => "record_exported",
            Action::LoginSucceeded => "login_succeeded",
            Action::LoginFailed => "login_failed",
            Action::Logout => "logout",
            Action::StaffCreated => "staff_created",
            Action::RoleChanged => "role_changed",
            Action::StaffDisabled => "staff_disabled",
            Action::StaffEnabled => "staff_enabled",
            Action::FacilityCreated => "facility_created",
            Action::PractitionerCreated => "practitioner_created",
            Action::MuteRequested => "mute_requested",
            Action::ParticipantRemoved => "participant_removed",
            Action::RoomLocked => "room_locked",
            Action::RoomUnlocked => "room_unlocked",
            Action::SecretaryNamed => "secretary_named",
            Action::ConferenceRequested => "conference_requested",
            Action::ConferenceScheduled => "conference_scheduled",
            Action::ConferenceDeclined => "conference_declined",
            Action::ConferenceRescheduled => "conference_rescheduled",
            Action::ConferenceCancelled => "conference_cancelled",
            Action::AttachmentAdded => "attachment_added",
            Action::AttachmentRead => "attachment_read",
            Action::ConclusionEntered => "conclusion_entered",
            Action::ConnectionLost => "connection_lost",
            Action::Reconnected => "reconnected",
        }
    }
}

/// One entry before it is chained.
#[derive(Debug, Clone)]
pub struct Entry {
    pub at: i64,
    pub action: Action,
    pub consultation: Option<String>,
    /// Who did it: `admin`, `participant:<id>`, `system`.
    pub actor: String,
    pub detail: Value,
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn entry_hash(
    prev: &str,
    id: i64,
    at: i64,
    action: &str,
    consultation: &str,
    actor: &str,
    detail: &str,
) -> String {
    // Length-prefixed fields: no choice of values can make two different
    // entries serialise to the same bytes.
    let mut buf = Vec::new();
    for field in [
        prev,
        &id.to_string(),
        &at.to_string(),
        action,
        consultation,
        actor,
        detail,
    ] {
        buf.extend_from_slice(&(field.len() as u64).to_be_bytes());
        buf.extend_from_slice(field.as_bytes());
    }
    crate::hex(&crate::sha256(&buf))
}

impl Action {
    /// Refusals that anyone on the internet can cause without an account,
    /// a key or a valid link: a wrong admin key, a forged or stale link, a
    /// failed sign-in. Written one by one they would let a stranger grow
    /// the chain (and a consultation's record) without limit, so they are
    /// aggregated (see [`append`]).
    fn caused_by_strangers(self) -> bool {
        matches!(
            self,
            Action::AdminAuthFailed | Action::LinkRefused | Action::LoginFailed
        )
    }
}

/// A stranger-caused refusal is chained one by one up to [`STRANGER_BURST`]
/// times per window of this length for the same (action, consultation,
/// actor, detail); the rest are counted and chained as one entry with
/// `repeated`, `repeated_from` and `repeated_to` once the window is over.
pub const STRANGER_WINDOW_SECS: i64 = 60;
/// Refusals chained individually per window and kind: enough to see what
/// happened (a patient mistyping, a stale link opened twice) in full.
pub const STRANGER_BURST: i64 = 3;

/// Appends an entry. Runs on the store thread, so entries are chained in
/// the order they are written, one at a time.
///
/// Stranger-caused refusals ([`Action::caused_by_strangers`]) are bounded: per
/// window and kind, the first [`STRANGER_BURST`] are chained as they come,
/// the others are counted in `audit_strangers` (in the same transaction, so
/// a count is never lost) and chained as one summary entry by the first
/// append after the window ends. A refusal naming a consultation that does
/// not exist is filed under no consultation, so made-up room ids cannot
/// multiply the kinds either.
pub fn append(c: &mut Connection, e: &Entry) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    flush_strangers(&tx, e.at)?;
    if e.action.caused_by_strangers() {
        let mut e = e.clone();
        if let Some(id) = &e.consultation {
            let exists: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM consultations WHERE id = ?1)",
                [id],
                |r| r.get(0),
            )?;
            if !exists {
                e.consultation = None;
            }
        }
        let detail = e.detail.to_string();
        let consultation = e.consultation.clone().unwrap_or_default();
        let key = format!(
            "{}\u{1f}{consultation}\u{1f}{}\u{1f}{detail}",
            e.action.as_str(),
            e.actor
        );
        let window: Option<(i64, i64)> = tx
            .query_row(
                "SELECT first_at, written FROM audit_strangers WHERE key = ?1",
                [&key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map(Some)
            .or_else(|err| match err {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                other => Err(other),
            })?;
        match window {
            Some((_, written)) if written >= STRANGER_BURST => {
                tx.execute(
                    "UPDATE audit_strangers SET repeated = repeated + 1,
                         repeated_from = COALESCE(repeated_from, ?2), repeated_to = ?2
                     WHERE key = ?1",
                    params![key, e.at],
                )?;
                return tx.commit();
            }
            Some(_) => {
                tx.execute(
                    "UPDATE audit_strangers SET written = written + 1 WHERE key = ?1",
                    [&key],
                )?;
            }
            None => {
                tx.execute(
                    "INSERT INTO audit_strangers(key, action, consultation_id, actor, detail,
                         first_at, written, repeated)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, 0)",
                    params![key, e.action.as_str(), consultation, e.actor, detail, e.at],
                )?;
            }
        }
        chain(&tx, &e)?;
        return tx.commit();
    }
    chain(&tx, e)?;
    tx.commit()
}

/// Chains the summary of every stranger window that is over by `now`, and
/// forgets the windows.
fn flush_strangers(tx: &rusqlite::Transaction<'_>, now: i64) -> rusqlite::Result<()> {
    /// A window that is over, as `audit_strangers` holds it.
    struct Over {
        key: String,
        action: String,
        consultation: String,
        actor: String,
        detail: String,
        repeated: i64,
        from: i64,
        to: i64,
    }
    let due: Vec<Over> = {
        let mut st = tx.prepare(
            "SELECT key, action, consultation_id, actor, detail, repeated,
                    COALESCE(repeated_from, first_at), COALESCE(repeated_to, first_at)
             FROM audit_strangers WHERE first_at <= ?1 ORDER BY first_at, key",
        )?;
        st.query_map([now - STRANGER_WINDOW_SECS], |r| {
            Ok(Over {
                key: r.get(0)?,
                action: r.get(1)?,
                consultation: r.get(2)?,
                actor: r.get(3)?,
                detail: r.get(4)?,
                repeated: r.get(5)?,
                from: r.get(6)?,
                to: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?
    };
    for w in due {
        if w.repeated > 0 {
            let mut detail: Value = serde_json::from_str(&w.detail).unwrap_or(Value::Null);
            let summary = serde_json::json!({
                "repeated": w.repeated,
                "repeated_from": w.from,
                "repeated_to": w.to,
            });
            match detail.as_object_mut() {
                Some(map) => {
                    if let Value::Object(extra) = summary {
                        map.extend(extra);
                    }
                }
                None => detail = summary,
            }
            write(
                tx,
                w.to,
                &w.action,
                &w.consultation,
                &w.actor,
                &detail.to_string(),
            )?;
        }
        tx.execute("DELETE FROM audit_strangers WHERE key = ?1", [w.key])?;
    }
    Ok(())
}

fn chain(tx: &rusqlite::Transaction<'_>, e: &Entry) -> rusqlite::Result<()> {
    write(
        tx,
        e.at,
        e.action.as_str(),
        &e.consultation.clone().unwrap_or_default(),
        &e.actor,
        &e.detail.to_string(),
    )
}

fn write(
    tx: &rusqlite::Transaction<'_>,
    at: i64,
    action: &str,
    consultation: &str,
    actor: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    let (last_id, prev): (i64, String) = tx
        .query_row(
            "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .or_else(|err| match err {
            rusqlite::Error::QueryReturnedNoRows => Ok((0, GENESIS.to_owned())),
            other => Err(other),
        })?;
    let id = last_id + 1;
    let hash = entry_hash(&prev, id, at, action, consultation, actor, detail);
    tx.execute(
        "INSERT INTO audit(id, at, action, consultation_id, actor, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![id, at, action, consultation, actor, detail, prev, hash],
    )?;
    Ok(())
}

/// The result of walking the chain.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Intact { entries: u64, head: String },
    Broken { entry: i64, reason: String },
}

pub fn verify(c: &Connection) -> rusqlite::Result<Verdict> {
    let mut st = c.prepare(
        "SELECT id, at, action, consultation_id, actor, detail, prev_hash, hash FROM audit ORDER BY id",
    )?;
    let mut rows = st.query([])?;
    let mut prev = GENESIS.to_owned();
    let mut expected_id = 1i64;
    let mut n = 0u64;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let at: i64 = r.get(1)?;
        let action: String = r.get(2)?;
        let consultation: String = r.get(3)?;
        let actor: String = r.get(4)?;
        let detail: String = r.get(5)?;
        let stored_prev: String = r.get(6)?;
        let stored_hash: String = r.get(7)?;
        if id != expected_id {
            return Ok(Verdict::Broken {
                entry: expected_id,
                reason: format!("entry {expected_id} is missing (next is {id})"),
            });
        }
        if stored_prev != prev {
            return Ok(Verdict::Broken {
                entry: id,
                reason: "its link to the previous entry does not match".into(),
            });
        }
        let h = entry_hash(&prev, id, at, &action, &consultation, &actor, &detail);
        if h != stored_hash {
            return Ok(Verdict::Broken {
                entry: id,
                reason: "its contents do not match its hash (altered)".into(),
            });
        }
        prev = stored_hash;
        expected_id += 1;
        n += 1;
    }
    Ok(Verdict::Intact {
        entries: n,
        head: prev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::migrate(&mut c).unwrap();
        c
    }

    /// What a tamperer outside tuxa does first.
    fn drop_guards(c: &Connection) {
        c.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
            .unwrap();
    }

    fn entry(i: i64) -> Entry {
        Entry {
            at: 1_700_000_000 + i,
            action: Action::Joined,
            consultation: Some("abcdefghijklmnop".into()),
            actor: format!("participant:{i}"),
            detail: serde_json::json!({"role": "doctor"}),
        }
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let mut c = db();
        for i in 0..5 {
            append(&mut c, &entry(i)).unwrap();
        }
        match verify(&c).unwrap() {
            Verdict::Intact { entries, .. } => assert_eq!(entries, 5),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn tampering_names_the_first_broken_entry() {
        let mut c = db();
        for i in 0..6 {
            append(&mut c, &entry(i)).unwrap();
        }
        // Edits through SQLite are refused outright.
        assert!(
            c.execute("UPDATE audit SET actor = 'x' WHERE id = 3", [])
                .is_err()
        );
        assert!(c.execute("DELETE FROM audit WHERE id = 3", []).is_err());
        drop_guards(&c);
        // Altered contents.
        c.execute("UPDATE audit SET actor = 'participant:99' WHERE id = 3", [])
            .unwrap();
        assert!(matches!(
            verify(&c).unwrap(),
            Verdict::Broken { entry: 3, .. }
        ));

        // A deleted entry.
        let mut c = db();
        for i in 0..6 {
            append(&mut c, &entry(i)).unwrap();
        }
        drop_guards(&c);
        c.execute("DELETE FROM audit WHERE id = 4", []).unwrap();
        assert!(matches!(
            verify(&c).unwrap(),
            Verdict::Broken { entry: 4, .. }
        ));

        // A rewritten entry whose own hash was recomputed: the next link breaks.
        let mut c = db();
        for i in 0..6 {
            append(&mut c, &entry(i)).unwrap();
        }
        drop_guards(&c);
        let prev: String = c
            .query_row("SELECT prev_hash FROM audit WHERE id = 2", [], |r| r.get(0))
            .unwrap();
        let forged = entry_hash(&prev, 2, 1, "joined", "abcdefghijklmnop", "x", "{}");
        c.execute(
            "UPDATE audit SET at = 1, actor = 'x', detail = '{}', hash = ?1 WHERE id = 2",
            [forged],
        )
        .unwrap();
        assert!(matches!(
            verify(&c).unwrap(),
            Verdict::Broken { entry: 3, .. }
        ));
    }
    /// 300 forged join-checks against one consultation (each a refusal a
    /// stranger can cause) chain three entries and, once the window is
    /// over, one summary that counts the rest; nothing is lost and the
    /// chain still verifies. Made-up room ids are filed under none.
    #[test]
    fn stranger_refusals_are_aggregated_not_chained_one_by_one() {
        let mut c = db();
        c.execute(
            "INSERT INTO consultations(id, kind, title, status, created_at)
             VALUES ('abcdefghijklmnop', 'visit', 't', 'open', 0)",
            [],
        )
        .unwrap();
        let refused = |at: i64, room: &str| Entry {
            at,
            action: Action::LinkRefused,
            consultation: Some(room.into()),
            actor: "unknown".into(),
            detail: serde_json::json!({"code": "token_invalid", "via": "join-check"}),
        };
        let t0 = 1_700_000_000;
        for i in 0..300 {
            append(&mut c, &refused(t0 + i / 10, "abcdefghijklmnop")).unwrap();
        }
        for i in 0..50 {
            append(&mut c, &refused(t0, &format!("zzzzzzzzzzzzzz{:02}", i))).unwrap();
        }
        let count =
            |c: &Connection, sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
        let room_rows = "SELECT COUNT(*) FROM audit WHERE consultation_id = 'abcdefghijklmnop' AND action = 'link_refused'";
        assert_eq!(count(&c, room_rows), STRANGER_BURST);
        assert_eq!(
            count(&c, "SELECT COUNT(*) FROM audit WHERE consultation_id = ''"),
            STRANGER_BURST
        );
        assert_eq!(
            count(
                &c,
                "SELECT COUNT(*) FROM audit WHERE consultation_id LIKE 'zz%'"
            ),
            0
        );
        // Someone else's ordinary entry after the window closes the window.
        append(&mut c, &entry(0)).unwrap();
        let mut e = entry(1);
        e.at = t0 + 61;
        append(&mut c, &e).unwrap();
        assert_eq!(count(&c, room_rows), STRANGER_BURST + 1);
        let summary: String = c
            .query_row(
                "SELECT detail FROM audit WHERE consultation_id = 'abcdefghijklmnop' AND action = 'link_refused'
                 ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let summary: Value = serde_json::from_str(&summary).unwrap();
        assert_eq!(summary["repeated"], 300 - STRANGER_BURST);
        assert_eq!(summary["repeated_to"], t0 + 29);
        assert_eq!(summary["code"], "token_invalid");
        let unknown: String = c
            .query_row(
                "SELECT detail FROM audit WHERE consultation_id = '' ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(unknown.contains("\"repeated\":47"), "{unknown}");
        assert_eq!(count(&c, "SELECT COUNT(*) FROM audit_strangers"), 0);
        // A new window chains again from the first.
        append(&mut c, &refused(t0 + 62, "abcdefghijklmnop")).unwrap();
        assert_eq!(count(&c, room_rows), STRANGER_BURST + 2);
        assert!(matches!(verify(&c).unwrap(), Verdict::Intact { .. }));
        // Entries of staff and participants are never aggregated.
        let before = count(&c, "SELECT COUNT(*) FROM audit");
        for i in 0..10 {
            append(&mut c, &entry(100 + i)).unwrap();
        }
        assert_eq!(count(&c, "SELECT COUNT(*) FROM audit"), before + 10);
    }
}
