//! HTTP routes: the admin API, the join check, the web client, the WebSocket.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tuxa_protocol::{ConsultationKind, ErrorCode, MAX_MESSAGE_BYTES, Role, RoomId, RoomInfo};
use tuxa_signaling::{Claims, Input, RoomStatus, SessionId, TokenKey};

use crate::audit::{Action, Entry};
use crate::authz::{self, Actor, Parties, Permission};
use crate::directory::FacilityId;
use crate::hub_task::{HubMsg, unix_now};
use crate::store::{self, ConsultationRow, Store};
use crate::{random_bytes, web};

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

pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/", get(web::landing))
        .route("/join/{room}", get(web::join_page))
        .route("/q/{queue}", get(web::queue_page))
        .route("/staff", get(web::staff_page))
        .route("/check", get(web::check_page))
        .route("/static/{file}", get(web::asset))
        .route("/healthz", get(|| async { "ok" }))
        .route("/ws", get(ws_upgrade))
        .route("/api/v1/join-check", post(join_check))
        .route(
            "/api/v1/consultations",
            post(create_consultation).get(list_consultations),
        )
        .route("/api/v1/consultations/{id}", get(get_consultation))
        .route("/api/v1/consultations/{id}/links", post(mint_link))
        .route("/api/v1/consultations/{id}/end", post(end_consultation))
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
        // Bodies: declared length, limits and authentication before reading (limits.rs).
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::limits::bodies,
        ))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such page") })
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The token sits in the URL fragment; never let it leak in a Referer.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

/// An error response with a stable code.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn code(&self) -> ErrorCode {
        self.code
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    fn internal(e: impl std::fmt::Display) -> ApiError {
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
        (status, Json(body)).into_response()
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
                    ids.push(q.id as u64);
                }
            }
            Ok(ids)
        })
        .await
        .ok()?;
    Some(tuxa_signaling::StaffInfo {
        staff: tuxa_signaling::queue::StaffRef {
            id: staff_id.0 as u64,
            name: me.profile.staff.name.clone(),
            facility: me.profile.staff.facility_id.0 as u64,
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
    headers: HeaderMap,
    req: Result<Json<NewConsultation>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let actor = Actor::from_headers(&state, &headers).await?;
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

/// Creates a consultation in the store and opens its room in the hub.
pub async fn create(
    state: &AppState,
    kind: ConsultationKind,
    title: String,
    facility_id: Option<FacilityId>,
    actor: &str,
) -> ApiResult<ConsultationRow> {
    let id = RoomId::from_random(random_bytes());
    let row = ConsultationRow {
        id: id.to_string(),
        kind: kind.as_str().to_owned(),
        title: title.clone(),
        status: "open".into(),
        created_at: unix_now() as i64,
        ended_at: None,
        facility_id,
        end_reason: None,
    };
    let r = row.clone();
    let contact = state
        .store
        .call(move |c| {
            c.execute(
                "INSERT INTO consultations(id, kind, title, status, created_at, facility_id)
                 VALUES (?1, ?2, ?3, 'open', ?4, ?5)",
                rusqlite::params![r.id, r.kind, r.title, r.created_at, r.facility_id],
            )?;
            crate::store::facility_contact(c, r.facility_id)
        })
        .await
        .map_err(ApiError::internal)?;
    let _ = state
        .hub
        .send(HubMsg::Input(Input::RoomOpened(
            RoomInfo {
                id: id.clone(),
                kind,
                title,
            },
            RoomStatus::Open,
        )))
        .await;
    if let Some(contact) = contact {
        let _ = state
            .hub
            .send(HubMsg::Input(Input::RoomContact { room: id, contact }))
            .await;
    }
    audit(
        state,
        Action::ConsultationCreated,
        Some(&row.id),
        actor,
        json!({"kind": row.kind, "facility_id": row.facility_id}),
    );
    Ok(row)
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
    headers: HeaderMap,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let actor = Actor::from_headers(&state, &headers).await?;
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
        for row in rows
            .iter()
            .rev()
            .filter(|r| r.status == "ended" && r.ended_at.unwrap_or(0) >= since)
        {
            if list.len() == ENDED_LISTED {
                break;
            }
            if may_see(&state, &actor, row).await? {
                list.push(consultation_json(row, None));
            }
        }
        return Ok(Json(json!({ "consultations": list })));
    }
    for row in rows.iter().filter(|r| r.status == "open") {
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
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = Actor::from_headers(&state, &headers).await?;
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
    headers: HeaderMap,
    Path(id): Path<String>,
    req: Result<Json<NewLink>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let actor = Actor::from_headers(&state, &headers).await?;
    let req = body(req)?;
    if req.chair {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "a chair's link is not minted here: the chair of a conference is the staff member \
             its scheduler named, and gets the link from POST /api/v1/conferences/{id}/join",
        ));
    }
    let row = load_for(&state, &actor, &id, Permission::MintLinks).await?;
    if row.status != "open" {
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
    let link = mint(&state, &room, spec).await?;
    Ok((StatusCode::CREATED, Json(link)))
}

/// Mints a token, records that it was minted (not the token itself), and
/// returns the link.
/// What a join link grants.
pub struct LinkSpec {
    pub role: Role,
    pub name: String,
    pub facility: Option<String>,
    pub ttl_secs: u64,
    /// Appointment links open shortly before the appointment.
    pub not_before: Option<u64>,
    /// Skips the lobby (a patient a doctor accepted from a queue).
    pub pre_admitted: bool,
    /// The staff account it is minted for (conference invitees).
    pub staff_id: Option<u64>,
    pub licence_number: Option<String>,
    pub chair: bool,
    /// Who minted it, for the audit log (`admin`, `staff:<id>`, `system`).
    pub actor: String,
}

impl LinkSpec {
    pub fn new(role: Role, name: String, facility: Option<String>, ttl_secs: u64) -> LinkSpec {
        LinkSpec {
            role,
            name,
            facility,
            ttl_secs,
            not_before: None,
            pre_admitted: false,
            staff_id: None,
            licence_number: None,
            chair: false,
            actor: "admin".into(),
        }
    }
}

pub async fn mint(state: &AppState, room: &RoomId, spec: LinkSpec) -> ApiResult<Value> {
    let LinkSpec {
        role,
        name,
        facility,
        ttl_secs,
        not_before,
        pre_admitted,
        staff_id,
        licence_number,
        chair,
        actor,
    } = spec;
    let now = unix_now();
    let claims = Claims {
        room: room.clone(),
        role,
        name,
        facility,
        expires_at: now + ttl_secs,
        not_before,
        pre_admitted,
        staff_id,
        licence_number,
        chair,
    };
    let token = state.tokens.mint(&claims, random_bytes());
    let c = claims.clone();
    state
        .store
        .call(move |db| {
            db.execute(
                "INSERT INTO links(consultation_id, role, name, facility, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![
                    c.room.as_str(),
                    c.role.as_str(),
                    c.name,
                    c.facility,
                    now as i64,
                    c.expires_at as i64
                ],
            )
        })
        .await
        .map_err(ApiError::internal)?;
    audit(
        state,
        Action::LinkMinted,
        Some(room.as_str()),
        &actor,
        json!({"role": role, "expires_at": claims.expires_at, "chair": chair, "staff_id": staff_id}),
    );
    Ok(json!({
        "url": format!("{}/join/{}#{}", state.public_url, room, token),
        "token": token,
        "role": role,
        "expires_at": claims.expires_at,
        "not_before": claims.not_before,
    }))
}

async fn end_consultation(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let actor = Actor::from_headers(&state, &headers).await?;
    let row = load_for(&state, &actor, &id, Permission::End).await?;
    let now = unix_now() as i64;
    let rid = row.id.clone();
    let changed = state
        .store
        .call(move |c| {
            c.execute(
                "UPDATE consultations SET status = 'ended', ended_at = ?1, end_reason = 'ended'
                 WHERE id = ?2 AND status = 'open'",
                rusqlite::params![now, rid],
            )
        })
        .await
        .map_err(ApiError::internal)?;
    // Ending twice changes nothing: the first end time and its audit entry
    // stand.
    if changed == 0 {
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
