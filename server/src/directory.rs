//! The directory: facilities (with their tier and parent), practitioners,
//! staff accounts, and who may see which facility's queues and cases.
//!
//! Types are parsed at the edge (request bodies, SQLite rows) into typed ids
//! and enums, so the rest of the code never handles a bare string role or a
//! bare integer id. The SQL lives here too, as plain functions on a
//! `Connection`: the store thread runs them (see `store.rs`), and
//! `demo.rs` runs the same ones on its own connection.
//!
//! HTTP: the admin-key endpoints that manage the directory
//! (`/api/v1/facilities`, `/api/v1/practitioners`, `/api/v1/staff`); the
//! sign-in endpoints are in `auth.rs`. See `docs/api.md`, "Staff and
//! directory".

use std::fmt;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tuxa_protocol::ErrorCode;

use crate::audit::{Action, Entry};
use crate::auth::{self, TotpSecret};
use crate::authz::{self, Actor};
use crate::http::AppState;
use crate::hub_task::unix_now;

// ---------------------------------------------------------------------------
// Typed ids and enums

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.0))
            }
        }

        impl FromSql for $name {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                i64::column_result(v).map($name)
            }
        }
    };
}

id_type!(
    /// A row of `facilities`.
    FacilityId
);
id_type!(
    /// A row of `practitioners`.
    PractitionerId
);
id_type!(
    /// A row of `staff`.
    StaffId
);

/// Where a facility sits in the provincial network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Provincial level: the provincial general hospital (BVĐK tỉnh) and
    /// other provincial hospitals.
    Province,
    /// A district health centre (TTYT huyện).
    District,
    /// A commune health station (trạm y tế xã), under a district centre.
    CommuneStation,
    /// The provincial centre for disease control (CDC).
    Cdc,
}

impl Tier {
    pub const ALL: [Tier; 4] = [
        Tier::Province,
        Tier::District,
        Tier::CommuneStation,
        Tier::Cdc,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Province => "province",
            Tier::District => "district",
            Tier::CommuneStation => "commune_station",
            Tier::Cdc => "cdc",
        }
    }

    pub fn parse(s: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether a facility of this tier may sit under a parent of tier
    /// `parent` (`None`: no parent). Province-level facilities and the CDC
    /// are roots (the CDC may also sit under a provincial facility); a
    /// district centre sits under a provincial facility; a commune station
    /// under a district centre.
    pub fn parent_allowed(self, parent: Option<Tier>) -> bool {
        matches!(
            (self, parent),
            (Tier::Province, None)
                | (Tier::Cdc, None | Some(Tier::Province))
                | (Tier::District, Some(Tier::Province))
                | (Tier::CommuneStation, Some(Tier::District))
        )
    }

    fn parent_rule(self) -> &'static str {
        match self {
            Tier::Province => "a province-level facility has no parent",
            Tier::Cdc => "a CDC has no parent, or a province-level one",
            Tier::District => "a district centre's parent must be a province-level facility",
            Tier::CommuneStation => "a commune station's parent must be a district centre",
        }
    }
}

/// What a staff account may do. Patients have no account: they come by link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    Doctor,
    Nurse,
    Coordinator,
    Admin,
}

impl StaffRole {
    pub const ALL: [StaffRole; 4] = [
        StaffRole::Doctor,
        StaffRole::Nurse,
        StaffRole::Coordinator,
        StaffRole::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StaffRole::Doctor => "doctor",
            StaffRole::Nurse => "nurse",
            StaffRole::Coordinator => "coordinator",
            StaffRole::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<StaffRole> {
        StaffRole::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Clinical roles act under a practising licence, so their account is
    /// tied to a practitioner record (name, title, licence number).
    pub fn needs_practitioner(self) -> bool {
        matches!(self, StaffRole::Doctor | StaffRole::Nurse)
    }
}

macro_rules! text_enum_sql {
    ($t:ident) => {
        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $t {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                let s = v.as_str()?;
                $t::parse(s).ok_or_else(|| {
                    FromSqlError::Other(format!("unknown {} {s:?}", stringify!($t)).into())
                })
            }
        }
    };
}

text_enum_sql!(Tier);
text_enum_sql!(StaffRole);

/// A sign-in name: 3 to 32 of `a-z 0-9 . _ -`, starting with a letter or
/// digit. Parsing lower-cases and trims, so `BS.Minh ` is `bs.minh`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub fn parse(s: &str) -> Option<Username> {
        let s = s.trim().to_ascii_lowercase();
        let ok = (3..=32).contains(&s.len())
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        ok.then_some(Username(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ToSql for Username {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.as_str()))
    }
}

impl FromSql for Username {
    fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
        let s = v.as_str()?;
        Username::parse(s).ok_or_else(|| FromSqlError::Other(format!("bad username {s:?}").into()))
    }
}

// ---------------------------------------------------------------------------
// Records

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Facility {
    pub id: FacilityId,
    pub name: String,
    pub tier: Tier,
    pub parent_id: Option<FacilityId>,
    /// The number patients call: on the end screen of its consultations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Practitioner {
    pub id: PractitionerId,
    pub name: String,
    /// e.g. `BSCKII`, `ThS.BS`, `BS`, `ĐD`, `NHS`, `YS`.
    pub title: String,
    /// The practising licence (chứng chỉ / giấy phép hành nghề) number.
    pub licence_number: String,
    /// e.g. `Nội khoa`, `Nhi khoa`, `Sản khoa`.
    pub specialty: String,
    pub facility_id: FacilityId,
}

/// A staff account, without its secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Staff {
    pub id: StaffId,
    pub username: Username,
    /// The name shown to others, e.g. `Phạm Thu Hà`.
    pub name: String,
    pub role: StaffRole,
    pub facility_id: FacilityId,
    pub practitioner_id: Option<PractitionerId>,
    pub disabled: bool,
    pub created_at: i64,
}

/// A staff member with the facility they belong to and, for clinical
/// roles, their practitioner record: what `/api/v1/me` shows, and what
/// permission checks look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub staff: Staff,
    pub facility: Facility,
    pub practitioner: Option<Practitioner>,
}

// ---------------------------------------------------------------------------
// Scoping

/// Whether `staff`, who belongs to `home`, may see the queues and cases of
/// the facility `target`.
///
/// Doctors and nurses see their own facility only. Coordinators and admins
/// see their own facility, and all facilities when theirs is at province
/// level (the provincial hospital coordinates the network). A disabled
/// account sees nothing. Conferences a staff member is invited to are
/// granted by the invitation, not by this rule.
// Called by the queue and case routes (issue 3, items 2 and 5); tested below.
#[allow(dead_code)]
pub fn may_see_facility(staff: &Staff, home: &Facility, target: FacilityId) -> bool {
    debug_assert_eq!(staff.facility_id, home.id, "home must be staff's facility");
    if staff.disabled {
        return false;
    }
    match staff.role {
        StaffRole::Coordinator | StaffRole::Admin if home.tier == Tier::Province => true,
        StaffRole::Doctor | StaffRole::Nurse | StaffRole::Coordinator | StaffRole::Admin => {
            staff.facility_id == target
        }
    }
}

#[allow(dead_code)]
impl Profile {
    /// [`may_see_facility`] for this staff member.
    pub fn may_see_facility(&self, target: FacilityId) -> bool {
        may_see_facility(&self.staff, &self.facility, target)
    }
}

// ---------------------------------------------------------------------------
// Errors

/// An API refusal: the JSON shape and codes of `http::ApiError`, with an
/// HTTP status of its own (`login_failed` 401, `too_many_attempts` 429,
/// `forbidden` 403, `conflict` 409).
#[derive(Debug)]
pub struct Error {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    retry_after: Option<u64>,
}

impl Error {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Error {
        Error {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// A unique name or number is already taken.
    pub fn conflict(message: impl Into<String>) -> Error {
        Error::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
    }

    /// No valid staff session.
    pub fn not_signed_in() -> Error {
        Error::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "sign in first",
        )
    }

    /// Signed in, but this staff member may not do that.
    pub fn forbidden(message: impl Into<String>) -> Error {
        Error::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    /// Any wrong sign-in: the same answer whether the user exists, the
    /// password was wrong or the code was.
    pub fn login_failed() -> Error {
        Error::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::LoginFailed,
            "wrong username, password or code",
        )
    }

    /// Too many failed sign-ins for this username. Sent with `Retry-After`.
    pub fn too_many_attempts(retry_after_secs: u64) -> Error {
        let mut e = Error::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyAttempts,
            format!("too many failed sign-ins; try again in {retry_after_secs} s"),
        );
        e.retry_after = Some(retry_after_secs);
        e
    }

    pub fn internal(e: impl fmt::Display) -> Error {
        tracing::error!("internal error: {e}");
        Error::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error; see the server log",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::internal(e)
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code.as_str(), "message": self.message}});
        let mut res = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn body<T>(r: Result<Json<T>, JsonRejection>) -> Result<T> {
    r.map(|Json(v)| v)
        .map_err(|e| Error::bad_request(e.body_text()))
}

/// A trimmed, non-empty text of at most `max` characters without control
/// characters.
fn text(field: &str, value: &str, max: usize) -> Result<String> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(Error::bad_request(format!(
            "{field} must be 1 to {max} characters, without control characters"
        )));
    }
    Ok(v.to_owned())
}

// ---------------------------------------------------------------------------
// New records, parsed

#[derive(Debug, Clone)]
pub struct NewFacility {
    pub name: String,
    pub tier: Tier,
    pub parent: Option<FacilityId>,
}

#[derive(Debug, Clone)]
pub struct NewPractitioner {
    pub name: String,
    pub title: String,
    pub licence_number: String,
    pub specialty: String,
    pub facility: FacilityId,
}

#[derive(Debug, Clone)]
pub struct NewStaff {
    pub username: Username,
    pub name: String,
    pub role: StaffRole,
    pub facility: FacilityId,
    pub practitioner: Option<PractitionerId>,
}

// ---------------------------------------------------------------------------
// SQL (runs on the store thread, or on demo.rs's connection)

fn row_to_facility(r: &rusqlite::Row<'_>) -> rusqlite::Result<Facility> {
    Ok(Facility {
        id: r.get(0)?,
        name: r.get(1)?,
        tier: r.get(2)?,
        parent_id: r.get(3)?,
        phone: r.get(4)?,
    })
}

const FACILITY_COLS: &str = "id, name, tier, parent_id, phone";

pub fn facilities(c: &Connection) -> rusqlite::Result<Vec<Facility>> {
    let mut st = c.prepare(&format!(
        "SELECT {FACILITY_COLS} FROM facilities ORDER BY id"
    ))?;
    st.query_map([], row_to_facility)?.collect()
}

pub fn facility(c: &Connection, id: FacilityId) -> rusqlite::Result<Option<Facility>> {
    c.query_row(
        &format!("SELECT {FACILITY_COLS} FROM facilities WHERE id = ?1"),
        [id],
        row_to_facility,
    )
    .optional()
}

/// The facility called `name` under `parent`, if there is one.
pub fn facility_named(
    c: &Connection,
    name: &str,
    parent: Option<FacilityId>,
) -> rusqlite::Result<Option<Facility>> {
    c.query_row(
        &format!("SELECT {FACILITY_COLS} FROM facilities WHERE name = ?1 AND parent_id IS ?2"),
        params![name, parent],
        row_to_facility,
    )
    .optional()
}

pub fn insert_facility(c: &Connection, f: &NewFacility, now: i64) -> Result<Facility> {
    let parent_tier = match f.parent {
        Some(p) => Some(
            facility(c, p)?
                .ok_or_else(|| Error::bad_request(format!("no facility with id {p}")))?
                .tier,
        ),
        None => None,
    };
    if !f.tier.parent_allowed(parent_tier) {
        return Err(Error::bad_request(f.tier.parent_rule()));
    }
    if facility_named(c, &f.name, f.parent)?.is_some() {
        return Err(Error::conflict(
            "a facility with this name already exists there",
        ));
    }
    c.execute(
        "INSERT INTO facilities(name, tier, parent_id, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![f.name, f.tier, f.parent, now],
    )?;
    Ok(Facility {
        id: FacilityId(c.last_insert_rowid()),
        name: f.name.clone(),
        tier: f.tier,
        parent_id: f.parent,
        phone: None,
    })
}

fn row_to_practitioner(r: &rusqlite::Row<'_>) -> rusqlite::Result<Practitioner> {
    Ok(Practitioner {
        id: r.get(0)?,
        name: r.get(1)?,
        title: r.get(2)?,
        licence_number: r.get(3)?,
        specialty: r.get(4)?,
        facility_id: r.get(5)?,
    })
}

const PRACTITIONER_COLS: &str = "id, name, title, licence_number, specialty, facility_id";

pub fn practitioners(c: &Connection) -> rusqlite::Result<Vec<Practitioner>> {
    let mut st = c.prepare(&format!(
        "SELECT {PRACTITIONER_COLS} FROM practitioners ORDER BY id"
    ))?;
    st.query_map([], row_to_practitioner)?.collect()
}

pub fn practitioner(c: &Connection, id: PractitionerId) -> rusqlite::Result<Option<Practitioner>> {
    c.query_row(
        &format!("SELECT {PRACTITIONER_COLS} FROM practitioners WHERE id = ?1"),
        [id],
        row_to_practitioner,
    )
    .optional()
}

pub fn practitioner_by_licence(
    c: &Connection,
    licence_number: &str,
) -> rusqlite::Result<Option<Practitioner>> {
    c.query_row(
        &format!("SELECT {PRACTITIONER_COLS} FROM practitioners WHERE licence_number = ?1"),
        [licence_number],
        row_to_practitioner,
    )
    .optional()
}

pub fn insert_practitioner(c: &Connection, p: &NewPractitioner, now: i64) -> Result<Practitioner> {
    if facility(c, p.facility)?.is_none() {
        return Err(Error::bad_request(format!(
            "no facility with id {}",
            p.facility
        )));
    }
    if practitioner_by_licence(c, &p.licence_number)?.is_some() {
        return Err(Error::conflict(
            "a practitioner with this licence number already exists",
        ));
    }
    c.execute(
        "INSERT INTO practitioners(name, title, licence_number, specialty, facility_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            p.name,
            p.title,
            p.licence_number,
            p.specialty,
            p.facility,
            now
        ],
    )?;
    Ok(Practitioner {
        id: PractitionerId(c.last_insert_rowid()),
        name: p.name.clone(),
        title: p.title.clone(),
        licence_number: p.licence_number.clone(),
        specialty: p.specialty.clone(),
        facility_id: p.facility,
    })
}

fn row_to_staff(r: &rusqlite::Row<'_>) -> rusqlite::Result<Staff> {
    Ok(Staff {
        id: r.get(0)?,
        username: r.get(1)?,
        name: r.get(2)?,
        role: r.get(3)?,
        facility_id: r.get(4)?,
        practitioner_id: r.get(5)?,
        disabled: r.get(6)?,
        created_at: r.get(7)?,
    })
}

const STAFF_COLS: &str =
    "id, username, display_name, role, facility_id, practitioner_id, disabled, created_at";

pub fn staff_list(c: &Connection) -> rusqlite::Result<Vec<Staff>> {
    let mut st = c.prepare(&format!("SELECT {STAFF_COLS} FROM staff ORDER BY id"))?;
    st.query_map([], row_to_staff)?.collect()
}

pub fn staff(c: &Connection, id: StaffId) -> rusqlite::Result<Option<Staff>> {
    c.query_row(
        &format!("SELECT {STAFF_COLS} FROM staff WHERE id = ?1"),
        [id],
        row_to_staff,
    )
    .optional()
}

pub fn staff_by_username(c: &Connection, username: &Username) -> rusqlite::Result<Option<Staff>> {
    c.query_row(
        &format!("SELECT {STAFF_COLS} FROM staff WHERE username = ?1"),
        [username],
        row_to_staff,
    )
    .optional()
}

/// A staff member with their facility and practitioner record.
pub fn profile(c: &Connection, id: StaffId) -> rusqlite::Result<Option<Profile>> {
    let Some(staff) = staff(c, id)? else {
        return Ok(None);
    };
    let Some(facility) = facility(c, staff.facility_id)? else {
        return Ok(None);
    };
    let practitioner = match staff.practitioner_id {
        Some(p) => practitioner(c, p)?,
        None => None,
    };
    Ok(Some(Profile {
        staff,
        facility,
        practitioner,
    }))
}

/// Checks that `role` fits `practitioner` at `facility`.
fn check_practitioner(
    c: &Connection,
    role: StaffRole,
    facility: FacilityId,
    linked: Option<PractitionerId>,
    this_account: Option<StaffId>,
) -> Result<()> {
    match linked {
        None if role.needs_practitioner() => Err(Error::bad_request(format!(
            "a {} account needs practitioner_id (the practitioner record with the licence number)",
            role.as_str()
        ))),
        None => Ok(()),
        Some(p) => {
            let rec = practitioner(c, p)?
                .ok_or_else(|| Error::bad_request(format!("no practitioner with id {p}")))?;
            if rec.facility_id != facility {
                return Err(Error::bad_request(
                    "the practitioner belongs to another facility",
                ));
            }
            let taken: Option<StaffId> = c
                .query_row(
                    "SELECT id FROM staff WHERE practitioner_id = ?1",
                    [p],
                    |r| r.get(0),
                )
                .optional()?;
            if taken.is_some_and(|s| Some(s) != this_account) {
                return Err(Error::conflict(
                    "this practitioner already has a staff account",
                ));
            }
            Ok(())
        }
    }
}

/// Inserts a staff account. `password_hash` is a PHC string from
/// [`auth::hash_password`]; the TOTP secret is stored sealed under `keys`
/// (secrets.rs).
pub fn insert_staff(
    c: &Connection,
    s: &NewStaff,
    password_hash: &str,
    totp: &TotpSecret,
    keys: &crate::secrets::Keyring,
    now: i64,
) -> Result<Staff> {
    if facility(c, s.facility)?.is_none() {
        return Err(Error::bad_request(format!(
            "no facility with id {}",
            s.facility
        )));
    }
    check_practitioner(c, s.role, s.facility, s.practitioner, None)?;
    if staff_by_username(c, &s.username)?.is_some() {
        return Err(Error::conflict("this username is taken"));
    }
    c.execute(
        "INSERT INTO staff(username, display_name, password_hash, totp_secret, role,
                           facility_id, practitioner_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            s.username,
            s.name,
            password_hash,
            keys.seal(crate::secrets::Purpose::TotpSecret, totp.as_bytes()),
            s.role,
            s.facility,
            s.practitioner,
            now
        ],
    )?;
    Ok(Staff {
        id: StaffId(c.last_insert_rowid()),
        username: s.username.clone(),
        name: s.name.clone(),
        role: s.role,
        facility_id: s.facility,
        practitioner_id: s.practitioner,
        disabled: false,
        created_at: now,
    })
}

/// Changes a staff member's role. Returns the account before and after.
pub fn set_role(c: &Connection, id: StaffId, role: StaffRole) -> Result<(Staff, Staff)> {
    let before = staff(c, id)?.ok_or_else(|| Error::not_found("no such staff member"))?;
    check_practitioner(
        c,
        role,
        before.facility_id,
        before.practitioner_id,
        Some(id),
    )?;
    c.execute(
        "UPDATE staff SET role = ?1 WHERE id = ?2",
        params![role, id],
    )?;
    let after = Staff {
        role,
        ..before.clone()
    };
    Ok((before, after))
}

/// Disables or re-enables an account. Disabling ends its sessions.
pub fn set_disabled(c: &Connection, id: StaffId, disabled: bool) -> Result<(Staff, Staff)> {
    let before = staff(c, id)?.ok_or_else(|| Error::not_found("no such staff member"))?;
    c.execute(
        "UPDATE staff SET disabled = ?1 WHERE id = ?2",
        params![disabled, id],
    )?;
    if disabled {
        c.execute("DELETE FROM staff_sessions WHERE staff_id = ?1", [id])?;
    }
    let after = Staff {
        disabled,
        ..before.clone()
    };
    Ok((before, after))
}

// ---------------------------------------------------------------------------
// HTTP: admin-key endpoints

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route(
            "/api/v1/facilities",
            post(create_facility).get(list_facilities),
        )
        .route(
            "/api/v1/practitioners",
            post(create_practitioner).get(list_practitioners),
        )
        .route("/api/v1/staff", post(create_staff).get(list_staff))
        .route("/api/v1/staff/{id}", patch(update_staff))
        .merge(auth::routes())
}

pub(crate) fn audit(state: &AppState, action: Action, actor: &str, detail: Value) {
    state.store.audit(Entry {
        at: unix_now() as i64,
        action,
        consultation: None,
        actor: actor.to_owned(),
        detail,
    });
}

/// The caller (admin key or staff session), refused unless their role is
/// one of `roles` and their scope includes `facility`.
async fn actor_for(
    state: &AppState,
    headers: &HeaderMap,
    roles: &[StaffRole],
    facility: Option<FacilityId>,
    what: &str,
) -> Result<Actor> {
    let actor = Actor::from_headers(state, headers).await?;
    actor.require_in(roles, facility, what)?;
    Ok(actor)
}

impl From<crate::http::ApiError> for Error {
    fn from(e: crate::http::ApiError) -> Error {
        let status = match e.code() {
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        Error::new(status, e.code(), e.message())
    }
}

async fn on_store<R: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&mut Connection) -> Result<R> + Send + 'static,
) -> Result<R> {
    state
        .store
        .call(move |c| Ok(f(c)))
        .await
        .map_err(Error::internal)?
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

/// A phone number as people write it: 6 to 15 digits, with `+` in front
/// and spaces, dots, dashes or brackets between groups.
fn phone(v: Option<&str>) -> Result<Option<String>> {
    let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let digits = v.chars().filter(char::is_ascii_digit).count();
    let ok = v.len() <= 24
        && (6..=15).contains(&digits)
        && v.chars()
            .enumerate()
            .all(|(i, ch)| ch.is_ascii_digit() || " .-()".contains(ch) || (ch == '+' && i == 0));
    if !ok {
        return Err(Error::bad_request(
            "phone: 6 to 15 digits, e.g. 0210 3812 345 or +84 210 3812 345",
        ));
    }
    Ok(Some(v.to_owned()))
}

async fn create_facility(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: Result<Json<FacilityReq>, JsonRejection>,
) -> Result<(StatusCode, Json<Facility>)> {
    let req = body(req)?;
    // A new top-level facility needs the whole network in one's scope.
    let actor = actor_for(
        &state,
        &headers,
        authz::ADMINISTRATION,
        req.parent_id,
        "create facilities",
    )
    .await?;
    let new = NewFacility {
        name: text("name", &req.name, 200)?,
        tier: req.tier,
        parent: req.parent_id,
    };
    let phone = phone(req.phone.as_deref())?;
    let now = unix_now() as i64;
    let f = on_store(&state, move |c| {
        let mut f = insert_facility(c, &new, now)?;
        if let Some(p) = phone {
            c.execute(
                "UPDATE facilities SET phone = ?1 WHERE id = ?2",
                params![p, f.id],
            )?;
            f.phone = Some(p);
        }
        Ok(f)
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
    headers: HeaderMap,
    Query(q): Query<FacilityQuery>,
) -> Result<Json<Value>> {
    let actor = Actor::from_headers(&state, &headers).await?;
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
    headers: HeaderMap,
    req: Result<Json<PractitionerReq>, JsonRejection>,
) -> Result<(StatusCode, Json<Practitioner>)> {
    let req = body(req)?;
    let actor = actor_for(
        &state,
        &headers,
        authz::ADMINISTRATION,
        Some(req.facility_id),
        "create practitioners",
    )
    .await?;
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

async fn list_practitioners(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>> {
    let actor = Actor::from_headers(&state, &headers).await?;
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
    headers: HeaderMap,
    req: Result<Json<StaffReq>, JsonRejection>,
) -> Result<(
    StatusCode,
    [(axum::http::HeaderName, axum::http::HeaderValue); 1],
    Json<Value>,
)> {
    let req = body(req)?;
    let actor = actor_for(
        &state,
        &headers,
        authz::ADMINISTRATION,
        Some(req.facility_id),
        "create staff accounts",
    )
    .await?;
    let username = Username::parse(&req.username).ok_or_else(|| {
        Error::bad_request(
            "username must be 3 to 32 of a-z 0-9 . _ -, starting with a letter or digit",
        )
    })?;
    let new = NewStaff {
        username,
        name: text("name", &req.name, 100)?,
        role: req.role,
        facility: req.facility_id,
        practitioner: req.practitioner_id,
    };
    let (password, generated) = match req.password {
        Some(p) => (auth::Password::parse(&p)?, false),
        None => (auth::Password::generate(), true),
    };
    let hash = auth::hash_password_off_runtime(password.clone()).await?;
    let totp = TotpSecret::generate();
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
            "qr_svg": totp.qr_svg(s.username.as_str()),
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

async fn list_staff(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>> {
    let actor = Actor::from_headers(&state, &headers).await?;
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
    headers: HeaderMap,
    Path(id): Path<String>,
    req: Result<Json<StaffPatch>, JsonRejection>,
) -> Result<Json<Staff>> {
    let id = id
        .parse::<i64>()
        .map(StaffId)
        .map_err(|_| Error::not_found("no such staff member"))?;
    let target = on_store(&state, move |c| Ok(staff(c, id)?))
        .await?
        .ok_or_else(|| Error::not_found("no such staff member"))?;
    let actor = actor_for(
        &state,
        &headers,
        authz::ADMINISTRATION,
        Some(target.facility_id),
        "change staff accounts",
    )
    .await?;
    let req = body(req)?;
    if req.role.is_none() && req.disabled.is_none() {
        return Err(Error::bad_request("give role, disabled, or both"));
    }
    let (role, disabled) = (req.role, req.disabled);
    let (before, after) = on_store(&state, move |c| {
        let tx = c.transaction()?;
        let mut before = None;
        let mut after = None;
        if let Some(role) = role {
            let (b, a) = set_role(&tx, id, role)?;
            before.get_or_insert(b);
            after = Some(a);
        }
        if let Some(d) = disabled {
            let (b, a) = set_disabled(&tx, id, d)?;
            before.get_or_insert(b);
            after = Some(a);
        }
        tx.commit()?;
        match (before, after) {
            (Some(b), Some(a)) => Ok((b, a)),
            _ => Err(Error::internal("update_staff: nothing was updated")),
        }
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
    if before.role != after.role || (after.disabled && !before.disabled) {
        // Open WebSockets were identified with the old role (or account).
        let _ = state
            .hub
            .send(crate::hub_task::HubMsg::Input(
                tuxa_signaling::Input::StaffRevoked(id.0 as u64),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn staff(role: StaffRole, facility: i64) -> Staff {
        Staff {
            id: StaffId(1),
            username: Username::parse("someone").unwrap(),
            name: "Nguyễn Văn A".into(),
            role,
            facility_id: FacilityId(facility),
            practitioner_id: None,
            disabled: false,
            created_at: 0,
        }
    }

    fn facility(id: i64, tier: Tier) -> Facility {
        Facility {
            id: FacilityId(id),
            name: format!("f{id}"),
            tier,
            parent_id: None,
            phone: None,
        }
    }

    #[test]
    fn scoping_for_every_role_and_tier() {
        // For every role and every tier of the home facility: the own
        // facility is visible; another facility only to a coordinator or
        // admin at province level; nothing to a disabled account.
        for role in StaffRole::ALL {
            for tier in Tier::ALL {
                let home = facility(10, tier);
                let s = staff(role, 10);
                assert!(
                    may_see_facility(&s, &home, FacilityId(10)),
                    "{role:?} at {tier:?} sees own facility"
                );
                let sees_all = matches!(role, StaffRole::Coordinator | StaffRole::Admin)
                    && tier == Tier::Province;
                for other in [11, 12, 99] {
                    assert_eq!(
                        may_see_facility(&s, &home, FacilityId(other)),
                        sees_all,
                        "{role:?} at {tier:?} looking at facility {other}"
                    );
                }
                let disabled = Staff {
                    disabled: true,
                    ..s.clone()
                };
                assert!(!may_see_facility(&disabled, &home, FacilityId(10)));
                assert!(!may_see_facility(&disabled, &home, FacilityId(11)));
            }
        }
        // Spelled out, the cases the issue names.
        let district = facility(2, Tier::District);
        assert!(!may_see_facility(
            &staff(StaffRole::Nurse, 2),
            &district,
            FacilityId(3)
        ));
        assert!(!may_see_facility(
            &staff(StaffRole::Coordinator, 2),
            &district,
            FacilityId(3)
        ));
        let province = facility(1, Tier::Province);
        assert!(!may_see_facility(
            &staff(StaffRole::Doctor, 1),
            &province,
            FacilityId(2)
        ));
        assert!(may_see_facility(
            &staff(StaffRole::Coordinator, 1),
            &province,
            FacilityId(2)
        ));
        assert!(may_see_facility(
            &staff(StaffRole::Admin, 1),
            &province,
            FacilityId(2)
        ));
    }

    #[test]
    fn enums_and_usernames_parse() {
        for t in Tier::ALL {
            assert_eq!(Tier::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
        }
        for r in StaffRole::ALL {
            assert_eq!(StaffRole::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), json!(r.as_str()));
        }
        assert_eq!(Tier::parse("hospital"), None);
        assert_eq!(StaffRole::parse("patient"), None);
        assert_eq!(Username::parse(" BS.Minh ").unwrap().as_str(), "bs.minh");
        for bad in ["ab", ".minh", "bs minh", "bác.sĩ", &"a".repeat(33), ""] {
            assert!(Username::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn tiers_nest_as_the_network_does() {
        use Tier::*;
        assert!(Province.parent_allowed(None));
        assert!(!Province.parent_allowed(Some(Province)));
        assert!(District.parent_allowed(Some(Province)));
        assert!(!District.parent_allowed(None));
        assert!(CommuneStation.parent_allowed(Some(District)));
        assert!(!CommuneStation.parent_allowed(Some(Province)));
        assert!(Cdc.parent_allowed(None));
        assert!(Cdc.parent_allowed(Some(Province)));
        assert!(!Cdc.parent_allowed(Some(District)));
    }
}
