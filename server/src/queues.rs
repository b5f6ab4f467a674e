//! On-call queues and their rosters, as stored: a queue is a specialty at a
//! facility ("Nội khoa — BVĐK tỉnh"); a roster says which staff are on call
//! for it and when. Who is waiting and who is available right now is live
//! state, owned by the signaling hub (`tuxa_signaling::queue`), not here.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tuxa_protocol::ErrorCode;

use crate::audit::{Action, Entry};
use crate::authz::{self, Actor};
use crate::directory::{self, FacilityId, StaffId};
use crate::http::{ApiError, AppState, check_admin, optional_text, required_text};
use crate::hub_task::unix_now;

/// Vietnam has one time zone and no daylight saving: rosters are in UTC+7.
pub const VIETNAM_OFFSET_SECS: i64 = 7 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Queue {
    pub id: i64,
    pub facility_id: FacilityId,
    pub facility_name: String,
    pub specialty: String,
    pub name: String,
}

/// One on-call window: a weekday (0 = Monday … 6 = Sunday, or every day)
/// and minutes since local midnight, `start < end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RosterEntry {
    pub id: i64,
    pub queue_id: i64,
    pub staff_id: StaffId,
    pub weekday: Option<u8>,
    pub start_min: u16,
    pub end_min: u16,
}

impl RosterEntry {
    /// Whether the window covers the Unix time `at`.
    pub fn covers(&self, at: i64) -> bool {
        let local = at + VIETNAM_OFFSET_SECS;
        let days = local.div_euclid(86_400);
        // 1970-01-01 was a Thursday (weekday 3 with Monday = 0).
        let weekday = ((days + 3).rem_euclid(7)) as u8;
        let minute = (local.rem_euclid(86_400) / 60) as u16;
        self.weekday.is_none_or(|w| w == weekday)
            && self.start_min <= minute
            && minute < self.end_min
    }
}

pub fn queues(c: &Connection) -> rusqlite::Result<Vec<Queue>> {
    let mut st = c.prepare(
        "SELECT q.id, q.facility_id, f.name, q.specialty, q.name
         FROM queues q JOIN facilities f ON f.id = q.facility_id ORDER BY q.id",
    )?;
    st.query_map([], row_to_queue)?.collect()
}

pub fn queue(c: &Connection, id: i64) -> rusqlite::Result<Option<Queue>> {
    c.query_row(
        "SELECT q.id, q.facility_id, f.name, q.specialty, q.name
         FROM queues q JOIN facilities f ON f.id = q.facility_id WHERE q.id = ?1",
        [id],
        row_to_queue,
    )
    .optional()
}

fn row_to_queue(r: &rusqlite::Row<'_>) -> rusqlite::Result<Queue> {
    Ok(Queue {
        id: r.get(0)?,
        facility_id: r.get(1)?,
        facility_name: r.get(2)?,
        specialty: r.get(3)?,
        name: r.get(4)?,
    })
}

pub fn roster(c: &Connection, queue_id: i64) -> rusqlite::Result<Vec<RosterEntry>> {
    let mut st = c.prepare(
        "SELECT id, queue_id, staff_id, weekday, start_min, end_min
         FROM rosters WHERE queue_id = ?1 ORDER BY id",
    )?;
    st.query_map([queue_id], |r| {
        Ok(RosterEntry {
            id: r.get(0)?,
            queue_id: r.get(1)?,
            staff_id: r.get(2)?,
            weekday: r.get(3)?,
            start_min: r.get(4)?,
            end_min: r.get(5)?,
        })
    })?
    .collect()
}

/// Whether `staff` is on call for `queue_id` at Unix time `at`: only they
/// may mark themselves available for it.
pub fn on_call(c: &Connection, queue_id: i64, staff: StaffId, at: i64) -> rusqlite::Result<bool> {
    Ok(roster(c, queue_id)?
        .iter()
        .any(|e| e.staff_id == staff && e.covers(at)))
}

/// Creates a queue (idempotent on facility + specialty).
pub fn create_queue(
    c: &Connection,
    facility: FacilityId,
    specialty: &str,
    name: Option<&str>,
) -> rusqlite::Result<Option<Queue>> {
    let Some(f) = directory::facility(c, facility)? else {
        return Ok(None);
    };
    let name = name
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{specialty} — {}", f.name));
    c.execute(
        "INSERT INTO queues(facility_id, specialty, name, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(facility_id, specialty) DO NOTHING",
        params![facility, specialty, name, unix_now() as i64],
    )?;
    let id: i64 = c.query_row(
        "SELECT id FROM queues WHERE facility_id = ?1 AND specialty = ?2",
        params![facility, specialty],
        |r| r.get(0),
    )?;
    queue(c, id)
}

pub fn add_roster(
    c: &Connection,
    queue_id: i64,
    staff: StaffId,
    weekday: Option<u8>,
    start_min: u16,
    end_min: u16,
) -> rusqlite::Result<i64> {
    c.execute(
        "INSERT INTO rosters(queue_id, staff_id, weekday, start_min, end_min) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![queue_id, staff, weekday, start_min, end_min],
    )?;
    Ok(c.last_insert_rowid())
}

/// "07:30" → 450.
fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/v1/queues", post(create).get(list))
        .route(
            "/api/v1/queues/{id}/roster",
            post(add_window).get(get_roster),
        )
        .route("/api/v1/queues/{id}/public", get(public))
        // QR codes and posters of queue links, QR codes of join links (qr.rs).
        .route("/q/{queue}/qr.svg", get(crate::qr::queue_svg))
        .route("/q/{queue}/poster", get(crate::qr::queue_poster))
        .route("/api/v1/qr", post(crate::qr::link_svg))
        .route("/api/v1/queues/{id}/tickets", get(tickets))
        .route("/api/v1/queues/{id}/tickets/{handle}", delete(clear_ticket))
}

fn body<T>(r: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    r.map(|Json(v)| v)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))
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
    headers: HeaderMap,
    req: Result<Json<NewQueue>, JsonRejection>,
) -> Result<(StatusCode, Json<Queue>), ApiError> {
    let req = body(req)?;
    let facility = FacilityId(req.facility_id);
    let actor = Actor::from_headers(&state, &headers).await?;
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
                queue: q.id as u64,
                name: q.name.clone(),
                facility: q.facility_id.0 as u64,
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
async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let all = state.store.call(|c| queues(c)).await.map_err(internal)?;
    let visible: Vec<Queue> = if check_admin(&state, &headers).is_ok() {
        all
    } else {
        let me = crate::auth::signed_in(&state, &headers)
            .await
            .map_err(|_| {
                ApiError::new(ErrorCode::Unauthorized, "sign in, or send the admin key")
            })?;
        all.into_iter()
            .filter(|q| me.profile.may_see_facility(q.facility_id))
            .collect()
    };
    Ok(Json(json!({ "queues": visible })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWindow {
    staff_id: i64,
    /// 0 = Monday … 6 = Sunday; absent: every day.
    #[serde(default)]
    weekday: Option<u8>,
    start: String,
    end: String,
}

async fn add_window(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    req: Result<Json<NewWindow>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let actor = Actor::from_headers(&state, &headers).await?;
    actor.require(authz::COORDINATION, "change rosters")?;
    let q = state
        .store
        .call(move |c| queue(c, id))
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such queue"))?;
    actor.require_in(authz::COORDINATION, Some(q.facility_id), "change rosters")?;
    let req = body(req)?;
    if req.weekday.is_some_and(|w| w > 6) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "weekday is 0 (Monday) to 6 (Sunday)",
        ));
    }
    let (Some(start), Some(end)) = (parse_hhmm(&req.start), parse_hhmm(&req.end)) else {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "start and end are times like 07:30",
        ));
    };
    if start >= end {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "start must be before end",
        ));
    }
    let staff = StaffId(req.staff_id);
    let weekday = req.weekday;
    let result = state
        .store
        .call(move |c| {
            let Some(q) = queue(c, id)? else {
                return Ok(Err(ApiError::new(ErrorCode::NotFound, "no such queue")));
            };
            let Some(s) = directory::staff(c, staff)? else {
                return Ok(Err(ApiError::new(
                    ErrorCode::NotFound,
                    "no such staff member",
                )));
            };
            if s.facility_id != q.facility_id {
                return Ok(Err(ApiError::new(
                    ErrorCode::BadRequest,
                    "staff can be rostered only on their own facility's queues",
                )));
            }
            let rid = add_roster(c, id, staff, weekday, start, end)?;
            Ok(Ok(rid))
        })
        .await
        .map_err(internal)??;
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
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let actor = Actor::from_headers(&state, &headers).await?;
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

/// A phone number as staff see it in the ticket list: enough to tell two
/// apart, not enough to call.
fn masked_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().filter(|c| !c.is_whitespace()).collect();
    let keep = chars.len().min(3);
    let hidden = chars.len() - keep;
    let mut out: String = std::iter::repeat_n('•', hidden.min(8)).collect();
    out.extend(&chars[hidden..]);
    out
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
async fn ticket_keeper(state: &AppState, headers: &HeaderMap, id: i64) -> Result<Actor, ApiError> {
    let actor = Actor::from_headers(state, headers).await?;
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
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    ticket_keeper(&state, &headers, id).await?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    state
        .hub
        .send(crate::hub_task::HubMsg::QueueTickets {
            queue: id as u64,
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
    headers: HeaderMap,
    Path((id, handle)): Path<(i64, String)>,
) -> Result<Json<Value>, ApiError> {
    let actor = ticket_keeper(&state, &headers, id).await?;
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
            queue: id as u64,
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
    Path(id): Path<i64>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn window(weekday: Option<u8>, start: &str, end: &str) -> RosterEntry {
        RosterEntry {
            id: 1,
            queue_id: 1,
            staff_id: StaffId(1),
            weekday,
            start_min: parse_hhmm(start).unwrap(),
            end_min: parse_hhmm(end).unwrap(),
        }
    }

    #[test]
    fn staff_see_only_the_end_of_a_phone_number() {
        assert_eq!(masked_phone("0912 345 678"), "•••••••678");
        assert_eq!(masked_phone("+84912345678"), "••••••••678");
        assert_eq!(masked_phone("12"), "12");
        assert_eq!(masked_phone(""), "");
    }

    #[test]
    fn windows_are_in_vietnam_time() {
        // 2026-11-25 (a Wednesday) 01:30 UTC = 08:30 in Hà Nội.
        let t = 1795570200;
        assert!(window(None, "07:00", "17:00").covers(t));
        assert!(
            window(Some(2), "08:30", "08:31").covers(t),
            "Wednesday is 2"
        );
        assert!(!window(Some(3), "07:00", "17:00").covers(t));
        assert!(!window(None, "08:31", "17:00").covers(t));
        assert!(
            !window(None, "00:00", "08:30").covers(t),
            "end is exclusive"
        );
        // 23:30 local the day before is still Tuesday.
        assert!(window(Some(1), "23:00", "24:00").covers(t - 9 * 3600));
    }

    #[test]
    fn times_parse_strictly() {
        assert_eq!(parse_hhmm("07:30"), Some(450));
        assert_eq!(parse_hhmm("24:00"), Some(1440));
        for bad in ["24:01", "7", "07:60", "ab:cd", "-1:00", ""] {
            assert_eq!(parse_hhmm(bad), None, "{bad}");
        }
    }

    #[test]
    fn queues_and_rosters_in_a_real_file() {
        let dir = std::env::temp_dir().join(format!("tuxa-queues-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = Connection::open(dir.join("t.sqlite3")).unwrap();
        crate::store::migrate(&mut c).unwrap();
        c.execute(
            "INSERT INTO facilities(id, name, tier, parent_id, created_at) VALUES (1, 'BVĐK tỉnh', 'province', NULL, 0)",
            [],
        )
        .unwrap();
        let q = create_queue(&c, FacilityId(1), "Nội khoa", None)
            .unwrap()
            .unwrap();
        assert_eq!(q.name, "Nội khoa — BVĐK tỉnh");
        // Idempotent.
        let again = create_queue(&c, FacilityId(1), "Nội khoa", None)
            .unwrap()
            .unwrap();
        assert_eq!(again.id, q.id);
        assert!(
            create_queue(&c, FacilityId(9), "Nhi", None)
                .unwrap()
                .is_none()
        );
        c.execute(
            "INSERT INTO practitioners(id, name, title, licence_number, specialty, facility_id, created_at)
             VALUES (1, 'BS. Lan', 'BS', '000123/BYT-CCHN', 'Nội khoa', 1, 0)",
            [],
        )
        .unwrap();
        c.execute(
            "INSERT INTO staff(id, username, display_name, password_hash, totp_secret, role, facility_id, practitioner_id, created_at)
             VALUES (1, 'bs.lan', 'BS. Lan', 'x', x'00', 'doctor', 1, 1, 0)",
            [],
        )
        .unwrap();
        add_roster(&c, q.id, StaffId(1), None, 7 * 60, 17 * 60).unwrap();
        let t = 1795570200; // 08:30 local
        assert!(on_call(&c, q.id, StaffId(1), t).unwrap());
        assert!(!on_call(&c, q.id, StaffId(1), t + 10 * 3600).unwrap());
        assert!(!on_call(&c, q.id, StaffId(2), t).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
