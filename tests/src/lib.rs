//! End-to-end test harness for tuxa.
//!
//! A whole server runs in-process ([`TestServer`], on port 0 of 127.0.0.1) and is driven the way
//! real clients drive it: HTTPS for the admin API ([`ApiClient`]), the signaling WebSocket
//! ([`SignalClient`]), and real WebRTC peers ([`Peer`], on webrtc-rs or str0m) over the
//! server's UDP port with DTLS-SRTP. The peers send synthetic frames ([`frames`]) that say who
//! sent them and carry a checksum, so a receiver can tell each frame is intact and whose it is.
//!
//! The tests are in `tests/tests/`: `media.rs` (calls through the SFU), `bad_input.rs` (every
//! wrong frame, message, token and API request), `lifecycle.rs` (ended and full rooms,
//! disconnects, shutdown, glare). Run them with
//! `cargo test -p tuxa-tests` (add `-- --ignored` for the one that waits a minute for a link to
//! expire; `RUST_LOG=tuxa_tests=debug` for more output).

pub mod events;
pub mod frames;
pub mod http;
pub mod peer;
pub mod real_media;
pub mod recordings;
pub mod server;
pub mod signal;
pub mod staff;
pub mod stats;

mod str0m_peer;
mod webrtc_peer;

/// The insecure TLS client config (one definition, in the test kit).
pub use tuxa_test_kit::tls;

pub use events::{EventLog, PeerEvent};
pub use http::{ApiClient, Auth, Response};
pub use peer::{Flavor, Peer, PeerOptions};
pub use server::{TEST_ADMIN_KEY, TestServer};
pub use signal::{Joined, REPLY_TIMEOUT, SignalClient, WsEvent};
pub use stats::{MediaRx, TrackRx, TxStats};

/// Logs to the test's output, filtered by `RUST_LOG` (default: warnings, and info from the
/// harness). Safe to call more than once.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("warn,tuxa_tests=info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// Serialises the heavy tests of one test binary (the machine has 2 cores; several servers
/// each forwarding media to several peers at once would make timings flaky). Hold the guard
/// for the whole test.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}
