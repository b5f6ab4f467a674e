//! A str0m client as every harness sets it up: Opus and VP8 only, one crypto provider for the
//! process, and the small steps around str0m's sans-IO API (payload types, frame-mode writes,
//! datagrams in).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use str0m::crypto::CryptoProvider;
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Input, Rtc, RtcConfig, RtcError};

/// str0m's provider from its feature flags (aws-lc-rs here), made once: building it for each
/// of a few hundred bench clients is measurable.
pub fn crypto() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(str0m::crypto::from_feature_flags()))
        .clone()
}

/// How a client's codecs are set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codecs {
    /// str0m's defaults for Opus and VP8 (VP8 on 96, as Chromium).
    Default,
    /// VP8 on the given payload type with the given RTX (Firefox uses 120 and 124), Opus on 109:
    /// the SFU must remap payload types between browsers.
    Vp8On(u8, u8),
}

/// A client configuration with only Opus and VP8, the codecs the SFU forwards.
pub fn config(codecs: Codecs) -> RtcConfig {
    let mut cfg = RtcConfig::new()
        .clear_codecs()
        .set_crypto_provider(crypto());
    match codecs {
        Codecs::Default => cfg.enable_opus(true, false).enable_vp8(true),
        Codecs::Vp8On(pt, rtx) => {
            let cc = cfg.codec_config();
            cc.add_config(
                Pt::new_with_value(109),
                None,
                Codec::Opus,
                Frequency::FORTY_EIGHT_KHZ,
                Some(2),
                FormatParams {
                    min_p_time: Some(10),
                    use_inband_fec: Some(true),
                    ..Default::default()
                },
            );
            cc.add_config(
                Pt::new_with_value(pt),
                Some(Pt::new_with_value(rtx)),
                Codec::Vp8,
                Frequency::NINETY_KHZ,
                None,
                FormatParams::default(),
            );
            cfg
        }
    }
}

/// A client with the default codecs, started now.
pub fn new_rtc() -> Rtc {
    config(Codecs::Default).build(Instant::now())
}

/// The codec the SFU forwards for `kind`.
pub fn codec(kind: MediaKind) -> Codec {
    match kind {
        MediaKind::Audio => Codec::Opus,
        MediaKind::Video => Codec::Vp8,
    }
}

/// The payload type `rtc` writes `codec` with on `mid` (frame mode; None before the m-line is
/// negotiated or without that codec).
pub fn pt_for(rtc: &mut Rtc, mid: Mid, codec: Codec) -> Option<Pt> {
    rtc.writer(mid)?
        .payload_params()
        .find(|p| p.spec().codec == codec)
        .map(|p| p.pt())
}

/// A payload type from the codec configuration (RTP mode has no writer).
pub fn pt_in_config(rtc: &Rtc, codec: Codec) -> Option<Pt> {
    rtc.codec_config()
        .find(|p| p.spec().codec == codec)
        .map(|p| p.pt())
}

/// The RTP time of a frame captured `elapsed` after the sender started: 48 kHz for Opus,
/// 90 kHz for VP8.
pub fn media_time(kind: MediaKind, elapsed: Duration) -> MediaTime {
    let us = elapsed.as_micros() as u64;
    match kind {
        MediaKind::Audio => MediaTime::new(us * 48 / 1000, Frequency::FORTY_EIGHT_KHZ),
        MediaKind::Video => MediaTime::from_90khz(us * 90 / 1000),
    }
}

/// Why a frame was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("m-line {0} has no writer")]
    NoWriter(Mid),
    #[error(transparent)]
    Rtc(#[from] RtcError),
}

/// Writes one whole frame (str0m packetizes it) on `mid` with payload type `pt`.
pub fn write_frame(
    rtc: &mut Rtc,
    mid: Mid,
    pt: Pt,
    now: Instant,
    rtp_time: MediaTime,
    data: impl Into<std::sync::Arc<[u8]>>,
) -> Result<(), WriteError> {
    let writer = rtc.writer(mid).ok_or(WriteError::NoWriter(mid))?;
    writer.write(pt, now, rtp_time, data)?;
    Ok(())
}

/// A datagram (or an RFC 4571 frame) as str0m's input; None for one str0m cannot take at all.
pub fn receive(
    now: Instant,
    proto: Protocol,
    source: SocketAddr,
    destination: SocketAddr,
    data: &[u8],
) -> Option<Input<'_>> {
    let contents = data.try_into().ok()?;
    Some(Input::Receive(
        now,
        Receive {
            proto,
            source,
            destination,
            contents,
        },
    ))
}

/// Is this datagram RTP (not RTCP, STUN or DTLS)? SRTP leaves the RTP header in the clear, so
/// this holds for encrypted media too (RFC 7983 demultiplexing, RFC 5761 for RTCP).
pub fn is_rtp(d: &[u8]) -> bool {
    d.len() >= 12 && (128..192).contains(&d[0]) && !(192..=223).contains(&d[1])
}

/// str0m's media kind as tuxa's protocol names it.
pub fn protocol_kind(kind: MediaKind) -> tuxa_protocol::MediaKind {
    match kind {
        MediaKind::Audio => tuxa_protocol::MediaKind::Audio,
        MediaKind::Video => tuxa_protocol::MediaKind::Video,
    }
}

/// tuxa's protocol media kind as str0m names it.
pub fn str0m_kind(kind: tuxa_protocol::MediaKind) -> MediaKind {
    match kind {
        tuxa_protocol::MediaKind::Audio => MediaKind::Audio,
        tuxa_protocol::MediaKind::Video => MediaKind::Video,
    }
}
