//! The schema: its migrations, applied in order, and how the connection is
//! set up for the record.
//!
//! `PRAGMA user_version` says how many migrations ran, as it always has, so
//! a file made by any earlier tuxa opens and is brought up to date.
//!
//! Why a hand-written runner and not a migration crate: the maintained ones
//! do not build with this workspace's rusqlite 0.43 (`rusqlite_migration`
//! 2.6, the newest, requires rusqlite ^0.40; `refinery` allows at most
//! 0.41 and keeps its own history table instead of `user_version`), and
//! two rusqlite versions cannot link two SQLite libraries into one binary.
//! The runner is the same few lines those crates run: one transaction per
//! migration, `user_version` set inside it.

use rusqlite::Connection;

/// What can stop the schema from being brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the database is from a newer tuxa (schema {found}, this build knows {known})")]
    Newer { found: usize, known: usize },
    #[error("schema migration {number}: {source}")]
    Migration {
        number: usize,
        #[source]
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Sets up a connection to the record's file: WAL, full sync, foreign keys,
/// and a busy timeout.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // WAL: readers do not block the writer, and a crash loses at most the
    // transaction in flight, never what was committed.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL, not NORMAL: in WAL mode NORMAL syncs only at checkpoints, so a
    // power cut (not a process crash) can take back the last transactions a
    // caller was told were committed: an attendance, an audit entry, a
    // conclusion. The record must not lose what it said it kept (Circular
    // 49/2017, Law 91/2025); FULL syncs the WAL at every commit, which
    // costs a few milliseconds per write on the store thread, far from the
    // media path.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

/// How many migrations the file at `conn` has had.
pub fn version(conn: &Connection) -> rusqlite::Result<usize> {
    let done: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok(usize::try_from(done).unwrap_or(usize::MAX))
}

/// Brings the schema up to date: runs the migrations not yet applied, each
/// in its own transaction with the new `user_version`, so that a crash
/// leaves the file at a whole version. A file from a newer tuxa is refused
/// unchanged.
pub fn migrate(conn: &mut Connection) -> Result<(), SchemaError> {
    let done = version(conn)?;
    if done > MIGRATIONS.len() {
        return Err(SchemaError::Newer {
            found: done,
            known: MIGRATIONS.len(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|source| SchemaError::Migration {
                number: i + 1,
                source,
            })?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

pub const MIGRATIONS: &[&str] = &[
    // 1: the foundation.
    "CREATE TABLE meta (
         key TEXT PRIMARY KEY,
         value BLOB NOT NULL
     ) STRICT;
     CREATE TABLE consultations (
         id TEXT PRIMARY KEY,
         kind TEXT NOT NULL CHECK (kind IN ('visit', 'conference')),
         title TEXT NOT NULL,
         status TEXT NOT NULL CHECK (status IN ('open', 'ended')),
         created_at INTEGER NOT NULL,
         ended_at INTEGER
     ) STRICT;
     CREATE TABLE links (
         id INTEGER PRIMARY KEY,
         consultation_id TEXT NOT NULL REFERENCES consultations(id),
         role TEXT NOT NULL,
         name TEXT NOT NULL,
         facility TEXT,
         created_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL
     ) STRICT;
     CREATE TABLE attendance (
         id INTEGER PRIMARY KEY,
         consultation_id TEXT NOT NULL REFERENCES consultations(id),
         participant_id INTEGER NOT NULL,
         name TEXT NOT NULL,
         role TEXT NOT NULL,
         facility TEXT,
         joined_at INTEGER NOT NULL,
         left_at INTEGER,
         leave_reason TEXT
     ) STRICT;
     CREATE INDEX attendance_by_consultation ON attendance(consultation_id);",
    // 2: the audit log (see audit.rs). Append-only: triggers refuse edits, so
    // tampering needs deliberate work outside tuxa, and the chain catches it.
    "CREATE TABLE audit (
         id INTEGER PRIMARY KEY,
         at INTEGER NOT NULL,
         action TEXT NOT NULL,
         consultation_id TEXT NOT NULL,
         actor TEXT NOT NULL,
         detail TEXT NOT NULL,
         prev_hash TEXT NOT NULL,
         hash TEXT NOT NULL
     ) STRICT;
     CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
         BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
     CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
         BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
    // 3: the directory (see directory.rs, auth.rs): facilities, practitioners,
    // staff accounts and their sessions.
    "CREATE TABLE facilities (
         id INTEGER PRIMARY KEY,
         name TEXT NOT NULL,
         tier TEXT NOT NULL CHECK (tier IN ('province', 'district', 'commune_station', 'cdc')),
         parent_id INTEGER REFERENCES facilities(id),
         created_at INTEGER NOT NULL
     ) STRICT;
     CREATE UNIQUE INDEX facilities_by_parent_and_name ON facilities(ifnull(parent_id, 0), name);
     CREATE TABLE practitioners (
         id INTEGER PRIMARY KEY,
         name TEXT NOT NULL,
         title TEXT NOT NULL,
         licence_number TEXT NOT NULL UNIQUE,
         specialty TEXT NOT NULL,
         facility_id INTEGER NOT NULL REFERENCES facilities(id),
         created_at INTEGER NOT NULL
     ) STRICT;
     CREATE INDEX practitioners_by_facility ON practitioners(facility_id);
     CREATE TABLE staff (
         id INTEGER PRIMARY KEY,
         username TEXT NOT NULL UNIQUE,
         display_name TEXT NOT NULL,
         password_hash TEXT NOT NULL,
         totp_secret BLOB NOT NULL,
         totp_last_step INTEGER NOT NULL DEFAULT 0,
         role TEXT NOT NULL CHECK (role IN ('doctor', 'nurse', 'coordinator', 'admin')),
         facility_id INTEGER NOT NULL REFERENCES facilities(id),
         practitioner_id INTEGER UNIQUE REFERENCES practitioners(id),
         disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
         created_at INTEGER NOT NULL
     ) STRICT;
     CREATE INDEX staff_by_facility ON staff(facility_id);
     CREATE TABLE staff_sessions (
         token_hash BLOB PRIMARY KEY,
         staff_id INTEGER NOT NULL REFERENCES staff(id),
         created_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL,
         last_seen_at INTEGER NOT NULL
     ) STRICT;
     CREATE INDEX staff_sessions_by_staff ON staff_sessions(staff_id);",
    // 4: consent, one row per answer set (Law 91/2025: per purpose, with the
    // text's version and the time; a change of mind is a new row).
    "CREATE TABLE consents (
         id INTEGER PRIMARY KEY,
         consultation_id TEXT NOT NULL REFERENCES consultations(id),
         participant_id INTEGER NOT NULL,
         text_version TEXT NOT NULL,
         remote_examination INTEGER NOT NULL CHECK (remote_examination IN (0, 1)),
         third_parties INTEGER NOT NULL CHECK (third_parties IN (0, 1)),
         recording INTEGER NOT NULL CHECK (recording IN (0, 1)),
         at INTEGER NOT NULL
     ) STRICT;
     CREATE INDEX consents_by_consultation ON consents(consultation_id);",
    // 5: on-call queues (a specialty at a facility) and their rosters
    // (weekday or every day, minutes since local midnight, Vietnam time).
    "CREATE TABLE queues (
         id INTEGER PRIMARY KEY,
         facility_id INTEGER NOT NULL REFERENCES facilities(id),
         specialty TEXT NOT NULL,
         name TEXT NOT NULL,
         created_at INTEGER NOT NULL,
         UNIQUE (facility_id, specialty)
     ) STRICT;
     CREATE TABLE rosters (
         id INTEGER PRIMARY KEY,
         queue_id INTEGER NOT NULL REFERENCES queues(id),
         staff_id INTEGER NOT NULL REFERENCES staff(id),
         weekday INTEGER CHECK (weekday BETWEEN 0 AND 6),
         start_min INTEGER NOT NULL CHECK (start_min BETWEEN 0 AND 1440),
         end_min INTEGER NOT NULL CHECK (end_min BETWEEN 0 AND 1440),
         CHECK (start_min < end_min)
     ) STRICT;
     CREATE INDEX rosters_by_queue ON rosters(queue_id);",
    // 6: appointments (a visit at a set time; its links open 15 minutes
    // before and expire after, see appointments.rs).
    "CREATE TABLE appointments (
         id INTEGER PRIMARY KEY,
         consultation_id TEXT NOT NULL UNIQUE REFERENCES consultations(id),
         starts_at INTEGER NOT NULL,
         duration_min INTEGER NOT NULL CHECK (duration_min BETWEEN 5 AND 240),
         created_at INTEGER NOT NULL
     ) STRICT;
     CREATE INDEX appointments_by_start ON appointments(starts_at);",
    // 7: queue events for the activity report (reports.rs): aggregates
    // only, so a ticket is kept as a short hash and nothing names a patient.
    "CREATE TABLE queue_events (
         id INTEGER PRIMARY KEY,
         at INTEGER NOT NULL,
         queue_id INTEGER NOT NULL REFERENCES queues(id),
         kind TEXT NOT NULL,
         ticket_hash TEXT NOT NULL,
         waited_secs INTEGER
     ) STRICT;
     CREATE INDEX queue_events_by_time ON queue_events(at);",
    // 8: case conferences (conferences.rs), the facility a consultation
    // belongs to (who may see it), licence numbers on attendance, and chat
    // kept with a conference's record.
    "ALTER TABLE consultations ADD COLUMN facility_id INTEGER REFERENCES facilities(id);
     ALTER TABLE attendance ADD COLUMN licence_number TEXT;
     CREATE TABLE chat_messages (
         id INTEGER PRIMARY KEY,
         consultation_id TEXT NOT NULL REFERENCES consultations(id),
         participant_id INTEGER NOT NULL,
         name TEXT NOT NULL,
         text TEXT NOT NULL,
         at INTEGER NOT NULL
     ) STRICT;
     CREATE INDEX chat_by_consultation ON chat_messages(consultation_id);
     CREATE TABLE conference_requests (
         id INTEGER PRIMARY KEY,
         urgency TEXT NOT NULL CHECK (urgency IN ('routine', 'urgent', 'emergency')),
         from_facility_id INTEGER NOT NULL REFERENCES facilities(id),
         to_facility_id INTEGER NOT NULL REFERENCES facilities(id),
         specialty TEXT NOT NULL,
         patient_name TEXT NOT NULL,
         patient_birth_year INTEGER,
         patient_sex TEXT CHECK (patient_sex IN ('male', 'female', 'other')),
         summary TEXT NOT NULL,
         question TEXT NOT NULL,
         requested_by INTEGER NOT NULL REFERENCES staff(id),
         created_at INTEGER NOT NULL,
         consent_text_version TEXT NOT NULL,
         consent_remote_examination INTEGER NOT NULL CHECK (consent_remote_examination = 1),
         consent_third_parties INTEGER NOT NULL CHECK (consent_third_parties IN (0, 1)),
         consent_recording INTEGER NOT NULL CHECK (consent_recording IN (0, 1)),
         declined_at INTEGER,
         decline_reason TEXT,
         consultation_id TEXT UNIQUE REFERENCES consultations(id),
         starts_at INTEGER,
         duration_min INTEGER,
         chair_staff_id INTEGER REFERENCES staff(id),
         scheduled_by TEXT,
         secretary_staff_id INTEGER REFERENCES staff(id),
         conclusion TEXT,
         conclusion_by INTEGER REFERENCES staff(id),
         conclusion_at INTEGER
     ) STRICT;
     CREATE TABLE conference_invitees (
         request_id INTEGER NOT NULL REFERENCES conference_requests(id),
         staff_id INTEGER NOT NULL REFERENCES staff(id),
         PRIMARY KEY (request_id, staff_id)
     ) STRICT;
     CREATE INDEX invitees_by_staff ON conference_invitees(staff_id);
     CREATE TABLE conference_attachments (
         id INTEGER PRIMARY KEY,
         request_id INTEGER NOT NULL REFERENCES conference_requests(id),
         name TEXT NOT NULL,
         content_type TEXT NOT NULL,
         size INTEGER NOT NULL,
         sha256 TEXT NOT NULL,
         data BLOB NOT NULL,
         uploaded_by TEXT NOT NULL,
         uploaded_at INTEGER NOT NULL
     ) STRICT;
     CREATE INDEX attachments_by_request ON conference_attachments(request_id);",
    // 9: continuity evidence (Circular 49/2017 asks for an unbroken
    // connection): each participant's link telemetry, aggregated per window
    // of ~10 s (hub.rs, QualityWindow), and every gap in their connection
    // (dropped, then back with the same link or gone at the end of the
    // reconnect grace window).
    "CREATE TABLE link_quality (
         id INTEGER PRIMARY KEY,
         consultation_id TEXT NOT NULL REFERENCES consultations(id),
         participant_id INTEGER NOT NULL,
         from_at INTEGER NOT NULL,
         to_at INTEGER NOT NULL,
         samples INTEGER NOT NULL,
         rtt_ms_avg INTEGER,
         rtt_ms_max INTEGER,
         loss_pct_max REAL,
         jitter_ms_max INTEGER,
         frame_height_min INTEGER,
         covered_ms INTEGER NOT NULL,
         audio_only_ms INTEGER NOT NULL
     ) STRICT;
     CREATE INDEX link_quality_by_consultation ON link_quality(consultation_id);
     CREATE TABLE link_gaps (
         id INTEGER PRIMARY KEY,
         consultation_id TEXT NOT NULL REFERENCES consultations(id),
         participant_id INTEGER NOT NULL,
         started_at INTEGER NOT NULL,
         ended_at INTEGER,
         outcome TEXT CHECK (outcome IN ('resumed', 'left'))
     ) STRICT;
     CREATE INDEX link_gaps_by_consultation ON link_gaps(consultation_id);",
    // Refusals that strangers can cause (wrong keys, forged links, failed
    // sign-ins) are aggregated per window instead of chained one by one
    // (audit.rs, `append`): the counts of a window still open live here.
    "CREATE TABLE audit_strangers (
         key TEXT PRIMARY KEY,
         action TEXT NOT NULL,
         consultation_id TEXT NOT NULL,
         actor TEXT NOT NULL,
         detail TEXT NOT NULL,
         first_at INTEGER NOT NULL,
         written INTEGER NOT NULL,
         repeated INTEGER NOT NULL,
         repeated_from INTEGER,
         repeated_to INTEGER
     ) STRICT;",
    // Who the chair removed from a room (hub.rs, `Bar`), kept so that a
    // restart does not let them back: the staff account, or for a patient
    // or guest the SHA-256 of their link's token (never the token).
    "CREATE TABLE room_bars (
         id INTEGER PRIMARY KEY,
         consultation_id TEXT NOT NULL REFERENCES consultations(id),
         staff_id INTEGER,
         link_sha256 BLOB CHECK (link_sha256 IS NULL OR length(link_sha256) = 32),
         barred_at INTEGER NOT NULL,
         CHECK ((staff_id IS NULL) <> (link_sha256 IS NULL))
     ) STRICT;
     CREATE INDEX room_bars_by_consultation ON room_bars(consultation_id);",
    // Closing the care loop: why a consultation ended (`EndReason`), a
    // facility's phone for the patients' end screen, and a conference the
    // coordinator called off (kept, with why, rather than deleted).
    "ALTER TABLE consultations ADD COLUMN end_reason TEXT
         CHECK (end_reason IN ('ended', 'abandoned', 'server_restart', 'cancelled'));
     ALTER TABLE facilities ADD COLUMN phone TEXT;
     ALTER TABLE conference_requests ADD COLUMN cancelled_at INTEGER;
     ALTER TABLE conference_requests ADD COLUMN cancel_reason TEXT;",
    // Minutes a hospital can file (TT49/2017 Appendix I; Circular 13/2025
    // links records by the citizen ID): the patient's identity as the
    // requester gave it, the management plan (hướng xử trí) entered with the
    // conclusion, and a queue visit's stated reason (its "Tóm tắt").
    "ALTER TABLE conference_requests ADD COLUMN patient_address TEXT;
     ALTER TABLE conference_requests ADD COLUMN patient_record_number TEXT;
     ALTER TABLE conference_requests ADD COLUMN patient_citizen_id TEXT
         CHECK (patient_citizen_id IS NULL OR (length(patient_citizen_id) = 12
                AND patient_citizen_id NOT GLOB '*[^0-9]*'));
     ALTER TABLE conference_requests ADD COLUMN management_plan TEXT;
     CREATE TABLE visit_reasons (
         consultation_id TEXT PRIMARY KEY REFERENCES consultations(id),
         reason TEXT NOT NULL,
         at INTEGER NOT NULL
     ) STRICT;",
    // Recordings (issue 13; recordings.rs): one row per started recording,
    // one per sealed track file under data/recordings/ (its size and
    // SHA-256 also go into the audit chain). A purged file keeps its row.
    "CREATE TABLE recordings (
         id INTEGER PRIMARY KEY,
         consultation_id TEXT NOT NULL REFERENCES consultations(id),
         started_by_participant INTEGER NOT NULL,
         started_by_name TEXT NOT NULL,
         started_by_staff INTEGER REFERENCES staff(id),
         started_at INTEGER NOT NULL,
         ended_at INTEGER,
         state TEXT NOT NULL CHECK (state IN ('recording', 'complete', 'incomplete', 'failed')),
         stop_reason TEXT CHECK (stop_reason IN ('stopped', 'consent_withdrawn', 'room_ended',
             'write_failed', 'server_restart', 'keys_unavailable')),
         CHECK ((state = 'recording') = (ended_at IS NULL))
     ) STRICT;
     CREATE INDEX recordings_by_consultation ON recordings(consultation_id);
     CREATE TABLE recording_files (
         id INTEGER PRIMARY KEY,
         recording_id INTEGER NOT NULL REFERENCES recordings(id),
         participant_id INTEGER NOT NULL,
         role TEXT NOT NULL CHECK (role IN ('patient', 'doctor', 'nurse', 'guest')),
         display_name TEXT NOT NULL,
         facility TEXT,
         track_kind TEXT NOT NULL CHECK (track_kind IN ('audio', 'video')),
         source TEXT NOT NULL CHECK (source IN ('camera', 'microphone', 'screen', 'second_camera')),
         codec TEXT NOT NULL CHECK (codec IN ('opus', 'vp8', 'vp9', 'h264', 'av1')),
         segment INTEGER NOT NULL CHECK (segment >= 0),
         path TEXT NOT NULL UNIQUE,
         offset_ms INTEGER NOT NULL,
         started_at INTEGER NOT NULL,
         duration_ms INTEGER,
         frames INTEGER,
         width INTEGER,
         height INTEGER,
         size INTEGER,
         sha256 TEXT CHECK (sha256 IS NULL OR (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*')),
         key_id INTEGER NOT NULL CHECK (key_id > 0),
         state TEXT NOT NULL CHECK (state IN ('open', 'complete', 'incomplete', 'purged')),
         purged_at INTEGER,
         CHECK (state = 'open' OR (size IS NOT NULL AND sha256 IS NOT NULL))
     ) STRICT;
     CREATE INDEX recording_files_by_recording ON recording_files(recording_id);
     CREATE INDEX recording_files_by_state ON recording_files(state);",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The runner as server/src/store.rs had it before this crate (commit
    /// f955473), kept verbatim but for its error type: what made every
    /// existing database.
    fn old_migrate(conn: &mut Connection, upto: usize) -> rusqlite::Result<()> {
        let done: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let done = usize::try_from(done).unwrap_or(usize::MAX);
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(done).take(upto - done) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    fn schema(c: &Connection) -> Vec<(String, String)> {
        c.prepare("SELECT name, ifnull(sql, '') FROM sqlite_master ORDER BY name")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    fn file_conn(dir: &std::path::Path, name: &str) -> Connection {
        let c = Connection::open(dir.join(name)).unwrap();
        configure(&c).unwrap();
        c
    }

    #[test]
    fn files_made_by_the_old_runner_open_and_migrate_unchanged() {
        let dir = std::env::temp_dir().join(format!("tuxa-schema-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut fresh = file_conn(&dir, "fresh.db");
        migrate(&mut fresh).unwrap();
        assert_eq!(version(&fresh).unwrap(), MIGRATIONS.len());
        let want = schema(&fresh);

        // A file stopped after every possible version by the old code, with
        // a row it holds at that version, is brought up to date: same
        // schema as a fresh one, the row kept.
        for upto in 0..=MIGRATIONS.len() {
            let name = format!("old-{upto}.db");
            {
                let mut old = Connection::open(dir.join(&name)).unwrap();
                old.pragma_update(None, "journal_mode", "WAL").unwrap();
                old.pragma_update(None, "synchronous", "NORMAL").unwrap();
                old_migrate(&mut old, upto).unwrap();
                if upto >= 1 {
                    old.execute(
                        "INSERT INTO meta(key, value) VALUES ('token_key', x'0102')",
                        [],
                    )
                    .unwrap();
                }
            }
            let mut c = file_conn(&dir, &name);
            assert_eq!(version(&c).unwrap(), upto);
            migrate(&mut c).unwrap();
            assert_eq!(version(&c).unwrap(), MIGRATIONS.len(), "from {upto}");
            assert_eq!(schema(&c), want, "from {upto}");
            if upto >= 1 {
                let v: Vec<u8> = c
                    .query_row("SELECT value FROM meta WHERE key = 'token_key'", [], |r| {
                        r.get(0)
                    })
                    .unwrap();
                assert_eq!(v, [1, 2], "from {upto}");
            }
            // Running again changes nothing.
            migrate(&mut c).unwrap();
            assert_eq!(schema(&c), want);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_from_a_newer_tuxa_is_refused_unchanged() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        let newer = MIGRATIONS.len() as i64 + 1;
        c.pragma_update(None, "user_version", newer).unwrap();
        let before = schema(&c);
        let e = migrate(&mut c).unwrap_err();
        assert!(
            matches!(e, SchemaError::Newer { found, known } if found == newer as usize && known == MIGRATIONS.len()),
            "{e}"
        );
        assert!(e.to_string().contains("newer tuxa"), "{e}");
        assert_eq!(schema(&c), before);
    }

    #[test]
    fn the_record_is_synced_at_every_commit() {
        let dir = std::env::temp_dir().join(format!("tuxa-sync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = file_conn(&dir, "r.db");
        let mode: String = c
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        let fk: i64 = c
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!((mode.as_str(), sync, fk), ("wal", 2, 1), "2 is FULL");
        drop(c);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
