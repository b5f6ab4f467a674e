//! Appointments: a visit at a set time. Each gets its own consultation and
//! links that open 15 minutes before the start and expire after the end,
//! so a link sent days ahead cannot be used early, nor kept for later.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tuxa_protocol::{ConsultationKind, ErrorCode, Role, RoomId};

use crate::authz::{self, Actor};
use crate::gate::{Access, Routes};
use crate::http::{self, ApiError, AppState, LinkSpec, optional_text, required_text};
use crate::hub_task::unix_now;

/// Links open this long before the appointment.
pub const OPENS_BEFORE_SECS: u64 = 15 * 60;
/// And stay usable this long after its planned end (a visit that runs over).
pub const GRACE_AFTER_SECS: u64 = 30 * 60;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Person {
    name: String,
    #[serde(default)]
    facility: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAppointment {
    /// Unix seconds.
    starts_at: u64,
    #[serde(default = "default_duration")]
    duration_min: u64,
    #[serde(default)]
    title: Option<String>,
    patient: Person,
    doctor: Person,
}

fn default_duration() -> u64 {
    30
}

pub fn routes() -> Routes {
    Routes::new()
        .post("/api/v1/appointments", Access::STAFF, create)
        .get("/api/v1/appointments", Access::STAFF, list)
}

async fn create(
    State(state): State<AppState>,
    actor: Actor,
    req: Result<Json<NewAppointment>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    actor.require(authz::CARE, "make appointments")?;
    let Json(req) = req.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    let now = unix_now();
    if !(5..=240).contains(&req.duration_min) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "duration_min must be between 5 and 240",
        ));
    }
    let ends_at = req.starts_at + req.duration_min * 60;
    let expires_at = ends_at + GRACE_AFTER_SECS;
    if expires_at <= now {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "the appointment is in the past",
        ));
    }
    if req.starts_at > now + 366 * 86_400 {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "the appointment is more than a year ahead",
        ));
    }
    let patient_name = required_text("patient name", &req.patient.name, 100)?;
    let doctor_name = required_text("doctor name", &req.doctor.name, 100)?;
    let title = optional_text("title", req.title, 200)?
        .unwrap_or_else(|| "Lịch hẹn khám từ xa / remote appointment".to_owned());
    let row = http::create(
        &state,
        ConsultationKind::Visit,
        title,
        actor.facility(),
        &actor.audit_name(),
    )
    .await?;
    let room = RoomId::parse(&row.id).map_err(|_| ApiError::new(ErrorCode::Internal, "room id"))?;
    let opens_at = req.starts_at.saturating_sub(OPENS_BEFORE_SECS);
    let ttl = expires_at - now;
    let doctor = http::mint(
        &state,
        &room,
        LinkSpec {
            not_before: Some(opens_at),
            actor: actor.audit_name(),
            ..LinkSpec::new(Role::Doctor, doctor_name, req.doctor.facility, ttl)
        },
    )
    .await?;
    let patient = http::mint(
        &state,
        &room,
        LinkSpec {
            not_before: Some(opens_at),
            actor: actor.audit_name(),
            ..LinkSpec::new(Role::Patient, patient_name, req.patient.facility, ttl)
        },
    )
    .await?;
    let (starts_at, duration) = (req.starts_at as i64, req.duration_min as i64);
    let cid = row.id.clone();
    state
        .store
        .call(move |c| {
            c.execute(
                "INSERT INTO appointments(consultation_id, starts_at, duration_min, created_at) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![cid, starts_at, duration, now as i64],
            )
        })
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "consultation": row.id,
            "starts_at": req.starts_at,
            "ends_at": ends_at,
            "opens_at": opens_at,
            "expires_at": expires_at,
            "doctor_link": doctor["url"],
            "patient_link": patient["url"],
        })),
    ))
}

async fn list(State(state): State<AppState>, actor: Actor) -> Result<Json<Value>, ApiError> {
    actor.require(authz::CARE, "list appointments")?;
    let now = unix_now() as i64;
    let rows = state
        .store
        .call(move |c| {
            let mut st = c.prepare(
                "SELECT a.consultation_id, a.starts_at, a.duration_min, k.title, k.status, k.facility_id
                 FROM appointments a JOIN consultations k ON k.id = a.consultation_id
                 WHERE a.starts_at + a.duration_min * 60 >= ?1 ORDER BY a.starts_at",
            )?;
            st.query_map([now], |r| {
                let facility: Option<crate::directory::FacilityId> = r.get(5)?;
                Ok((facility, json!({
                    "consultation": r.get::<_, String>(0)?,
                    "starts_at": r.get::<_, i64>(1)?,
                    "duration_min": r.get::<_, i64>(2)?,
                    "title": r.get::<_, String>(3)?,
                    "status": r.get::<_, String>(4)?,
                })))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let rows: Vec<Value> = rows
        .into_iter()
        .filter(|(f, _)| actor.sees(*f))
        .map(|(_, v)| v)
        .collect();
    Ok(Json(json!({ "appointments": rows })))
}
