//! HTTP routes: the admin API, the join check, the web client, the WebSocket.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tuxa_protocol::{ConsultationKind, ErrorCode, MAX_MESSAGE_BYTES, Role, RoomId, RoomInfo};
use tuxa_signaling::{Claims, Input, SessionId, TokenKey};

use crate::audit::{Action, Entry};
use crate::authz::{self, Actor, Parties, Permission};
use crate::directory::FacilityId;
use crate::gate::{Access, Routes};
use crate::hub_task::{HubMsg, unix_now};
use crate::store::{self, ConsultationRow, Store};
use crate::web;
use tuxa_records::UnixTime;

#[derive(Clone)]
pub struct AppState {
    pub hub: mpsc::Sender<HubMsg>,
    pub store: Store,
    pub tokens: Arc<TokenKey>,
    pub admin_key_hash: Arc<[u8; 32]>,
    pub public_url: Arc<str>,
    pub next_session: Arc<AtomicU64>,
    pub shutdown: watch::Receiver<bool>,
    /// Set when a TURN server is configured (credentials in `join-check`).
    pub turn: Option<Arc<crate::turn::TurnConfig>>,
    /// The Department of Health named on the minutes (`--department-name`).
    pub department_name: Option<Arc<str>>,
}

/// An [`AppState`] over a real SQLite file in `data_dir`, for in-process
/// router tests; keep the returned channel ends alive as long as the state.
#[cfg(test)]
pub(crate) fn test_state(
    data_dir: &std::path::Path,
    admin_key: &str,
) -> (AppState, mpsc::Receiver<HubMsg>, watch::Sender<bool>) {
    let store = Store::open(&data_dir.join("tuxa.sqlite3")).expect("a test store");
    let (hub, hub_rx) = mpsc::channel(crate::hub_task::HUB_QUEUE);
    let (shutdown_tx, shutdown) = watch::channel(false);
    let state = AppState {
        hub,
        store,
        tokens: Arc::new(TokenKey::new(&[7u8; 32])),
        admin_key_hash: Arc::new(crate::sha256(admin_key.as_bytes())),
        public_url: "https://127.0.0.1:8443".into(),
        next_session: Arc::new(AtomicU64::new(1)),
        turn: None,
        department_name: Some("Sở Y tế tỉnh An Hòa".into()),
        shutdown,
    };
    (state, hub_rx, shutdown_tx)
}

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

/// An error response with a stable code. Every refusal reaches the caller
/// through this type: domain errors ([`tuxa_records::Error`]) convert into
/// it, and [`IntoResponse`] below is the one place codes become statuses.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
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
            ErrorCode::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::NotFound | ErrorCode::RoomNotFound => StatusCode::NOT_FOUND,
            ErrorCode::RoomEnded => StatusCode::GONE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::ServerShutdown => StatusCode::SERVICE_UNAVAILABLE,
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

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// A required text field: trimmed, 1 to `max` characters.
pub(crate) fn required_text(field: &str, value: &str, max: usize) -> ApiResult<String> {
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
pub(crate) fn optional_text(
    field: &str,
    value: Option<String>,
    max: usize,
) -> ApiResult<Option<String>> {
    match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if v.chars().count() > max => Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("{field} must be at most {max} characters"),
        )),
        Some(v) => Ok(Some(v.to_owned())),
    }
}

fn body<T>(r: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    r.map(|Json(v)| v)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))
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
        audit(state, Action::AdminAuthFailed, None, "unknown", json!({}));
        return Err(ApiError::new(ErrorCode::Unauthorized, "wrong admin key"));
    }
    Ok(())
}

fn audit(state: &AppState, action: Action, room: Option<&str>, actor: &str, detail: Value) {
    state.store.audit(Entry {
        at: unix_now() as i64,
        action,
        consultation: room.map(str::to_owned),
        actor: actor.to_owned(),
        detail,
    });
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
    let me = crate::auth::signed_in(state, headers).await.ok()?;
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
    let (claims, room): (Claims, RoomInfo) = match rx.await.map_err(ApiError::internal)? {
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
    let row = create(&state, kind, title, actor.facility(), &actor.audit_name()).await?;
    Ok((StatusCode::CREATED, Json(consultation_json(&row, None))))
}

/// [`AppState::create_consultation`] (for callers not yet moved to it).
pub async fn create(
    state: &AppState,
    kind: ConsultationKind,
    title: String,
    facility_id: Option<FacilityId>,
    actor: &str,
) -> ApiResult<ConsultationRow> {
    state
        .create_consultation(kind, title, facility_id, actor)
        .await
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
pub(crate) async fn parties(state: &AppState, row: &ConsultationRow) -> ApiResult<Parties> {
    let id = row.id.clone();
    let conference = state
        .store
        .call(move |c| crate::conferences::conference_parties(c, &id))
        .await
        .map_err(ApiError::internal)?;
    Ok(Parties {
        owner: row.facility_id,
        conference,
    })
}

/// Whether `actor` may see a consultation: their scope includes its
/// facility, or it is a conference they are invited to or asked for.
pub(crate) async fn may_see(
    state: &AppState,
    actor: &Actor,
    row: &ConsultationRow,
) -> ApiResult<bool> {
    if actor.sees(row.facility_id) {
        return Ok(true);
    }
    Ok(actor.may(Permission::See, &parties(state, row).await?))
}

/// Loads a consultation the actor may see (`forbidden` otherwise).
pub(crate) async fn load_visible(
    state: &AppState,
    actor: &Actor,
    id: &str,
) -> ApiResult<ConsultationRow> {
    load_for(state, actor, id, Permission::See).await
}

/// Loads a consultation the actor may see and may `what` (`forbidden`
/// otherwise, saying who may).
pub(crate) async fn load_for(
    state: &AppState,
    actor: &Actor,
    id: &str,
    what: Permission,
) -> ApiResult<ConsultationRow> {
    let row = load(state, id).await?;
    let parties = parties(state, &row).await?;
    actor.check(Permission::See, &parties)?;
    actor.check(what, &parties)?;
    Ok(row)
}

async fn load(state: &AppState, id: &str) -> ApiResult<ConsultationRow> {
    let room = parse_room(id)?;
    state
        .store
        .call(move |c| store::consultation(c, room.as_str()))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such consultation"))
}

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

pub use crate::app::{Link, LinkSpec};

/// [`AppState::mint_link`] as the API's JSON (for callers not yet moved to it).
pub async fn mint(state: &AppState, room: &RoomId, spec: LinkSpec) -> ApiResult<Value> {
    let link = state.mint_link(room, spec).await?;
    serde_json::to_value(link).map_err(ApiError::internal)
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
