//! tuxa's control plane, sans IO: who is in which room, in what role, with
//! which token, and what each of them must be told.
//!
//! Nothing here touches a socket, a task or the clock. Time comes in as an
//! argument, randomness as bytes. The server crate wraps [`Hub`] in one task
//! and feeds it; the tests drive it directly in simulated time.

mod b64;
pub mod hub;
mod hub_queue;
pub mod queue;
pub mod token;
mod wire;

pub use hub::{
    Bar, CHECK_JOIN_WINDOW, CHECK_ROOM_LIFETIME, CheckError, CheckTicket, Consent,
    DEFAULT_ABANDON_AFTER, DEFAULT_RECONNECT_GRACE, Hub, HubConfig, Input, Live, LiveQueue,
    LiveRoom, MAX_CHECK_ROOMS, MediaCommand, Output, QUALITY_WINDOW_SECS, QualityWindow,
    RecordEvent, RoomStatus, STATS_MIN_INTERVAL, SessionId,
};
// Issue 13 (recording control).
pub use hub::{RecordingChange, RecordingStatus};
pub use queue::{
    PatientCard, QueueBook, QueueConfig, QueueError, QueueEvent, QueueId, QueueInput, QueueOutput,
    StaffRef, Ticket, TransferTarget,
};
pub use token::{Claims, TokenError, TokenKey};

pub use b64::{decode as b64_decode, encode as b64_encode};

pub use hub_queue::{CallLinks, ClearError, StaffInfo, StaffTicket};
