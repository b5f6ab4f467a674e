//! The synthetic media every load generator client sends, and what receivers measure.
//!
//! Each frame carries a 20-byte mark: magic, publisher, sequence and the send time in
//! nanoseconds since the process-wide epoch (all clients live in one process, so one clock).
//! VP8 frames put the mark after a 10-byte VP8 frame header (a keyframe has bit 0 of byte 0
//! clear and the start code 9d 01 2a at bytes 3..6, as real VP8 keyframes do); Opus at offset 0.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;

pub const MAGIC: [u8; 4] = *b"TXB1";
pub const MARK_LEN: usize = 20;
pub const VP8_HDR: usize = 10;
/// Delta frames of ≈4,000 bytes (4 RTP packets) at 30 fps ≈ 1 Mbit/s, keyframes of 25,000.
pub const DELTA_BYTES: usize = 4000;
pub const KEY_BYTES: usize = 25_000;

/// The keyframe size: [`KEY_BYTES`], or `BENCH_KEY_BYTES` for a diagnostic run (how much of
/// the time to first frame is the keyframe's size: a 180p keyframe is about 6,000 bytes).
pub fn key_bytes() -> usize {
    static K: OnceLock<usize> = OnceLock::new();
    *K.get_or_init(|| {
        std::env::var("BENCH_KEY_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n >= 2 * MARK_LEN + VP8_HDR)
            .unwrap_or(KEY_BYTES)
    })
}
pub const OPUS_BYTES: usize = 120;
pub const VIDEO_INTERVAL: Duration = Duration::from_micros(33_333);
pub const AUDIO_INTERVAL: Duration = Duration::from_millis(20);

pub fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Kind {
    Audio,
    Video,
}

/// Builds one frame.
pub fn frame(kind: Kind, publisher: u32, seq: u32, key: bool) -> Vec<u8> {
    let (len, off) = match kind {
        Kind::Audio => (OPUS_BYTES, 0),
        Kind::Video if key => (key_bytes(), VP8_HDR),
        // ±25 % so packet counts vary from frame to frame, as real ones do.
        Kind::Video => (
            DELTA_BYTES * 3 / 4 + (seq as usize * 7919) % (DELTA_BYTES / 2),
            VP8_HDR,
        ),
    };
    let mut f = vec![0u8; len];
    if kind == Kind::Video {
        if key {
            f[..VP8_HDR]
                .copy_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]);
        } else {
            f[0] = 0x11;
        }
    }
    f[off..off + 4].copy_from_slice(&MAGIC);
    f[off + 4..off + 8].copy_from_slice(&publisher.to_be_bytes());
    f[off + 8..off + 12].copy_from_slice(&seq.to_be_bytes());
    f[off + 12..off + 20].copy_from_slice(&now_ns().to_be_bytes());
    for (i, b) in f[off + 20..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31);
    }
    f
}

pub fn is_vp8_keyframe(f: &[u8]) -> bool {
    f.len() >= 6 && f[0] & 1 == 0 && f[3..6] == [0x9d, 0x01, 0x2a]
}

/// (publisher, seq, send_ns) from a frame.
pub fn parse_mark(kind: Kind, f: &[u8]) -> Option<(u32, u32, u64)> {
    let off = if kind == Kind::Video { VP8_HDR } else { 0 };
    let m = f.get(off..off + MARK_LEN)?;
    if m[..4] != MAGIC {
        return None;
    }
    Some((
        u32::from_be_bytes(m[4..8].try_into().ok()?),
        u32::from_be_bytes(m[8..12].try_into().ok()?),
        u64::from_be_bytes(m[12..20].try_into().ok()?),
    ))
}

/// Everything the clients measure, shared by all of them (one thread: never contended).
#[derive(Default)]
pub struct Collector {
    /// Measurement window, ns since the epoch; frames sent in it count.
    pub window: Option<(u64, u64)>,
    pub sent: HashMap<(u32, Kind), u64>,
    /// Frames received in the window, per (publisher, kind).
    pub received: HashMap<(u32, Kind), u64>,
    /// Added latency of each frame received (send → complete at the receiver), µs.
    pub latency_us: Vec<u32>,
    /// Send → arrival at the receiver's socket (kernel stamp) of the datagram that completed
    /// each frame, µs: the server's share without the generator's queueing.
    pub sock_latency_us: Vec<u32>,
    /// Video frames: first and last arrival over all receivers, and how many.
    pub fanout: HashMap<(u32, u32), (u64, u64, u32)>,
    /// RTP packets that arrived at subscribers in the window (what the SFU forwarded).
    pub rtp_in: u64,
    /// RTP packets on RTX payload types (retransmissions, probes, padding) in the window.
    pub rtx_in: u64,
    /// Time from a client's start to its first video frame, ms.
    pub ttff_ms: Vec<f64>,
    /// Time from a client's start to its DTLS being up (signaling, ICE, DTLS), ms: the part
    /// of the time to first frame that comes before any media can flow.
    pub ttc_ms: Vec<f64>,
    pub keyframes_sent: u64,
    pub errors: Vec<String>,
    pub frames_total: u64,
    /// Peers whose DTLS came up, and those that saw a first video frame.
    pub connected: u64,
    pub first_video: u64,
    /// `recording` notices with state `on` that peers received (S2R).
    pub recording_on: u64,
}

impl Collector {
    pub fn in_window(&self, t: u64) -> bool {
        self.window.is_some_and(|(a, b)| t >= a && t < b)
    }

    pub fn on_sent(&mut self, kind: Kind, publisher: u32, key: bool) {
        if key {
            self.keyframes_sent += 1;
        }
        if self.in_window(now_ns()) {
            *self.sent.entry((publisher, kind)).or_default() += 1;
        }
    }

    /// A complete frame; `arrived` is when its last datagram reached the receiver's socket.
    pub fn on_frame(&mut self, kind: Kind, f: &[u8], arrived: u64) {
        let now = now_ns();
        let Some((publisher, seq, sent)) = parse_mark(kind, f) else {
            return;
        };
        self.frames_total += 1;
        if !self.in_window(sent) {
            return;
        }
        *self.received.entry((publisher, kind)).or_default() += 1;
        self.latency_us
            .push((now.saturating_sub(sent) / 1000) as u32);
        self.sock_latency_us
            .push((arrived.min(now).saturating_sub(sent) / 1000) as u32);
        if kind == Kind::Video {
            let e = self.fanout.entry((publisher, seq)).or_insert((now, now, 0));
            e.0 = e.0.min(now);
            e.1 = e.1.max(now);
            e.2 += 1;
        }
    }

    /// An RTP datagram at a subscriber: forwarded media, or (`media` false) a
    /// retransmission, probe or padding packet on an RTX payload type.
    pub fn on_rtp(&mut self, media: bool) {
        if self.in_window(now_ns()) {
            if media {
                self.rtp_in += 1;
            } else {
                self.rtx_in += 1;
            }
        }
    }

    /// Starts a new measurement window (S4 measures one per step).
    pub fn start_window(&mut self, window: (u64, u64)) {
        self.window = Some(window);
        self.sent.clear();
        self.received.clear();
        self.latency_us.clear();
        self.sock_latency_us.clear();
        self.fanout.clear();
        self.rtp_in = 0;
        self.rtx_in = 0;
    }

    pub fn error(&mut self, e: String) {
        if self.errors.len() < 20 {
            self.errors.push(e);
        }
    }
}

pub type Shared = std::sync::Arc<Mutex<Collector>>;

/// Is this datagram RTP (not RTCP, STUN or DTLS)?
pub use tuxa_test_kit::rtc::is_rtp;

pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i]
}
