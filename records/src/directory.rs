//! The directory: facilities (with their tier and parent), practitioners,
//! staff accounts, and which facility's queues and cases a staff member may
//! see. Parsed at the edge (request bodies, rows) into these types, so the
//! rest of the code never handles a bare string role or a bare integer id.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{FacilityId, PractitionerId, StaffId};

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

    pub fn parent_rule(self) -> &'static str {
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

#[cfg(feature = "sqlite")]
crate::text_enum_sql!(Tier);
#[cfg(feature = "sqlite")]
crate::text_enum_sql!(StaffRole);

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

#[cfg(feature = "sqlite")]
impl rusqlite::types::ToSql for Username {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::from(self.0.as_str()))
    }
}

#[cfg(feature = "sqlite")]
impl rusqlite::types::FromSql for Username {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let s = v.as_str()?;
        Username::parse(s).ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(format!("bad username {s:?}").into())
        })
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

impl Profile {
    /// [`may_see_facility`] for this staff member.
    pub fn may_see_facility(&self, target: FacilityId) -> bool {
        may_see_facility(&self.staff, &self.facility, target)
    }
}
