//! A simulcast publisher as Chrome sends one: three VP8 layers `q`, `h`, `f` on their own SSRCs,
//! str0m in RTP mode (the publisher packetizes), Chrome's VP8 payload descriptor (15-bit picture
//! id, TL0PICIDX), each frame tagged with its layer ([`crate::payload::layer_frame`]). It pauses
//! and resumes layers when the SFU says `publish_layers` and sends a keyframe on a layer when
//! asked. The caller decides when a frame is due.

use std::time::{Duration, Instant};

use str0m::Rtc;
use str0m::media::{Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::rtp::{RtpWrite, SeqNo};

use crate::payload::layer_frame;

/// Simulcast layers, lowest first: rid and bytes per frame at 30 frames/s
/// (about 120 kbit/s, 400 kbit/s and 1.2 Mbit/s). A keyframe is three times
/// the size.
pub const LAYERS: [(&str, usize); 3] = [("q", 500), ("h", 1_667), ("f", 5_000)];
/// Frame interval of every layer.
pub const FRAME_INTERVAL: Duration = Duration::from_millis(33);
/// Largest VP8 payload fragment per RTP packet.
const VP8_FRAGMENT: usize = 1_100;

/// One simulcast layer as the publisher sends it.
#[derive(Debug, Clone)]
pub struct PubLayer {
    pub rid: Rid,
    pub frame_bytes: usize,
    seq: u64,
    picture_id: u16,
    tl0: u8,
    /// Not paused by `publish_layers`.
    pub active: bool,
    want_key: bool,
    pub frames: u64,
    pub packets: u64,
    /// RTP payload bytes.
    pub bytes: u64,
    /// When keyframes were sent on this layer.
    pub keyframes: Vec<Instant>,
    /// When a keyframe request for this layer arrived.
    pub key_requests: Vec<Instant>,
    /// (when, active) each time `publish_layers` changed this layer.
    pub toggles: Vec<(Instant, bool)>,
}

/// A simulcast publisher's sending state (str0m in RTP mode: we packetize).
#[derive(Debug, Clone)]
pub struct SimulcastPub {
    pub layers: Vec<PubLayer>,
    frame_no: u32,
    audio_seq: u64,
    /// Pause and resume layers as `publish_layers` says (as a browser does).
    pub honour_publish_layers: bool,
}

impl Default for SimulcastPub {
    fn default() -> SimulcastPub {
        SimulcastPub::new()
    }
}

impl SimulcastPub {
    pub fn new() -> SimulcastPub {
        let layers = LAYERS
            .iter()
            .enumerate()
            .map(|(i, (rid, bytes))| PubLayer {
                rid: (*rid).into(),
                frame_bytes: *bytes,
                seq: 1_000 + 7_000 * i as u64,
                // Independent encoders: unrelated picture ids, one close
                // to the 15-bit wrap.
                picture_id: [300, 12_000, 32_700][i],
                tl0: [10, 100, 250][i],
                active: true,
                want_key: true,
                frames: 0,
                packets: 0,
                bytes: 0,
                keyframes: Vec::new(),
                key_requests: Vec::new(),
                toggles: Vec::new(),
            })
            .collect();
        SimulcastPub {
            layers,
            frame_no: 0,
            audio_seq: 5_000,
            honour_publish_layers: true,
        }
    }

    pub fn layer(&self, rid: &str) -> &PubLayer {
        self.layers
            .iter()
            .find(|l| &*l.rid == rid)
            .expect("a layer with that rid")
    }

    /// The `simulcast` attribute of the video m-line: the three send layers.
    pub fn send_layers() -> Simulcast {
        let mut simulcast = Simulcast::new();
        for (rid, _) in LAYERS {
            simulcast.add_send_layer(SimulcastLayer::new(rid));
        }
        simulcast
    }

    /// The SFU's `publish_layers`: pauses and resumes layers (as a browser does) unless
    /// `honour_publish_layers` is off.
    pub fn on_publish_layers(&mut self, now: Instant, active: &[String]) {
        if !self.honour_publish_layers {
            return;
        }
        for l in &mut self.layers {
            let on = active.iter().any(|r| *r == *l.rid);
            if on != l.active {
                l.active = on;
                l.toggles.push((now, on));
                // A resumed encoding starts with a keyframe.
                if on {
                    l.want_key = true;
                }
            }
        }
    }

    /// A keyframe request for the video m-line: for one layer, or (no rid) for all.
    pub fn on_keyframe_request(&mut self, now: Instant, rid: Option<Rid>) {
        for l in &mut self.layers {
            if rid.is_none() || rid == Some(l.rid) {
                l.want_key = true;
                l.key_requests.push(now);
            }
        }
    }

    /// Writes audio frame number `n` (20 ms each) as one RTP packet on `mid`.
    pub fn write_audio(
        &mut self,
        rtc: &mut Rtc,
        mid: Mid,
        pt: Pt,
        now: Instant,
        n: u32,
        data: Vec<u8>,
    ) {
        self.audio_seq += 1;
        let mut api = rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, None).expect("audio stream");
        tx.write_rtp(
            RtpWrite::new(
                pt,
                SeqNo::from(self.audio_seq),
                n.wrapping_mul(960),
                now,
                data,
            )
            .marker(false),
        );
    }

    /// Writes the next picture on every active layer of `mid`, packetized here.
    pub fn write_video(&mut self, rtc: &mut Rtc, mid: Mid, vp8: Pt, now: Instant) {
        let frame_no = self.frame_no;
        self.frame_no += 1;
        let ts = frame_no.wrapping_mul(3_000);
        for (i, l) in self.layers.iter_mut().enumerate() {
            if !l.active {
                continue;
            }
            let key = l.want_key;
            l.want_key = false;
            // Interframes vary ±30 % around the layer's mean.
            let len = if key {
                3 * l.frame_bytes
            } else {
                l.frame_bytes * (70 + (frame_no as usize * 37 + i * 11) % 61) / 100
            };
            let frame = layer_frame(key, i as u8, frame_no, len);
            let chunks: Vec<&[u8]> = frame.chunks(VP8_FRAGMENT).collect();
            let mut api = rtc.direct_api();
            let tx = api
                .stream_tx_by_mid(mid, Some(l.rid))
                .expect("a send stream per simulcast layer");
            for (k, chunk) in chunks.iter().enumerate() {
                let mut payload = vp8_descriptor(k == 0, l.picture_id, l.tl0).to_vec();
                payload.extend_from_slice(chunk);
                l.seq += 1;
                l.packets += 1;
                l.bytes += payload.len() as u64;
                tx.write_rtp(
                    RtpWrite::new(vp8, SeqNo::from(l.seq), ts, now, payload)
                        .marker(k + 1 == chunks.len())
                        .nackable(true),
                );
            }
            l.picture_id = (l.picture_id + 1) & 0x7fff;
            l.tl0 = l.tl0.wrapping_add(1);
            l.frames += 1;
            if key {
                l.keyframes.push(now);
            }
        }
    }
}

/// Chrome's VP8 payload descriptor for simulcast: X, S on a frame's first
/// packet; I with a 15-bit picture id, L (TL0PICIDX), T (TID 0, Y=1).
pub fn vp8_descriptor(first: bool, picture_id: u16, tl0: u8) -> [u8; 6] {
    [
        0x80 | if first { 0x10 } else { 0 },
        0xe0,
        0x80 | (picture_id >> 8) as u8 & 0x7f,
        picture_id as u8,
        tl0,
        0x20,
    ]
}
