//! The browser client, embedded in the binary: one file to deploy, and the
//! page a patient loads always matches the server it talks to.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// (name, content type, body) of every file under `/static/`.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web-client/app.js"),
    ),
    (
        "protocol.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web-client/protocol.js"),
    ),
    (
        "i18n.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web-client/i18n.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../web-client/style.css"),
    ),
    (
        "session.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web-client/session.js"),
    ),
    (
        "queue.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web-client/queue.js"),
    ),
    (
        "staff.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web-client/staff.js"),
    ),
    (
        "console-util.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web-client/console-util.js"),
    ),
    (
        "console-conf.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web-client/console-conf.js"),
    ),
    (
        "console-coord.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web-client/console-coord.js"),
    ),
];

const INDEX: &str = include_str!("../../web-client/index.html");
const LANDING: &str = include_str!("../../web-client/landing.html");
const QUEUE: &str = include_str!("../../web-client/queue.html");
const STAFF: &str = include_str!("../../web-client/staff.html");

/// A queue's public page: a patient gives name, phone, reason and consent,
/// and waits for an on-call doctor.
pub async fn queue_page(Path(_queue): Path<String>) -> Response {
    no_store(Html(QUEUE).into_response())
}

/// The staff console: sign in, be available for one's queues, take patients.
pub async fn staff_page() -> Response {
    no_store(Html(STAFF).into_response())
}

fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

pub async fn landing() -> Html<&'static str> {
    Html(LANDING)
}

/// The room id is not checked here: the page asks `/api/v1/join-check` and
/// explains a bad link in the user's language.
pub async fn join_page(Path(_room): Path<String>) -> Response {
    let mut res = Html(INDEX).into_response();
    // Camera and microphone for this origin only; nothing cached, so an
    // upgrade reaches every phone at once.
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, ctype, body)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
