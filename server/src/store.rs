//! The SQLite file: consultations, who attended, links minted, and the
//! server's secrets. One thread owns the connection; everyone else sends it
//! closures and awaits the answer, so no lock is held across an `.await` and
//! a slow disk never stalls the async runtime.

use std::path::Path;
use std::sync::{Arc, mpsc};

use anyhow::Context;
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::secrets::{Keyring, KeysConfig};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Job>,
    /// Seals and opens the secrets in the file (secrets.rs).
    keys: Arc<Keyring>,
}

/// Schema versions, applied in order; `PRAGMA user_version` says how many ran.
const MIGRATIONS: &[&str] = &[
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
];

impl Store {
    /// Opens (or makes) the SQLite file at `path` with the master key
    /// `keys` names: see [`open_connection`].
    pub fn open_with(path: &Path, keys: &KeysConfig) -> anyhow::Result<Store> {
        let (mut conn, keys) = open_connection(path, keys)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("tuxa-store".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
            })?;
        Ok(Store {
            tx,
            keys: Arc::new(keys),
        })
    }

    /// A store under a fixed test key.
    #[cfg(test)]
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        Store::open_with(path, &KeysConfig::for_tests())
    }

    /// The keys that seal and open the file's secrets.
    pub fn keys(&self) -> &Arc<Keyring> {
        &self.keys
    }

    /// Runs `f` on the store's thread.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> anyhow::Result<R> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Box::new(move |c| {
                let _ = tx.send(f(c));
            }))
            .map_err(|_| anyhow::anyhow!("the store thread has stopped"))?;
        Ok(rx.await.context("the store thread dropped a request")??)
    }

    /// Runs a domain operation on the store's thread: its refusals come back
    /// as the domain's errors (`tuxa_records::Error`), and a store that has
    /// stopped as an internal one.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> tuxa_records::Result<R> + Send + 'static,
    ) -> tuxa_records::Result<R> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Box::new(move |c| {
                let _ = tx.send(f(c));
            }))
            .map_err(|_| tuxa_records::Error::internal("the store thread has stopped"))?;
        rx.await
            .map_err(|_| tuxa_records::Error::internal("the store thread dropped a request"))?
    }

    /// Appends to the audit log, in order, without waiting.
    pub fn audit(&self, entry: crate::audit::Entry) {
        self.spawn("audit", move |c| crate::audit::append(c, &entry));
    }

    /// Runs `f` on the store's thread without waiting (records that must
    /// not slow the signaling path). Failures are logged.
    pub fn spawn(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<()> + Send + 'static,
    ) {
        let job: Job = Box::new(move |c| {
            if let Err(e) = f(c) {
                tracing::error!("store: {what}: {e}");
            }
        });
        if self.tx.send(job).is_err() {
            tracing::error!("store: {what}: the store thread has stopped");
        }
    }
}

/// Opens the SQLite file at `path` for tuxa (the server, `load-demo`,
/// `rotate-key`), in this order:
/// 1. its folder is made 0700 and its files 0600 (warned about when they
///    were not): it holds patients' records and attachments;
/// 2. the master key is read (or made, only while no secret is sealed yet)
///    and checked against every sealed secret, before anything is written:
///    a wrong key stops here with the file unchanged;
/// 3. the schema is brought up to date;
/// 4. plain secrets are sealed, and those under an older key sealed again.
pub fn open_connection(path: &Path, keys: &KeysConfig) -> anyhow::Result<(Connection, Keyring)> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    secure_dir(dir)?;
    if !path.exists() {
        // SQLite would make it 0644 (less the umask); its -wal and -shm
        // files then take the database file's mode.
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
    }
    let mut conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    // WAL: readers do not block the writer, and a crash loses at most
    // the transaction in flight, never what was committed.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    secure_files(dir)?;
    let sealed = crate::secrets::holds_sealed(&conn)?;
    let keyring = crate::secrets::load_keyring(keys, !sealed, dir)?;
    crate::secrets::check_opens(&conn, &keyring)?;
    migrate(&mut conn)?;
    crate::secrets::seal_in_place(&mut conn, &keyring)?;
    Ok((conn, keyring))
}

/// Makes `dir` (0700) or tightens it to 0700.
fn secure_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        return Ok(());
    }
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            "the data directory {} was open to others (mode {mode:o}): made 0700",
            dir.display()
        );
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} 0700", dir.display()))?;
    }
    Ok(())
}

/// Tightens every file under `dir` to 0600 (symbolic links are left alone:
/// their targets are not ours to change).
fn secure_files(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            secure_dir(&path)?;
            secure_files(&path)?;
        } else if kind.is_file() {
            let mode = entry.metadata()?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "{} was readable by others (mode {mode:o}): made 0600",
                    path.display()
                );
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("making {} 0600", path.display()))?;
            }
        }
    }
    Ok(())
}

pub(crate) fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let done: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let done = usize::try_from(done).unwrap_or(usize::MAX);
    if done > MIGRATIONS.len() {
        anyhow::bail!(
            "the database is from a newer tuxa (schema {done}, this build knows {})",
            MIGRATIONS.len()
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .with_context(|| format!("schema migration {}", i + 1))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

// The consultations' and meta rows: in the store crate; the row type is the record's.
pub use tuxa_records::record::ConsultationRow;
pub use tuxa_store::consultations::{facility_contact, get_meta, set_meta};
pub use tuxa_store::record::{consultation, consultations};
