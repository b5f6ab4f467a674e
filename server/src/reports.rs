//! The activity report's HTTP route. The rules (what is counted, the CSV)
//! are `tuxa_records::reports`'s, the SQL `tuxa_store::reports`'s; the hub
//! records queue events through [`to_stored`] and [`insert`].

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tuxa_protocol::ErrorCode;
use tuxa_records::FacilityId;
use tuxa_records::reports::{EventKind, Lang, StoredEvent, to_csv};
use tuxa_signaling::queue::{DropStage, QueueEvent};

use crate::gate::{Access, Routes};
use crate::http::{ApiError, AppState, check_admin};
use crate::hub_task::unix_now;

pub use tuxa_store::reports::insert;

/// What of a queue event the report needs (None: not counted).
pub fn to_stored(ev: &QueueEvent) -> Option<StoredEvent> {
    let hash = |t: &tuxa_signaling::queue::Ticket| crate::hex(&crate::sha256(t.0.as_bytes())[..8]);
    let (kind, queue, ticket, waited) = match ev {
        QueueEvent::Joined { queue, ticket, .. } => (EventKind::Joined, queue, ticket, None),
        QueueEvent::Accepted {
            queue,
            ticket,
            waited,
            ..
        } => (EventKind::Accepted, queue, ticket, Some(waited)),
        QueueEvent::Dropped {
            queue,
            ticket,
            stage: s,
            waited,
            ..
        } if *s != DropStage::InCall => (EventKind::Dropped, queue, ticket, Some(waited)),
        QueueEvent::Cancelled {
            queue,
            ticket,
            waited,
            ..
        } => (EventKind::Cancelled, queue, ticket, Some(waited)),
        QueueEvent::CallEnded {
            queue,
            ticket,
            duration,
            ..
        } => (EventKind::CallEnded, queue, ticket, Some(duration)),
        _ => return None,
    };
    Some(StoredEvent {
        kind,
        queue: *queue,
        ticket_hash: hash(ticket),
        waited_secs: waited.map(|d| d.as_secs() as i64),
    })
}

pub fn routes() -> Routes {
    Routes::new().get("/api/v1/reports/activity", Access::STAFF, report)
}

#[derive(Deserialize)]
struct Params {
    from: Option<i64>,
    to: Option<i64>,
    facility: Option<i64>,
    format: Option<String>,
    /// The CSV's words: `vi` (default) or `en`.
    #[serde(default)]
    lang: Lang,
}

/// `GET /api/v1/reports/activity?from=&to=&facility=&format=csv|json&lang=vi|en`.
/// The admin key, or a signed-in coordinator or admin: at a province-level
/// facility they see the whole network, elsewhere their own facility.
async fn report(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Result<Response, ApiError> {
    let facility = if check_admin(&state, &headers).is_ok() {
        p.facility
    } else {
        let me = crate::auth::signed_in(&state, &headers)
            .await
            .map_err(|_| {
                ApiError::new(ErrorCode::Unauthorized, "sign in, or send the admin key")
            })?;
        use crate::directory::{StaffRole, Tier};
        match me.profile.staff.role {
            StaffRole::Coordinator | StaffRole::Admin
                if me.profile.facility.tier == Tier::Province =>
            {
                p.facility
            }
            StaffRole::Coordinator | StaffRole::Admin => Some(me.profile.facility.id.0),
            _ => {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "the activity report is for coordinators",
                ));
            }
        }
    };
    let to = p.to.unwrap_or(unix_now() as i64 + 1);
    let from = p.from.unwrap_or(to - 30 * 86_400);
    if from >= to {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "from must be before to",
        ));
    }
    let rows = state
        .store
        .call(move |c| tuxa_store::reports::activity(c, from, to, facility.map(FacilityId)))
        .await
        .map_err(|e| {
            tracing::error!("report: {e}");
            ApiError::new(ErrorCode::Internal, "internal error; see the server log")
        })?;
    match p.format.as_deref() {
        None | Some("json") => Ok(axum::Json(
            json!({"from": from, "to": to, "facility": facility, "rows": rows}),
        )
        .into_response()),
        Some("csv") => {
            let mut res = to_csv(&rows, p.lang).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            res.headers_mut().insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static(match p.lang {
                    Lang::Vi => "attachment; filename=\"tuxa-bao-cao-hoat-dong.csv\"",
                    Lang::En => "attachment; filename=\"tuxa-activity.csv\"",
                }),
            );
            Ok(res)
        }
        Some(_) => Err(ApiError::new(
            ErrorCode::BadRequest,
            "format is csv or json",
        )),
    }
}
