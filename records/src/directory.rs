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

/// Whether a change of account from `before` to `after` must end what the
/// account has open (its WebSockets were identified with the old role, or
/// the account may no longer act).
pub fn revokes_connections(before: &Staff, after: &Staff) -> bool {
    before.role != after.role || (after.disabled && !before.disabled)
}

// ---------------------------------------------------------------------------
// New records, and the rules their fields follow

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

/// A trimmed, non-empty text of at most `max` characters without control
/// characters.
pub fn text(field: &str, value: &str, max: usize) -> crate::Result<String> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(crate::Error::bad_request(format!(
            "{field} must be 1 to {max} characters, without control characters"
        )));
    }
    Ok(v.to_owned())
}

/// A phone number as people write it: 6 to 15 digits, with `+` in front
/// and spaces, dots, dashes or brackets between groups. Empty is none.
pub fn phone(v: Option<&str>) -> crate::Result<Option<String>> {
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
        return Err(crate::Error::bad_request(
            "phone: 6 to 15 digits, e.g. 0210 3812 345 or +84 210 3812 345",
        ));
    }
    Ok(Some(v.to_owned()))
}

impl Username {
    /// [`Username::parse`], or the refusal that says what a username is.
    pub fn parse_or_refuse(s: &str) -> crate::Result<Username> {
        Username::parse(s).ok_or_else(|| {
            crate::Error::bad_request(
                "username must be 3 to 32 of a-z 0-9 . _ -, starting with a letter or digit",
            )
        })
    }
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
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::json!(t.as_str())
            );
        }
        for r in StaffRole::ALL {
            assert_eq!(StaffRole::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::json!(r.as_str())
            );
        }
        assert_eq!(Tier::parse("hospital"), None);
        assert_eq!(StaffRole::parse("patient"), None);
        assert_eq!(Username::parse(" BS.Minh ").unwrap().as_str(), "bs.minh");
        for bad in ["ab", ".minh", "bs minh", "bác.sĩ", &"a".repeat(33), ""] {
            assert!(Username::parse(bad).is_none(), "{bad:?}");
            assert!(Username::parse_or_refuse(bad).is_err(), "{bad:?}");
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

    #[test]
    fn a_new_role_or_disabling_revokes_re_enabling_does_not() {
        let s = staff(StaffRole::Nurse, 1);
        let off = Staff {
            disabled: true,
            ..s.clone()
        };
        let doctor = Staff {
            role: StaffRole::Doctor,
            ..s.clone()
        };
        assert!(!revokes_connections(&s, &s));
        assert!(revokes_connections(&s, &off));
        assert!(revokes_connections(&s, &doctor));
        assert!(!revokes_connections(&off, &s));
    }

    #[test]
    fn texts_and_phones() {
        assert_eq!(text("name", "  Trạm Y tế  ", 20).unwrap(), "Trạm Y tế");
        for bad in ["", "   ", "a\nb", &"x".repeat(21)] {
            let e = text("name", bad, 20).unwrap_err();
            assert!(matches!(e, crate::Error::BadRequest(_)), "{bad:?}");
        }
        assert_eq!(phone(None).unwrap(), None);
        assert_eq!(phone(Some("  ")).unwrap(), None);
        assert_eq!(
            phone(Some(" +84 (210) 3812-345 ")).unwrap().as_deref(),
            Some("+84 (210) 3812-345")
        );
        for bad in ["12345", "84+210381234", "0210 abc 345", &"1".repeat(16)] {
            assert!(phone(Some(bad)).is_err(), "{bad:?}");
        }
    }
}
