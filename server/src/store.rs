//! The SQLite file as the server opens it: its directory's permissions, the
//! keys that seal its secrets, and the handle on the store thread (tuxa-store's
//! `thread.rs`, which owns the connection behind a bounded queue). The
//! queries themselves are tuxa-store's.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rusqlite::Connection;
use tuxa_store::thread::StoreThread;

use crate::secrets::{Keyring, KeysConfig};

#[derive(Clone)]
pub struct Store {
    /// The thread that owns the connection (tuxa-store, `thread.rs`).
    thread: StoreThread,
    /// Seals and opens the secrets in the file (secrets.rs).
    keys: Arc<Keyring>,
}

impl Store {
    /// Opens (or makes) the SQLite file at `path` with the master key
    /// `keys` names: see [`open_connection`].
    pub fn open_with(path: &Path, keys: &KeysConfig) -> anyhow::Result<Store> {
        let (conn, keys) = open_connection(path, keys)?;
        Ok(Store {
            thread: StoreThread::start(conn)?,
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
        Ok(self.thread.call(f).await??)
    }

    /// Runs a domain operation on the store's thread: its refusals come back
    /// as the domain's errors (`tuxa_records::Error`), and a store that has
    /// stopped as an internal one.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> tuxa_records::Result<R> + Send + 'static,
    ) -> tuxa_records::Result<R> {
        self.thread
            .call(f)
            .await
            .map_err(tuxa_records::Error::internal)?
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
        let sent = self.thread.spawn(move |c| {
            if let Err(e) = f(c) {
                tracing::error!("store: {what}: {e}");
            }
        });
        if sent.is_err() {
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
    // WAL, synchronous=FULL, foreign keys: see tuxa_store::schema::configure.
    tuxa_store::schema::configure(&conn)?;
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

/// Brings the schema up to date (tuxa_store::schema).
pub(crate) fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    Ok(tuxa_store::schema::migrate(conn)?)
}

// The consultations' and meta rows: in the store crate; the row type is the record's.
pub use tuxa_records::record::ConsultationRow;
pub use tuxa_store::consultations::{facility_contact, get_meta, set_meta};
pub use tuxa_store::record::{consultation, consultations};
