//! Case conferences (hội chẩn): the request a district doctor or nurse
//! files, where it stands (derived, never stored), which changes each
//! status allows, the window its links are valid in, and the rules on its
//! invitees and attachments. Sans IO: time comes in as `now`. The API's
//! JSON is the server's; the SQL is the store's.

use serde::{Deserialize, Serialize};
use tuxa_protocol::ErrorCode;

use crate::authz::{ConferenceParties, Parties};
use crate::directory::{StaffRole, Tier};
use crate::error::{Error, Result};
use crate::ids::{ConferenceId, FacilityId, StaffId};
use crate::time::UnixTime;

/// The largest attachment (an X-ray, a scanned referral, a short clip).
pub const MAX_ATTACHMENT_BYTES: usize = 10 * 1024 * 1024;
/// Links open this long before the conference starts…
pub const OPENS_BEFORE_SECS: i64 = 15 * 60;
/// …and expire this long after its planned end.
pub const GRACE_AFTER_SECS: i64 = 30 * 60;
pub const MAX_INVITEES: usize = 30;
/// What a conference lasts when the scheduler does not say.
pub const DEFAULT_DURATION_MIN: u64 = 60;
/// How far ahead a conference may be scheduled.
const MAX_AHEAD_SECS: u64 = 366 * 86_400;
/// The attachments a conference's file accepts.
pub const ALLOWED_TYPES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "application/pdf",
    "application/dicom",
    "video/mp4",
    "text/plain",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    Routine,
    Urgent,
    Emergency,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Routine => "routine",
            Urgency::Urgent => "urgent",
            Urgency::Emergency => "emergency",
        }
    }

    pub fn parse(s: &str) -> Option<Urgency> {
        [Urgency::Routine, Urgency::Urgent, Urgency::Emergency]
            .into_iter()
            .find(|u| u.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    Male,
    Female,
    Other,
}

impl Sex {
    pub fn as_str(self) -> &'static str {
        match self {
            Sex::Male => "male",
            Sex::Female => "female",
            Sex::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Sex> {
        [Sex::Male, Sex::Female, Sex::Other]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

#[cfg(feature = "sqlite")]
crate::text_enum_sql!(Urgency);
#[cfg(feature = "sqlite")]
crate::text_enum_sql!(Sex);

/// A citizen's personal identification number (số định danh cá nhân, the
/// number on the CCCD card): 12 digits. Circular 13/2025 links electronic
/// medical records by it, so a conference's record carries it when the
/// requester gives it. Parsed once at the edge; anything else is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CitizenId(String);

impl CitizenId {
    pub fn parse(s: &str) -> Result<CitizenId, &'static str> {
        let s = s.trim();
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(CitizenId(s.to_owned()))
        } else {
            Err(
                "patient.citizen_id must be the 12 digits of a personal identification number (CCCD)",
            )
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CitizenId {
    type Error = &'static str;
    fn try_from(s: String) -> Result<CitizenId, &'static str> {
        CitizenId::parse(&s)
    }
}

impl From<CitizenId> for String {
    fn from(c: CitizenId) -> String {
        c.0
    }
}

// ---------------------------------------------------------------------------
// Status and its changes

/// Where a request stands; derived from its row, never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Requested,
    Scheduled,
    Declined,
    Held,
    /// Called off by those who schedule, before it was held.
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Requested,
        Status::Scheduled,
        Status::Declined,
        Status::Held,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Scheduled => "scheduled",
            Status::Declined => "declined",
            Status::Held => "held",
            Status::Cancelled => "cancelled",
        }
    }

    /// The status of a request from its row: a decline or a cancellation
    /// stands whatever else happened; without a consultation it waits; its
    /// consultation ended, it was held.
    pub fn derive(
        declined: bool,
        cancelled: bool,
        has_consultation: bool,
        consultation_ended: bool,
    ) -> Status {
        if declined {
            Status::Declined
        } else if cancelled {
            Status::Cancelled
        } else if !has_consultation {
            Status::Requested
        } else if consultation_ended {
            Status::Held
        } else {
            Status::Scheduled
        }
    }

    fn expect(self, want: Status, expected: &str) -> Result<()> {
        if self == want {
            Ok(())
        } else {
            Err(Error::conflict(format!(
                "the request is {}, not {expected}",
                self.as_str()
            )))
        }
    }

    /// Scheduling: only a request waiting for that decision.
    pub fn schedule(self) -> Result<Status> {
        self.expect(Status::Requested, "waiting to be scheduled")?;
        Ok(Status::Scheduled)
    }

    /// Declining: only a request waiting for that decision.
    pub fn decline(self) -> Result<Status> {
        self.expect(Status::Requested, "waiting to be scheduled")?;
        Ok(Status::Declined)
    }

    /// Whether a conference under way may be moved or called off: it is
    /// scheduled, and (checked second, with `started`) nobody has entered
    /// its room yet; a conference under way is ended, not moved.
    fn scheduled_not_started(self, started: impl FnOnce() -> Result<bool>) -> Result<()> {
        self.expect(Status::Scheduled, "scheduled")?;
        if started()? {
            return Err(Error::conflict(
                "the conference has started: end it from the room instead",
            ));
        }
        Ok(())
    }

    /// Another time: a scheduled conference nobody has entered yet.
    /// `started` is asked only when the status allows it.
    pub fn reschedule(self, started: impl FnOnce() -> Result<bool>) -> Result<Status> {
        self.scheduled_not_started(started)?;
        Ok(Status::Scheduled)
    }

    /// Calling it off: a scheduled conference nobody has entered yet.
    pub fn cancel(self, started: impl FnOnce() -> Result<bool>) -> Result<Status> {
        self.scheduled_not_started(started)?;
        Ok(Status::Cancelled)
    }

    /// Its room ended: a scheduled conference was held.
    pub fn hold(self) -> Result<Status> {
        self.expect(Status::Scheduled, "scheduled")?;
        Ok(Status::Held)
    }

    /// Entering or correcting the conclusion: once scheduled, and after.
    pub fn conclude(self) -> Result<Status> {
        match self {
            Status::Scheduled | Status::Held => Ok(self),
            _ => Err(Error::conflict(format!("the request is {}", self.as_str()))),
        }
    }

    /// Adding to its file: until it was held, declined or cancelled.
    pub fn attach(self) -> Result<Status> {
        match self {
            Status::Requested | Status::Scheduled => Ok(self),
            Status::Held | Status::Declined | Status::Cancelled => Err(Error::conflict(
                "the conference was held or declined: its file is closed",
            )),
        }
    }

    /// Minting a link into its room: only while scheduled.
    pub fn link(self) -> Result<()> {
        self.expect(Status::Scheduled, "scheduled")
    }
}

// ---------------------------------------------------------------------------
// The request as stored

/// A facility as a request names it (`name` is `None` for a facility row
/// that has gone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FacilityRef {
    pub id: FacilityId,
    pub name: Option<String>,
}

/// Who a staff member is, as a request shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersonDetails {
    pub name: String,
    pub role: StaffRole,
    /// Their facility's name.
    pub facility: String,
    pub licence_number: Option<String>,
}

/// A staff member named by a request; `details` is `None` when the account
/// (or its facility) is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    pub staff_id: StaffId,
    #[serde(flatten)]
    pub details: Option<PersonDetails>,
}

impl Person {
    pub fn name(&self) -> Option<&str> {
        self.details.as_ref().map(|d| d.name.as_str())
    }

    pub fn licence_number(&self) -> Option<&str> {
        self.details
            .as_ref()
            .and_then(|d| d.licence_number.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patient {
    pub name: String,
    pub birth_year: Option<i64>,
    pub sex: Option<Sex>,
    pub address: Option<String>,
    /// The requesting facility's own record number (số hồ sơ / mã bệnh án).
    pub record_number: Option<String>,
    pub citizen_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub text_version: String,
    pub remote_examination: bool,
    pub third_parties: bool,
    pub recording: bool,
}

/// An attachment's description (its bytes are read apart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    pub id: i64,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub uploaded_at: i64,
}

/// An attachment to be downloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentFile {
    pub name: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// When and with whom a scheduled conference is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub consultation_id: String,
    pub starts_at: Option<i64>,
    pub duration_min: Option<i64>,
    pub chair: Person,
    pub invitees: Vec<Person>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancellation {
    pub at: i64,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conclusion {
    pub text: String,
    /// Hướng xử trí: what the requesting side is advised to do next.
    pub management_plan: Option<String>,
    pub by: Person,
    pub at: Option<i64>,
}

/// A conference request as stored, with the people and facilities it
/// names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceRequest {
    pub id: ConferenceId,
    pub status: Status,
    pub urgency: Urgency,
    pub from_facility: FacilityRef,
    pub to_facility: FacilityRef,
    pub specialty: String,
    pub patient: Patient,
    pub summary: String,
    pub question: String,
    pub requested_by: Person,
    pub created_at: i64,
    pub consent: Consent,
    pub attachments: Vec<Attachment>,
    /// The room, once scheduled.
    pub consultation_id: Option<String>,
    pub starts_at: Option<i64>,
    pub duration_min: Option<i64>,
    pub chair: Option<StaffId>,
    pub secretary: Option<Person>,
    pub invitees: Vec<StaffId>,
    /// Set when it has a room and a chair.
    pub schedule: Option<Schedule>,
    pub decline_reason: Option<String>,
    pub cancelled: Option<Cancellation>,
    pub conclusion: Option<Conclusion>,
}

impl ConferenceRequest {
    /// Who the request concerns, for the permission checks: it belongs to
    /// the facility asked.
    pub fn parties(&self) -> Parties {
        Parties {
            owner: Some(self.to_facility.id),
            conference: Some(ConferenceParties {
                requester: self.from_facility.id,
                chair: self.chair,
                secretary: self.secretary.as_ref().map(|p| p.staff_id),
                invitees: self.invitees.clone(),
            }),
        }
    }

    /// The link window of this conference at `now` (see [`link_window`]),
    /// refused once its time is over.
    pub fn link_window(&self, now: UnixTime) -> Result<LinkWindow> {
        self.status.link()?;
        link_window(self.starts_at, self.duration_min, now).ok_or_else(|| Error::Coded {
            code: ErrorCode::TokenExpired,
            message: "the conference's time is over".into(),
        })
    }

    /// The room's title.
    pub fn room_title(&self) -> String {
        format!(
            "Hội chẩn — {} — {}",
            self.specialty,
            self.from_facility.name.as_deref().unwrap_or_default()
        )
    }
}

// ---------------------------------------------------------------------------
// Links

/// When a link into a conference's room may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkWindow {
    /// Not before this (`None`: already open).
    pub not_before: Option<u64>,
    /// Valid for this long from now.
    pub ttl_secs: u64,
}

/// The window a conference's links are valid in: from 15 minutes before its
/// start to 30 minutes after its planned end (60 minutes when no duration
/// is stored). `None` once it is over, or when it has no start.
pub fn link_window(
    starts_at: Option<i64>,
    duration_min: Option<i64>,
    now: UnixTime,
) -> Option<LinkWindow> {
    let starts = starts_at?;
    let now = now.secs();
    let ends = starts
        .saturating_add(duration_min.unwrap_or(60).saturating_mul(60))
        .saturating_add(GRACE_AFTER_SECS);
    if ends <= now {
        return None;
    }
    let opens = starts.saturating_sub(OPENS_BEFORE_SECS).max(0);
    Some(LinkWindow {
        not_before: (opens > now).then_some(opens as u64),
        ttl_secs: (ends - now) as u64,
    })
}

/// The role an invitee has in the conference's room: coordinators and
/// administrators attend without a clinical role.
pub fn role_in_room(staff: StaffRole) -> tuxa_protocol::Role {
    use tuxa_protocol::Role;
    match staff {
        StaffRole::Doctor => Role::Doctor,
        StaffRole::Nurse => Role::Nurse,
        StaffRole::Coordinator | StaffRole::Admin => Role::Guest,
    }
}

// ---------------------------------------------------------------------------
// Filing a request

/// A request as filed, its texts already checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    pub urgency: Urgency,
    pub from_facility: FacilityId,
    pub to_facility: FacilityId,
    pub specialty: String,
    pub patient: Patient,
    pub summary: String,
    pub question: String,
    pub requested_by: StaffId,
    pub consent: Consent,
}

/// The patient must agree to be examined remotely before anything is filed.
pub fn require_consent(remote_examination: bool) -> Result<()> {
    if remote_examination {
        Ok(())
    } else {
        Err(Error::Coded {
            code: ErrorCode::ConsentRequired,
            message:
                "the patient must consent to remote examination before a conference is requested"
                    .into(),
        })
    }
}

pub fn check_birth_year(year: Option<i64>) -> Result<()> {
    match year {
        Some(y) if !(1900..=2100).contains(&y) => Err(Error::bad_request(
            "patient.birth_year must be a year between 1900 and 2100",
        )),
        _ => Ok(()),
    }
}

/// A conference is asked of an upper-level facility that is not the
/// requester's own.
pub fn check_target(target: FacilityId, tier: Tier, from: FacilityId) -> Result<()> {
    if !matches!(tier, Tier::Province | Tier::Cdc) || target == from {
        return Err(Error::bad_request(
            "a conference is asked of an upper-level facility: a provincial hospital or the CDC",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Scheduling

/// A conference lasts 15 minutes to 4 hours.
pub fn check_duration(minutes: u64) -> Result<()> {
    if (15..=240).contains(&minutes) {
        Ok(())
    } else {
        Err(Error::bad_request(
            "duration_min must be between 15 and 240",
        ))
    }
}

/// A new schedule: within the coming year, and not already over.
pub fn check_schedule_time(starts_at: u64, duration_min: u64, now: UnixTime) -> Result<()> {
    let now = now.secs().max(0) as u64;
    let ends = starts_at.saturating_add(duration_min.saturating_mul(60));
    if ends <= now || starts_at > now + MAX_AHEAD_SECS {
        return Err(Error::bad_request(
            "starts_at must be in the coming year and the conference not already over",
        ));
    }
    Ok(())
}

/// Another time: in the future, within a year.
pub fn check_reschedule_time(starts_at: u64, now: UnixTime) -> Result<()> {
    let now = now.secs().max(0) as u64;
    if starts_at <= now || starts_at > now + MAX_AHEAD_SECS {
        return Err(Error::bad_request(
            "starts_at must be in the future, within a year",
        ));
    }
    Ok(())
}

/// A doctor scheduling for their facility chairs it themselves (they
/// cannot list the other staff). `scheduler`: the caller's id and role, when
/// a staff member.
pub fn check_chair(scheduler: Option<(StaffId, StaffRole)>, chair: StaffId) -> Result<()> {
    match scheduler {
        Some((me, StaffRole::Doctor)) if me != chair => Err(Error::forbidden(
            "a doctor who schedules a conference chairs it",
        )),
        _ => Ok(()),
    }
}

/// Everyone invited: the requester, the chair and those named, once each,
/// at most [`MAX_INVITEES`].
pub fn invitees(requester: StaffId, chair: StaffId, named: &[StaffId]) -> Result<Vec<StaffId>> {
    let mut all = vec![requester, chair];
    all.extend(named.iter().copied());
    all.sort();
    all.dedup();
    if all.len() > MAX_INVITEES {
        return Err(Error::bad_request(format!(
            "at most {MAX_INVITEES} invitees"
        )));
    }
    Ok(all)
}

/// What the invitation rules need of a staff account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invitable {
    pub role: StaffRole,
    pub disabled: bool,
}

/// Each invitee exists and is enabled, and the chair is a doctor or nurse.
/// `found`: each invitee with its account, `None` for no such account, in
/// the invitees' order (the first problem is the one reported).
pub fn check_invitees(found: &[(StaffId, Option<Invitable>)], chair: StaffId) -> Result<()> {
    for (s, st) in found {
        match st {
            None => return Err(Error::bad_request(format!("no staff member {s}"))),
            Some(st) if st.disabled => {
                return Err(Error::bad_request(format!("staff member {s} is disabled")));
            }
            Some(st) if *s == chair && !matches!(st.role, StaffRole::Doctor | StaffRole::Nurse) => {
                return Err(Error::bad_request("the chair must be a doctor or nurse"));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Attachments

fn size_rule() -> Error {
    Error::bad_request(format!(
        "a file is 1 byte to {} MiB",
        MAX_ATTACHMENT_BYTES >> 20
    ))
}

/// The refusal of a body over [`MAX_ATTACHMENT_BYTES`] (or unreadable).
pub fn size_refused() -> Error {
    size_rule()
}

pub fn check_size(len: usize) -> Result<()> {
    if len == 0 || len > MAX_ATTACHMENT_BYTES {
        Err(size_rule())
    } else {
        Ok(())
    }
}

/// A file name is shown and offered for download: no path, no control
/// characters. `name` is already trimmed and bounded.
pub fn check_file_name(name: &str) -> Result<()> {
    if name
        .chars()
        .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(Error::bad_request(
            "a file name has no slashes or control characters",
        ));
    }
    Ok(())
}

/// The media type of a `Content-Type` value (parameters dropped,
/// lower-cased), when it is one of [`ALLOWED_TYPES`].
pub fn content_type(header: Option<&str>) -> Result<String> {
    let t = header
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if !ALLOWED_TYPES.contains(&t.as_str()) {
        return Err(Error::bad_request(format!(
            "Content-Type {t:?} is not accepted; send one of {}",
            ALLOWED_TYPES.join(", ")
        )));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<Status>) -> Option<ErrorCode> {
        r.err().map(|e| e.code())
    }

    #[test]
    fn status_is_derived_from_the_row() {
        assert_eq!(
            Status::derive(false, false, false, false),
            Status::Requested
        );
        assert_eq!(Status::derive(false, false, true, false), Status::Scheduled);
        assert_eq!(Status::derive(false, false, true, true), Status::Held);
        assert_eq!(Status::derive(true, false, false, false), Status::Declined);
        assert_eq!(Status::derive(false, true, true, false), Status::Cancelled);
        // A cancelled conference's room is ended too: still cancelled.
        assert_eq!(Status::derive(false, true, true, true), Status::Cancelled);
    }

    #[test]
    fn schedule_and_decline_only_from_requested() {
        for s in Status::ALL {
            let (sch, dec) = (s.schedule(), s.decline());
            if s == Status::Requested {
                assert_eq!(sch.unwrap(), Status::Scheduled);
                assert_eq!(dec.unwrap(), Status::Declined);
            } else {
                let e = sch.unwrap_err();
                assert_eq!(e.code(), ErrorCode::Conflict);
                assert_eq!(
                    e.to_string(),
                    format!("the request is {}, not waiting to be scheduled", s.as_str())
                );
                assert_eq!(code(dec), Some(ErrorCode::Conflict));
            }
        }
    }

    #[test]
    fn reschedule_and_cancel_only_when_scheduled_and_not_started() {
        for s in Status::ALL {
            let mut asked = false;
            let r = s.reschedule(|| {
                asked = true;
                Ok(false)
            });
            if s == Status::Scheduled {
                assert_eq!(r.unwrap(), Status::Scheduled);
                assert!(asked);
                assert_eq!(s.cancel(|| Ok(false)).unwrap(), Status::Cancelled);
                let e = s.cancel(|| Ok(true)).unwrap_err();
                assert_eq!(e.code(), ErrorCode::Conflict);
                assert_eq!(
                    e.to_string(),
                    "the conference has started: end it from the room instead"
                );
                assert_eq!(code(s.reschedule(|| Ok(true))), Some(ErrorCode::Conflict));
            } else {
                // The status is refused before the room is looked at.
                assert!(!asked);
                let e = r.unwrap_err();
                assert_eq!(
                    e.to_string(),
                    format!("the request is {}, not scheduled", s.as_str())
                );
                assert_eq!(code(s.cancel(|| Ok(false))), Some(ErrorCode::Conflict));
            }
        }
        // A fault looking at the room is not a refusal.
        let e = Status::Scheduled
            .cancel(|| Err(Error::internal("disk")))
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::Internal);
    }

    #[test]
    fn hold_conclude_attach_and_link_by_status() {
        for s in Status::ALL {
            assert_eq!(
                s.hold().ok(),
                (s == Status::Scheduled).then_some(Status::Held)
            );
            let concludes = matches!(s, Status::Scheduled | Status::Held);
            assert_eq!(s.conclude().ok(), concludes.then_some(s));
            if !concludes {
                assert_eq!(
                    s.conclude().unwrap_err().to_string(),
                    format!("the request is {}", s.as_str())
                );
            }
            let attaches = matches!(s, Status::Requested | Status::Scheduled);
            assert_eq!(s.attach().ok(), attaches.then_some(s));
            if !attaches {
                assert_eq!(code(s.attach()), Some(ErrorCode::Conflict));
            }
            assert_eq!(s.link().is_ok(), s == Status::Scheduled);
        }
    }

    #[test]
    fn link_window_opens_15_min_before_and_expires_30_min_after_the_end() {
        let start = 1_000_000;
        let w = |now| link_window(Some(start), Some(60), UnixTime(now));
        // An hour before: not yet open, valid until the end plus grace.
        assert_eq!(
            w(start - 3600),
            Some(LinkWindow {
                not_before: Some((start - 900) as u64),
                ttl_secs: (3600 + 3600 + 1800) as u64,
            })
        );
        // 15 minutes before, it is open.
        assert_eq!(w(start - 900).unwrap().not_before, None);
        assert_eq!(
            w(start - 901).unwrap().not_before,
            Some((start - 900) as u64)
        );
        // The last second of grace, then over.
        assert_eq!(w(start + 3600 + 1799).unwrap().ttl_secs, 1);
        assert_eq!(w(start + 3600 + 1800), None);
        // Without a duration, an hour; without a start, no window.
        assert_eq!(
            link_window(Some(start), None, UnixTime(start))
                .unwrap()
                .ttl_secs,
            5400
        );
        assert_eq!(link_window(None, Some(60), UnixTime(start)), None);
        assert_eq!(
            link_window(Some(start), Some(15), UnixTime(start))
                .unwrap()
                .ttl_secs,
            900 + 1800
        );
    }

    #[test]
    fn schedule_rules() {
        let now = UnixTime(10_000_000);
        assert!(check_duration(14).is_err());
        assert!(check_duration(15).is_ok() && check_duration(240).is_ok());
        assert!(check_duration(241).is_err());
        // Started but not over is allowed; over, or too far ahead, is not.
        assert!(check_schedule_time(10_000_000 - 600, 15, now).is_ok());
        assert!(check_schedule_time(10_000_000 - 900, 15, now).is_err());
        assert!(check_schedule_time(10_000_000 + 366 * 86_400, 60, now).is_ok());
        assert!(check_schedule_time(10_000_000 + 366 * 86_400 + 1, 60, now).is_err());
        assert!(check_reschedule_time(10_000_000, now).is_err());
        assert!(check_reschedule_time(10_000_001, now).is_ok());
        let (doc, other) = (StaffId(1), StaffId(2));
        assert_eq!(
            check_chair(Some((doc, StaffRole::Doctor)), other)
                .unwrap_err()
                .code(),
            ErrorCode::Forbidden
        );
        assert!(check_chair(Some((doc, StaffRole::Doctor)), doc).is_ok());
        assert!(check_chair(Some((doc, StaffRole::Coordinator)), other).is_ok());
        assert!(check_chair(None, other).is_ok());
    }

    #[test]
    fn invitees_are_deduplicated_and_bounded() {
        let named: Vec<StaffId> = (1..=28).map(StaffId).collect();
        let all = invitees(StaffId(1), StaffId(40), &named).unwrap();
        assert_eq!(all.len(), 29);
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        let named: Vec<StaffId> = (1..=29).map(StaffId).collect();
        let e = invitees(StaffId(50), StaffId(40), &named).unwrap_err();
        assert_eq!(e.to_string(), "at most 30 invitees");
        let named: Vec<StaffId> = (1..=28).map(StaffId).collect();
        assert_eq!(
            invitees(StaffId(50), StaffId(40), &named).unwrap().len(),
            30
        );
    }

    #[test]
    fn invitee_checks() {
        let ok = |role| {
            Some(Invitable {
                role,
                disabled: false,
            })
        };
        let chair = StaffId(2);
        assert!(
            check_invitees(
                &[
                    (StaffId(1), ok(StaffRole::Coordinator)),
                    (chair, ok(StaffRole::Nurse))
                ],
                chair
            )
            .is_ok()
        );
        let e = check_invitees(&[(StaffId(1), None)], chair).unwrap_err();
        assert_eq!(e.to_string(), "no staff member 1");
        let off = Some(Invitable {
            role: StaffRole::Doctor,
            disabled: true,
        });
        assert_eq!(
            check_invitees(&[(StaffId(3), off)], chair)
                .unwrap_err()
                .to_string(),
            "staff member 3 is disabled"
        );
        assert_eq!(
            check_invitees(&[(chair, ok(StaffRole::Coordinator))], chair)
                .unwrap_err()
                .to_string(),
            "the chair must be a doctor or nurse"
        );
    }

    #[test]
    fn attachment_rules() {
        assert_eq!(
            content_type(Some("Image/PNG; charset=binary")).unwrap(),
            "image/png"
        );
        assert!(content_type(Some("text/html")).is_err());
        assert!(content_type(None).is_err());
        assert!(check_size(0).is_err());
        assert!(check_size(1).is_ok() && check_size(MAX_ATTACHMENT_BYTES).is_ok());
        assert!(check_size(MAX_ATTACHMENT_BYTES + 1).is_err());
        assert!(check_file_name("phim X-quang.png").is_ok());
        assert!(check_file_name("../etc").is_err());
        assert!(check_file_name("a\\b").is_err());
        assert!(check_file_name("a\u{7}").is_err());
    }

    #[test]
    fn invitees_join_with_their_clinical_role_or_as_guests() {
        use tuxa_protocol::Role;
        assert_eq!(role_in_room(StaffRole::Doctor), Role::Doctor);
        assert_eq!(role_in_room(StaffRole::Nurse), Role::Nurse);
        assert_eq!(role_in_room(StaffRole::Coordinator), Role::Guest);
        assert_eq!(role_in_room(StaffRole::Admin), Role::Guest);
    }

    #[test]
    fn citizen_id_is_12_digits() {
        assert_eq!(
            CitizenId::parse(" 001099012345 ").unwrap().as_str(),
            "001099012345"
        );
        assert!(CitizenId::parse("00109901234").is_err());
        assert!(CitizenId::parse("00109901234x").is_err());
    }
}
