//! On-call queues and their rosters, as stored: a queue is a specialty at a
//! facility ("Nội khoa — BVĐK tỉnh"); a roster says which staff are on call
//! for it and when. Who is waiting and who is available right now is live
//! state, owned by the signaling hub (`tuxa_signaling::queue`), not here.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::{Value, json};
use tuxa_protocol::ErrorCode;

use crate::app::AppState;
use crate::audit::{Action, Entry};
use crate::authz::{self, Actor};
use crate::clock::unix_now;
use crate::error::{ApiError, body, optional_text, required_text};
use crate::gate::{Access, Routes};
use tuxa_records::roster::{NewWindow, masked_phone};
use tuxa_records::{FacilityId, StaffId};
use tuxa_records::{QueueId, UnixTime};

// The types and rules are the domain's (tuxa-records' `roster`), the SQL the
// store's; other modules reach them through this one.
pub use tuxa_records::roster::{Queue, RosterEntry, VIETNAM_OFFSET_SECS};
pub use tuxa_store::queues::{on_call, queue, queues, roster};

/// Creates a queue (idempotent on facility + specialty), now.
pub fn create_queue(
    c: &Connection,
    facility: FacilityId,
    specialty: &str,
    name: Option<&str>,
) -> rusqlite::Result<Option<Queue>> {
    tuxa_store::queues::create_queue(c, facility, specialty, name, UnixTime(unix_now() as i64))
}

/// A window for every day from `start_min` to `end_min` (demo data).
pub fn add_roster(
    c: &Connection,
    queue_id: QueueId,
    staff: StaffId,
    weekday: Option<u8>,
    start_min: u16,
    end_min: u16,
) -> rusqlite::Result<i64> {
    let window = tuxa_records::roster::NewWindow {
        weekday,
        start_min,
        end_min,
    };
    tuxa_store::queues::add_roster(c, queue_id, staff, window)
}

pub fn routes() -> Routes {
    Routes::new()
        .post("/api/v1/queues", Access::STAFF, create)
        .get("/api/v1/queues", Access::STAFF, list)
        .post("/api/v1/queues/{id}/roster", Access::STAFF, add_window)
        .get("/api/v1/queues/{id}/roster", Access::STAFF, get_roster)
        // What the queue page shows a patient before they join: public.
        .get("/api/v1/queues/{id}/public", Access::Public, public)
        .get("/api/v1/queues/{id}/tickets", Access::STAFF, tickets)
        .delete(
            "/api/v1/queues/{id}/tickets/{handle}",
            Access::STAFF,
            clear_ticket,
        )
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!("queues: {e}");
    ApiError::new(ErrorCode::Internal, "internal error; see the server log")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewQueue {
    facility_id: i64,
    specialty: String,
    #[serde(default)]
    name: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    actor: Actor,
    req: Result<Json<NewQueue>, JsonRejection>,
) -> Result<(StatusCode, Json<Queue>), ApiError> {
    let req = body(req)?;
    let facility = FacilityId(req.facility_id);
    actor.require_in(authz::COORDINATION, Some(facility), "create queues")?;
    let specialty = required_text("specialty", &req.specialty, 100)?;
    let name = optional_text("name", req.name, 200)?;
    let q = state
        .store
        .call(move |c| create_queue(c, facility, &specialty, name.as_deref()))
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such facility"))?;
    let _ = state
        .hub
        .send(crate::hub_task::HubMsg::Input(
            tuxa_signaling::Input::QueueOpened {
                queue: q.id,
                name: q.name.clone(),
                facility: q.facility_id,
            },
        ))
        .await;
    state.store.audit(Entry {
        at: unix_now() as i64,
        action: Action::QueueCreated,
        consultation: None,
        actor: actor.audit_name(),
        detail: json!({"queue": q.id, "facility": q.facility_id, "specialty": q.specialty}),
    });
    Ok((StatusCode::CREATED, Json(q)))
}

/// The admin sees every queue; a signed-in staff member those of the
/// facilities they may see.
async fn list(State(state): State<AppState>, actor: Actor) -> Result<Json<Value>, ApiError> {
    let all = state.store.call(|c| queues(c)).await.map_err(internal)?;
    let visible: Vec<Queue> = all
        .into_iter()
        .filter(|q| actor.sees(Some(q.facility_id)))
        .collect();
    Ok(Json(json!({ "queues": visible })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowReq {
    staff_id: i64,
    /// 0 = Monday … 6 = Sunday; absent: every day.
    #[serde(default)]
    weekday: Option<u8>,
    start: String,
    end: String,
}

async fn add_window(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<QueueId>,
    req: Result<Json<WindowReq>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    actor.require(authz::COORDINATION, "change rosters")?;
    let q = state
        .store
        .call(move |c| queue(c, id))
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such queue"))?;
    actor.require_in(authz::COORDINATION, Some(q.facility_id), "change rosters")?;
    let req = body(req)?;
    let window = NewWindow::parse(req.weekday, &req.start, &req.end)?;
    let staff = StaffId(req.staff_id);
    let result = state
        .store
        .run(move |c| tuxa_store::queues::add_window(c, id, staff, window))
        .await?;
    let (weekday, start, end) = (window.weekday, window.start_min, window.end_min);
    state.store.audit(Entry {
        at: unix_now() as i64,
        action: Action::RosterChanged,
        consultation: None,
        actor: actor.audit_name(),
        detail: json!({"queue": id, "staff": staff, "weekday": weekday, "start": start, "end": end}),
    });
    Ok((StatusCode::CREATED, Json(json!({"id": result}))))
}

async fn get_roster(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<QueueId>,
) -> Result<Json<Value>, ApiError> {
    let q = state
        .store
        .call(move |c| queue(c, id))
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such queue"))?;
    actor.require_in(authz::COORDINATION, Some(q.facility_id), "read rosters")?;
    let entries = state
        .store
        .call(move |c| roster(c, id))
        .await
        .map_err(internal)?;
    Ok(Json(json!({ "roster": entries })))
}

fn ticket_json(t: &tuxa_signaling::StaffTicket, now: std::time::Instant) -> Value {
    use tuxa_signaling::queue::PatientStage;
    let (stage, position) = match t.view.stage {
        PatientStage::Queued { position } => ("queued", Some(position)),
        PatientStage::Offered { .. } => ("offered", None),
        PatientStage::WaitingForDoctor { .. } => ("waiting_for_doctor", None),
        PatientStage::InCall { .. } => ("in_call", None),
    };
    json!({
        "handle": t.handle,
        "name": t.view.name,
        "phone": masked_phone(&t.view.phone),
        "stage": stage,
        "position": position,
        "waited_secs": t.waited.as_secs(),
        "away_secs": t.view.away_since.map(|a| now.saturating_duration_since(a).as_secs()),
        "same_address": t.view.same_address,
        "same_phone": t.view.same_phone,
        "flags": t.view.flags.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
    })
}

/// The queue, if the caller may look after its tickets: its facility's
/// coordinators and doctors (and whoever sees that facility).
async fn ticket_keeper(state: &AppState, actor: Actor, id: QueueId) -> Result<Actor, ApiError> {
    actor.require(authz::CARE, "look after queue tickets")?;
    let q = state
        .store
        .call(move |c| queue(c, id))
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such queue"))?;
    actor.require_in(authz::CARE, Some(q.facility_id), "look after queue tickets")?;
    Ok(actor)
}

/// The live tickets of a queue with what makes them suspicious.
async fn tickets(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<QueueId>,
) -> Result<Json<Value>, ApiError> {
    ticket_keeper(&state, actor, id).await?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    state
        .hub
        .send(crate::hub_task::HubMsg::QueueTickets {
            queue: id,
            reply: tx,
        })
        .await
        .map_err(internal)?;
    let now = std::time::Instant::now();
    // A queue the hub does not know yet (just made) has no tickets.
    let list = rx.await.map_err(internal)?.unwrap_or_default();
    let tickets: Vec<Value> = list.iter().map(|t| ticket_json(t, now)).collect();
    Ok(Json(json!({ "queue": id, "tickets": tickets })))
}

/// Takes a ticket out of the queue (the patient's page is told `cleared`);
/// audited with what the ticket looked like.
async fn clear_ticket(
    State(state): State<AppState>,
    actor: Actor,
    Path((id, handle)): Path<(QueueId, String)>,
) -> Result<Json<Value>, ApiError> {
    let actor = ticket_keeper(&state, actor, id).await?;
    if handle.len() != 16 || !handle.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "a ticket is named by its 16-character handle from GET …/tickets",
        ));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    state
        .hub
        .send(crate::hub_task::HubMsg::ClearTicket {
            queue: id,
            handle: handle.to_ascii_lowercase(),
            reply: tx,
        })
        .await
        .map_err(internal)?;
    let cleared = rx
        .await
        .map_err(internal)?
        .map_err(|e| ApiError::new(ErrorCode::NotFound, e.to_string()))?;
    let json = ticket_json(&cleared, std::time::Instant::now());
    state.store.audit(Entry {
        at: unix_now() as i64,
        action: Action::QueueTicketCleared,
        consultation: None,
        actor: actor.audit_name(),
        // The handle, never the ticket (which resumes the place); no name.
        detail: json!({
            "queue": id, "ticket": cleared.handle, "stage": json["stage"],
            "waited_secs": json["waited_secs"], "flags": json["flags"],
            "same_address": json["same_address"], "same_phone": json["same_phone"],
        }),
    });
    Ok(Json(json!({ "cleared": json })))
}

/// What a patient's queue page shows before anything is asked of them.
async fn public(
    State(state): State<AppState>,
    Path(id): Path<QueueId>,
) -> Result<Json<Value>, ApiError> {
    let q = state
        .store
        .call(move |c| queue(c, id))
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such queue"))?;
    Ok(Json(
        json!({"id": q.id, "name": q.name, "facility": q.facility_name, "specialty": q.specialty}),
    ))
}
