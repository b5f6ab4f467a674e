//! What a test peer received and sent, shared between the peer's tasks and the test.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tuxa_protocol::{MediaKind, ParticipantId};

use crate::frames::{FrameInfo, parse_frame};

/// Frames received from one sender of one kind.
#[derive(Debug, Clone, Default)]
pub struct TrackRx {
    /// Frames that checked out (content and checksum) and came from this sender.
    pub intact: u64,
    pub keyframes: u64,
    /// The first frame received: when, and whether it was a keyframe.
    pub first: Option<(Instant, bool)>,
    /// The sender's number of the first frame received.
    pub first_counter: Option<u64>,
    /// The first keyframe received.
    pub first_keyframe_at: Option<Instant>,
    pub last_at: Option<Instant>,
    pub last_counter: Option<u64>,
    /// Frames whose counter was not above the previous one (reordered or duplicated).
    pub out_of_order: u64,
    /// Sum over forward jumps of the frames skipped (lost, or not forwarded).
    pub skipped: u64,
    /// Frames that arrived on a track labelled (MediaStream id) with another participant.
    pub label_mismatch: u64,
}

#[derive(Debug, Default)]
struct RxInner {
    tracks: HashMap<(ParticipantId, MediaKind), TrackRx>,
    corrupt: u64,
    errors: Vec<String>,
}

/// Everything one peer received, frame by frame.
#[derive(Debug)]
pub struct MediaRx {
    inner: Mutex<RxInner>,
    changed: watch::Sender<u64>,
}

impl Default for MediaRx {
    fn default() -> Self {
        MediaRx {
            inner: Mutex::new(RxInner::default()),
            changed: watch::channel(0).0,
        }
    }
}

impl MediaRx {
    /// Checks one received frame. `label` is the MediaStream id of the track it came on, when
    /// the client stack tells it (the server labels tracks with the publisher's participant id).
    pub fn record(&self, kind: MediaKind, label: Option<&str>, data: &[u8]) -> Option<FrameInfo> {
        let now = Instant::now();
        let mut inner = self.inner.lock().expect("not poisoned");
        let info = match parse_frame(kind, data) {
            Ok(info) => info,
            Err(e) => {
                inner.corrupt += 1;
                if inner.errors.len() < 20 {
                    inner.errors.push(format!(
                        "{kind:?} frame of {} bytes on {label:?}: {e}",
                        data.len()
                    ));
                }
                drop(inner);
                self.changed.send_modify(|v| *v += 1);
                return None;
            }
        };
        let t = inner.tracks.entry((info.sender, kind)).or_default();
        t.intact += 1;
        if info.keyframe {
            t.keyframes += 1;
            t.first_keyframe_at.get_or_insert(now);
        }
        t.first.get_or_insert((now, info.keyframe));
        t.first_counter.get_or_insert(info.counter);
        t.last_at = Some(now);
        match t.last_counter {
            Some(last) if info.counter <= last => t.out_of_order += 1,
            Some(last) => {
                t.skipped += info.counter - last - 1;
                t.last_counter = Some(info.counter);
            }
            None => t.last_counter = Some(info.counter),
        }
        if let Some(label) = label
            && label != info.sender.to_string()
        {
            t.label_mismatch += 1;
        }
        drop(inner);
        self.changed.send_modify(|v| *v += 1);
        Some(info)
    }

    /// Counts a frame that could not even be reassembled (webrtc-rs side).
    pub fn record_error(&self, what: String) {
        let mut inner = self.inner.lock().expect("not poisoned");
        inner.corrupt += 1;
        if inner.errors.len() < 20 {
            inner.errors.push(what);
        }
    }

    pub fn track(&self, from: ParticipantId, kind: MediaKind) -> TrackRx {
        self.inner
            .lock()
            .expect("not poisoned")
            .tracks
            .get(&(from, kind))
            .cloned()
            .unwrap_or_default()
    }

    pub fn intact(&self, from: ParticipantId, kind: MediaKind) -> u64 {
        self.track(from, kind).intact
    }

    /// Frames that failed their check (damaged, truncated, on the wrong track kind).
    pub fn corrupt(&self) -> u64 {
        self.inner.lock().expect("not poisoned").corrupt
    }

    pub fn errors(&self) -> Vec<String> {
        self.inner.lock().expect("not poisoned").errors.clone()
    }

    /// The senders frames came from.
    pub fn senders(&self) -> Vec<(ParticipantId, MediaKind)> {
        let mut v: Vec<_> = self
            .inner
            .lock()
            .expect("not poisoned")
            .tracks
            .keys()
            .copied()
            .collect();
        v.sort_by_key(|(p, k)| (*p, *k == MediaKind::Video));
        v
    }

    pub fn summary(&self) -> String {
        let inner = self.inner.lock().expect("not poisoned");
        let mut keys: Vec<_> = inner.tracks.keys().copied().collect();
        keys.sort_by_key(|(p, k)| (*p, *k == MediaKind::Video));
        let mut s = String::new();
        for k in keys {
            let t = &inner.tracks[&k];
            s.push_str(&format!(
                "[from {} {:?}: {} intact, {} key, first #{:?} key? {:?}, {} skipped, {} out of order, {} mislabelled] ",
                k.0,
                k.1,
                t.intact,
                t.keyframes,
                t.first_counter,
                t.first.map(|f| f.1),
                t.skipped,
                t.out_of_order,
                t.label_mismatch
            ));
        }
        s.push_str(&format!("corrupt: {}", inner.corrupt));
        if !inner.errors.is_empty() {
            s.push_str(&format!(" {:?}", inner.errors));
        }
        s
    }

    /// Waits until at least `n` intact frames of `kind` from `from` arrived *in total*.
    pub async fn wait_frames(
        &self,
        from: ParticipantId,
        kind: MediaKind,
        n: u64,
        timeout: Duration,
    ) -> anyhow::Result<TrackRx> {
        self.wait_until(timeout, || {
            let t = self.track(from, kind);
            (t.intact >= n).then_some(t)
        })
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "timed out after {timeout:?} waiting for {n} {kind:?} frames from {from}; have {}",
                self.summary()
            )
        })
    }

    /// Waits until `f` returns something, re-checking on every frame.
    pub async fn wait_until<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut() -> Option<T>,
    ) -> Result<T, tokio::time::error::Elapsed> {
        let mut rx = self.changed.subscribe();
        tokio::time::timeout(timeout, async {
            loop {
                rx.borrow_and_update();
                if let Some(v) = f() {
                    return v;
                }
                if rx.changed().await.is_err() {
                    // Cannot happen: `self` holds the sender. Poll slowly just in case.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        })
        .await
    }
}

/// What one peer sent.
#[derive(Debug, Default)]
pub struct TxStats {
    pub audio_frames: AtomicU64,
    pub video_frames: AtomicU64,
    pub keyframes: AtomicU64,
    /// PLI or FIR received for the video track.
    pub keyframe_requests: AtomicU64,
    /// Packets received over UDP and over ICE-TCP (str0m peers only).
    pub udp_packets_in: AtomicU64,
    pub tcp_packets_in: AtomicU64,
}

impl TxStats {
    pub fn get(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub fn summary(&self) -> String {
        format!(
            "sent {} audio, {} video ({} key), {} keyframe requests; in: {} UDP, {} TCP packets",
            self.audio_frames.load(Ordering::Relaxed),
            self.video_frames.load(Ordering::Relaxed),
            self.keyframes.load(Ordering::Relaxed),
            self.keyframe_requests.load(Ordering::Relaxed),
            self.udp_packets_in.load(Ordering::Relaxed),
            self.tcp_packets_in.load(Ordering::Relaxed),
        )
    }
}
