//! Recordings' rows (`recordings`, `recording_files`): starting and ending
//! a recording, opening and finishing its files, and what crash recovery,
//! `verify-recordings` and `purge-recordings` read (server/src/vault.rs).
//! A file's outcome (size, SHA-256) and its deletion are chained into the
//! audit log in the same transaction as the row's change.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::json;
use tuxa_protocol::{ConsultationKind, ParticipantId, Role};
use tuxa_records::UnixTime;
use tuxa_records::audit::{Action, Entry};
use tuxa_records::recording::{
    FileOutcome, FileState, NewRecording, NewRecordingFile, Recording, RecordingFile,
    RecordingFileId, RecordingId, RecordingState, StartedBy, StopReason, kind_as_str, parse_kind,
    parse_source, source_as_str,
};

/// Who the store's own audit entries name.
const SYSTEM: &str = "system";

fn bad(what: &str, s: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("unknown {what} {s:?}").into(),
    )
}

fn participant(r: &Row<'_>, i: usize) -> rusqlite::Result<ParticipantId> {
    let v: i64 = r.get(i)?;
    u64::try_from(v)
        .map(ParticipantId)
        .map_err(|_| bad("participant id", &v.to_string()))
}

fn to_i64(v: u64) -> rusqlite::Result<i64> {
    i64::try_from(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Starts a recording of a consultation: a row in state `recording`.
pub fn start(c: &Connection, r: &NewRecording) -> rusqlite::Result<RecordingId> {
    c.execute(
        "INSERT INTO recordings(consultation_id, started_by_participant, started_by_name,
             started_by_staff, started_at, state)
         VALUES (?1, ?2, ?3, ?4, ?5, 'recording')",
        params![
            r.consultation,
            to_i64(r.started_by.participant.0)?,
            r.started_by.name,
            r.started_by.staff,
            r.started_at,
        ],
    )?;
    Ok(RecordingId(c.last_insert_rowid()))
}

/// Ends a recording still in state `recording`; false when it had ended
/// already (the first end stands). `state` is `Complete`, `Incomplete` or
/// `Failed`.
pub fn end(
    c: &Connection,
    id: RecordingId,
    at: UnixTime,
    state: RecordingState,
    reason: StopReason,
) -> rusqlite::Result<bool> {
    debug_assert_ne!(state, RecordingState::Recording);
    Ok(c.execute(
        "UPDATE recordings SET ended_at = ?2, state = ?3, stop_reason = ?4
         WHERE id = ?1 AND state = 'recording'",
        params![id, at, state, reason],
    )? > 0)
}

/// Ends whatever recording of a consultation is still `recording` (the
/// control plane knows the room, not the row): false when none was.
pub fn end_open(
    c: &Connection,
    consultation: &str,
    at: UnixTime,
    state: RecordingState,
    reason: StopReason,
) -> rusqlite::Result<bool> {
    debug_assert_ne!(state, RecordingState::Recording);
    Ok(c.execute(
        "UPDATE recordings SET ended_at = ?2, state = ?3, stop_reason = ?4
         WHERE consultation_id = ?1 AND state = 'recording'",
        params![consultation, at, state, reason],
    )? > 0)
}

const RECORDING_COLUMNS: &str = "id, consultation_id, started_by_participant, started_by_name,
     started_by_staff, started_at, ended_at, state, stop_reason";

fn recording_row(r: &Row<'_>) -> rusqlite::Result<Recording> {
    Ok(Recording {
        id: r.get(0)?,
        consultation: r.get(1)?,
        started_by: StartedBy {
            participant: participant(r, 2)?,
            name: r.get(3)?,
            staff: r.get(4)?,
        },
        started_at: r.get(5)?,
        ended_at: r.get(6)?,
        state: r.get(7)?,
        stop_reason: r.get(8)?,
    })
}

/// One recording.
pub fn get(c: &Connection, id: RecordingId) -> rusqlite::Result<Option<Recording>> {
    c.query_row(
        &format!("SELECT {RECORDING_COLUMNS} FROM recordings WHERE id = ?1"),
        [id],
        recording_row,
    )
    .optional()
}

/// A consultation's recordings, oldest first.
pub fn of_consultation(c: &Connection, consultation: &str) -> rusqlite::Result<Vec<Recording>> {
    let mut st = c.prepare(&format!(
        "SELECT {RECORDING_COLUMNS} FROM recordings WHERE consultation_id = ?1 ORDER BY id"
    ))?;
    st.query_map([consultation], recording_row)?.collect()
}

/// Recordings still in state `recording` (at start: the server died during them).
pub fn unfinished(c: &Connection) -> rusqlite::Result<Vec<Recording>> {
    let mut st = c.prepare(&format!(
        "SELECT {RECORDING_COLUMNS} FROM recordings WHERE state = 'recording' ORDER BY id"
    ))?;
    st.query_map([], recording_row)?.collect()
}

/// Registers a file the recorder is about to write: state `open`.
pub fn open_file(c: &Connection, f: &NewRecordingFile) -> rusqlite::Result<RecordingFileId> {
    c.execute(
        "INSERT INTO recording_files(recording_id, participant_id, role, display_name, facility,
             track_kind, source, codec, segment, path, offset_ms, started_at, width, height,
             key_id, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, 'open')",
        params![
            f.recording,
            to_i64(f.participant.0)?,
            f.role.as_str(),
            f.display_name,
            f.facility,
            kind_as_str(f.kind),
            source_as_str(f.source),
            f.codec,
            f.segment,
            f.path,
            f.offset_ms,
            f.started_at,
            f.width,
            f.height,
            f.key_id,
        ],
    )?;
    Ok(RecordingFileId(c.last_insert_rowid()))
}

const FILE_COLUMNS: &str = "f.id, f.recording_id, r.consultation_id, f.participant_id, f.role,
     f.display_name, f.facility, f.track_kind, f.source, f.codec, f.segment, f.path, f.offset_ms,
     f.started_at, f.duration_ms, f.frames, f.width, f.height, f.size, f.sha256, f.key_id, f.state";

fn file_row(r: &Row<'_>) -> rusqlite::Result<RecordingFile> {
    let text = |i: usize| -> rusqlite::Result<String> { r.get(i) };
    let role = text(4)?;
    let kind = text(7)?;
    let source = text(8)?;
    let size: Option<i64> = r.get(18)?;
    Ok(RecordingFile {
        id: r.get(0)?,
        recording: r.get(1)?,
        consultation: r.get(2)?,
        participant: participant(r, 3)?,
        role: Role::parse(&role).ok_or_else(|| bad("role", &role))?,
        display_name: r.get(5)?,
        facility: r.get(6)?,
        kind: parse_kind(&kind).ok_or_else(|| bad("track kind", &kind))?,
        source: parse_source(&source).ok_or_else(|| bad("source", &source))?,
        codec: r.get(9)?,
        segment: r.get(10)?,
        path: r.get(11)?,
        offset_ms: r.get(12)?,
        started_at: r.get(13)?,
        duration_ms: r.get(14)?,
        frames: r.get(15)?,
        width: r.get(16)?,
        height: r.get(17)?,
        size: size.map(|s| s.max(0) as u64),
        sha256: r.get(19)?,
        key_id: r.get(20)?,
        state: r.get(21)?,
    })
}

fn files_where(
    c: &Connection,
    condition: &str,
    p: impl rusqlite::Params,
) -> rusqlite::Result<Vec<RecordingFile>> {
    let mut st = c.prepare(&format!(
        "SELECT {FILE_COLUMNS} FROM recording_files f JOIN recordings r ON r.id = f.recording_id
         WHERE {condition} ORDER BY f.id"
    ))?;
    st.query_map(p, file_row)?.collect()
}

/// One file.
pub fn file(c: &Connection, id: RecordingFileId) -> rusqlite::Result<Option<RecordingFile>> {
    Ok(files_where(c, "f.id = ?1", [id])?.into_iter().next())
}

/// A recording's files, in the order they were opened.
pub fn files_of(c: &Connection, recording: RecordingId) -> rusqlite::Result<Vec<RecordingFile>> {
    files_where(c, "f.recording_id = ?1", [recording])
}

/// A consultation's files, every recording's, in the order they were opened.
pub fn files_of_consultation(
    c: &Connection,
    consultation: &str,
) -> rusqlite::Result<Vec<RecordingFile>> {
    files_where(c, "r.consultation_id = ?1", [consultation])
}

/// Files in state `open` (at start: the server died while writing them).
pub fn open_files(c: &Connection) -> rusqlite::Result<Vec<RecordingFile>> {
    files_where(c, "f.state = 'open'", [])
}

/// Every file that should be on disk (`verify-recordings`): all but purged.
pub fn kept_files(c: &Connection) -> rusqlite::Result<Vec<RecordingFile>> {
    files_where(c, "f.state <> 'purged'", [])
}

/// The newest finished file sealed under each key id: what a start tries
/// its recording keys on (a wrong key is found before it seals anything).
pub fn newest_per_key(c: &Connection) -> rusqlite::Result<Vec<RecordingFile>> {
    files_where(
        c,
        "f.id IN (SELECT MAX(id) FROM recording_files
                  WHERE state IN ('complete', 'incomplete') GROUP BY key_id)",
        [],
    )
}

/// Each file's size and SHA-256 as the audit chain holds them (from its
/// `recording_file_sealed` or `recording_file_incomplete` entry), for
/// `verify-recordings` to check the rows against: a file swapped together
/// with its row's hash still differs from the chain.
pub fn audited_hashes(
    c: &Connection,
) -> rusqlite::Result<std::collections::HashMap<RecordingFileId, (u64, String)>> {
    let mut st = c.prepare(
        "SELECT detail FROM audit
         WHERE action IN ('recording_file_sealed', 'recording_file_incomplete') ORDER BY id",
    )?;
    let mut out = std::collections::HashMap::new();
    for detail in st.query_map([], |r| r.get::<_, String>(0))? {
        let detail: serde_json::Value = serde_json::from_str(&detail?).unwrap_or_default();
        if let (Some(id), Some(size), Some(sha)) = (
            detail["file"].as_i64(),
            detail["size"].as_u64(),
            detail["sha256"].as_str(),
        ) {
            out.insert(RecordingFileId(id), (size, sha.to_owned()));
        }
    }
    Ok(out)
}

/// A file `purge-recordings` may delete once its retention is over: its
/// consultation's kind and when its recording ended.
#[derive(Debug, Clone)]
pub struct PurgeCandidate {
    pub file: RecordingFile,
    pub kind: ConsultationKind,
    pub ended_at: UnixTime,
}

/// Finished files (complete or incomplete) of recordings that have ended:
/// never a file still open, never one of a recording still running.
pub fn purge_candidates(c: &Connection) -> rusqlite::Result<Vec<PurgeCandidate>> {
    let mut st = c.prepare(&format!(
        "SELECT {FILE_COLUMNS}, k.kind, r.ended_at
         FROM recording_files f JOIN recordings r ON r.id = f.recording_id
             JOIN consultations k ON k.id = r.consultation_id
         WHERE f.state IN ('complete', 'incomplete') AND r.state <> 'recording'
             AND r.ended_at IS NOT NULL
         ORDER BY f.id"
    ))?;
    st.query_map([], |r| {
        let kind: String = r.get(22)?;
        Ok(PurgeCandidate {
            file: file_row(r)?,
            kind: ConsultationKind::parse(&kind).ok_or_else(|| bad("kind", &kind))?,
            ended_at: r.get(23)?,
        })
    })?
    .collect()
}

fn consultation_of(tx: &Connection, id: RecordingFileId) -> rusqlite::Result<Option<String>> {
    tx.query_row(
        "SELECT r.consultation_id FROM recording_files f JOIN recordings r ON r.id = f.recording_id
         WHERE f.id = ?1",
        [id],
        |r| r.get(0),
    )
    .optional()
}

/// Records a file's outcome (finished by the recorder: `Complete`; found
/// open after a crash, or cut by a write failure: `Incomplete`) and chains
/// its size and SHA-256 into the audit log, in one transaction. False (and
/// nothing written) when the file is not `open` any more.
pub fn finish_file(
    c: &mut Connection,
    id: RecordingFileId,
    outcome: &FileOutcome,
    at: UnixTime,
) -> rusqlite::Result<bool> {
    let action = match outcome.state {
        FileState::Complete => Action::RecordingFileSealed,
        FileState::Incomplete => Action::RecordingFileIncomplete,
        FileState::Open | FileState::Purged => {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "a file cannot finish as {}",
                outcome.state
            )));
        }
    };
    let tx = c.transaction()?;
    let changed = tx.execute(
        "UPDATE recording_files SET state = ?2, duration_ms = ?3, frames = ?4,
             width = COALESCE(?5, width), height = COALESCE(?6, height), size = ?7, sha256 = ?8
         WHERE id = ?1 AND state = 'open'",
        params![
            id,
            outcome.state,
            outcome.duration_ms,
            outcome.frames,
            outcome.width,
            outcome.height,
            to_i64(outcome.size)?,
            outcome.sha256,
        ],
    )?;
    if changed == 0 {
        return Ok(false);
    }
    let f = file(&tx, id)?.expect("the row just updated");
    crate::audit::append_in(
        &tx,
        &Entry {
            at: at.secs(),
            action,
            consultation: Some(f.consultation.clone()),
            actor: SYSTEM.to_owned(),
            detail: json!({
                "recording": f.recording,
                "file": f.id,
                "path": f.path,
                "participant": f.participant,
                "source": source_as_str(f.source),
                "segment": f.segment,
                "size": outcome.size,
                "sha256": outcome.sha256,
                "key_id": f.key_id,
            }),
        },
    )?;
    tx.commit()?;
    Ok(true)
}

/// Marks a deleted file `purged` and chains the deletion (what was deleted:
/// path, size, SHA-256, why) into the audit log, in one transaction. False
/// when the file was not complete or incomplete (open files are never
/// purged).
pub fn mark_purged(
    c: &mut Connection,
    id: RecordingFileId,
    at: UnixTime,
    retention: &str,
) -> rusqlite::Result<bool> {
    let tx = c.transaction()?;
    let Some(f) = file(&tx, id)? else {
        return Ok(false);
    };
    let changed = tx.execute(
        "UPDATE recording_files SET state = 'purged', purged_at = ?2
         WHERE id = ?1 AND state IN ('complete', 'incomplete')",
        params![id, at],
    )?;
    if changed == 0 {
        return Ok(false);
    }
    let consultation = consultation_of(&tx, id)?;
    crate::audit::append_in(
        &tx,
        &Entry {
            at: at.secs(),
            action: Action::RecordingFilePurged,
            consultation,
            actor: SYSTEM.to_owned(),
            detail: json!({
                "recording": f.recording,
                "file": f.id,
                "path": f.path,
                "size": f.size,
                "sha256": f.sha256,
                "was": f.state,
                "retention": retention,
            }),
        },
    )?;
    tx.commit()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use tuxa_protocol::{MediaKind, TrackSource};
    use tuxa_records::recording::{Codec, RecordingPath};

    use super::*;

    const ROOM: &str = "abcdefghijklmnop";

    fn db() -> Connection {
        let c = crate::test_db();
        c.execute(
            "INSERT INTO consultations(id, kind, title, status, created_at)
             VALUES (?1, 'conference', 't', 'open', 0)",
            [ROOM],
        )
        .unwrap();
        c
    }

    fn new_file(rec: RecordingId, n: u32) -> NewRecordingFile {
        NewRecordingFile {
            recording: rec,
            participant: ParticipantId(3),
            role: Role::Doctor,
            display_name: "BS. Lan".into(),
            facility: Some("BV Tỉnh".into()),
            kind: MediaKind::Video,
            source: TrackSource::SecondCamera,
            codec: Codec::Vp8,
            segment: n,
            path: RecordingPath::parse(&format!("{ROOM}/1/p3-second_camera-{n}.webm.sealed"))
                .unwrap(),
            offset_ms: 1200,
            started_at: UnixTime(1_700_000_001),
            width: Some(1280),
            height: Some(720),
            key_id: 2,
        }
    }

    fn outcome(state: FileState) -> FileOutcome {
        FileOutcome {
            state,
            duration_ms: Some(61_000),
            frames: Some(1830),
            width: None,
            height: None,
            size: 123_456,
            sha256: "ab".repeat(32),
        }
    }

    fn audit_actions(c: &Connection) -> Vec<(String, String)> {
        let mut st = c
            .prepare("SELECT action, detail FROM audit ORDER BY id")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn a_recording_and_its_files_go_through_their_states_with_audit() {
        let mut c = db();
        let rec = start(
            &c,
            &NewRecording {
                consultation: ROOM.into(),
                started_by: StartedBy {
                    participant: ParticipantId(3),
                    name: "BS. Lan".into(),
                    staff: None,
                },
                started_at: UnixTime(1_700_000_000),
            },
        )
        .unwrap();
        assert_eq!(unfinished(&c).unwrap().len(), 1);
        let a = open_file(&c, &new_file(rec, 0)).unwrap();
        let b = open_file(&c, &new_file(rec, 1)).unwrap();
        // The same path twice is refused: two rows never share a file.
        assert!(open_file(&c, &new_file(rec, 1)).is_err());
        assert_eq!(open_files(&c).unwrap().len(), 2);

        assert!(
            finish_file(
                &mut c,
                a,
                &outcome(FileState::Complete),
                UnixTime(1_700_000_070)
            )
            .unwrap()
        );
        // Twice: the first outcome stands, nothing more is audited.
        assert!(
            !finish_file(
                &mut c,
                a,
                &outcome(FileState::Incomplete),
                UnixTime(1_700_000_071)
            )
            .unwrap()
        );
        assert!(
            finish_file(
                &mut c,
                b,
                &outcome(FileState::Incomplete),
                UnixTime(1_700_000_072)
            )
            .unwrap()
        );
        assert!(finish_file(&mut c, b, &outcome(FileState::Open), UnixTime(1)).is_err());
        assert!(
            end(
                &c,
                rec,
                UnixTime(1_700_000_080),
                RecordingState::Incomplete,
                StopReason::ServerRestart
            )
            .unwrap()
        );
        assert!(
            !end(
                &c,
                rec,
                UnixTime(1_700_000_090),
                RecordingState::Complete,
                StopReason::Stopped
            )
            .unwrap()
        );

        let r = get(&c, rec).unwrap().unwrap();
        assert_eq!(r.state, RecordingState::Incomplete);
        assert_eq!(r.stop_reason, Some(StopReason::ServerRestart));
        assert_eq!(r.ended_at, Some(UnixTime(1_700_000_080)));
        assert_eq!(of_consultation(&c, ROOM).unwrap(), vec![r.clone()]);
        let fa = file(&c, a).unwrap().unwrap();
        assert_eq!(fa.state, FileState::Complete);
        assert_eq!(fa.source, TrackSource::SecondCamera);
        assert_eq!(fa.role, Role::Doctor);
        assert_eq!(fa.size, Some(123_456));
        assert_eq!(fa.width, Some(1280), "a None width keeps the opened one");
        assert_eq!(fa.duration_ms, Some(61_000));
        assert_eq!(fa.consultation, ROOM);
        assert_eq!(files_of_consultation(&c, ROOM).unwrap().len(), 2);

        let actions = audit_actions(&c);
        assert_eq!(
            actions.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
            ["recording_file_sealed", "recording_file_incomplete"]
        );
        assert!(actions[0].1.contains(&"ab".repeat(32)), "{}", actions[0].1);
        assert!(actions[0].1.contains("\"size\":123456"), "{}", actions[0].1);

        // Purge: both are candidates; an open file of a running recording is not.
        let rec2 = start(
            &c,
            &NewRecording {
                consultation: ROOM.into(),
                started_by: r.started_by.clone(),
                started_at: UnixTime(1_700_001_000),
            },
        )
        .unwrap();
        let mut open = new_file(rec2, 0);
        open.path = RecordingPath::parse("abcdefghijklmnop/2/x.sealed").unwrap();
        let open = open_file(&c, &open).unwrap();
        let cands = purge_candidates(&c).unwrap();
        assert_eq!(
            cands.iter().map(|p| p.file.id).collect::<Vec<_>>(),
            vec![a, b]
        );
        assert_eq!(cands[0].kind, ConsultationKind::Conference);
        assert_eq!(cands[0].ended_at, UnixTime(1_700_000_080));
        assert!(!mark_purged(&mut c, open, UnixTime(1_800_000_000), "conference=1d").unwrap());
        assert!(mark_purged(&mut c, a, UnixTime(1_800_000_000), "conference=1d").unwrap());
        assert!(!mark_purged(&mut c, a, UnixTime(1_800_000_001), "conference=1d").unwrap());
        assert_eq!(file(&c, a).unwrap().unwrap().state, FileState::Purged);
        assert_eq!(kept_files(&c).unwrap().len(), 2);
        let last = audit_actions(&c).pop().unwrap();
        assert_eq!(last.0, "recording_file_purged");
        assert!(
            last.1.contains("conference=1d") && last.1.contains("\"was\":\"complete\""),
            "{}",
            last.1
        );
        assert!(matches!(
            crate::audit::verify(&c).unwrap(),
            tuxa_records::audit::Verdict::Intact { entries: 3, .. }
        ));
    }

    #[test]
    fn the_schema_refuses_what_the_types_would_not_write() {
        let c = db();
        let rec = start(
            &c,
            &NewRecording {
                consultation: ROOM.into(),
                started_by: StartedBy {
                    participant: ParticipantId(1),
                    name: "x".into(),
                    staff: None,
                },
                started_at: UnixTime(1),
            },
        )
        .unwrap();
        // An ended recording needs its end time; a finished file its hash.
        assert!(
            c.execute(
                "UPDATE recordings SET state = 'complete' WHERE id = ?1",
                [rec]
            )
            .is_err()
        );
        let f = open_file(&c, &new_file(rec, 0)).unwrap();
        assert!(
            c.execute(
                "UPDATE recording_files SET state = 'complete' WHERE id = ?1",
                [f]
            )
            .is_err()
        );
        assert!(
            c.execute(
                "UPDATE recording_files SET sha256 = 'XYZ' WHERE id = ?1",
                [f]
            )
            .is_err()
        );
        assert!(
            c.execute(
                "UPDATE recording_files SET source = 'camera2' WHERE id = ?1",
                [f]
            )
            .is_err()
        );
    }
}
