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
    // The WebSocket session the call, queue and console pages share.
    (
        "connection.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web-client/connection.js"),
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
    (
        "check.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web-client/check.js"),
    ),
    // The recordings' player (playback.rs).
    (
        "player.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web-client/player.js"),
    ),
    // A queue's printable poster (qr.rs).
    (
        "poster.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web-client/poster.js"),
    ),
];

const INDEX: &str = include_str!("../../web-client/index.html");
const LANDING: &str = include_str!("../../web-client/landing.html");
const QUEUE: &str = include_str!("../../web-client/queue.html");
const STAFF: &str = include_str!("../../web-client/staff.html");
const CHECK: &str = include_str!("../../web-client/check.html");
const PLAYER: &str = include_str!("../../web-client/player.html");

/// The pre-call check on its own: camera, microphone, speaker and the
/// connection to this server, before any visit (web-client/check.js).
pub async fn check_page() -> Response {
    no_store(page(CHECK))
}

/// A queue's public page: a patient gives name, phone, reason and consent,
/// and waits for an on-call doctor.
pub async fn queue_page(Path(_queue): Path<String>) -> Response {
    no_store(page(QUEUE))
}

/// The staff console: sign in, be available for one's queues, take patients.
pub async fn staff_page() -> Response {
    no_store(page(STAFF))
}

/// One consultation's recordings played together (web-client/player.js);
/// the page holds nothing, its data comes from the gated API.
pub async fn player_page() -> Response {
    no_store(page(PLAYER))
}

/// Every page's policy: scripts, styles and connections from this server
/// only, no inline script, no plugins, never framed. A page that an
/// injected string managed to put markup into still runs nothing and
/// sends nothing elsewhere (the join page holds a token in its fragment).
/// `'self'` covers the page's own `wss:` origin in Chromium and Firefox.
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; media-src 'self' blob: mediastream:; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn page(html: &'static str) -> Response {
    let mut res = Html(html).into_response();
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    res
}

fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

pub async fn landing() -> Response {
    page(LANDING)
}

/// The room id is not checked here: the page asks `/api/v1/join-check` and
/// explains a bad link in the user's language.
pub async fn join_page(Path(_room): Path<String>) -> Response {
    // Nothing cached, so an upgrade reaches every phone at once.
    no_store(page(INDEX))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every page carries the policy, and the pages keep to it: no inline
    /// script or style that the policy would block (a check that fails the
    /// day someone adds `<script>…</script>` to a page).
    #[tokio::test]
    async fn pages_carry_a_content_security_policy_they_keep_to() {
        let pages = [
            ("/", landing().await),
            ("/join", join_page(Path("k3x7q2m4a7b5c6d2".into())).await),
            ("/q", queue_page(Path("1".into())).await),
            ("/staff", staff_page().await),
            ("/check", check_page().await),
            ("/consultations/x/recordings", player_page().await),
        ];
        for (name, res) in pages {
            let csp = res.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap();
            assert!(csp.contains("script-src 'self';"), "{name}: {csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{name}: {csp}");
            assert!(!csp.contains("unsafe-inline"), "{name}: {csp}");
        }
        for html in [INDEX, LANDING, QUEUE, STAFF, CHECK, PLAYER] {
            for (at, _) in html.match_indices("<script") {
                let tag = &html[at..at + html[at..].find('>').unwrap()];
                assert!(tag.contains(" src="), "inline script: {tag}");
            }
            assert!(!html.contains("<style"), "inline <style> in a page");
            assert!(
                !html.contains(" style="),
                "inline style attribute in a page"
            );
            assert!(!html.contains(" onclick="), "inline handler in a page");
        }
    }
}
