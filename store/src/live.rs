//! What the hub records while a consultation runs: attendance, consent
//! answers, chat kept with a conference, connection gaps and link quality,
//! who was removed, and the end. The hub task (server) turns the hub's
//! `RecordEvent`s into these calls; each is one statement.

use rusqlite::{Connection, params};
use tuxa_records::{StaffId, UnixTime};

/// A participant entered the room.
pub struct Joined<'a> {
    pub room: &'a str,
    pub participant: u64,
    pub name: &'a str,
    pub role: &'a str,
    pub facility: Option<&'a str>,
    pub licence_number: Option<&'a str>,
}

pub fn joined(c: &Connection, j: &Joined<'_>, now: UnixTime) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO attendance(consultation_id, participant_id, name, role, facility,
             licence_number, joined_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            j.room,
            j.participant as i64,
            j.name,
            j.role,
            j.facility,
            j.licence_number,
            now
        ],
    )?;
    Ok(())
}

/// A participant's place closed; `reason` is `LeaveReason::as_str`.
pub fn left(
    c: &Connection,
    room: &str,
    participant: u64,
    reason: &str,
    now: UnixTime,
) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE attendance SET left_at = ?1, leave_reason = ?2
         WHERE consultation_id = ?3 AND participant_id = ?4 AND left_at IS NULL",
        params![now, reason, room, participant as i64],
    )?;
    Ok(())
}

/// A consent answer set, per purpose (a change of mind is a new row).
pub struct Consent<'a> {
    pub room: &'a str,
    pub participant: u64,
    pub text_version: &'a str,
    pub remote_examination: bool,
    pub third_parties: bool,
    pub recording: bool,
    pub at: UnixTime,
}

pub fn consent(c: &Connection, k: &Consent<'_>) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO consents(consultation_id, participant_id, text_version,
             remote_examination, third_parties, recording, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            k.room,
            k.participant as i64,
            k.text_version,
            k.remote_examination,
            k.third_parties,
            k.recording,
            k.at
        ],
    )?;
    Ok(())
}

pub fn chat(
    c: &Connection,
    room: &str,
    participant: u64,
    name: &str,
    text: &str,
    at: UnixTime,
) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO chat_messages(consultation_id, participant_id, name, text, at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![room, participant as i64, name, text, at],
    )?;
    Ok(())
}

/// The secretary the chair named (who may enter the conclusion after).
pub fn secretary(c: &Connection, room: &str, staff: Option<StaffId>) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE conference_requests SET secretary_staff_id = ?1 WHERE consultation_id = ?2",
        params![staff, room],
    )?;
    Ok(())
}

/// A participant's connection was lost; their place is kept.
pub fn gap_started(
    c: &Connection,
    room: &str,
    participant: u64,
    now: UnixTime,
) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO link_gaps(consultation_id, participant_id, started_at)
         VALUES (?1, ?2, ?3)",
        params![room, participant as i64, now],
    )?;
    Ok(())
}

/// Ends a participant's open connection gap, if any (`resumed` or `left`).
pub fn gap_ended(
    c: &Connection,
    room: &str,
    participant: u64,
    outcome: &str,
    now: UnixTime,
) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE link_gaps SET ended_at = ?1, outcome = ?2
         WHERE consultation_id = ?3 AND participant_id = ?4 AND ended_at IS NULL",
        params![now, outcome, room, participant as i64],
    )?;
    Ok(())
}

/// One window of a participant's link quality, aggregated.
pub struct Quality {
    pub from: u64,
    pub to: u64,
    pub samples: u32,
    pub rtt_ms_avg: Option<u32>,
    pub rtt_ms_max: Option<u32>,
    pub loss_pct_max: Option<f32>,
    pub jitter_ms_max: Option<u32>,
    pub frame_height_min: Option<u32>,
    pub covered_ms: u64,
    pub audio_only_ms: u64,
}

pub fn quality(c: &Connection, room: &str, participant: u64, w: &Quality) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO link_quality(consultation_id, participant_id, from_at, to_at,
             samples, rtt_ms_avg, rtt_ms_max, loss_pct_max, jitter_ms_max,
             frame_height_min, covered_ms, audio_only_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            room,
            participant as i64,
            w.from as i64,
            w.to as i64,
            w.samples,
            w.rtt_ms_avg,
            w.rtt_ms_max,
            w.loss_pct_max.map(f64::from),
            w.jitter_ms_max,
            w.frame_height_min,
            w.covered_ms as i64,
            w.audio_only_ms as i64
        ],
    )?;
    Ok(())
}

/// Who was removed from a room: a staff account, or one link's digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Barred {
    Staff(StaffId),
    Link([u8; 32]),
}

/// Kept with the room, so that a restart does not let them back.
pub fn bar(c: &Connection, room: &str, who: Barred, now: UnixTime) -> rusqlite::Result<()> {
    let (staff, link) = match who {
        Barred::Staff(id) => (Some(id), None),
        Barred::Link(digest) => (None, Some(digest)),
    };
    c.execute(
        "INSERT INTO room_bars(consultation_id, staff_id, link_sha256, barred_at)
         VALUES (?1, ?2, ?3, ?4)",
        params![room, staff, link, now],
    )?;
    Ok(())
}

/// Who was removed from each open room, by consultation id.
pub fn bars(c: &Connection) -> rusqlite::Result<Vec<(String, Barred)>> {
    let mut st = c.prepare(
        "SELECT b.consultation_id, b.staff_id, b.link_sha256
         FROM room_bars b JOIN consultations k ON k.id = b.consultation_id
         WHERE k.status = 'open' ORDER BY b.id",
    )?;
    st.query_map([], |r| {
        let room: String = r.get(0)?;
        let bar = match (
            r.get::<_, Option<StaffId>>(1)?,
            r.get::<_, Option<[u8; 32]>>(2)?,
        ) {
            (Some(staff), _) => Barred::Staff(staff),
            (None, Some(digest)) => Barred::Link(digest),
            // The table's CHECK makes this impossible.
            (None, None) => {
                return Err(rusqlite::Error::InvalidColumnType(
                    1,
                    "staff_id".into(),
                    rusqlite::types::Type::Null,
                ));
            }
        };
        Ok((room, bar))
    })?
    .collect()
}

/// The hub ended the room; ended through the API, the row is closed already
/// and the first end time stands. `reason` is `EndReason::as_str`.
pub fn ended(c: &Connection, room: &str, reason: &str, now: UnixTime) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE consultations SET status = 'ended', ended_at = ?1, end_reason = ?2
         WHERE id = ?3 AND status = 'open'",
        params![now, reason, room],
    )?;
    Ok(())
}

/// Open consultations with someone still in them: the server died while
/// they were in the room.
pub fn rooms_left_open(c: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut st = c.prepare(
        "SELECT DISTINCT a.consultation_id FROM attendance a
         JOIN consultations k ON k.id = a.consultation_id
         WHERE a.left_at IS NULL AND k.status = 'open'",
    )?;
    st.query_map([], |r| r.get(0))?.collect()
}

/// Ends, at a restart, a consultation the crash left open.
pub fn end_at_restart(c: &Connection, room: &str, now: UnixTime) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE consultations SET status = 'ended', ended_at = ?1,
             end_reason = 'server_restart'
         WHERE id = ?2 AND status = 'open'",
        params![now, room],
    )?;
    Ok(())
}

/// Closes every attendance still open (the server restarted).
pub fn close_attendance_at_restart(c: &Connection, now: UnixTime) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE attendance SET left_at = ?1, leave_reason = 'server_restart'
         WHERE left_at IS NULL",
        [now],
    )?;
    Ok(())
}

/// Open consultations a doctor or nurse has been in.
pub fn staffed_open_rooms(c: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut st = c.prepare(
        "SELECT DISTINCT a.consultation_id FROM attendance a
         JOIN consultations k ON k.id = a.consultation_id
         WHERE k.status = 'open' AND a.role IN ('doctor', 'nurse')",
    )?;
    st.query_map([], |r| r.get(0))?.collect()
}
