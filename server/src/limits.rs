//! What a request body may make the server do, decided from the request's
//! head before a byte of the body is read.
//!
//! [`bodies`] runs on every route, called by the gate (gate.rs) once it has
//! authenticated the caller of every route that is not `Access::Public` —
//! before the body is read, so a stranger's upload costs one header parse:
//! - a body must declare its length (`Content-Length`; HTTP/2 may end the
//!   stream instead): a chunked body of unknown size gets `411`;
//! - a declared length over the route's limit gets `413 payload_too_large`:
//!   [`MAX_ATTACHMENT_BYTES`] for a conference attachment, [`JSON_BODY_MAX`]
//!   for everything else (every other body is JSON).
//!
//! hyper holds a request to its declared length (a body cannot run past
//! it), so the check of the declared length bounds what any handler reads;
//! `DefaultBodyLimit` (set in `lib.rs`) bounds the extractors too.

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tuxa_protocol::ErrorCode;

use crate::error::ApiError;
use tuxa_records::conference::MAX_ATTACHMENT_BYTES;

/// The largest JSON body. The longest texts of the API are two fields of
/// 4,000 characters (a conference request); 64 KiB holds them even in the
/// worst UTF-8 or `\u` escaping, and every other body is much smaller.
pub const JSON_BODY_MAX: usize = 64 * 1024;

/// The attachment upload: the only body that is not JSON.
const UPLOAD_ROUTE: &str = "/api/v1/conferences/{id}/attachments";

/// A signed-in caller whose body is over the limit by less than this factor
/// has it read and thrown away before the answer, so that their browser sees
/// the `413` instead of a connection reset in the middle of its upload (a
/// staff member who picked too big a file). Strangers get no such courtesy.
const DRAIN_FACTOR: usize = 2;

/// The body limit of a route (its template, as the router matched it).
pub fn limit_for(route: Option<&str>) -> usize {
    match route {
        Some(UPLOAD_ROUTE) => MAX_ATTACHMENT_BYTES,
        _ => JSON_BODY_MAX,
    }
}

/// Called by the gate (gate.rs) once the caller of a route that is not
/// public has been authenticated: see the module's documentation.
pub async fn bodies(public: bool, route: Option<&str>, req: Request, next: Next) -> Response {
    // No Content-Length and no Transfer-Encoding (HTTP/1), or a HEADERS
    // frame that ended the stream (HTTP/2): an exact 0.
    let declared = req.body().size_hint().exact();
    if declared == Some(0) {
        return next.run(req).await;
    }
    let Some(declared) = declared else {
        return with_status(
            ApiError::new(
                ErrorCode::BadRequest,
                "send the body with a Content-Length (chunked bodies are not accepted)",
            ),
            StatusCode::LENGTH_REQUIRED,
        );
    };
    let limit = limit_for(route);
    if declared > limit as u64 {
        let refused = with_status(
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("this request's body is {declared} bytes; at most {limit} are accepted"),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        );
        if !public && declared <= (DRAIN_FACTOR * limit) as u64 {
            drain(req.into_body()).await;
        }
        return refused;
    }
    next.run(req).await
}

/// Reads a body to its end and drops it, chunk by chunk (nothing is kept).
async fn drain(body: Body) {
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        if chunk.is_err() {
            return;
        }
    }
}

fn with_status(e: ApiError, status: StatusCode) -> Response {
    let mut res = e.into_response();
    *res.status_mut() = status;
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_route() {
        assert_eq!(limit_for(Some(UPLOAD_ROUTE)), MAX_ATTACHMENT_BYTES);
        assert_eq!(limit_for(Some("/api/v1/consultations")), JSON_BODY_MAX);
        assert_eq!(limit_for(None), JSON_BODY_MAX);
    }
}
