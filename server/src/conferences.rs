//! Case conferences (hội chẩn): a district doctor or nurse asks an
//! upper-level facility for help with a patient; that facility schedules the
//! conference and invites people; invitees join from their consoles; the
//! chair or the secretary enters the conclusion afterwards. The API is in
//! docs/api.md ("Case conferences"); the call itself is an ordinary room of
//! kind `conference`. Its chair is the staff member the scheduler named: the
//! hub is told (`Input::ChairNamed`) and gives the chair's rights only to
//! that member's own link, minted by `join`.
//!
//! Only HTTP is here: the rules are `tuxa_records::conference`'s, the SQL
//! is `tuxa_store::conferences`'.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::{Value, json};
use tuxa_protocol::{ConsultationKind, ErrorCode, Role, RoomId};
use tuxa_records::conference::{
    self as rules, CitizenId, ConferenceRequest, Consent, NewRequest, Patient, Person, Sex, Status,
    Urgency,
};
use tuxa_records::{ConferenceId, UnixTime};
use tuxa_signaling::Input;
use tuxa_store::conferences as db;

use crate::app::{AppState, LinkSpec};
use crate::audit::{Action, Entry};
use crate::authz::{Actor, Permission};
use crate::clock::unix_now;
use crate::directory::{FacilityId, StaffId, StaffRole};
use crate::error::{ApiError, ApiResult, body, optional_text, required_text};
use crate::gate::{Access, Routes};

/// The largest attachment (an X-ray, a scanned referral, a short clip).
pub use tuxa_records::conference::MAX_ATTACHMENT_BYTES;

pub fn routes() -> Routes {
    Routes::new()
        .post("/api/v1/conferences", Access::STAFF, create)
        .get("/api/v1/conferences", Access::STAFF, list)
        .get("/api/v1/conferences/{id}", Access::STAFF, one)
        .add(
            "POST",
            "/api/v1/conferences/{id}/attachments",
            Access::STAFF,
            post(upload).layer(DefaultBodyLimit::max(MAX_ATTACHMENT_BYTES + 1)),
        )
        .get(
            "/api/v1/conferences/{id}/attachments/{attachment}",
            Access::STAFF,
            download,
        )
        .post("/api/v1/conferences/{id}/schedule", Access::STAFF, schedule)
        .post("/api/v1/conferences/{id}/decline", Access::STAFF, decline)
        .post(
            "/api/v1/conferences/{id}/reschedule",
            Access::STAFF,
            reschedule,
        )
        .post("/api/v1/conferences/{id}/cancel", Access::STAFF, cancel)
        .post("/api/v1/conferences/{id}/join", Access::STAFF, join)
        .post(
            "/api/v1/conferences/{id}/guest-link",
            Access::STAFF,
            guest_link,
        )
        .post(
            "/api/v1/conferences/{id}/conclusion",
            Access::STAFF,
            conclusion,
        )
        .get(
            "/api/v1/live",
            Access::Roles(crate::authz::COORDINATION),
            live,
        )
}

/// What is happening now, for a coordinator: queues and rooms in their
/// scope, counts only.
async fn live(State(state): State<AppState>, actor: Actor) -> ApiResult<Json<Value>> {
    actor.require(crate::authz::COORDINATION, "see live queues and rooms")?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    state
        .hub
        .send(crate::hub_task::HubMsg::Live(tx))
        .await
        .map_err(internal)?;
    let snapshot = rx.await.map_err(internal)?;
    let ids: Vec<String> = snapshot
        .rooms
        .iter()
        .map(|r| r.info.id.to_string())
        .collect();
    let owners = state
        .store
        .call(move |c| {
            let mut out = std::collections::HashMap::new();
            for id in ids {
                if let Some(row) = crate::store::consultation(c, &id)? {
                    out.insert(id, row.facility_id);
                }
            }
            Ok(out)
        })
        .await
        .map_err(internal)?;
    let queues: Vec<Value> = snapshot
        .queues
        .iter()
        .filter(|q| actor.sees(Some(q.facility)))
        .map(|q| {
            json!({
                "id": q.id, "name": q.name, "facility_id": q.facility,
                "waiting": q.waiting, "offered": q.offered, "calls": q.calls,
                "doctors_available": q.doctors_available,
                "longest_wait_secs": q.longest_wait.as_secs(),
            })
        })
        .collect();
    let rooms: Vec<Value> = snapshot
        .rooms
        .iter()
        .filter_map(|r| {
            let facility = owners.get(r.info.id.as_str()).copied().flatten();
            actor.sees(facility).then(|| {
                json!({
                    "id": r.info.id, "kind": r.info.kind, "title": r.info.title,
                    "facility_id": facility, "in_room": r.in_room, "waiting": r.waiting,
                    "locked": r.locked,
                })
            })
        })
        .collect();
    Ok(Json(json!({ "queues": queues, "rooms": rooms })))
}

// ---------------------------------------------------------------------------
// The API's JSON of a request

fn person_json(p: &Person) -> Value {
    serde_json::to_value(p).unwrap_or(Value::Null)
}

/// A person as `{staff_id, name, licence_number}` (the requester, the
/// chair, the secretary).
fn named(p: &Person) -> Value {
    json!({"staff_id": p.staff_id, "name": p.name(), "licence_number": p.licence_number()})
}

/// A request as the API shows it (docs/api.md, "Case conferences").
fn request_json(r: &ConferenceRequest) -> Value {
    let schedule = match &r.schedule {
        Some(s) => json!({
            "starts_at": s.starts_at,
            "duration_min": s.duration_min,
            "consultation_id": s.consultation_id,
            "chair": named(&s.chair),
            "invitees": s.invitees.iter().map(person_json).collect::<Vec<_>>(),
        }),
        None => Value::Null,
    };
    let conclusion = match &r.conclusion {
        Some(k) => json!({"text": k.text, "management_plan": k.management_plan,
               "by": {"staff_id": k.by.staff_id, "name": k.by.name()}, "at": k.at}),
        None => Value::Null,
    };
    let p = &r.patient;
    json!({
        "id": r.id,
        "status": r.status.as_str(),
        "urgency": r.urgency.as_str(),
        "from_facility": r.from_facility,
        "to_facility": r.to_facility,
        "specialty": r.specialty,
        "patient": {"name": p.name, "birth_year": p.birth_year, "sex": p.sex.map(Sex::as_str),
                    "address": p.address, "record_number": p.record_number,
                    "citizen_id": p.citizen_id},
        "summary": r.summary,
        "question": r.question,
        "requested_by": named(&r.requested_by),
        "created_at": r.created_at,
        "consent": {
            "text_version": r.consent.text_version,
            "remote_examination": r.consent.remote_examination,
            "third_parties": r.consent.third_parties,
            "recording": r.consent.recording,
            "at": r.created_at,
        },
        "attachments": r.attachments,
        "schedule": schedule,
        "decline_reason": r.decline_reason,
        "cancelled": r.cancelled.as_ref().map(|c| json!({"at": c.at, "reason": c.reason})),
        "secretary_staff_id": r.secretary.as_ref().map(|s| s.staff_id),
        "secretary": r.secretary.as_ref().map(named),
        "conclusion": conclusion,
    })
}

// ---------------------------------------------------------------------------
// For the other modules (they run on the store thread)

/// The store's domain error as a `rusqlite::Error`, for the callers below
/// that still speak rusqlite.
fn to_sqlite(e: tuxa_records::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

/// The conference request held in a consultation, for the record exports.
pub fn for_consultation(c: &Connection, consultation_id: &str) -> rusqlite::Result<Option<Value>> {
    Ok(db::for_consultation(c, consultation_id)
        .map_err(to_sqlite)?
        .as_ref()
        .map(request_json))
}

// ---------------------------------------------------------------------------
// Helpers

fn me(actor: &Actor) -> Option<StaffId> {
    actor.profile().map(|p| p.staff.id)
}

fn forbidden(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, message)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!("conferences: {e}");
    ApiError::new(ErrorCode::Internal, "internal error; see the server log")
}

fn now() -> UnixTime {
    UnixTime(unix_now() as i64)
}

/// Runs `f` on the store thread; its domain error becomes the answer.
async fn run<R: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Connection) -> tuxa_records::Result<R> + Send + 'static,
) -> ApiResult<R> {
    let r = state
        .store
        .call(move |c| Ok(f(c)))
        .await
        .map_err(internal)?;
    Ok(r?)
}

fn audit(state: &AppState, action: Action, room: Option<&str>, actor: &Actor, detail: Value) {
    state.store.audit(Entry {
        at: unix_now() as i64,
        action,
        consultation: room.map(str::to_owned),
        actor: actor.audit_name(),
        detail,
    });
}

fn no_such_request() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such conference request")
}

/// Loads a request the actor may see: `not_found` for a request that does
/// not exist and for one they may not see alike (ids are not secrets, but
/// a district need not learn of another district's patients).
async fn visible(state: &AppState, actor: &Actor, id: i64) -> ApiResult<ConferenceRequest> {
    let r = run(state, move |c| db::load(c, ConferenceId(id)))
        .await?
        .ok_or_else(no_such_request)?;
    if actor.may(Permission::See, &r.parties()) {
        Ok(r)
    } else {
        Err(no_such_request())
    }
}

async fn reload(state: &AppState, id: ConferenceId) -> ApiResult<Json<Value>> {
    let r = run(state, move |c| db::load(c, id))
        .await?
        .ok_or_else(no_such_request)?;
    Ok(Json(request_json(&r)))
}

// ---------------------------------------------------------------------------
// Filing a request

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatientReq {
    name: String,
    #[serde(default)]
    birth_year: Option<i64>,
    #[serde(default)]
    sex: Option<Sex>,
    #[serde(default)]
    address: Option<String>,
    /// The requesting facility's own record number (số hồ sơ / mã bệnh án).
    #[serde(default)]
    record_number: Option<String>,
    #[serde(default)]
    citizen_id: Option<CitizenId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentReq {
    text_version: String,
    remote_examination: bool,
    third_parties: bool,
    recording: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRequestReq {
    to_facility_id: FacilityId,
    specialty: String,
    urgency: Urgency,
    patient: PatientReq,
    summary: String,
    question: String,
    consent: ConsentReq,
}

async fn create(
    State(state): State<AppState>,
    actor: Actor,
    req: Result<Json<NewRequestReq>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Some(profile) = actor.profile().cloned() else {
        return Err(forbidden(
            "a conference request is filed by a signed-in doctor or nurse, not with the admin key",
        ));
    };
    actor.require(
        &[StaffRole::Doctor, StaffRole::Nurse],
        "request conferences",
    )?;
    let mut req = body(req)?;
    rules::require_consent(req.consent.remote_examination)?;
    let text_version = required_text("consent.text_version", &req.consent.text_version, 64)?;
    let specialty = required_text("specialty", &req.specialty, 100)?;
    let summary = required_text("summary", &req.summary, 4000)?;
    let question = required_text("question", &req.question, 4000)?;
    let patient_name = required_text("patient.name", &req.patient.name, 100)?;
    rules::check_birth_year(req.patient.birth_year)?;
    let address = optional_text("patient.address", req.patient.address.take(), 300)?;
    let record_number = optional_text(
        "patient.record_number",
        req.patient.record_number.take(),
        50,
    )?;
    let citizen_id = req.patient.citizen_id.take().map(String::from);
    let to = req.to_facility_id;
    let tier = run(&state, move |c| db::facility_tier(c, to))
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such facility"))?;
    rules::check_target(to, tier, profile.facility.id)?;
    let new = NewRequest {
        urgency: req.urgency,
        from_facility: profile.facility.id,
        to_facility: to,
        specialty,
        patient: Patient {
            name: patient_name,
            birth_year: req.patient.birth_year,
            sex: req.patient.sex,
            address,
            record_number,
            citizen_id,
        },
        summary,
        question,
        requested_by: profile.staff.id,
        consent: Consent {
            text_version,
            remote_examination: true,
            third_parties: req.consent.third_parties,
            recording: req.consent.recording,
        },
    };
    let urgency = new.urgency;
    let at = now().secs();
    let id = run(&state, move |c| db::insert(c, &new, at)).await?;
    audit(
        &state,
        Action::ConferenceRequested,
        None,
        &actor,
        json!({"request": id, "to_facility_id": to, "urgency": urgency.as_str()}),
    );
    let Json(v) = reload(&state, id).await?;
    Ok((StatusCode::CREATED, Json(v)))
}

async fn list(State(state): State<AppState>, actor: Actor) -> ApiResult<Json<Value>> {
    let all = run(&state, db::all).await?;
    let list: Vec<Value> = all
        .iter()
        .filter(|r| actor.may(Permission::See, &r.parties()))
        .map(request_json)
        .collect();
    Ok(Json(json!({ "conferences": list })))
}

async fn one(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    Ok(Json(request_json(&visible(&state, &actor, id).await?)))
}

// ---------------------------------------------------------------------------
// Attachments

#[derive(Deserialize)]
struct UploadQuery {
    name: String,
}

async fn upload(
    State(state): State<AppState>,
    actor: Actor,
    headers: HeaderMap,
    Path(id): Path<i64>,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    data: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    // Over the limit, axum answers in plain text; the API answers in JSON.
    let data = data.map_err(|_| rules::size_refused())?;

    let r = visible(&state, &actor, id).await?;
    actor.check(Permission::Attach, &r.parties())?;
    r.status.attach()?;
    let Query(q) = query
        .map_err(|_| ApiError::new(ErrorCode::BadRequest, "name the file: ?name=<file name>"))?;
    let name = required_text("name", &q.name, 200)?;
    rules::check_file_name(&name)?;
    let content_type = rules::content_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )?;
    rules::check_size(data.len())?;
    let file = rules::Attachment {
        id: 0,
        name,
        content_type,
        size: data.len() as i64,
        sha256: crate::hex(&crate::sha256(&data)),
        uploaded_at: now().secs(),
    };
    let who = actor.audit_name();
    let (rid, row) = (r.id, file.clone());
    let aid = run(&state, move |c| {
        db::insert_attachment(c, rid, &row, &data, &who)
    })
    .await?;
    let file = rules::Attachment { id: aid, ..file };
    audit(
        &state,
        Action::AttachmentAdded,
        r.consultation_id.as_deref(),
        &actor,
        json!({"request": id, "attachment": aid, "size": file.size, "sha256": file.sha256}),
    );
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(&file).map_err(internal)?),
    ))
}

async fn download(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, aid)): Path<(i64, i64)>,
) -> ApiResult<Response> {
    let r = visible(&state, &actor, id).await?;
    let rid = r.id;
    let Some(file) = run(&state, move |c| db::attachment(c, rid, aid)).await? else {
        return Err(ApiError::new(ErrorCode::NotFound, "no such attachment"));
    };
    audit(
        &state,
        Action::AttachmentRead,
        r.consultation_id.as_deref(),
        &actor,
        json!({"request": id, "attachment": aid}),
    );
    let rules::AttachmentFile {
        name,
        content_type,
        data,
    } = file;
    // The name may be Vietnamese: an ASCII fallback plus RFC 5987's form.
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b".-_".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let disposition = format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}");
    let mut resp = data.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(resp)
}

// ---------------------------------------------------------------------------
// Scheduling, declining

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleReq {
    starts_at: u64,
    #[serde(default = "default_duration")]
    duration_min: u64,
    chair_staff_id: StaffId,
    #[serde(default)]
    invite_staff_ids: Vec<StaffId>,
}

fn default_duration() -> u64 {
    rules::DEFAULT_DURATION_MIN
}

/// The caller and the request, when the caller may schedule it and its
/// status allows `change` (its refusal otherwise).
async fn for_scheduler(
    state: &AppState,
    actor: Actor,
    id: i64,
    change: impl FnOnce(Status) -> tuxa_records::Result<Status>,
) -> ApiResult<(Actor, ConferenceRequest)> {
    let r = visible(state, &actor, id).await?;
    actor.check(Permission::Schedule, &r.parties())?;
    change(r.status)?;
    Ok((actor, r))
}

async fn schedule(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    req: Result<Json<ScheduleReq>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let (actor, r) = for_scheduler(&state, actor, id, Status::schedule).await?;
    let req = body(req)?;
    rules::check_duration(req.duration_min)?;
    rules::check_schedule_time(req.starts_at, req.duration_min, now())?;
    let chair = req.chair_staff_id;
    rules::check_chair(actor.profile().map(|p| (p.staff.id, p.staff.role)), chair)?;
    let invitees = rules::invitees(r.requested_by.staff_id, chair, &req.invite_staff_ids)?;
    let check = invitees.clone();
    let found = run(&state, move |c| db::invitable(c, &check)).await?;
    rules::check_invitees(&found, chair)?;
    let row = state
        .create_consultation(
            ConsultationKind::Conference,
            r.room_title(),
            Some(r.to_facility.id),
            &actor.audit_name(),
        )
        .await?;
    // The hub learns who chairs before any link into the room exists: only
    // that staff member's link carries the chair's rights there.
    let room = RoomId::parse(&row.id).map_err(internal)?;
    let _ = state
        .hub
        .send(crate::hub_task::HubMsg::Input(Input::ChairNamed {
            room,
            staff: chair,
        }))
        .await;
    let cid = row.id.clone();
    let who = actor.audit_name();
    let (starts, dur) = (req.starts_at as i64, req.duration_min as i64);
    let inv = invitees.clone();
    let rid = r.id;
    // Someone else may have scheduled or declined it meanwhile: a conflict.
    run(&state, move |c| {
        db::schedule(
            c,
            rid,
            &db::ScheduleRow {
                consultation_id: &cid,
                starts_at: starts,
                duration_min: dur,
                chair,
                by: &who,
                invitees: &inv,
            },
        )
    })
    .await?;
    audit(
        &state,
        Action::ConferenceScheduled,
        Some(&row.id),
        &actor,
        json!({"request": id, "starts_at": starts, "chair": chair, "invitees": invitees}),
    );
    reload(&state, rid).await
}

/// Why a request is declined or a conference cancelled.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonReq {
    reason: String,
}

async fn decline(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    req: Result<Json<ReasonReq>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let (actor, r) = for_scheduler(&state, actor, id, Status::decline).await?;
    let reason = required_text("reason", &body(req)?.reason, 1000)?;
    let at = now().secs();
    let rid = r.id;
    run(&state, move |c| db::decline(c, rid, &reason, at)).await?;
    audit(
        &state,
        Action::ConferenceDeclined,
        None,
        &actor,
        json!({"request": id}),
    );
    reload(&state, rid).await
}

// ---------------------------------------------------------------------------
// Changing a scheduled conference: another time, or calling it off.

/// The caller and the request, when the caller may schedule it and `change`
/// (rescheduling or cancelling) is allowed: it is scheduled and nobody has
/// entered its room yet (a conference under way is ended, not moved).
async fn scheduled_not_started(
    state: &AppState,
    actor: Actor,
    id: i64,
    change: impl FnOnce(Status, bool) -> tuxa_records::Result<Status>,
) -> ApiResult<(Actor, ConferenceRequest)> {
    let r = visible(state, &actor, id).await?;
    actor.check(Permission::Schedule, &r.parties())?;
    let cid = r.consultation_id.clone();
    let started = run(state, move |c| match cid {
        Some(cid) => db::has_started(c, &cid),
        None => Ok(false),
    })
    .await?;
    change(r.status, started)?;
    Ok((actor, r))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RescheduleReq {
    starts_at: u64,
    #[serde(default)]
    duration_min: Option<u64>,
}

async fn reschedule(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    req: Result<Json<RescheduleReq>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let (actor, r) =
        scheduled_not_started(&state, actor, id, |s, started| s.reschedule(|| Ok(started))).await?;
    let req = body(req)?;
    let duration = req
        .duration_min
        .unwrap_or(r.duration_min.unwrap_or(60) as u64);
    rules::check_duration(duration)?;
    rules::check_reschedule_time(req.starts_at, now())?;
    let before = r.starts_at;
    let (starts, dur) = (req.starts_at as i64, duration as i64);
    let rid = r.id;
    // A conflict when it was cancelled meanwhile.
    run(&state, move |c| db::reschedule(c, rid, starts, dur)).await?;
    audit(
        &state,
        Action::ConferenceRescheduled,
        r.consultation_id.as_deref(),
        &actor,
        json!({"request": id, "starts_at": starts, "duration_min": dur, "was": before}),
    );
    reload(&state, rid).await
}

async fn cancel(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    req: Result<Json<ReasonReq>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let (actor, r) =
        scheduled_not_started(&state, actor, id, |s, started| s.cancel(|| Ok(started))).await?;
    let reason = required_text("reason", &body(req)?.reason, 1000)?;
    let at = now().secs();
    let cid = r.consultation_id.clone().unwrap_or_default();
    let why = reason.clone();
    let rid = r.id;
    // Its room closes with it; a conflict when it was cancelled meanwhile.
    run(&state, move |c| db::cancel(c, rid, &cid, &why, at)).await?;
    if let Ok(room) = RoomId::parse(r.consultation_id.as_deref().unwrap_or_default()) {
        let _ = state
            .hub
            .send(crate::hub_task::HubMsg::Input(Input::EndRoom(room)))
            .await;
    }
    audit(
        &state,
        Action::ConferenceCancelled,
        r.consultation_id.as_deref(),
        &actor,
        json!({"request": id, "reason": reason}),
    );
    reload(&state, rid).await
}

// ---------------------------------------------------------------------------
// Links

/// The room of a scheduled conference and the window its links get now.
fn link_window(r: &ConferenceRequest) -> ApiResult<(RoomId, Option<u64>, u64)> {
    let w = r.link_window(now())?;
    let cid = r.consultation_id.as_deref().unwrap_or_default();
    let room = RoomId::parse(cid).map_err(|_| ApiError::new(ErrorCode::Internal, "bad room id"))?;
    Ok((room, w.not_before, w.ttl_secs))
}

async fn join(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let r = visible(&state, &actor, id).await?;
    let Some(profile) = actor.profile().cloned() else {
        return Err(forbidden("invitees join from their own console"));
    };
    actor.check(Permission::Join, &r.parties())?;
    let (room, not_before, ttl) = link_window(&r)?;
    let role = rules::role_in_room(profile.staff.role);
    let name = match &profile.practitioner {
        Some(p) => format!("{} {}", p.title, profile.staff.name),
        None => profile.staff.name.clone(),
    };
    let spec = LinkSpec {
        not_before,
        // Invitees were chosen by the scheduler: no lobby for them.
        pre_admitted: true,
        staff_id: Some(profile.staff.id),
        licence_number: profile
            .practitioner
            .as_ref()
            .map(|p| p.licence_number.clone()),
        // The chair's claim only for the staff member the scheduler named;
        // the hub checks it against the room's named chair too.
        chair: r.chair == Some(profile.staff.id),
        actor: actor.audit_name(),
        ..LinkSpec::new(role, name, Some(profile.facility.name.clone()), ttl)
    };
    Ok(Json(
        serde_json::to_value(state.mint_link(&room, spec).await?).map_err(ApiError::internal)?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GuestReq {
    role: String,
    name: String,
    #[serde(default)]
    facility: Option<String>,
}

async fn guest_link(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    req: Result<Json<GuestReq>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let r = visible(&state, &actor, id).await?;
    actor.check(Permission::Moderate, &r.parties())?;
    let req = body(req)?;
    let role = match req.role.as_str() {
        "patient" => Role::Patient,
        "guest" => Role::Guest,
        _ => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "role must be patient or guest",
            ));
        }
    };
    let name = required_text("name", &req.name, 100)?;
    let facility = optional_text("facility", req.facility, 200)?;
    let (room, not_before, ttl) = link_window(&r)?;
    let spec = LinkSpec {
        not_before,
        actor: actor.audit_name(),
        ..LinkSpec::new(role, name, facility, ttl)
    };
    Ok((
        StatusCode::CREATED,
        Json(
            serde_json::to_value(state.mint_link(&room, spec).await?)
                .map_err(ApiError::internal)?,
        ),
    ))
}

// ---------------------------------------------------------------------------
// The conclusion

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConclusionReq {
    text: String,
    /// Hướng xử trí: what the requesting side is advised to do next.
    #[serde(default)]
    management_plan: Option<String>,
}

async fn conclusion(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    req: Result<Json<ConclusionReq>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let r = visible(&state, &actor, id).await?;
    actor.check(Permission::Conclude, &r.parties())?;
    let who = me(&actor);
    r.status.conclude()?;
    let req = body(req)?;
    let text = required_text("text", &req.text, 20_000)?;
    let plan = optional_text("management_plan", req.management_plan, 20_000)?;
    let digest = crate::hex(&crate::sha256(text.as_bytes()));
    let plan_digest = plan
        .as_ref()
        .map(|p| crate::hex(&crate::sha256(p.as_bytes())));
    let at = now().secs();
    let rid = r.id;
    run(&state, move |c| {
        db::set_conclusion(c, rid, &text, plan.as_deref(), who, at)
    })
    .await?;
    audit(
        &state,
        Action::ConclusionEntered,
        r.consultation_id.as_deref(),
        &actor,
        json!({"request": r.id, "sha256": digest, "management_plan_sha256": plan_digest}),
    );
    reload(&state, rid).await
}
