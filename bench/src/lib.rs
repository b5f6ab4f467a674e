//! tuxa's benchmark: a load generator of many str0m peers on one thread, speaking tuxa's
//! protocol or Janus's VideoRoom API, and the forwarding floor it is compared with.
//! See `BENCHMARKS.md` and `scripts/bench.sh`.

pub mod api;
pub mod floor;
pub mod floor_client;
pub mod media;
pub mod peer;
pub mod procstat;
pub mod report;
pub mod run;
pub mod rxts;
pub mod sig;
pub mod smoke;

/// The insecure TLS client config (one definition, in the test kit).
pub use tuxa_test_kit::tls;
