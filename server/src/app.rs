//! The application's operations that several handlers share — creating a
//! consultation, minting a join link — as methods on [`AppState`], so that a
//! handler (http.rs, appointments.rs, conferences.rs) or the queue pairing
//! (lib.rs) calls one operation instead of another handler. They return
//! typed values; turning them into an HTTP answer is the handler's job.

use serde::Serialize;
use serde_json::json;
use tuxa_protocol::{ConsultationKind, Role, RoomId, RoomInfo};
use tuxa_records::{FacilityId, StaffId, UnixTime};
use tuxa_signaling::{Claims, Input, RoomStatus};

use crate::audit::{Action, Entry};
use crate::http::{ApiError, ApiResult, AppState};
use crate::hub_task::{HubMsg, unix_now};
use crate::random_bytes;
use crate::store::ConsultationRow;

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
    pub staff_id: Option<StaffId>,
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

/// A minted join link. The token is in the URL's fragment, so it never
/// reaches a server log or a `Referer`.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    pub url: String,
    pub token: String,
    pub role: Role,
    pub expires_at: u64,
    pub not_before: Option<u64>,
}

impl AppState {
    /// Creates a consultation in the store and opens its room in the hub.
    pub async fn create_consultation(
        &self,
        kind: ConsultationKind,
        title: String,
        facility_id: Option<FacilityId>,
        actor: &str,
    ) -> ApiResult<ConsultationRow> {
        let id = RoomId::from_random(random_bytes());
        let row = ConsultationRow {
            id: id.to_string(),
            kind,
            title: title.clone(),
            status: tuxa_records::record::ConsultationStatus::Open,
            created_at: unix_now() as i64,
            ended_at: None,
            facility_id,
            end_reason: None,
        };
        let r = row.clone();
        let contact = self
            .store
            .call(move |c| {
                tuxa_store::consultations::insert_consultation(c, &r)?;
                crate::store::facility_contact(c, r.facility_id)
            })
            .await
            .map_err(ApiError::internal)?;
        let _ = self
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
            let _ = self
                .hub
                .send(HubMsg::Input(Input::RoomContact { room: id, contact }))
                .await;
        }
        self.store.audit(Entry {
            at: unix_now() as i64,
            action: Action::ConsultationCreated,
            consultation: Some(row.id.clone()),
            actor: actor.to_owned(),
            detail: json!({"kind": row.kind, "facility_id": row.facility_id}),
        });
        Ok(row)
    }

    /// Mints a token for `room`, records that it was minted (not the token
    /// itself) and audits it.
    pub async fn mint_link(&self, room: &RoomId, spec: LinkSpec) -> ApiResult<Link> {
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
        let token = self.tokens.mint(&claims, random_bytes());
        let c = claims.clone();
        self.store
            .call(move |db| {
                tuxa_store::consultations::insert_link(
                    db,
                    c.room.as_str(),
                    c.role.as_str(),
                    &c.name,
                    c.facility.as_deref(),
                    UnixTime(now as i64),
                    UnixTime(c.expires_at as i64),
                )
            })
            .await
            .map_err(ApiError::internal)?;
        self.store.audit(Entry {
            at: now as i64,
            action: Action::LinkMinted,
            consultation: Some(room.as_str().to_owned()),
            actor,
            detail: json!({"role": role, "expires_at": claims.expires_at, "chair": chair, "staff_id": staff_id}),
        });
        Ok(Link {
            url: format!("{}/join/{}#{}", self.public_url, room, token),
            token,
            role,
            expires_at: claims.expires_at,
            not_before: claims.not_before,
        })
    }
}
