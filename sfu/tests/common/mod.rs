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
//!
//! The str0m client set-up, offer/answer, payloads and the simulcast
//! publisher come from `tuxa-test-kit` (shared with the end-to-end tests and
//! the bench); what is here is the simulation's own: the wire, the links,
//! virtual time, and what each client records.

#![allow(dead_code)]

mod net;
pub use net::*;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::format::CodecExtra;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::Protocol;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tuxa_protocol::{ParticipantId, RoomId, ServerMsg};
use tuxa_sfu::{Sfu, SfuConfig, SfuOutput};
use tuxa_test_kit::rtc;
use tuxa_test_kit::sdp::{self, Mids, PendingOffer, Track};

pub use tuxa_test_kit::payload::*;
pub use tuxa_test_kit::rtc::Codecs;
// Each test binary uses its own part of what this module offers.
#[allow(unused_imports)]
pub use tuxa_test_kit::simulcast::{FRAME_INTERVAL, LAYERS, SimulcastPub};

pub fn sfu_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 3478)
}

pub fn client_addr(n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)), 5000)
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
    pending: Option<PendingOffer>,
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
    /// The send-only microphone and camera m-lines of a publish.
    fn tracks(&self) -> (Track, Track) {
        let stream = self.pid.to_string();
        (
            Track::new(Direction::SendOnly, &stream, format!("{}-mic", self.name)),
            Track::new(Direction::SendOnly, stream, format!("{}-cam", self.name)),
        )
    }

    /// The payload type this client's str0m uses for `codec`.
    pub fn pt_for(&mut self, mid: Mid, codec: Codec) -> Option<Pt> {
        rtc::pt_for(&mut self.rtc, mid, codec)
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
                rtc::write_frame(&mut self.rtc, mid, pt, now, t, data.clone())
                    .expect("write audio");
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
                rtc::write_frame(&mut self.rtc, mid, pt, now, t, data.clone())
                    .expect("write video");
                self.sent_video.push(Sent { at: now, data, key });
                self.next_video = Some(due + Duration::from_millis(33));
            }
        }
    }

    /// A simulcast publisher's media: audio every 20 ms, and every frame
    /// interval one frame on each active layer, packetized by the kit's
    /// publisher.
    fn write_simulcast(&mut self, now: Instant) {
        let (Some(amid), Some(vmid)) = (self.audio, self.video) else {
            return;
        };
        let opus = self.pt_in_config(Codec::Opus).expect("opus pt");
        let vp8 = self.pt_in_config(Codec::Vp8).expect("vp8 pt");
        let sp = self.simulcast.as_mut().expect("a simulcast publisher");
        let due = *self.next_audio.get_or_insert(now);
        if now >= due {
            let n = self.sent_audio.len() as u32;
            let data: Arc<[u8]> = opus_frame(self.salt, n).into();
            sp.write_audio(&mut self.rtc, amid, opus, now, n, data.to_vec());
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
        sp.write_video(&mut self.rtc, vmid, vp8, now);
    }

    /// A payload type from our codec configuration (RTP mode has no writer).
    pub fn pt_in_config(&self, codec: Codec) -> Option<Pt> {
        rtc::pt_in_config(&self.rtc, codec)
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
                        sp.on_keyframe_request(now, req.rid);
                    }
                }
            }
            _ => {}
        }
    }
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
    /// What the recording tap handed out (rooms being recorded only).
    pub recorded: Vec<tuxa_sfu::Recorded>,
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
            recorded: Vec::new(),
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
        let mut cfg = rtc::config(codecs).set_rtp_mode(rtp_mode);
        if bwe {
            cfg = cfg.enable_bwe(Some(str0m::bwe::Bitrate::kbps(300)));
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
        let (mic, cam) = self.clients[i].tracks();
        self.offer(i, Some(mic), Some(cam));
    }

    /// Client `i` offers these m-lines; the SFU answers.
    fn offer(&mut self, i: usize, audio: Option<Track>, video: Option<Track>) {
        let c = &mut self.clients[i];
        let (sdp, pending) = sdp::offer(&mut c.rtc, audio, video).expect("an offer with m-lines");
        c.pending = Some(pending);
        c.offers_made += 1;
        let pid = c.pid;
        let room = self.room.clone();
        self.sfu.handle_offer(self.now, &room, pid, &sdp);
        self.pump();
    }

    /// The client offers audio only (send only): a participant who mostly
    /// watches.
    pub fn publish_audio_only(&mut self, i: usize) {
        let (mic, _) = self.clients[i].tracks();
        self.offer(i, Some(mic), None);
    }

    /// A simulcast publisher offers audio and video with three send layers.
    pub fn publish_simulcast(&mut self, i: usize) {
        let c = &self.clients[i];
        assert!(
            c.simulcast.is_some(),
            "{} is no simulcast publisher",
            c.name
        );
        let (mic, cam) = c.tracks();
        self.offer(
            i,
            Some(mic),
            Some(cam.with_simulcast(SimulcastPub::send_layers())),
        );
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
                SfuOutput::Record(r) => self.recorded.push(r),
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
                    && ours
                {
                    sp.on_publish_layers(now, &active);
                }
            }
            ServerMsg::Answer { sdp } => {
                let pending = c.pending.take().expect("an answer to an offer we made");
                let accepted = pending
                    .accept(&mut c.rtc, &sdp)
                    .expect("the SFU's answer applies");
                let mut mids = Mids {
                    audio: c.audio,
                    video: c.video,
                };
                mids.adopt(accepted);
                (c.audio, c.video) = (mids.audio, mids.video);
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
        let answer = sdp::answer(&mut c.rtc, sdp).expect("the SFU's offer is acceptable");
        c.answered_at.push(self.now);
        c.answers.push(answer.clone());
        let pid = c.pid;
        self.sfu.handle_answer(self.now, pid, &answer);
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
                if rtc::is_rtp(&data) {
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
                let input = rtc::receive(now, Protocol::Udp, src, dst, &data)
                    .expect("a datagram str0m made");
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
