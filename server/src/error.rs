//! How refusals reach the caller: [`ApiError`] (a stable code and a message),
//! the one place codes become HTTP statuses, and the small text checks every
//! handler shares.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tuxa_protocol::ErrorCode;

/// An error response with a stable code. Every refusal reaches the caller
/// through this type: domain errors ([`tuxa_records::Error`]) convert into
/// it, and [`IntoResponse`] below is the one place codes become statuses.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    /// Seconds, sent as `Retry-After` (too many sign-in attempts).
    retry_after: Option<u64>,
}

impl From<tuxa_records::Error> for ApiError {
    fn from(e: tuxa_records::Error) -> ApiError {
        if let tuxa_records::Error::Internal(detail) = &e {
            tracing::error!("internal error: {detail}");
        }
        let retry_after = match e {
            tuxa_records::Error::TooManyAttempts { retry_after_secs } => Some(retry_after_secs),
            _ => None,
        };
        ApiError {
            code: e.code(),
            message: e.public_message(),
            retry_after,
        }
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!("internal error: {e}");
        ApiError::new(ErrorCode::Internal, "internal error; see the server log")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.code {
            ErrorCode::Unauthorized | ErrorCode::TokenInvalid | ErrorCode::TokenExpired => {
                StatusCode::UNAUTHORIZED
            }
            ErrorCode::TokenWrongRoom | ErrorCode::Forbidden | ErrorCode::TokenNotYetValid => {
                StatusCode::FORBIDDEN
            }
            ErrorCode::LoginFailed => StatusCode::UNAUTHORIZED,
            ErrorCode::TooManyAttempts | ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::NotFound | ErrorCode::RoomNotFound => StatusCode::NOT_FOUND,
            ErrorCode::RoomEnded => StatusCode::GONE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::ServerShutdown | ErrorCode::RecordingUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::BAD_REQUEST,
        };
        let body = json!({"error": {"code": self.code.as_str(), "message": self.message}});
        let mut res = (status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A required text field: trimmed, 1 to `max` characters.
pub fn required_text(field: &str, value: &str, max: usize) -> ApiResult<String> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("{field} must be 1 to {max} characters"),
        ));
    }
    Ok(v.to_owned())
}

/// An optional text field: trimmed, empty means absent, at most `max` characters.
pub fn optional_text(field: &str, value: Option<String>, max: usize) -> ApiResult<Option<String>> {
    match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if v.chars().count() > max => Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("{field} must be at most {max} characters"),
        )),
        Some(v) => Ok(Some(v.to_owned())),
    }
}

/// A JSON body, or `bad_request` saying what is wrong with it.
pub fn body<T>(r: Result<Json<T>, axum::extract::rejection::JsonRejection>) -> ApiResult<T> {
    r.map(|Json(v)| v)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))
}
