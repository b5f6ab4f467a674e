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

/// Appends an entry. Runs on the store thread, so entries are chained in
/// the order they are written, one at a time.
pub fn append(c: &mut Connection, e: &Entry) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
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
    let detail = e.detail.to_string();
    let consultation = e.consultation.clone().unwrap_or_default();
    let hash = entry_hash(
        &prev,
        id,
        e.at,
        e.action.as_str(),
        &consultation,
        &e.actor,
        &detail,
    );
    tx.execute(
        "INSERT INTO audit(id, at, action, consultation_id, actor, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            id,
            e.at,
            e.action.as_str(),
            consultation,
            e.actor,
            detail,
            prev,
            hash
        ],
    )?;
    tx.commit()
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
}
