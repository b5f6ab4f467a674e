//! tuxa's clinical domain, sans IO like `protocol`, `signaling` and `sfu`:
//! no sockets, no tasks, no clock (time comes in as [`UnixTime`]), no SQL
//! (the `store` crate alone knows SQL; the `sqlite` feature only adds row
//! conversions for the ids and enums), no HTTP (the `server` crate alone
//! knows HTTP and the API's request and response bodies).
//!
//! What is here: the ids, the directory's types and scoping rule, and one
//! error type. See ARCHITECTURE.md, "Code map".

/// Staff sessions: their lifetime rules.
pub mod auth;
pub mod directory;
pub mod error;
pub mod ids;
/// Password policy and the argon2 cost.
pub mod password;
pub mod time;
/// TOTP by totp-rs, with the rule that a code is accepted once.
pub mod totp;

pub use error::{Error, Result};
pub use ids::{ConferenceId, FacilityId, PractitionerId, QueueId, StaffId};
pub use time::UnixTime;
