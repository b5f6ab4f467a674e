//! The application's operations that several handlers share — creating a
//! consultation, minting a join link — as methods on [`AppState`], so that a
//! handler (http.rs, appointments.rs, conferences.rs) or the queue pairing
//! (lib.rs) calls one operation instead of another handler. They return
//! typed values; turning them into an HTTP answer is the handler's job.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tuxa_protocol::{ConsultationKind, ErrorCode, Role, RoomId, RoomInfo};
use tuxa_records::authz::{Actor, Parties, Permission};
use tuxa_records::{FacilityId, StaffId, UnixTime};
use tuxa_signaling::{Claims, Input, RoomStatus, TokenKey};

use crate::audit::{Action, Entry};
use crate::clock::unix_now;
use crate::error::{ApiError, ApiResult};
use crate::hub_task::HubMsg;
use crate::random_bytes;
use crate::store::{ConsultationRow, Store};

/// What every handler shares: the owners it sends messages to (the hub,
/// the store thread) and the server's settings.
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
    /// Where recordings are and the keys that open them (playback.rs).
    pub recordings: crate::vault::Recordings,
    /// Readiness as the health monitor last found it (health.rs).
    pub health: watch::Receiver<crate::health::Report>,
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
        recordings: crate::vault::Recordings::new(
            crate::vault::recordings_dir(data_dir),
            crate::vault::RecordingKeys::Unavailable("not in router tests".into()),
        ),
        shutdown,
        health: watch::channel(crate::health::Report::STARTING).1,
    };
    (state, hub_rx, shutdown_tx)
}

/// Appends to the audit chain (the store writes it in order).
pub(crate) fn audit(
    state: &AppState,
    action: Action,
    room: Option<&str>,
    actor: &str,
    detail: serde_json::Value,
) {
    state.store.audit(Entry {
        at: unix_now() as i64,
        action,
        consultation: room.map(str::to_owned),
        actor: actor.to_owned(),
        detail,
    });
}

// ---------------------------------------------------------------------------
// One consultation, loaded for what the caller may do with it

pub(crate) async fn parties(state: &AppState, row: &ConsultationRow) -> ApiResult<Parties> {
    let id = row.id.clone();
    let conference = state
        .store
        .run(move |c| tuxa_store::conferences::conference_parties(c, &id))
        .await?;
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

pub(crate) async fn load(state: &AppState, id: &str) -> ApiResult<ConsultationRow> {
    let room = RoomId::parse(id)
        .map_err(|_| ApiError::new(ErrorCode::NotFound, "no such consultation"))?;
    state
        .store
        .call(move |c| crate::store::consultation(c, room.as_str()))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such consultation"))
}

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
