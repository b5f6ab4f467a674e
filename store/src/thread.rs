//! The store thread: the one owner of the SQLite connection. Everyone else
//! sends it a job and, when they need the answer, awaits it; no lock is held
//! across an `.await`, and a slow disk never stalls the async runtime's
//! reactor on a query.
//!
//! The queue is bounded ([`QUEUE`] jobs). When it is full the sender waits
//! for the disk — its thread blocks in `send` until the store thread has
//! taken a job — rather than drop a record: nothing recorded may be lost,
//! and a store that cannot keep up must slow its writers down, not grow
//! memory without bound. The wait cannot deadlock: the store thread needs
//! nothing from the senders to make progress.

use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

/// How many jobs may wait for the store thread. A busy province produces a
/// few hundred writes a second at most (joins, stats windows, audit); 4096
/// is seconds of a stalled disk before writers wait, and a few MB at most.
pub const QUEUE: usize = 4096;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A handle on the store thread; clones share it.
#[derive(Clone)]
pub struct StoreThread {
    tx: mpsc::SyncSender<Job>,
}

/// The store thread has stopped (the server is shutting down, or it
/// panicked).
#[derive(Debug, thiserror::Error)]
#[error("the store thread has stopped")]
pub struct Stopped;

impl StoreThread {
    /// Starts the thread that owns `conn`.
    pub fn start(mut conn: Connection) -> std::io::Result<StoreThread> {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("tuxa-store".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
            })?;
        Ok(StoreThread { tx })
    }

    /// Runs `f` on the store's thread and returns its answer.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> R + Send + 'static,
    ) -> Result<R, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Box::new(move |c| {
                let _ = tx.send(f(c));
            }))
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Runs `f` on the store's thread without waiting for it (records that
    /// must not slow the signaling path while the queue has room).
    pub fn spawn(&self, f: impl FnOnce(&mut Connection) + Send + 'static) -> Result<(), Stopped> {
        self.tx.send(Box::new(f)).map_err(|_| Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_in_order_and_answers_come_back() {
        let t = StoreThread::start(Connection::open_in_memory().unwrap()).unwrap();
        t.spawn(|c| {
            c.execute_batch("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1);")
                .unwrap()
        })
        .unwrap();
        // More jobs than the queue holds: the sender waits, nothing is lost.
        for i in 0..(QUEUE + 100) {
            t.spawn(move |c| {
                c.execute("INSERT INTO t VALUES (?1)", [i as i64]).unwrap();
            })
            .unwrap();
        }
        let n: i64 = t
            .call(|c| {
                c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                    .unwrap()
            })
            .await
            .unwrap();
        assert_eq!(n, 1 + (QUEUE as i64 + 100));
    }
}
