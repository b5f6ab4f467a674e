//! tuxa's clinical domain, sans IO like `protocol`, `signaling` and `sfu`:
//! no sockets, no tasks, no clock (time comes in as [`UnixTime`]), no SQL
//! (the `store` crate alone knows SQL; the `sqlite` feature only adds row
//! conversions for the ids and enums), no HTTP (the `server` crate alone
//! knows HTTP and the API's request and response bodies).
//!
//! What is here: the ids, the directory's types and scoping rule, and one
//! error type. See ARCHITECTURE.md, "Code map".

pub mod appointment;
/// The audit chain: entries, hashes, the strangers' windows, verification.
pub mod audit;
/// Staff sessions: their lifetime rules.
pub mod auth;
pub mod authz;
/// Case conference requests: status and its changes, link window, invitees, attachments.
pub mod conference;
/// Dates as the record prints them: RFC 3339, and Vietnam time with jiff.
pub mod dates;
pub mod directory;
pub mod error;
/// The record as a FHIR R4 Bundle.
pub mod fhir;
pub mod ids;
/// The record as the printable minutes page (a MiniJinja template).
pub mod minutes;
/// Password policy and the argon2 cost.
pub mod password;
/// A consultation's record: its facts, record.json and the continuity summary.
pub mod record;
/// Recordings (issue 13): their rows' types, states and the retention rule.
pub mod recording;
/// The activity report: aggregation over rows, and its CSV.
pub mod reports;
pub mod roster;
pub mod time;
/// TOTP by totp-rs, with the rule that a code is accepted once.
pub mod totp;

pub use error::{Error, Result};
pub use ids::{ConferenceId, FacilityId, PractitionerId, QueueId, StaffId};
pub use time::UnixTime;
