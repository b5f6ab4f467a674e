//! One participant's transport and the tracks it publishes and receives.
//!
//! Media is forwarded as RTP (str0m's RTP mode): a packet a publisher sends is
//! decrypted once, and for every subscriber only its header is rewritten
//! (SSRC by str0m, sequence number, timestamp and payload type by us) before
//! str0m encrypts and sends it. The payload is one `Arc<[u8]>` shared by all
//! subscribers and their retransmission caches. The rewriting state is per
//! subscriber and per track ([`Rewrite`]), so that choosing a different
//! simulcast layer (or source) for one subscriber only moves its offsets.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use std::collections::BTreeMap;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::{Codec, PayloadParams};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Pt, Rid};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};

use tuxa_protocol::{
    AudioOnlyReason, ParticipantId, RoomId, ServerMsg, TrackId, TrackInfo, TrackSource,
};

use crate::{KEYFRAME_REQUEST_INTERVAL, SfuConfig, SfuError, SfuOutput, host_candidates};

/// A track some participant publishes, as others subscribe to it.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    pub owner: ParticipantId,
    pub mid: Mid,
    pub kind: MediaKind,
    pub id: TrackId,
    pub source: TrackSource,
}

/// One RTP packet a publisher sent, as every subscriber gets it: parsed and
/// classified once, whatever the fan-out.
#[derive(Debug, Clone)]
pub(crate) struct Packet {
    pub mid: Mid,
    pub rid: Option<Rid>,
    pub kind: MediaKind,
    /// The publisher's payload type and what it stands for (subscribers may
    /// number the same codec differently).
    pub pt: Pt,
    pub params: PayloadParams,
    /// Extended (rollover-free) sequence number of the publisher's stream.
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    pub arrived: Instant,
    /// The first packet of a keyframe: where a new subscriber can start.
    pub keyframe_start: bool,
    /// Header extensions worth passing on (audio level, orientation); the
    /// transport ones (MID, RID, transport-cc) are each subscriber's own.
    pub ext: ExtensionValues,
    pub payload: Arc<[u8]>,
}

/// What a peer's poll produced that concerns other peers.
// Packet is the large variant; boxing it would allocate per packet, and the
// events Vec is reused, so the size does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum PeerEvent {
    Published(Published),
    Rtp(Packet),
    WantKeyframe {
        publisher: ParticipantId,
        mid: Mid,
        rid: Option<Rid>,
    },
    Gone,
}

#[derive(Debug)]
struct TrackIn {
    mid: Mid,
    kind: MediaKind,
    id: TrackId,
    source: TrackSource,
    last_keyframe_request: Option<Instant>,
    /// A request that arrived inside the throttle window, sent when it ends.
    keyframe_pending: Option<Option<Rid>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutState {
    /// Waiting for the next server offer.
    ToOpen,
    /// In the outstanding server offer.
    Negotiating(Mid),
    Open(Mid),
    ToStop(Mid),
    NegotiatingStop(Mid),
}

/// How one subscriber's copy of a track is renumbered. Sequence numbers must
/// be gapless in what the subscriber sees from its start (a gap is a loss it
/// NACKs), and continue across a change of source; timestamps must keep
/// their spacing. Both are `publisher value + offset`, the offsets chosen
/// when forwarding (re)starts.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Rewrite {
    /// Added (wrapping) to the publisher's extended sequence number.
    seq_offset: u64,
    /// Added (wrapping) to the publisher's RTP timestamp.
    ts_offset: u32,
    /// Publisher sequence numbers below this predate the start: dropped.
    first_in: u64,
    last_out_seq: u64,
    last_out_ts: u32,
    started: bool,
}

impl Rewrite {
    /// Starts (or restarts, after a change of source) at this packet.
    fn start(&mut self, seq: u64, timestamp: u32) {
        // The first outgoing sequence number is 1 (rollover counter 0, so
        // the subscriber needs no out-of-band rollover state); a restart
        // continues after the last one sent.
        let next = self.last_out_seq.wrapping_add(1);
        self.seq_offset = next.wrapping_sub(seq);
        self.ts_offset = if self.started {
            self.last_out_ts.wrapping_add(1).wrapping_sub(timestamp)
        } else {
            0
        };
        self.first_in = seq;
        self.started = true;
    }

    /// The subscriber's (sequence number, timestamp), or None for a packet
    /// from before the start.
    fn map(&mut self, seq: u64, timestamp: u32) -> Option<(u64, u32)> {
        if !self.started || seq < self.first_in {
            return None;
        }
        let out = seq.wrapping_add(self.seq_offset);
        let ts = timestamp.wrapping_add(self.ts_offset);
        if out > self.last_out_seq {
            self.last_out_seq = out;
            self.last_out_ts = ts;
        }
        Some((out, ts))
    }
}

#[derive(Debug)]
struct TrackOut {
    source: Published,
    state: OutState,
    /// The simulcast layer this subscriber receives (None: no simulcast).
    /// Layer choice by bandwidth comes with the bad-network work; until then
    /// the first layer seen is used.
    layer: Option<Rid>,
    /// Video only: nothing is forwarded until a keyframe, because a decoder
    /// given interframes first shows garbage or nothing.
    awaiting_keyframe: bool,
    rewrite: Rewrite,
    /// Our outgoing stream for this track, once str0m made it.
    ssrc: Option<Ssrc>,
    /// Publisher payload type → ours, learnt on first use (a handful at most).
    pts: Vec<(Pt, Pt)>,
}

/// What became of one packet offered to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forwarded {
    Written,
    /// Not for this subscriber (other track, other layer, not yet open).
    Skipped,
    /// Dropped while this subscriber waits for a keyframe: ask the publisher.
    NeedsKeyframe,
}

impl TrackOut {
    fn mid(&self) -> Option<Mid> {
        match self.state {
            OutState::ToOpen => None,
            OutState::Negotiating(m)
            | OutState::Open(m)
            | OutState::ToStop(m)
            | OutState::NegotiatingStop(m) => Some(m),
        }
    }
}

pub(crate) struct Peer {
    id: ParticipantId,
    room: RoomId,
    rtc: Rtc,
    tracks_in: Vec<TrackIn>,
    tracks_out: Vec<TrackOut>,
    pending: Option<SdpPendingOffer>,
    next_timeout: Instant,
    published_count: u32,
    gone: bool,
    /// What the client said each of its sending m-lines carries, by mid.
    sources: BTreeMap<String, TrackSource>,
    /// Incoming SSRC → (index in `tracks_in`, simulcast layer), learnt from
    /// str0m's receive streams on the first packet of each.
    rx_ssrcs: Vec<(Ssrc, usize, Option<Rid>)>,
    /// The participant asked for audio only: no video is forwarded to them.
    audio_only_requested: bool,
    /// What the participant was last told about their video (`audio_only`).
    audio_only_told: Option<AudioOnlyReason>,
    /// In the SFU's list of peers to poll.
    pub(crate) dirty: bool,
    /// The earliest wake-up of this peer in the SFU's timer heap.
    pub(crate) scheduled: Option<Instant>,
}

fn from_str0m(kind: MediaKind) -> tuxa_protocol::MediaKind {
    match kind {
        MediaKind::Audio => tuxa_protocol::MediaKind::Audio,
        MediaKind::Video => tuxa_protocol::MediaKind::Video,
    }
}

impl Peer {
    pub fn new(
        now: Instant,
        id: ParticipantId,
        room: RoomId,
        config: &SfuConfig,
    ) -> Result<Peer, SfuError> {
        // Opus, VP8 and H.264 only: every subscriber must be able to take
        // what any publisher sends, and those are what every browser has
        // (Firefox on Debian has no H.264, so VP8 is the common ground).
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_h264(true)
            .build(now);
        for c in host_candidates(config)? {
            rtc.add_local_candidate(c);
        }
        Ok(Peer {
            id,
            room,
            rtc,
            tracks_in: Vec::new(),
            tracks_out: Vec::new(),
            pending: None,
            next_timeout: now,
            published_count: 0,
            gone: false,
            sources: BTreeMap::new(),
            rx_ssrcs: Vec::new(),
            audio_only_requested: false,
            audio_only_told: None,
            dirty: false,
            scheduled: None,
        })
    }

    pub fn set_sources(&mut self, sources: BTreeMap<String, TrackSource>) {
        self.sources = sources;
    }

    /// The participant chose audio only (or video again). Returns the video
    /// tracks whose publishers owe this subscriber a keyframe (video resumes
    /// at one).
    pub fn set_audio_only(
        &mut self,
        on: bool,
        out: &mut VecDeque<SfuOutput>,
    ) -> Vec<(ParticipantId, Mid, Option<Rid>)> {
        self.audio_only_requested = on;
        let mut owed = Vec::new();
        if !on {
            for t in &mut self.tracks_out {
                if t.source.kind == MediaKind::Video {
                    t.awaiting_keyframe = true;
                    if matches!(t.state, OutState::Open(_)) {
                        owed.push((t.source.owner, t.source.mid, t.layer));
                    }
                }
            }
        }
        self.tell_video_state(out);
        owed
    }

    /// Why no video is forwarded to this subscriber, if none is.
    fn video_off(&self) -> Option<AudioOnlyReason> {
        self.audio_only_requested
            .then_some(AudioOnlyReason::Requested)
    }

    /// Sends `audio_only` when what the subscriber was told is no longer true.
    fn tell_video_state(&mut self, out: &mut VecDeque<SfuOutput>) {
        let now = self.video_off();
        if now == self.audio_only_told {
            return;
        }
        let msg = match (now, self.audio_only_told) {
            (Some(reason), _) => ServerMsg::AudioOnly { on: true, reason },
            (None, Some(reason)) => ServerMsg::AudioOnly { on: false, reason },
            (None, None) => return,
        };
        self.audio_only_told = now;
        out.push_back(SfuOutput::Signal(self.id, msg));
    }

    pub fn room(&self) -> &RoomId {
        &self.room
    }

    pub fn next_timeout(&self) -> Instant {
        self.next_timeout
    }

    pub fn accepts(&self, input: &Input) -> bool {
        !self.gone && self.rtc.accepts(input)
    }

    pub fn handle_input(&mut self, input: Input) {
        if self.gone {
            return;
        }
        if let Err(e) = self.rtc.handle_input(input) {
            tracing::info!(participant = %self.id, "transport failed: {e}");
            self.rtc.disconnect();
        }
    }

    pub fn close(&mut self) {
        self.rtc.disconnect();
        self.gone = true;
    }

    pub fn published(&self) -> impl Iterator<Item = Published> + '_ {
        self.tracks_in.iter().map(|t| Published {
            owner: self.id,
            mid: t.mid,
            kind: t.kind,
            id: t.id.clone(),
            source: t.source,
        })
    }

    pub fn subscribe(&mut self, source: Published) {
        let awaiting_keyframe = source.kind == MediaKind::Video;
        self.tracks_out.push(TrackOut {
            source,
            state: OutState::ToOpen,
            layer: None,
            awaiting_keyframe,
            rewrite: Rewrite::default(),
            ssrc: None,
            pts: Vec::new(),
        });
    }

    pub fn unsubscribe_from(&mut self, owner: ParticipantId) {
        self.tracks_out.retain_mut(|t| {
            if t.source.owner != owner {
                return true;
            }
            match t.state {
                // Never offered: forget it silently.
                OutState::ToOpen => false,
                OutState::Negotiating(m) | OutState::Open(m) => {
                    t.state = OutState::ToStop(m);
                    true
                }
                OutState::ToStop(_) | OutState::NegotiatingStop(_) => true,
            }
        });
    }

    /// Returns the answer, or None when our own offer is outstanding (glare:
    /// the server is the impolite side and ignores the client's offer).
    pub fn accept_offer(&mut self, sdp: &str) -> Result<Option<ServerMsg>, SfuError> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| SfuError::Sdp(e.to_string()))?;
        if self.pending.is_some() {
            return Ok(None);
        }
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SfuError::Sdp(e.to_string()))?;
        Ok(Some(ServerMsg::Answer {
            sdp: answer.to_sdp_string(),
        }))
    }

    /// Returns None when no offer was outstanding, else the video tracks
    /// that opened (their publishers owe this subscriber a keyframe).
    pub fn accept_answer(
        &mut self,
        sdp: &str,
    ) -> Result<Option<Vec<(ParticipantId, Mid)>>, SfuError> {
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| SfuError::Sdp(e.to_string()))?;
        let Some(pending) = self.pending.take() else {
            return Ok(None);
        };
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| SfuError::Sdp(e.to_string()))?;
        let mut opened = Vec::new();
        // Before DTLS is up nothing can be forwarded: a keyframe asked for
        // now would arrive too early and be wasted, and the throttle would
        // hold back the next request for half a second. Then the request
        // goes out when the transport connects (see `on_event`).
        let connected = self.rtc.is_connected();
        for t in &mut self.tracks_out {
            if let OutState::Negotiating(m) = t.state {
                t.state = OutState::Open(m);
                if t.source.kind == MediaKind::Video && connected {
                    opened.push((t.source.owner, t.source.mid));
                }
            }
        }
        self.tracks_out
            .retain(|t| !matches!(t.state, OutState::NegotiatingStop(_)));
        Ok(Some(opened))
    }

    /// Sends a keyframe request to this peer (as publisher) unless one went
    /// out for that track less than [`KEYFRAME_REQUEST_INTERVAL`] ago; then
    /// it is remembered and sent when the interval ends. Returns whether it
    /// was sent now.
    pub fn request_keyframe(&mut self, now: Instant, mid: Mid, rid: Option<Rid>) -> bool {
        let Some(t) = self.tracks_in.iter_mut().find(|t| t.mid == mid) else {
            return false;
        };
        if t.kind != MediaKind::Video {
            return false;
        }
        if let Some(last) = t.last_keyframe_request
            && now < last + KEYFRAME_REQUEST_INTERVAL
        {
            t.keyframe_pending = Some(rid);
            let due = last + KEYFRAME_REQUEST_INTERVAL;
            self.next_timeout = self.next_timeout.min(due);
            return false;
        }
        t.last_keyframe_request = Some(now);
        t.keyframe_pending = None;
        match self.rtc.direct_api().stream_rx_by_mid(mid, rid) {
            Some(rx) => rx.request_keyframe(KeyframeRequestKind::Pli),
            None => tracing::debug!(participant = %self.id, "keyframe request: no stream yet"),
        }
        true
    }

    /// Sends the throttled keyframe requests whose window has ended.
    pub fn due_keyframe_requests(&mut self, now: Instant) -> Option<u64> {
        let due: Vec<(Mid, Option<Rid>)> = self
            .tracks_in
            .iter()
            .filter_map(|t| {
                let rid = t.keyframe_pending?;
                let last = t.last_keyframe_request?;
                (now >= last + KEYFRAME_REQUEST_INTERVAL).then_some((t.mid, rid))
            })
            .collect();
        if due.is_empty() {
            return None;
        }
        let mut sent = 0;
        for (mid, rid) in due {
            if self.request_keyframe(now, mid, rid) {
                sent += 1;
            }
        }
        Some(sent)
    }

    /// Writes another participant's RTP packet into the matching outgoing
    /// track, renumbered for this subscriber.
    pub fn forward(&mut self, from: ParticipantId, pkt: &Packet) -> Forwarded {
        let Some(t) = self
            .tracks_out
            .iter_mut()
            .find(|t| t.source.owner == from && t.source.mid == pkt.mid)
        else {
            return Forwarded::Skipped;
        };
        let OutState::Open(mid) = t.state else {
            return Forwarded::Skipped;
        };
        if pkt.kind == MediaKind::Video && self.audio_only_requested {
            return Forwarded::Skipped;
        }
        if pkt.rid.is_some() {
            if t.layer.is_none() {
                t.layer = pkt.rid;
            }
            if t.layer != pkt.rid {
                return Forwarded::Skipped;
            }
        }
        if !t.rewrite.started || t.awaiting_keyframe {
            if t.awaiting_keyframe && !pkt.keyframe_start {
                return Forwarded::NeedsKeyframe;
            }
            // Until DTLS is up str0m drops what is written; keep waiting
            // so that the keyframe is not lost with it.
            if !self.rtc.is_connected() {
                return if t.awaiting_keyframe {
                    Forwarded::NeedsKeyframe
                } else {
                    Forwarded::Skipped
                };
            }
            t.awaiting_keyframe = false;
            t.rewrite.start(pkt.seq, pkt.timestamp);
        }
        let Some((seq, timestamp)) = t.rewrite.map(pkt.seq, pkt.timestamp) else {
            return Forwarded::Skipped;
        };
        // Payload types differ between browsers (VP8 is 96 in Chromium,
        // 120 in Firefox): map by codec parameters, once per payload type.
        let pt = match t.pts.iter().find(|(i, _)| *i == pkt.pt) {
            Some((_, o)) => *o,
            None => {
                let Some(o) = self
                    .rtc
                    .codec_config()
                    .match_params(pkt.params)
                    .map(|p| p.pt())
                else {
                    return Forwarded::Skipped;
                };
                t.pts.push((pkt.pt, o));
                o
            }
        };
        let mut api = self.rtc.direct_api();
        let tx = match t.ssrc {
            Some(ssrc) => api.stream_tx(&ssrc),
            None => api.stream_tx_by_mid(mid, None),
        };
        let Some(tx) = tx else {
            return Forwarded::Skipped;
        };
        t.ssrc = Some(tx.ssrc());
        // The payload is an Arc: every subscriber shares the one buffer.
        tx.write_rtp(
            RtpWrite::new(
                pt,
                SeqNo::from(seq),
                timestamp,
                pkt.arrived,
                pkt.payload.clone(),
            )
            .marker(pkt.marker)
            .ext_vals(pkt.ext.clone())
            // Lost video is worth resending; lost audio is better skipped.
            .nackable(pkt.kind == MediaKind::Video),
        );
        Forwarded::Written
    }

    /// Polls str0m until it has nothing more to say; datagrams and signaling
    /// go to `out`, what concerns other peers to `events`.
    pub fn poll(
        &mut self,
        now: Instant,
        out: &mut VecDeque<SfuOutput>,
        events: &mut Vec<PeerEvent>,
    ) {
        if self.gone {
            return;
        }
        self.negotiate(out);
        let mut timed_out = false;
        loop {
            if !self.rtc.is_alive() {
                self.gone = true;
                events.push(PeerEvent::Gone);
                return;
            }
            match self.rtc.poll_output() {
                // str0m sends what was written only after a timeout (it
                // stamps its send queues then), and says so by asking for one
                // at once: give it here rather than in another wake-up of the
                // media task. Once per poll, so a timer str0m keeps due
                // cannot spin.
                Ok(Output::Timeout(t)) if t <= now && !timed_out => {
                    timed_out = true;
                    self.handle_input(Input::Timeout(now));
                }
                Ok(Output::Timeout(t)) => {
                    self.next_timeout = t;
                    // A throttled keyframe request wakes us at its own time.
                    for tin in &self.tracks_in {
                        if let (Some(_), Some(last)) =
                            (tin.keyframe_pending, tin.last_keyframe_request)
                        {
                            self.next_timeout =
                                self.next_timeout.min(last + KEYFRAME_REQUEST_INTERVAL);
                        }
                    }
                    return;
                }
                Ok(Output::Transmit(t)) => out.push_back(SfuOutput::Transmit(t)),
                Ok(Output::Event(e)) => self.on_event(now, e, out, events),
                Err(e) => {
                    tracing::info!(participant = %self.id, "poll failed: {e}");
                    self.rtc.disconnect();
                }
            }
        }
    }

    fn on_event(
        &mut self,
        _now: Instant,
        e: Event,
        _out: &mut VecDeque<SfuOutput>,
        events: &mut Vec<PeerEvent>,
    ) {
        match e {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                tracing::info!(participant = %self.id, "ICE disconnected");
                self.rtc.disconnect();
            }
            Event::Connected => {
                tracing::debug!(participant = %self.id, "DTLS connected");
                // The tracks that opened while the transport was coming up.
                for t in &self.tracks_out {
                    if matches!(t.state, OutState::Open(_)) && t.awaiting_keyframe {
                        events.push(PeerEvent::WantKeyframe {
                            publisher: t.source.owner,
                            mid: t.source.mid,
                            rid: t.layer,
                        });
                    }
                }
            }
            Event::MediaAdded(m) if m.direction.is_receiving() => {
                let id = TrackId::new(self.id, self.published_count);
                let source = match (self.sources.get(&*m.mid), m.kind) {
                    (Some(s), _) => *s,
                    (None, MediaKind::Audio) => TrackSource::Microphone,
                    (None, MediaKind::Video) => TrackSource::Camera,
                };
                self.published_count += 1;
                self.tracks_in.push(TrackIn {
                    mid: m.mid,
                    kind: m.kind,
                    id: id.clone(),
                    source,
                    last_keyframe_request: None,
                    keyframe_pending: None,
                });
                events.push(PeerEvent::Published(Published {
                    owner: self.id,
                    mid: m.mid,
                    kind: m.kind,
                    id,
                    source,
                }));
            }
            Event::RtpPacket(p) => {
                if let Some(pkt) = self.classify(p) {
                    events.push(PeerEvent::Rtp(pkt));
                }
            }
            Event::KeyframeRequest(req) => {
                if let Some(t) = self.tracks_out.iter().find(|t| t.mid() == Some(req.mid)) {
                    events.push(PeerEvent::WantKeyframe {
                        publisher: t.source.owner,
                        mid: t.source.mid,
                        rid: t.layer,
                    });
                }
            }
            _ => {}
        }
    }

    /// Which published track an incoming packet belongs to, its codec, and
    /// whether a subscriber can start with it. None for packets of streams
    /// we do not forward (unknown SSRC or payload type).
    fn classify(&mut self, p: RtpPacket) -> Option<Packet> {
        let ssrc = p.header.ssrc;
        let (index, rid) = match self.rx_ssrcs.iter().find(|(s, ..)| *s == ssrc) {
            Some((_, i, r)) => (*i, *r),
            None => {
                let (mid, rid) = {
                    let mut api = self.rtc.direct_api();
                    let rx = api.stream_rx(&ssrc)?;
                    (rx.mid(), rx.rid())
                };
                let index = self.tracks_in.iter().position(|t| t.mid == mid)?;
                // A participant has a handful of streams; a client that
                // churns SSRCs must not grow this without bound.
                if self.rx_ssrcs.len() >= 32 {
                    self.rx_ssrcs.remove(0);
                }
                self.rx_ssrcs.push((ssrc, index, rid));
                (index, rid)
            }
        };
        let track = self.tracks_in.get(index)?;
        let pt = p.header.payload_type;
        let params = *self.rtc.codec_config().find(|c| c.pt() == pt)?;
        let keyframe_start = match params.spec().codec {
            Codec::Vp8 => vp8_keyframe_start(&p.payload),
            Codec::H264 => h264_keyframe_start(&p.payload),
            _ => false,
        };
        let ext = ExtensionValues {
            audio_level: p.header.ext_vals.audio_level,
            voice_activity: p.header.ext_vals.voice_activity,
            video_orientation: p.header.ext_vals.video_orientation,
            ..ExtensionValues::default()
        };
        Some(Packet {
            mid: track.mid,
            rid,
            kind: track.kind,
            pt,
            params,
            seq: *p.seq_no,
            timestamp: p.header.timestamp,
            marker: p.header.marker,
            arrived: p.timestamp,
            keyframe_start,
            ext,
            payload: p.payload,
        })
    }

    /// Sends a server offer when tracks must be added or removed and no
    /// offer is outstanding. Newly opened video asks its publisher for a
    /// keyframe once the answer is in, so a late joiner sees a picture at once.
    fn negotiate(&mut self, out: &mut VecDeque<SfuOutput>) {
        if self.pending.is_some() {
            return;
        }
        let mut change = self.rtc.sdp_api();
        let mut announcements = Vec::new();
        for t in &mut self.tracks_out {
            match t.state {
                OutState::ToOpen => {
                    let mid = change.add_media(
                        t.source.kind,
                        Direction::SendOnly,
                        Some(t.source.owner.to_string()),
                        Some(t.source.id.to_string()),
                        None,
                    );
                    t.state = OutState::Negotiating(mid);
                    announcements.push(ServerMsg::TrackPublished {
                        participant_id: t.source.owner,
                        track: TrackInfo {
                            id: t.source.id.clone(),
                            kind: from_str0m(t.source.kind),
                            source: t.source.source,
                        },
                    });
                }
                OutState::ToStop(mid) => {
                    change.stop_media(mid);
                    t.state = OutState::NegotiatingStop(mid);
                    announcements.push(ServerMsg::TrackUnpublished {
                        participant_id: t.source.owner,
                        track_id: t.source.id.clone(),
                    });
                }
                _ => {}
            }
        }
        if !change.has_changes() {
            return;
        }
        let Some((offer, pending)) = change.apply() else {
            return;
        };
        self.pending = Some(pending);
        for a in announcements {
            out.push_back(SfuOutput::Signal(self.id, a));
        }
        out.push_back(SfuOutput::Signal(
            self.id,
            ServerMsg::Offer {
                sdp: offer.to_sdp_string(),
            },
        ));
    }
}

/// Whether a VP8 RTP payload (RFC 7741) starts a keyframe: the first packet
/// of a frame (S=1, partition 0) whose VP8 header has P=0.
pub(crate) fn vp8_keyframe_start(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    if b0 & 0x10 == 0 || b0 & 0x07 != 0 {
        return false;
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let Some(&x) = payload.get(i) else {
            return false;
        };
        i += 1;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits.
            let Some(&pid) = payload.get(i) else {
                return false;
            };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    payload.get(i).is_some_and(|h| h & 0x01 == 0)
}

/// Whether an H.264 RTP payload (RFC 6184) starts a keyframe: it carries a
/// sequence parameter set (which browsers send just before each IDR, and
/// without which the IDR cannot be decoded) or the start of an IDR slice.
pub(crate) fn h264_keyframe_start(payload: &[u8]) -> bool {
    const SPS: u8 = 7;
    const IDR: u8 = 5;
    let Some(&b0) = payload.first() else {
        return false;
    };
    match b0 & 0x1f {
        t @ 1..=23 => t == SPS || t == IDR,
        // STAP-A: 2-byte sizes, then the NAL units.
        24 => {
            let mut i = 1;
            while let (Some(&hi), Some(&lo)) = (payload.get(i), payload.get(i + 1)) {
                let len = usize::from(hi) << 8 | usize::from(lo);
                i += 2;
                match payload.get(i) {
                    Some(&n) if len > 0 => {
                        if matches!(n & 0x1f, SPS | IDR) {
                            return true;
                        }
                    }
                    _ => return false,
                }
                i += len;
            }
            false
        }
        // FU-A: the start fragment names the NAL type.
        28 => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && matches!(fu & 0x1f, SPS | IDR)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframe_starts_are_recognised() {
        // S=1, PID=0, no extension; P=0 in the payload header.
        assert!(vp8_keyframe_start(&[0x10, 0x10, 0x02, 0x00, 0x9d]));
        // P=1: an interframe.
        assert!(!vp8_keyframe_start(&[0x10, 0x11]));
        // Not the start of a partition.
        assert!(!vp8_keyframe_start(&[0x00, 0x10]));
        // X=1, I=1 with a 15-bit picture id, L=1, T/K=1: header at 6.
        assert!(vp8_keyframe_start(&[
            0x90, 0xf0, 0x81, 0x23, 0x05, 0x40, 0x10
        ]));
        assert!(!vp8_keyframe_start(&[
            0x90, 0xf0, 0x81, 0x23, 0x05, 0x40, 0x11
        ]));
        // Truncated: never a panic, never a keyframe.
        for cut in 0..6 {
            assert!(!vp8_keyframe_start(
                &[0x90, 0xf0, 0x81, 0x23, 0x05, 0x40][..cut]
            ));
        }
    }

    #[test]
    fn h264_keyframe_starts_are_recognised() {
        assert!(h264_keyframe_start(&[0x67, 0x42])); // SPS
        assert!(h264_keyframe_start(&[0x65, 0x88])); // IDR
        assert!(!h264_keyframe_start(&[0x41, 0x9a])); // non-IDR slice
        // STAP-A with SPS and PPS.
        assert!(h264_keyframe_start(&[0x78, 0, 2, 0x67, 0x42, 0, 1, 0x68]));
        assert!(!h264_keyframe_start(&[0x78, 0, 1, 0x68]));
        // STAP-A whose size runs past the end.
        assert!(!h264_keyframe_start(&[0x78, 0, 9, 0x68]));
        assert!(!h264_keyframe_start(&[0x78, 0]));
        // FU-A: start of an IDR; a middle fragment; a non-IDR start.
        assert!(h264_keyframe_start(&[0x7c, 0x85]));
        assert!(!h264_keyframe_start(&[0x7c, 0x05]));
        assert!(!h264_keyframe_start(&[0x7c, 0x81]));
        assert!(!h264_keyframe_start(&[]));
    }

    #[test]
    fn rewriting_starts_at_one_and_continues_across_a_new_source() {
        let mut r = Rewrite::default();
        assert_eq!(r.map(70_000, 5), None, "nothing before the start");
        r.start(70_000, 123_456);
        assert_eq!(r.map(70_000, 123_456), Some((1, 123_456)));
        assert_eq!(r.map(70_001, 126_456), Some((2, 126_456)));
        // Late packets from before the start are dropped, reordered ones kept.
        assert_eq!(r.map(69_999, 120_456), None);
        assert_eq!(r.map(70_003, 132_456), Some((4, 132_456)));
        assert_eq!(r.map(70_002, 129_456), Some((3, 129_456)));
        // Another source (another layer) with other numbering: the
        // subscriber's numbers carry on.
        r.start(10, u32::MAX - 1);
        assert_eq!(r.map(10, u32::MAX - 1), Some((5, 132_457)));
        assert_eq!(r.map(11, 2_999), Some((6, 132_457 + 3_001)));
    }
}
