//! Authentication over HTTP: the admin key or a staff session into an
//! [`Actor`]. What an actor may do is the domain's (tuxa-records' `authz`);
//! the gate (gate.rs) calls [`authenticate`] for every route that is not
//! public.

use axum::http::{HeaderMap, header};
use tuxa_protocol::ErrorCode;

use crate::app::AppState;
use crate::audit::Action;
use crate::clock::unix_now;
use crate::error::{ApiError, ApiResult};
use tuxa_records::auth::SignedIn;

pub use tuxa_records::authz::*;

/// The admin key when an `Authorization` header is present (a wrong key is
/// refused, not retried as a session), else the session cookie.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<Actor> {
    if headers.contains_key(header::AUTHORIZATION) {
        check_admin(state, headers)?;
        return Ok(Actor::Admin);
    }
    match signed_in(state, headers).await {
        Ok(s) => Ok(Actor::Staff(Box::new(s.profile))),
        Err(_) => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "sign in, or send the admin key",
        )),
    }
}

pub(crate) fn check_admin(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "send the admin key as Authorization: Bearer <key>",
            )
        })?;
    let hash = crate::sha256(presented.trim().as_bytes());
    // Constant time: the comparison must not tell how much of a guess was right.
    if aws_lc_rs::constant_time::verify_slices_are_equal(&hash, &state.admin_key_hash[..]).is_err()
    {
        crate::app::audit(
            state,
            Action::AdminAuthFailed,
            None,
            "unknown",
            serde_json::json!({}),
        );
        return Err(ApiError::new(ErrorCode::Unauthorized, "wrong admin key"));
    }
    Ok(())
}

/// The session cookie's name (`__Host-`: set by this host over HTTPS only).
pub const SESSION_COOKIE: &str = "__Host-tuxa_session";

/// No valid staff session.
fn not_signed_in() -> ApiError {
    ApiError::from(tuxa_records::Error::Unauthorized("sign in first".into()))
}

/// The session token a request's cookie carries, if well-formed.
pub(crate) fn session_token(headers: &HeaderMap) -> Option<[u8; 32]> {
    let value = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.trim())?;
    let bytes = value.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// The staff member whose session cookie `headers` carry, or
/// `unauthorized` ("sign in first"). For every staff-only route; check
/// scope with `Profile::may_see_facility` (tuxa-records).
pub async fn signed_in(state: &AppState, headers: &HeaderMap) -> ApiResult<SignedIn> {
    let token = session_token(headers).ok_or_else(not_signed_in)?;
    let hash = crate::sha256(&token);
    let now = unix_now() as i64;
    state
        .store
        .call(move |c| tuxa_store::auth::live_session(c, &hash, now))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(not_signed_in)
}
