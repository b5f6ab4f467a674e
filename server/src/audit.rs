//! The audit log: the entries and the chain's rules are
//! `tuxa_records::audit`'s, the table `tuxa_store::audit`'s. Re-exported
//! here so that the server's modules name them as before.

pub use tuxa_records::audit::{Action, Entry, Verdict};
pub use tuxa_store::audit::{append, verify};
