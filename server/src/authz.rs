//! Who is calling an endpoint — the admin key or a signed-in staff member —
//! and what their role and scope allow (docs/api.md, "Who may call what").
//!
//! Every staff-facing route starts with [`Actor::from_headers`] and then asks
//! [`Actor::require`] / [`Actor::sees`]; the audit log names the caller with
//! [`Actor::audit_name`].

use axum::http::{HeaderMap, header};
use tuxa_protocol::ErrorCode;

use crate::directory::{FacilityId, Profile, StaffRole, Tier};
use crate::http::{ApiError, ApiResult, AppState, check_admin};

#[derive(Debug, Clone)]
pub enum Actor {
    /// The admin key: everything, everywhere.
    Admin,
    Staff(Box<Profile>),
}

impl Actor {
    /// The admin key when an `Authorization` header is present (a wrong key
    /// is refused, not retried as a session), else the session cookie.
    pub async fn from_headers(state: &AppState, headers: &HeaderMap) -> ApiResult<Actor> {
        if headers.contains_key(header::AUTHORIZATION) {
            check_admin(state, headers)?;
            return Ok(Actor::Admin);
        }
        match crate::auth::signed_in(state, headers).await {
            Ok(s) => Ok(Actor::Staff(Box::new(s.profile))),
            Err(_) => Err(ApiError::new(
                ErrorCode::Unauthorized,
                "sign in, or send the admin key",
            )),
        }
    }

    /// `admin` or `staff:<id>`, for the audit log.
    pub fn audit_name(&self) -> String {
        match self {
            Actor::Admin => "admin".into(),
            Actor::Staff(p) => format!("staff:{}", p.staff.id.0),
        }
    }

    pub fn profile(&self) -> Option<&Profile> {
        match self {
            Actor::Admin => None,
            Actor::Staff(p) => Some(p),
        }
    }

    pub fn role(&self) -> Option<StaffRole> {
        self.profile().map(|p| p.staff.role)
    }

    /// The staff member's own facility (none for the admin key).
    pub fn facility(&self) -> Option<FacilityId> {
        self.profile().map(|p| p.facility.id)
    }

    /// Whether the caller may see what belongs to `facility`. Things that
    /// belong to no facility (made with the admin key) are seen by the admin
    /// key and by province-level coordinators and admins.
    pub fn sees(&self, facility: Option<FacilityId>) -> bool {
        match self {
            Actor::Admin => true,
            Actor::Staff(p) => match facility {
                Some(f) => p.may_see_facility(f),
                None => {
                    !p.staff.disabled
                        && p.facility.tier == Tier::Province
                        && matches!(p.staff.role, StaffRole::Coordinator | StaffRole::Admin)
                }
            },
        }
    }

    /// Refuses (`forbidden`) staff whose role is not in `roles`; the admin
    /// key always passes.
    pub fn require(&self, roles: &[StaffRole], what: &str) -> ApiResult<()> {
        match self.role() {
            None => Ok(()),
            Some(r) if roles.contains(&r) => Ok(()),
            Some(r) => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("a {} may not {what}", r.as_str()),
            )),
        }
    }

    /// [`Actor::require`] and [`Actor::sees`] together.
    pub fn require_in(
        &self,
        roles: &[StaffRole],
        facility: Option<FacilityId>,
        what: &str,
    ) -> ApiResult<()> {
        self.require(roles, what)?;
        if self.sees(facility) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("not your facility: you may not {what}"),
            ))
        }
    }
}

/// Roles that manage the on-call queues and see reports and live state.
pub const COORDINATION: &[StaffRole] = &[StaffRole::Admin, StaffRole::Coordinator];
/// Roles that may create consultations and mint links.
pub const CARE: &[StaffRole] = &[StaffRole::Admin, StaffRole::Coordinator, StaffRole::Doctor];
/// Roles that manage the directory.
pub const ADMINISTRATION: &[StaffRole] = &[StaffRole::Admin];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{Facility, Staff, StaffId, Username};

    const PROVINCE: FacilityId = FacilityId(1);
    const DISTRICT: FacilityId = FacilityId(2);
    const OTHER: FacilityId = FacilityId(3);

    fn actor(role: StaffRole, facility: FacilityId, disabled: bool) -> Actor {
        let tier = if facility == PROVINCE {
            Tier::Province
        } else {
            Tier::District
        };
        Actor::Staff(Box::new(Profile {
            staff: Staff {
                id: StaffId(7),
                username: Username::parse("someone").expect("a username"),
                name: "Someone".into(),
                role,
                facility_id: facility,
                practitioner_id: None,
                disabled,
                created_at: 0,
            },
            facility: Facility {
                id: facility,
                name: "F".into(),
                tier,
                parent_id: (facility != PROVINCE).then_some(PROVINCE),
            },
            practitioner: None,
        }))
    }

    /// Every role against every kind of action, at home and elsewhere.
    #[test]
    fn each_role_may_do_what_the_table_says_and_no_more() {
        use StaffRole::*;
        /// (role, home facility, roles allowed, target facility, allowed?)
        type Case = (
            StaffRole,
            FacilityId,
            &'static [StaffRole],
            Option<FacilityId>,
            bool,
        );
        let cases: &[Case] = &[
            // Directory changes: administrators, in scope.
            (Admin, PROVINCE, ADMINISTRATION, Some(OTHER), true),
            (Admin, DISTRICT, ADMINISTRATION, Some(DISTRICT), true),
            (Admin, DISTRICT, ADMINISTRATION, Some(OTHER), false),
            (Admin, DISTRICT, ADMINISTRATION, None, false),
            (Coordinator, PROVINCE, ADMINISTRATION, Some(DISTRICT), false),
            (Doctor, DISTRICT, ADMINISTRATION, Some(DISTRICT), false),
            // Queues and rosters: coordinators and administrators, in scope.
            (Coordinator, PROVINCE, COORDINATION, Some(OTHER), true),
            (Coordinator, PROVINCE, COORDINATION, None, true),
            (Coordinator, DISTRICT, COORDINATION, Some(DISTRICT), true),
            (Coordinator, DISTRICT, COORDINATION, Some(OTHER), false),
            (Doctor, PROVINCE, COORDINATION, Some(PROVINCE), false),
            (Nurse, DISTRICT, COORDINATION, Some(DISTRICT), false),
            // Consultations and links: doctors too, at their own facility only.
            (Doctor, DISTRICT, CARE, Some(DISTRICT), true),
            (Doctor, DISTRICT, CARE, Some(OTHER), false),
            (Doctor, PROVINCE, CARE, Some(DISTRICT), false),
            (Doctor, PROVINCE, CARE, None, false),
            (Nurse, DISTRICT, CARE, Some(DISTRICT), false),
        ];
        for (role, home, roles, target, allowed) in cases {
            let a = actor(*role, *home, false);
            assert_eq!(
                a.require_in(roles, *target, "act").is_ok(),
                *allowed,
                "{role:?} of {home:?} on {target:?} with {roles:?}"
            );
        }
        // A disabled account may do nothing, not even at home.
        let gone = actor(Admin, PROVINCE, true);
        assert!(!gone.sees(Some(PROVINCE)));
        assert!(!gone.sees(None));
        // The admin key may do everything, and is named so in the audit log.
        assert!(Actor::Admin.require_in(ADMINISTRATION, None, "act").is_ok());
        assert_eq!(Actor::Admin.audit_name(), "admin");
        assert_eq!(actor(Nurse, DISTRICT, false).audit_name(), "staff:7");
        let refused = actor(Nurse, DISTRICT, false)
            .require(CARE, "mint links")
            .expect_err("a nurse may not");
        assert_eq!(refused.code(), ErrorCode::Forbidden);
    }
}
