//! A simulated network of str0m clients around one `Sfu`, in virtual time.
//!
//! Every endpoint has a made-up address (the SFU 10.0.0.1:3478, clients
//! 10.0.0.N:5000). Datagrams are carried by an in-memory wire with a fixed
//! one-way latency; nothing touches a socket and nothing sleeps. Signaling is
//! by direct calls: a client's offer goes to `Sfu::handle_offer`, the SFU's
//! `Signal`s are applied to the client (server offers are answered at once,
//! unless a client is told to hold them).
//!
//! Each client's link to the SFU is two [`Link`]s (`up`, `down`; see
//! `net.rs`): rate limit with a drop-tail queue, delay, seeded loss, outage,
//! changeable at run time. The default link is ideal (no limit, no loss, the
//! simulation's `latency`), as the tests in `sim.rs` expect. A client can
//! also be a simulcast publisher ([`Sim::add_simulcast_publisher`]): str0m
//! in RTP mode, VP8 with Chrome's payload descriptor (15-bit picture id,
//! TL0PICIDX) on three layers `q`, `h`, `f`, each frame tagged with its layer.

#![allow(dead_code)]

mod net;
pub use net::*;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::CodecExtra;
use str0m::format::{Codec, FormatParams};
use str0m::media::{
    Direction, Frequency, MediaKind, MediaTime, Mid, Pt, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tuxa_protocol::{ParticipantId, RoomId, ServerMsg};
use tuxa_sfu::{Sfu, SfuConfig, SfuOutput};

pub fn sfu_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 3478)
}

pub fn client_addr(n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)), 5000)
}

/// A synthetic VP8 frame: a keyframe has the frame-type bit clear, the start
/// code 9d 01 2a and a size; an interframe has the bit set. The rest is
/// deterministic noise keyed by `salt` and `seq`, so every frame differs.
pub fn vp8_frame(key: bool, salt: u8, seq: u32, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let first_part = (len as u32).saturating_sub(10).min(0x7_ffff);
    // bit0: 0 = key frame; bits 1-3: version 0; bit 4: show_frame; 5-23: size.
    let tag = u32::from(!key) | (1 << 4) | (first_part << 5);
    v.extend_from_slice(&tag.to_le_bytes()[..3]);
    if key {
        v.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        v.extend_from_slice(&640u16.to_le_bytes());
        v.extend_from_slice(&480u16.to_le_bytes());
    }
    v.push(salt);
    v.extend_from_slice(&seq.to_be_bytes());
    noise(&mut v, len, u64::from(salt) << 32 | u64::from(seq));
    v
}

pub fn is_vp8_keyframe(frame: &[u8]) -> bool {
    frame.len() >= 10 && frame[0] & 1 == 0 && frame[3..6] == [0x9d, 0x01, 0x2a]
}

/// An "Opus" payload: the SFU never looks inside.
pub fn opus_frame(salt: u8, seq: u32) -> Vec<u8> {
    let len = 40 + (seq as usize * 37) % 90;
    let mut v = vec![0x78, salt];
    v.extend_from_slice(&seq.to_be_bytes());
    noise(
        &mut v,
        len,
        0xa0d1_0000_0000 | u64::from(salt) << 32 | u64::from(seq),
    );
    v
}

fn noise(v: &mut Vec<u8>, len: usize, seed: u64) {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while v.len() < len {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
}

/// A simulcast frame: `vp8_frame` whose salt byte says the layer (0xa0 |
/// index, lowest first) and whose sequence number is the frame number (the
/// same on every layer for the same picture).
pub fn layer_frame(key: bool, layer: u8, frame: u32, len: usize) -> Vec<u8> {
    vp8_frame(key, 0xa0 | layer, frame, len)
}

/// The (layer index, frame number) a `layer_frame` carries.
pub fn frame_layer(frame: &[u8]) -> Option<(u8, u32)> {
    let at = if is_vp8_keyframe(frame) { 10 } else { 3 };
    let tag = *frame.get(at)?;
    if tag & 0xf0 != 0xa0 {
        return None;
    }
    let n = frame.get(at + 1..at + 5)?;
    Some((tag & 0x0f, u32::from_be_bytes([n[0], n[1], n[2], n[3]])))
}

/// The sequence number an `opus_frame` carries.
pub fn audio_seq(frame: &[u8]) -> Option<u32> {
    let n = frame.get(2..6)?;
    Some(u32::from_be_bytes([n[0], n[1], n[2], n[3]]))
}

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

impl SimulcastPub {
    fn new() -> SimulcastPub {
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

/// A datagram in flight. `link` is the client address and direction whose
/// link carries it (None: a destination no client has).
#[derive(Debug, Clone)]
struct InFlight {
    at: Instant,
    src: SocketAddr,
    dst: SocketAddr,
    data: Vec<u8>,
    link: Option<(SocketAddr, Dir)>,
}

/// Datagrams in flight, by arrival (send order among equal arrivals).
type Wire = VecDeque<InFlight>;

fn put_on_wire(wire: &mut Wire, d: InFlight) {
    let at = d.at;
    let pos = wire.partition_point(|x| x.at <= at);
    wire.insert(pos, d);
}

#[derive(Debug, Clone)]
pub struct Rx {
    pub at: Instant,
    /// The MediaStream id of the receiving m-line: the publisher's id.
    pub stream: String,
    pub kind: MediaKind,
    pub mid: Mid,
    pub pt: Pt,
    pub data: Arc<[u8]>,
    /// VP8: the picture id as the receiver's str0m extended it.
    pub picture_id: Option<u64>,
    pub keyframe: bool,
    /// str0m's verdict: nothing is missing before this frame.
    pub contiguous: bool,
}

impl Rx {
    /// The simulcast layer index of a `layer_frame`.
    pub fn layer(&self) -> Option<u8> {
        frame_layer(&self.data).map(|(l, _)| l)
    }
}

#[derive(Debug, Clone)]
pub struct Sent {
    pub at: Instant,
    pub data: Arc<[u8]>,
    pub key: bool,
}

pub struct Client {
    pub name: &'static str,
    pub pid: ParticipantId,
    pub addr: SocketAddr,
    pub rtc: Rtc,
    pending: Option<SdpPendingOffer>,
    proposed: (Option<Mid>, Option<Mid>),
    /// Our published m-lines, once the SFU's answer is applied.
    pub audio: Option<Mid>,
    pub video: Option<Mid>,
    pub connected: bool,
    pub ice: Vec<IceConnectionState>,
    /// Every signaling message the SFU sent us, with when.
    pub signals: Vec<(Instant, ServerMsg)>,
    /// Server offers not answered yet (when `auto_answer` is off).
    pub held_offers: Vec<String>,
    pub auto_answer: bool,
    /// When we last answered a server offer.
    pub answered_at: Vec<Instant>,
    pub received: Vec<Rx>,
    pub keyframe_requests: Vec<(Instant, Mid)>,
    pub sent_audio: Vec<Sent>,
    pub sent_video: Vec<Sent>,
    /// Whether we send frames once connected.
    pub media_on: bool,
    next_audio: Option<Instant>,
    next_video: Option<Instant>,
    want_keyframe: bool,
    salt: u8,
    /// What the client's own str0m failed with, if anything.
    pub errors: Vec<String>,
    /// Off the network: nothing reaches it, it sends nothing, time stops for it.
    pub unplugged: bool,
    /// Client → SFU and SFU → client.
    pub up: Link,
    pub down: Link,
    /// Set for a simulcast publisher (str0m in RTP mode).
    pub simulcast: Option<SimulcastPub>,
    /// The SDP answers we gave to server offers.
    pub answers: Vec<String>,
    /// Offers we made (a publish); the SFU never needs another after an outage.
    pub offers_made: u32,
    /// RTP packets received in RTP mode (a simulcast publisher hears others).
    pub rtp_received: u64,
    /// Our own str0m's send-side estimates (TWCC), when BWE is enabled.
    pub bwe: Vec<(Instant, u64)>,
    /// Like a browser's decoder: a video frame that cannot be decoded (str0m
    /// says something before it is missing) makes us send a PLI, at most
    /// every [`AUTO_PLI_INTERVAL`], until a keyframe comes. Off by default
    /// (the tests in `sim.rs` count keyframe requests).
    pub auto_pli: bool,
    /// Per receiving mid: waiting for a keyframe since a broken frame, and
    /// when we last asked.
    broken: Vec<(Mid, Option<Instant>)>,
    /// The PLIs `auto_pli` sent.
    pub auto_plis: Vec<(Instant, Mid)>,
    /// Like a browser, keep checking connectivity after ICE is lost: str0m
    /// as a client drops a pair that timed out and sends no more checks, a
    /// browser goes on until ICE fails (about 30 s). When our ICE state is
    /// Disconnected, the SFU's candidate is given again every
    /// [`RECHECK_INTERVAL`], which makes a fresh pair and fresh checks
    /// (no signaling: the candidate is the one from the SFU's answer).
    pub keep_checking: bool,
    next_recheck: Option<Instant>,
    /// When `keep_checking` re-added the SFU's candidate.
    pub rechecks: Vec<Instant>,
}

/// How often a client whose ICE is disconnected tries again.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(2);

/// How often a receiver waiting for a keyframe asks again.
pub const AUTO_PLI_INTERVAL: Duration = Duration::from_millis(500);

impl Client {
    /// The payload type this client's str0m uses for `codec`.
    pub fn pt_for(&mut self, mid: Mid, codec: Codec) -> Option<Pt> {
        self.rtc
            .writer(mid)?
            .payload_params()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
    }

    /// The receiving m-line that carries `publisher`'s media of `kind`.
    pub fn rx_mid(&self, publisher: ParticipantId, kind: MediaKind) -> Option<Mid> {
        self.received
            .iter()
            .rev()
            .find(|r| r.stream == publisher.to_string() && r.kind == kind)
            .map(|r| r.mid)
    }

    /// Sends a PLI on a receiving m-line, as a browser that cannot decode does.
    pub fn send_pli(&mut self, rx_mid: Mid) {
        self.rtc
            .writer(rx_mid)
            .expect("a writer for the receiving m-line")
            .request_keyframe(None, str0m::media::KeyframeRequestKind::Pli)
            .expect("PLI accepted");
    }

    pub fn frames_from(&self, publisher: ParticipantId, kind: MediaKind) -> Vec<&Rx> {
        self.received
            .iter()
            .filter(|r| r.stream == publisher.to_string() && r.kind == kind)
            .collect()
    }

    pub fn signals_since(&self, t: Instant) -> Vec<ServerMsg> {
        self.signals
            .iter()
            .filter(|(at, _)| *at >= t)
            .map(|(_, m)| m.clone())
            .collect()
    }

    fn sent(&self, kind: MediaKind) -> &[Sent] {
        match kind {
            MediaKind::Audio => &self.sent_audio,
            MediaKind::Video => &self.sent_video,
        }
    }

    fn write_media(&mut self, now: Instant) {
        if !self.media_on || !self.connected {
            return;
        }
        if self.simulcast.is_some() {
            self.write_simulcast(now);
            return;
        }
        if let Some(mid) = self.audio {
            let due = *self.next_audio.get_or_insert(now);
            if now >= due {
                let seq = self.sent_audio.len() as u32;
                let data: Arc<[u8]> = opus_frame(self.salt, seq).into();
                let pt = self.pt_for(mid, Codec::Opus).expect("opus pt");
                let t = MediaTime::new(u64::from(seq) * 960, Frequency::FORTY_EIGHT_KHZ);
                let w = self.rtc.writer(mid).expect("audio writer");
                w.write(pt, now, t, data.clone()).expect("write audio");
                self.sent_audio.push(Sent {
                    at: now,
                    data,
                    key: false,
                });
                self.next_audio = Some(due + Duration::from_millis(20));
            }
        }
        if let Some(mid) = self.video {
            let due = *self.next_video.get_or_insert(now);
            if now >= due {
                let seq = self.sent_video.len() as u32;
                // Like a real encoder: a keyframe first and when asked, never on its own.
                let key = seq == 0 || self.want_keyframe;
                self.want_keyframe = false;
                let len = if key {
                    4_000
                } else {
                    300 + (seq as usize * 131) % 900
                };
                let data: Arc<[u8]> = vp8_frame(key, self.salt, seq, len).into();
                let pt = self.pt_for(mid, Codec::Vp8).expect("vp8 pt");
                let t = MediaTime::from_90khz(u64::from(seq) * 3_000);
                let w = self.rtc.writer(mid).expect("video writer");
                w.write(pt, now, t, data.clone()).expect("write video");
                self.sent_video.push(Sent { at: now, data, key });
                self.next_video = Some(due + Duration::from_millis(33));
            }
        }
    }

    /// A simulcast publisher's media: audio every 20 ms, and every frame
    /// interval one frame on each active layer, packetized here.
    fn write_simulcast(&mut self, now: Instant) {
        let (Some(amid), Some(vmid)) = (self.audio, self.video) else {
            return;
        };
        let opus = self.pt_in_config(Codec::Opus).expect("opus pt");
        let vp8 = self.pt_in_config(Codec::Vp8).expect("vp8 pt");
        let salt = self.salt;
        let sp = self.simulcast.as_mut().expect("a simulcast publisher");
        let due = *self.next_audio.get_or_insert(now);
        if now >= due {
            let n = self.sent_audio.len() as u32;
            let data: Arc<[u8]> = opus_frame(salt, n).into();
            sp.audio_seq += 1;
            let mut api = self.rtc.direct_api();
            let tx = api.stream_tx_by_mid(amid, None).expect("audio stream");
            tx.write_rtp(
                RtpWrite::new(
                    opus,
                    SeqNo::from(sp.audio_seq),
                    n.wrapping_mul(960),
                    now,
                    data.to_vec(),
                )
                .marker(false),
            );
            self.sent_audio.push(Sent {
                at: now,
                data,
                key: false,
            });
            self.next_audio = Some(due + Duration::from_millis(20));
        }
        let due = *self.next_video.get_or_insert(now);
        if now < due {
            return;
        }
        self.next_video = Some(due + FRAME_INTERVAL);
        let frame_no = sp.frame_no;
        sp.frame_no += 1;
        let ts = frame_no.wrapping_mul(3_000);
        for (i, l) in sp.layers.iter_mut().enumerate() {
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
            let mut api = self.rtc.direct_api();
            let tx = api
                .stream_tx_by_mid(vmid, Some(l.rid))
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

    /// A payload type from our codec configuration (RTP mode has no writer).
    pub fn pt_in_config(&self, codec: Codec) -> Option<Pt> {
        self.rtc
            .codec_config()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
    }

    /// The SSRC our str0m sends a simulcast layer on.
    pub fn layer_ssrc(&mut self, rid: &str) -> Option<u32> {
        let mid = self.video?;
        let mut api = self.rtc.direct_api();
        api.stream_tx_by_mid(mid, Some(rid.into()))
            .map(|tx| *tx.ssrc())
    }

    /// Polls str0m until it wants to wait: datagrams onto the wire, events handled.
    fn drive(&mut self, now: Instant, latency: Duration, wire: &mut Wire) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(_)) => break,
                Ok(Output::Transmit(t)) => {
                    let len = t.contents.len();
                    if let Some(at) = self.up.send(now, len, latency) {
                        put_on_wire(
                            wire,
                            InFlight {
                                at,
                                src: t.source,
                                dst: t.destination,
                                data: t.contents.to_vec(),
                                link: Some((self.addr, Dir::Up)),
                            },
                        );
                    }
                }
                Ok(Output::Event(e)) => self.on_event(now, e),
                Err(e) => {
                    self.errors.push(e.to_string());
                    break;
                }
            }
        }
    }

    fn on_event(&mut self, now: Instant, e: Event) {
        match e {
            Event::Connected => self.connected = true,
            Event::IceConnectionStateChange(s) => self.ice.push(s),
            Event::MediaData(d) => {
                let media = self.rtc.media(d.mid).expect("media of received data");
                let (picture_id, keyframe) = match d.codec_extra {
                    CodecExtra::Vp8(x) => (x.picture_id, x.is_keyframe),
                    _ => (None, false),
                };
                if media.kind() == MediaKind::Video && self.auto_pli {
                    let mid = d.mid;
                    let pos = match self.broken.iter().position(|(m, _)| *m == mid) {
                        Some(p) => p,
                        None => {
                            self.broken.push((mid, None));
                            self.broken.len() - 1
                        }
                    };
                    let waiting = !keyframe && (!d.contiguous || self.broken[pos].1.is_some());
                    if keyframe {
                        self.broken[pos].1 = None;
                    }
                    let due = self.broken[pos]
                        .1
                        .is_none_or(|t| now >= t + AUTO_PLI_INTERVAL);
                    if waiting && due {
                        self.broken[pos].1 = Some(now);
                        if let Some(mut w) = self.rtc.writer(mid)
                            && w.request_keyframe(None, str0m::media::KeyframeRequestKind::Pli)
                                .is_ok()
                        {
                            self.auto_plis.push((now, mid));
                        }
                    }
                }
                let media = self.rtc.media(d.mid).expect("media of received data");
                self.received.push(Rx {
                    at: now,
                    stream: media.stream_id().to_owned(),
                    kind: media.kind(),
                    mid: d.mid,
                    pt: d.pt,
                    data: d.data,
                    picture_id,
                    keyframe,
                    contiguous: d.contiguous,
                });
            }
            Event::RtpPacket(_) => self.rtp_received += 1,
            Event::EgressBitrateEstimate(str0m::bwe::BweKind::Twcc { estimate, .. }) => {
                self.bwe.push((now, estimate.as_u64()));
            }
            Event::KeyframeRequest(req) => {
                self.keyframe_requests.push((now, req.mid));
                if Some(req.mid) == self.video {
                    self.want_keyframe = true;
                    if let Some(sp) = &mut self.simulcast {
                        for l in &mut sp.layers {
                            if req.rid.is_none() || req.rid == Some(l.rid) {
                                l.want_key = true;
                                l.key_requests.push(now);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// How a new client's codecs are set up.
#[derive(Debug, Clone, Copy)]
pub enum Codecs {
    /// str0m's defaults for Opus and VP8 (VP8 on 96, as Chromium).
    Default,
    /// VP8 on the given payload type (Firefox uses 120, RTX 124), Opus on 109.
    Vp8On(u8, u8),
}

pub struct Sim {
    pub t0: Instant,
    pub now: Instant,
    pub step: Duration,
    pub latency: Duration,
    pub sfu: Sfu,
    pub room: RoomId,
    pub clients: Vec<Client>,
    wire: Wire,
    pub gone: Vec<ParticipantId>,
    /// Datagrams addressed to nobody (e.g. to a removed client).
    pub undeliverable: u64,
    /// RTP packets that reached the SFU, by SSRC (read from the clear SRTP
    /// header): proof of what a publisher really sends.
    pub rtp_at_sfu: std::collections::HashMap<u32, u64>,
}

impl Sim {
    pub fn new() -> Sim {
        let t0 = Instant::now();
        Sim {
            t0,
            now: t0,
            step: Duration::from_millis(2),
            latency: Duration::from_millis(10),
            sfu: Sfu::new(SfuConfig {
                candidates: vec![sfu_addr()],
                tcp_candidates: Vec::new(),
            }),
            room: RoomId::from_random([7; 10]),
            clients: Vec::new(),
            wire: VecDeque::new(),
            gone: Vec::new(),
            undeliverable: 0,
            rtp_at_sfu: std::collections::HashMap::new(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// A new client (not yet in the room).
    pub fn add_client(&mut self, name: &'static str, pid: u64, codecs: Codecs) -> usize {
        self.add_client_cfg(name, pid, codecs, false, false)
    }

    /// A new simulcast publisher (not yet in the room): str0m in RTP mode;
    /// publish with [`Sim::publish_simulcast`].
    pub fn add_simulcast_publisher(&mut self, name: &'static str, pid: u64) -> usize {
        let i = self.add_client_cfg(name, pid, Codecs::Default, true, false);
        self.clients[i].simulcast = Some(SimulcastPub::new());
        i
    }

    /// A simulcast publisher whose str0m estimates its uplink (TWCC from
    /// the SFU): for checking the link model against str0m's estimator.
    pub fn add_simulcast_publisher_with_bwe(&mut self, name: &'static str, pid: u64) -> usize {
        let i = self.add_client_cfg(name, pid, Codecs::Default, true, true);
        self.clients[i].simulcast = Some(SimulcastPub::new());
        i
    }

    fn add_client_cfg(
        &mut self,
        name: &'static str,
        pid: u64,
        codecs: Codecs,
        rtp_mode: bool,
        bwe: bool,
    ) -> usize {
        let n = self.clients.len() as u8 + 2;
        let addr = client_addr(n);
        let mut cfg = RtcConfig::new().clear_codecs().set_rtp_mode(rtp_mode);
        if bwe {
            cfg = cfg.enable_bwe(Some(str0m::bwe::Bitrate::kbps(300)));
        }
        match codecs {
            Codecs::Default => {
                cfg = cfg.enable_opus(true, false).enable_vp8(true);
            }
            Codecs::Vp8On(pt, rtx) => {
                let cc = cfg.codec_config();
                cc.add_config(
                    Pt::new_with_value(109),
                    None,
                    Codec::Opus,
                    Frequency::FORTY_EIGHT_KHZ,
                    Some(2),
                    FormatParams {
                        min_p_time: Some(10),
                        use_inband_fec: Some(true),
                        ..Default::default()
                    },
                );
                cc.add_config(
                    Pt::new_with_value(pt),
                    Some(Pt::new_with_value(rtx)),
                    Codec::Vp8,
                    Frequency::NINETY_KHZ,
                    None,
                    FormatParams::default(),
                );
            }
        }
        let mut rtc = cfg.build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("host candidate"))
            .expect("candidate accepted");
        self.clients.push(Client {
            name,
            pid: ParticipantId(pid),
            addr,
            rtc,
            pending: None,
            proposed: (None, None),
            audio: None,
            video: None,
            connected: false,
            ice: Vec::new(),
            signals: Vec::new(),
            held_offers: Vec::new(),
            auto_answer: true,
            answered_at: Vec::new(),
            received: Vec::new(),
            keyframe_requests: Vec::new(),
            sent_audio: Vec::new(),
            sent_video: Vec::new(),
            media_on: true,
            next_audio: None,
            next_video: None,
            want_keyframe: false,
            salt: n,
            errors: Vec::new(),
            unplugged: false,
            up: Link::new(LinkConfig::ideal(), 0x5eed_0000 + 2 * u64::from(n)),
            down: Link::new(LinkConfig::ideal(), 0x5eed_0001 + 2 * u64::from(n)),
            simulcast: None,
            answers: Vec::new(),
            offers_made: 0,
            rtp_received: 0,
            bwe: Vec::new(),
            auto_pli: false,
            broken: Vec::new(),
            auto_plis: Vec::new(),
            keep_checking: false,
            next_recheck: None,
            rechecks: Vec::new(),
        });
        self.clients.len() - 1
    }

    /// The client offers audio + video (send only) and the SFU answers.
    pub fn publish(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let stream = c.pid.to_string();
        let mut api = c.rtc.sdp_api();
        let a = api.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some(stream.clone()),
            Some(format!("{}-mic", c.name)),
            None,
        );
        let v = api.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            Some(stream),
            Some(format!("{}-cam", c.name)),
            None,
        );
        let (offer, pending) = api.apply().expect("an offer with two m-lines");
        c.pending = Some(pending);
        c.proposed = (Some(a), Some(v));
        self.send_offer(i, &offer.to_sdp_string());
    }

    fn send_offer(&mut self, i: usize, sdp: &str) {
        let c = &mut self.clients[i];
        c.offers_made += 1;
        let pid = c.pid;
        let room = self.room.clone();
        self.sfu.handle_offer(self.now, &room, pid, sdp);
        self.pump();
    }

    /// The client offers audio only (send only): a participant who mostly
    /// watches.
    pub fn publish_audio_only(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let stream = c.pid.to_string();
        let mut api = c.rtc.sdp_api();
        let a = api.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some(stream),
            Some(format!("{}-mic", c.name)),
            None,
        );
        let (offer, pending) = api.apply().expect("an offer with one m-line");
        c.pending = Some(pending);
        c.proposed = (Some(a), None);
        self.send_offer(i, &offer.to_sdp_string());
    }

    /// A simulcast publisher offers audio and video with three send layers.
    pub fn publish_simulcast(&mut self, i: usize) {
        let c = &mut self.clients[i];
        assert!(
            c.simulcast.is_some(),
            "{} is no simulcast publisher",
            c.name
        );
        let stream = c.pid.to_string();
        let mut simulcast = Simulcast::new();
        for (rid, _) in LAYERS {
            simulcast.add_send_layer(SimulcastLayer::new(rid));
        }
        let mut api = c.rtc.sdp_api();
        let a = api.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some(stream.clone()),
            Some(format!("{}-mic", c.name)),
            None,
        );
        let v = api.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            Some(stream),
            Some(format!("{}-cam", c.name)),
            Some(simulcast),
        );
        let (offer, pending) = api.apply().expect("an offer with two m-lines");
        c.pending = Some(pending);
        c.proposed = (Some(a), Some(v));
        self.send_offer(i, &offer.to_sdp_string());
    }

    /// Changes one direction of client `i`'s link from now on.
    pub fn set_link(&mut self, i: usize, dir: Dir, config: LinkConfig) {
        let c = &mut self.clients[i];
        match dir {
            Dir::Up => c.up.set(config),
            Dir::Down => c.down.set(config),
        }
    }

    /// Changes both directions of client `i`'s link.
    pub fn set_links(&mut self, i: usize, config: LinkConfig) {
        self.set_link(i, Dir::Up, config);
        self.set_link(i, Dir::Down, config);
    }

    /// RTP packets of a publisher's simulcast layer that reached the SFU.
    pub fn layer_packets_at_sfu(&mut self, i: usize, rid: &str) -> u64 {
        let Some(ssrc) = self.clients[i].layer_ssrc(rid) else {
            return 0;
        };
        self.rtp_at_sfu.get(&ssrc).copied().unwrap_or(0)
    }

    /// Adds a client and publishes at once.
    pub fn join(&mut self, name: &'static str, pid: u64, codecs: Codecs) -> usize {
        let i = self.add_client(name, pid, codecs);
        self.publish(i);
        i
    }

    pub fn idx(&self, pid: ParticipantId) -> Option<usize> {
        self.clients.iter().position(|c| c.pid == pid)
    }

    /// Applies every output of the SFU: datagrams onto the wire, signals to
    /// the clients (answering server offers at once, which may produce more).
    pub fn pump(&mut self) {
        while let Some(o) = self.sfu.poll_output() {
            match o {
                SfuOutput::Transmit(t) => {
                    assert_eq!(t.source, sfu_addr(), "the SFU sends from its one address");
                    let (now, latency) = (self.now, self.latency);
                    let len = t.contents.len();
                    let (at, link) = match self.clients.iter_mut().find(|c| c.addr == t.destination)
                    {
                        Some(c) => match c.down.send(now, len, latency) {
                            Some(at) => (at, Some((c.addr, Dir::Down))),
                            None => continue,
                        },
                        None => (now + latency, None),
                    };
                    put_on_wire(
                        &mut self.wire,
                        InFlight {
                            at,
                            src: t.source,
                            dst: t.destination,
                            data: t.contents.to_vec(),
                            link,
                        },
                    );
                }
                SfuOutput::Signal(pid, msg) => self.on_signal(pid, msg),
                SfuOutput::Gone(pid) => self.gone.push(pid),
            }
        }
    }

    fn on_signal(&mut self, pid: ParticipantId, msg: ServerMsg) {
        let now = self.now;
        let Some(i) = self.idx(pid) else {
            panic!("signal for unknown participant {pid}: {msg:?}");
        };
        let c = &mut self.clients[i];
        c.signals.push((now, msg.clone()));
        match msg {
            ServerMsg::PublishLayers { mid, active } => {
                let ours = c.video.is_some_and(|v| *v == *mid);
                if let Some(sp) = &mut c.simulcast
                    && sp.honour_publish_layers
                    && ours
                {
                    for l in &mut sp.layers {
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
            }
            ServerMsg::Answer { sdp } => {
                let pending = c.pending.take().expect("an answer to an offer we made");
                let answer = SdpAnswer::from_sdp_string(&sdp).expect("the SFU's answer parses");
                c.rtc
                    .sdp_api()
                    .accept_answer(pending, answer)
                    .expect("the SFU's answer applies");
                if c.proposed.0.is_some() {
                    c.audio = c.proposed.0.take();
                }
                if c.proposed.1.is_some() {
                    c.video = c.proposed.1.take();
                }
            }
            ServerMsg::Offer { sdp } => {
                if c.auto_answer {
                    self.answer(i, &sdp);
                } else {
                    c.held_offers.push(sdp);
                }
            }
            _ => {}
        }
    }

    /// Client `i` answers a server offer.
    pub fn answer(&mut self, i: usize, sdp: &str) {
        let c = &mut self.clients[i];
        assert!(c.pending.is_none(), "{}: glare in the simulation", c.name);
        let offer = SdpOffer::from_sdp_string(sdp).expect("the SFU's offer parses");
        let answer = c
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .expect("the SFU's offer is acceptable");
        c.answered_at.push(self.now);
        c.answers.push(answer.to_sdp_string());
        let pid = c.pid;
        self.sfu
            .handle_answer(self.now, pid, &answer.to_sdp_string());
        self.pump();
    }

    /// Answers the offers a client was holding.
    pub fn release_offers(&mut self, i: usize) {
        let held = std::mem::take(&mut self.clients[i].held_offers);
        for sdp in held {
            self.answer(i, &sdp);
        }
    }

    /// One step of virtual time: deliver what arrived, run timers, let
    /// clients write media and send.
    pub fn tick(&mut self) {
        self.now += self.step;
        let now = self.now;

        // Deliver the datagrams that have arrived.
        while self.wire.front().is_some_and(|d| d.at <= now) {
            let InFlight {
                src,
                dst,
                data,
                link,
                ..
            } = self.wire.pop_front().unwrap();
            if let Some((addr, dir)) = link
                && let Some(c) = self.clients.iter_mut().find(|c| c.addr == addr)
            {
                let l = match dir {
                    Dir::Up => &mut c.up,
                    Dir::Down => &mut c.down,
                };
                if !l.arrive(now, data.len()) {
                    continue;
                }
            }
            if dst == sfu_addr() {
                // SRTP leaves the RTP header in the clear: count by SSRC.
                if data.len() >= 12 && data[0] >> 6 == 2 && !(192..=223).contains(&data[1]) {
                    let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
                    *self.rtp_at_sfu.entry(ssrc).or_default() += 1;
                }
                self.sfu.handle_receive(now, src, dst, &data);
                self.pump();
            } else if let Some(c) = self
                .clients
                .iter_mut()
                .find(|c| c.addr == dst && !c.unplugged)
            {
                let contents = DatagramRecv::try_from(&data[..]).expect("a datagram str0m made");
                let input = Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source: src,
                        destination: dst,
                        contents,
                    },
                );
                if let Err(e) = c.rtc.handle_input(input) {
                    c.errors.push(e.to_string());
                }
                // Like any real event loop: poll right after each input.
                // (Handing a client several datagrams before polling makes
                // it drop SRTCP that arrives just behind the DTLS Finished,
                // which no real client does.)
                c.drive(now, self.latency, &mut self.wire);
            } else {
                self.undeliverable += 1;
            }
        }

        if self.sfu.poll_timeout().is_some_and(|t| t <= now) {
            self.sfu.handle_timeout(now);
        }
        self.pump();

        for c in &mut self.clients {
            if !c.rtc.is_alive() || c.unplugged {
                continue;
            }
            if c.keep_checking {
                let lost = c.ice.last() == Some(&IceConnectionState::Disconnected);
                if !lost {
                    c.next_recheck = None;
                } else if now >= *c.next_recheck.get_or_insert(now + RECHECK_INTERVAL) {
                    c.next_recheck = Some(now + RECHECK_INTERVAL);
                    c.rechecks.push(now);
                    let sfu = Candidate::host(sfu_addr(), "udp").expect("SFU candidate");
                    c.rtc.add_remote_candidate(sfu);
                }
            }
            c.write_media(now);
            if let Err(e) = c.rtc.handle_input(Input::Timeout(now)) {
                c.errors.push(e.to_string());
            }
            c.drive(now, self.latency, &mut self.wire);
        }
    }

    pub fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.tick();
        }
    }

    /// Runs until `cond` holds (returning how long that took) or `max` passes.
    pub fn run_until(
        &mut self,
        max: Duration,
        mut cond: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        while self.now - start < max {
            if cond(self) {
                return Some(self.now - start);
            }
            self.tick();
        }
        cond(self).then(|| self.now - start)
    }

    /// The datagrams in flight, for tests that want a real one to mangle.
    pub fn in_flight(&self) -> Vec<(std::net::SocketAddr, std::net::SocketAddr, Vec<u8>)> {
        self.wire
            .iter()
            .map(|d| (d.src, d.dst, d.data.clone()))
            .collect()
    }

    /// Takes the datagrams in flight that `drop` picks off the wire (a
    /// loss); returns how many.
    pub fn drop_in_flight(
        &mut self,
        mut drop: impl FnMut(std::net::SocketAddr, std::net::SocketAddr, &[u8]) -> bool,
    ) -> usize {
        let before = self.wire.len();
        self.wire.retain(|d| !drop(d.src, d.dst, &d.data));
        before - self.wire.len()
    }

    pub fn all_connected(&self) -> bool {
        self.clients.iter().all(|c| c.connected)
    }

    /// Asserts that `rx` received `tx`'s frames of `kind` byte for byte: a
    /// gapless run of what `tx` sent, at least `min` long, ending no more
    /// than a few frames before `tx`'s last (those may still be in flight).
    /// Returns how many.
    pub fn assert_receives(&self, rx: usize, tx: usize, kind: MediaKind, min: usize) -> usize {
        let (r, t) = (&self.clients[rx], &self.clients[tx]);
        let got = r.frames_from(t.pid, kind);
        let sent = t.sent(kind);
        assert!(
            got.len() >= min,
            "{} got {} {kind:?} frames from {} (sent {}), wanted at least {min}",
            r.name,
            got.len(),
            t.name,
            sent.len()
        );
        let first = sent
            .iter()
            .position(|s| s.data == got[0].data)
            .unwrap_or_else(|| {
                panic!(
                    "{}'s first {kind:?} frame from {} is not one {} sent: {:02x?}",
                    r.name,
                    t.name,
                    t.name,
                    &got[0].data[..got[0].data.len().min(16)]
                )
            });
        for (n, g) in got.iter().enumerate() {
            let s = sent.get(first + n).unwrap_or_else(|| {
                panic!(
                    "{} got more {kind:?} frames from {} than were sent",
                    r.name, t.name
                )
            });
            assert!(
                s.data == g.data,
                "{}'s {kind:?} frame #{n} from {} differs from sent #{} ({} vs {} bytes)",
                r.name,
                t.name,
                first + n,
                g.data.len(),
                s.data.len()
            );
            assert!(g.at >= s.at, "received before it was sent");
        }
        let behind = sent.len() - (first + got.len());
        assert!(
            behind <= 10,
            "{} stopped receiving {kind:?} from {}: {behind} frames missing at the end",
            r.name,
            t.name
        );
        got.len()
    }
}
