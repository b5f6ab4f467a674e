//! Who is calling — the admin key or a signed-in staff member — and what
//! their role and scope allow (docs/api.md, "Who may call what").
//!
//! The server's gate authenticates the caller into an [`Actor`] (it alone
//! knows headers and cookies); handlers then ask [`Actor::require`] /
//! [`Actor::sees`], or, for one consultation or conference request,
//! [`Actor::may`] / [`Actor::check`] with a [`Permission`] and the
//! [`Parties`] it concerns; the audit log names the caller with
//! [`Actor::audit_name`].

use crate::directory::{Profile, StaffRole, Tier};
use crate::error::{Error, Result};
use crate::ids::{FacilityId, StaffId};

#[derive(Debug, Clone)]
pub enum Actor {
    /// The admin key: everything, everywhere.
    Admin,
    Staff(Box<Profile>),
}

impl Actor {
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
    pub fn require(&self, roles: &[StaffRole], what: &str) -> Result<()> {
        match self.role() {
            None => Ok(()),
            Some(r) if roles.contains(&r) => Ok(()),
            Some(r) => Err(Error::Forbidden(format!("a {} may not {what}", r.as_str()))),
        }
    }

    /// [`Actor::require`] and [`Actor::sees`] together.
    pub fn require_in(
        &self,
        roles: &[StaffRole],
        facility: Option<FacilityId>,
        what: &str,
    ) -> Result<()> {
        self.require(roles, what)?;
        if self.sees(facility) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "not your facility: you may not {what}"
            )))
        }
    }
}

/// What one may do with a consultation or a conference request: each is
/// decided on its own by [`Actor::may`] (seeing a conference is not
/// managing it). docs/api.md, "Who may call what", has the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read it: `GET` the consultation, the conference request and its
    /// attachments.
    See,
    /// Get one's own link into a conference (`POST /conferences/{id}/join`).
    Join,
    /// Moderate a conference from outside the call: its guest links. (In
    /// the call, the hub gives the chair's rights to the named chair's link.)
    Moderate,
    /// End it (`POST /consultations/{id}/end`).
    End,
    /// Mint links into it through `POST /consultations/{id}/links`.
    MintLinks,
    /// Export its record (`record.json`, `record.fhir.json`, the minutes).
    Export,
    /// Schedule or decline a conference request.
    Schedule,
    /// Add attachments to a conference request.
    Attach,
    /// Enter a conference's conclusion.
    Conclude,
}

impl Permission {
    /// Every permission, for tables and tests.
    #[cfg(test)]
    pub const ALL: [Permission; 9] = [
        Permission::See,
        Permission::Join,
        Permission::Moderate,
        Permission::End,
        Permission::MintLinks,
        Permission::Export,
        Permission::Schedule,
        Permission::Attach,
        Permission::Conclude,
    ];

    /// Why it was refused, for the `forbidden` answer.
    fn refusal(self) -> &'static str {
        match self {
            Permission::See => {
                "this consultation is not one of your facility's, nor one you are invited to"
            }
            Permission::Join => "you are not invited to this conference",
            Permission::Moderate => "only the conference's chair may do this",
            Permission::End => {
                "a conference is ended by its chair or the asked facility's coordinators; \
                 a visit by its facility's doctors and coordinators"
            }
            Permission::MintLinks => {
                "links are minted by the consultation's facility (for a conference: its \
                 coordinators; invitees join with POST /api/v1/conferences/{id}/join)"
            }
            Permission::Export => "you may not export this consultation's record",
            Permission::Schedule => {
                "conferences are scheduled or declined by the asked facility's coordinators and doctors"
            }
            Permission::Attach => {
                "attachments are added by the requesting facility or by those who schedule"
            }
            Permission::Conclude => "the conclusion is entered by the chair or the secretary",
        }
    }
}

/// Who a consultation (or a conference request) concerns: all that the
/// [`Permission`]s are decided by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parties {
    /// Whose it is: its creator's facility, the queue's, or for a
    /// conference the facility that was asked. `None`: made with the admin
    /// key (see [`Actor::sees`]).
    pub owner: Option<FacilityId>,
    /// Set when it holds (or will hold) a case conference.
    pub conference: Option<ConferenceParties>,
}

/// The people and facilities of a case conference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceParties {
    /// The facility that asked for it.
    pub requester: FacilityId,
    /// The staff member the scheduler named to chair (once scheduled).
    pub chair: Option<StaffId>,
    /// The secretary the chair named in the call.
    pub secretary: Option<StaffId>,
    /// Everyone invited (the requester and the chair are).
    pub invitees: Vec<StaffId>,
}

impl Actor {
    /// The caller's staff id, when it is an account that may act at all.
    fn me(&self) -> Option<StaffId> {
        self.profile()
            .filter(|p| !p.staff.disabled)
            .map(|p| p.staff.id)
    }

    fn has_role(&self, roles: &[StaffRole]) -> bool {
        self.role().is_some_and(|r| roles.contains(&r))
    }

    /// Whether the caller may do `what` with a consultation or conference
    /// request that concerns `parties`.
    pub fn may(&self, what: Permission, parties: &Parties) -> bool {
        if matches!(self, Actor::Admin) {
            // The admin key does everything but act as a person: only an
            // invitee joins, only the chair moderates and concludes.
            return !matches!(
                what,
                Permission::Join | Permission::Moderate | Permission::Conclude
            );
        }
        let me = self.me();
        let conf = parties.conference.as_ref();
        let is_chair = me.is_some() && conf.is_some_and(|c| c.chair == me);
        let owners_side = |roles: &[StaffRole]| self.has_role(roles) && self.sees(parties.owner);
        match what {
            Permission::See => {
                self.sees(parties.owner)
                    || conf.is_some_and(|c| {
                        self.sees(Some(c.requester)) || me.is_some_and(|m| c.invitees.contains(&m))
                    })
            }
            Permission::Join => conf
                .is_some_and(|c| me.is_some_and(|m| c.invitees.contains(&m) || c.chair == Some(m))),
            Permission::Moderate => is_chair,
            // Seeing a conference (invited, or the facility that asked) is
            // not managing it: the asked facility's coordinators end it, or
            // its chair.
            Permission::End => match conf {
                Some(_) => is_chair || owners_side(COORDINATION),
                None => owners_side(CARE),
            },
            // A doctor's or nurse's link enters a conference without the
            // lobby: only those who schedule it hand them out, beside the
            // invitees' own (`join`) and the chair's guest links.
            Permission::MintLinks => match conf {
                Some(_) => owners_side(COORDINATION),
                None => owners_side(CARE),
            },
            // The record is the evidence of the consultation: everyone it
            // concerns may read it — the owning facility, and for a
            // conference the district that asked (the patient is theirs and
            // the conclusion goes into their chart) and the invitees, who
            // sit on the council the minutes record.
            Permission::Export => self.may(Permission::See, parties),
            Permission::Schedule => match self.profile() {
                None => false,
                Some(p) => match p.staff.role {
                    StaffRole::Admin | StaffRole::Coordinator => self.sees(parties.owner),
                    StaffRole::Doctor => !p.staff.disabled && parties.owner == Some(p.facility.id),
                    StaffRole::Nurse => false,
                },
            },
            Permission::Attach => {
                let asked_from = conf.is_some_and(|c| {
                    self.profile()
                        .is_some_and(|p| !p.staff.disabled && p.facility.id == c.requester)
                });
                asked_from || self.may(Permission::Schedule, parties)
            }
            Permission::Conclude => {
                me.is_some() && conf.is_some_and(|c| c.chair == me || c.secretary == me)
            }
        }
    }

    /// The facility whose activity report the caller may read when asking
    /// for `asked` (`None`: the whole network): the admin key and
    /// province-level coordinators and administrators any, other
    /// coordinators and administrators their own facility only; clinical
    /// staff none.
    pub fn report_scope(&self, asked: Option<FacilityId>) -> Result<Option<FacilityId>> {
        let Some(p) = self.profile() else {
            return Ok(asked);
        };
        match p.staff.role {
            StaffRole::Coordinator | StaffRole::Admin if p.facility.tier == Tier::Province => {
                Ok(asked)
            }
            StaffRole::Coordinator | StaffRole::Admin => Ok(Some(p.facility.id)),
            StaffRole::Doctor | StaffRole::Nurse => Err(Error::Forbidden(
                "the activity report is for coordinators".into(),
            )),
        }
    }

    /// [`Actor::may`], or `forbidden` saying who may.
    pub fn check(&self, what: Permission, parties: &Parties) -> Result<()> {
        if self.may(what, parties) {
            Ok(())
        } else {
            Err(Error::Forbidden(what.refusal().into()))
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
    use crate::directory::{Facility, Staff, Username};

    const PROVINCE: FacilityId = FacilityId(1);
    const DISTRICT: FacilityId = FacilityId(2);
    const OTHER: FacilityId = FacilityId(3);

    fn actor(role: StaffRole, facility: FacilityId, disabled: bool) -> Actor {
        staff_actor(role, facility, 7, disabled)
    }

    fn staff_actor(role: StaffRole, facility: FacilityId, id: i64, disabled: bool) -> Actor {
        let tier = if facility == PROVINCE {
            Tier::Province
        } else {
            Tier::District
        };
        Actor::Staff(Box::new(Profile {
            staff: Staff {
                id: StaffId(id),
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
                phone: None,
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
        assert_eq!(refused.code(), tuxa_protocol::ErrorCode::Forbidden);
    }

    /// Every party of a conference against every permission: seeing it
    /// (invited, or the facility that asked) is not managing it.
    #[test]
    fn a_conference_is_managed_by_its_owner_and_chair_not_by_who_sees_it() {
        use Permission::*;
        use StaffRole::*;
        // The district asked the province; staff 20 chairs, 30 (who asked)
        // is secretary, 40 of another district is invited.
        let conf = Parties {
            owner: Some(PROVINCE),
            conference: Some(ConferenceParties {
                requester: DISTRICT,
                chair: Some(StaffId(20)),
                secretary: Some(StaffId(30)),
                invitees: vec![StaffId(20), StaffId(30), StaffId(40)],
            }),
        };
        let visit = Parties {
            owner: Some(DISTRICT),
            conference: None,
        };
        let t = true;
        let f = false;
        // See, Join, Moderate, End, MintLinks, Export, Schedule, Attach, Conclude
        let cases: &[(&str, Actor, [bool; 9])] = &[
            ("admin key", Actor::Admin, [t, f, f, t, t, t, t, t, f]),
            (
                "chair",
                staff_actor(Doctor, PROVINCE, 20, false),
                [t, t, t, t, f, t, t, t, t],
            ),
            (
                "province doctor",
                staff_actor(Doctor, PROVINCE, 21, false),
                [t, f, f, f, f, t, t, t, f],
            ),
            (
                "province coordinator",
                staff_actor(Coordinator, PROVINCE, 22, false),
                [t, f, f, t, t, t, t, t, f],
            ),
            (
                "requesting doctor",
                staff_actor(Doctor, DISTRICT, 30, false),
                [t, t, f, f, f, t, f, t, t],
            ),
            (
                "requesting coordinator",
                staff_actor(Coordinator, DISTRICT, 31, false),
                [t, f, f, f, f, t, f, t, f],
            ),
            (
                "invitee",
                staff_actor(Doctor, OTHER, 40, false),
                [t, t, f, f, f, t, f, f, f],
            ),
            ("outsider", staff_actor(Nurse, OTHER, 41, false), [f; 9]),
            (
                "disabled chair",
                staff_actor(Doctor, PROVINCE, 20, true),
                [f; 9],
            ),
        ];
        for (who, a, expected) in cases {
            for (p, want) in Permission::ALL.iter().zip(expected) {
                assert_eq!(a.may(*p, &conf), *want, "{who}: {p:?}");
                assert_eq!(a.check(*p, &conf).is_ok(), *want, "{who}: {p:?}");
            }
        }
        // A visit: its facility's doctors end it and mint its links; a nurse
        // sees it only; no one joins, moderates or concludes it by the API.
        let doctor = staff_actor(Doctor, DISTRICT, 50, false);
        let nurse = staff_actor(Nurse, DISTRICT, 51, false);
        let elsewhere = staff_actor(Doctor, PROVINCE, 52, false);
        for p in [See, End, MintLinks, Export] {
            assert!(doctor.may(p, &visit), "{p:?}");
            assert!(!elsewhere.may(p, &visit), "{p:?}");
        }
        assert!(nurse.may(See, &visit) && nurse.may(Export, &visit));
        assert!(!nurse.may(End, &visit) && !nurse.may(MintLinks, &visit));
        for p in [Join, Moderate, Conclude] {
            assert!(
                !doctor.may(p, &visit) && !Actor::Admin.may(p, &visit),
                "{p:?}"
            );
        }
        let refused = staff_actor(Doctor, OTHER, 40, false)
            .check(End, &conf)
            .expect_err("an invitee may not end it");
        assert_eq!(refused.code(), tuxa_protocol::ErrorCode::Forbidden);
    }
}
