//! The SQLite file as the server opens it: its directory's permissions, the
//! keys that seal its secrets, and the handle on the store thread (tuxa-store's
//! `thread.rs`, which owns the connection behind a bounded queue). The
//! queries themselves are tuxa-store's.

use std::path::Path;
use std::sync::Arc;

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

pub use crate::secrets::open_connection;

/// Brings the schema up to date (tuxa_store::schema).
#[cfg(test)]
pub(crate) fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    Ok(tuxa_store::schema::migrate(conn)?)
}

// The consultations' and meta rows: in the store crate; the row type is the record's.
pub use tuxa_records::record::ConsultationRow;
pub use tuxa_store::consultations::{facility_contact, get_meta, set_meta};
pub use tuxa_store::record::{consultation, consultations};
