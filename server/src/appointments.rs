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

use crate::app::{AppState, LinkSpec};
use crate::authz::{self, Actor};
use crate::clock::unix_now;
use crate::error::{ApiError, optional_text, required_text};
use crate::gate::{Access, Routes};
use tuxa_records::UnixTime;

use tuxa_records::appointment::Slot;
pub use tuxa_records::appointment::{GRACE_AFTER_SECS, OPENS_BEFORE_SECS};

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
    let slot = Slot::new(req.starts_at, req.duration_min, now)?;
    let (ends_at, expires_at) = (slot.ends_at, slot.expires_at);
    let patient_name = required_text("patient name", &req.patient.name, 100)?;
    let doctor_name = required_text("doctor name", &req.doctor.name, 100)?;
    let title = optional_text("title", req.title, 200)?
        .unwrap_or_else(|| "Lịch hẹn khám từ xa / remote appointment".to_owned());
    let row = state
        .create_consultation(
            ConsultationKind::Visit,
            title,
            actor.facility(),
            &actor.audit_name(),
        )
        .await?;
    let room = RoomId::parse(&row.id).map_err(|_| ApiError::new(ErrorCode::Internal, "room id"))?;
    let opens_at = slot.opens_at;
    let ttl = expires_at - now;
    let doctor = state
        .mint_link(
            &room,
            LinkSpec {
                not_before: Some(opens_at),
                actor: actor.audit_name(),
                ..LinkSpec::new(Role::Doctor, doctor_name, req.doctor.facility, ttl)
            },
        )
        .await?;
    let patient = state
        .mint_link(
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
            tuxa_store::consultations::insert_appointment(
                c,
                &cid,
                starts_at,
                duration,
                UnixTime(now as i64),
            )
        })
        .await
        .map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "consultation": row.id,
            "starts_at": req.starts_at,
            "ends_at": ends_at,
            "opens_at": opens_at,
            "expires_at": expires_at,
            "doctor_link": doctor.url,
            "patient_link": patient.url,
        })),
    ))
}

async fn list(State(state): State<AppState>, actor: Actor) -> Result<Json<Value>, ApiError> {
    actor.require(authz::CARE, "list appointments")?;
    let now = unix_now() as i64;
    let rows: Vec<_> = state
        .store
        .call(move |c| tuxa_store::consultations::upcoming_appointments(c, UnixTime(now)))
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .filter(|a| actor.sees(a.facility_id))
        .collect();
    Ok(Json(json!({ "appointments": rows })))
}
