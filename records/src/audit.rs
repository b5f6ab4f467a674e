//! The audit log's rules, without the table: what an entry is, how an
//! entry's hash is computed, which refusals are aggregated rather than
//! chained one by one, and how a chain is verified (given its rows, in
//! order, it names the first entry that does not match). The store crate
//! appends and reads the rows (`tuxa_store::audit`).
//!
//! Each entry's hash covers the previous entry's hash and the entry's own
//! fields, so changing, deleting or reordering any entry breaks every hash
//! after it. `tuxa verify-audit` walks the chain and names the first entry
//! that does not match. (An attacker who can rewrite the whole file can
//! rebuild the chain; anchoring the head hash elsewhere — a printed report,
//! a second server — is what defeats that, and is for the record work.)

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
    // Recordings at rest (issue 13; server/src/vault.rs): a file finished
    // (detail: its path, size and SHA-256), found without its end marker
    // after a crash, and deleted after its retention period.
    RecordingFileSealed,
    RecordingFileIncomplete,
    RecordingFilePurged,
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
            Action::RecordingFileSealed => "recording_file_sealed",
            Action::RecordingFileIncomplete => "recording_file_incomplete",
            Action::RecordingFilePurged => "recording_file_purged",
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

impl Action {
    /// Refusals that anyone on the internet can cause without an account,
    /// a key or a valid link: a wrong admin key, a forged or stale link, a
    /// failed sign-in. Written one by one they would let a stranger grow
    /// the chain (and a consultation's record) without limit, so they are
    /// aggregated (see `tuxa_store::audit::append`).
    pub fn caused_by_strangers(self) -> bool {
        matches!(
            self,
            Action::AdminAuthFailed | Action::LinkRefused | Action::LoginFailed
        )
    }
}

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of entry `id` chained after `prev` (hex SHA-256).
pub fn entry_hash(
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
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &buf);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A stranger-caused refusal is chained one by one up to [`STRANGER_BURST`]
/// times per window of this length for the same (action, consultation,
/// actor, detail); the rest are counted and chained as one entry with
/// `repeated`, `repeated_from` and `repeated_to` once the window is over.
pub const STRANGER_WINDOW_SECS: i64 = 60;
/// Refusals chained individually per window and kind: enough to see what
/// happened (a patient mistyping, a stale link opened twice) in full.
pub const STRANGER_BURST: i64 = 3;

/// The kind a stranger-caused refusal is counted under: the same action,
/// consultation (`""`: none), actor and detail.
pub fn stranger_key(action: Action, consultation: &str, actor: &str, detail: &str) -> String {
    format!(
        "{}\u{1f}{consultation}\u{1f}{actor}\u{1f}{detail}",
        action.as_str()
    )
}

/// What a window's counted refusals do once it is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrangerStep {
    /// Chain this one (the window is new, or below its burst).
    Chain,
    /// Only count it: the window has chained its burst already.
    Count,
}

/// Whether the next refusal of a kind whose window has chained `written`
/// entries (`None`: no window open) is chained or only counted.
pub fn stranger_step(written: Option<i64>) -> StrangerStep {
    match written {
        Some(w) if w >= STRANGER_BURST => StrangerStep::Count,
        _ => StrangerStep::Chain,
    }
}

/// The detail of the summary entry of a window that counted `repeated`
/// refusals from `from` to `to`: the refusals' own detail with the counts
/// added (the counts alone if that detail is not a JSON object).
pub fn stranger_summary(detail: &str, repeated: i64, from: i64, to: i64) -> String {
    let mut detail: Value = serde_json::from_str(detail).unwrap_or(Value::Null);
    let summary = serde_json::json!({
        "repeated": repeated,
        "repeated_from": from,
        "repeated_to": to,
    });
    match detail.as_object_mut() {
        Some(map) => {
            if let Value::Object(extra) = summary {
                map.extend(extra);
            }
        }
        None => detail = summary,
    }
    detail.to_string()
}

/// One chained entry as the table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRow {
    pub id: i64,
    pub at: i64,
    pub action: String,
    /// `""`: none.
    pub consultation: String,
    pub actor: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The result of walking the chain.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Intact { entries: u64, head: String },
    Broken { entry: i64, reason: String },
}

/// Walks the chain's rows in id order and names the first entry that does
/// not match. Streams: a failure to read a row stops the walk with it.
pub fn verify<E>(rows: impl IntoIterator<Item = Result<ChainRow, E>>) -> Result<Verdict, E> {
    let mut prev = GENESIS.to_owned();
    let mut n = 0u64;
    for (expected_id, r) in (1i64..).zip(rows) {
        let r = r?;
        if r.id != expected_id {
            return Ok(Verdict::Broken {
                entry: expected_id,
                reason: format!("entry {expected_id} is missing (next is {})", r.id),
            });
        }
        if r.prev_hash != prev {
            return Ok(Verdict::Broken {
                entry: r.id,
                reason: "its link to the previous entry does not match".into(),
            });
        }
        let h = entry_hash(
            &prev,
            r.id,
            r.at,
            &r.action,
            &r.consultation,
            &r.actor,
            &r.detail,
        );
        if h != r.hash {
            return Ok(Verdict::Broken {
                entry: r.id,
                reason: "its contents do not match its hash (altered)".into(),
            });
        }
        prev = r.hash;
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

    /// A chain of `n` rows made by the rules above.
    fn chain(n: i64) -> Vec<ChainRow> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|id| {
                let (at, actor) = (1_700_000_000 + id, format!("participant:{id}"));
                let hash = entry_hash(&prev, id, at, "joined", "abcdefghijklmnop", &actor, "{}");
                ChainRow {
                    id,
                    at,
                    action: "joined".into(),
                    consultation: "abcdefghijklmnop".into(),
                    actor,
                    detail: "{}".into(),
                    prev_hash: std::mem::replace(&mut prev, hash.clone()),
                    hash,
                }
            })
            .collect()
    }

    fn walk(rows: Vec<ChainRow>) -> Verdict {
        verify(rows.into_iter().map(Ok::<_, ()>)).unwrap()
    }

    #[test]
    fn the_hash_is_fixed_by_every_field() {
        let base = entry_hash(GENESIS, 1, 2, "joined", "c", "a", "{}");
        assert_eq!(base.len(), 64);
        assert_ne!(base, entry_hash(GENESIS, 1, 2, "joined", "c", "a", "{ }"));
        // Length prefixes: moving a character between fields changes it.
        assert_ne!(
            entry_hash(GENESIS, 1, 2, "joined", "ca", "", "{}"),
            entry_hash(GENESIS, 1, 2, "joined", "c", "a", "{}")
        );
    }

    #[test]
    fn verification_names_the_first_broken_entry() {
        let rows = chain(5);
        let head = rows[4].hash.clone();
        assert_eq!(walk(rows.clone()), Verdict::Intact { entries: 5, head });

        let mut altered = rows.clone();
        altered[2].actor = "participant:99".into();
        assert!(matches!(walk(altered), Verdict::Broken { entry: 3, .. }));

        let mut missing = rows.clone();
        missing.remove(3);
        assert!(matches!(walk(missing), Verdict::Broken { entry: 4, .. }));

        // Rewritten with its own hash recomputed: the next link breaks.
        let mut forged = rows;
        forged[1].actor = "x".into();
        forged[1].hash = entry_hash(
            &forged[1].prev_hash,
            2,
            forged[1].at,
            "joined",
            "abcdefghijklmnop",
            "x",
            "{}",
        );
        assert!(matches!(walk(forged), Verdict::Broken { entry: 3, .. }));
    }

    #[test]
    fn a_window_chains_its_burst_then_counts() {
        assert_eq!(stranger_step(None), StrangerStep::Chain);
        assert_eq!(stranger_step(Some(STRANGER_BURST - 1)), StrangerStep::Chain);
        assert_eq!(stranger_step(Some(STRANGER_BURST)), StrangerStep::Count);
        let s: Value =
            serde_json::from_str(&stranger_summary(r#"{"code":"x"}"#, 5, 10, 20)).unwrap();
        assert_eq!(
            s,
            serde_json::json!({"code": "x", "repeated": 5, "repeated_from": 10, "repeated_to": 20})
        );
        let s: Value = serde_json::from_str(&stranger_summary("not json", 1, 2, 3)).unwrap();
        assert_eq!(s["repeated"], 1);
    }
}
