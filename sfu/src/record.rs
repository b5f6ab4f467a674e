//! The recording tap. While a room is recorded, every RTP packet a
//! participant publishes in it is handed out ([`SfuOutput::Record`]), as the
//! same shared payload the subscribers get, in arrival order, between the
//! room's `Started` and `Stopped`. What is done with it (depacketizing,
//! muxing, sealing, writing) happens off the media task, in the server's
//! recorder: this module only decides what is recorded.
//!
//! [`SfuOutput::Record`]: crate::SfuOutput::Record

use std::sync::Arc;
use std::time::Instant;

use str0m::format::Codec;
use str0m::media::{MediaKind, Mid, Rid};
use tuxa_protocol::{ParticipantId, RoomId};

/// What the recorder is told, in the order the media happened.
#[derive(Debug, Clone)]
pub enum Recorded {
    /// The room's recording started (or resumed after a pause).
    Started { room: RoomId, at: Instant },
    /// One RTP packet of a recorded track.
    Rtp(RecordedRtp),
    /// The room's recording stopped (or paused): close its tracks' files.
    Stopped { room: RoomId, at: Instant },
}

/// One published RTP packet, as it arrived (after SRTP, before forwarding).
#[derive(Debug, Clone)]
pub struct RecordedRtp {
    pub room: RoomId,
    pub participant: ParticipantId,
    /// The publisher's m-line: one track of one participant.
    pub mid: Mid,
    /// The simulcast layer the packet belongs to (`None`: not simulcast).
    pub rid: Option<Rid>,
    pub kind: MediaKind,
    pub codec: Codec,
    pub clock_rate: u32,
    /// Extended (rollover-free) sequence number of the publisher's stream.
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    /// The first packet of a keyframe.
    pub keyframe_start: bool,
    /// The payload is RFC 2198 redundant audio around `codec`.
    pub red: bool,
    pub arrived: Instant,
    pub payload: Arc<[u8]>,
}
