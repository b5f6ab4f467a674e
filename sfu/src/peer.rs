//! One participant's transport and the tracks it publishes and receives.

use std::collections::VecDeque;
use std::time::Instant;

use std::collections::BTreeMap;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaData, MediaKind, Mid, Rid};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};

use tuxa_protocol::{ParticipantId, RoomId, ServerMsg, TrackId, TrackInfo, TrackSource};

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

/// What a peer's poll produced that concerns other peers.
// Boxing MediaData would cost an allocation per frame; the events Vec is
// reused, so the size does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum PeerEvent {
    Published(Published),
    Media(MediaData),
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
}

/// What became of one frame offered to a subscriber.
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
        })
    }

    pub fn set_sources(&mut self, sources: BTreeMap<String, TrackSource>) {
        self.sources = sources;
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
        for t in &mut self.tracks_out {
            if let OutState::Negotiating(m) = t.state {
                t.state = OutState::Open(m);
                if t.source.kind == MediaKind::Video {
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
        if let Some(mut w) = self.rtc.writer(mid)
            && let Err(e) = w.request_keyframe(rid, KeyframeRequestKind::Pli)
        {
            tracing::debug!(participant = %self.id, "keyframe request: {e}");
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

    /// Writes another participant's media into the matching outgoing track.
    pub fn forward(&mut self, from: ParticipantId, data: &MediaData) -> Forwarded {
        let Some(t) = self
            .tracks_out
            .iter_mut()
            .find(|t| t.source.owner == from && t.source.mid == data.mid)
        else {
            return Forwarded::Skipped;
        };
        let OutState::Open(mid) = t.state else {
            return Forwarded::Skipped;
        };
        if data.rid.is_some() {
            if t.layer.is_none() {
                t.layer = data.rid;
            }
            if t.layer != data.rid {
                return Forwarded::Skipped;
            }
        }
        if t.awaiting_keyframe {
            if !data.is_keyframe() {
                return Forwarded::NeedsKeyframe;
            }
            // Until DTLS is up str0m drops what is written; keep waiting
            // so that the keyframe is not lost with it.
            if !self.rtc.is_connected() {
                return Forwarded::NeedsKeyframe;
            }
            t.awaiting_keyframe = false;
        }
        let Some(writer) = self.rtc.writer(mid) else {
            return Forwarded::Skipped;
        };
        // Payload types differ between browsers (VP8 is 96 in Chromium,
        // 120 in Firefox): map by codec parameters.
        let Some(pt) = writer.match_params(data.params) else {
            return Forwarded::Skipped;
        };
        // The frame is an Arc: every subscriber shares the one buffer.
        if let Err(e) = writer.write(pt, data.network_time, data.time, data.data.clone()) {
            tracing::debug!(participant = %self.id, "write failed: {e}");
            return Forwarded::Skipped;
        }
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
        loop {
            if !self.rtc.is_alive() {
                self.gone = true;
                events.push(PeerEvent::Gone);
                return;
            }
            match self.rtc.poll_output() {
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
            Event::Connected => tracing::debug!(participant = %self.id, "DTLS connected"),
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
            Event::MediaData(data) => events.push(PeerEvent::Media(data)),
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
