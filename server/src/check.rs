//! The pre-call check's server side (`/check`, web-client/check.js): an
//! anonymous call that opens a check room in the hub and hands back its one
//! link, so that a browser can learn whether its media reaches the SFU.
//!
//! Anyone may ask (a patient tries their phone before the visit), so the
//! asking is bounded twice: per client address by governor
//! ([`ADDRESS_BURST`], then one every [`ADDRESS_REFILL_SECS`]), and
//! server-wide by the hub ([`tuxa_signaling::MAX_CHECK_ROOMS`] at once, each
//! closed within 30 s). Nothing is stored: no consultation, no audit row, no
//! attendance (the hub drops a check room's records).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use tokio::sync::oneshot;
use tuxa_protocol::ErrorCode;
use tuxa_signaling::CheckError;

use crate::app::AppState;
use crate::error::ApiError;
use crate::gate::{Access, Routes};
use crate::hub_task::HubMsg;

/// Checks an address may start at once: a page runs one (two when it also
/// tries TCP alone), and a person may press "again" a few times.
pub const ADDRESS_BURST: u32 = 6;
/// Then one more every this many seconds.
pub const ADDRESS_REFILL_SECS: u64 = 10;
/// Addresses remembered before the full buckets are forgotten.
const LIMITER_MAX_KEYS: usize = 10_000;

type AddressLimiter = governor::DefaultKeyedRateLimiter<IpAddr>;

pub struct CheckLimits {
    per_address: AddressLimiter,
}

impl CheckLimits {
    pub fn new() -> CheckLimits {
        let quota = governor::Quota::with_period(Duration::from_secs(ADDRESS_REFILL_SECS))
            .expect("a non-zero period")
            .allow_burst(NonZeroU32::new(ADDRESS_BURST).expect("a non-zero burst"));
        CheckLimits {
            per_address: governor::RateLimiter::keyed(quota),
        }
    }

    /// `Err(seconds to wait)` when `addr` is over its budget.
    fn take(&self, addr: IpAddr) -> Result<(), u64> {
        if self.per_address.len() >= LIMITER_MAX_KEYS {
            self.per_address.retain_recent();
            self.per_address.shrink_to_fit();
        }
        self.per_address
            .check_key(&crate::auth::address_key(addr))
            .map_err(|not_until| {
                let wait =
                    not_until.wait_time_from(governor::clock::Clock::now(self.per_address.clock()));
                wait.as_secs_f64().ceil().max(1.0) as u64
            })
    }
}

impl Default for CheckLimits {
    fn default() -> Self {
        CheckLimits::new()
    }
}

pub fn routes() -> Routes {
    routes_with(Arc::new(CheckLimits::new()))
}

fn routes_with(limits: Arc<CheckLimits>) -> Routes {
    Routes::new()
        // Anyone with the check page; rate-limited per address and overall.
        .post("/api/v1/check", Access::Public, open_check)
        .layer(Extension(limits))
}

/// `POST /api/v1/check` (no body): a check room and its link, for 30 s.
async fn open_check(
    State(state): State<AppState>,
    Extension(limits): Extension<Arc<CheckLimits>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    if !body.is_empty() {
        return ApiError::new(ErrorCode::BadRequest, "this call takes no body").into_response();
    }
    // The accept loop puts the TCP peer in every request; an in-process
    // router without it (unit tests) counts as one unknown address.
    let addr = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.0.ip());
    if let Err(wait) = limits.take(addr) {
        return refused(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many connection checks from this address; try again in {wait} s"),
            wait,
        );
    }
    let (reply, answer) = oneshot::channel();
    if state.hub.send(HubMsg::OpenCheck(reply)).await.is_err() {
        return ApiError::new(ErrorCode::ServerShutdown, "the server is stopping").into_response();
    }
    match answer.await {
        Ok(Ok(ticket)) => Json(json!({
            "room": ticket.room,
            "token": ticket.token,
            "expires_in_secs": ticket.expires_in.as_secs(),
        }))
        .into_response(),
        Ok(Err(e @ CheckError::Busy)) => refused(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), 5),
        Ok(Err(e @ CheckError::IdTaken)) => {
            ApiError::new(ErrorCode::Internal, e.to_string()).into_response()
        }
        Err(_) => {
            ApiError::new(ErrorCode::ServerShutdown, "the server is stopping").into_response()
        }
    }
}

fn refused(status: StatusCode, message: String, retry_after: u64) -> Response {
    let mut res = ApiError::new(ErrorCode::RateLimited, message).into_response();
    *res.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    /// The hub's side, answered by a real hub in the test's own task.
    fn serve_hub(mut rx: tokio::sync::mpsc::Receiver<HubMsg>) {
        tokio::spawn(async move {
            let mut hub = tuxa_signaling::Hub::new(
                tuxa_signaling::HubConfig::default(),
                Arc::new(tuxa_signaling::TokenKey::new(&[7u8; 32])),
            );
            while let Some(msg) = rx.recv().await {
                if let HubMsg::OpenCheck(reply) = msg {
                    let _ = reply.send(hub.open_check_room(
                        std::time::Instant::now(),
                        crate::clock::unix_now(),
                        crate::random_bytes(),
                        crate::random_bytes(),
                    ));
                }
            }
        });
    }

    async fn post(app: &axum::Router, body: &'static str) -> (StatusCode, serde_json::Value) {
        let res = app
            .clone()
            .oneshot(
                Request::post("/api/v1/check")
                    .header(header::CONTENT_LENGTH, body.len())
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test]
    async fn a_check_link_then_refused_over_the_address_budget() {
        let dir = std::env::temp_dir().join(format!("tuxa-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (state, hub_rx, _shutdown) = crate::app::test_state(&dir, "k");
        serve_hub(hub_rx);
        let app = routes().with_state(state);

        let (status, body) = post(&app, "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["room"].as_str().map(str::len), Some(16), "{body}");
        assert!(body["token"].as_str().unwrap().starts_with("v1."), "{body}");
        assert_eq!(body["expires_in_secs"], 30);

        // Bad input: a clear error, and it costs the address nothing extra
        // beyond its turn.
        let (status, body) = post(&app, "{\"transport\":\"udp\"}").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "bad_request");

        for _ in 1..ADDRESS_BURST {
            let (status, body) = post(&app, "").await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let (status, body) = post(&app, "").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(body["error"]["code"], "rate_limited");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
