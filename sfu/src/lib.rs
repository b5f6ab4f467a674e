//! tuxa's media plane, sans IO: a selective forwarding unit over str0m.
//!
//! Every participant has one [`str0m::Rtc`] (ICE-lite, DTLS-SRTP) in RTP
//! mode. An RTP packet a participant publishes arrives as
//! [`str0m::Event::RtpPacket`] and is written, as the same shared payload,
//! into the outgoing stream of every other participant in the room, with
//! that subscriber's sequence numbers, timestamps and payload type. Nothing
//! is decoded, mixed or re-packetized.
//!
//! The owner of the UDP socket feeds datagrams ([`Sfu::handle_receive`]) and
//! time ([`Sfu::handle_timeout`]) and drains [`SfuOutput`]s: datagrams to
//! send, signaling messages for a participant, and the next time to wake.
//! No clock is read and no socket is touched here, so the tests drive whole
//! calls between str0m clients in simulated time.
//!
//! Cost model: a datagram is handed to its own peer at once (str0m keeps
//! only one received RTP packet for the next poll), and what it forwards is
//! written into the subscribers' send queues; the subscribers themselves are
//! polled (encrypting and emitting the datagrams) when the owner next asks
//! for output. An owner that feeds a batch of datagrams before draining thus
//! polls each subscriber once per batch, not once per packet. Timers are a
//! heap keyed by each peer's next wake-up, so a wake-up touches only the
//! peers that are due.

mod alloc;
mod peer;
pub mod record;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::media::MediaKind;
use str0m::net::{DatagramRecv, Protocol, Receive, Transmit};
use str0m::{Candidate, Input};
use tuxa_protocol::{ErrorCode, ParticipantId, RoomId, ServerMsg};

use peer::{Forwarded, Layer, Peer, PeerEvent};
pub use record::{Recorded, RecordedRtp, RecordedTrack};

/// Keyframe requests to one publisher's track are sent at most this often:
/// a room of twelve losing packets together must not make the publisher
/// send twelve keyframes, which on 3G would cause the very loss it answers.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// How often each subscriber's video layers are chosen again from its
/// bandwidth estimate (a sharp fall of the estimate does not wait).
pub const ALLOCATION_INTERVAL: Duration = Duration::from_millis(500);

/// How long a participant's transport outlives the loss of ICE: a phone
/// that loses its network for a few seconds (a tunnel, a cell change)
/// carries on where it was, by itself or with an ICE restart, without
/// renegotiating anything. The hub's own reconnect grace is longer.
pub const ICE_GRACE: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Host candidates announced to every peer: the addresses at which the
    /// server's single UDP port is reachable.
    pub candidates: Vec<SocketAddr>,
    /// Passive TCP host candidates (ICE-TCP, RFC 6544), for networks that
    /// block UDP; may be empty. The owner of the TCP listener frames
    /// packets (RFC 4571) and feeds them with [`Sfu::handle_receive_on`].
    pub tcp_candidates: Vec<SocketAddr>,
}

#[derive(Debug)]
pub enum SfuOutput {
    /// A datagram to send from the media socket.
    Transmit(Transmit),
    /// A signaling message for one participant (answers, offers, tracks).
    Signal(ParticipantId, ServerMsg),
    /// A participant's transport failed (ICE consent lost or DTLS error).
    Gone(ParticipantId),
    /// For the recorder: a recorded room's media, its start and its stop.
    Record(Recorded),
}

#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    #[error("invalid SDP: {0}")]
    Sdp(String),
    #[error("unknown participant {0}")]
    UnknownParticipant(ParticipantId),
    #[error("no usable address to announce")]
    NoCandidate,
}

/// Counters for tests, the log and (later) metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SfuStats {
    /// RTP packets written to subscribers.
    pub packets_forwarded: u64,
    /// Of those, the packets that end a media unit: every audio packet and
    /// the last packet (marker bit) of each video frame.
    pub frames_forwarded: u64,
    pub keyframe_requests_sent: u64,
    pub keyframe_requests_throttled: u64,
    pub datagrams_unmatched: u64,
}

pub struct Sfu {
    config: SfuConfig,
    peers: HashMap<ParticipantId, Peer>,
    rooms: HashMap<RoomId, Vec<ParticipantId>>,
    /// Which peer a remote address belongs to, learnt from its first STUN
    /// (per protocol: a UDP and a TCP flow may share an address and port).
    by_addr: HashMap<(Protocol, SocketAddr), ParticipantId>,
    /// Peers that were given input or media since they were last polled
    /// (each flagged `dirty`, so it is listed once).
    dirty: Vec<ParticipantId>,
    /// Peers' wake-ups, earliest first. An entry whose time is not its
    /// peer's `scheduled` is stale and skipped when it comes up.
    timers: BinaryHeap<Reverse<(Instant, ParticipantId)>>,
    /// The latest time an input carried (for draining in `poll_output`).
    now: Option<Instant>,
    out: VecDeque<SfuOutput>,
    /// Reused buffer for one peer's events.
    events: Vec<PeerEvent>,
    stats: SfuStats,
    /// Sources announced before the participant's first offer.
    early_sources:
        HashMap<ParticipantId, std::collections::BTreeMap<String, tuxa_protocol::TrackSource>>,
    /// Rooms being recorded now, and what of them is recorded.
    tap: record::Tap,
}

/// Sizes of the SFU's internal tables, to check that they return to their
/// baseline once participants leave (benchmark S6).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SfuCounts {
    pub peers: usize,
    pub rooms: usize,
    pub addresses: usize,
    pub timers: usize,
    pub dirty: usize,
    pub queued_outputs: usize,
}

impl Sfu {
    pub fn new(config: SfuConfig) -> Sfu {
        Sfu {
            config,
            peers: HashMap::new(),
            rooms: HashMap::new(),
            by_addr: HashMap::new(),
            dirty: Vec::new(),
            timers: BinaryHeap::new(),
            now: None,
            out: VecDeque::new(),
            events: Vec::new(),
            stats: SfuStats::default(),
            early_sources: HashMap::new(),
            tap: record::Tap::default(),
        }
    }

    pub fn stats(&self) -> SfuStats {
        self.stats
    }

    pub fn counts(&self) -> SfuCounts {
        SfuCounts {
            peers: self.peers.len(),
            rooms: self.rooms.len(),
            addresses: self.by_addr.len(),
            timers: self.timers.len(),
            dirty: self.dirty.len(),
            queued_outputs: self.out.len(),
        }
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    pub fn has_peer(&self, pid: ParticipantId) -> bool {
        self.peers.contains_key(&pid)
    }

    /// A client's SDP offer. The first one creates the participant's
    /// transport; the answer (or an error) comes out as a `Signal`.
    pub fn handle_offer(&mut self, now: Instant, room: &RoomId, pid: ParticipantId, sdp: &str) {
        self.now = Some(now);
        let created = !self.peers.contains_key(&pid);
        if created {
            match Peer::new(now, pid, room.clone(), &self.config) {
                Ok(mut peer) => {
                    if let Some(sources) = self.early_sources.remove(&pid) {
                        peer.set_sources(sources);
                    }
                    self.peers.insert(pid, peer);
                    self.tap.joined(pid, room);
                    let members = self.rooms.entry(room.clone()).or_default();
                    members.push(pid);
                    // Subscribe the newcomer to what is already published.
                    let published: Vec<_> = members
                        .iter()
                        .filter(|p| **p != pid)
                        .filter_map(|p| self.peers.get(p))
                        .flat_map(|p| p.published())
                        .collect();
                    if let Some(peer) = self.peers.get_mut(&pid) {
                        for t in published {
                            peer.subscribe(t);
                        }
                    }
                }
                Err(e) => {
                    self.signal_error(pid, ErrorCode::Internal, e.to_string());
                    return;
                }
            }
        }
        let Some(peer) = self.peers.get_mut(&pid) else {
            return;
        };
        match peer.accept_offer(sdp) {
            Ok(Some(answer)) => self.out.push_back(SfuOutput::Signal(pid, answer)),
            Ok(None) => self.signal_error(
                pid,
                ErrorCode::NegotiationGlare,
                "the server has an offer outstanding; answer it, then offer again".into(),
            ),
            Err(e) => {
                self.signal_error(pid, ErrorCode::SdpInvalid, e.to_string());
                if created {
                    // Nothing was negotiated: forget the half-made peer, its
                    // room membership and its subscriptions.
                    self.remove(now, pid);
                    return;
                }
            }
        }
        self.mark(pid);
        self.drain(now);
    }

    /// A client's answer to a server offer.
    pub fn handle_answer(&mut self, now: Instant, pid: ParticipantId, sdp: &str) {
        self.now = Some(now);
        let Some(peer) = self.peers.get_mut(&pid) else {
            self.signal_error(
                pid,
                ErrorCode::NoPendingOffer,
                "no server offer is outstanding".into(),
            );
            return;
        };
        match peer.accept_answer(sdp) {
            // Each opened video starts on its layer's next keyframe (of
            // that layer: a request without the rid would reach no stream
            // of a simulcast publisher, and hold the next one back).
            Ok(Some(opened)) => self.want_keyframes(now, pid, opened),
            Ok(None) => self.signal_error(
                pid,
                ErrorCode::NoPendingOffer,
                "no server offer is outstanding".into(),
            ),
            Err(e) => self.signal_error(pid, ErrorCode::SdpInvalid, e.to_string()),
        }
        self.mark(pid);
        self.drain(now);
    }

    /// What a participant's sending m-lines carry (camera, screen, second
    /// camera), by mid; subscribers see it with each track. Applies to
    /// m-lines negotiated after it, so clients send it before their offer.
    pub fn set_sources(
        &mut self,
        pid: ParticipantId,
        sources: std::collections::BTreeMap<String, tuxa_protocol::TrackSource>,
    ) {
        match self.peers.get_mut(&pid) {
            Some(peer) => peer.set_sources(sources),
            None => {
                self.early_sources.insert(pid, sources);
            }
        }
    }

    /// The participant chose audio only (`on`) or video again: video to them
    /// stops, or resumes at the next keyframe (asked for at once).
    pub fn set_audio_only(&mut self, now: Instant, pid: ParticipantId, on: bool) {
        self.now = Some(now);
        let Some(peer) = self.peers.get_mut(&pid) else {
            return;
        };
        let owed = peer.set_audio_only(on, &mut self.out);
        self.want_keyframes(now, pid, owed);
        self.mark(pid);
        self.drain(now);
    }

    /// Starts (`on`) or stops recording a room's published media; see
    /// [`record`]. Starting twice or stopping what is not recorded changes
    /// nothing (the control plane decides who may, and says no itself).
    pub fn set_recording(&mut self, now: Instant, room: &RoomId, on: bool) {
        self.now = Some(now);
        if !on {
            self.tap.stop(now, room, &mut self.out);
            return;
        }
        let members = self.rooms.get(room).into_iter().flatten();
        let members = members.filter_map(|p| Some((*p, self.peers.get(p)?)));
        let wants = self.tap.start(now, room, members, &mut self.out);
        for (publisher, mid, rid) in wants.unwrap_or_default() {
            let ev = PeerEvent::WantKeyframe {
                publisher,
                mid,
                rid,
            };
            self.on_event(now, publisher, ev);
        }
        self.drain(now);
    }

    pub fn is_recording(&self, room: &RoomId) -> bool {
        self.tap.is_recording(room)
    }

    /// Takes a participant out: its tracks are withdrawn from everyone else.
    pub fn remove(&mut self, now: Instant, pid: ParticipantId) {
        self.early_sources.remove(&pid);
        let Some(mut peer) = self.peers.remove(&pid) else {
            return;
        };
        self.tap.left(now, pid, &mut self.out);
        peer.close();
        self.by_addr.retain(|_, p| *p != pid);
        self.dirty.retain(|p| *p != pid);
        // Its heap entries would only be skipped when they come up; a peer
        // that leaves must not leave anything behind.
        self.timers.retain(|Reverse((_, p))| *p != pid);
        if let Some(members) = self.rooms.get_mut(peer.room()) {
            members.retain(|p| *p != pid);
            let members = members.clone();
            if members.is_empty() {
                self.rooms.remove(peer.room());
            }
            for other in members {
                if let Some(o) = self.peers.get_mut(&other) {
                    o.unsubscribe_from(pid);
                }
                self.mark(other);
            }
        }
        self.drain(now);
    }

    /// One datagram from the media socket (UDP).
    pub fn handle_receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        self.handle_receive_on(now, Protocol::Udp, source, destination, data);
    }

    /// One packet received over `proto`: a UDP datagram, or one RFC 4571
    /// frame (without its length) of a TCP connection, `source` being the
    /// connection's remote address and `destination` the TCP candidate it
    /// reached. Returns whether a peer took it (STUN with a peer's ufrag, or
    /// anything from an address a peer knows); the owner of a TCP
    /// connection uses that to close connections that send nothing valid.
    pub fn handle_receive_on(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        self.now = Some(now);
        let Ok(contents) = DatagramRecv::try_from(data) else {
            self.stats.datagrams_unmatched += 1;
            return false;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto,
                source,
                destination,
                contents,
            },
        );
        let known = self
            .by_addr
            .get(&(proto, source))
            .copied()
            .filter(|pid| self.peers.get(pid).is_some_and(|p| p.accepts(&input)));
        let pid = match known {
            Some(pid) => pid,
            None => {
                // A new address: only STUN with a peer's ufrag (or an address
                // from a known candidate pair) is accepted.
                let Some(pid) = self
                    .peers
                    .iter()
                    .find(|(_, p)| p.accepts(&input))
                    .map(|(pid, _)| *pid)
                else {
                    self.stats.datagrams_unmatched += 1;
                    return false;
                };
                self.by_addr.insert((proto, source), pid);
                pid
            }
        };
        if let Some(peer) = self.peers.get_mut(&pid) {
            peer.handle_input(input);
        }
        // Only this peer now: str0m holds one received RTP packet until the
        // next poll. The subscribers it wrote to wait for `poll_output`.
        self.poll_peer(now, pid);
        true
    }

    /// Drives time. Call when [`Sfu::poll_timeout`] says so (or earlier).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = Some(now);
        while let Some(Reverse((at, pid))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(peer) = self.peers.get_mut(&pid) else {
                continue;
            };
            if peer.scheduled != Some(at) {
                continue;
            }
            peer.scheduled = None;
            if peer.next_timeout() > now {
                // Woken early (the peer's timer moved later since): sleep on.
                let next = peer.next_timeout();
                self.schedule(pid, next);
                continue;
            }
            peer.handle_input(Input::Timeout(now));
            if let Some(req) = peer.due_keyframe_requests(now) {
                self.stats.keyframe_requests_sent += req;
            }
            // Closed: the poll reports it gone.
            let closing = peer.ice_grace_over(now);
            let allocate = !closing && now >= peer.next_allocation;
            self.mark(pid);
            if allocate {
                self.allocate(now, pid);
                self.update_layers(now, pid);
            }
        }
        self.drain(now);
    }

    /// Chooses the layer of every video track `pid` receives from its
    /// bandwidth estimate, and lets the publishers concerned pause or resume
    /// layers accordingly.
    fn allocate(&mut self, now: Instant, pid: ParticipantId) {
        let Some(peer) = self.peers.get(&pid) else {
            return;
        };
        let mut audio_bps = 0;
        let mut demands = Vec::new();
        let mut layers_of: Vec<(usize, Vec<Layer>)> = Vec::new();
        let mut publishers = Vec::new();
        for (i, owner, mid, kind, source, at) in peer.subscriptions() {
            let Some(view) = self.peers.get(&owner).and_then(|p| p.layer_view(mid, now)) else {
                continue;
            };
            match kind {
                MediaKind::Audio => {
                    // A microphone that sends nothing (muted, gone quiet
                    // for good) reserves nothing; DTX silence still counts
                    // as sending, and speech resumes at full rate.
                    if let Some(rate) = view.first().and_then(|(_, r)| *r) {
                        // RED is stripped on a thin link: half of it comes.
                        let red = self.peers.get(&owner).is_some_and(|p| p.sends_red(mid));
                        let rate = if red && peer.thin_link() {
                            rate / 2
                        } else {
                            rate
                        };
                        audio_bps += rate.max(alloc::AUDIO_RESERVE_BPS);
                    }
                }
                MediaKind::Video => {
                    demands.push(alloc::Demand {
                        current: at.and_then(|l| view.iter().position(|(x, _)| *x == l)),
                        layers: view.iter().map(|(_, r)| *r).collect(),
                        priority: u8::from(source == tuxa_protocol::TrackSource::Screen),
                    });
                    layers_of.push((i, view.into_iter().map(|(l, _)| l).collect()));
                    if !publishers.contains(&owner) {
                        publishers.push(owner);
                    }
                }
            }
        }
        let Some(peer) = self.peers.get_mut(&pid) else {
            return;
        };
        let Some(budget) = peer.allocation_due(now, audio_bps) else {
            return;
        };
        let chosen = alloc::allocate(budget, &demands);
        let choices: Vec<(usize, Option<(usize, Layer)>)> = layers_of
            .iter()
            .zip(&chosen)
            .map(|((i, layers), c)| (*i, c.and_then(|c| Some((c, *layers.get(c)?)))))
            .collect();
        let lowest: Vec<Option<(usize, Layer)>> = layers_of
            .iter()
            .zip(&demands)
            .map(|((_, layers), d)| {
                let r = d.layers.iter().position(Option::is_some)?;
                Some((r, *layers.get(r)?))
            })
            .collect();
        let probe = alloc::probe_targets(audio_bps, &demands, &chosen);
        let (owed, changed) = peer.apply_allocation(now, &choices, &lowest, probe, &mut self.out);
        self.want_keyframes(now, pid, owed);
        // A publisher hears at once when a layer is wanted again; what is no
        // longer wanted waits for its own round (every publisher's layers
        // are looked at with its allocation, every half second). Doing it
        // for every subscriber's round cost O(room²) each half second: 1.7 %
        // of the server's CPU at 1 → 199 (perf, S3).
        if changed {
            for p in publishers {
                self.update_layers(now, p);
            }
        }
        self.mark(pid);
    }

    /// Asks publishers for the keyframes `pid` is owed: (publisher, its
    /// track's mid, the layer).
    fn want_keyframes(&mut self, now: Instant, pid: ParticipantId, owed: Vec<peer::Owed>) {
        for (publisher, mid, rid) in owed {
            self.on_event(
                now,
                pid,
                PeerEvent::WantKeyframe {
                    publisher,
                    mid,
                    rid,
                },
            );
        }
    }

    /// Tells a publisher which layers of its tracks anyone in the room
    /// receives (see `Peer::update_publish_layers`).
    fn update_layers(&mut self, now: Instant, publisher: ParticipantId) {
        let Some(p) = self.peers.get(&publisher) else {
            return;
        };
        let mids: Vec<_> = p
            .published()
            .filter(|t| t.kind == MediaKind::Video)
            .map(|t| t.mid)
            .collect();
        if mids.is_empty() {
            return;
        }
        let members = self.rooms.get(p.room()).cloned().unwrap_or_default();
        let wanted: Vec<_> = mids
            .into_iter()
            .map(|mid| {
                let mut taken: Vec<Layer> = Vec::new();
                for m in members.iter().filter(|m| **m != publisher) {
                    if let Some(o) = self.peers.get(m) {
                        for l in o.layers_taken(publisher, mid) {
                            if !taken.contains(&l) {
                                taken.push(l);
                            }
                        }
                    }
                }
                (mid, taken)
            })
            .collect();
        if let Some(p) = self.peers.get_mut(&publisher) {
            p.update_publish_layers(now, &wanted, &mut self.out);
        }
    }

    /// When [`Sfu::handle_timeout`] must next be called. It may be early
    /// (a peer's timer can move later without the heap knowing); never late.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.dirty.is_empty() {
            // Output is waiting to be drained: that is due now.
            return self.now;
        }
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// The next output. Subscribers written to since the last call are
    /// polled first (see the crate docs on batching).
    pub fn poll_output(&mut self) -> Option<SfuOutput> {
        if self.out.is_empty()
            && !self.dirty.is_empty()
            && let Some(now) = self.now
        {
            self.drain(now);
        }
        self.out.pop_front()
    }

    fn mark(&mut self, pid: ParticipantId) {
        if let Some(p) = self.peers.get_mut(&pid)
            && !p.dirty
        {
            p.dirty = true;
            self.dirty.push(pid);
        }
    }

    /// Puts a peer's next wake-up in the heap unless an earlier one is there.
    fn schedule(&mut self, pid: ParticipantId, at: Instant) {
        let Some(p) = self.peers.get_mut(&pid) else {
            return;
        };
        if p.scheduled.is_some_and(|s| s <= at) {
            return;
        }
        p.scheduled = Some(at);
        self.timers.push(Reverse((at, pid)));
    }

    fn signal_error(&mut self, pid: ParticipantId, code: ErrorCode, message: String) {
        self.out.push_back(SfuOutput::Signal(
            pid,
            ServerMsg::Error {
                code,
                message,
                in_reply_to: None,
            },
        ));
    }

    /// Polls every dirty peer until it has nothing more to say, carrying
    /// media and keyframe requests between peers (which dirties them in turn).
    fn drain(&mut self, now: Instant) {
        while let Some(pid) = self.dirty.pop() {
            self.poll_peer(now, pid);
        }
    }

    fn poll_peer(&mut self, now: Instant, pid: ParticipantId) {
        let Some(peer) = self.peers.get_mut(&pid) else {
            return;
        };
        let mut events = std::mem::take(&mut self.events);
        peer.dirty = false;
        peer.poll(now, &mut self.out, &mut events);
        let next = peer.next_timeout();
        self.schedule(pid, next);
        for ev in events.drain(..) {
            self.on_event(now, pid, ev);
        }
        self.events = events;
    }

    fn on_event(&mut self, now: Instant, from: ParticipantId, ev: PeerEvent) {
        match ev {
            PeerEvent::Published(track) => {
                let Some(room) = self.peers.get(&from).map(|p| p.room().clone()) else {
                    return;
                };
                for other in self.rooms.get(&room).into_iter().flatten() {
                    if *other == from {
                        continue;
                    }
                    if let Some(o) = self.peers.get_mut(other) {
                        o.subscribe(track.clone());
                        if !o.dirty {
                            o.dirty = true;
                            self.dirty.push(*other);
                        }
                    }
                }
            }
            PeerEvent::Rtp(pkt) => {
                let mut want_keyframe = false;
                let Some(room) = self.peers.get(&from).map(|p| p.room().clone()) else {
                    return;
                };
                let ends_unit = pkt.kind == MediaKind::Audio || pkt.marker;
                let record_key = self.tap.on_rtp(from, &pkt, &self.peers, &mut self.out);
                for other in self.rooms.get(&room).into_iter().flatten() {
                    if *other == from {
                        continue;
                    }
                    let Some(o) = self.peers.get_mut(other) else {
                        continue;
                    };
                    match o.forward(from, &pkt) {
                        Forwarded::Written => {
                            self.stats.packets_forwarded += 1;
                            self.stats.frames_forwarded += u64::from(ends_unit);
                            if !o.dirty {
                                o.dirty = true;
                                self.dirty.push(*other);
                            }
                        }
                        Forwarded::NeedsKeyframe => want_keyframe = true,
                        Forwarded::Skipped => {}
                    }
                }
                // A subscriber is waiting for a picture: ask the publisher
                // (throttled per track, so a packet-by-packet ask is cheap).
                if want_keyframe {
                    self.on_event(
                        now,
                        from,
                        PeerEvent::WantKeyframe {
                            publisher: from,
                            mid: pkt.mid,
                            rid: pkt.rid,
                        },
                    );
                }
                if let Some((publisher, mid, rid)) = record_key {
                    let ev = PeerEvent::WantKeyframe {
                        publisher,
                        mid,
                        rid,
                    };
                    self.on_event(now, from, ev);
                }
            }
            PeerEvent::WantKeyframe {
                publisher,
                mid,
                rid,
            } => {
                if let Some(p) = self.peers.get_mut(&publisher) {
                    let sent = p.request_keyframe(now, mid, rid);
                    let next = p.next_timeout();
                    if sent {
                        self.stats.keyframe_requests_sent += 1;
                        self.mark(publisher);
                    } else {
                        self.stats.keyframe_requests_throttled += 1;
                        // The deferred request wakes the publisher.
                        self.schedule(publisher, next);
                    }
                }
            }
            PeerEvent::Gone => {
                self.out.push_back(SfuOutput::Gone(from));
                self.remove(now, from);
            }
        }
    }
}

/// Turns the configured addresses into str0m host candidates: UDP, then
/// passive TCP (str0m gives TCP a lower priority, so clients prefer UDP).
fn host_candidates(config: &SfuConfig) -> Result<Vec<Candidate>, SfuError> {
    let tcp = config.tcp_candidates.iter().filter_map(|a| {
        Candidate::builder()
            .tcp()
            .host(*a)
            .tcptype(str0m::net::TcpType::Passive)
            .build()
            .ok()
    });
    let c: Vec<Candidate> = config
        .candidates
        .iter()
        .filter_map(|a| Candidate::host(*a, "udp").ok())
        .chain(tcp)
        .collect();
    if c.is_empty() {
        return Err(SfuError::NoCandidate);
    }
    Ok(c)
}
