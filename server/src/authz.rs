//! Authentication over HTTP: the admin key or a staff session into an
//! [`Actor`]. What an actor may do is the domain's (tuxa-records' `authz`);
//! the gate (gate.rs) calls [`authenticate`] for every route that is not
//! public.

use axum::http::{HeaderMap, header};
use tuxa_protocol::ErrorCode;

use crate::http::{ApiError, ApiResult, AppState, check_admin};

pub use tuxa_records::authz::*;

/// The admin key when an `Authorization` header is present (a wrong key is
/// refused, not retried as a session), else the session cookie.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<Actor> {
    if headers.contains_key(header::AUTHORIZATION) {
        check_admin(state, headers)?;
        return Ok(Actor::Admin);
    }
    match crate::auth::signed_in(state, headers).await {
        Ok(s) => Ok(Actor::Staff(Box::new(s.profile))),
        Err(_) => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "sign in, or send the admin key",
        )),
    }
}
