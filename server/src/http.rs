//! The router (every route with its access, see gate.rs), and the handlers
//! of consultations, links, the join check and the WebSocket upgrade.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tuxa_protocol::{ConsultationKind, ErrorCode, MAX_MESSAGE_BYTES, Role, RoomId, RoomInfo};
use tuxa_signaling::{Claims, Input, SessionId};

use crate::app::{AppState, Link, LinkSpec, audit, load, load_for, load_visible, may_see};
use crate::audit::Action;
use crate::authz::{self, Actor, Permission};
use crate::clock::unix_now;
use crate::error::{ApiError, ApiResult, body, optional_text, required_text};
use crate::gate::{Access, Routes};
use crate::hub_task::HubMsg;
use crate::store::{self, ConsultationRow};
use crate::web;
use tuxa_records::UnixTime;

/// Every route, each with the access it requires (gate.rs).
pub fn routes() -> Routes {
    Routes::new()
        .get("/", Access::Public, web::landing)
        .get("/join/{room}", Access::Public, web::join_page)
        .get("/q/{queue}", Access::Public, web::queue_page)
        .get("/staff", Access::Public, web::staff_page)
        .get("/check", Access::Public, web::check_page)
        .get("/static/{file}", Access::Public, web::asset)
        .get("/healthz", Access::Public, || async { "ok" })
        // Liveness and readiness, version and build (health.rs).
        .get("/livez", Access::Public, |State(s): State<AppState>| async move {
            crate::health::live_answer(s.hub.is_closed())
        })
        .get("/readyz", Access::Public, |State(s): State<AppState>| async move {
            let stopping = *s.shutdown.borrow();
            crate::health::ready_answer(&s.health.borrow(), stopping)
        })
        // The token comes in the first frame (ws.rs); a staff cookie, when
        // there is one, is read by the handler.
        .get("/ws", Access::Public, ws_upgrade)
        // The token is in the body.
        .post("/api/v1/join-check", Access::Public, join_check)
        .post("/api/v1/consultations", Access::STAFF, create_consultation)
        .get("/api/v1/consultations", Access::STAFF, list_consultations)
        .get(
            "/api/v1/consultations/{id}",
            Access::STAFF,
            get_consultation,
        )
        .post("/api/v1/consultations/{id}/links", Access::STAFF, mint_link)
        .post(
            "/api/v1/consultations/{id}/end",
            Access::STAFF,
            end_consultation,
        )
        // Record exports (export.rs).
        .merge(crate::export::routes())
        .merge(crate::playback::routes())
        // Staff sign-in and the directory (auth.rs, directory.rs).
        .merge(crate::directory::routes())
        // On-call queues and rosters (queues.rs).
        .merge(crate::queues::routes())
        // Appointments (appointments.rs).
        .merge(crate::appointments::routes())
        // The activity report (reports.rs).
        .merge(crate::reports::routes())
        .merge(crate::conferences::routes())
        // The pre-call check's room and link (check.rs).
        .merge(crate::check::routes())
        // QR codes and posters of queue links, QR codes of join links (qr.rs).
        .merge(crate::qr::routes())
}

/// Every route the server has, with its access: what the tests and
/// docs/api.md check against.
pub fn route_table() -> Vec<crate::gate::RouteRule> {
    routes().table().to_vec()
}

pub fn router(state: AppState) -> axum::Router {
    let router = routes()
        // The gate: access, then body limits, before the body is read.
        .into_router(&state)
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such page") })
        .with_state(state);
    security_headers(router)
}

/// The headers every answer carries.
fn security_headers(router: axum::Router) -> axum::Router {
    use tower_http::set_header::SetResponseHeaderLayer as Set;
    router
        .layer(Set::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ))
        .layer(Set::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // The token sits in the URL fragment; never let it leak in a Referer.
        .layer(Set::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(Set::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
}

fn parse_room(id: &str) -> ApiResult<RoomId> {
    RoomId::parse(id).map_err(|_| ApiError::new(ErrorCode::NotFound, "no such consultation"))
}

async fn ws_upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    ws: WebSocketUpgrade,
) -> Response {
    const WS_READ_BUFFER: usize = 4096;
    // A page of another site must not open a session in the visitor's name
    // (the staff cookie rides along with any WebSocket to this host). No
    // Origin at all is a non-browser client (tests, the load generator),
    // which carries no one else's cookie.
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let ok = origin
            .to_str()
            .is_ok_and(|o| crate::ws::origin_allowed(o, &state.public_url, host));
        if !ok {
            // 403, before any upgrade.
            return ApiError::new(
                ErrorCode::Forbidden,
                "WebSockets are opened only from this server's own pages",
            )
            .into_response();
        }
    }
    // The accept loop puts the TCP peer in every request; an in-process
    // router without it (unit tests) counts as one unknown address.
    let addr = peer.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.0.0.ip());
    let sid = SessionId(state.next_session.fetch_add(1, Ordering::Relaxed));
    let hub = state.hub.clone();
    let shutdown = state.shutdown.clone();
    let staff = staff_info(&state, &headers).await;
    // Frames up to 1 MiB are read so that the protocol can answer
    // `message_too_large` for anything over its own 64 KiB limit; beyond
    // 1 MiB the WebSocket layer closes the connection.
    // A small read buffer: the WebSocket layer zeroes its whole spare read
    // space before every read, including the reads that find nothing (each
    // wake-up of the session task, e.g. to send a frame). At the 128 KiB
    // default that was 6 % of the server's CPU while 200 participants
    // joined one room (each join is news to every session; perf, S3); a
    // large frame still gets room for all of it once its header is in.
    ws.max_message_size(16 * MAX_MESSAGE_BYTES)
        .max_frame_size(16 * MAX_MESSAGE_BYTES)
        .read_buffer_size(WS_READ_BUFFER)
        .on_upgrade(move |socket| crate::ws::session(socket, sid, addr, hub, shutdown, staff))
}

/// A WebSocket opened with a staff sign-in cookie: who it is, and which
/// queues they are on call for now (read again every 30 s by `roster_task`).
async fn staff_info(state: &AppState, headers: &HeaderMap) -> Option<tuxa_signaling::StaffInfo> {
    let me = crate::authz::signed_in(state, headers).await.ok()?;
    let staff_id = me.profile.staff.id;
    let now = unix_now() as i64;
    let on_call = state
        .store
        .call(move |c| {
            let mut ids = Vec::new();
            for q in crate::queues::queues(c)? {
                if crate::queues::on_call(c, q.id, staff_id, now)? {
                    ids.push(q.id);
                }
            }
            Ok(ids)
        })
        .await
        .ok()?;
    Some(tuxa_signaling::StaffInfo {
        staff: tuxa_signaling::queue::StaffRef {
            id: staff_id,
            name: me.profile.staff.name.clone(),
            facility: me.profile.staff.facility_id,
        },
        is_doctor: me.profile.staff.role == crate::directory::StaffRole::Doctor,
        on_call,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinCheck {
    room: String,
    token: String,
}

async fn join_check(
    State(state): State<AppState>,
    req: Result<Json<JoinCheck>, JsonRejection>,
) -> Response {
    let room = req.as_ref().ok().map(|Json(r)| r.room.clone());
    match join_check_inner(&state, req).await {
        Ok(v) => v.into_response(),
        // An ended consultation's link leads to its end screen: why it
        // ended and whom to call, as `room_ended` says in the room.
        Err(e) if e.code == ErrorCode::RoomEnded => {
            let ended = match room {
                Some(room) => state
                    .store
                    .call(move |c| {
                        let Some(row) = crate::store::consultation(c, &room)? else {
                            return Ok(None);
                        };
                        let contact = crate::store::facility_contact(c, row.facility_id)?;
                        Ok(Some(json!({"reason": row.end_reason, "contact": contact})))
                    })
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            match ended {
                Some(ended) => (
                    StatusCode::GONE,
                    Json(json!({
                        "error": {"code": e.code.as_str(), "message": e.message},
                        "ended": ended,
                    })),
                )
                    .into_response(),
                None => e.into_response(),
            }
        }
        Err(e) => e.into_response(),
    }
}

async fn join_check_inner(
    state: &AppState,
    req: Result<Json<JoinCheck>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let state = state.clone();
    let req = body(req)?;
    let room = RoomId::parse(&req.room)
        .map_err(|_| ApiError::new(ErrorCode::RoomNotFound, "no such consultation"))?;
    let (tx, rx) = oneshot::channel();
    state
        .hub
        .send(HubMsg::CheckToken {
            room,
            token: req.token.clone(),
            reply: tx,
        })
        .await
        .map_err(ApiError::internal)?;
    let (claims, room, rec): (Claims, RoomInfo, _) = match rx.await.map_err(ApiError::internal)? {
        Ok(ok) => ok,
        Err((code, msg)) => {
            if code != ErrorCode::TokenMalformed {
                audit(
                    &state,
                    Action::LinkRefused,
                    Some(&req.room),
                    "unknown",
                    json!({"code": code, "via": "join-check"}),
                );
            }
            return Err(ApiError::new(code, msg));
        }
    };
    // TURN credentials go only to holders of a valid link: a TURN relay is
    // bandwidth anyone could otherwise borrow.
    let ice_servers: Vec<crate::turn::IceServer> = state
        .turn
        .as_deref()
        .map(|t| {
            let label = crate::hex(&crate::sha256(req.token.as_bytes())[..4]);
            vec![crate::turn::credentials(
                t,
                crate::hub_task::unix_now(),
                &label,
            )]
        })
        .unwrap_or_default();
    Ok(Json(json!({
        "room": room,
        "role": claims.role,
        "name": claims.name,
        "facility": claims.facility,
        "expires_at": claims.expires_at,
        "not_before": claims.not_before,
        "ice_servers": ice_servers,
        // Issue 13: the preview tells whoever enters that it is recorded.
        "recording": {"state": rec.state, "since": rec.since, "reason": rec.reason, "by": rec.by},
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewConsultation {
    kind: String,
    title: String,
}

async fn create_consultation(
    State(state): State<AppState>,
    actor: Actor,
    req: Result<Json<NewConsultation>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    actor.require(authz::CARE, "create consultations")?;
    let req = body(req)?;
    let kind = ConsultationKind::parse(&req.kind).ok_or_else(|| {
        ApiError::new(
            ErrorCode::BadRequest,
            "kind must be \"visit\" or \"conference\"",
        )
    })?;
    let title = required_text("title", &req.title, 200)?;
    let row = state
        .create_consultation(kind, title, actor.facility(), &actor.audit_name())
        .await?;
    Ok((StatusCode::CREATED, Json(consultation_json(&row, None))))
}

fn consultation_json(
    row: &ConsultationRow,
    participants: Option<Vec<tuxa_protocol::ParticipantInfo>>,
) -> Value {
    let mut v = json!({
        "id": row.id,
        "kind": row.kind,
        "title": row.title,
        "status": row.status,
        "created_at": row.created_at,
        "facility_id": row.facility_id,
    });
    if let Some(t) = row.ended_at {
        v["ended_at"] = json!(t);
    }
    if let Some(r) = &row.end_reason {
        v["end_reason"] = json!(r);
    }
    if let Some(p) = participants {
        v["participants"] = json!(p);
    }
    v
}

async fn participants(state: &AppState, id: &str) -> Vec<tuxa_protocol::ParticipantInfo> {
    let Ok(room) = RoomId::parse(id) else {
        return Vec::new();
    };
    let (tx, rx) = oneshot::channel();
    if state
        .hub
        .send(HubMsg::Participants { room, reply: tx })
        .await
        .is_err()
    {
        return Vec::new();
    }
    rx.await.unwrap_or_default()
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    status: Option<String>,
}

/// Ended consultations listed: those of the last 30 days, newest first, at
/// most this many (their records are what staff export; older ones by id).
const ENDED_LISTED: usize = 50;

async fn list_consultations(
    State(state): State<AppState>,
    actor: Actor,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let ended = match query.ok().and_then(|q| q.0.status).as_deref() {
        None | Some("open") => false,
        Some("ended") => true,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "status is open or ended",
            ));
        }
    };
    let rows = state
        .store
        .call(|c| store::consultations(c))
        .await
        .map_err(ApiError::internal)?;
    let mut list = Vec::new();
    if ended {
        let since = crate::hub_task::unix_now() as i64 - 30 * 86_400;
        for row in rows.iter().rev().filter(|r| {
            r.status == tuxa_records::record::ConsultationStatus::Ended
                && r.ended_at.unwrap_or(0) >= since
        }) {
            if list.len() == ENDED_LISTED {
                break;
            }
            if may_see(&state, &actor, row).await? {
                list.push(consultation_json(row, None));
            }
        }
        return Ok(Json(json!({ "consultations": list })));
    }
    for row in rows
        .iter()
        .filter(|r| r.status == tuxa_records::record::ConsultationStatus::Open)
    {
        if !may_see(&state, &actor, row).await? {
            continue;
        }
        let p = participants(&state, &row.id).await;
        list.push(consultation_json(row, Some(p)));
    }
    Ok(Json(json!({ "consultations": list })))
}

/// Who a consultation concerns: its facility and, when a conference is
/// held in it, the conference's parties (see `authz::Permission`).
async fn get_consultation(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let row = load_visible(&state, &actor, &id).await?;
    let p = participants(&state, &row.id).await;
    Ok(Json(consultation_json(&row, Some(p))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewLink {
    role: String,
    name: String,
    #[serde(default)]
    facility: Option<String>,
    #[serde(default)]
    expires_in_secs: Option<u64>,
    /// Refused when `true`: a chair's link comes only from the
    /// conference's own join, for the staff member the scheduler named.
    #[serde(default)]
    chair: bool,
    #[serde(default)]
    licence_number: Option<String>,
}

async fn mint_link(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    req: Result<Json<NewLink>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Link>)> {
    let req = body(req)?;
    if req.chair {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "a chair's link is not minted here: the chair of a conference is the staff member \
             its scheduler named, and gets the link from POST /api/v1/conferences/{id}/join",
        ));
    }
    let row = load_for(&state, &actor, &id, Permission::MintLinks).await?;
    if row.status != tuxa_records::record::ConsultationStatus::Open {
        return Err(ApiError::new(
            ErrorCode::RoomEnded,
            "the consultation has ended",
        ));
    }
    let role = Role::parse(&req.role).ok_or_else(|| {
        ApiError::new(
            ErrorCode::BadRequest,
            "role must be patient, doctor, nurse or guest",
        )
    })?;
    let name = required_text("name", &req.name, 100)?;
    let facility = optional_text("facility", req.facility, 200)?;
    let ttl = req.expires_in_secs.unwrap_or(86_400);
    if !(60..=2_592_000).contains(&ttl) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "expires_in_secs must be between 60 and 2592000 (30 days)",
        ));
    }
    let licence_number = optional_text("licence_number", req.licence_number, 40)?;
    let room = parse_room(&row.id)?;
    let spec = LinkSpec {
        licence_number,
        actor: actor.audit_name(),
        ..LinkSpec::new(role, name, facility, ttl)
    };
    let link = state.mint_link(&room, spec).await?;
    Ok((StatusCode::CREATED, Json(link)))
}

async fn end_consultation(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let row = load_for(&state, &actor, &id, Permission::End).await?;
    let now = unix_now() as i64;
    let rid = row.id.clone();
    let changed = state
        .store
        .call(move |c| tuxa_store::consultations::end_by_hand(c, &rid, UnixTime(now)))
        .await
        .map_err(ApiError::internal)?;
    // Ending twice changes nothing: the first end time and its audit entry
    // stand.
    if !changed {
        return Err(ApiError::new(
            ErrorCode::RoomEnded,
            "the consultation has already ended",
        ));
    }
    let room = parse_room(&row.id)?;
    let _ = state.hub.send(HubMsg::Input(Input::EndRoom(room))).await;
    audit(
        &state,
        Action::ConsultationEnded,
        Some(&row.id),
        &actor.audit_name(),
        json!({}),
    );
    let row = load(&state, &id).await?;
    Ok(Json(consultation_json(&row, Some(Vec::new()))))
}
