//! tuxa's recordings, without sockets, tasks or a clock (time comes in as an
//! argument, like everywhere in tuxa's core).
//!
//! - [`mux`]: one published track's RTP, depacketized (VP8, Opus, H.264) and
//!   muxed into a WebM (Matroska for H.264) stream, without transcoding.
//! - [`seal`]: a file written in chunks, each sealed with AES-256-GCM under
//!   the recording's own data key, itself wrapped by a master key
//!   ([`keys`]); readable up to the last whole chunk after a crash, and by
//!   byte range for playback.
//!
//! The server's recorder owns the files and calls these from its own
//! thread, never from the media task.

mod ebml;
mod h264;
pub mod keys;
pub mod mux;
pub mod recover;
mod reorder;
pub mod seal;
