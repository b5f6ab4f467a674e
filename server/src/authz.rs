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
