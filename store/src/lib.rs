//! The only crate that knows SQL: the schema and its migrations, every
//! query (as plain functions on a `rusqlite::Connection`, returning the
//! domain's types from `tuxa-records`), and the store thread that owns the
//! connection. Domain errors travel as `tuxa_records::Error`.

/// Case conference requests, invitees and attachments.
pub mod conferences;
