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
use std::time::{Duration, Instant};

use std::collections::BTreeMap;
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::{Codec, PayloadParams};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Pt, Rid};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};

use tuxa_protocol::{
    AudioOnlyReason, ParticipantId, RoomId, ServerMsg, TrackId, TrackInfo, TrackSource,
};

use crate::{
    ALLOCATION_INTERVAL, ICE_GRACE, KEYFRAME_REQUEST_INTERVAL, SfuConfig, SfuError, SfuOutput,
    host_candidates,
};

/// A publisher's encoding of a track: a simulcast layer by its rid, or
/// `None` for a track sent in one encoding.
pub(crate) type Layer = Option<Rid>;

/// A keyframe a subscriber is owed: (publisher, its track's mid, layer).
pub(crate) type Owed = (ParticipantId, Mid, Layer);

/// The send-side estimate a subscriber starts with: the lowest layer of
/// three videos with their audio (a case conference starts with a picture
/// of everyone on a good link), little enough that a 3G link is overrun
/// only briefly before the estimator has seen feedback (the videos that do
/// not fit then stop; the last one is held while the estimate settles).
const INITIAL_ESTIMATE: Bitrate = Bitrate::kbps(500);

/// A layer not seen for this long, while another layer of the same track
/// still arrives, has been stopped by its publisher (its browser drops top
/// layers on a weak uplink or a slow CPU). Well above a frame interval at
/// the frame rates a struggling browser falls to.
const LAYER_SILENT: Duration = Duration::from_millis(700);

/// How long a layer we asked the publisher to resume may take to appear.
const LAYER_RESUME_GRACE: Duration = Duration::from_secs(3);

/// A layer nobody has received for this long is paused at the publisher.
const LAYER_PAUSE_AFTER: Duration = Duration::from_secs(3);

/// For this long after its transport comes up a subscriber's video is not
/// stopped for want of bandwidth unless the budget is hopeless (under half
/// the lowest layer): the estimator starts from a guess and its first
/// probes swing it widely before it settles (it still moves between
/// layers meanwhile).
const ESTIMATE_SETTLING: Duration = Duration::from_secs(10);

/// How often str0m is asked to probe again for a step up it could not
/// take yet (its own periodic probes are rarer).
const REPROBE_INTERVAL: Duration = Duration::from_secs(4);

/// An estimate that has not changed for this long while a step up waits is
/// stuck (see `apply_allocation`).
const BWE_STALE: Duration = Duration::from_secs(8);

/// How long the allocator must find no room for a video before it is
/// stopped: the estimate dips for a moment after a keyframe or a probe, and
/// stopping video costs a keyframe to resume. Until then it stays on its
/// lowest layer.
const STOP_VIDEO_AFTER: Duration = Duration::from_secs(2);

/// How long a hopeless budget must last before video stops at once.
const HOPELESS_FOR: Duration = Duration::from_secs(1);

/// Below this estimate RED is taken off a subscriber's audio: on a 3G-class
/// link the redundant copy (as much again as the voice) would take the
/// room of the lowest video layer, and Opus's in-band FEC still mends
/// single losses.
const RED_MIN_ESTIMATE_BPS: u64 = 500_000;

fn thin_link(estimate: Option<u64>) -> bool {
    estimate.is_some_and(|e| e < RED_MIN_ESTIMATE_BPS)
}

/// Per-packet overhead beyond the payload (RTP header with extensions,
/// SRTP tag, UDP, IPv4), for bitrates that compare with the estimate.
const PACKET_OVERHEAD: u64 = 50;

/// A track some participant publishes, as others subscribe to it.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    pub owner: ParticipantId,
    pub mid: Mid,
    pub kind: MediaKind,
    pub id: TrackId,
    pub source: TrackSource,
    /// Where a new subscriber starts: the lowest layer.
    pub lowest: Layer,
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
    /// The payload is RFC 2198 redundant audio (RED) around `params`' codec.
    pub red: bool,
    /// Where the VP8 payload descriptor keeps its picture ids, to renumber
    /// them when a subscriber changes layer.
    pub vp8: Option<Vp8Ids>,
    pub payload: Arc<[u8]>,
}

/// The picture id and TL0PICIDX of a VP8 payload descriptor (RFC 7741) and
/// where they are. Every layer of a simulcast publisher counts its own
/// pictures; a receiver's decoder drops a picture numbered below the last
/// one it decoded, so a switch must continue the numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Vp8Ids {
    /// (picture id, offset in the payload, 15-bit form).
    pub picture: Option<(u16, usize, bool)>,
    /// (TL0PICIDX, offset in the payload).
    pub tl0: Option<(u8, usize)>,
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
    /// Its encodings, lowest first (one, `None`, without simulcast).
    layers: Vec<LayerIn>,
}

/// One encoding of a published track, as measured on arrival.
#[derive(Debug)]
struct LayerIn {
    layer: Layer,
    /// Bits per second, smoothed; 0 until measured.
    rate: u64,
    window_bytes: u64,
    window_start: Option<Instant>,
    last_packet: Option<Instant>,
    /// What the publisher was last told (`publish_layers`); every layer is
    /// active until told otherwise.
    told_active: bool,
    told_at: Instant,
    /// Since when no subscriber wants it.
    unwanted_since: Option<Instant>,
    /// Its last packet was RED (audio with a redundant copy).
    red: bool,
    /// When a keyframe of this layer was last asked for: the throttle is
    /// per layer, since each layer's keyframe is its own cost and a
    /// request for one layer says nothing about another.
    key_asked: Option<Instant>,
    /// Asked for again inside the throttle window: sent when the window
    /// ends, unless a keyframe of this layer arrives first (it serves every
    /// subscriber that was waiting when it came).
    key_pending: bool,
}

impl LayerIn {
    fn new(layer: Layer, now: Instant) -> LayerIn {
        LayerIn {
            layer,
            rate: 0,
            window_bytes: 0,
            window_start: None,
            last_packet: None,
            told_active: true,
            told_at: now,
            unwanted_since: None,
            red: false,
            key_asked: None,
            key_pending: false,
        }
    }

    fn on_packet(&mut self, now: Instant, bytes: usize) {
        self.last_packet = Some(now);
        self.window_bytes += bytes as u64 + PACKET_OVERHEAD;
        let start = *self.window_start.get_or_insert(now);
        let span = now.saturating_duration_since(start);
        if span >= Duration::from_millis(500) {
            let inst = (self.window_bytes as f64 * 8.0 / span.as_secs_f64()) as u64;
            self.rate = if self.rate == 0 {
                inst
            } else {
                (self.rate * 3 + inst) / 4
            };
            self.window_bytes = 0;
            self.window_start = Some(now);
        }
    }

    /// Its bitrate if a subscriber may be given it: it is arriving, or we
    /// paused it (and can resume it), or we asked for it a moment ago.
    /// `nominal` stands in for a rate never measured.
    fn usable_rate(&self, now: Instant, nominal: u64) -> Option<u64> {
        let arriving = self.arriving(now);
        // Asked for again and not seen since: give it time to start.
        let resuming = self.told_active
            && self.last_packet.is_none_or(|t| t < self.told_at)
            && now.saturating_duration_since(self.told_at) < LAYER_RESUME_GRACE;
        let rate = if self.rate > 0 { self.rate } else { nominal };
        (arriving || !self.told_active || resuming).then_some(rate)
    }

    fn arriving(&self, now: Instant) -> bool {
        self.last_packet
            .is_some_and(|t| now.saturating_duration_since(t) < LAYER_SILENT)
    }
}

/// A layer's rate before it is measured, by its place among `count`
/// layers: about what browsers send at 180p, 360p and 720p.
fn nominal_rate(kind: MediaKind, index: usize, count: usize) -> u64 {
    if kind == MediaKind::Audio {
        return crate::alloc::AUDIO_RESERVE_BPS;
    }
    const LADDER: [u64; 3] = [100_000, 500_000, 1_500_000];
    let from_top = count.saturating_sub(index + 1);
    LADDER[LADDER
        .len()
        .saturating_sub(from_top + 1)
        .min(LADDER.len() - 1)]
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
    /// When the newest packet sent had arrived: a restart moves the
    /// timestamps on by the time that passed, so the receiver's playout
    /// clock keeps running true across a pause or a layer switch.
    last_out_at: Option<Instant>,
    started: bool,
    /// VP8 picture-id and TL0PICIDX renumbering (see [`Vp8Ids`]).
    pic_delta: u16,
    tl0_delta: u8,
    last_out_pic: Option<u16>,
    last_out_tl0: Option<u8>,
}

impl Rewrite {
    /// Starts (or restarts, after a change of source or a pause) at this
    /// packet, which arrived at `arrived` on a clock of `clock_rate` Hz.
    fn start(
        &mut self,
        seq: u64,
        timestamp: u32,
        arrived: Instant,
        clock_rate: u32,
        vp8: Option<Vp8Ids>,
    ) {
        // The first outgoing sequence number is 1 (rollover counter 0, so
        // the subscriber needs no out-of-band rollover state); a restart
        // continues after the last one sent.
        let next = self.last_out_seq.wrapping_add(1);
        self.seq_offset = next.wrapping_sub(seq);
        self.ts_offset = match (self.started, self.last_out_at) {
            (true, Some(at)) => {
                let gone = arrived.saturating_duration_since(at).as_secs_f64();
                let ticks = ((gone * f64::from(clock_rate)) as u32).max(1);
                self.last_out_ts.wrapping_add(ticks).wrapping_sub(timestamp)
            }
            _ => 0,
        };
        if let Some(ids) = vp8 {
            if let (Some((pic, _, wide)), Some(last)) = (ids.picture, self.last_out_pic) {
                let mask = if wide { 0x7fff } else { 0x7f };
                self.pic_delta = last.wrapping_add(1).wrapping_sub(pic) & mask;
            }
            if let (Some((tl0, _)), Some(last)) = (ids.tl0, self.last_out_tl0) {
                self.tl0_delta = last.wrapping_add(1).wrapping_sub(tl0);
            }
        }
        self.first_in = seq;
        self.started = true;
    }

    /// The subscriber's (sequence number, timestamp), or None for a packet
    /// from before the start.
    fn map(&mut self, seq: u64, timestamp: u32, arrived: Instant) -> Option<(u64, u32, bool)> {
        if !self.started || seq < self.first_in {
            return None;
        }
        let out = seq.wrapping_add(self.seq_offset);
        let ts = timestamp.wrapping_add(self.ts_offset);
        let newest = out > self.last_out_seq;
        if newest {
            self.last_out_seq = out;
            self.last_out_ts = ts;
            self.last_out_at = Some(arrived);
        }
        Some((out, ts, newest))
    }

    /// Renumbers a VP8 packet's picture ids; the payload is copied only
    /// when they change (after a switch), else the shared one is kept.
    fn map_vp8(&mut self, ids: Vp8Ids, newest: bool, payload: &Arc<[u8]>) -> Arc<[u8]> {
        let pic = ids.picture.map(|(p, at, wide)| {
            let mask = if wide { 0x7fff } else { 0x7f };
            (p.wrapping_add(self.pic_delta) & mask, at, wide)
        });
        let tl0 = ids.tl0.map(|(t, at)| (t.wrapping_add(self.tl0_delta), at));
        if newest {
            if let Some((p, ..)) = pic {
                self.last_out_pic = Some(p);
            }
            if let Some((t, _)) = tl0 {
                self.last_out_tl0 = Some(t);
            }
        }
        if self.pic_delta == 0 && self.tl0_delta == 0 {
            return payload.clone();
        }
        let mut v = payload.to_vec();
        if let Some((p, at, wide)) = pic {
            if wide {
                if let Some(b) = v.get_mut(at..at + 2) {
                    b[0] = 0x80 | (p >> 8) as u8;
                    b[1] = p as u8;
                }
            } else if let Some(b) = v.get_mut(at) {
                *b = p as u8 & 0x7f;
            }
        }
        if let Some((t, at)) = tl0
            && let Some(b) = v.get_mut(at)
        {
            *b = t;
        }
        Arc::from(v)
    }
}

#[derive(Debug)]
struct TrackOut {
    source: Published,
    state: OutState,
    /// The layer being forwarded; `None` until forwarding (re)starts, which
    /// for video is at a keyframe (a decoder given interframes first shows
    /// garbage or nothing).
    current: Option<Layer>,
    /// The layer this subscriber should receive; `None` when its video is
    /// stopped for want of bandwidth. A switch happens at the target's next
    /// keyframe; until then the current layer keeps flowing.
    target: Option<Layer>,
    /// The target's place among the publisher's layers (0 = lowest), once
    /// the allocator chose it.
    target_rank: Option<usize>,
    rewrite: Rewrite,
    /// Our outgoing stream for this track, once str0m made it.
    ssrc: Option<Ssrc>,
    /// Publisher payload type → ours (and our RED type, if this subscriber
    /// takes RED), learnt on first use (a handful at most).
    pts: Vec<(Pt, Pt, Option<Pt>)>,
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
    /// Every video track is stopped for want of bandwidth.
    weak_network: bool,
    /// Since when the allocator has wanted to stop a video it still sends.
    stop_pending_since: Option<Instant>,
    /// Since when the budget has been under half the lowest layer.
    hopeless_since: Option<Instant>,
    /// str0m's send-side estimate toward this participant (TWCC), bits/s.
    estimate: Option<u64>,
    /// The estimate the last allocation used: a fall well below it brings
    /// the next allocation forward.
    allocated_on: u64,
    /// Loss reported by the participant on what we send (0–1).
    egress_loss: f32,
    /// The last video budget: RED is dropped on a link this thin.
    budget: Option<u64>,
    /// The (minimum, desired) bitrates last given to str0m's estimator.
    probe: (u64, u64),
    /// When the desired rate was last raised (which makes str0m probe).
    probe_asked_at: Option<Instant>,
    /// When str0m last reported an estimate, and when we last restarted
    /// its estimator (see `apply_allocation`).
    estimate_at: Option<Instant>,
    bwe_reset_at: Option<Instant>,
    pub(crate) next_allocation: Instant,
    /// When the transport came up: the estimate needs a while to settle.
    connected_at: Option<Instant>,
    /// When ICE lost the participant; the transport is kept this long for
    /// the network to come back (or an ICE restart) before giving up.
    disconnected_since: Option<Instant>,
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
            // RED is taken when the browser offers it: on a lossy link a
            // lost voice packet comes back in the next one.
            .enable_opus(true, true)
            .enable_bwe(Some(INITIAL_ESTIMATE))
            // Loss on what we send, for the allocator (PeerStats).
            .set_stats_interval(Some(Duration::from_secs(1)))
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
            weak_network: false,
            stop_pending_since: None,
            hopeless_since: None,
            estimate: None,
            allocated_on: 0,
            egress_loss: 0.0,
            budget: None,
            probe: (0, 0),
            probe_asked_at: None,
            estimate_at: None,
            bwe_reset_at: None,
            next_allocation: now + ALLOCATION_INTERVAL,
            disconnected_since: None,
            connected_at: None,
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
    pub fn set_audio_only(&mut self, on: bool, out: &mut VecDeque<SfuOutput>) -> Vec<Owed> {
        self.audio_only_requested = on;
        let mut owed = Vec::new();
        for t in &mut self.tracks_out {
            if t.source.kind == MediaKind::Video {
                t.current = None;
                if !on
                    && matches!(t.state, OutState::Open(_))
                    && let Some(layer) = t.target
                {
                    owed.push((t.source.owner, t.source.mid, layer));
                }
            }
        }
        self.tell_video_state(out);
        owed
    }

    /// Why no video is forwarded to this subscriber, if none is.
    fn video_off(&self) -> Option<AudioOnlyReason> {
        if self.audio_only_requested {
            Some(AudioOnlyReason::Requested)
        } else if self.weak_network {
            Some(AudioOnlyReason::WeakNetwork)
        } else {
            None
        }
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

    /// A published track's layers, lowest first, with the rate each would
    /// cost a subscriber (`None`: not available; see [`LayerIn::usable_rate`]).
    pub fn layer_view(&self, mid: Mid, now: Instant) -> Option<Vec<(Layer, Option<u64>)>> {
        let t = self.tracks_in.iter().find(|t| t.mid == mid)?;
        let n = t.layers.len();
        // A track with nothing arriving at all (a camera turned off, a
        // still screen share, a silent microphone) has no layer to prefer:
        // silence rules nothing out, or a still screen would read as a
        // weak network.
        let any_arriving = t.layers.iter().any(|l| l.arriving(now));
        Some(
            t.layers
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let nominal = nominal_rate(t.kind, i, n);
                    let rate = if any_arriving {
                        l.usable_rate(now, nominal)
                    } else if t.kind == MediaKind::Audio {
                        // Audio: a silent microphone reserves nothing.
                        None
                    } else {
                        Some(if l.rate > 0 { l.rate } else { nominal })
                    };
                    // An upper layer costs at least what it is set up to
                    // reach: a browser ramps a layer up for seconds after it
                    // starts, and a subscriber moved on its first, low rate
                    // would be moved back as it grows (and the layer paused
                    // and resumed with it).
                    let rate = if i > 0 && t.kind == MediaKind::Video {
                        rate.map(|r| r.max(nominal))
                    } else {
                        rate
                    };
                    (l.layer, rate)
                })
                .collect(),
        )
    }

    /// Whether the publisher's track `mid` sends RED (redundant audio).
    pub fn sends_red(&self, mid: Mid) -> bool {
        self.tracks_in
            .iter()
            .find(|t| t.mid == mid)
            .is_some_and(|t| t.layers.iter().any(|l| l.red))
    }

    /// A link on which RED is stripped (see [`RED_MIN_ESTIMATE_BPS`]).
    pub fn thin_link(&self) -> bool {
        thin_link(self.estimate)
    }

    /// The tracks this subscriber receives: (index, publisher, publisher's
    /// mid, kind, source, layer now forwarded or aimed at).
    pub fn subscriptions(
        &self,
    ) -> impl Iterator<
        Item = (
            usize,
            ParticipantId,
            Mid,
            MediaKind,
            TrackSource,
            Option<Layer>,
        ),
    > + '_ {
        self.tracks_out.iter().enumerate().filter_map(|(i, t)| {
            matches!(t.state, OutState::Open(_) | OutState::Negotiating(_)).then_some((
                i,
                t.source.owner,
                t.source.mid,
                t.source.kind,
                t.source.source,
                t.target.or(t.current),
            ))
        })
    }

    /// The layers of `owner`'s track `mid` this subscriber receives or is
    /// switching to.
    pub fn layers_taken(&self, owner: ParticipantId, mid: Mid) -> impl Iterator<Item = Layer> + '_ {
        self.tracks_out
            .iter()
            .filter(move |t| t.source.owner == owner && t.source.mid == mid)
            .filter(|t| !matches!(t.state, OutState::ToStop(_) | OutState::NegotiatingStop(_)))
            .flat_map(|t| [t.current, t.target])
            .flatten()
    }

    /// What the subscriber may spend on video, and whether an allocation is
    /// due. `None` without an estimate (no TWCC feedback negotiated): the
    /// tracks stay on the layer they started with.
    pub fn allocation_due(&mut self, now: Instant, audio_bps: u64) -> Option<u64> {
        if now < self.next_allocation {
            return None;
        }
        self.next_allocation = now + crate::ALLOCATION_INTERVAL;
        let estimate = self.estimate?;
        self.allocated_on = estimate;
        let budget = crate::alloc::video_budget(estimate, audio_bps, self.egress_loss);
        self.budget = Some(budget);
        tracing::debug!(participant = %self.id, estimate, audio_bps, loss = self.egress_loss,
            budget, "allocation");
        Some(budget)
    }

    /// Applies the allocator's choice: `choices` are (index in the
    /// subscriptions, layer or None). Returns the keyframes owed (a new
    /// target starts at one) and whether any track's target changed.
    /// `probe` is (minimum, desired) for str0m's estimator: padding up to
    /// the next layer's rate, probing toward what would carry every track
    /// at its best.
    pub fn apply_allocation(
        &mut self,
        now: Instant,
        choices: &[(usize, Option<(usize, Layer)>)],
        lowest: &[Option<(usize, Layer)>],
        probe: (u64, u64),
        out: &mut VecDeque<SfuOutput>,
    ) -> (Vec<Owed>, bool) {
        let mut owed = Vec::new();
        let mut changed_any = false;
        let mut any_video = false;
        let mut all_off = true;
        // Only the last video is held back (audio only is what the deferral
        // guards against); with several videos, those that do not fit stop
        // at once and the rest keep their room.
        let wants_stop = !choices.is_empty()
            && choices.iter().all(|(_, c)| c.is_none())
            && choices
                .iter()
                .any(|(i, _)| self.tracks_out.get(*i).is_some_and(|t| t.target.is_some()));
        // Far too little (under half the lowest layer) for a second is no
        // dip: stop then, even while the estimate settles. (A keyframe that
        // overflows a shallow queue makes the estimate plunge for a moment.)
        let hopeless_now = self
            .budget
            .is_some_and(|b| b < crate::alloc::MIN_VIDEO_BPS / 2);
        let hopeless = if hopeless_now {
            let since = *self.hopeless_since.get_or_insert(now);
            now.saturating_duration_since(since) >= HOPELESS_FOR
        } else {
            self.hopeless_since = None;
            false
        };
        let settling = self
            .connected_at
            .is_none_or(|t| now.saturating_duration_since(t) < ESTIMATE_SETTLING);
        let stop_now = if wants_stop {
            let since = *self.stop_pending_since.get_or_insert(now);
            hopeless || (!settling && now.saturating_duration_since(since) >= STOP_VIDEO_AFTER)
        } else {
            self.stop_pending_since = None;
            false
        };
        for (k, &(i, choice)) in choices.iter().enumerate() {
            let Some(t) = self.tracks_out.get_mut(i) else {
                continue;
            };
            // A stop waits (on the lowest layer) until it has been wanted
            // for a while.
            let choice = match choice {
                None if wants_stop && t.target.is_some() && !stop_now => lowest
                    .get(k)
                    .copied()
                    .flatten()
                    .or(t.target.zip(t.target_rank).map(|(l, r)| (r, l))),
                c => c,
            };
            any_video = true;
            all_off &= choice.is_none();
            let (rank, choice) = match choice {
                Some((r, l)) => (Some(r), Some(l)),
                None => (None, None),
            };
            if t.target == choice {
                t.target_rank = rank;
                continue;
            }
            tracing::debug!(participant = %self.id, publisher = %t.source.owner,
                from = ?t.target, to = ?choice, "layer change");
            let down = matches!((t.target_rank, rank), (Some(old), Some(new)) if new < old);
            changed_any = true;
            t.target = choice;
            t.target_rank = rank;
            match choice {
                None => t.current = None,
                Some(layer) if t.current != Some(layer) => {
                    // Going down means the link is full: the higher layer
                    // stops at once (a short freeze until the keyframe)
                    // rather than queue behind the audio.
                    if down {
                        t.current = None;
                    }
                    if matches!(t.state, OutState::Open(_)) {
                        owed.push((t.source.owner, t.source.mid, layer));
                    }
                }
                Some(_) => {}
            }
        }
        // Audio-only for want of bandwidth: entered when no video fits and
        // left when some does again (the allocator's margin keeps it from
        // flapping).
        self.weak_network = any_video && all_off;
        self.tell_video_state(out);
        let (min, desired) = probe;
        let desired = desired.max(min);
        let changed = |a: u64, b: u64| a.abs_diff(b) as f64 > b.max(1) as f64 * 0.05;
        // str0m probes when the desired rate rises. A step up that is still
        // out of reach is looked for again every few seconds, by lowering
        // the desired rate a moment and raising it back.
        let step_pending = self.estimate.is_some_and(|e| e < desired);
        // Not on a link that carries no video: there a probe costs the
        // voice, and str0m's own probing finds the way back (measured in
        // sfu/tests/network.rs).
        let again = step_pending
            && !self.weak_network
            && self
                .probe_asked_at
                .is_none_or(|t| now.saturating_duration_since(t) >= REPROBE_INTERVAL);
        if changed(min, self.probe.0) || changed(desired, self.probe.1) {
            self.probe = (min, desired);
            self.probe_asked_at = Some(now);
            self.rtc
                .bwe()
                .set_bitrate(Bitrate::bps(min), Bitrate::bps(desired));
        } else if again
            && self
                .estimate_at
                .is_some_and(|t| now.saturating_duration_since(t) >= BWE_STALE)
            && self
                .bwe_reset_at
                .is_none_or(|t| now.saturating_duration_since(t) >= 2 * BWE_STALE)
        {
            // The estimate has not moved for a long while although a step
            // up is wanted: str0m's estimator sits in application-limited
            // mode and does not probe (seen after a publisher stopped and
            // restarted its top layer). Starting it again from the current
            // estimate runs its initial probes.
            let e = self.estimate.unwrap_or(0);
            tracing::debug!(participant = %self.id, estimate = e, "estimator restarted to probe");
            self.bwe_reset_at = Some(now);
            self.probe_asked_at = Some(now);
            self.rtc.bwe().reset(Bitrate::bps(e));
        } else if again {
            // Lowered now, raised at the next round (str0m compares the
            // desired rate between its own timeouts, not between calls).
            self.probe = (min, min);
            self.probe_asked_at = Some(now);
            self.rtc
                .bwe()
                .set_bitrate(Bitrate::bps(min), Bitrate::bps(min));
        }
        (owed, changed_any)
    }

    /// Tells this publisher which layers of each simulcast track anyone
    /// receives (`wanted`, by mid): a layer unwanted for
    /// [`LAYER_PAUSE_AFTER`] is paused, a wanted one resumed at once. The
    /// lowest layer always runs, so a newcomer's first picture comes fast.
    pub fn update_publish_layers(
        &mut self,
        now: Instant,
        wanted: &[(Mid, Vec<Layer>)],
        out: &mut VecDeque<SfuOutput>,
    ) {
        for t in &mut self.tracks_in {
            if t.kind != MediaKind::Video || t.layers.len() < 2 {
                continue;
            }
            let want = wanted
                .iter()
                .find(|(m, _)| *m == t.mid)
                .map(|(_, w)| w.as_slice())
                .unwrap_or(&[]);
            let mut changed = false;
            for (i, l) in t.layers.iter_mut().enumerate() {
                let active = if i == 0 || want.contains(&l.layer) {
                    l.unwanted_since = None;
                    true
                } else {
                    let since = *l.unwanted_since.get_or_insert(now);
                    l.told_active && now.saturating_duration_since(since) < LAYER_PAUSE_AFTER
                };
                if active != l.told_active {
                    l.told_active = active;
                    l.told_at = now;
                    changed = true;
                }
            }
            if changed {
                let active = t
                    .layers
                    .iter()
                    .filter(|l| l.told_active)
                    .filter_map(|l| l.layer.map(|r| r.to_string()))
                    .collect();
                out.push_back(SfuOutput::Signal(
                    self.id,
                    ServerMsg::PublishLayers {
                        mid: t.mid.to_string(),
                        active,
                    },
                ));
            }
        }
    }

    /// Whether the transport has been lost for longer than [`ICE_GRACE`];
    /// then it is closed (and the peer reported gone).
    pub fn ice_grace_over(&mut self, now: Instant) -> bool {
        match self.disconnected_since {
            Some(since) if now >= since + ICE_GRACE => {
                tracing::info!(participant = %self.id, "ICE did not come back; closing");
                self.rtc.disconnect();
                true
            }
            _ => false,
        }
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
            lowest: t.layers.first().and_then(|l| l.layer),
        })
    }

    pub fn subscribe(&mut self, source: Published) {
        let target = Some(source.lowest);
        self.tracks_out.push(TrackOut {
            source,
            state: OutState::ToOpen,
            current: None,
            target,
            target_rank: Some(0),
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
            sdp: with_opus_dtx(&answer.to_sdp_string()),
        }))
    }

    /// Returns None when no offer was outstanding, else the video tracks
    /// that opened, with the layer each starts on (their publishers owe this
    /// subscriber a keyframe of it).
    pub fn accept_answer(&mut self, sdp: &str) -> Result<Option<Vec<Owed>>, SfuError> {
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
                if t.source.kind == MediaKind::Video
                    && connected
                    && let Some(layer) = t.target
                {
                    opened.push((t.source.owner, t.source.mid, layer));
                }
            }
        }
        self.tracks_out
            .retain(|t| !matches!(t.state, OutState::NegotiatingStop(_)));
        Ok(Some(opened))
    }

    /// Sends a keyframe request to this peer (as publisher) unless one went
    /// out for that layer less than [`KEYFRAME_REQUEST_INTERVAL`] ago; then
    /// it is remembered and sent when the interval ends, unless a keyframe
    /// of the layer comes first. Returns whether it was sent now.
    pub fn request_keyframe(&mut self, now: Instant, mid: Mid, rid: Option<Rid>) -> bool {
        let Some(t) = self.tracks_in.iter_mut().find(|t| t.mid == mid) else {
            return false;
        };
        if t.kind != MediaKind::Video {
            return false;
        }
        // A layer not (yet) listed shares the lowest layer's throttle.
        let i = t.layers.iter().position(|l| l.layer == rid).unwrap_or(0);
        let Some(l) = t.layers.get_mut(i) else {
            return false;
        };
        if let Some(last) = l.key_asked
            && now < last + KEYFRAME_REQUEST_INTERVAL
        {
            l.key_pending = true;
            let due = last + KEYFRAME_REQUEST_INTERVAL;
            self.next_timeout = self.next_timeout.min(due);
            return false;
        }
        l.key_asked = Some(now);
        l.key_pending = false;
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
            .flat_map(|t| t.layers.iter().map(move |l| (t.mid, l)))
            .filter(|(_, l)| {
                l.key_pending
                    && l.key_asked
                        .is_some_and(|last| now >= last + KEYFRAME_REQUEST_INTERVAL)
            })
            .map(|(mid, l)| (mid, l.layer))
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
        // Stopped for want of bandwidth.
        let Some(target) = t.target else {
            return Forwarded::Skipped;
        };
        let layer = pkt.rid;
        if layer != target {
            // The old layer flows until the target's keyframe comes.
            if t.current != Some(layer) {
                return Forwarded::Skipped;
            }
        } else if t.current != Some(layer) {
            // The target: (re)start here if a decoder can.
            if pkt.kind == MediaKind::Video && !pkt.keyframe_start {
                return Forwarded::NeedsKeyframe;
            }
            // Until DTLS is up str0m drops what is written; keep waiting
            // so that the keyframe is not lost with it.
            if !self.rtc.is_connected() {
                return if pkt.kind == MediaKind::Video {
                    Forwarded::NeedsKeyframe
                } else {
                    Forwarded::Skipped
                };
            }
            t.current = Some(layer);
            let clock = pkt.params.spec().clock_rate.get();
            t.rewrite
                .start(pkt.seq, pkt.timestamp, pkt.arrived, clock, pkt.vp8);
        }
        let Some((seq, timestamp, newest)) = t.rewrite.map(pkt.seq, pkt.timestamp, pkt.arrived)
        else {
            return Forwarded::Skipped;
        };
        // Payload types differ between browsers (VP8 is 96 in Chromium,
        // 120 in Firefox): map by codec parameters, once per payload type.
        let (pt, red_pt) = match t.pts.iter().find(|(i, ..)| *i == pkt.pt) {
            Some((_, o, r)) => (*o, *r),
            None => {
                let Some((o, r)) = self
                    .rtc
                    .codec_config()
                    .match_params(pkt.params)
                    .map(|p| (p.pt(), p.red()))
                else {
                    return Forwarded::Skipped;
                };
                t.pts.push((pkt.pt, o, r));
                (o, r)
            }
        };
        // (`self.thin_link()` cannot be called while `t` borrows a track.)
        let thin = thin_link(self.estimate);
        let (pt, payload) = match (pkt.red, red_pt) {
            (true, Some(r)) if !thin => (r, pkt.payload.clone()),
            // A subscriber without RED (or on a thin link) gets the primary.
            (true, _) => match red_primary(&pkt.payload) {
                Some(p) => (pt, Arc::from(p)),
                None => return Forwarded::Skipped,
            },
            (false, _) => match pkt.vp8 {
                Some(ids) => (pt, t.rewrite.map_vp8(ids, newest, &pkt.payload)),
                None => (pt, pkt.payload.clone()),
            },
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
            RtpWrite::new(pt, SeqNo::from(seq), timestamp, pkt.arrived, payload)
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
                    self.next_timeout = t.min(self.next_allocation);
                    if let Some(since) = self.disconnected_since {
                        self.next_timeout = self.next_timeout.min(since + ICE_GRACE);
                    }
                    // A throttled keyframe request wakes us at its own time.
                    for l in self.tracks_in.iter().flat_map(|t| &t.layers) {
                        if let (true, Some(last)) = (l.key_pending, l.key_asked) {
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
        now: Instant,
        e: Event,
        _out: &mut VecDeque<SfuOutput>,
        events: &mut Vec<PeerEvent>,
    ) {
        match e {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                // A phone changing cell or a tunnel: keep everything for the
                // grace period, so that when checks resume (or the client
                // restarts ICE) the call carries on where it was.
                tracing::info!(participant = %self.id, "ICE disconnected; keeping the transport");
                self.disconnected_since.get_or_insert(now);
            }
            Event::IceConnectionStateChange(state) if self.disconnected_since.is_some() => {
                self.disconnected_since = None;
                tracing::info!(participant = %self.id, ?state, "ICE back");
            }
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                let bps = estimate.as_u64();
                self.estimate_at = Some(now);
                self.estimate = Some(bps);
                // A sharp fall is acted on at once, not at the next round.
                if (bps as f64) < self.allocated_on as f64 * 0.7 {
                    self.next_allocation = now;
                }
            }
            Event::PeerStats(stats) => {
                // Smoothed: one keyframe lost to a shallow queue reads as
                // 20 % for a second, and str0m's estimate already falls
                // with it; sustained loss is what the budget must follow.
                let sample = stats.egress_loss_fraction.unwrap_or(0.0);
                self.egress_loss = self.egress_loss * 0.7 + sample * 0.3;
            }
            Event::Connected => {
                tracing::debug!(participant = %self.id, "DTLS connected");
                self.connected_at = Some(now);
                // The tracks that opened while the transport was coming up.
                for t in &self.tracks_out {
                    if matches!(t.state, OutState::Open(_))
                        && t.source.kind == MediaKind::Video
                        && t.current.is_none()
                        && let Some(layer) = t.target
                    {
                        events.push(PeerEvent::WantKeyframe {
                            publisher: t.source.owner,
                            mid: t.source.mid,
                            rid: layer,
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
                // Layers as the client lists them (our page and Chrome's
                // examples go lowest first).
                let mut layers: Vec<LayerIn> = m
                    .simulcast
                    .iter()
                    .flat_map(|s| s.recv.iter())
                    .take(4)
                    .map(|l| LayerIn::new(Some(l.rid), now))
                    .collect();
                if layers.is_empty() {
                    layers.push(LayerIn::new(None, now));
                }
                let lowest = layers[0].layer;
                self.tracks_in.push(TrackIn {
                    mid: m.mid,
                    kind: m.kind,
                    id: id.clone(),
                    source,
                    layers,
                });
                events.push(PeerEvent::Published(Published {
                    owner: self.id,
                    mid: m.mid,
                    kind: m.kind,
                    id,
                    source,
                    lowest,
                }));
            }
            Event::RtpPacket(p) => {
                if let Some(pkt) = self.classify(p) {
                    events.push(PeerEvent::Rtp(pkt));
                }
            }
            Event::KeyframeRequest(req) => {
                if let Some(t) = self.tracks_out.iter().find(|t| t.mid() == Some(req.mid))
                    && let Some(layer) = t.current.or(t.target)
                {
                    events.push(PeerEvent::WantKeyframe {
                        publisher: t.source.owner,
                        mid: t.source.mid,
                        rid: layer,
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
        let pt = p.header.payload_type;
        let params = *self
            .rtc
            .codec_config()
            .find(|c| c.pt() == pt || c.red() == Some(pt))?;
        let red = params.pt() != pt;
        let track = self.tracks_in.get_mut(index)?;
        let arrived = p.timestamp;
        match track.layers.iter().position(|l| l.layer == rid) {
            Some(i) => {
                track.layers[i].on_packet(arrived, p.payload.len());
                track.layers[i].red = red;
            }
            // A layer the SDP did not list (a client may add rids later).
            None if track.layers.len() < 4 => {
                let mut l = LayerIn::new(rid, arrived);
                l.on_packet(arrived, p.payload.len());
                track.layers.push(l);
            }
            None => {}
        }
        let (keyframe_start, vp8) = match params.spec().codec {
            Codec::Vp8 => (vp8_keyframe_start(&p.payload), vp8_ids(&p.payload)),
            Codec::H264 => (h264_keyframe_start(&p.payload), None),
            _ => (false, None),
        };
        if keyframe_start && let Some(l) = track.layers.iter_mut().find(|l| l.layer == rid) {
            // Every subscriber waiting for this layer starts here: a
            // request held back by the throttle is answered.
            l.key_pending = false;
        }
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
            arrived,
            keyframe_start,
            ext,
            red,
            vp8,
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

/// Adds `usedtx=1` to the Opus format parameters of an answer: a browser
/// enables discontinuous transmission when the other side asks for it, and
/// str0m 0.25 has no setting for it beside RED. In a consultation each side
/// is silent half the time; DTX sends almost nothing then.
pub(crate) fn with_opus_dtx(sdp: &str) -> String {
    let opus_pts: Vec<&str> = sdp
        .lines()
        .filter_map(|l| l.strip_prefix("a=rtpmap:"))
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, codec)| codec.to_ascii_lowercase().starts_with("opus/"))
        .map(|(pt, _)| pt)
        .collect();
    let mut out = String::with_capacity(sdp.len() + 16 * opus_pts.len());
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let fmtp = body
            .strip_prefix("a=fmtp:")
            .and_then(|l| l.split_once(' '))
            .filter(|(pt, params)| opus_pts.contains(pt) && !params.contains("usedtx"));
        match fmtp {
            Some(_) => {
                out.push_str(body);
                out.push_str(";usedtx=1");
                out.push_str(&line[body.len()..]);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// The primary block of an RFC 2198 (RED) payload: after the block headers
/// (4 bytes each while F=1, then 1) and the redundant blocks.
pub(crate) fn red_primary(payload: &[u8]) -> Option<&[u8]> {
    let mut i = 0;
    let mut redundant = 0usize;
    loop {
        let b = *payload.get(i)?;
        if b & 0x80 == 0 {
            i += 1;
            break;
        }
        let h = payload.get(i..i + 4)?;
        redundant += usize::from(h[2] & 0x03) << 8 | usize::from(h[3]);
        i += 4;
    }
    payload.get(i + redundant..)
}

/// The picture ids of a VP8 payload descriptor (RFC 7741), if it has any.
pub(crate) fn vp8_ids(payload: &[u8]) -> Option<Vp8Ids> {
    let b0 = *payload.first()?;
    if b0 & 0x80 == 0 {
        return None;
    }
    let x = *payload.get(1)?;
    let mut i = 2;
    let mut picture = None;
    if x & 0x80 != 0 {
        let p = *payload.get(i)?;
        if p & 0x80 != 0 {
            let lo = *payload.get(i + 1)?;
            picture = Some((u16::from(p & 0x7f) << 8 | u16::from(lo), i, true));
            i += 2;
        } else {
            picture = Some((u16::from(p), i, false));
            i += 1;
        }
    }
    let mut tl0 = None;
    if x & 0x40 != 0 {
        tl0 = Some((*payload.get(i)?, i));
    }
    (picture.is_some() || tl0.is_some()).then_some(Vp8Ids { picture, tl0 })
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
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut r = Rewrite::default();
        assert_eq!(r.map(70_000, 5, t0), None, "nothing before the start");
        r.start(70_000, 123_456, t0, 90_000, None);
        assert_eq!(r.map(70_000, 123_456, t0), Some((1, 123_456, true)));
        assert_eq!(r.map(70_001, 126_456, at(33)), Some((2, 126_456, true)));
        // Late packets from before the start are dropped, reordered ones kept.
        assert_eq!(r.map(69_999, 120_456, at(34)), None);
        assert_eq!(r.map(70_003, 132_456, at(66)), Some((4, 132_456, true)));
        assert_eq!(r.map(70_002, 129_456, at(67)), Some((3, 129_456, false)));
        // Another source (another layer) with other numbering, 100 ms after
        // the newest packet sent: the subscriber's numbers carry on and its
        // clock moves on by the 100 ms (9000 ticks at 90 kHz).
        r.start(10, u32::MAX - 1, at(166), 90_000, None);
        assert_eq!(r.map(10, u32::MAX - 1, at(166)), Some((5, 141_456, true)));
        assert_eq!(r.map(11, 2_999, at(200)), Some((6, 141_456 + 3_001, true)));
    }

    #[test]
    fn vp8_picture_ids_continue_across_a_switch() {
        let t0 = Instant::now();
        // X=1; I=1 with a 15-bit picture id 0x0123; L=1 with TL0PICIDX 7.
        let a: Arc<[u8]> = Arc::from(&[0x90, 0xc0, 0x81, 0x23, 0x07, 0x10, 0xaa][..]);
        let ids = vp8_ids(&a).unwrap();
        assert_eq!(ids.picture, Some((0x0123, 2, true)));
        assert_eq!(ids.tl0, Some((7, 4)));
        let mut r = Rewrite::default();
        r.start(1, 0, t0, 90_000, Some(ids));
        let (_, _, newest) = r.map(1, 0, t0).unwrap();
        // No switch yet: the shared payload itself, not a copy.
        let out = r.map_vp8(ids, newest, &a);
        assert!(Arc::ptr_eq(&out, &a));
        // The other layer numbers its pictures from 0x7ffe, TL0 from 200.
        let b: Arc<[u8]> = Arc::from(&[0x90, 0xc0, 0xff, 0xfe, 200, 0x10, 0xbb][..]);
        let bids = vp8_ids(&b).unwrap();
        r.start(500, 0, t0, 90_000, Some(bids));
        let (_, _, newest) = r.map(500, 0, t0).unwrap();
        let out = r.map_vp8(bids, newest, &b);
        assert_eq!(&out[..], &[0x90, 0xc0, 0x81, 0x24, 8, 0x10, 0xbb]);
        // The next picture of that layer (0x7fff, wrapping next to 0).
        let c: Arc<[u8]> = Arc::from(&[0x90, 0xc0, 0xff, 0xff, 201, 0x10][..]);
        r.map(501, 3000, t0).unwrap();
        let out = r.map_vp8(vp8_ids(&c).unwrap(), true, &c);
        assert_eq!(&out[..4], &[0x90, 0xc0, 0x81, 0x25]);
        assert_eq!(out[4], 9);
        // Truncated descriptors are not ids, and never a panic.
        for cut in 0..4 {
            let _ = vp8_ids(&a[..cut]);
        }
        assert_eq!(vp8_ids(&[0x10, 0x00]), None);
    }

    #[test]
    fn red_primary_is_the_last_block() {
        // One redundant block of 3 bytes (PT 111), then the primary (PT 111).
        let red = [0xef, 0x00, 0x3c, 0x03, 0x6f, 1, 2, 3, 9, 9, 9, 9];
        assert_eq!(red_primary(&red), Some(&[9u8, 9, 9, 9][..]));
        // No redundancy: only the final header.
        assert_eq!(red_primary(&[0x6f, 5, 6]), Some(&[5u8, 6][..]));
        // Lengths beyond the payload, or a header cut short.
        assert_eq!(red_primary(&[0xef, 0x00, 0x3f, 0xff, 0x6f, 1]), None);
        assert_eq!(red_primary(&[0xef, 0x00]), None);
        assert_eq!(red_primary(&[]), None);
    }

    #[test]
    fn answers_ask_for_opus_dtx() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\na=rtpmap:111 opus/48000/2\r\n\
                   a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\n\
                   a=fmtp:63 111/111\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
                   a=rtpmap:96 VP8/90000\r\n";
        let out = with_opus_dtx(sdp);
        assert!(out.contains("a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1\r\n"));
        assert!(out.contains("a=fmtp:63 111/111\r\n"), "RED is left alone");
        assert_eq!(out.len(), sdp.len() + ";usedtx=1".len());
        assert_eq!(with_opus_dtx(&out), out, "asked once");
    }
}
