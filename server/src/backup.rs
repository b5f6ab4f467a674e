//! `tuxa backup DEST` and `tuxa restore SRC` (README, "Backup and restore").
//!
//! A backup is a folder with two files:
//! - `tuxa.sqlite3`: a consistent copy of the store made with SQLite's online
//!   backup API while the server runs (one step, inside one read
//!   transaction: in WAL mode the server keeps writing meanwhile, and the
//!   copy is the database as of one commit). It holds the keys that make
//!   join links valid (the join-token key) and the staff TOTP secrets,
//!   sealed under the master key as in the live file (secrets.rs);
//! - `manifest.json`: what the copy is (schema version, audit head and
//!   count, size and SHA-256 of the file, the id of the master key that
//!   sealed it), authenticated with an HMAC under a key derived from that
//!   master key.
//!
//! The master key itself is never written into a backup: a backup and its
//! key together give everything away (docs/security.md). Restoring needs the
//! key, as starting the server does.
//!
//! `restore` checks before it writes anything into the data directory: the
//! manifest's HMAC (an altered manifest, or a backup of another installation
//! whose key was not given), the file's digest (an altered or damaged copy),
//! SQLite's integrity check, the schema version (a newer tuxa's backup), the
//! audit chain and its head against the manifest, and that the key opens
//! every sealed secret. Each refusal says which check failed.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use aws_lc_rs::{hkdf, hmac};
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use crate::secrets::{self, KeysConfig, MasterKey, MasterKeySource};

/// The database's name in a data directory and in a backup.
pub const DB_FILE: &str = "tuxa.sqlite3";
/// The manifest's name in a backup.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The manifest's format; another value is not a backup this tuxa reads.
pub const FORMAT: &str = "tuxa-backup-1";

/// What a backup is, as `manifest.json` says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    /// The tuxa that made it (version and build).
    pub tuxa_version: String,
    pub tuxa_build: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Migrations applied to the copy (`PRAGMA user_version`).
    pub schema_version: usize,
    pub database_bytes: u64,
    /// Hex SHA-256 of `tuxa.sqlite3` as written.
    pub database_sha256: String,
    pub consultations: u64,
    pub audit_entries: u64,
    /// The hash of the last audit entry (`tuxa verify-audit` prints it).
    pub audit_head: String,
    /// The master key that sealed the copy's secrets and keys the HMAC.
    pub master_key_id: String,
    /// Hex HMAC-SHA256 of this manifest with `mac` empty.
    #[serde(default)]
    pub mac: String,
}

impl Manifest {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.mac.clear();
        serde_json::to_vec(&unsigned).expect("a manifest serialises")
    }
}

/// The master key's raw bytes and id: the current one first, then old ones.
fn raw_keys(keys: &KeysConfig) -> anyhow::Result<Vec<[u8; MasterKey::LEN]>> {
    let current = match &keys.current {
        MasterKeySource::Inline(k) => **k,
        MasterKeySource::File(p) => secrets::read_key_file(p)
            .context("a backup needs the master key the database is sealed under")?,
    };
    let mut all = vec![current];
    for p in &keys.old_files {
        all.push(secrets::read_key_file(p)?);
    }
    Ok(all)
}

fn key_id(raw: &[u8; MasterKey::LEN]) -> String {
    MasterKey::from_bytes(raw).id_hex()
}

/// The manifest's HMAC key: derived from the master key under its own label,
/// so it meets neither the sealing key nor anything else.
fn mac_key(raw: &[u8; MasterKey::LEN]) -> hmac::Key {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"tuxa").extract(raw);
    let okm = prk
        .expand(&[b"tuxa backup manifest"], hmac::HMAC_SHA256)
        .expect("HKDF output of one HMAC key");
    hmac::Key::from(okm)
}

fn sign(m: &mut Manifest, raw: &[u8; MasterKey::LEN]) {
    let tag = hmac::sign(&mac_key(raw), &m.signed_bytes());
    m.mac = crate::hex(tag.as_ref());
}

fn mac_verifies(m: &Manifest, raw: &[u8; MasterKey::LEN]) -> bool {
    let Ok(tag) = data_encoding::HEXLOWER.decode(m.mac.as_bytes()) else {
        return false;
    };
    hmac::verify(&mac_key(raw), &m.signed_bytes(), &tag).is_ok()
}

/// SHA-256 and length of a file, streamed.
fn digest_file(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let got = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if got == 0 {
            break;
        }
        n += got as u64;
        ctx.update(&buf[..got]);
    }
    Ok((crate::hex(ctx.finish().as_ref()), n))
}

/// What the checks of a copy found.
struct Checked {
    schema_version: usize,
    consultations: u64,
    audit_entries: u64,
    audit_head: String,
}

/// Checks a database file (a copy, never the live one): SQLite's integrity,
/// the schema version this tuxa knows, the audit chain, and that `keys`
/// open every sealed secret.
fn check_copy(path: &Path, keys: &secrets::Keyring) -> anyhow::Result<Checked> {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", path.display()))?;
    let integrity: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| anyhow!("it is not a readable SQLite database: {e}"))?;
    if integrity != "ok" {
        bail!("SQLite's integrity check fails: {integrity}");
    }
    let schema_version = tuxa_store::schema::version(&c)?;
    let known = tuxa_store::schema::MIGRATIONS.len();
    if schema_version > known {
        bail!(
            "it was made by a newer tuxa (schema version {schema_version}; this tuxa knows up to \
             {known}): restore it with that version or a later one"
        );
    }
    if schema_version == 0 {
        bail!("it holds no tuxa schema (schema version 0)");
    }
    let (audit_entries, audit_head) = match crate::audit::verify(&c)? {
        crate::audit::Verdict::Intact { entries, head } => (entries, head),
        crate::audit::Verdict::Broken { entry, reason } => {
            bail!("its audit chain is broken at entry {entry}: {reason}")
        }
    };
    secrets::check_opens(&c, keys)?;
    let consultations: i64 = c.query_row("SELECT count(*) FROM consultations", [], |r| r.get(0))?;
    Ok(Checked {
        schema_version,
        consultations: consultations.max(0) as u64,
        audit_entries,
        audit_head,
    })
}

fn keyring(raw: &[[u8; MasterKey::LEN]]) -> secrets::Keyring {
    let mut keys = raw.iter().map(MasterKey::from_bytes);
    let current = keys.next().expect("at least the current key");
    secrets::Keyring::new(current, keys.collect())
}

/// Makes `dir` 0700 (with its parents); says why it could not.
fn make_private_dir(dir: &Path, what: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {what} {}", dir.display()))
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Writes `bytes` to `path` (0600) through a temporary name, synced.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("partial");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// `tuxa backup DEST`: copies the store of `data_dir` into the new folder
/// `dest` while the server may be running. Returns the report line.
pub fn backup(data_dir: &Path, keys: &KeysConfig, dest: &Path) -> anyhow::Result<String> {
    let src_path = data_dir.join(DB_FILE);
    if !src_path.exists() {
        bail!("no database at {}", src_path.display());
    }
    if dest.exists()
        && std::fs::read_dir(dest)
            .with_context(|| format!("cannot read the backup folder {}", dest.display()))?
            .next()
            .is_some()
    {
        bail!(
            "the backup folder {} is not empty: give a new folder (a backup is never written \
             over another)",
            dest.display()
        );
    }
    let raw = raw_keys(keys)?;
    let ring = keyring(&raw);
    make_private_dir(dest, "the backup folder")?;
    let copy_path = dest.join(format!("{DB_FILE}.partial"));
    let result = (|| {
        copy_online(&src_path, &copy_path)?;
        let checked = check_copy(&copy_path, &ring)
            .with_context(|| format!("the copy of {} was not kept", src_path.display()))?;
        let (sha, bytes) = digest_file(&copy_path)?;
        std::fs::rename(&copy_path, dest.join(DB_FILE))
            .with_context(|| format!("cannot write {}", dest.display()))?;
        let mut m = Manifest {
            format: FORMAT.into(),
            tuxa_version: crate::health::VERSION.into(),
            tuxa_build: crate::health::BUILD.into(),
            created_at: crate::clock::unix_now() as i64,
            schema_version: checked.schema_version,
            database_bytes: bytes,
            database_sha256: sha,
            consultations: checked.consultations,
            audit_entries: checked.audit_entries,
            audit_head: checked.audit_head,
            master_key_id: key_id(&raw[0]),
            mac: String::new(),
        };
        sign(&mut m, &raw[0]);
        let json = serde_json::to_vec_pretty(&m).expect("a manifest serialises");
        write_new(&dest.join(MANIFEST_FILE), &json)?;
        sync_dir(dest)?;
        anyhow::Ok(m)
    })();
    let m = match result {
        Ok(m) => m,
        Err(e) => {
            // What was half written is not a backup; the folder stays (it
            // may be a mount point) but empty of our files.
            for name in [
                format!("{DB_FILE}.partial"),
                DB_FILE.to_owned(),
                format!("{DB_FILE}.partial-journal"),
                "manifest.partial".to_owned(),
            ] {
                let _ = std::fs::remove_file(dest.join(name));
            }
            return Err(e.context(format!("the backup to {} failed", dest.display())));
        }
    };
    Ok(format!(
        "backup written to {}: {} consultation(s), {} audit entries (head {}), {} bytes, schema \
         {}, sealed under master key {}. Keep the master key apart from the backup: restoring \
         needs it.",
        dest.display(),
        m.consultations,
        m.audit_entries,
        m.audit_head,
        m.database_bytes,
        m.schema_version,
        m.master_key_id
    ))
}

/// The online backup itself: one step over every page, in one read
/// transaction of the source, into a rollback-journal file (a backup is one
/// self-contained file, without `-wal`).
fn copy_online(src: &Path, dst: &Path) -> anyhow::Result<()> {
    let from = Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", src.display()))?;
    from.busy_timeout(std::time::Duration::from_secs(10))?;
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dst)
            .with_context(|| format!("cannot write {}", dst.display()))?;
    }
    let mut to =
        Connection::open(dst).with_context(|| format!("cannot write {}", dst.display()))?;
    {
        let b = rusqlite::backup::Backup::new(&from, &mut to)?;
        // -1: every page in one step, so that the copy is one snapshot even
        // while the server commits; busy or locked only while another
        // process changes the schema, retried.
        // (rusqlite's `run_to_completion` takes only a positive count.)
        let mut waits = 0;
        loop {
            use rusqlite::backup::StepResult;
            let step = b
                .step(-1)
                .map_err(|e| anyhow!("copying {} to {}: {e}", src.display(), dst.display()))?;
            match step {
                StepResult::Done => break,
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked if waits < 100 => {
                    waits += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                other => bail!(
                    "copying {}: the database stayed busy for 10 s ({other:?})",
                    src.display()
                ),
            }
        }
    }
    to.pragma_update(None, "journal_mode", "DELETE")
        .map_err(|e| anyhow!("writing {}: {e}", dst.display()))?;
    to.close()
        .map_err(|(_, e)| anyhow!("writing {}: {e}", dst.display()))?;
    std::fs::File::open(dst)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", dst.display()))?;
    Ok(())
}

/// Reads and checks a backup's manifest and file against `keys`, without
/// writing anything. Returns the manifest and the keys that open it.
pub fn check(src: &Path, keys: &KeysConfig) -> anyhow::Result<Manifest> {
    let manifest_path = src.join(MANIFEST_FILE);
    let text = match std::fs::read(&manifest_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} is not a tuxa backup: it has no {MANIFEST_FILE}",
            src.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", manifest_path.display())),
    };
    let m: Manifest = serde_json::from_slice(&text).map_err(|e| {
        anyhow!(
            "{} is not a tuxa backup manifest ({FORMAT}): {e}",
            manifest_path.display()
        )
    })?;
    if m.format != FORMAT {
        bail!(
            "{} is not a backup this tuxa reads: format {:?}, expected {FORMAT:?}",
            src.display(),
            m.format
        );
    }
    let raw = raw_keys(keys)?;
    let Some(key) = raw.iter().find(|k| key_id(k) == m.master_key_id) else {
        let given: Vec<String> = raw.iter().map(key_id).collect();
        bail!(
            "refused: the backup was sealed under master key {}, and the keys given are {}. It is \
             another installation's backup, or its key was not given (--key-file, or \
             --old-key-file after a rotation).",
            m.master_key_id,
            given.join(", ")
        );
    };
    if !mac_verifies(&m, key) {
        bail!(
            "refused: {} has been altered (its HMAC under master key {} does not verify)",
            manifest_path.display(),
            m.master_key_id
        );
    }
    let (sha, bytes) = digest_file(&src.join(DB_FILE))?;
    if sha != m.database_sha256 || bytes != m.database_bytes {
        bail!(
            "refused: {} has been altered or damaged since the backup was made (SHA-256 {sha}, \
             {bytes} bytes; the manifest says {}, {} bytes)",
            src.join(DB_FILE).display(),
            m.database_sha256,
            m.database_bytes
        );
    }
    Ok(m)
}

/// `tuxa restore SRC`: checks the backup in `src` (see the module's doc),
/// then puts its database into `data_dir`, which must not hold one. Returns
/// the report line.
pub fn restore(src: &Path, data_dir: &Path, keys: &KeysConfig) -> anyhow::Result<String> {
    let m = check(src, keys)?;
    let target = data_dir.join(DB_FILE);
    if target.exists() {
        bail!(
            "{} already holds a database: restore into an empty data directory, or move {} \
             aside first (with the server stopped)",
            data_dir.display(),
            target.display()
        );
    }
    make_private_dir(data_dir, "the data directory")?;
    let tmp: PathBuf = data_dir.join(format!("{DB_FILE}.restoring"));
    let result = (|| {
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            let mut input = std::fs::File::open(src.join(DB_FILE))?;
            std::io::copy(&mut input, &mut out)
                .and_then(|_| out.sync_all())
                .with_context(|| format!("cannot write {}", tmp.display()))?;
        }
        // The copy is checked, not the backup: what is checked is what is used.
        let (sha, _) = digest_file(&tmp)?;
        if sha != m.database_sha256 {
            bail!("the copy in {} differs from the backup", tmp.display());
        }
        let ring = keyring(&raw_keys(keys)?);
        let checked = check_copy(&tmp, &ring).context("refused")?;
        if checked.audit_entries != m.audit_entries || checked.audit_head != m.audit_head {
            bail!(
                "refused: the audit chain holds {} entries (head {}), the manifest says {} (head {})",
                checked.audit_entries,
                checked.audit_head,
                m.audit_entries,
                m.audit_head
            );
        }
        if checked.schema_version != m.schema_version {
            bail!(
                "refused: schema version {} in the file, {} in the manifest",
                checked.schema_version,
                m.schema_version
            );
        }
        std::fs::rename(&tmp, &target)
            .with_context(|| format!("cannot write {}", target.display()))?;
        sync_dir(data_dir)?;
        anyhow::Ok(checked)
    })();
    match result {
        Ok(c) => Ok(format!(
            "restored into {}: {} consultation(s), audit chain intact ({} entries, head {}), \
             schema {}, from the backup of {} made by tuxa {} ({}). Start the server on it with \
             the same master key.",
            data_dir.display(),
            c.consultations,
            c.audit_entries,
            c.audit_head,
            c.schema_version,
            src.display(),
            m.tuxa_version,
            m.tuxa_build
        )),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mac_covers_every_field() {
        let raw = [7u8; 32];
        let mut m = Manifest {
            format: FORMAT.into(),
            tuxa_version: "0.1.0".into(),
            tuxa_build: "x".into(),
            created_at: 1,
            schema_version: 3,
            database_bytes: 4096,
            database_sha256: "ab".into(),
            consultations: 2,
            audit_entries: 5,
            audit_head: "cd".into(),
            master_key_id: key_id(&raw),
            mac: String::new(),
        };
        sign(&mut m, &raw);
        assert!(mac_verifies(&m, &raw));
        assert!(!mac_verifies(&m, &[8u8; 32]), "another key");
        let mut altered = m.clone();
        altered.audit_entries = 6;
        assert!(!mac_verifies(&altered, &raw));
        let mut altered = m.clone();
        altered.database_sha256 = "ac".into();
        assert!(!mac_verifies(&altered, &raw));
        let mut altered = m;
        altered.mac = "zz".into();
        assert!(!mac_verifies(&altered, &raw));
    }
}
