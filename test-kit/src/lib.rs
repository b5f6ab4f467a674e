//! tuxa's test kit: the str0m client building blocks that the three client harnesses share, so
//! each keeps only what is its own. Unpublished; never a dependency of the server.
//!
//! - [`rtc`]: a client's str0m configuration (Opus and VP8 only, one crypto provider for the
//!   process), payload types, frame-mode writes, datagrams in.
//! - [`sdp`]: the client's offer (audio and video m-lines), the offer in flight, the answer to a
//!   server offer, an ICE restart.
//! - [`payload`]: synthetic VP8/Opus frames that a receiver can match byte for byte, tagged with
//!   their simulcast layer and number.
//! - [`simulcast`]: a Chrome-like simulcast publisher (three VP8 layers, RTP mode).
//! - [`tls`] (feature `tls`): the rustls client config that accepts the server's self-signed
//!   certificate.
//!
//! Users: `sfu/tests/common` (simulated network in virtual time; dev-dependency of tuxa-sfu, so
//! this crate must not depend on tuxa-sfu or tuxa-server), `tests/src/str0m_peer.rs` (real UDP
//! and ICE-TCP against a whole server) and `bench/src/peer.rs` (the load generator), plus the
//! HTTPS and WebSocket clients of `tests` and `bench` for [`tls`].

pub mod payload;
pub mod rtc;
pub mod sdp;
pub mod simulcast;
#[cfg(feature = "tls")]
pub mod tls;
