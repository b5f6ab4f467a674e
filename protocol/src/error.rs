use serde::{Deserialize, Serialize};

/// Stable error codes. They are part of the protocol: clients switch on them
/// (and translate them), so a variant is never renamed or reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not valid JSON, or not a JSON object with a `type`.
    BadJson,
    /// The `type` is not one this protocol version knows.
    UnknownMessage,
    /// A known `type` whose fields are missing or of the wrong kind.
    InvalidMessage,
    /// The frame is larger than [`crate::MAX_MESSAGE_BYTES`], or binary.
    MessageTooLarge,
    /// No protocol version in common (fatal).
    UnsupportedVersion,
    /// A message other than `hello` arrived before `hello`.
    HelloRequired,
    /// A second `hello`.
    AlreadyNegotiated,
    /// A room-scoped message arrived before a successful `join`.
    NotJoined,
    /// `join` on a session that already joined.
    AlreadyJoined,
    /// The token is not of tuxa's token format.
    TokenMalformed,
    /// The token was not minted by this server (or was altered).
    TokenInvalid,
    /// The token's expiry has passed.
    TokenExpired,
    /// The token is valid but for another room.
    TokenWrongRoom,
    /// An appointment link used before it opens (15 minutes before the
    /// appointment).
    TokenNotYetValid,
    /// The room does not exist.
    RoomNotFound,
    /// The room has been ended.
    RoomEnded,
    /// The room has as many participants as it may.
    RoomFull,
    /// An SDP the media server could not accept.
    SdpInvalid,
    /// The client sent an offer while the server's own offer was pending.
    /// The client is the polite side: roll back, answer, offer again.
    NegotiationGlare,
    /// An answer arrived while no server offer was pending.
    NoPendingOffer,
    /// Nothing was heard from the session for [`crate::IDLE_TIMEOUT_MS`].
    IdleTimeout,
    /// The same participant joined again from another session.
    Replaced,
    /// The media transport (ICE/DTLS) of this session failed and the SFU
    /// dropped it: the client rejoins with its link to get a new one.
    MediaFailed,
    /// The session sends faster than its budget (chat, or frames of any
    /// kind): the message was dropped. A session that goes on is closed.
    RateLimited,
    /// The participant's role may not do this (e.g. a patient admitting).
    Forbidden,
    /// `admit` or `refuse` named nobody who is waiting.
    NotWaiting,
    /// A host turned this participant away from the lobby.
    Refused,
    /// The chair removed this participant from the room; their link no
    /// longer enters it.
    Removed,
    /// The chair locked the room: nobody new may enter until it is unlocked.
    RoomLocked,
    /// A patient joined without consenting to remote examination.
    ConsentRequired,
    /// Staff sign-in: wrong username, password or code (never says which).
    LoginFailed,
    /// Staff sign-in: too many failures for this username; retry later.
    TooManyAttempts,
    /// A unique name or number is already taken.
    Conflict,
    /// A queue request was refused; the message says why (`unknown_queue`,
    /// `queue_closed`, `queue_full`, `unknown_ticket`, `no_such_offer`, …).
    QueueRefused,
    /// A doctor-only action from a session that is not a signed-in doctor
    /// on call for that queue.
    NotOnCall,
    /// HTTP API: missing or wrong admin key.
    Unauthorized,
    /// HTTP API: the request body or path was not acceptable.
    BadRequest,
    /// HTTP API: no such resource.
    NotFound,
    /// HTTP API: the request's declared body is larger than the route takes
    /// (`413`, answered before the body is read).
    PayloadTooLarge,
    // ---- issue 13 (recording control) ----
    /// `recording start` while a patient in the room has not consented to
    /// recording (or, in a visit, no patient who has is there).
    RecordingConsentMissing,
    /// `recording start` while the room is recording (or paused).
    AlreadyRecording,
    /// `recording stop` while the room is not recording.
    NotRecording,
    /// This server cannot record (no master key configured).
    RecordingUnavailable,
    // ---- end issue 13 (recording control) ----
    /// The server is shutting down.
    ServerShutdown,
    /// Something on the server side failed; the message says what.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownMessage => "unknown_message",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::HelloRequired => "hello_required",
            ErrorCode::AlreadyNegotiated => "already_negotiated",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::TokenMalformed => "token_malformed",
            ErrorCode::TokenInvalid => "token_invalid",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::TokenWrongRoom => "token_wrong_room",
            ErrorCode::TokenNotYetValid => "token_not_yet_valid",
            ErrorCode::RoomNotFound => "room_not_found",
            ErrorCode::RoomEnded => "room_ended",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::SdpInvalid => "sdp_invalid",
            ErrorCode::NegotiationGlare => "negotiation_glare",
            ErrorCode::NoPendingOffer => "no_pending_offer",
            ErrorCode::IdleTimeout => "idle_timeout",
            ErrorCode::Replaced => "replaced",
            ErrorCode::MediaFailed => "media_failed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotWaiting => "not_waiting",
            ErrorCode::Refused => "refused",
            ErrorCode::Removed => "removed",
            ErrorCode::RoomLocked => "room_locked",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::LoginFailed => "login_failed",
            ErrorCode::TooManyAttempts => "too_many_attempts",
            ErrorCode::Conflict => "conflict",
            ErrorCode::QueueRefused => "queue_refused",
            ErrorCode::NotOnCall => "not_on_call",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RecordingConsentMissing => "recording_consent_missing",
            ErrorCode::AlreadyRecording => "already_recording",
            ErrorCode::NotRecording => "not_recording",
            ErrorCode::RecordingUnavailable => "recording_unavailable",
            ErrorCode::ServerShutdown => "server_shutdown",
            ErrorCode::Internal => "internal",
        }
    }

    /// Whether the server closes the session after sending this error.
    /// Errors about one message leave the session open; errors about the
    /// session itself (no common version, the room is gone, idle) end it.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            ErrorCode::UnsupportedVersion
                | ErrorCode::RoomEnded
                | ErrorCode::IdleTimeout
                | ErrorCode::Replaced
                | ErrorCode::Refused
                | ErrorCode::Removed
                | ErrorCode::ServerShutdown
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a frame could not be turned into a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub detail: String,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        ProtocolError {
            code,
            detail: detail.into(),
        }
    }
}
