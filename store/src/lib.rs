//! The only crate that knows SQL: the schema and its migrations, every
//! query (as plain functions on a `rusqlite::Connection`, returning the
//! domain's types from `tuxa-records`), and the store thread that owns the
//! connection. Domain errors travel as `tuxa_records::Error`.

/// The audit chain's table: appending (with the strangers' aggregation) and verifying.
pub mod audit;
/// Sign-in rows: credentials, sessions, the last TOTP step.
pub mod auth;
/// Case conference requests, invitees and attachments.
pub mod conferences;
pub mod consultations;
/// The directory's rows: facilities, practitioners, staff accounts.
pub mod directory;
pub mod live;
pub mod queues;
/// A consultation's record: reading its facts; a visit's stated reason.
pub mod record;
/// Recordings and their sealed files (issue 13): rows, states, audit of each file.
pub mod recordings;
/// The activity report's rows (queue events, a period's facts).
pub mod reports;
/// The schema, its migrations, and the connection's durability settings.
pub mod schema;
/// The secrets as stored (sealed by the server).
pub mod secrets;
/// The thread that owns the connection, with its bounded queue.
pub mod thread;

/// A connection with the whole schema, in memory, for unit tests.
#[cfg(test)]
pub(crate) fn test_db() -> rusqlite::Connection {
    let mut c = rusqlite::Connection::open_in_memory().expect("SQLite in memory");
    schema::migrate(&mut c).expect("the schema");
    c
}
