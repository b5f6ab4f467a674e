//! The only crate that knows SQL: the schema and its migrations, every
//! query (as plain functions on a `rusqlite::Connection`, returning the
//! domain's types from `tuxa-records`), and the store thread that owns the
//! connection. Domain errors travel as `tuxa_records::Error`.

/// Sign-in rows: credentials, sessions, the last TOTP step.
pub mod auth;
/// The directory's rows: facilities, practitioners, staff accounts.
pub mod directory;
/// The schema, its migrations, and the connection's durability settings.
pub mod schema;
/// The secrets as stored (sealed by the server).
pub mod secrets;
