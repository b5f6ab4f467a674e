//! QR codes, drawn as SVG on the server (the `qrcode` crate): a queue's
//! public link and its printable poster for a commune station's wall, a
//! join link a staff member wants to show or share, and the `otpauth://`
//! URI of a new account's authenticator secret.
//!
//! - `GET /q/{queue}/qr.svg` and `GET /q/{queue}/poster`: anyone (they say
//!   no more than the queue's public page); an unknown queue is a `404`
//!   (the poster: a page saying so).
//! - `POST /api/v1/qr {url}`: staff only. A join link carries its secret in
//!   the URL fragment, so it is sent in a body, never in a URL the server
//!   or a proxy logs; the answer is `no-store` and nothing of it is logged.
//!
//! The routes are declared in `queues.rs` with the queues' own.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use qrcode::render::svg;
use qrcode::{EcLevel, QrCode, Version};
use serde::Deserialize;
use tuxa_protocol::ErrorCode;

use crate::app::AppState;
use crate::error::ApiError;
use tuxa_records::minutes::html_escape;

/// Pixels per module in the SVG's own size (it scales: posters set their
/// size in centimetres).
const MODULE_PX: u32 = 8;

/// The longest link `POST /api/v1/qr` draws. Join links are about 200
/// characters; a QR of 1,000 at level M is version 22 (105 modules), still
/// read by a phone's camera from a screen.
pub const MAX_LINK_CHARS: usize = 1000;

/// A drawn code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qr {
    /// 1 to 40: the size class the data needed.
    pub version: i16,
    /// Modules per side, without the quiet zone (`4 × version + 17`).
    pub modules: usize,
    /// A standalone SVG document (quiet zone of 4 modules included).
    pub svg: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too much data for a QR code")]
pub struct TooLong;

/// Draws `data` at error correction level M (15 %: a printed poster gets
/// dirty and creased; H would make long links dense).
pub fn render(data: &str) -> Result<Qr, TooLong> {
    let code =
        QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M).map_err(|_| TooLong)?;
    let version = match code.version() {
        Version::Normal(v) => v,
        // `with_error_correction_level` only makes normal (not micro) codes.
        Version::Micro(v) => v,
    };
    let svg = code
        .render::<svg::Color>()
        .quiet_zone(true)
        .module_dimensions(MODULE_PX, MODULE_PX)
        .dark_color(svg::Color("#000"))
        .light_color(svg::Color("#fff"))
        .build();
    Ok(Qr {
        version,
        modules: code.width(),
        svg,
    })
}

/// A queue's public link: what its page, its QR and its poster show.
fn queue_url(state: &AppState, id: i64) -> String {
    format!("{}/q/{id}", state.public_url.trim_end_matches('/'))
}

/// The queue named by a path segment, or `None` (not a number, or unknown).
async fn find_queue(state: &AppState, raw: &str) -> Result<Option<crate::queues::Queue>, ApiError> {
    let Ok(id) = raw.parse::<i64>() else {
        return Ok(None);
    };
    state
        .store
        .call(move |c| crate::queues::queue(c, tuxa_records::QueueId(id)))
        .await
        .map_err(|e| {
            tracing::error!("qr: reading queue: {e}");
            ApiError::new(ErrorCode::Internal, "internal error; see the server log")
        })
}

fn svg_response(svg: String, cache: &'static str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("image/svg+xml"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        svg,
    )
        .into_response()
}

/// The routes of QR codes and posters.
pub fn routes() -> crate::gate::Routes {
    use crate::gate::{Access, Routes};
    Routes::new()
        // QR codes and posters of queue links: public, as the queue page is.
        .get("/q/{queue}/qr.svg", Access::Public, queue_svg)
        .get("/q/{queue}/poster", Access::Public, queue_poster)
        .post("/api/v1/qr", Access::STAFF, link_svg)
}

pub(crate) async fn queue_svg(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let q = find_queue(&state, &raw)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such queue"))?;
    let qr = render(&queue_url(&state, q.id.0)).map_err(|_| {
        ApiError::new(
            ErrorCode::Internal,
            "the public URL is too long for a QR code",
        )
    })?;
    // Public and stable (the link does not change): a short cache is fine.
    Ok(svg_response(qr.svg, "public, max-age=300"))
}

const POSTER_TEMPLATE: &str = include_str!("poster.html");
const POSTER_MISSING: &str = include_str!("poster-missing.html");

/// Fills `{{name}}` placeholders with values already escaped for HTML.
fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 512);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = &after[..end];
                match values.iter().find(|(k, _)| *k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The poster page of a queue, as HTML (also used by the tests).
pub fn poster_html(q: &crate::queues::Queue, url: &str) -> String {
    fill(
        POSTER_TEMPLATE,
        &[
            ("id", q.id.to_string()),
            ("facility", html_escape(&q.facility_name)),
            ("queue", html_escape(&q.name)),
            ("specialty", html_escape(&q.specialty)),
            ("url", html_escape(url)),
            // The URL without its scheme: shorter to type from a wall.
            (
                "short_url",
                html_escape(
                    url.trim_start_matches("https://")
                        .trim_start_matches("http://"),
                ),
            ),
        ],
    )
}

fn page(status: StatusCode, html: String) -> Response {
    let mut res = (status, Html(html)).into_response();
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(crate::web::PAGE_CSP),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

pub(crate) async fn queue_poster(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    Ok(match find_queue(&state, &raw).await? {
        Some(q) => {
            let url = queue_url(&state, q.id.0);
            page(StatusCode::OK, poster_html(&q, &url))
        }
        None => page(StatusCode::NOT_FOUND, POSTER_MISSING.to_owned()),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkReq {
    url: String,
}

/// A link worth drawing: http(s), one line, not too long. (What it points
/// to is the caller's business: they are signed-in staff, and the answer
/// goes only to them.)
fn valid_link(url: &str) -> bool {
    let n = url.chars().count();
    (1..=MAX_LINK_CHARS).contains(&n)
        && (url.starts_with("https://") || url.starts_with("http://"))
        && !url.chars().any(|c| c.is_control() || c.is_whitespace())
}

pub(crate) async fn link_svg(
    // Any signed-in staff member or the admin key (the gate checked it).
    _actor: crate::authz::Actor,
    req: Result<Json<LinkReq>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = req.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    if !valid_link(&req.url) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("url: an http(s) link of 1 to {MAX_LINK_CHARS} characters, on one line"),
        ));
    }
    let qr = render(&req.url)
        .map_err(|_| ApiError::new(ErrorCode::BadRequest, "url: too long for a QR code"))?;
    // The link may hold a join token: never cached, never logged.
    Ok(svg_response(qr.svg, "no-store"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SVG's dark modules, read back from its path (`M{x} {y}h{w}v{h}…`
    /// in pixels), as a grid of `side × side` modules including the quiet
    /// zone. Checks that every rectangle sits on the module grid.
    fn modules_of(svg: &str, side: usize) -> Vec<Vec<bool>> {
        let px = MODULE_PX as usize;
        let start = svg.find("<path").expect("a path");
        let d0 = svg[start..].find(" d=\"").expect("a d attribute") + start + 4;
        let d1 = svg[d0..].find('"').expect("its end") + d0;
        let mut grid = vec![vec![false; side]; side];
        for rect in svg[d0..d1].split('M').filter(|s| !s.is_empty()) {
            // "x y" "h" w "v" h "H" x "V" y
            let (xy, rest) = rect.split_once('h').expect("h");
            let (x, y) = xy.split_once(' ').expect("x y");
            let (w, rest) = rest.split_once('v').expect("v");
            let (h, _) = rest.split_once('H').expect("H");
            let [x, y, w, h]: [usize; 4] = [x, y, w, h].map(|n| n.parse().expect("a number"));
            assert!(
                x % px == 0 && y % px == 0 && w % px == 0 && h % px == 0,
                "{rect}"
            );
            for row in grid.iter_mut().skip(y / px).take(h / px) {
                for cell in row.iter_mut().skip(x / px).take(w / px) {
                    *cell = true;
                }
            }
        }
        grid
    }

    /// A finder pattern (7 × 7: dark ring, light ring, dark 3 × 3) at
    /// module (x, y).
    fn finder_at(grid: &[Vec<bool>], x: usize, y: usize) -> bool {
        (0..7).all(|dy| {
            (0..7).all(|dx| {
                let ring = dx.min(dy).min(6 - dx).min(6 - dy);
                grid[y + dy][x + dx] == (ring != 1)
            })
        })
    }

    #[test]
    fn a_queue_link_is_a_small_well_formed_code() {
        let url = "https://tuxa.soyte.example.vn/q/12";
        assert_eq!(url.len(), 34);
        let qr = render(url).unwrap();
        // 34 bytes at level M: version 3 (up to 42 bytes), 29 modules.
        assert_eq!((qr.version, qr.modules), (3, 29));
        let side = qr.modules + 8;
        let px = side * MODULE_PX as usize;
        assert!(qr.svg.starts_with("<?xml"), "{}", &qr.svg[..60]);
        assert!(qr.svg.ends_with("</svg>"));
        assert_eq!(qr.svg.matches("<svg").count(), 1);
        assert!(qr.svg.contains(&format!(
            "width=\"{px}\" height=\"{px}\" viewBox=\"0 0 {px} {px}\""
        )));
        // Three finder patterns inside a 4-module light quiet zone, and
        // nothing dark in the zone.
        let grid = modules_of(&qr.svg, side);
        for (x, y) in [(4, 4), (4 + qr.modules - 7, 4), (4, 4 + qr.modules - 7)] {
            assert!(finder_at(&grid, x, y), "finder at {x},{y}");
        }
        assert!(!finder_at(&grid, 4 + qr.modules - 7, 4 + qr.modules - 7));
        let dark_in_zone = |x: usize, y: usize| {
            let edge = |v: usize| v < 4 || v >= side - 4;
            (edge(x) || edge(y)) && grid[y][x]
        };
        assert!(!(0..side).any(|y| (0..side).any(|x| dark_in_zone(x, y))));
        // Another link is another code of the same size.
        let other = render("https://tuxa.soyte.example.vn/q/13").unwrap();
        assert_eq!(other.modules, qr.modules);
        assert_ne!(modules_of(&other.svg, side), grid);
    }

    #[test]
    fn the_version_grows_with_the_link() {
        // Byte-mode capacities at level M: v1 14, v2 26, v5 84, v10 213.
        for (len, version) in [(14, 1), (15, 2), (26, 2), (84, 5), (85, 6), (213, 10)] {
            let url = format!("https://{}", "a".repeat(len - 8));
            let qr = render(&url).unwrap();
            assert_eq!(qr.version, version, "{len} bytes");
            assert_eq!(qr.modules, 4 * version as usize + 17);
        }
        // A join link with its token (about 200 characters) stays readable.
        let join = format!(
            "https://192.168.1.10:8443/join/abcdefghijklmnop#v1.{}",
            "A".repeat(150)
        );
        assert!(render(&join).unwrap().version <= 10);
        // Past version 40's capacity (2,331 bytes at M): an error, no panic.
        assert_eq!(render(&"a".repeat(2332)), Err(TooLong));
        assert!(render(&"a".repeat(2331)).is_ok());
    }

    #[test]
    fn links_are_checked_before_drawing() {
        assert!(valid_link("https://x.vn/join/abc#v1.tok"));
        assert!(valid_link("http://127.0.0.1:8080/q/1"));
        for bad in [
            "",
            "javascript:alert(1)",
            "otpauth://totp/x",
            "https://x.vn/a b",
            "https://x.vn/\n",
        ] {
            assert!(!valid_link(bad), "{bad:?}");
        }
        assert!(!valid_link(&format!(
            "https://{}",
            "a".repeat(MAX_LINK_CHARS)
        )));
    }

    /// Through the real router, over a real SQLite file.
    #[tokio::test]
    async fn queue_codes_posters_and_join_link_codes_through_the_router() {
        use axum::body::Body;
        use axum::http::Request;
        use tower::ServiceExt;

        const KEY: &str = "qr-test-admin-key-0123456789";
        let dir = std::env::temp_dir().join(format!(
            "tuxa-qr-{}-{}",
            std::process::id(),
            crate::hex(&crate::random_bytes::<6>())
        ));
        let (state, _hub, _shutdown) = crate::app::test_state(&dir, KEY);
        let q = state
            .store
            .call(|c| {
                // A root facility: the directory's tier rule is not what this tests.
                let facility = crate::directory::insert_facility(
                    c,
                    &crate::directory::NewFacility {
                        name: "Trạm Y tế xã Tân Lập".into(),
                        tier: crate::directory::Tier::Province,
                        parent: None,
                    },
                    0,
                )
                .expect("a facility");
                crate::queues::create_queue(c, facility.id, "Nội khoa", None)
            })
            .await
            .unwrap()
            .unwrap();
        let app = crate::http::router(state.clone());
        let send = |req: Request<Body>| {
            let app = app.clone();
            async move {
                let res = app.oneshot(req).await.unwrap();
                let status = res.status();
                let headers = res.headers().clone();
                let body = axum::body::to_bytes(res.into_body(), 1 << 20)
                    .await
                    .unwrap();
                (status, headers, String::from_utf8(body.to_vec()).unwrap())
            }
        };
        let get = |uri: String| Request::get(uri).body(Body::empty()).unwrap();

        // The queue's code is its public link's.
        let (status, headers, svg) = send(get(format!("/q/{}/qr.svg", q.id))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "image/svg+xml");
        assert_eq!(
            svg,
            render(&format!("https://127.0.0.1:8443/q/{}", q.id))
                .unwrap()
                .svg
        );
        // The poster names the facility and the queue, in a page under the CSP.
        let (status, headers, html) = send(get(format!("/q/{}/poster", q.id))).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        assert!(
            html.contains("Trạm Y tế xã Tân Lập")
                && html.contains("Nội khoa — Trạm Y tế xã Tân Lập")
        );
        assert!(html.contains(&format!("127.0.0.1:8443/q/{}<", q.id)));
        // Unknown queues, and ids that are not numbers: 404, clearly.
        for bad in ["999", "abc", "-1", "99999999999999999999"] {
            let (status, _, body) = send(get(format!("/q/{bad}/qr.svg"))).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
            assert!(body.contains("\"not_found\""), "{body}");
            let (status, _, body) = send(get(format!("/q/{bad}/poster"))).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
            assert!(body.contains("Không tìm thấy hàng chờ này"));
        }

        // A join link's code: staff only, in a body, never cached.
        let post = |auth: bool, body: String| {
            let mut r = Request::post("/api/v1/qr")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, body.len());
            if auth {
                r = r.header(header::AUTHORIZATION, format!("Bearer {KEY}"));
            }
            r.body(Body::from(body)).unwrap()
        };
        let link = "https://127.0.0.1:8443/join/abcdefghijklmnop#v1.c2VjcmV0";
        let body = serde_json::json!({ "url": link }).to_string();
        let (status, _, _) = send(post(false, body.clone())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, headers, svg) = send(post(true, body)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(svg, render(link).unwrap().svg);
        for bad in [
            serde_json::json!({ "url": "javascript:alert(1)" }),
            serde_json::json!({ "url": "https://x.vn/".to_owned() + &"a".repeat(MAX_LINK_CHARS) }),
            serde_json::json!({ "link": link }),
        ] {
            let (status, _, body) = send(post(true, bad.to_string())).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_poster_escapes_names_and_fills_every_field() {
        let q = crate::queues::Queue {
            id: tuxa_records::QueueId(7),
            facility_id: crate::directory::FacilityId(1),
            facility_name: "Trạm Y tế xã <Tân Lập>".into(),
            specialty: "Nội khoa".into(),
            name: "Nội khoa — \"Trạm\" & BVĐK".into(),
        };
        let html = poster_html(&q, "https://tuxa.example.vn/q/7");
        assert!(html.contains("Trạm Y tế xã &lt;Tân Lập&gt;"));
        assert!(html.contains("Nội khoa — &quot;Trạm&quot; &amp; BVĐK"));
        assert!(html.contains("src=\"/q/7/qr.svg\""));
        assert!(html.contains(">tuxa.example.vn/q/7<"));
        assert!(!html.contains("{{"), "every placeholder filled");
        assert!(!html.contains("<Tân"));
    }
}
