//! The domain's one error type. Each variant carries the stable wire code it
//! maps to; the HTTP status is decided in one place, in `server`.

use tuxa_protocol::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is malformed or breaks a rule; the message says which.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// A unique name or number is already taken, or the state forbids it.
    #[error("{0}")]
    Conflict(String),
    /// No valid session or key.
    #[error("{0}")]
    Unauthorized(String),
    /// Signed in, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// Any wrong sign-in: the same answer whether the user exists, the
    /// password was wrong or the code was.
    #[error("wrong username, password or code")]
    LoginFailed,
    #[error("too many failed sign-ins; try again in {retry_after_secs} s")]
    TooManyAttempts { retry_after_secs: u64 },
    /// The consultation has ended.
    #[error("{0}")]
    Ended(String),
    /// Another stable code with its message (e.g. the token errors).
    #[error("{message}")]
    Coded { code: ErrorCode, message: String },
    /// A fault that is not the caller's: the store, a broken invariant.
    /// The detail goes to the log, never to the caller.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn bad_request(m: impl Into<String>) -> Error {
        Error::BadRequest(m.into())
    }
    pub fn not_found(m: impl Into<String>) -> Error {
        Error::NotFound(m.into())
    }
    pub fn conflict(m: impl Into<String>) -> Error {
        Error::Conflict(m.into())
    }
    pub fn forbidden(m: impl Into<String>) -> Error {
        Error::Forbidden(m.into())
    }
    pub fn internal(e: impl std::fmt::Display) -> Error {
        Error::Internal(e.to_string())
    }

    /// The stable code on the wire.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::BadRequest(_) => ErrorCode::BadRequest,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::Conflict(_) => ErrorCode::Conflict,
            Error::Unauthorized(_) => ErrorCode::Unauthorized,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::LoginFailed => ErrorCode::LoginFailed,
            Error::TooManyAttempts { .. } => ErrorCode::TooManyAttempts,
            Error::Ended(_) => ErrorCode::RoomEnded,
            Error::Coded { code, .. } => *code,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// What the caller is told (an internal error's detail stays in the log).
    pub fn public_message(&self) -> String {
        match self {
            Error::Internal(_) => "internal error; see the server log".into(),
            e => e.to_string(),
        }
    }
}

#[cfg(feature = "sqlite")]
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::Internal(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
