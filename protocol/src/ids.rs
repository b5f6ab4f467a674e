use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// A room (one consultation or conference). 16 lowercase base32 characters
/// (80 random bits): unguessable enough that a room id in a URL reveals
/// nothing, short enough to read over the phone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RoomId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a room id is 16 characters of a-z and 2-7")]
pub struct RoomIdError;

impl RoomId {
    pub const LEN: usize = 16;
    const ALPHABET: &'static [u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

    /// Builds a room id from 10 random bytes (the caller owns randomness:
    /// this crate does no IO).
    pub fn from_random(bytes: [u8; 10]) -> RoomId {
        let mut bits: u128 = 0;
        for b in bytes {
            bits = (bits << 8) | u128::from(b);
        }
        let mut s = String::with_capacity(Self::LEN);
        for i in (0..Self::LEN).rev() {
            let idx = ((bits >> (i * 5)) & 31) as usize;
            s.push(Self::ALPHABET[idx] as char);
        }
        RoomId(s)
    }

    pub fn parse(s: &str) -> Result<RoomId, RoomIdError> {
        if s.len() == Self::LEN && s.bytes().all(|b| Self::ALPHABET.contains(&b)) {
            Ok(RoomId(s.to_owned()))
        } else {
            Err(RoomIdError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for RoomId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RoomId::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for RoomId {
    type Err = RoomIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RoomId::parse(s)
    }
}

/// A participant's presence in a room, unique for the server's lifetime.
/// A number on the wire (well inside JavaScript's safe integers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ParticipantId(pub u64);

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A published track, named `<participant>-<n>`. Subscribers see it as the
/// MediaStreamTrack id, and the participant id as the MediaStream id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TrackId(pub String);

impl TrackId {
    pub fn new(owner: ParticipantId, n: u32) -> TrackId {
        TrackId(format!("{owner}-{n}"))
    }
}

impl fmt::Display for TrackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a participant is in a room. The role comes from the join link's token,
/// never from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Patient,
    Doctor,
    Nurse,
    Guest,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Doctor => "doctor",
            Role::Nurse => "nurse",
            Role::Guest => "guest",
        }
    }

    /// Hosts admit others from the lobby; in a visit that is the doctor,
    /// in a conference the doctors (the chair comes with the conference work).
    pub fn is_host(self) -> bool {
        matches!(self, Role::Doctor)
    }

    /// Patients and guests wait in the lobby until a host admits them;
    /// staff enter directly.
    pub fn waits_in_lobby(self) -> bool {
        matches!(self, Role::Patient | Role::Guest)
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "patient" => Some(Role::Patient),
            "doctor" => Some(Role::Doctor),
            "nurse" => Some(Role::Nurse),
            "guest" => Some(Role::Guest),
            _ => None,
        }
    }
}

/// What a published video track shows. A participant publishes one camera
/// and one microphone, and may add a screen and a second camera (e.g. an
/// ultrasound capture card) — each forwarded as a track of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    #[default]
    Camera,
    Microphone,
    Screen,
    SecondCamera,
}

impl TrackSource {
    pub fn is_default(&self) -> bool {
        matches!(self, TrackSource::Camera | TrackSource::Microphone)
    }
}

/// A one-to-one visit (patient and doctor) or a multi-site case conference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsultationKind {
    Visit,
    Conference,
}

impl ConsultationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsultationKind::Visit => "visit",
            ConsultationKind::Conference => "conference",
        }
    }

    pub fn parse(s: &str) -> Option<ConsultationKind> {
        match s {
            "visit" => Some(ConsultationKind::Visit),
            "conference" => Some(ConsultationKind::Conference),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Audio,
    Video,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_id_round_trips_and_rejects_junk() {
        let id = RoomId::from_random([0xff; 10]);
        assert_eq!(id.as_str(), "7777777777777777");
        let id = RoomId::from_random([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(RoomId::parse(id.as_str()), Ok(id.clone()));
        assert!(RoomId::parse("short").is_err());
        assert!(RoomId::parse("ABCDEFGHIJKLMNOP").is_err());
        assert!(RoomId::parse("abcdefghijklmno1").is_err());
        assert!(serde_json::from_str::<RoomId>("\"../../etc/passwd\"").is_err());
    }
}
