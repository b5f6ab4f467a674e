//! Recordings at rest, the server's side (issue 13; docs/recording.md):
//! loading the recording keys, crash recovery at start, `tuxa
//! verify-recordings`, retention and `tuxa purge-recordings`, and `tuxa
//! recording-key`. The file format is `tuxa_recording::seal`'s, the rows
//! `tuxa_store::recordings`'.
//!
//! The recording keys are not the secrets' master key (secrets.rs): they
//! are many (rotation keeps every old one, since a recording is kept ten
//! years), and losing them loses the recordings, not the server. So a
//! missing or bad key never stops a start: the server serves calls, logs
//! one line saying why, and recordings are unavailable.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rusqlite::Connection;
use tuxa_recording::keys::{KEY_LEN, KeyId, KeyRing, key_line};
use tuxa_recording::seal::{SealError, SealReader, hash_all};
use tuxa_records::UnixTime;
use tuxa_records::recording::{
    FileOutcome, FileState, RecordingFile, RecordingState, Retention, StopReason,
};
use tuxa_store::recordings;

/// The environment variable holding the keys' text itself (no flag: a key
/// on a command line is visible to every user of the machine).
pub const KEYS_ENV: &str = "TUXA_RECORDING_KEYS";

/// Where the recording keys come from.
#[derive(Clone, Default)]
pub enum KeySource {
    /// None configured: recordings are unavailable.
    #[default]
    None,
    /// `--recording-keys FILE` (`TUXA_RECORDING_KEY_FILE`): outside the data
    /// directory, readable by its owner only.
    File(PathBuf),
    /// `TUXA_RECORDING_KEYS`: the key lines themselves.
    Text(String),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::None => f.write_str("None"),
            KeySource::File(p) => f.debug_tuple("File").field(p).finish(),
            KeySource::Text(_) => f.write_str("Text(…)"),
        }
    }
}

impl KeySource {
    fn describe(&self) -> String {
        match self {
            KeySource::None => "no recording key".to_owned(),
            KeySource::File(p) => format!("the recording key file {}", p.display()),
            KeySource::Text(_) => KEYS_ENV.to_owned(),
        }
    }
}

/// The recordings' part of the configuration.
#[derive(Debug, Clone, Default)]
pub struct RecordingConfig {
    pub keys: KeySource,
    /// How long recordings are kept, per consultation kind.
    pub retention: Retention,
}

impl RecordingConfig {
    /// A fixed key (id 1), for tests only.
    pub fn for_tests() -> RecordingConfig {
        RecordingConfig {
            keys: KeySource::Text(key_line(KeyId(1), &[0x6b; KEY_LEN])),
            retention: Retention::default(),
        }
    }
}

/// Whether recordings can be made and read, as the hub and the recorder
/// see it.
#[derive(Debug, Clone)]
pub enum RecordingKeys {
    Available(Arc<KeyRing>),
    /// Why not, in one sentence for the log and the operator.
    Unavailable(String),
}

impl RecordingKeys {
    pub fn ring(&self) -> Option<&Arc<KeyRing>> {
        match self {
            RecordingKeys::Available(r) => Some(r),
            RecordingKeys::Unavailable(_) => None,
        }
    }

    pub fn available(&self) -> bool {
        self.ring().is_some()
    }
}

/// The folder of the sealed files, `data/recordings/`; a file's row holds
/// its path under it.
pub fn recordings_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("recordings")
}

/// Creates the file a row's `path` names under `data/recordings/`, for
/// the recorder to seal into (`SealWriter::create`): its folders 0700, the
/// file 0600, opened for reading too (`finish` reads it back for its
/// SHA-256). Never over an existing file: two rows never share one.
pub fn create_file(
    data_dir: &Path,
    path: &tuxa_records::recording::RecordingPath,
) -> std::io::Result<File> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let full = recordings_dir(data_dir).join(path.as_str());
    if let Some(parent) = full.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(full)
}

fn absolute(p: &Path) -> Option<PathBuf> {
    std::path::absolute(p)
        .ok()
        .map(|a| a.canonicalize().unwrap_or(a))
}

/// Loads the ring from its source. Refuses a key file inside the data
/// directory (a copy or backup of `data/` would carry the key that opens
/// its recordings) or readable by group or others.
pub fn load_keys(source: &KeySource, data_dir: &Path) -> anyhow::Result<KeyRing> {
    use std::os::unix::fs::PermissionsExt as _;
    let text = match source {
        KeySource::None => bail!(
            "no recording key configured (--recording-keys FILE or {KEYS_ENV}; make one with `tuxa recording-key`)"
        ),
        KeySource::Text(t) => t.clone(),
        KeySource::File(path) => {
            if let (Some(k), Some(d)) = (absolute(path), absolute(data_dir))
                && k.starts_with(&d)
            {
                bail!(
                    "the recording key file {} is inside the data directory {}: a copy of the data directory would carry the key to its recordings; keep it elsewhere",
                    path.display(),
                    data_dir.display()
                );
            }
            let meta = std::fs::metadata(path)
                .with_context(|| format!("reading the recording key file {}", path.display()))?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "the recording key file {} is readable by group or others (mode {mode:o}): chmod 600 it",
                    path.display()
                );
            }
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the recording key file {}", path.display()))?
        }
    };
    KeyRing::parse(&text).with_context(|| format!("in {}", source.describe()))
}

/// Tries the ring on the newest file sealed under each key id: a key with
/// the right id and the wrong bytes (a key file from another server, a
/// mistyped line) is refused before it seals anything. A key id the ring
/// lacks is only warned about: new recordings can still be made, the files
/// sealed under it cannot be read until the key is back.
pub fn probe_keys(c: &Connection, data_dir: &Path, ring: &KeyRing) -> anyhow::Result<()> {
    let dir = recordings_dir(data_dir);
    for f in recordings::newest_per_key(c)? {
        let path = dir.join(f.path.as_str());
        let Ok(file) = File::open(&path) else {
            continue;
        };
        match SealReader::open(file, ring) {
            Err(SealError::WrongKey(id)) => bail!(
                "recording key {id} does not open {}, sealed under key {id}: the key configured with that id is not the one it was sealed with",
                path.display()
            ),
            Err(SealError::UnknownKey(id)) => tracing::warn!(
                "recording key {id} is not configured: files sealed under it (e.g. {}) cannot be read until it is added back",
                path.display()
            ),
            _ => {}
        }
    }
    Ok(())
}

/// The keys as a start sees them: available, or why not (logged once).
pub fn keys_at_start(c: &Connection, cfg: &RecordingConfig, data_dir: &Path) -> RecordingKeys {
    let loaded = load_keys(&cfg.keys, data_dir)
        .and_then(|ring| probe_keys(c, data_dir, &ring).map(|()| ring));
    match loaded {
        Ok(ring) => {
            tracing::info!(
                "recordings available: recording keys {:?} (new files sealed under {}), retention {}",
                ring.ids().map(|k| k.0).collect::<Vec<_>>(),
                ring.sealing().id(),
                cfg.retention
            );
            RecordingKeys::Available(Arc::new(ring))
        }
        Err(e) => {
            let why = format!("{e:#}");
            tracing::warn!("recordings unavailable: {why}");
            RecordingKeys::Unavailable(why)
        }
    }
}

/// What a start does for recordings, on the store thread before the hub
/// runs: the keys ([`keys_at_start`]), then crash recovery ([`recover`]).
/// Neither stops the start: a failure is logged and the keys say whether
/// recordings can be made.
pub fn start(
    c: &mut Connection,
    cfg: &RecordingConfig,
    data_dir: &Path,
    now: UnixTime,
) -> RecordingKeys {
    let keys = keys_at_start(c, cfg, data_dir);
    match recover(c, data_dir, keys.ring().map(|r| &**r), now) {
        Ok(r) if r == Recovered::default() => {}
        Ok(r) => tracing::warn!(
            "recordings cut by the last stop: {} files incomplete (readable to their last chunk), {} complete, {} never written; {} recordings ended",
            r.incomplete,
            r.complete,
            r.missing,
            r.recordings
        ),
        Err(e) => tracing::error!("recording recovery: {e:#}"),
    }
    keys
}

/// What crash recovery did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Files found `open` and marked `incomplete`.
    pub incomplete: usize,
    /// Files found `open` whose end marker was on disk (the server died
    /// between the file and its row): marked `complete`.
    pub complete: usize,
    /// Files found `open` with nothing on disk.
    pub missing: usize,
    /// Recordings found running and ended (`server_restart`).
    pub recordings: usize,
}

/// Crash recovery, at start before any recording can begin: every file
/// still `open` gets its size and SHA-256 as it is on disk (audited) and
/// becomes `incomplete` (readable up to its last whole chunk), or
/// `complete` when the keys show its end marker; every recording still
/// running ends with `server_restart`. Nothing on disk is changed.
pub fn recover(
    c: &mut Connection,
    data_dir: &Path,
    keys: Option<&KeyRing>,
    now: UnixTime,
) -> anyhow::Result<Recovered> {
    let dir = recordings_dir(data_dir);
    let mut done = Recovered::default();
    for f in recordings::open_files(c)? {
        let path = dir.join(f.path.as_str());
        let (size, sha256, complete) = match File::open(&path) {
            Ok(mut file) => {
                let (size, sha) =
                    hash_all(&mut file).with_context(|| format!("reading {}", path.display()))?;
                let complete = keys.is_some_and(|k| {
                    File::open(&path)
                        .ok()
                        .and_then(|f| SealReader::open(f, k).ok())
                        .is_some_and(|mut r| r.complete() && r.verify().is_ok())
                });
                (size, sha, complete)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(
                    "recording file {} (consultation {}) was never written",
                    path.display(),
                    f.consultation
                );
                done.missing += 1;
                let (size, sha) = hash_all(std::io::empty())?;
                (size, sha, false)
            }
            Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
        };
        let state = if complete {
            done.complete += 1;
            FileState::Complete
        } else {
            done.incomplete += 1;
            FileState::Incomplete
        };
        recordings::finish_file(
            c,
            f.id,
            &FileOutcome {
                state,
                duration_ms: None,
                frames: None,
                width: None,
                height: None,
                size,
                sha256: crate::hex(&sha256),
            },
            now,
        )?;
    }
    for r in recordings::unfinished(c)? {
        let files = recordings::files_of(c, r.id)?;
        let state = if files.is_empty() {
            RecordingState::Failed
        } else if files.iter().all(|f| f.state == FileState::Complete) {
            RecordingState::Complete
        } else {
            RecordingState::Incomplete
        };
        recordings::end(c, r.id, now, state, StopReason::ServerRestart)?;
        done.recordings += 1;
    }
    Ok(done)
}

/// Opens the record's SQLite file for a sub-command (verify, purge),
/// refusing a file whose schema this build does not know yet.
fn open_db(data_dir: &Path, read_only: bool) -> anyhow::Result<Connection> {
    let path = data_dir.join("tuxa.sqlite3");
    if !path.exists() {
        bail!("no database at {}", path.display());
    }
    let flags = if read_only {
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
    };
    let c = Connection::open_with_flags(&path, flags)?;
    if !read_only {
        tuxa_store::schema::configure(&c)?;
    }
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    if tuxa_store::schema::version(&c)? < tuxa_store::schema::MIGRATIONS.len() {
        bail!(
            "the database at {} is from an older tuxa: start the server once to bring it up to date",
            path.display()
        );
    }
    Ok(c)
}

/// What is wrong with one kept file, if anything: its presence, its size
/// and SHA-256 against its row and the row's against the audit chain's
/// (`audited`), every chunk opening, and the end marker of a file
/// recorded complete.
pub fn check_file(
    dir: &Path,
    f: &RecordingFile,
    keys: &KeyRing,
    audited: Option<&(u64, String)>,
) -> Option<String> {
    let path = dir.join(f.path.as_str());
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some("missing".into()),
        Err(e) => return Some(format!("cannot be read: {e}")),
    };
    let mut problems = Vec::new();
    match SealReader::open(file, keys) {
        Ok(mut r) => {
            if let Err(failure) = r.verify() {
                problems.push(failure.to_string());
            } else if f.state == FileState::Complete && !r.complete() {
                problems.push("has no end marker, though recorded complete".into());
            }
        }
        Err(SealError::Damaged(failure)) => problems.push(failure.to_string()),
        Err(e) => problems.push(e.to_string()),
    }
    match File::open(&path).map(hash_all) {
        Ok(Ok((size, sha))) => {
            match audited {
                None => problems.push("has no audit entry for its size and SHA-256".into()),
                Some((a_size, a_sha))
                    if Some(*a_size) != f.size || f.sha256.as_ref() != Some(a_sha) =>
                {
                    problems
                        .push("has a recorded size or SHA-256 other than the audit chain's".into())
                }
                Some(_) => {}
            }
            if Some(size) != f.size {
                problems.push(format!(
                    "is {size} bytes, recorded {}",
                    f.size.map_or("none".into(), |s| s.to_string())
                ));
            }
            if f.sha256.as_deref() != Some(crate::hex(&sha).as_str()) {
                problems.push("has a SHA-256 other than the one recorded".into());
            }
        }
        Ok(Err(e)) | Err(e) => problems.push(format!("cannot be read: {e}")),
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// A file as a report names it: by ids and role, never a person's name
/// (reports end up in mail and logs).
fn describe(dir: &Path, f: &RecordingFile) -> String {
    format!(
        "{} (consultation {}, recording {}, {} participant {} {} segment {}, {})",
        dir.join(f.path.as_str()).display(),
        f.consultation,
        f.recording,
        f.role.as_str(),
        f.participant,
        tuxa_records::recording::source_as_str(f.source),
        f.segment,
        f.state
    )
}

/// `tuxa verify-recordings`: checks every file not purged. Returns the
/// report (the first failure first) and whether every file passed.
pub fn verify_recordings(data_dir: &Path, cfg: &RecordingConfig) -> anyhow::Result<(String, bool)> {
    let keys = load_keys(&cfg.keys, data_dir).context("recording keys")?;
    let c = open_db(data_dir, true)?;
    let dir = recordings_dir(data_dir);
    let files = recordings::kept_files(&c)?;
    let audited = recordings::audited_hashes(&c)?;
    let (mut checked, mut bytes, mut open, mut incomplete) = (0usize, 0u64, 0usize, 0usize);
    let mut failures = Vec::new();
    for f in &files {
        if f.state == FileState::Open {
            // Being written (or the server died and has not restarted):
            // its size and hash are not final.
            open += 1;
            continue;
        }
        checked += 1;
        if let Some(problem) = check_file(&dir, f, &keys, audited.get(&f.id)) {
            failures.push(format!("FAILED {}: {problem}", describe(&dir, f)));
        } else {
            bytes += f.size.unwrap_or(0);
            if f.state == FileState::Incomplete {
                incomplete += 1;
            }
        }
    }
    let mut report = failures.join("\n");
    if !report.is_empty() {
        report.push('\n');
    }
    if failures.is_empty() {
        report.push_str(&format!(
            "recordings intact: {checked} files, {bytes} bytes ({incomplete} incomplete, readable to their last chunk)"
        ));
    } else {
        report.push_str(&format!(
            "recordings DAMAGED: {} of {checked} files failed (the first is named first)",
            failures.len()
        ));
    }
    if open > 0 {
        report.push_str(&format!("; {open} being written, not checked"));
    }
    Ok((report, failures.is_empty()))
}

/// `tuxa purge-recordings [--dry-run]`: deletes the files whose retention
/// is over at `now` (from their recording's end, by their consultation's
/// kind), marks their rows purged and audits each deletion. Never a file
/// still open or of a recording still running. With `dry_run` only lists.
pub fn purge_recordings(
    data_dir: &Path,
    cfg: &RecordingConfig,
    now: UnixTime,
    dry_run: bool,
) -> anyhow::Result<String> {
    let mut c = open_db(data_dir, dry_run)?;
    let dir = recordings_dir(data_dir);
    let mut lines = Vec::new();
    let mut bytes = 0u64;
    for p in recordings::purge_candidates(&c)? {
        if !cfg.retention.expired(p.kind, p.ended_at, now) {
            continue;
        }
        let path = dir.join(p.file.path.as_str());
        let period = cfg.retention.period(p.kind);
        let what = format!(
            "{} (consultation {}, {}, ended {}, kept {period})",
            path.display(),
            p.file.consultation,
            p.kind.as_str(),
            tuxa_records::dates::vn_date(p.ended_at.secs()),
        );
        if dry_run {
            lines.push(format!("would delete {what}"));
            bytes += p.file.size.unwrap_or(0);
            continue;
        }
        // The file first, then its row: a crash in between leaves a row
        // that verify reports missing and the next purge completes, never
        // a file no row points at.
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!("{} was already gone", path.display());
            }
            Err(e) => return Err(e).with_context(|| format!("deleting {}", path.display())),
        }
        let policy = format!("{}={period}", p.kind.as_str());
        if recordings::mark_purged(&mut c, p.file.id, now, &policy)? {
            lines.push(format!("deleted {what}"));
            bytes += p.file.size.unwrap_or(0);
        }
    }
    let n = lines.len();
    lines.push(format!(
        "{} {n} files, {bytes} bytes (retention {})",
        if dry_run { "would purge" } else { "purged" },
        cfg.retention
    ));
    Ok(lines.join("\n"))
}

/// `tuxa recording-key`: a new key line, with the id given or the one
/// after the configured ring's highest (1 with none).
pub fn new_key_line(cfg: &RecordingConfig, data_dir: &Path, id: Option<u32>) -> String {
    let id = id.unwrap_or_else(|| {
        load_keys(&cfg.keys, data_dir)
            .map(|r| r.sealing().id().0.saturating_add(1))
            .unwrap_or(1)
    });
    key_line(KeyId(id), &crate::random_bytes::<KEY_LEN>())
}

/// Streams of recordings decrypting at once, server-wide (playback.rs).
pub const MAX_STREAMS: usize = 32;

/// What reading recordings needs: where they are, the keys that open them,
/// and the bound on streams.
#[derive(Clone)]
pub struct Recordings {
    pub dir: Arc<std::path::Path>,
    pub keys: Arc<RecordingKeys>,
    pub streams: Arc<tokio::sync::Semaphore>,
}

impl Recordings {
    pub fn new(dir: PathBuf, keys: RecordingKeys) -> Recordings {
        Recordings {
            dir: dir.into(),
            keys: Arc::new(keys),
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
        }
    }
}
