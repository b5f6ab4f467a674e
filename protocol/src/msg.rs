use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    ConsultationKind, ErrorCode, MAX_MESSAGE_BYTES, MediaKind, ParticipantId, ProtocolError, Role,
    RoomId, TrackId, TrackSource,
};

/// What a client says. The first message of a session is always `hello`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    /// Opens the session: the protocol versions the client speaks.
    Hello {
        versions: Vec<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    /// Enters a room with the token from a join link.
    Join { room: RoomId, token: String },
    /// The patient's answers, one per purpose, to the consent text of
    /// version `text_version`. Required from patients before `join`; may be
    /// sent again later to change an answer (e.g. withdraw recording).
    Consent {
        text_version: String,
        remote_examination: bool,
        third_parties: bool,
        recording: bool,
    },
    /// An SDP offer: the first one publishes the client's camera and
    /// microphone; later ones change what it publishes.
    Offer { sdp: String },
    /// The answer to a server `offer`.
    Answer { sdp: String },
    /// The client muted or unmuted its microphone or camera.
    Mute { kind: MediaKind, muted: bool },
    /// Leaves the room; the server closes the session.
    Leave {},
    /// Keepalive; answered by `pong` with the same `seq`.
    Ping {
        #[serde(default)]
        seq: u64,
    },
    /// A host lets a waiting participant into the room.
    Admit { participant_id: ParticipantId },
    /// A host turns a waiting participant away.
    Refuse { participant_id: ParticipantId },
    /// A patient takes a place in an on-call queue (consent first).
    QueueJoin {
        queue: u64,
        name: String,
        phone: String,
        reason: String,
    },
    /// A patient whose link dropped takes their place back (within 2 min).
    QueueResume { ticket: String },
    /// A patient gives up their place.
    QueueCancel { ticket: String },
    /// A signed-in doctor on call is available for these queues (empty: not).
    Available { queues: Vec<u64> },
    /// A doctor accepts the patient offered to them.
    AcceptPatient { ticket: String },
    /// A doctor passes the offered patient to the next doctor.
    DeclinePatient { ticket: String },
    /// A doctor sends the patient of their call to another queue (at its
    /// head) or another doctor, without the patient queueing again.
    Transfer {
        ticket: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queue: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        doctor: Option<u64>,
    },
    /// A doctor finished their call and takes patients again.
    DoctorFree {},
    /// What each of the client's sending m-lines carries, by `mid`
    /// (`camera`, `microphone`, `screen`, `second_camera`). Sent before the
    /// offer that adds a screen or second camera; m-lines not named are
    /// `camera` (video) or `microphone` (audio).
    Sources {
        sources: BTreeMap<String, TrackSource>,
    },
    /// A message to everyone in the room (1–2000 characters).
    Chat { text: String },
    /// The chair asks a participant to mute their microphone or camera.
    MuteParticipant {
        participant_id: ParticipantId,
        kind: MediaKind,
    },
    /// The chair removes a participant; their link no longer enters.
    RemoveParticipant { participant_id: ParticipantId },
    /// The chair locks (or unlocks) the room: nobody new enters.
    LockRoom { locked: bool },
    /// The chair names the secretary (a doctor or nurse in the room), or
    /// nobody (`null`).
    SetSecretary {
        participant_id: Option<ParticipantId>,
    },
    /// The client's view of its own link, every few seconds while in the
    /// room (see [`LinkStats`]): forwarded to the room's moderators and kept,
    /// aggregated, with the consultation's record.
    Stats { stats: LinkStats },
    /// The participant chooses audio only (`on`) or video again: the server
    /// stops (or resumes) sending them video; the client stops (or resumes)
    /// sending its own.
    AudioOnly { on: bool },
    /// Ends the consultation for everyone (the lobby too): allowed to the
    /// doctor of a visit and to a conference's chair, or, with no chair in
    /// the room, to a doctor. Everyone gets `room_ended`; the record is
    /// closed with the end time.
    EndRoom {},
    // ---- issue 13 (recording control) ----
    /// Starts or stops recording the room: the chair of a conference (or,
    /// with no chair in the room, a doctor in it); in a visit its doctor.
    /// Starting needs every patient in the room to have consented to
    /// recording (in a visit, the patient must be there and have). The
    /// answer is a `recording` to everyone, or an error to the sender.
    Recording { action: RecordingAction },
    // ---- end issue 13 (recording control) ----
}

// ---- issue 13 (recording control) ----
/// What a client's `recording` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingAction {
    Start,
    Stop,
}

/// A room's recording, as everyone in it (and in its lobby) is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingState {
    /// Nothing is recorded.
    Off,
    /// Everything published in the room is being recorded.
    On,
    /// Started, but nothing is recorded for now (`reason` says why); it
    /// goes on by itself when the reason goes away.
    Paused,
}

/// Why recording is paused, or why it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingReason {
    /// Stopped by the chair or doctor (`by`).
    Stopped,
    /// A patient in the room withdrew their consent to recording: stopped,
    /// and not resumed until someone starts it again.
    ConsentWithdrawn,
    /// A patient who has not consented to recording is in the room: paused
    /// while they are.
    PatientWithoutConsent,
    /// The recorder failed (a full or slow disk, a missing key): stopped;
    /// the call goes on.
    Fault,
    /// The consultation ended.
    RoomEnded,
    /// The server stopped (its sessions are closed: nobody is told; the
    /// record is). It is not resumed after a restart: someone starts it.
    ServerShutdown,
}
// ---- end issue 13 (recording control) ----

/// Why a subscriber receives no video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioOnlyReason {
    /// The link to them cannot carry the lowest video layer with audio.
    WeakNetwork,
    /// They asked for it (`audio_only`).
    Requested,
}

/// What a client measures of its link (WebRTC `getStats()`), all optional
/// but `audio_only`: a browser does not always know every figure.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkStats {
    /// Round-trip time to the server (ICE candidate pair), milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<u32>,
    /// Packets lost of those expected on what the client receives, in per
    /// cent (0–100), since its previous `stats`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "finite_f32"
    )]
    pub loss_pct: Option<f32>,
    /// Receive jitter (the worst of its inbound streams), milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<u32>,
    /// Height of the largest video frame the client decodes, pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_height: Option<u32>,
    /// The client sends and receives no video (by choice or by fallback).
    pub audio_only: bool,
}

/// A number that fits an `f32`: JSON allows `3.5e38`, which would read as
/// infinity and write back as `null` (found by `tests/prop_decode.rs`).
fn finite_f32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f32>, D::Error> {
    match Option::<f64>::deserialize(d)? {
        None => Ok(None),
        Some(v) if (v as f32).is_finite() => Ok(Some(v as f32)),
        Some(_) => Err(serde::de::Error::custom("a number too large")),
    }
}

impl LinkStats {
    /// The largest values a client may report; anything above is a bug or a
    /// lie, refused with `invalid_message` so it never reaches the record.
    pub const MAX_RTT_MS: u32 = 60_000;
    pub const MAX_JITTER_MS: u32 = 60_000;
    pub const MAX_FRAME_HEIGHT: u32 = 4320;

    /// Checks the bounds; the error names the first field out of them.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.rtt_ms.is_some_and(|v| v > Self::MAX_RTT_MS) {
            return Err("rtt_ms must be at most 60000");
        }
        if self
            .loss_pct
            .is_some_and(|v| !v.is_finite() || !(0.0..=100.0).contains(&v))
        {
            return Err("loss_pct must be between 0 and 100");
        }
        if self.jitter_ms.is_some_and(|v| v > Self::MAX_JITTER_MS) {
            return Err("jitter_ms must be at most 60000");
        }
        if self
            .frame_height
            .is_some_and(|v| v > Self::MAX_FRAME_HEIGHT)
        {
            return Err("frame_height must be at most 4320");
        }
        Ok(())
    }

    /// A grade for people: `poor` when a call is hard to hold (audio
    /// breaks up), `fair` when video suffers, `good` otherwise. Thresholds
    /// follow ITU-T G.114 (one-way delay under 150 ms is good, over 400 ms
    /// unusable) and the usual Opus/VP8 tolerance to loss.
    pub fn grade(&self) -> LinkGrade {
        let rtt = self.rtt_ms.unwrap_or(0);
        let loss = self.loss_pct.unwrap_or(0.0);
        let jitter = self.jitter_ms.unwrap_or(0);
        if rtt > 800 || loss > 10.0 || jitter > 100 {
            LinkGrade::Poor
        } else if rtt > 300 || loss > 3.0 || jitter > 40 || self.audio_only {
            LinkGrade::Fair
        } else {
            LinkGrade::Good
        }
    }
}

/// How a participant's link looks to a moderator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkGrade {
    Good,
    Fair,
    Poor,
}

impl ClientMsg {
    /// Every `type` a client may send, for telling unknown types from
    /// malformed known ones.
    pub const TYPES: &'static [&'static str] = &[
        "hello",
        "join",
        "consent",
        "offer",
        "answer",
        "mute",
        "leave",
        "ping",
        "admit",
        "refuse",
        "queue_join",
        "queue_resume",
        "queue_cancel",
        "available",
        "accept_patient",
        "decline_patient",
        "transfer",
        "doctor_free",
        "sources",
        "chat",
        "mute_participant",
        "remove_participant",
        "lock_room",
        "set_secretary",
        "stats",
        "audio_only",
        "end_room",
        "recording",
    ];

    /// Whether this is an on-call queue message (patients' or doctors').
    pub fn is_queue(&self) -> bool {
        matches!(
            self,
            ClientMsg::QueueJoin { .. }
                | ClientMsg::QueueResume { .. }
                | ClientMsg::QueueCancel { .. }
                | ClientMsg::Available { .. }
                | ClientMsg::AcceptPatient { .. }
                | ClientMsg::DeclinePatient { .. }
                | ClientMsg::Transfer { .. }
                | ClientMsg::DoctorFree {}
        )
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMsg::Hello { .. } => "hello",
            ClientMsg::Join { .. } => "join",
            ClientMsg::Consent { .. } => "consent",
            ClientMsg::Offer { .. } => "offer",
            ClientMsg::Answer { .. } => "answer",
            ClientMsg::Mute { .. } => "mute",
            ClientMsg::Leave {} => "leave",
            ClientMsg::Ping { .. } => "ping",
            ClientMsg::Admit { .. } => "admit",
            ClientMsg::Refuse { .. } => "refuse",
            ClientMsg::QueueJoin { .. } => "queue_join",
            ClientMsg::QueueResume { .. } => "queue_resume",
            ClientMsg::QueueCancel { .. } => "queue_cancel",
            ClientMsg::Available { .. } => "available",
            ClientMsg::AcceptPatient { .. } => "accept_patient",
            ClientMsg::DeclinePatient { .. } => "decline_patient",
            ClientMsg::Transfer { .. } => "transfer",
            ClientMsg::DoctorFree {} => "doctor_free",
            ClientMsg::Sources { .. } => "sources",
            ClientMsg::Chat { .. } => "chat",
            ClientMsg::MuteParticipant { .. } => "mute_participant",
            ClientMsg::RemoveParticipant { .. } => "remove_participant",
            ClientMsg::LockRoom { .. } => "lock_room",
            ClientMsg::SetSecretary { .. } => "set_secretary",
            ClientMsg::Stats { .. } => "stats",
            ClientMsg::AudioOnly { .. } => "audio_only",
            ClientMsg::EndRoom {} => "end_room",
            ClientMsg::Recording { .. } => "recording",
        }
    }
}

/// A participant as others see them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    pub id: ParticipantId,
    pub name: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<String>,
    /// The practitioner's licence number (chứng chỉ hành nghề), for staff
    /// who joined from their console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence_number: Option<String>,
    pub audio_muted: bool,
    pub video_muted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub id: RoomId,
    pub kind: ConsultationKind,
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackInfo {
    pub id: TrackId,
    pub kind: MediaKind,
    /// Absent: the participant's camera or microphone.
    #[serde(default, skip_serializing_if = "TrackSource::is_default")]
    pub source: TrackSource,
}

/// How to reach the facility a consultation belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacilityContact {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// Where a patient in a queue stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    Queued,
    Offered,
    WaitingForDoctor,
}

/// Where a patient went when a doctor's offer was taken back for a reason
/// on the doctor's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferAfterwards {
    /// Back in the line, waiting for the next available doctor.
    Queued,
    /// Offered to another doctor at once.
    OfferedToAnother,
    /// The patient left meanwhile.
    Left,
}

/// Why a participant is no longer in the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    Left,
    Disconnected,
    Ended,
    /// The chair removed them.
    Removed,
}

impl LeaveReason {
    /// As on the wire, and as the record keeps it (`attendance.leave_reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Disconnected => "disconnected",
            LeaveReason::Ended => "ended",
            LeaveReason::Removed => "removed",
        }
    }
}

/// Why a consultation ended (`room_ended`, and the record's `end_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// A doctor or the chair ended it (in the room, from the console or
    /// through the API).
    Ended,
    /// No doctor or nurse was in the room for the configured time.
    Abandoned,
    /// The server restarted while people were in the room.
    ServerRestart,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Ended => "ended",
            EndReason::Abandoned => "abandoned",
            EndReason::ServerRestart => "server_restart",
        }
    }
}

/// What the server says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMsg {
    /// Reply to `hello`: the version chosen and the session's timers.
    Welcome {
        version: u32,
        server: String,
        keepalive_interval_ms: u64,
        idle_timeout_ms: u64,
    },
    /// Reply to `join`: the room, who you are, who is already there.
    Joined {
        room: RoomInfo,
        you: ParticipantInfo,
        participants: Vec<ParticipantInfo>,
        /// This session took back a place kept since its connection dropped
        /// (same participant id, role, chair and mute state). The client
        /// starts its media afresh, as at a first join.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        resumed: bool,
    },
    /// Reply to `join` for those who wait to be admitted (patients and
    /// guests): the room and who you are. `joined` follows on admission.
    Waiting {
        room: RoomInfo,
        you: ParticipantInfo,
    },
    /// To hosts: everyone waiting to be admitted, oldest first. Sent when a
    /// host joins and whenever the list changes.
    Lobby {
        waiting: Vec<ParticipantInfo>,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        participant_id: ParticipantId,
        reason: LeaveReason,
    },
    /// A participant's connection dropped; their place is kept for the
    /// reconnect grace window. `participant_reconnected` or
    /// `participant_left {reason: "disconnected"}` follows.
    ParticipantReconnecting {
        participant_id: ParticipantId,
    },
    /// A participant who was `reconnecting` is back (their tracks are
    /// published again as they offer them).
    ParticipantReconnected {
        participant_id: ParticipantId,
    },
    /// To the room's moderators: a participant's link, as their client
    /// measured it (see `stats`), with a grade.
    LinkQuality {
        participant_id: ParticipantId,
        stats: LinkStats,
        grade: LinkGrade,
    },
    /// Another participant's track is now being sent to you; it arrives with
    /// MediaStream id = `participant_id` and track id = `track.id`.
    TrackPublished {
        participant_id: ParticipantId,
        track: TrackInfo,
    },
    TrackUnpublished {
        participant_id: ParticipantId,
        track_id: TrackId,
    },
    MuteChanged {
        participant_id: ParticipantId,
        kind: MediaKind,
        muted: bool,
    },
    /// A renegotiation from the server (tracks added or removed).
    Offer {
        sdp: String,
    },
    /// The answer to a client `offer`.
    Answer {
        sdp: String,
    },
    Pong {
        seq: u64,
    },
    /// To a patient in a queue: where they stand. `state` is `queued` (with
    /// `position`, 1 = next, and `estimate_secs` when a doctor is on call),
    /// `offered` (a doctor is reading their card) or `waiting_for_doctor`
    /// (transferred to a named doctor).
    QueueStatus {
        ticket: String,
        queue: u64,
        state: QueueState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        position: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        estimate_secs: Option<u64>,
    },
    /// To a patient: this session no longer holds the ticket.
    QueueRemoved {
        ticket: String,
        reason: String,
    },
    /// To a doctor: a patient to accept or decline within `expires_in_secs`.
    PatientOffer {
        ticket: String,
        queue: u64,
        name: String,
        phone: String,
        reason: String,
        waited_secs: u64,
        expires_in_secs: u64,
        transferred: bool,
    },
    /// To a doctor: the offer is gone (`reason`: expired, patient_cancelled, …).
    PatientOfferWithdrawn {
        ticket: String,
        reason: String,
        /// For reasons on the doctor's side (`expired`,
        /// `doctor_unavailable`): where the patient went.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        patient: Option<OfferAfterwards>,
    },
    /// To a doctor: their availability as the server sees it.
    DoctorStatus {
        available: bool,
        queues: Vec<u64>,
        on_call: bool,
    },
    /// To both, after an accept: the link into the call.
    CallReady {
        ticket: String,
        url: String,
    },
    /// A chat message from `from` (server time `at`, Unix seconds). In a
    /// conference chat is kept with the record; in a visit it is not.
    Chat {
        from: ParticipantId,
        name: String,
        text: String,
        at: u64,
    },
    /// The chair asks you to mute (the client mutes and sends `mute`).
    MuteRequested {
        kind: MediaKind,
        by: ParticipantId,
    },
    /// Who chairs, who takes the minutes and whether the room is locked.
    /// Sent after `joined` and whenever one of them changes.
    RoomState {
        locked: bool,
        chair: Option<ParticipantId>,
        secretary: Option<ParticipantId>,
    },
    /// To a subscriber: the server stopped (`on`) or resumed sending them
    /// video, and why. Audio keeps flowing either way.
    AudioOnly {
        on: bool,
        reason: AudioOnlyReason,
    },
    /// To a publisher: of the simulcast layers of its m-line `mid`, only
    /// `active` (by rid) are received by anyone; the client pauses the
    /// others (`RTCRtpSender.setParameters`, `active: false`) and resumes
    /// them when they are listed again.
    PublishLayers {
        mid: String,
        active: Vec<String>,
    },
    // ---- issue 12 (console): counts before going available ----
    /// To staff on call for a queue (on hello and when they change): how
    /// many wait, as counts only (no patient data).
    QueueCounts {
        queue: u64,
        /// In the line (including patients whose link dropped, within
        /// their grace period).
        waiting: u32,
        /// Offered to a doctor right now.
        offered: u32,
        /// Doctors marked available for the queue and connected.
        doctors_available: u32,
    },
    // ---- end issue 12 (console) ----
    /// The consent answers were recorded (with the server's time).
    ConsentRecorded {
        text_version: String,
        at: u64,
    },
    /// The consultation is over, for everyone in the room and the lobby:
    /// the client shows its end screen (no retry). `by` is the name of who
    /// ended it, when a person did; `contact` how to reach the consultation's
    /// facility (its name and phone, as the directory has them). The session
    /// is closed after this message.
    RoomEnded {
        reason: EndReason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contact: Option<FacilityContact>,
    },
    // ---- issue 13 (recording control) ----
    /// Whether the room is being recorded, to everyone in the room and in
    /// its lobby: sent when it changes, and after `joined` or `waiting`
    /// while it is not `off`. `since`: Unix seconds the state began (absent
    /// for a room never recorded); `reason`: why it is paused or off; `by`:
    /// the name of who started it (`on`, `paused`) or stopped it (`off`,
    /// reason `stopped`).
    Recording {
        state: RecordingState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<RecordingReason>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    // ---- end issue 13 (recording control) ----
    /// Something went wrong. `in_reply_to` names the client message type it
    /// concerns, when there is one. Fatal codes are followed by a close.
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_reply_to: Option<String>,
    },
}

impl ServerMsg {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerMsg {
        ServerMsg::Error {
            code,
            message: message.into(),
            in_reply_to: None,
        }
    }

    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: no maps with non-string keys,
        // no custom serialisers that error.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"serialisation failed"}"#.to_owned()
        })
    }
}

/// Turns one WebSocket text frame into a message, telling apart the ways it
/// can be wrong (each has its own error code).
pub fn parse_client_msg(text: &str) -> Result<ClientMsg, ProtocolError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(ProtocolError::new(
            ErrorCode::MessageTooLarge,
            format!(
                "message of {} bytes; the limit is {MAX_MESSAGE_BYTES}",
                text.len()
            ),
        ));
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ProtocolError::new(ErrorCode::BadJson, format!("not JSON: {e}")))?;
    let Some(ty) = value
        .get("type")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
    else {
        return Err(ProtocolError::new(
            ErrorCode::BadJson,
            "expected a JSON object with a string \"type\"",
        ));
    };
    if !ClientMsg::TYPES.contains(&ty.as_str()) {
        let shown: String = ty.chars().take(40).collect();
        return Err(ProtocolError::new(
            ErrorCode::UnknownMessage,
            format!("unknown message type {shown:?}"),
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        ProtocolError::new(
            ErrorCode::InvalidMessage,
            format!("malformed {ty} message: {e}"),
        )
    })
}

/// The client-side twin of [`parse_client_msg`], used by Rust test clients.
pub fn parse_server_msg(text: &str) -> Result<ServerMsg, ProtocolError> {
    serde_json::from_str(text).map_err(|e| ProtocolError::new(ErrorCode::BadJson, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_bad_frame_has_its_code() {
        let cases: &[(&str, ErrorCode)] = &[
            ("not json", ErrorCode::BadJson),
            ("[1,2]", ErrorCode::BadJson),
            ("{\"type\":5}", ErrorCode::BadJson),
            ("{\"versions\":[1]}", ErrorCode::BadJson),
            ("{\"type\":\"launch_missiles\"}", ErrorCode::UnknownMessage),
            ("{\"type\":\"hello\"}", ErrorCode::InvalidMessage),
            (
                "{\"type\":\"hello\",\"versions\":\"1\"}",
                ErrorCode::InvalidMessage,
            ),
            (
                "{\"type\":\"join\",\"room\":\"x\",\"token\":\"t\"}",
                ErrorCode::InvalidMessage,
            ),
            (
                "{\"type\":\"mute\",\"kind\":\"smell\",\"muted\":true}",
                ErrorCode::InvalidMessage,
            ),
            (
                "{\"type\":\"leave\",\"extra\":1}",
                ErrorCode::InvalidMessage,
            ),
        ];
        for (text, code) in cases {
            let err = parse_client_msg(text).expect_err(text);
            assert_eq!(err.code, *code, "{text}: {err}");
        }
        let big = format!(
            "{{\"type\":\"offer\",\"sdp\":\"{}\"}}",
            "a".repeat(MAX_MESSAGE_BYTES)
        );
        assert_eq!(
            parse_client_msg(&big).unwrap_err().code,
            ErrorCode::MessageTooLarge
        );
    }

    #[test]
    fn error_codes_serialise_as_their_names() {
        for code in [
            ErrorCode::TokenExpired,
            ErrorCode::NegotiationGlare,
            ErrorCode::Internal,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
