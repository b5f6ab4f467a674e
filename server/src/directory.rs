//! The directory's HTTP side: facilities (with their tier and parent),
//! practitioners, staff accounts. Its types, scoping and text rules are in
//! `tuxa_records::directory`, its SQL in `tuxa_store::directory` (re-exported
//! here for the other modules); the store thread runs that SQL (see
//! `store.rs`), and `demo.rs` runs the same functions on its own connection.
//!
//! HTTP: the admin-key endpoints that manage the directory
//! (`/api/v1/facilities`, `/api/v1/practitioners`, `/api/v1/staff`); the
//! sign-in endpoints are in `auth.rs`. See `docs/api.md`, "Staff and
//! directory".

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::audit::Action;
use crate::auth::{self, TotpSecret};
use crate::authz::{self, Actor};
use crate::clock::unix_now;
use crate::error::ApiError;
use crate::gate::{Access, Routes};

// ---------------------------------------------------------------------------
// Typed ids and enums, the directory's rules: in the domain crate
// (tuxa-records). Its SQL: in the store crate (tuxa-store).

pub use tuxa_records::directory::*;
pub use tuxa_records::ids::{FacilityId, PractitionerId, StaffId};
pub use tuxa_store::directory::{
    facilities, facility_named, insert_facility, insert_practitioner, practitioner_by_licence,
    practitioners, profile, staff, staff_by_username, staff_list,
};

/// What the handlers answer: the API's one error type (http.rs maps codes
/// to statuses), into which the domain's errors convert.
pub(crate) type Result<T, E = ApiError> = std::result::Result<T, E>;

pub(crate) use crate::error::body;

/// Inserts a staff account (tuxa_store::directory::insert_staff), its TOTP
/// secret sealed under `keys` (secrets.rs): the store never sees it plain.
pub fn insert_staff(
    c: &Connection,
    s: &NewStaff,
    password_hash: &str,
    totp: &TotpSecret,
    keys: &crate::secrets::Keyring,
    now: i64,
) -> tuxa_records::Result<Staff> {
    let sealed = keys.seal(crate::secrets::Purpose::TotpSecret, totp.as_bytes());
    tuxa_store::directory::insert_staff(c, s, password_hash, &sealed, now)
}

// ---------------------------------------------------------------------------
// HTTP: admin-key endpoints

pub fn routes() -> Routes {
    Routes::new()
        .post("/api/v1/facilities", Access::STAFF, create_facility)
        .get("/api/v1/facilities", Access::STAFF, list_facilities)
        .post("/api/v1/practitioners", Access::STAFF, create_practitioner)
        .get("/api/v1/practitioners", Access::STAFF, list_practitioners)
        .post("/api/v1/staff", Access::STAFF, create_staff)
        .get("/api/v1/staff", Access::STAFF, list_staff)
        .patch("/api/v1/staff/{id}", Access::STAFF, update_staff)
        .merge(auth::routes())
}

/// An audit entry about no consultation (the directory, sign-in).
pub(crate) fn audit(state: &AppState, action: Action, actor: &str, detail: Value) {
    crate::app::audit(state, action, None, actor, detail);
}

/// The caller (admin key or staff session), refused unless their role is
/// one of `roles` and their scope includes `facility`.
fn actor_for(
    actor: Actor,
    roles: &[StaffRole],
    facility: Option<FacilityId>,
    what: &str,
) -> Result<Actor> {
    actor.require_in(roles, facility, what)?;
    Ok(actor)
}

/// Runs `f` on the store's thread; a domain refusal comes back as itself,
/// a store failure as an internal error.
async fn on_store<R: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&mut Connection) -> tuxa_records::Result<R> + Send + 'static,
) -> Result<R> {
    Ok(state
        .store
        .call(move |c| Ok(f(c)))
        .await
        .map_err(tuxa_records::Error::internal)??)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FacilityReq {
    name: String,
    tier: Tier,
    #[serde(default)]
    parent_id: Option<FacilityId>,
    /// A phone number patients can call (digits, spaces, `+ - . ( )`).
    #[serde(default)]
    phone: Option<String>,
}

async fn create_facility(
    State(state): State<AppState>,
    actor: Actor,
    req: Result<Json<FacilityReq>, JsonRejection>,
) -> Result<(StatusCode, Json<Facility>)> {
    let req = body(req)?;
    // A new top-level facility needs the whole network in one's scope.
    let actor = actor_for(
        actor,
        authz::ADMINISTRATION,
        req.parent_id,
        "create facilities",
    )?;
    let new = NewFacility {
        name: text("name", &req.name, 200)?,
        tier: req.tier,
        parent: req.parent_id,
    };
    let phone = phone(req.phone.as_deref())?;
    let now = unix_now() as i64;
    let f = on_store(&state, move |c| {
        tuxa_store::directory::insert_facility_with_phone(c, &new, phone, now)
    })
    .await?;
    audit(
        &state,
        Action::FacilityCreated,
        &actor.audit_name(),
        json!({"facility_id": f.id, "tier": f.tier, "parent_id": f.parent_id}),
    );
    Ok((StatusCode::CREATED, Json(f)))
}

#[derive(Deserialize)]
struct FacilityQuery {
    /// Only the facilities a conference can be asked of (any staff member
    /// may list those, to address a request).
    #[serde(default)]
    upper: Option<u8>,
}

async fn list_facilities(
    State(state): State<AppState>,
    actor: Actor,
    Query(q): Query<FacilityQuery>,
) -> Result<Json<Value>> {
    let upper = q.upper.unwrap_or(0) != 0;
    if !upper {
        actor.require(authz::COORDINATION, "list facilities")?;
    }
    let list = on_store(&state, |c| Ok(facilities(c)?)).await?;
    let list: Vec<Facility> = list
        .into_iter()
        .filter(|f| {
            if upper {
                matches!(f.tier, Tier::Province | Tier::Cdc)
            } else {
                actor.sees(Some(f.id))
            }
        })
        .collect();
    Ok(Json(json!({ "facilities": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PractitionerReq {
    name: String,
    title: String,
    licence_number: String,
    specialty: String,
    facility_id: FacilityId,
}

async fn create_practitioner(
    State(state): State<AppState>,
    actor: Actor,
    req: Result<Json<PractitionerReq>, JsonRejection>,
) -> Result<(StatusCode, Json<Practitioner>)> {
    let req = body(req)?;
    let actor = actor_for(
        actor,
        authz::ADMINISTRATION,
        Some(req.facility_id),
        "create practitioners",
    )?;
    let new = NewPractitioner {
        name: text("name", &req.name, 100)?,
        title: text("title", &req.title, 40)?,
        licence_number: text("licence_number", &req.licence_number, 40)?,
        specialty: text("specialty", &req.specialty, 100)?,
        facility: req.facility_id,
    };
    let now = unix_now() as i64;
    let p = on_store(&state, move |c| insert_practitioner(c, &new, now)).await?;
    audit(
        &state,
        Action::PractitionerCreated,
        &actor.audit_name(),
        json!({"practitioner_id": p.id, "facility_id": p.facility_id}),
    );
    Ok((StatusCode::CREATED, Json(p)))
}

async fn list_practitioners(State(state): State<AppState>, actor: Actor) -> Result<Json<Value>> {
    actor.require(authz::COORDINATION, "list practitioners")?;
    let list = on_store(&state, |c| Ok(practitioners(c)?)).await?;
    let list: Vec<Practitioner> = list
        .into_iter()
        .filter(|p| actor.sees(Some(p.facility_id)))
        .collect();
    Ok(Json(json!({ "practitioners": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StaffReq {
    username: String,
    name: String,
    role: StaffRole,
    facility_id: FacilityId,
    #[serde(default)]
    practitioner_id: Option<PractitionerId>,
    /// The first password; generated (and returned once) when absent.
    #[serde(default)]
    password: Option<String>,
}

async fn create_staff(
    State(state): State<AppState>,
    actor: Actor,
    req: Result<Json<StaffReq>, JsonRejection>,
) -> Result<(
    StatusCode,
    [(axum::http::HeaderName, axum::http::HeaderValue); 1],
    Json<Value>,
)> {
    let req = body(req)?;
    let actor = actor_for(
        actor,
        authz::ADMINISTRATION,
        Some(req.facility_id),
        "create staff accounts",
    )?;
    let username = Username::parse_or_refuse(&req.username)?;
    let new = NewStaff {
        username,
        name: text("name", &req.name, 100)?,
        role: req.role,
        facility: req.facility_id,
        practitioner: req.practitioner_id,
    };
    let (password, generated) = match req.password {
        Some(p) => (auth::Password::parse(&p)?, false),
        None => (auth::generate_password(), true),
    };
    let hash = auth::hash_password_off_runtime(password.clone()).await?;
    let totp = auth::new_totp_secret();
    let now = unix_now() as i64;
    let secret = totp.clone();
    let keys = state.store.keys().clone();
    let s = on_store(&state, move |c| {
        insert_staff(c, &new, &hash, &secret, &keys, now)
    })
    .await?;
    audit(
        &state,
        Action::StaffCreated,
        &actor.audit_name(),
        json!({"staff_id": s.id, "role": s.role, "facility_id": s.facility_id}),
    );
    let mut out = json!({
        "staff": s,
        "totp": {
            "secret": totp.base32(),
            "otpauth_uri": totp.otpauth_uri(s.username.as_str()),
            "qr_svg": auth::totp_qr_svg(&totp, s.username.as_str()),
        },
    });
    if generated {
        out["password"] = json!(password.as_str());
    }
    // One-time secrets: no cache may keep them.
    Ok((
        StatusCode::CREATED,
        [(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        )],
        Json(out),
    ))
}

async fn list_staff(State(state): State<AppState>, actor: Actor) -> Result<Json<Value>> {
    actor.require(authz::COORDINATION, "list staff")?;
    let list = on_store(&state, |c| Ok(staff_list(c)?)).await?;
    let list: Vec<Staff> = list
        .into_iter()
        .filter(|s| actor.sees(Some(s.facility_id)))
        .collect();
    Ok(Json(json!({ "staff": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StaffPatch {
    #[serde(default)]
    role: Option<StaffRole>,
    #[serde(default)]
    disabled: Option<bool>,
}

async fn update_staff(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    req: Result<Json<StaffPatch>, JsonRejection>,
) -> Result<Json<Staff>> {
    let id = id
        .parse::<i64>()
        .map(StaffId)
        .map_err(|_| tuxa_records::Error::not_found("no such staff member"))?;
    let target = on_store(&state, move |c| Ok(staff(c, id)?))
        .await?
        .ok_or_else(|| tuxa_records::Error::not_found("no such staff member"))?;
    let actor = actor_for(
        actor,
        authz::ADMINISTRATION,
        Some(target.facility_id),
        "change staff accounts",
    )?;
    let req = body(req)?;
    // Neither given is refused there (tuxa_store::directory::update_staff).
    let (role, disabled) = (req.role, req.disabled);
    let (before, after) = on_store(&state, move |c| {
        tuxa_store::directory::update_staff(c, id, role, disabled)
    })
    .await?;
    let actor = &actor.audit_name();
    if before.role != after.role {
        audit(
            &state,
            Action::RoleChanged,
            actor,
            json!({"staff_id": id, "from": before.role, "to": after.role}),
        );
    }
    if revokes_connections(&before, &after) {
        let _ = state
            .hub
            .send(crate::hub_task::HubMsg::Input(
                tuxa_signaling::Input::StaffRevoked(id),
            ))
            .await;
    }
    if before.disabled != after.disabled {
        let action = if after.disabled {
            Action::StaffDisabled
        } else {
            Action::StaffEnabled
        };
        audit(&state, action, actor, json!({"staff_id": id}));
    }
    Ok(Json(after))
}
