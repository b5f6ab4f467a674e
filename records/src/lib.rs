//! tuxa's clinical domain, sans IO like `protocol`, `signaling` and `sfu`:
//! no sockets, no tasks, no clock (time comes in as [`UnixTime`]), no SQL
//! (the `store` crate alone knows SQL; the `sqlite` feature only adds row
//! conversions for the ids and enums), no HTTP (the `server` crate alone
//! knows HTTP and the API's request and response bodies).
//!
//! What is here: the ids, the directory's types and scoping rule, and one
//! error type. See ARCHITECTURE.md, "Code map".

pub mod authz;
/// Case conference requests: status and its changes, link window, invitees, attachments.
pub mod conference;
pub mod directory;
pub mod error;
pub mod ids;
pub mod time;

pub use error::{Error, Result};
pub use ids::{ConferenceId, FacilityId, PractitionerId, QueueId, StaffId};
pub use time::UnixTime;
