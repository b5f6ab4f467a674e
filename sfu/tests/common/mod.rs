//! A simulated network of str0m clients around one `Sfu`, in virtual time.
//!
//! Every endpoint has a made-up address (the SFU 10.0.0.1:3478, clients
//! 10.0.0.N:5000). Datagrams are carried by an in-memory wire with a fixed
//! one-way latency; nothing touches a socket and nothing sleeps. Signaling is
//! by direct calls: a client's offer goes to `Sfu::handle_offer`, the SFU's
//! `Signal`s are applied to the client (server offers are answered at once,
//! unless a client is told to hold them).

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{DatagramRecv, Protocol, Receive};
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

/// Datagrams in flight: (arrival, source, destination, bytes), in send order.
type Wire = VecDeque<(Instant, SocketAddr, SocketAddr, Vec<u8>)>;

#[derive(Debug, Clone)]
pub struct Rx {
    pub at: Instant,
    /// The MediaStream id of the receiving m-line: the publisher's id.
    pub stream: String,
    pub kind: MediaKind,
    pub mid: Mid,
    pub pt: Pt,
    pub data: Arc<[u8]>,
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
}

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

    /// Polls str0m until it wants to wait: datagrams onto the wire, events handled.
    fn drive(&mut self, now: Instant, latency: Duration, wire: &mut Wire) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(_)) => break,
                Ok(Output::Transmit(t)) => {
                    wire.push_back((now + latency, t.source, t.destination, t.contents.to_vec()));
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
                self.received.push(Rx {
                    at: now,
                    stream: media.stream_id().to_owned(),
                    kind: media.kind(),
                    mid: d.mid,
                    pt: d.pt,
                    data: d.data,
                });
            }
            Event::KeyframeRequest(req) => {
                self.keyframe_requests.push((now, req.mid));
                if Some(req.mid) == self.video {
                    self.want_keyframe = true;
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
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// A new client (not yet in the room).
    pub fn add_client(&mut self, name: &'static str, pid: u64, codecs: Codecs) -> usize {
        let n = self.clients.len() as u8 + 2;
        let addr = client_addr(n);
        let mut cfg = RtcConfig::new().clear_codecs();
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
        let pid = c.pid;
        let room = self.room.clone();
        self.sfu
            .handle_offer(self.now, &room, pid, &offer.to_sdp_string());
        self.pump();
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
                    self.wire.push_back((
                        self.now + self.latency,
                        t.source,
                        t.destination,
                        t.contents.to_vec(),
                    ));
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
        while self.wire.front().is_some_and(|(at, ..)| *at <= now) {
            let (_, src, dst, data) = self.wire.pop_front().unwrap();
            if dst == sfu_addr() {
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
            .map(|(_, s, d, b)| (*s, *d, b.clone()))
            .collect()
    }

    /// Takes the datagrams in flight that `drop` picks off the wire (a
    /// loss); returns how many.
    pub fn drop_in_flight(
        &mut self,
        mut drop: impl FnMut(std::net::SocketAddr, std::net::SocketAddr, &[u8]) -> bool,
    ) -> usize {
        let before = self.wire.len();
        self.wire.retain(|(_, s, d, b)| !drop(*s, *d, b));
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
