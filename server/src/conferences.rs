//! Case conferences (hội chẩn): a district doctor or nurse asks an
//! upper-level facility for help with a patient; that facility schedules the
//! conference and invites people; invitees join from their consoles; the
//! chair or the secretary enters the conclusion afterwards. The API is in
//! docs/api.md ("Case conferences"); the call itself is an ordinary room of
//! kind `conference`. Its chair is the staff member the scheduler named: the
//! hub is told (`Input::ChairNamed`) and gives the chair's rights only to
//! that member's own link, minted by `join`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use serde_json::{Value, json};
use tuxa_protocol::{ConsultationKind, ErrorCode, Role, RoomId};
use tuxa_signaling::Input;

use crate::audit::{Action, Entry};
use crate::authz::{Actor, ConferenceParties, Parties, Permission};
use crate::directory::{self, FacilityId, StaffId, StaffRole, Tier};
use crate::gate::{Access, Routes};
use crate::http::{self, ApiError, ApiResult, AppState, LinkSpec, optional_text, required_text};
use crate::hub_task::unix_now;

/// The largest attachment (an X-ray, a scanned referral, a short clip).
pub const MAX_ATTACHMENT_BYTES: usize = 10 * 1024 * 1024;
/// Links open this long before the conference starts…
const OPENS_BEFORE_SECS: u64 = 15 * 60;
/// …and expire this long after its planned end.
const GRACE_AFTER_SECS: u64 = 30 * 60;
const MAX_INVITEES: usize = 30;
const ALLOWED_TYPES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "application/pdf",
    "application/dicom",
    "video/mp4",
    "text/plain",
];

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
        .filter(|q| actor.sees(Some(FacilityId(q.facility as i64))))
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Urgency {
    Routine,
    Urgent,
    Emergency,
}

impl Urgency {
    fn as_str(self) -> &'static str {
        match self {
            Urgency::Routine => "routine",
            Urgency::Urgent => "urgent",
            Urgency::Emergency => "emergency",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Sex {
    Male,
    Female,
    Other,
}

impl Sex {
    fn as_str(self) -> &'static str {
        match self {
            Sex::Male => "male",
            Sex::Female => "female",
            Sex::Other => "other",
        }
    }
}

/// A citizen's personal identification number (số định danh cá nhân, the
/// number on the CCCD card): 12 digits. Circular 13/2025 links electronic
/// medical records by it, so a conference's record carries it when the
/// requester gives it. Parsed once at the edge; anything else is refused.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct CitizenId(String);

impl CitizenId {
    pub fn parse(s: &str) -> Result<CitizenId, &'static str> {
        let s = s.trim();
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(CitizenId(s.to_owned()))
        } else {
            Err(
                "patient.citizen_id must be the 12 digits of a personal identification number (CCCD)",
            )
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CitizenId {
    type Error = &'static str;
    fn try_from(s: String) -> Result<CitizenId, &'static str> {
        CitizenId::parse(&s)
    }
}

/// Where a request stands; derived from its row, never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Requested,
    Scheduled,
    Declined,
    Held,
    /// Called off by those who schedule, before it was held.
    Cancelled,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Scheduled => "scheduled",
            Status::Declined => "declined",
            Status::Held => "held",
            Status::Cancelled => "cancelled",
        }
    }
}

/// A request as stored, with what the permission checks need.
#[derive(Debug, Clone)]
struct Request {
    id: i64,
    status: Status,
    from_facility: FacilityId,
    to_facility: FacilityId,
    requested_by: StaffId,
    chair: Option<StaffId>,
    secretary: Option<StaffId>,
    consultation_id: Option<String>,
    starts_at: Option<i64>,
    duration_min: Option<i64>,
    specialty: String,
    from_name: String,
    invitees: Vec<StaffId>,
    json: Value,
}

fn facility_ref(c: &Connection, id: FacilityId) -> rusqlite::Result<Value> {
    let name: Option<String> = c
        .query_row("SELECT name FROM facilities WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(json!({"id": id, "name": name}))
}

fn person(c: &Connection, id: StaffId) -> rusqlite::Result<Value> {
    Ok(match directory::profile(c, id)? {
        Some(p) => json!({
            "staff_id": id,
            "name": p.staff.name,
            "role": p.staff.role,
            "facility": p.facility.name,
            "licence_number": p.practitioner.map(|x| x.licence_number),
        }),
        None => json!({"staff_id": id}),
    })
}

fn load(c: &Connection, id: i64) -> rusqlite::Result<Option<Request>> {
    let row = c
        .query_row(
            "SELECT r.id, r.urgency, r.from_facility_id, r.to_facility_id, r.specialty,
                    r.patient_name, r.patient_birth_year, r.patient_sex, r.summary, r.question,
                    r.requested_by, r.created_at, r.consent_text_version,
                    r.consent_remote_examination, r.consent_third_parties, r.consent_recording,
                    r.declined_at, r.decline_reason, r.consultation_id, r.starts_at,
                    r.duration_min, r.chair_staff_id, r.secretary_staff_id, r.conclusion,
                    r.conclusion_by, r.conclusion_at, k.status, r.patient_address,
                    r.patient_record_number, r.patient_citizen_id, r.management_plan
             FROM conference_requests r LEFT JOIN consultations k ON k.id = r.consultation_id
             WHERE r.id = ?1",
            [id],
            |r| {
                Ok((
                    (
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, FacilityId>(2)?,
                        r.get::<_, FacilityId>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<i64>>(6)?,
                        r.get::<_, Option<String>>(7)?,
                        r.get::<_, String>(8)?,
                        r.get::<_, String>(9)?,
                    ),
                    (
                        r.get::<_, StaffId>(10)?,
                        r.get::<_, i64>(11)?,
                        r.get::<_, String>(12)?,
                        r.get::<_, bool>(13)?,
                        r.get::<_, bool>(14)?,
                        r.get::<_, bool>(15)?,
                        r.get::<_, Option<i64>>(16)?,
                        r.get::<_, Option<String>>(17)?,
                        r.get::<_, Option<String>>(18)?,
                    ),
                    (
                        r.get::<_, Option<i64>>(19)?,
                        r.get::<_, Option<i64>>(20)?,
                        r.get::<_, Option<StaffId>>(21)?,
                        r.get::<_, Option<StaffId>>(22)?,
                        r.get::<_, Option<String>>(23)?,
                        r.get::<_, Option<StaffId>>(24)?,
                        r.get::<_, Option<i64>>(25)?,
                        r.get::<_, Option<String>>(26)?,
                    ),
                    (
                        r.get::<_, Option<String>>(27)?,
                        r.get::<_, Option<String>>(28)?,
                        r.get::<_, Option<String>>(29)?,
                        r.get::<_, Option<String>>(30)?,
                    ),
                ))
            },
        )
        .optional()?;
    let Some((a, b, d, e)) = row else {
        return Ok(None);
    };
    let (id, urgency, from, to, specialty, p_name, p_birth, p_sex, summary, question) = a;
    let (requested_by, created_at, ctv, c_exam, c_third, c_rec, declined_at, reason, cons_id) = b;
    let (
        starts_at,
        duration_min,
        chair,
        secretary,
        conclusion,
        conclusion_by,
        conclusion_at,
        k_status,
    ) = d;
    // Kept apart from the query above: the cancellation came later.
    let (cancelled_at, cancel_reason): (Option<i64>, Option<String>) = c.query_row(
        "SELECT cancelled_at, cancel_reason FROM conference_requests WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (p_address, p_record, p_citizen, plan) = e;
    let status = if declined_at.is_some() {
        Status::Declined
    } else if cancelled_at.is_some() {
        Status::Cancelled
    } else if cons_id.is_none() {
        Status::Requested
    } else if k_status.as_deref() == Some("ended") {
        Status::Held
    } else {
        Status::Scheduled
    };
    let invitees = invitees(c, id)?;
    let attachments: Vec<Value> = {
        let mut st = c.prepare(
            "SELECT id, name, content_type, size, sha256, uploaded_at
             FROM conference_attachments WHERE request_id = ?1 ORDER BY id",
        )?;
        st.query_map([id], |r| {
            Ok(json!({
                "id": r.get::<_, i64>(0)?,
                "name": r.get::<_, String>(1)?,
                "content_type": r.get::<_, String>(2)?,
                "size": r.get::<_, i64>(3)?,
                "sha256": r.get::<_, String>(4)?,
                "uploaded_at": r.get::<_, i64>(5)?,
            }))
        })?
        .collect::<rusqlite::Result<_>>()?
    };
    let from_ref = facility_ref(c, from)?;
    let requester = person(c, requested_by)?;
    let schedule = match (&cons_id, chair) {
        (Some(cid), Some(chair)) => {
            let chair_p = person(c, chair)?;
            let inv: Vec<Value> = invitees
                .iter()
                .map(|s| person(c, *s))
                .collect::<rusqlite::Result<_>>()?;
            json!({
                "starts_at": starts_at,
                "duration_min": duration_min,
                "consultation_id": cid,
                "chair": {"staff_id": chair, "name": chair_p["name"],
                          "licence_number": chair_p["licence_number"]},
                "invitees": inv,
            })
        }
        _ => Value::Null,
    };
    let conclusion_json = match (conclusion, conclusion_by) {
        (Some(text), Some(by)) => {
            let p = person(c, by)?;
            json!({"text": text, "management_plan": plan,
                   "by": {"staff_id": by, "name": p["name"]}, "at": conclusion_at})
        }
        _ => Value::Null,
    };
    let json = json!({
        "id": id,
        "status": status.as_str(),
        "urgency": urgency,
        "from_facility": from_ref,
        "to_facility": facility_ref(c, to)?,
        "specialty": specialty,
        "patient": {"name": p_name, "birth_year": p_birth, "sex": p_sex,
                    "address": p_address, "record_number": p_record, "citizen_id": p_citizen},
        "summary": summary,
        "question": question,
        "requested_by": {
            "staff_id": requested_by,
            "name": requester["name"],
            "licence_number": requester["licence_number"],
        },
        "created_at": created_at,
        "consent": {
            "text_version": ctv,
            "remote_examination": c_exam,
            "third_parties": c_third,
            "recording": c_rec,
            "at": created_at,
        },
        "attachments": attachments,
        "schedule": schedule,
        "decline_reason": reason,
        "cancelled": cancelled_at.map(|at| json!({"at": at, "reason": cancel_reason})),
        "secretary_staff_id": secretary,
        "secretary": match secretary {
            Some(s) => {
                let p = person(c, s)?;
                json!({"staff_id": s, "name": p["name"], "licence_number": p["licence_number"]})
            }
            None => Value::Null,
        },
        "conclusion": conclusion_json,
    });
    Ok(Some(Request {
        id,
        status,
        from_facility: from,
        to_facility: to,
        requested_by,
        chair,
        secretary,
        consultation_id: cons_id,
        starts_at,
        duration_min,
        specialty: json["specialty"].as_str().unwrap_or_default().to_owned(),
        from_name: from_ref["name"].as_str().unwrap_or_default().to_owned(),
        invitees,
        json,
    }))
}

/// The parties of the conference held in `consultation_id`, if one is:
/// what the permissions on that consultation are decided by, beside its
/// facility (`authz::Parties`).
pub fn conference_parties(
    c: &Connection,
    consultation_id: &str,
) -> rusqlite::Result<Option<ConferenceParties>> {
    let row = c
        .query_row(
            "SELECT id, from_facility_id, chair_staff_id, secretary_staff_id
             FROM conference_requests WHERE consultation_id = ?1",
            [consultation_id],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, FacilityId>(1)?,
                    r.get::<_, Option<StaffId>>(2)?,
                    r.get::<_, Option<StaffId>>(3)?,
                ))
            },
        )
        .optional()?;
    let Some((id, requester, chair, secretary)) = row else {
        return Ok(None);
    };
    Ok(Some(ConferenceParties {
        requester,
        chair,
        secretary,
        invitees: invitees(c, id)?,
    }))
}

fn invitees(c: &Connection, request: i64) -> rusqlite::Result<Vec<StaffId>> {
    let mut st = c.prepare(
        "SELECT staff_id FROM conference_invitees WHERE request_id = ?1 ORDER BY staff_id",
    )?;
    st.query_map([request], |r| r.get(0))?.collect()
}

/// The chair each open conference's scheduler named, by consultation id: the
/// hub is told at start (`Input::ChairNamed`).
pub fn named_chairs(c: &Connection) -> rusqlite::Result<Vec<(String, StaffId)>> {
    let mut st = c.prepare(
        "SELECT r.consultation_id, r.chair_staff_id
         FROM conference_requests r JOIN consultations k ON k.id = r.consultation_id
         WHERE k.status = 'open' AND r.chair_staff_id IS NOT NULL",
    )?;
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
}

/// The conference request held in a consultation, for the record exports.
pub fn for_consultation(c: &Connection, consultation_id: &str) -> rusqlite::Result<Option<Value>> {
    let id: Option<i64> = c
        .query_row(
            "SELECT id FROM conference_requests WHERE consultation_id = ?1",
            [consultation_id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(match id {
        Some(id) => load(c, id)?.map(|r| r.json),
        None => None,
    })
}

impl Request {
    /// Who the request concerns, for the permission checks: it belongs to
    /// the facility asked.
    fn parties(&self) -> Parties {
        Parties {
            owner: Some(self.to_facility),
            conference: Some(ConferenceParties {
                requester: self.from_facility,
                chair: self.chair,
                secretary: self.secretary,
                invitees: self.invitees.clone(),
            }),
        }
    }
}

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

fn audit(state: &AppState, action: Action, room: Option<&str>, actor: &Actor, detail: Value) {
    state.store.audit(Entry {
        at: unix_now() as i64,
        action,
        consultation: room.map(str::to_owned),
        actor: actor.audit_name(),
        detail,
    });
}

/// Loads a request the actor may see: `not_found` for a request that does
/// not exist and for one they may not see alike (ids are not secrets, but
/// a district need not learn of another district's patients).
async fn visible(state: &AppState, actor: &Actor, id: i64) -> ApiResult<Request> {
    let r = state
        .store
        .call(move |c| load(c, id))
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such conference request"))?;
    if actor.may(Permission::See, &r.parties()) {
        Ok(r)
    } else {
        Err(ApiError::new(
            ErrorCode::NotFound,
            "no such conference request",
        ))
    }
}

async fn reload(state: &AppState, id: i64) -> ApiResult<Json<Value>> {
    let r = state
        .store
        .call(move |c| load(c, id))
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such conference request"))?;
    Ok(Json(r.json))
}

fn body<T>(r: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    r.map(|Json(v)| v)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))
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
struct NewRequest {
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
    req: Result<Json<NewRequest>, JsonRejection>,
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
    if !req.consent.remote_examination {
        return Err(ApiError::new(
            ErrorCode::ConsentRequired,
            "the patient must consent to remote examination before a conference is requested",
        ));
    }
    let text_version = required_text("consent.text_version", &req.consent.text_version, 64)?;
    let specialty = required_text("specialty", &req.specialty, 100)?;
    let summary = required_text("summary", &req.summary, 4000)?;
    let question = required_text("question", &req.question, 4000)?;
    let patient_name = required_text("patient.name", &req.patient.name, 100)?;
    if let Some(y) = req.patient.birth_year
        && !(1900..=2100).contains(&y)
    {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "patient.birth_year must be a year between 1900 and 2100",
        ));
    }
    let address = optional_text("patient.address", req.patient.address.take(), 300)?;
    let record_number = optional_text(
        "patient.record_number",
        req.patient.record_number.take(),
        50,
    )?;
    let citizen_id = req.patient.citizen_id.take().map(|c| c.as_str().to_owned());
    let to = req.to_facility_id;
    let target = state
        .store
        .call(move |c| directory::facility(c, to))
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such facility"))?;
    if !matches!(target.tier, Tier::Province | Tier::Cdc) || target.id == profile.facility.id {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "a conference is asked of an upper-level facility: a provincial hospital or the CDC",
        ));
    }
    let now = unix_now() as i64;
    let from = profile.facility.id;
    let by = profile.staff.id;
    let (urgency, sex) = (req.urgency, req.patient.sex);
    let birth = req.patient.birth_year;
    let consent = req.consent;
    let id = state
        .store
        .call(move |c| {
            c.execute(
                "INSERT INTO conference_requests(urgency, from_facility_id, to_facility_id,
                     specialty, patient_name, patient_birth_year, patient_sex, summary, question,
                     requested_by, created_at, consent_text_version, consent_remote_examination,
                     consent_third_parties, consent_recording, patient_address,
                     patient_record_number, patient_citizen_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 1, ?13, ?14, ?15, ?16, ?17)",
                params![
                    urgency.as_str(),
                    from,
                    to,
                    specialty,
                    patient_name,
                    birth,
                    sex.map(Sex::as_str),
                    summary,
                    question,
                    by,
                    now,
                    text_version,
                    consent.third_parties,
                    consent.recording,
                    address,
                    record_number,
                    citizen_id
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
        .map_err(internal)?;
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
    let all = state
        .store
        .call(|c| {
            let ids: Vec<i64> = {
                let mut st = c.prepare("SELECT id FROM conference_requests ORDER BY id DESC")?;
                st.query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?
            };
            let mut out = Vec::new();
            for id in ids {
                if let Some(r) = load(c, id)? {
                    out.push(r);
                }
            }
            Ok(out)
        })
        .await
        .map_err(internal)?;
    let list: Vec<Value> = all
        .into_iter()
        .filter(|r| actor.may(Permission::See, &r.parties()))
        .map(|r| r.json)
        .collect();
    Ok(Json(json!({ "conferences": list })))
}

async fn one(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    Ok(Json(visible(&state, &actor, id).await?.json))
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
    let data = data.map_err(|_| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("a file is 1 byte to {} MiB", MAX_ATTACHMENT_BYTES >> 20),
        )
    })?;

    let r = visible(&state, &actor, id).await?;
    actor.check(Permission::Attach, &r.parties())?;
    if matches!(
        r.status,
        Status::Held | Status::Declined | Status::Cancelled
    ) {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "the conference was held or declined: its file is closed",
        ));
    }
    let Query(q) = query
        .map_err(|_| ApiError::new(ErrorCode::BadRequest, "name the file: ?name=<file name>"))?;
    let name = required_text("name", &q.name, 200)?;
    if name
        .chars()
        .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "a file name has no slashes or control characters",
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if !ALLOWED_TYPES.contains(&content_type.as_str()) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "Content-Type {content_type:?} is not accepted; send one of {}",
                ALLOWED_TYPES.join(", ")
            ),
        ));
    }
    if data.is_empty() || data.len() > MAX_ATTACHMENT_BYTES {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("a file is 1 byte to {} MiB", MAX_ATTACHMENT_BYTES >> 20),
        ));
    }
    let digest = crate::hex(&crate::sha256(&data));
    let size = data.len() as i64;
    let now = unix_now() as i64;
    let who = actor.audit_name();
    let (d, ct, n) = (digest.clone(), content_type.clone(), name.clone());
    let aid = state
        .store
        .call(move |c| {
            c.execute(
                "INSERT INTO conference_attachments(request_id, name, content_type, size, sha256,
                     data, uploaded_by, uploaded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![id, n, ct, size, d, data.as_ref(), who, now],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
        .map_err(internal)?;
    audit(
        &state,
        Action::AttachmentAdded,
        r.consultation_id.as_deref(),
        &actor,
        json!({"request": id, "attachment": aid, "size": size, "sha256": digest}),
    );
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"id": aid, "name": name, "content_type": content_type, "size": size,
                    "sha256": digest, "uploaded_at": now}),
        ),
    ))
}

async fn download(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, aid)): Path<(i64, i64)>,
) -> ApiResult<Response> {
    let r = visible(&state, &actor, id).await?;
    let file = state
        .store
        .call(move |c| {
            c.query_row(
                "SELECT name, content_type, data FROM conference_attachments
                 WHERE id = ?1 AND request_id = ?2",
                params![aid, id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                    ))
                },
            )
            .optional()
        })
        .await
        .map_err(internal)?;
    let Some((name, content_type, data)) = file else {
        return Err(ApiError::new(ErrorCode::NotFound, "no such attachment"));
    };
    audit(
        &state,
        Action::AttachmentRead,
        r.consultation_id.as_deref(),
        &actor,
        json!({"request": id, "attachment": aid}),
    );
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
    60
}

/// The caller and the request, when the caller may schedule it and the
/// request is `want` (`conflict`, saying it is `expected`, otherwise).
async fn for_scheduler(
    state: &AppState,
    actor: Actor,
    id: i64,
    want: Status,
    expected: &str,
) -> ApiResult<(Actor, Request)> {
    let r = visible(state, &actor, id).await?;
    actor.check(Permission::Schedule, &r.parties())?;
    if r.status != want {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("the request is {}, not {expected}", r.status.as_str()),
        ));
    }
    Ok((actor, r))
}

/// The caller and the request, when the caller may schedule or decline it
/// and it still waits for that decision.
async fn awaiting_decision(state: &AppState, actor: Actor, id: i64) -> ApiResult<(Actor, Request)> {
    for_scheduler(
        state,
        actor,
        id,
        Status::Requested,
        "waiting to be scheduled",
    )
    .await
}

async fn schedule(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    req: Result<Json<ScheduleReq>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let (actor, r) = awaiting_decision(&state, actor, id).await?;
    let req = body(req)?;
    if !(15..=240).contains(&req.duration_min) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "duration_min must be between 15 and 240",
        ));
    }
    let now = unix_now();
    let ends = req.starts_at + req.duration_min * 60;
    if ends <= now || req.starts_at > now + 366 * 86_400 {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "starts_at must be in the coming year and the conference not already over",
        ));
    }
    // A doctor scheduling for their facility chairs it themselves unless
    // they can see the others (they cannot list staff).
    if let Some(p) = actor.profile()
        && p.staff.role == StaffRole::Doctor
        && req.chair_staff_id != p.staff.id
    {
        return Err(forbidden("a doctor who schedules a conference chairs it"));
    }
    let mut invitees: Vec<StaffId> = vec![r.requested_by, req.chair_staff_id];
    invitees.extend(req.invite_staff_ids.iter().copied());
    invitees.sort();
    invitees.dedup();
    if invitees.len() > MAX_INVITEES {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("at most {MAX_INVITEES} invitees"),
        ));
    }
    let check = invitees.clone();
    let chair = req.chair_staff_id;
    let problem = state
        .store
        .call(move |c| {
            for s in &check {
                match directory::staff(c, *s)? {
                    None => return Ok(Some(format!("no staff member {s}"))),
                    Some(st) if st.disabled => {
                        return Ok(Some(format!("staff member {s} is disabled")));
                    }
                    Some(st)
                        if *s == chair
                            && !matches!(st.role, StaffRole::Doctor | StaffRole::Nurse) =>
                    {
                        return Ok(Some("the chair must be a doctor or nurse".into()));
                    }
                    Some(_) => {}
                }
            }
            Ok(None)
        })
        .await
        .map_err(internal)?;
    if let Some(p) = problem {
        return Err(ApiError::new(ErrorCode::BadRequest, p));
    }
    let title = format!("Hội chẩn — {} — {}", r.specialty, r.from_name);
    let row = http::create(
        &state,
        ConsultationKind::Conference,
        title,
        Some(r.to_facility),
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
            staff: chair.0 as u64,
        }))
        .await;
    let cid = row.id.clone();
    let who = actor.audit_name();
    let (starts, dur) = (req.starts_at as i64, req.duration_min as i64);
    let inv = invitees.clone();
    let updated = state
        .store
        .call(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE conference_requests SET consultation_id = ?1, starts_at = ?2,
                     duration_min = ?3, chair_staff_id = ?4, scheduled_by = ?5
                 WHERE id = ?6 AND consultation_id IS NULL AND declined_at IS NULL",
                params![cid, starts, dur, chair, who, id],
            )?;
            if n == 1 {
                for s in &inv {
                    tx.execute(
                        "INSERT OR IGNORE INTO conference_invitees(request_id, staff_id) VALUES (?1, ?2)",
                        params![id, s],
                    )?;
                }
            }
            tx.commit()?;
            Ok(n == 1)
        })
        .await
        .map_err(internal)?;
    if !updated {
        // Someone else scheduled or declined it meanwhile.
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "the request was scheduled or declined meanwhile",
        ));
    }
    audit(
        &state,
        Action::ConferenceScheduled,
        Some(&row.id),
        &actor,
        json!({"request": id, "starts_at": starts, "chair": chair, "invitees": invitees}),
    );
    reload(&state, id).await
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
    let (actor, _) = awaiting_decision(&state, actor, id).await?;
    let reason = required_text("reason", &body(req)?.reason, 1000)?;
    let now = unix_now() as i64;
    let rs = reason.clone();
    state
        .store
        .call(move |c| {
            c.execute(
                "UPDATE conference_requests SET declined_at = ?1, decline_reason = ?2
                 WHERE id = ?3 AND consultation_id IS NULL AND declined_at IS NULL",
                params![now, rs, id],
            )
        })
        .await
        .map_err(internal)?;
    audit(
        &state,
        Action::ConferenceDeclined,
        None,
        &actor,
        json!({"request": id}),
    );
    reload(&state, id).await
}

// ---------------------------------------------------------------------------
// Changing a scheduled conference: another time, or calling it off.

/// The caller and the request, when the caller may schedule it and it is
/// scheduled but nobody has entered its room yet (a conference under way
/// is ended, not moved).
async fn scheduled_not_started(
    state: &AppState,
    actor: Actor,
    id: i64,
) -> ApiResult<(Actor, Request)> {
    let (actor, r) = for_scheduler(state, actor, id, Status::Scheduled, "scheduled").await?;
    let cid = r.consultation_id.clone().unwrap_or_default();
    let started: bool = state
        .store
        .call(move |c| {
            c.query_row(
                "SELECT EXISTS(SELECT 1 FROM attendance WHERE consultation_id = ?1)",
                [cid],
                |r| r.get(0),
            )
        })
        .await
        .map_err(internal)?;
    if started {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "the conference has started: end it from the room instead",
        ));
    }
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
    let (actor, r) = scheduled_not_started(&state, actor, id).await?;
    let req = body(req)?;
    let duration = req
        .duration_min
        .unwrap_or(r.duration_min.unwrap_or(60) as u64);
    if !(15..=240).contains(&duration) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "duration_min must be between 15 and 240",
        ));
    }
    let now = unix_now();
    if req.starts_at <= now || req.starts_at > now + 366 * 86_400 {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "starts_at must be in the future, within a year",
        ));
    }
    let before = r.starts_at;
    let (starts, dur) = (req.starts_at as i64, duration as i64);
    let changed = state
        .store
        .call(move |c| {
            c.execute(
                "UPDATE conference_requests SET starts_at = ?1, duration_min = ?2
                 WHERE id = ?3 AND cancelled_at IS NULL",
                params![starts, dur, id],
            )
        })
        .await
        .map_err(internal)?;
    if changed != 1 {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "the request was cancelled meanwhile",
        ));
    }
    audit(
        &state,
        Action::ConferenceRescheduled,
        r.consultation_id.as_deref(),
        &actor,
        json!({"request": id, "starts_at": starts, "duration_min": dur, "was": before}),
    );
    reload(&state, id).await
}

async fn cancel(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<i64>,
    req: Result<Json<ReasonReq>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let (actor, r) = scheduled_not_started(&state, actor, id).await?;
    let reason = required_text("reason", &body(req)?.reason, 1000)?;
    let now = unix_now() as i64;
    let cid = r.consultation_id.clone().unwrap_or_default();
    let why = reason.clone();
    let changed = state
        .store
        .call(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE conference_requests SET cancelled_at = ?1, cancel_reason = ?2
                 WHERE id = ?3 AND cancelled_at IS NULL",
                params![now, why, id],
            )?;
            // Its room closes: links into it lead to the end screen.
            tx.execute(
                "UPDATE consultations SET status = 'ended', ended_at = ?1, end_reason = 'cancelled'
                 WHERE id = ?2 AND status = 'open'",
                params![now, cid],
            )?;
            tx.commit()?;
            Ok(n)
        })
        .await
        .map_err(internal)?;
    if changed != 1 {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "the request was cancelled meanwhile",
        ));
    }
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
    reload(&state, id).await
}

// ---------------------------------------------------------------------------
// Links

/// The window a conference's links are valid in: from 15 minutes before its
/// start to 30 minutes after its planned end. `None` once it is over.
fn window(r: &Request, now: u64) -> Option<(Option<u64>, u64)> {
    let starts = r.starts_at? as u64;
    let ends = starts + r.duration_min.unwrap_or(60) as u64 * 60 + GRACE_AFTER_SECS;
    if ends <= now {
        return None;
    }
    let opens = starts.saturating_sub(OPENS_BEFORE_SECS);
    Some(((opens > now).then_some(opens), ends - now))
}

/// The room of a scheduled conference and the window its links get now.
fn link_window(r: &Request) -> ApiResult<(RoomId, Option<u64>, u64)> {
    let room = open_room(r)?;
    let Some((not_before, ttl)) = window(r, unix_now()) else {
        return Err(ApiError::new(
            ErrorCode::TokenExpired,
            "the conference's time is over",
        ));
    };
    Ok((room, not_before, ttl))
}

fn open_room(r: &Request) -> ApiResult<RoomId> {
    if r.status != Status::Scheduled {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("the request is {}, not scheduled", r.status.as_str()),
        ));
    }
    let cid = r.consultation_id.as_deref().unwrap_or_default();
    RoomId::parse(cid).map_err(|_| ApiError::new(ErrorCode::Internal, "bad room id"))
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
    let role = match profile.staff.role {
        StaffRole::Doctor => Role::Doctor,
        StaffRole::Nurse => Role::Nurse,
        // Coordinators and administrators attend without a clinical role.
        StaffRole::Coordinator | StaffRole::Admin => Role::Guest,
    };
    let name = match &profile.practitioner {
        Some(p) => format!("{} {}", p.title, profile.staff.name),
        None => profile.staff.name.clone(),
    };
    let spec = LinkSpec {
        not_before,
        // Invitees were chosen by the scheduler: no lobby for them.
        pre_admitted: true,
        staff_id: Some(profile.staff.id.0 as u64),
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
    Ok(Json(http::mint(&state, &room, spec).await?))
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
        Json(http::mint(&state, &room, spec).await?),
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
    if !matches!(r.status, Status::Scheduled | Status::Held) {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("the request is {}", r.status.as_str()),
        ));
    }
    let req = body(req)?;
    let text = required_text("text", &req.text, 20_000)?;
    let plan = optional_text("management_plan", req.management_plan, 20_000)?;
    let digest = crate::hex(&crate::sha256(text.as_bytes()));
    let plan_digest = plan
        .as_ref()
        .map(|p| crate::hex(&crate::sha256(p.as_bytes())));
    let now = unix_now() as i64;
    state
        .store
        .call(move |c| {
            c.execute(
                "UPDATE conference_requests SET conclusion = ?1, conclusion_by = ?2, conclusion_at = ?3,
                     management_plan = ?5
                 WHERE id = ?4",
                params![text, who, now, id, plan],
            )
        })
        .await
        .map_err(internal)?;
    audit(
        &state,
        Action::ConclusionEntered,
        r.consultation_id.as_deref(),
        &actor,
        json!({"request": r.id, "sha256": digest, "management_plan_sha256": plan_digest}),
    );
    reload(&state, id).await
}
