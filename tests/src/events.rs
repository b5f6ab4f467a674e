//! The server messages a peer received, in order, for tests to wait on.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tuxa_protocol::ServerMsg;

/// Every [`ServerMsg`] a peer got (including the ones it handled itself, like `offer`), plus
/// notes from the peer itself (negotiation failures, the session's end).
#[derive(Debug)]
pub struct EventLog {
    inner: Mutex<Vec<Entry>>,
    changed: watch::Sender<u64>,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub at: Instant,
    pub event: PeerEvent,
}

#[derive(Debug, Clone)]
pub enum PeerEvent {
    /// A message from the server.
    Msg(ServerMsg),
    /// Something the peer did or noticed: `"answered"`, `"offer_applied"`, ...
    Note(String),
    /// The WebSocket closed (with the close frame's code and reason, if any).
    Closed(Option<(u16, String)>),
    /// The peer's task failed.
    Failed(String),
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            inner: Mutex::new(Vec::new()),
            changed: watch::channel(0).0,
        }
    }
}

impl EventLog {
    pub fn push(&self, event: PeerEvent) {
        self.inner.lock().expect("not poisoned").push(Entry {
            at: Instant::now(),
            event,
        });
        self.changed.send_modify(|v| *v += 1);
    }

    pub fn msg(&self, msg: ServerMsg) {
        self.push(PeerEvent::Msg(msg));
    }

    pub fn note(&self, note: impl Into<String>) {
        self.push(PeerEvent::Note(note.into()));
    }

    /// A cursor: the number of entries so far.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("not poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn entries(&self) -> Vec<Entry> {
        self.inner.lock().expect("not poisoned").clone()
    }

    /// The server messages received so far.
    pub fn messages(&self) -> Vec<ServerMsg> {
        self.entries()
            .into_iter()
            .filter_map(|e| match e.event {
                PeerEvent::Msg(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// A short account of the log, for failure messages.
    pub fn describe(&self) -> String {
        let entries = self.entries();
        let start = entries.first().map(|e| e.at);
        entries
            .iter()
            .map(|e| {
                let t = start
                    .map(|s| e.at.duration_since(s).as_millis())
                    .unwrap_or(0);
                let what = match &e.event {
                    PeerEvent::Msg(ServerMsg::Offer { sdp }) => {
                        format!("offer ({} m-lines)", sdp.matches("\nm=").count())
                    }
                    PeerEvent::Msg(ServerMsg::Answer { sdp }) => {
                        format!("answer ({} m-lines)", sdp.matches("\nm=").count())
                    }
                    PeerEvent::Msg(m) => serde_json::to_string(m).unwrap_or_default(),
                    PeerEvent::Note(n) => format!("note: {n}"),
                    PeerEvent::Closed(c) => format!("closed {c:?}"),
                    PeerEvent::Failed(f) => format!("FAILED: {f}"),
                };
                format!("  +{t}ms {what}\n")
            })
            .collect()
    }

    /// Waits for an entry at index >= `from` that `pred` picks; returns its index and value.
    pub async fn wait_for<T>(
        &self,
        from: usize,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&PeerEvent) -> Option<T>,
    ) -> anyhow::Result<(usize, T)> {
        let mut rx = self.changed.subscribe();
        let found = tokio::time::timeout(timeout, async {
            loop {
                rx.borrow_and_update();
                {
                    let inner = self.inner.lock().expect("not poisoned");
                    for (i, e) in inner.iter().enumerate().skip(from) {
                        if let Some(v) = pred(&e.event) {
                            return (i, v);
                        }
                    }
                }
                if rx.changed().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        })
        .await;
        found.map_err(|_| {
            anyhow::anyhow!(
                "timed out after {timeout:?} waiting for {what}; events:\n{}",
                self.describe()
            )
        })
    }

    /// Waits for a server message at index >= `from` that `pred` picks.
    pub async fn wait_msg<T>(
        &self,
        from: usize,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&ServerMsg) -> Option<T>,
    ) -> anyhow::Result<(usize, T)> {
        self.wait_for(from, timeout, what, |e| match e {
            PeerEvent::Msg(m) => pred(m),
            _ => None,
        })
        .await
    }
}
