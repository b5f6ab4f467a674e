//! The recording tap: what of a recorded room's media the recorder gets.
//!
//! While a room is recorded, each track its participants publish is handed
//! out ([`SfuOutput::Record`]) as one stream, in arrival order, between the
//! room's `Started` and `Stopped`:
//!
//! - a track is announced ([`Recorded::Track`]) just before its first packet,
//!   with what its file needs (owner, source, kind, codec);
//! - video starts at a keyframe (one is asked for when recording starts,
//!   through the publisher's throttled keyframe path, and for a track that
//!   appears later on its first packet);
//! - of a simulcast track only the best layer that arrives is recorded: the
//!   highest layer with packets in the last [`LAYER_WINDOW`]. A change of
//!   best layer asks for a keyframe of the new one and switches at it; until
//!   then the old layer goes on being recorded. The packets' sequence numbers
//!   and timestamps are made continuous across a switch (the layers of a
//!   publisher number independently), so the recorder sees one stream;
//! - a track whose publisher leaves the room ends ([`Recorded::TrackEnded`]).
//!
//! What is done with it (depacketizing, muxing, sealing, writing) happens off
//! the media task, in the server's recorder: this module only decides what
//! is recorded. Its cost on the forwarding path, for a room not recorded, is
//! one check that no publisher anywhere is recorded; for a recorded one, a
//! lookup by participant id (no String hashing), a scan of the publisher's
//! few tracks, and one event holding the shared payload (no copy).
//!
//! [`SfuOutput::Record`]: crate::SfuOutput::Record

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{MediaKind, Mid, Rid};
use tuxa_protocol::{ParticipantId, RoomId, TrackId, TrackSource};

use crate::SfuOutput;
use crate::peer::{Layer, Packet, Peer};

/// A simulcast layer is a candidate for recording while it has sent a
/// packet this recently.
pub const LAYER_WINDOW: Duration = Duration::from_secs(1);

/// For this long after a track is first tapped, the layer asked for at the
/// start counts as arriving even before its first packet: its packets and
/// the lower layers' race to the server, and the lower ones must not win
/// (and cost a keyframe of their own) for having come first.
const SETTLE: Duration = Duration::from_millis(400);

/// How often a keyframe the recorder still waits for is asked for again
/// (the publisher's own throttle is shorter; this keeps the request
/// counters from counting every packet of the wait).
const ASK_AGAIN: Duration = Duration::from_millis(500);

/// What the recorder is told, in the order the media happened.
#[derive(Debug, Clone)]
pub enum Recorded {
    /// The room's recording started (or resumed after a pause).
    Started { room: RoomId, at: Instant },
    /// A track's recording begins: its first packet follows. Said again
    /// after a `Stopped` and a new `Started`.
    Track(RecordedTrack),
    /// One RTP packet of a recorded track.
    Rtp(RecordedRtp),
    /// A recorded track ended (its publisher left the room): close its file.
    TrackEnded {
        room: RoomId,
        participant: ParticipantId,
        mid: Mid,
        at: Instant,
    },
    /// The room's recording stopped (or paused): close all its tracks'
    /// files. No `TrackEnded` is said for them.
    Stopped { room: RoomId, at: Instant },
}

/// A recorded track, as announced before its first packet.
#[derive(Debug, Clone)]
pub struct RecordedTrack {
    pub room: RoomId,
    pub participant: ParticipantId,
    /// The publisher's m-line; with `participant`, the key of the track's
    /// packets ([`RecordedRtp`]).
    pub mid: Mid,
    /// The track id subscribers know it by.
    pub track: TrackId,
    pub kind: MediaKind,
    /// Camera, microphone, screen or second camera.
    pub source: TrackSource,
    pub codec: Codec,
    pub clock_rate: u32,
    /// When its first recorded packet arrived: where it starts on the room's
    /// wall clock.
    pub at: Instant,
}

/// One published RTP packet, as it arrived (after SRTP, before forwarding),
/// numbered as one continuous stream per track (see the module docs).
#[derive(Debug, Clone)]
pub struct RecordedRtp {
    pub participant: ParticipantId,
    /// The publisher's m-line: one track of one participant.
    pub mid: Mid,
    /// The simulcast layer the packet belongs to (`None`: not simulcast).
    /// A change is a switch of layer, at a keyframe (often a new size).
    pub rid: Option<Rid>,
    pub kind: MediaKind,
    pub codec: Codec,
    pub clock_rate: u32,
    /// Extended sequence number, continuous across layer switches.
    pub seq: u64,
    /// RTP timestamp, continuous across layer switches.
    pub timestamp: u32,
    pub marker: bool,
    /// The first packet of a keyframe.
    pub keyframe_start: bool,
    /// The payload is RFC 2198 redundant audio around `codec` (see
    /// [`red_primary`]).
    pub red: bool,
    pub arrived: Instant,
    pub payload: Arc<[u8]>,
}

/// The primary block of an RFC 2198 (RED) payload, for a recorder that
/// records the voice without its redundant copies.
pub fn red_primary(payload: &[u8]) -> Option<&[u8]> {
    crate::peer::red_primary(payload)
}

/// A keyframe the tap wants: (publisher, mid, layer).
pub(crate) type Want = (ParticipantId, Mid, Layer);

/// Which rooms are recorded, and the recording state of each of their
/// publishers' tracks.
#[derive(Debug, Default)]
pub(crate) struct Tap {
    rooms: HashSet<RoomId>,
    /// Every participant of a recorded room, by id: the per-packet check.
    publishers: HashMap<ParticipantId, Publisher>,
}

#[derive(Debug)]
struct Publisher {
    room: RoomId,
    tracks: Vec<TrackTap>,
}

#[derive(Debug)]
struct TrackTap {
    mid: Mid,
    kind: MediaKind,
    id: TrackId,
    source: TrackSource,
    /// Layers lowest first, with when each last sent a packet.
    layers: Vec<(Layer, Option<Instant>)>,
    /// The layer asked for when the track was first tapped (see [`SETTLE`]).
    expected: Option<usize>,
    since: Instant,
    /// The layer being recorded (`None`: waiting for a keyframe).
    current: Option<usize>,
    /// The last keyframe asked for: (layer, when).
    asked: Option<(usize, Instant)>,
    announced: bool,
    numbering: Continuity,
}

/// Renumbers a track's packets so that a switch of layer continues the
/// sequence numbers and the timestamps (moved on by the time that passed).
#[derive(Debug, Default, Clone, Copy)]
struct Continuity {
    seq_offset: u64,
    ts_offset: u32,
    /// Packets of the current layer from before its start are dropped.
    first_in: u64,
    last_seq: u64,
    last_ts: u32,
    last_at: Option<Instant>,
    started: bool,
}

impl Continuity {
    fn restart(&mut self, seq: u64, timestamp: u32, arrived: Instant, clock_rate: u32) {
        if self.started {
            self.seq_offset = self.last_seq.wrapping_add(1).wrapping_sub(seq);
            let gone = self.last_at.map_or(0.0, |at| {
                arrived.saturating_duration_since(at).as_secs_f64()
            });
            let ticks = ((gone * f64::from(clock_rate)) as u32).max(1);
            self.ts_offset = self.last_ts.wrapping_add(ticks).wrapping_sub(timestamp);
        }
        self.first_in = seq;
        self.started = true;
    }

    fn map(&mut self, seq: u64, timestamp: u32, arrived: Instant) -> Option<(u64, u32)> {
        if !self.started || seq < self.first_in {
            return None;
        }
        let out = seq.wrapping_add(self.seq_offset);
        let ts = timestamp.wrapping_add(self.ts_offset);
        if out > self.last_seq || self.last_at.is_none() {
            self.last_seq = out;
            self.last_ts = ts;
            self.last_at = Some(arrived);
        }
        Some((out, ts))
    }
}

impl TrackTap {
    fn new(now: Instant, peer: &Peer, mid: Mid) -> Option<TrackTap> {
        let published = peer.published().find(|t| t.mid == mid)?;
        let view = peer.layer_view(mid, now)?;
        // What a subscriber could be given is what the publisher sends or
        // will send when asked: the best of it is the first guess.
        let expected = view.iter().rposition(|(_, r)| r.is_some());
        Some(TrackTap {
            mid,
            kind: published.kind,
            id: published.id,
            source: published.source,
            layers: view.into_iter().map(|(l, _)| (l, None)).collect(),
            expected: if published.kind == MediaKind::Video {
                expected
            } else {
                None
            },
            since: now,
            current: None,
            asked: None,
            announced: false,
            numbering: Continuity::default(),
        })
    }

    /// The layer to record now: the highest that arrives.
    fn best(&self, now: Instant) -> Option<usize> {
        let arriving = self.layers.iter().rposition(|(_, seen)| {
            seen.is_some_and(|t| now.saturating_duration_since(t) < LAYER_WINDOW)
        });
        if now < self.since + SETTLE {
            return arriving.max(self.expected);
        }
        arriving
    }

    /// Asks for a keyframe of `rank` unless that was done a moment ago.
    fn ask(&mut self, now: Instant, rank: usize) -> Option<Layer> {
        if self
            .asked
            .is_some_and(|(r, at)| r == rank && now < at + ASK_AGAIN)
        {
            return None;
        }
        self.asked = Some((rank, now));
        Some(self.layers.get(rank)?.0)
    }
}

impl Tap {
    pub fn is_recording(&self, room: &RoomId) -> bool {
        self.rooms.contains(room)
    }

    /// Starts recording `room`, whose members are `members`. Returns the
    /// keyframes to ask for (every published video's best layer), or None
    /// when it was already recorded.
    pub fn start<'a>(
        &mut self,
        now: Instant,
        room: &RoomId,
        members: impl Iterator<Item = (ParticipantId, &'a Peer)>,
        out: &mut VecDeque<SfuOutput>,
    ) -> Option<Vec<Want>> {
        if !self.rooms.insert(room.clone()) {
            return None;
        }
        out.push_back(SfuOutput::Record(Recorded::Started {
            room: room.clone(),
            at: now,
        }));
        let mut wants = Vec::new();
        for (pid, peer) in members {
            let mut tracks = Vec::new();
            for t in peer.published() {
                let Some(mut tap) = TrackTap::new(now, peer, t.mid) else {
                    continue;
                };
                if tap.kind == MediaKind::Video
                    && let Some(rank) = tap.expected
                    && let Some(layer) = tap.ask(now, rank)
                {
                    wants.push((pid, t.mid, layer));
                }
                tracks.push(tap);
            }
            self.publishers.insert(
                pid,
                Publisher {
                    room: room.clone(),
                    tracks,
                },
            );
        }
        Some(wants)
    }

    /// Stops recording `room`; false if it was not recorded.
    pub fn stop(&mut self, now: Instant, room: &RoomId, out: &mut VecDeque<SfuOutput>) -> bool {
        if !self.rooms.remove(room) {
            return false;
        }
        self.publishers.retain(|_, p| p.room != *room);
        out.push_back(SfuOutput::Record(Recorded::Stopped {
            room: room.clone(),
            at: now,
        }));
        true
    }

    /// A participant came into `room` (its tracks are tapped as they come).
    pub fn joined(&mut self, pid: ParticipantId, room: &RoomId) {
        if self.rooms.contains(room) {
            self.publishers.insert(
                pid,
                Publisher {
                    room: room.clone(),
                    tracks: Vec::new(),
                },
            );
        }
    }

    /// A participant left: its recorded tracks end.
    pub fn left(&mut self, now: Instant, pid: ParticipantId, out: &mut VecDeque<SfuOutput>) {
        let Some(p) = self.publishers.remove(&pid) else {
            return;
        };
        for t in p.tracks.iter().filter(|t| t.announced) {
            out.push_back(SfuOutput::Record(Recorded::TrackEnded {
                room: p.room.clone(),
                participant: pid,
                mid: t.mid,
                at: now,
            }));
        }
    }

    /// One packet `from` published: handed out if it is recorded. Returns a
    /// keyframe to ask `from` for.
    pub fn on_rtp(
        &mut self,
        from: ParticipantId,
        pkt: &Packet,
        peers: &HashMap<ParticipantId, Peer>,
        out: &mut VecDeque<SfuOutput>,
    ) -> Option<Want> {
        if self.publishers.is_empty() {
            return None;
        }
        let p = self.publishers.get_mut(&from)?;
        let now = pkt.arrived;
        let i = match p.tracks.iter().position(|t| t.mid == pkt.mid) {
            Some(i) => i,
            None => {
                // A track published since the recording started.
                let tap = TrackTap::new(now, peers.get(&from)?, pkt.mid)?;
                p.tracks.push(tap);
                p.tracks.len() - 1
            }
        };
        let t = &mut p.tracks[i];
        let rank = match t.layers.iter().position(|(l, _)| *l == pkt.rid) {
            Some(r) => r,
            None => {
                // A layer the SDP did not list: take the layers again.
                let view = peers.get(&from)?.layer_view(pkt.mid, now)?;
                let old = std::mem::take(&mut t.layers);
                t.layers = view
                    .into_iter()
                    .map(|(l, _)| (l, old.iter().find(|(o, _)| *o == l).and_then(|(_, s)| *s)))
                    .collect();
                let current = t.current.and_then(|c| old.get(c)).map(|(l, _)| *l);
                t.current = current.and_then(|c| t.layers.iter().position(|(l, _)| *l == c));
                t.asked = None;
                t.layers.iter().position(|(l, _)| *l == pkt.rid)?
            }
        };
        t.layers[rank].1 = Some(now);
        let mut want = None;
        if t.kind == MediaKind::Audio {
            if t.current.is_none() {
                t.current = Some(rank);
                t.numbering
                    .restart(pkt.seq, pkt.timestamp, now, clock_rate(pkt));
            }
        } else {
            let best = t.best(now);
            if t.current != Some(rank) {
                if best == Some(rank) && pkt.keyframe_start {
                    // The layer to record, at a keyframe: switch to it.
                    t.current = Some(rank);
                    t.asked = None;
                    t.numbering
                        .restart(pkt.seq, pkt.timestamp, now, clock_rate(pkt));
                } else {
                    if let Some(b) = best
                        && best != t.current
                    {
                        want = t.ask(now, b).map(|l| (from, t.mid, l));
                    }
                    return want;
                }
            } else if let Some(b) = best
                && best != t.current
            {
                // A better layer arrives (or this one is going): its
                // keyframe is asked for while this one goes on.
                want = t.ask(now, b).map(|l| (from, t.mid, l));
            }
        }
        let Some((seq, timestamp)) = t.numbering.map(pkt.seq, pkt.timestamp, now) else {
            return want;
        };
        let spec = pkt.params.spec();
        if !t.announced {
            t.announced = true;
            out.push_back(SfuOutput::Record(Recorded::Track(RecordedTrack {
                room: p.room.clone(),
                participant: from,
                mid: t.mid,
                track: t.id.clone(),
                kind: t.kind,
                source: t.source,
                codec: spec.codec,
                clock_rate: spec.clock_rate.get(),
                at: now,
            })));
        }
        out.push_back(SfuOutput::Record(Recorded::Rtp(RecordedRtp {
            participant: from,
            mid: pkt.mid,
            rid: pkt.rid,
            kind: pkt.kind,
            codec: spec.codec,
            clock_rate: spec.clock_rate.get(),
            seq,
            timestamp,
            marker: pkt.marker,
            keyframe_start: pkt.keyframe_start,
            red: pkt.red,
            arrived: pkt.arrived,
            payload: pkt.payload.clone(),
        })));
        want
    }
}

fn clock_rate(pkt: &Packet) -> u32 {
    pkt.params.spec().clock_rate.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_continues_across_a_switch() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut c = Continuity::default();
        assert_eq!(c.map(5, 5, t0), None, "nothing before the start");
        c.restart(1_000, 90_000, t0, 90_000);
        assert_eq!(c.map(1_000, 90_000, t0), Some((1_000, 90_000)));
        assert_eq!(c.map(1_001, 93_000, at(33)), Some((1_001, 93_000)));
        assert_eq!(c.map(999, 87_000, at(34)), None, "from before the start");
        // Another layer, numbered its own way, 100 ms after the last packet:
        // the stream carries on, its clock moved on by 9000 ticks.
        c.restart(8_000, 7, at(133), 90_000);
        assert_eq!(c.map(8_000, 7, at(133)), Some((1_002, 102_000)));
        assert_eq!(c.map(8_001, 3_007, at(166)), Some((1_003, 105_000)));
        assert_eq!(c.map(1_002, 96_000, at(167)), None, "the old layer is over");
    }
}
