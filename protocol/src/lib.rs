//! Wire types of tuxa's signaling protocol.
//!
//! Everything a client and the server say to each other over the WebSocket is
//! one of [`ClientMsg`] or [`ServerMsg`], serialised as a JSON object with a
//! `type` tag. `docs/protocol.md` is the prose version of this file; the
//! golden fixtures under `protocol/fixtures/` pin the exact JSON and are
//! checked from both Rust and the browser client's `protocol.js`.

mod error;
mod ids;
mod msg;

pub use error::{ErrorCode, ProtocolError};
pub use ids::{
    ConsultationKind, MediaKind, ParticipantId, Role, RoomId, RoomIdError, TrackId, TrackSource,
};
pub use msg::{
    AudioOnlyReason, ClientMsg, EndReason, FacilityContact, LeaveReason, LinkGrade, LinkStats,
    OfferAfterwards, ParticipantInfo, QueueState, RoomInfo, ServerMsg, TrackInfo, parse_client_msg,
    parse_server_msg,
};
// Issue 13 (recording control).
pub use msg::{RecordingAction, RecordingReason, RecordingState};

/// Protocol versions this build speaks, newest last. The client's `hello`
/// lists the versions it speaks; the server picks the highest in common.
pub const SUPPORTED_VERSIONS: &[u32] = &[1];

/// Largest text frame the server accepts. An SDP offer with simulcast and a
/// few transceivers is ~10 KiB; 64 KiB leaves room for renegotiations of a
/// conference without letting one session make the server buffer megabytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Clients send `ping` at this interval.
pub const KEEPALIVE_INTERVAL_MS: u64 = 15_000;

/// A session that has sent nothing for this long is closed with `idle_timeout`.
/// Three missed pings: a phone on 3G can stall for a while without being gone.
pub const IDLE_TIMEOUT_MS: u64 = 45_000;
