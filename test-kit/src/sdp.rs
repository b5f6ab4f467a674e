//! Offer/answer for a str0m client: the offer a client makes (one audio and one video m-line at
//! most, in that order), the offer in flight with the m-lines it proposes, and the answer to a
//! server's offer.

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid, Simulcast};
use str0m::{IceCreds, Rtc, RtcError};

/// One m-line a client offers.
#[derive(Debug, Clone)]
pub struct Track {
    pub dir: Direction,
    /// The MediaStream id (the SFU shows it to subscribers as the publisher's).
    pub stream: String,
    pub track: String,
    pub simulcast: Option<Simulcast>,
}

impl Track {
    pub fn new(dir: Direction, stream: impl Into<String>, track: impl Into<String>) -> Track {
        Track {
            dir,
            stream: stream.into(),
            track: track.into(),
            simulcast: None,
        }
    }

    pub fn with_simulcast(mut self, simulcast: Simulcast) -> Track {
        self.simulcast = Some(simulcast);
        self
    }
}

/// The audio and video m-lines of a client's own tracks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Mids {
    pub audio: Option<Mid>,
    pub video: Option<Mid>,
}

impl Mids {
    /// Takes the m-lines an accepted offer added; one it did not propose (an ICE restart
    /// proposes none) stays as it was.
    pub fn adopt(&mut self, accepted: Mids) {
        if accepted.audio.is_some() {
            self.audio = accepted.audio;
        }
        if accepted.video.is_some() {
            self.video = accepted.video;
        }
    }
}

/// Why a remote description was refused.
#[derive(Debug, thiserror::Error)]
pub enum SdpError {
    #[error("parsing the remote {0}: {1}")]
    Parse(&'static str, str0m::error::SdpError),
    #[error("applying the remote {0}: {1}")]
    Apply(&'static str, RtcError),
}

/// Our offer in flight. Dropping it is str0m's rollback: nothing was applied yet.
#[derive(Debug)]
pub struct PendingOffer {
    pending: SdpPendingOffer,
    /// The m-lines it proposes for our tracks.
    pub proposed: Mids,
}

impl PendingOffer {
    /// Applies the remote answer; returns the m-lines the offer proposed, now ours.
    pub fn accept(self, rtc: &mut Rtc, answer: &str) -> Result<Mids, SdpError> {
        let answer =
            SdpAnswer::from_sdp_string(answer).map_err(|e| SdpError::Parse("answer", e))?;
        rtc.sdp_api()
            .accept_answer(self.pending, answer)
            .map_err(|e| SdpError::Apply("answer", e))?;
        Ok(self.proposed)
    }
}

/// An offer adding an audio and/or a video m-line; None when it would change nothing.
pub fn offer(
    rtc: &mut Rtc,
    audio: Option<Track>,
    video: Option<Track>,
) -> Option<(String, PendingOffer)> {
    let mut api = rtc.sdp_api();
    let mut add =
        |kind, t: Track| api.add_media(kind, t.dir, Some(t.stream), Some(t.track), t.simulcast);
    let proposed = Mids {
        audio: audio.map(|t| add(MediaKind::Audio, t)),
        video: video.map(|t| add(MediaKind::Video, t)),
    };
    let (offer, pending) = api.apply()?;
    Some((offer.to_sdp_string(), PendingOffer { pending, proposed }))
}

/// An ICE restart offer (keeping the local candidates), with the new credentials.
pub fn ice_restart(rtc: &mut Rtc) -> Option<(String, PendingOffer, IceCreds)> {
    let mut api = rtc.sdp_api();
    let creds = api.ice_restart(true);
    let (offer, pending) = api.apply()?;
    let pending = PendingOffer {
        pending,
        proposed: Mids::default(),
    };
    Some((offer.to_sdp_string(), pending, creds))
}

/// Accepts a remote offer; returns our answer.
pub fn answer(rtc: &mut Rtc, offer: &str) -> Result<String, SdpError> {
    let offer = SdpOffer::from_sdp_string(offer).map_err(|e| SdpError::Parse("offer", e))?;
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| SdpError::Apply("offer", e))?;
    Ok(answer.to_sdp_string())
}
