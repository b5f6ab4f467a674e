//! One track: RTP in, WebM/Matroska bytes out.
//!
//! A [`TrackMuxer`] takes one published track's RTP packets in arrival order
//! ([`TrackMuxer::push`]), puts them back in sequence order (a small reorder
//! buffer that waits for retransmissions), assembles frames, and writes them
//! as a WebM stream the caller takes with [`TrackMuxer::take_output`], seals
//! and appends to the track's file. Nothing here does IO or reads a clock.
//!
//! # The file
//!
//! The first [`HEAD_LEN`] bytes are the head: the EBML header, the Segment
//! (with an *unknown* size), Info and Tracks, padded with a Void element.
//! Clusters follow, each written whole (closed after about a second, or when
//! a video keyframe starts a new one): a file cut after any cluster, by a
//! crash or a full disk, is a valid WebM that plays up to the cut.
//! [`TrackMuxer::finish`] gives a tail to append (the last cluster and the
//! Cues) and a new head of exactly the same length, to write over the first
//! [`HEAD_LEN`] bytes: it has the Segment's size, the Duration and a SeekHead
//! that points at the Cues, so players can seek.
//!
//! # Time: tracks of one room line up
//!
//! Block timestamps are on the room's recording clock (ms since the
//! recording started), not from 0: the first frame of a track is written at
//! `offset_ms`, the next ones at `offset_ms` plus their RTP time since the
//! first (RTP timestamp wraps handled). A screen share that started two
//! minutes into the call has its first block at 120 000 ms, and every
//! track's time *is* the room's time. Rather than an explicit start beside
//! a file that begins at 0, because the file then says where it belongs
//! without the database, and a player needs no per-track arithmetic:
//!
//! - ffprobe reports `start_time=120.0` and `duration` to the end on the
//!   room's clock; `ffmpeg -copyts -i a.webm -i b.webm ...` keeps the tracks
//!   in step (without `-copyts` ffmpeg moves each input's start to 0).
//! - Chromium (checked with Debian's chromium on a file starting at 2.5 s):
//!   `duration` is 6.5 (the end on the room's clock), playback from the start
//!   begins at `currentTime` 2.5, and a seek to any time before the first
//!   block lands on it (2.5). So a page that plays several tracks on one
//!   clock sets every element's `currentTime` to that clock, but keeps a
//!   track paused (hidden) while the clock is before its start
//!   ([`Finished::start_ms`], also stored beside the file), else it would
//!   start early. Nothing is invented before a track existed (no repeated
//!   first frame, no filler silence).
//!
//! # Loss
//!
//! A video frame with a missing packet is dropped, and so is every frame
//! after it up to the next keyframe (VP8 inter frames refer to earlier ones):
//! [`Pushed::keyframe_wanted`] tells the caller to ask the publisher for one.
//! An Opus packet lost is a gap in the audio. RFC 2198 RED is stripped to its
//! primary block.
//!
//! # Segments
//!
//! A VP8 keyframe at another resolution ends this muxer's file: `push`
//! returns the muxer for the next file in [`Pushed::next_segment`] (already
//! holding that keyframe), and the caller finishes this one. An H.264
//! keyframe with other parameter sets does the same. Another RTP stream of
//! the same track (a simulcast layer switch) goes on in the same file:
//! [`TrackMuxer::new_stream`].
//!
//! A file never finished (a crash, a full disk) is made whole again by
//! [`crate::recover::recover`].

use str0m::format::Codec;
use str0m::media::MediaKind;
use str0m::rtp::RedDecoder;
use str0m::unversioned::{Depacketizer, H264Depacketizer, Vp8Depacketizer};

use crate::ebml::{self, id};
use crate::h264;
use crate::reorder::{Held, Out, Reorder};

/// Length of the head: the bytes first written at the start of the file and
/// rewritten, with the same length, by [`TrackMuxer::finish`].
pub const HEAD_LEN: usize = 1024;

/// A cluster is closed once it spans this long (or at a video keyframe).
const CLUSTER_MS: u64 = 1000;
/// While a keyframe is wanted, the request is repeated this often (ms).
const KEYFRAME_REPEAT_MS: u64 = 1000;
/// A frame larger than this is not a frame from a browser: dropped.
const MAX_FRAME_BYTES: usize = 8 << 20;
/// A cluster is also closed at this size, so what is held in memory (and
/// lost by a crash) stays small whatever a publisher sends.
const MAX_CLUSTER_BYTES: usize = 4 << 20;
/// An `avcC` longer than this does not fit the head: its keyframe is refused.
const MAX_CODEC_PRIVATE: usize = 512;

/// The codecs recorded without transcoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackCodec {
    /// Opus audio, in WebM as `A_OPUS`.
    Opus,
    /// VP8 video, in WebM as `V_VP8`.
    Vp8,
    /// H.264 video, in Matroska as `V_MPEG4/ISO/AVC` (its `avcC` from the
    /// first keyframe's SPS and PPS). Without B-frames, as WebRTC sends it.
    H264,
}

impl TrackCodec {
    /// The recordable codec for a negotiated one.
    pub fn from_str0m(codec: Codec) -> Result<Self, MuxError> {
        match codec {
            Codec::Opus => Ok(Self::Opus),
            Codec::Vp8 => Ok(Self::Vp8),
            Codec::H264 => Ok(Self::H264),
            other => Err(MuxError::UnsupportedCodec(format!("{other:?}"))),
        }
    }

    /// Audio or video.
    pub fn kind(self) -> MediaKind {
        match self {
            Self::Opus => MediaKind::Audio,
            Self::Vp8 | Self::H264 => MediaKind::Video,
        }
    }

    /// The container: `webm` for VP8/Opus, `mkv` for H.264.
    pub fn file_extension(self) -> &'static str {
        match self {
            Self::Opus | Self::Vp8 => "webm",
            Self::H264 => "mkv",
        }
    }

    fn codec_id(self) -> &'static str {
        match self {
            Self::Opus => "A_OPUS",
            Self::Vp8 => "V_VP8",
            Self::H264 => "V_MPEG4/ISO/AVC",
        }
    }

    fn doc_type(self) -> &'static str {
        match self {
            Self::Opus | Self::Vp8 => "webm",
            Self::H264 => "matroska",
        }
    }
}

/// Why a track cannot be muxed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MuxError {
    /// A codec tuxa does not record (only Opus, VP8 and H.264 are).
    #[error("codec {0} cannot be recorded")]
    UnsupportedCodec(String),
    /// A clock rate of 0 (no timestamps can be computed).
    #[error("clock rate 0")]
    ZeroClockRate,
    /// This muxer handed over to the next segment: push to that one.
    #[error("this segment has ended: push to the next segment")]
    SegmentEnded,
}

/// One RTP packet of the track, as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct RtpIn<'a> {
    /// Extended (rollover-free) sequence number.
    pub seq: u64,
    /// RTP timestamp (wraps: handled here).
    pub timestamp: u32,
    /// RTP marker bit (last packet of a video frame).
    pub marker: bool,
    /// The payload is RFC 2198 redundant audio around the codec.
    pub red: bool,
    /// The RTP payload (after the header and extensions).
    pub payload: &'a [u8],
    /// When it arrived, in ms on the room's recording clock.
    pub arrival_ms: u64,
}

/// What a [`TrackMuxer::push`] tells the caller.
#[derive(Debug, Default)]
#[must_use]
pub struct Pushed {
    /// Video only: a frame was lost or the track starts without a keyframe,
    /// frames are dropped until one comes: ask the publisher for a keyframe
    /// (PLI/FIR). Repeated at most once a second while it lasts.
    pub keyframe_wanted: bool,
    /// The resolution changed: this muxer's file is done (call
    /// [`TrackMuxer::finish`] on it) and this one, which already holds the
    /// keyframe, writes the next file. Push the next packets to it.
    pub next_segment: Option<Box<TrackMuxer>>,
}

/// A finished track file.
#[derive(Debug)]
pub struct Finished {
    /// Bytes to append after everything [`TrackMuxer::take_output`] gave:
    /// the last cluster and the Cues.
    pub tail: Vec<u8>,
    /// Exactly [`HEAD_LEN`] bytes to write over the start of the file: the
    /// Segment's size, Duration and a SeekHead to the Cues.
    pub head: Vec<u8>,
    /// Frames written.
    pub frames: u64,
    /// Frames dropped (damaged by loss, or waiting for a keyframe).
    pub dropped_frames: u64,
    /// Sequence numbers never received in time (given up after the reorder
    /// wait; a retransmission after that is dropped).
    pub lost_packets: u64,
    /// Opus frames recovered from RED's redundant blocks for lost packets
    /// (counted in `frames` too).
    pub recovered_frames: u64,
    /// The first frame's time on the recording clock (ms), `None` without frames.
    pub start_ms: Option<u64>,
    /// From the first frame to the end of the last (ms).
    pub duration_ms: u64,
    /// Video: the resolution of this segment.
    pub width: Option<u16>,
    pub height: Option<u16>,
}

/// A video frame being assembled from its packets.
#[derive(Debug)]
struct Building {
    timestamp: u32,
    ext_ts: i64,
    packets: Vec<Vec<u8>>,
    bytes: usize,
    /// A packet of it is missing, or its first packet is not a frame start.
    broken: bool,
}

/// A whole frame, depacketized.
#[derive(Debug)]
struct Frame {
    ext_ts: i64,
    data: Vec<u8>,
    keyframe: bool,
    /// Opus: its length in ms.
    duration_ms: Option<u64>,
}

#[derive(Debug)]
struct Cluster {
    start_ms: u64,
    starts_with_keyframe: bool,
    blocks: Vec<u8>,
    frames: u64,
}

/// One published track's recording, sans IO. See the module documentation.
#[derive(Debug)]
pub struct TrackMuxer {
    codec: TrackCodec,
    clock_rate: u32,
    /// Where the current RTP stream's first packet is on the recording
    /// clock: `offset_ms`, or a new stream's arrival ([`Self::new_stream`]).
    offset_ms: u64,
    reorder: Reorder,
    /// Last RTP timestamp seen and its extended value.
    ts_last: Option<(u32, i64)>,
    /// Extended RTP timestamp of the current stream's first packet (at `offset_ms`).
    ts_base: Option<i64>,
    building: Option<Building>,
    need_keyframe: bool,
    keyframe_asked_ms: Option<u64>,
    /// Video: the picture size and (H.264) CodecPrivate of this file.
    format: Option<VideoFormat>,
    /// H.264: the last SPS and PPS seen, for a keyframe sent without them.
    parameter_sets: (Option<Vec<u8>>, Option<Vec<u8>>),
    first_ms: Option<u64>,
    last_ms: u64,
    /// Length of the last frame (ms): from Opus, or the last video frame gap.
    last_len_ms: u64,
    head_written: bool,
    out: Vec<u8>,
    /// Bytes given out so far (taken or waiting in `out`): the file offset.
    written: u64,
    cluster: Option<Cluster>,
    /// (time ms, cluster position from the Segment's data start).
    cues: Vec<(u64, u64)>,
    frames: u64,
    dropped: u64,
    lost: u64,
    /// Opus frames taken from RED's redundant blocks where a packet was lost.
    recovered: u64,
    /// Opus: the extended RTP time where the last written frame ends.
    audio_next_ts: Option<i64>,
    ended: bool,
    /// Released by the reorder buffer but not processed yet: what came after
    /// the keyframe that started this segment, in the same push.
    pending: Vec<Out>,
    /// The next packet starts another RTP stream.
    new_stream: bool,
}

impl TrackMuxer {
    /// A muxer for one track whose first packet is at `offset_ms` on the
    /// room's recording clock (ms since the recording started).
    pub fn new(codec: TrackCodec, clock_rate: u32, offset_ms: u64) -> Result<Self, MuxError> {
        if clock_rate == 0 {
            return Err(MuxError::ZeroClockRate);
        }
        Ok(Self::blank(codec, clock_rate, offset_ms))
    }

    fn blank(codec: TrackCodec, clock_rate: u32, offset_ms: u64) -> Self {
        Self {
            codec,
            clock_rate,
            offset_ms,
            reorder: Reorder::default(),
            ts_last: None,
            ts_base: None,
            building: None,
            need_keyframe: codec.kind() == MediaKind::Video,
            keyframe_asked_ms: None,
            format: None,
            parameter_sets: (None, None),
            first_ms: None,
            last_ms: offset_ms,
            last_len_ms: 0,
            head_written: false,
            out: Vec::new(),
            written: 0,
            cluster: None,
            cues: Vec::new(),
            frames: 0,
            dropped: 0,
            lost: 0,
            recovered: 0,
            audio_next_ts: None,
            ended: false,
            pending: Vec::new(),
            new_stream: false,
        }
    }

    /// The codec.
    pub fn codec(&self) -> TrackCodec {
        self.codec
    }

    /// Length of the head (the start of the file that [`Finished::head`]
    /// rewrites): [`HEAD_LEN`].
    pub const fn head_len(&self) -> usize {
        HEAD_LEN
    }

    /// Video: frames are being dropped until a keyframe comes.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.need_keyframe
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Frames in the clusters already given out (the rest wait in the open
    /// cluster): what a file cut now, after the last output, plays.
    pub fn frames_in_output(&self) -> u64 {
        self.frames - self.cluster.as_ref().map_or(0, |c| c.frames)
    }

    /// The next packet is from another RTP stream of the same track, with
    /// its own sequence numbers and timestamps: a simulcast layer switch, or
    /// the publisher's stream restarted. What the old stream left in the
    /// reorder buffer is written (holes given up), and the new stream's first
    /// packet is placed on the recording clock at its arrival (never before
    /// what is already written). Video waits for a keyframe of the new stream;
    /// one at another resolution starts a new segment as usual.
    pub fn new_stream(&mut self) {
        self.new_stream = true;
    }

    /// One packet, in arrival order. Bad payloads never panic: the frame
    /// they belong to is dropped.
    pub fn push(&mut self, pkt: RtpIn<'_>) -> Result<Pushed, MuxError> {
        if self.ended {
            return Err(MuxError::SegmentEnded);
        }
        let mut events = std::mem::take(&mut self.pending);
        if std::mem::take(&mut self.new_stream) {
            // The old stream's packets go first, then the switch, then the
            // new stream's, in one sequence: a segment started among them
            // takes the rest (see `process`).
            self.reorder.flush(&mut events);
            events.push(Out::NewStream {
                arrival_ms: pkt.arrival_ms,
            });
            self.reorder = Reorder::default();
        }
        self.reorder.push(
            Held {
                seq: pkt.seq,
                timestamp: pkt.timestamp,
                marker: pkt.marker,
                // Opus keeps its RED until it is in order: the redundant
                // blocks fill holes. Video is stripped to its primary here.
                red: pkt.red && self.codec == TrackCodec::Opus,
                payload: if self.codec == TrackCodec::Opus {
                    pkt.payload.to_vec()
                } else {
                    self.strip(pkt.red, pkt.payload)
                },
            },
            pkt.arrival_ms,
            &mut events,
        );
        let mut pushed = Pushed::default();
        self.process(events, pkt.arrival_ms, &mut pushed);
        Ok(pushed)
    }

    /// The bytes written since the last call, to append to the file (the
    /// first [`HEAD_LEN`] of the file are the head). Always whole clusters.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Ends the file: what is held is written (holes given up), the last
    /// cluster closed, the Cues written, and the final head made.
    pub fn finish(mut self) -> Finished {
        if !self.ended {
            let mut events = std::mem::take(&mut self.pending);
            self.reorder.flush(&mut events);
            let mut ignored = Pushed::default();
            let now = self.last_ms;
            // A resolution change now has no next file to go to: its frames
            // are dropped (counted).
            self.ended = true;
            self.process(events, now, &mut ignored);
        }
        if self.building.take().is_some() {
            self.dropped += 1;
        }
        self.ensure_head();
        self.close_cluster();
        let cues_pos = self.written - seg_data_start(self.codec);
        let cues = cues_element(&self.cues);
        let mut tail = std::mem::take(&mut self.out);
        tail.extend_from_slice(&cues);
        let total = self.written + cues.len() as u64;
        let end_ms = self.first_ms.map_or(0, |_| self.last_ms + self.last_len_ms);
        let duration_ms = self.first_ms.map_or(0, |first| end_ms - first);
        let head = self.head(Some(Final {
            segment_size: total - seg_data_start(self.codec),
            end_ms,
            cues_pos: (!cues.is_empty()).then_some(cues_pos),
        }));
        Finished {
            tail,
            head,
            frames: self.frames,
            dropped_frames: self.dropped,
            lost_packets: self.lost,
            recovered_frames: self.recovered,
            start_ms: self.first_ms,
            duration_ms,
            width: self.format.as_ref().map(|f| f.dims.0),
            height: self.format.as_ref().map(|f| f.dims.1),
        }
    }

    fn strip(&self, red: bool, payload: &[u8]) -> Vec<u8> {
        if !red {
            return payload.to_vec();
        }
        // The primary block is the packet's own frame.
        match RedDecoder::decode(payload) {
            Ok(blocks) => blocks
                .iter()
                .find(|b| b.is_primary)
                .map(|b| b.payload.to_vec())
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    fn process(&mut self, events: Vec<Out>, now_ms: u64, pushed: &mut Pushed) {
        let mut events = events.into_iter();
        while let Some(event) = events.next() {
            let split = match event {
                Out::Lost(n) => {
                    self.lost += n;
                    self.on_lost(now_ms, pushed);
                    None
                }
                Out::Packet(p) => self.on_packet(p, now_ms, pushed),
                Out::NewStream { arrival_ms } => {
                    self.on_new_stream(arrival_ms, pushed);
                    None
                }
            };
            if let Some(mut next) = split {
                // The rest of what the reorder buffer released belongs to the
                // next file (processed at its first push or finish, so that
                // one push starts at most one segment), and so does what it
                // still holds.
                next.reorder = std::mem::take(&mut self.reorder);
                next.pending = events.collect();
                pushed.next_segment = Some(next);
                self.ended = true;
                return;
            }
        }
    }

    fn on_new_stream(&mut self, arrival_ms: u64, pushed: &mut Pushed) {
        if self.building.take().is_some() {
            self.dropped += 1;
        }
        self.ts_last = None;
        self.ts_base = None;
        self.audio_next_ts = None;
        self.offset_ms = if self.first_ms.is_some() {
            arrival_ms.max(self.last_ms)
        } else {
            arrival_ms.max(self.offset_ms)
        };
        if self.codec.kind() == MediaKind::Video {
            self.want_keyframe(arrival_ms, pushed);
        }
    }

    fn on_lost(&mut self, now_ms: u64, pushed: &mut Pushed) {
        if self.codec.kind() == MediaKind::Audio {
            return;
        }
        if self.building.take().is_some() {
            self.dropped += 1;
        }
        self.want_keyframe(now_ms, pushed);
    }

    fn want_keyframe(&mut self, now_ms: u64, pushed: &mut Pushed) {
        self.need_keyframe = true;
        let due = self
            .keyframe_asked_ms
            .is_none_or(|at| now_ms.saturating_sub(at) >= KEYFRAME_REPEAT_MS);
        if due {
            self.keyframe_asked_ms = Some(now_ms);
            pushed.keyframe_wanted = true;
        }
    }

    fn extend_ts(&mut self, ts: u32) -> i64 {
        let ext = match self.ts_last {
            None => i64::from(ts),
            Some((raw, ext)) => ext + i64::from(ts.wrapping_sub(raw) as i32),
        };
        self.ts_last = Some((ts, ext));
        // The first packet is at `offset_ms`, whether or not its frame is
        // written: video dropped until the first keyframe still counts.
        self.ts_base.get_or_insert(ext);
        ext
    }

    fn on_packet(&mut self, p: Held, now_ms: u64, pushed: &mut Pushed) -> Option<Box<TrackMuxer>> {
        match self.codec {
            TrackCodec::Opus => {
                self.on_opus_packet(p);
                None
            }
            TrackCodec::Vp8 | TrackCodec::H264 => self.on_video_packet(p, now_ms, pushed),
        }
    }

    /// One Opus packet; if it is RED, its redundant blocks first fill what
    /// is missing before it (RFC 2198: they repeat earlier packets).
    fn on_opus_packet(&mut self, p: Held) {
        let ext_ts = self.extend_ts(p.timestamp);
        let mut frames: Vec<(i64, Vec<u8>, bool)> = Vec::new();
        if p.red {
            let Ok(blocks) = RedDecoder::decode(&p.payload) else {
                self.dropped += 1;
                return;
            };
            let Some(primary) = blocks.iter().find(|b| b.is_primary) else {
                self.dropped += 1;
                return;
            };
            for block in blocks
                .iter()
                .filter(|b| !b.is_primary && b.pt == primary.pt)
            {
                frames.push((
                    ext_ts - i64::from(block.timestamp_offset),
                    block.payload.to_vec(),
                    true,
                ));
            }
            frames.push((ext_ts, primary.payload.to_vec(), false));
        } else {
            frames.push((ext_ts, p.payload, false));
        }
        for (ts, data, redundant) in frames {
            // A redundant block only counts where nothing was written yet
            // (not before the track's start, not over what arrived).
            if redundant && self.audio_next_ts.is_none_or(|next| ts < next) {
                continue;
            }
            let Some(len) = opus_duration_ms(&data, self.clock_rate) else {
                // Empty (a RED packet without primary) or malformed.
                self.dropped += 1;
                continue;
            };
            self.write_frame(Frame {
                ext_ts: ts,
                data,
                keyframe: true,
                duration_ms: Some(len),
            });
            self.audio_next_ts = Some(ts + (len * u64::from(self.clock_rate) / 1000) as i64);
            if redundant {
                self.recovered += 1;
            }
        }
    }

    fn on_video_packet(
        &mut self,
        p: Held,
        now_ms: u64,
        pushed: &mut Pushed,
    ) -> Option<Box<TrackMuxer>> {
        if self
            .building
            .as_ref()
            .is_some_and(|b| b.timestamp != p.timestamp)
        {
            // The last frame never got its marker packet.
            self.building = None;
            self.dropped += 1;
            self.want_keyframe(now_ms, pushed);
        }
        // Every packet moves the timestamp extension on, so a long run of
        // broken frames cannot make it miss a wrap.
        let ext_ts = self.extend_ts(p.timestamp);
        let building = self.building.get_or_insert_with(|| Building {
            timestamp: p.timestamp,
            ext_ts,
            packets: Vec::new(),
            bytes: 0,
            broken: !frame_start(self.codec, &p.payload),
        });
        // A broken frame keeps no bytes: only its end is waited for.
        if !building.broken {
            building.bytes += p.payload.len();
            building.packets.push(p.payload);
            if building.bytes > MAX_FRAME_BYTES {
                building.broken = true;
                building.packets = Vec::new();
            }
        }
        if !p.marker {
            return None;
        }
        let building = self.building.take()?;
        let ext_ts = building.ext_ts;
        let frame = if building.broken {
            None
        } else {
            self.depacketize_video(&building.packets)
                .map(|(data, keyframe)| Frame {
                    ext_ts,
                    keyframe,
                    data,
                    duration_ms: None,
                })
        };
        let Some(frame) = frame else {
            self.dropped += 1;
            self.want_keyframe(now_ms, pushed);
            return None;
        };
        if !frame.keyframe {
            if self.need_keyframe {
                self.dropped += 1;
                self.want_keyframe(now_ms, pushed);
            } else {
                self.write_frame(frame);
            }
            return None;
        }
        let Some(format) = self.keyframe_format(&frame.data) else {
            self.dropped += 1;
            self.want_keyframe(now_ms, pushed);
            return None;
        };
        match &self.format {
            Some(current) if *current != format && self.head_written => {
                if self.ended {
                    self.dropped += 1;
                    return None;
                }
                Some(Box::new(self.next_segment(frame, format)))
            }
            _ => {
                self.format = Some(format);
                self.need_keyframe = false;
                self.write_frame(frame);
                None
            }
        }
    }

    /// A whole frame's bytes as stored (VP8 as is, H.264 in AVC form) and
    /// whether it is a keyframe; `None` if its packets do not parse.
    fn depacketize_video(&mut self, packets: &[Vec<u8>]) -> Option<(Vec<u8>, bool)> {
        let mut extra = str0m::format::CodecExtra::None;
        let mut data = Vec::with_capacity(packets.iter().map(Vec::len).sum());
        match self.codec {
            TrackCodec::Vp8 => {
                let mut d = Vp8Depacketizer::default();
                for p in packets {
                    d.depacketize(p, &mut data, &mut extra).ok()?;
                }
                let keyframe = data.first()? & 1 == 0;
                Some((data, keyframe))
            }
            TrackCodec::H264 => {
                let mut d = H264Depacketizer::default();
                d.is_avc = true;
                for p in packets {
                    d.depacketize(p, &mut data, &mut extra).ok()?;
                }
                let units = h264::nal_units(&data)?;
                let mut keyframe = false;
                for unit in units {
                    match h264::nal_type(unit) {
                        h264::NAL_IDR => keyframe = true,
                        h264::NAL_SPS => self.parameter_sets.0 = Some(unit.to_vec()),
                        h264::NAL_PPS => self.parameter_sets.1 = Some(unit.to_vec()),
                        _ => {}
                    }
                }
                (!data.is_empty()).then_some((data, keyframe))
            }
            TrackCodec::Opus => None,
        }
    }

    /// The picture size (and H.264 CodecPrivate) a keyframe starts.
    fn keyframe_format(&self, data: &[u8]) -> Option<VideoFormat> {
        match self.codec {
            TrackCodec::Vp8 => Some(VideoFormat {
                dims: vp8_dimensions(data)?,
                codec_private: None,
            }),
            TrackCodec::H264 => {
                let (Some(sps), Some(pps)) = &self.parameter_sets else {
                    return None;
                };
                let avcc = h264::avcc(sps, pps).filter(|a| a.len() <= MAX_CODEC_PRIVATE)?;
                Some(VideoFormat {
                    dims: h264::sps_dimensions(sps)?,
                    codec_private: Some(avcc),
                })
            }
            TrackCodec::Opus => None,
        }
    }

    /// The muxer of the next file, starting with `keyframe`.
    fn next_segment(&mut self, keyframe: Frame, format: VideoFormat) -> TrackMuxer {
        let at = self.frame_ms(keyframe.ext_ts);
        let mut next = TrackMuxer {
            ts_last: self.ts_last,
            keyframe_asked_ms: self.keyframe_asked_ms,
            ..TrackMuxer::blank(self.codec, self.clock_rate, at)
        };
        next.ts_base = Some(keyframe.ext_ts);
        next.format = Some(format);
        next.parameter_sets = self.parameter_sets.clone();
        next.need_keyframe = false;
        next.write_frame(keyframe);
        next
    }

    /// A frame's time on the recording clock, never before the previous one.
    fn frame_ms(&self, ext_ts: i64) -> u64 {
        let base = self.ts_base.unwrap_or(ext_ts);
        let since = (ext_ts - base).max(0) as u128 * 1000 / u128::from(self.clock_rate);
        let ms = self
            .offset_ms
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX));
        if self.first_ms.is_some() {
            ms.max(self.last_ms)
        } else {
            ms
        }
    }

    fn write_frame(&mut self, frame: Frame) {
        let ms = self.frame_ms(frame.ext_ts);
        self.ensure_head();
        let close = self.cluster.as_ref().is_some_and(|c| {
            ms - c.start_ms >= CLUSTER_MS
                || c.blocks.len() >= MAX_CLUSTER_BYTES
                || (frame.keyframe && self.codec.kind() == MediaKind::Video)
        });
        if close {
            self.close_cluster();
        }
        let cluster = self.cluster.get_or_insert_with(|| Cluster {
            start_ms: ms,
            starts_with_keyframe: frame.keyframe,
            blocks: Vec::new(),
            frames: 0,
        });
        cluster.frames += 1;
        // Under CLUSTER_MS by construction: fits the block's i16.
        let relative = (ms - cluster.start_ms) as i16;
        ebml::put_id(&mut cluster.blocks, id::SIMPLE_BLOCK);
        ebml::put_size(&mut cluster.blocks, 4 + frame.data.len() as u64);
        cluster.blocks.push(0x81); // track number 1
        cluster.blocks.extend_from_slice(&relative.to_be_bytes());
        cluster
            .blocks
            .push(if frame.keyframe { 0x80 } else { 0x00 });
        cluster.blocks.extend_from_slice(&frame.data);

        match self.first_ms {
            None => self.first_ms = Some(ms),
            Some(_) if frame.duration_ms.is_none() => self.last_len_ms = ms - self.last_ms,
            Some(_) => {}
        }
        if let Some(len) = frame.duration_ms {
            self.last_len_ms = len;
        }
        self.last_ms = ms;
        self.frames += 1;
    }

    fn ensure_head(&mut self) {
        if !self.head_written {
            let head = self.head(None);
            self.emit(head);
            self.head_written = true;
        }
    }

    fn emit(&mut self, bytes: Vec<u8>) {
        self.written += bytes.len() as u64;
        if self.out.is_empty() {
            self.out = bytes;
        } else {
            self.out.extend_from_slice(&bytes);
        }
    }

    fn close_cluster(&mut self) {
        let Some(cluster) = self.cluster.take() else {
            return;
        };
        if cluster.starts_with_keyframe {
            self.cues
                .push((cluster.start_ms, self.written - seg_data_start(self.codec)));
        }
        let mut bytes = Vec::with_capacity(cluster.blocks.len() + 16);
        ebml::put_id(&mut bytes, id::CLUSTER);
        let mut timestamp = Vec::with_capacity(10);
        ebml::put_uint_fixed8(&mut timestamp, id::TIMESTAMP, cluster.start_ms);
        ebml::put_size(&mut bytes, (timestamp.len() + cluster.blocks.len()) as u64);
        bytes.extend_from_slice(&timestamp);
        bytes.extend_from_slice(&cluster.blocks);
        self.emit(bytes);
    }

    /// The head, [`HEAD_LEN`] bytes: the first version (`None`: unknown
    /// Segment size, no Duration, no SeekHead) or the final one.
    fn head(&self, fin: Option<Final>) -> Vec<u8> {
        let mut tracks = Vec::new();
        ebml::put_master(&mut tracks, id::TRACKS, |b| self.track_entry(b));
        build_head(&ebml_header(self.codec), &tracks, fin)
    }

    fn track_entry(&self, b: &mut Vec<u8>) {
        ebml::put_master(b, id::TRACK_ENTRY, |b| {
            ebml::put_uint(b, id::TRACK_NUMBER, 1);
            ebml::put_uint(b, id::TRACK_UID, 1);
            ebml::put_uint(b, id::FLAG_LACING, 0);
            ebml::put_str(b, id::CODEC_ID, self.codec.codec_id());
            match self.codec {
                TrackCodec::Opus => {
                    ebml::put_uint(b, id::TRACK_TYPE, 2);
                    ebml::put_bytes(b, id::CODEC_PRIVATE, &opus_head());
                    ebml::put_uint(b, id::CODEC_DELAY, 0);
                    // 80 ms, as the WebM spec asks of Opus.
                    ebml::put_uint(b, id::SEEK_PRE_ROLL, 80_000_000);
                    ebml::put_master(b, id::AUDIO, |b| {
                        ebml::put_float(b, id::SAMPLING_FREQUENCY, 48_000.0);
                        ebml::put_uint(b, id::CHANNELS, 2);
                    });
                }
                TrackCodec::Vp8 | TrackCodec::H264 => {
                    ebml::put_uint(b, id::TRACK_TYPE, 1);
                    if let Some(private) =
                        self.format.as_ref().and_then(|f| f.codec_private.as_ref())
                    {
                        ebml::put_bytes(b, id::CODEC_PRIVATE, private);
                    }
                    let (w, h) = self.format.as_ref().map_or((0, 0), |f| f.dims);
                    ebml::put_master(b, id::VIDEO, |b| {
                        ebml::put_uint(b, id::PIXEL_WIDTH, u64::from(w));
                        ebml::put_uint(b, id::PIXEL_HEIGHT, u64::from(h));
                    });
                }
            }
        });
    }
}

/// What a video file is made for: a keyframe that changes it starts a new file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VideoFormat {
    dims: (u16, u16),
    /// H.264: the `avcC` record.
    codec_private: Option<Vec<u8>>,
}

/// The head: the EBML header, the Segment's id and size (unknown without
/// `fin`), a SeekHead (or a Void as long), Info, Tracks, and a Void up to
/// [`HEAD_LEN`]. The SeekHead has a fixed length (positions on 8 bytes), so
/// Info and Tracks are at the same place in both versions.
pub(crate) fn build_head(ebml_header: &[u8], tracks: &[u8], fin: Option<Final>) -> Vec<u8> {
    let mut h = ebml_header.to_vec();
    ebml::put_id(&mut h, id::SEGMENT);
    match &fin {
        Some(f) => ebml::put_size_len(&mut h, f.segment_size, 8),
        None => h.extend_from_slice(&ebml::UNKNOWN_SIZE),
    }
    let mut info = Vec::new();
    ebml::put_master(&mut info, id::INFO, |b| {
        ebml::put_uint(b, id::TIMESTAMP_SCALE, 1_000_000);
        if let Some(f) = &fin {
            ebml::put_float(b, id::DURATION, f.end_ms as f64);
        }
        ebml::put_str(b, id::MUXING_APP, "tuxa-recording");
        ebml::put_str(b, id::WRITING_APP, "tuxa");
    });
    let seek_len = seek_head(&[(id::INFO, 0), (id::TRACKS, 0), (id::CUES, 0)]).len();
    let info_pos = seek_len as u64;
    let tracks_pos = info_pos + info.len() as u64;
    match fin.as_ref().and_then(|f| f.cues_pos) {
        Some(cues) => h.extend_from_slice(&seek_head(&[
            (id::INFO, info_pos),
            (id::TRACKS, tracks_pos),
            (id::CUES, cues),
        ])),
        None => ebml::put_void(&mut h, seek_len),
    }
    h.extend_from_slice(&info);
    h.extend_from_slice(tracks);
    // Tracks is bounded (MAX_CODEC_PRIVATE) so that this always fits.
    let pad = HEAD_LEN.saturating_sub(h.len()).max(9);
    ebml::put_void(&mut h, pad);
    debug_assert_eq!(h.len(), HEAD_LEN);
    h
}

/// The Cues element for (time ms, cluster position) points; empty without any.
pub(crate) fn cues_element(points: &[(u64, u64)]) -> Vec<u8> {
    let mut cues = Vec::new();
    if !points.is_empty() {
        ebml::put_master(&mut cues, id::CUES, |b| {
            for &(time, pos) in points {
                ebml::put_master(b, id::CUE_POINT, |b| {
                    ebml::put_uint(b, id::CUE_TIME, time);
                    ebml::put_master(b, id::CUE_TRACK_POSITIONS, |b| {
                        ebml::put_uint(b, id::CUE_TRACK, 1);
                        ebml::put_uint(b, id::CUE_CLUSTER_POSITION, pos);
                    });
                });
            }
        });
    }
    cues
}

pub(crate) struct Final {
    pub(crate) segment_size: u64,
    pub(crate) end_ms: u64,
    pub(crate) cues_pos: Option<u64>,
}

fn ebml_header(codec: TrackCodec) -> Vec<u8> {
    let mut h = Vec::new();
    ebml::put_master(&mut h, id::EBML, |b| {
        ebml::put_uint(b, id::EBML_VERSION, 1);
        ebml::put_uint(b, id::EBML_READ_VERSION, 1);
        ebml::put_uint(b, id::EBML_MAX_ID_LENGTH, 4);
        ebml::put_uint(b, id::EBML_MAX_SIZE_LENGTH, 8);
        ebml::put_str(b, id::DOC_TYPE, codec.doc_type());
        ebml::put_uint(b, id::DOC_TYPE_VERSION, 4);
        ebml::put_uint(b, id::DOC_TYPE_READ_VERSION, 2);
    });
    h
}

/// Where the Segment's data starts (positions in SeekHead and Cues count from it).
fn seg_data_start(codec: TrackCodec) -> u64 {
    ebml_header(codec).len() as u64 + 4 + 8
}

fn seek_head(entries: &[(u32, u64)]) -> Vec<u8> {
    let mut out = Vec::new();
    ebml::put_master(&mut out, id::SEEK_HEAD, |b| {
        for &(target, pos) in entries {
            ebml::put_master(b, id::SEEK, |b| {
                let mut idb = Vec::new();
                ebml::put_id(&mut idb, target);
                ebml::put_bytes(b, id::SEEK_ID, &idb);
                ebml::put_uint_fixed8(b, id::SEEK_POSITION, pos);
            });
        }
    });
    out
}

/// The Opus identification header (RFC 7845 5.1) as CodecPrivate: two
/// channels (a mono WebRTC stream decodes to both), no pre-skip (the
/// encoder's delay is already in the RTP timeline).
fn opus_head() -> [u8; 19] {
    let mut h = [0u8; 19];
    h[..8].copy_from_slice(b"OpusHead");
    h[8] = 1; // version
    h[9] = 2; // channels
    // pre-skip 0 (h[10..12]); input sample rate:
    h[12..16].copy_from_slice(&48_000u32.to_le_bytes());
    // output gain 0, channel mapping family 0.
    h
}

/// An Opus packet's length in ms from its TOC (RFC 6716 3.1), `None` if malformed.
pub(crate) fn opus_duration_ms(packet: &[u8], clock_rate: u32) -> Option<u64> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Frame length in 1/400 s (2.5 ms) units.
    let frame = match config {
        0..=11 => [4u64, 8, 16, 24][usize::from(config % 4)],
        12..=15 => [4u64, 8][usize::from(config % 2)],
        _ => [1u64, 2, 4, 8][usize::from(config % 4)],
    };
    let count = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u64::from(*packet.get(1)? & 0x3F),
    };
    if count == 0 || frame * count > 48 {
        return None;
    }
    let _ = clock_rate; // Opus's RTP clock is always 48 kHz.
    Some(frame * count * 5 / 2)
}

/// Whether a packet can be the first of a frame: VP8 with the S bit and
/// partition index 0; H.264 anything but the middle or end of a fragmented
/// NAL unit (FU-A/FU-B without the start bit).
fn frame_start(codec: TrackCodec, payload: &[u8]) -> bool {
    match codec {
        TrackCodec::Vp8 => payload
            .first()
            .is_some_and(|b| b & 0x10 != 0 && b & 0x07 == 0),
        TrackCodec::H264 => match payload.first().map(|b| b & 0x1F) {
            None | Some(0) => false,
            Some(28 | 29) => payload.get(1).is_some_and(|b| b & 0x80 != 0),
            Some(_) => true,
        },
        TrackCodec::Opus => true,
    }
}

/// Width and height from a VP8 keyframe's header (RFC 6386 9.1).
fn vp8_dimensions(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[3..6] != [0x9D, 0x01, 0x2A] {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3FFF;
    let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3FFF;
    (w > 0 && h > 0).then_some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_lengths_follow_the_toc() {
        // config 1 (SILK NB 20 ms), one frame.
        assert_eq!(opus_duration_ms(&[1 << 3], 48_000), Some(20));
        // config 31 (CELT FB 20 ms), code 1: two frames.
        assert_eq!(opus_duration_ms(&[(31 << 3) | 1], 48_000), Some(40));
        // code 3 with 0 frames is malformed.
        assert_eq!(opus_duration_ms(&[(31 << 3) | 3, 0], 48_000), None);
        assert_eq!(opus_duration_ms(&[], 48_000), None);
    }

    #[test]
    fn the_head_is_the_same_length_first_and_last() {
        let mut m = TrackMuxer::new(TrackCodec::Opus, 48_000, 5).unwrap();
        let first = m.head(None);
        m.cues.push((5, 0));
        let last = m.head(Some(Final {
            segment_size: 123_456,
            end_ms: 9_999,
            cues_pos: Some(4321),
        }));
        assert_eq!(first.len(), HEAD_LEN);
        assert_eq!(last.len(), HEAD_LEN);
        assert_ne!(first, last);
    }

    #[test]
    fn other_codecs_are_refused_with_a_typed_error() {
        assert!(matches!(
            TrackCodec::from_str0m(Codec::Vp9),
            Err(MuxError::UnsupportedCodec(_))
        ));
        assert_eq!(
            TrackMuxer::new(TrackCodec::Vp8, 0, 0).unwrap_err(),
            MuxError::ZeroClockRate
        );
    }

    /// An inter frame in one packet (VP8 descriptor with S=1, P bit 1).
    fn inter_frame(seq: u64, arrival_ms: u64) -> (u64, u32, u64) {
        (seq, (seq as u32) * 3000, arrival_ms)
    }

    #[test]
    fn a_keyframe_is_asked_for_at_most_once_a_second_while_it_lasts() {
        let mut m = TrackMuxer::new(TrackCodec::Vp8, 90_000, 0).unwrap();
        let payload = [0x10, 0x01, 0x00, 0x00, 0xAA];
        let mut asked = Vec::new();
        for i in 0..25 {
            let (seq, timestamp, arrival_ms) = inter_frame(i, i * 100);
            let pushed = m
                .push(RtpIn {
                    seq,
                    timestamp,
                    marker: true,
                    red: false,
                    payload: &payload,
                    arrival_ms,
                })
                .unwrap();
            if pushed.keyframe_wanted {
                asked.push(arrival_ms);
            }
        }
        assert_eq!(asked, [0, 1000, 2000]);
        assert!(m.waiting_for_keyframe());
        let f = m.finish();
        assert_eq!((f.frames, f.dropped_frames), (0, 25));
    }

    #[test]
    fn garbage_never_panics() {
        let mut m = TrackMuxer::new(TrackCodec::Vp8, 90_000, 0).unwrap();
        let junk: [&[u8]; 5] = [&[], &[0x10], &[0x90, 0x80], &[0x10, 0, 0, 0], &[0xff; 40]];
        for (i, p) in junk.iter().enumerate() {
            let _ = m.push(RtpIn {
                seq: i as u64,
                timestamp: (i as u32).wrapping_mul(u32::MAX / 3),
                marker: true,
                red: i % 2 == 0,
                payload: p,
                arrival_ms: i as u64 * 400,
            });
        }
        let f = m.finish();
        assert_eq!(f.frames, 0);
        assert_eq!(f.head.len(), HEAD_LEN);
    }
}
