//! Case conference requests, their invitees and attachments: every query of
//! the conferences API. The rules are in `tuxa_records::conference`.

use rusqlite::{Connection, OptionalExtension, params};
use tuxa_records::authz::ConferenceParties;
use tuxa_records::conference::{
    Attachment, AttachmentFile, Cancellation, Conclusion, ConferenceRequest, Consent, FacilityRef,
    Invitable, NewRequest, Patient, Person, PersonDetails, Schedule, Sex, Status, Urgency,
};
use tuxa_records::directory::{StaffRole, Tier};
use tuxa_records::{ConferenceId, Error, FacilityId, Result, StaffId};

/// A facility's name, `None` when there is no such facility.
fn facility_ref(c: &Connection, id: FacilityId) -> Result<FacilityRef> {
    let name: Option<String> = c
        .query_row("SELECT name FROM facilities WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(FacilityRef { id, name })
}

/// A staff member with their facility's name and licence number.
pub fn person(c: &Connection, id: StaffId) -> Result<Person> {
    let details = c
        .query_row(
            "SELECT s.display_name, s.role, f.name, p.licence_number
             FROM staff s JOIN facilities f ON f.id = s.facility_id
                  LEFT JOIN practitioners p ON p.id = s.practitioner_id
             WHERE s.id = ?1",
            [id],
            |r| {
                Ok(PersonDetails {
                    name: r.get(0)?,
                    role: r.get::<_, StaffRole>(1)?,
                    facility: r.get(2)?,
                    licence_number: r.get(3)?,
                })
            },
        )
        .optional()?;
    Ok(Person {
        staff_id: id,
        details,
    })
}

/// The tier of a facility, `None` when there is no such facility.
pub fn facility_tier(c: &Connection, id: FacilityId) -> Result<Option<Tier>> {
    Ok(
        c.query_row("SELECT tier FROM facilities WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?,
    )
}

/// Each of `ids` with what the invitation rules need of its account
/// (`None`: no such account), in order.
pub fn invitable(c: &Connection, ids: &[StaffId]) -> Result<Vec<(StaffId, Option<Invitable>)>> {
    let mut st = c.prepare("SELECT role, disabled FROM staff WHERE id = ?1")?;
    ids.iter()
        .map(|&id| {
            let found = st
                .query_row([id], |r| {
                    Ok(Invitable {
                        role: r.get(0)?,
                        disabled: r.get(1)?,
                    })
                })
                .optional()?;
            Ok((id, found))
        })
        .collect()
}

/// A request with the people and facilities it names.
pub fn load(c: &Connection, id: ConferenceId) -> Result<Option<ConferenceRequest>> {
    let row = c
        .query_row(
            "SELECT r.urgency, r.from_facility_id, r.to_facility_id, r.specialty,
                    r.patient_name, r.patient_birth_year, r.patient_sex, r.summary, r.question,
                    r.requested_by, r.created_at, r.consent_text_version,
                    r.consent_remote_examination, r.consent_third_parties, r.consent_recording,
                    r.declined_at, r.decline_reason, r.consultation_id, r.starts_at,
                    r.duration_min, r.chair_staff_id, r.secretary_staff_id, r.conclusion,
                    r.conclusion_by, r.conclusion_at, k.status, r.patient_address,
                    r.patient_record_number, r.patient_citizen_id, r.management_plan,
                    r.cancelled_at, r.cancel_reason
             FROM conference_requests r LEFT JOIN consultations k ON k.id = r.consultation_id
             WHERE r.id = ?1",
            [id],
            |r| {
                Ok(Row {
                    urgency: r.get(0)?,
                    from: r.get(1)?,
                    to: r.get(2)?,
                    specialty: r.get(3)?,
                    patient: Patient {
                        name: r.get(4)?,
                        birth_year: r.get(5)?,
                        sex: r.get::<_, Option<Sex>>(6)?,
                        address: r.get(26)?,
                        record_number: r.get(27)?,
                        citizen_id: r.get(28)?,
                    },
                    summary: r.get(7)?,
                    question: r.get(8)?,
                    requested_by: r.get(9)?,
                    created_at: r.get(10)?,
                    consent: Consent {
                        text_version: r.get(11)?,
                        remote_examination: r.get(12)?,
                        third_parties: r.get(13)?,
                        recording: r.get(14)?,
                    },
                    declined_at: r.get(15)?,
                    decline_reason: r.get(16)?,
                    consultation_id: r.get(17)?,
                    starts_at: r.get(18)?,
                    duration_min: r.get(19)?,
                    chair: r.get(20)?,
                    secretary: r.get(21)?,
                    conclusion: r.get(22)?,
                    conclusion_by: r.get(23)?,
                    conclusion_at: r.get(24)?,
                    consultation_status: r.get(25)?,
                    management_plan: r.get(29)?,
                    cancelled_at: r.get(30)?,
                    cancel_reason: r.get(31)?,
                })
            },
        )
        .optional()?;
    let Some(row) = row else {
        return Ok(None);
    };
    let status = Status::derive(
        row.declined_at.is_some(),
        row.cancelled_at.is_some(),
        row.consultation_id.is_some(),
        row.consultation_status.as_deref() == Some("ended"),
    );
    let invitees = invitees(c, id)?;
    let schedule = match (&row.consultation_id, row.chair) {
        (Some(cid), Some(chair)) => Some(Schedule {
            consultation_id: cid.clone(),
            starts_at: row.starts_at,
            duration_min: row.duration_min,
            chair: person(c, chair)?,
            invitees: invitees
                .iter()
                .map(|s| person(c, *s))
                .collect::<Result<_>>()?,
        }),
        _ => None,
    };
    let conclusion = match (row.conclusion, row.conclusion_by) {
        (Some(text), Some(by)) => Some(Conclusion {
            text,
            management_plan: row.management_plan,
            by: person(c, by)?,
            at: row.conclusion_at,
        }),
        _ => None,
    };
    Ok(Some(ConferenceRequest {
        id,
        status,
        urgency: row.urgency,
        from_facility: facility_ref(c, row.from)?,
        to_facility: facility_ref(c, row.to)?,
        specialty: row.specialty,
        patient: row.patient,
        summary: row.summary,
        question: row.question,
        requested_by: person(c, row.requested_by)?,
        created_at: row.created_at,
        consent: row.consent,
        attachments: attachments(c, id)?,
        consultation_id: row.consultation_id,
        starts_at: row.starts_at,
        duration_min: row.duration_min,
        chair: row.chair,
        secretary: row.secretary.map(|s| person(c, s)).transpose()?,
        invitees,
        schedule,
        decline_reason: row.decline_reason,
        cancelled: row.cancelled_at.map(|at| Cancellation {
            at,
            reason: row.cancel_reason,
        }),
        conclusion,
    }))
}

struct Row {
    urgency: Urgency,
    from: FacilityId,
    to: FacilityId,
    specialty: String,
    patient: Patient,
    summary: String,
    question: String,
    requested_by: StaffId,
    created_at: i64,
    consent: Consent,
    declined_at: Option<i64>,
    decline_reason: Option<String>,
    consultation_id: Option<String>,
    starts_at: Option<i64>,
    duration_min: Option<i64>,
    chair: Option<StaffId>,
    secretary: Option<StaffId>,
    conclusion: Option<String>,
    conclusion_by: Option<StaffId>,
    conclusion_at: Option<i64>,
    consultation_status: Option<String>,
    management_plan: Option<String>,
    cancelled_at: Option<i64>,
    cancel_reason: Option<String>,
}

/// Every request, newest first.
pub fn all(c: &Connection) -> Result<Vec<ConferenceRequest>> {
    let ids: Vec<ConferenceId> = {
        let mut st = c.prepare("SELECT id FROM conference_requests ORDER BY id DESC")?;
        st.query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(r) = load(c, id)? {
            out.push(r);
        }
    }
    Ok(out)
}

fn attachments(c: &Connection, id: ConferenceId) -> Result<Vec<Attachment>> {
    let mut st = c.prepare(
        "SELECT id, name, content_type, size, sha256, uploaded_at
         FROM conference_attachments WHERE request_id = ?1 ORDER BY id",
    )?;
    Ok(st
        .query_map([id], |r| {
            Ok(Attachment {
                id: r.get(0)?,
                name: r.get(1)?,
                content_type: r.get(2)?,
                size: r.get(3)?,
                sha256: r.get(4)?,
                uploaded_at: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?)
}

/// Everyone invited to a request, by staff id.
pub fn invitees(c: &Connection, id: ConferenceId) -> Result<Vec<StaffId>> {
    let mut st = c.prepare(
        "SELECT staff_id FROM conference_invitees WHERE request_id = ?1 ORDER BY staff_id",
    )?;
    Ok(st
        .query_map([id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?)
}

/// The parties of the conference held in `consultation_id`, if one is.
pub fn conference_parties(
    c: &Connection,
    consultation_id: &str,
) -> Result<Option<ConferenceParties>> {
    let row = c
        .query_row(
            "SELECT id, from_facility_id, chair_staff_id, secretary_staff_id
             FROM conference_requests WHERE consultation_id = ?1",
            [consultation_id],
            |r| {
                Ok((
                    r.get::<_, ConferenceId>(0)?,
                    r.get::<_, FacilityId>(1)?,
                    r.get::<_, Option<StaffId>>(2)?,
                    r.get::<_, Option<StaffId>>(3)?,
                ))
            },
        )
        .optional()?;
    let Some((id, requester, chair, secretary)) = row else {
        return Ok(None);
    };
    Ok(Some(ConferenceParties {
        requester,
        chair,
        secretary,
        invitees: invitees(c, id)?,
    }))
}

/// The chair each open conference's scheduler named, by consultation id.
pub fn named_chairs(c: &Connection) -> Result<Vec<(String, StaffId)>> {
    let mut st = c.prepare(
        "SELECT r.consultation_id, r.chair_staff_id
         FROM conference_requests r JOIN consultations k ON k.id = r.consultation_id
         WHERE k.status = 'open' AND r.chair_staff_id IS NOT NULL",
    )?;
    Ok(st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?)
}

/// The conference request held in a consultation.
pub fn for_consultation(
    c: &Connection,
    consultation_id: &str,
) -> Result<Option<ConferenceRequest>> {
    let id: Option<ConferenceId> = c
        .query_row(
            "SELECT id FROM conference_requests WHERE consultation_id = ?1",
            [consultation_id],
            |r| r.get(0),
        )
        .optional()?;
    match id {
        Some(id) => load(c, id),
        None => Ok(None),
    }
}

/// Files a request; its id.
pub fn insert(c: &Connection, r: &NewRequest, now: i64) -> Result<ConferenceId> {
    c.execute(
        "INSERT INTO conference_requests(urgency, from_facility_id, to_facility_id,
             specialty, patient_name, patient_birth_year, patient_sex, summary, question,
             requested_by, created_at, consent_text_version, consent_remote_examination,
             consent_third_parties, consent_recording, patient_address,
             patient_record_number, patient_citizen_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        params![
            r.urgency,
            r.from_facility,
            r.to_facility,
            r.specialty,
            r.patient.name,
            r.patient.birth_year,
            r.patient.sex,
            r.summary,
            r.question,
            r.requested_by,
            now,
            r.consent.text_version,
            r.consent.remote_examination,
            r.consent.third_parties,
            r.consent.recording,
            r.patient.address,
            r.patient.record_number,
            r.patient.citizen_id
        ],
    )?;
    Ok(ConferenceId(c.last_insert_rowid()))
}

/// What scheduling writes.
#[derive(Debug, Clone)]
pub struct ScheduleRow<'a> {
    pub consultation_id: &'a str,
    pub starts_at: i64,
    pub duration_min: i64,
    pub chair: StaffId,
    /// Who scheduled it, as the audit log names them.
    pub by: &'a str,
    pub invitees: &'a [StaffId],
}

/// Schedules a request still waiting, with its invitees; `Conflict` when
/// it was scheduled or declined meanwhile.
pub fn schedule(c: &Connection, id: ConferenceId, s: &ScheduleRow<'_>) -> Result<()> {
    let tx = c.unchecked_transaction()?;
    let n = tx.execute(
        "UPDATE conference_requests SET consultation_id = ?1, starts_at = ?2,
             duration_min = ?3, chair_staff_id = ?4, scheduled_by = ?5
         WHERE id = ?6 AND consultation_id IS NULL AND declined_at IS NULL",
        params![
            s.consultation_id,
            s.starts_at,
            s.duration_min,
            s.chair,
            s.by,
            id
        ],
    )?;
    if n != 1 {
        return Err(Error::conflict(
            "the request was scheduled or declined meanwhile",
        ));
    }
    for staff in s.invitees {
        tx.execute(
            "INSERT OR IGNORE INTO conference_invitees(request_id, staff_id) VALUES (?1, ?2)",
            params![id, staff],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Declines a request still waiting (a request decided meanwhile is left
/// as it is).
pub fn decline(c: &Connection, id: ConferenceId, reason: &str, now: i64) -> Result<()> {
    c.execute(
        "UPDATE conference_requests SET declined_at = ?1, decline_reason = ?2
         WHERE id = ?3 AND consultation_id IS NULL AND declined_at IS NULL",
        params![now, reason, id],
    )?;
    Ok(())
}

/// Whether anyone has entered the consultation's room.
pub fn has_started(c: &Connection, consultation_id: &str) -> Result<bool> {
    Ok(c.query_row(
        "SELECT EXISTS(SELECT 1 FROM attendance WHERE consultation_id = ?1)",
        [consultation_id],
        |r| r.get(0),
    )?)
}

fn cancelled_meanwhile() -> Error {
    Error::conflict("the request was cancelled meanwhile")
}

/// Moves a conference not cancelled; `Conflict` when it was meanwhile.
pub fn reschedule(
    c: &Connection,
    id: ConferenceId,
    starts_at: i64,
    duration_min: i64,
) -> Result<()> {
    let n = c.execute(
        "UPDATE conference_requests SET starts_at = ?1, duration_min = ?2
         WHERE id = ?3 AND cancelled_at IS NULL",
        params![starts_at, duration_min, id],
    )?;
    if n != 1 {
        return Err(cancelled_meanwhile());
    }
    Ok(())
}

/// Calls a conference off and ends its room (links into it lead to the end
/// screen); `Conflict` when it was cancelled meanwhile.
pub fn cancel(
    c: &Connection,
    id: ConferenceId,
    consultation_id: &str,
    reason: &str,
    now: i64,
) -> Result<()> {
    let tx = c.unchecked_transaction()?;
    let n = tx.execute(
        "UPDATE conference_requests SET cancelled_at = ?1, cancel_reason = ?2
         WHERE id = ?3 AND cancelled_at IS NULL",
        params![now, reason, id],
    )?;
    tx.execute(
        "UPDATE consultations SET status = 'ended', ended_at = ?1, end_reason = 'cancelled'
         WHERE id = ?2 AND status = 'open'",
        params![now, consultation_id],
    )?;
    tx.commit()?;
    if n != 1 {
        return Err(cancelled_meanwhile());
    }
    Ok(())
}

/// Enters (or replaces) the conclusion and management plan.
pub fn set_conclusion(
    c: &Connection,
    id: ConferenceId,
    text: &str,
    management_plan: Option<&str>,
    by: Option<StaffId>,
    now: i64,
) -> Result<()> {
    c.execute(
        "UPDATE conference_requests SET conclusion = ?1, conclusion_by = ?2, conclusion_at = ?3,
             management_plan = ?5
         WHERE id = ?4",
        params![text, by, now, id, management_plan],
    )?;
    Ok(())
}

/// Stores an attachment; its id.
pub fn insert_attachment(
    c: &Connection,
    id: ConferenceId,
    a: &Attachment,
    data: &[u8],
    by: &str,
) -> Result<i64> {
    c.execute(
        "INSERT INTO conference_attachments(request_id, name, content_type, size, sha256,
             data, uploaded_by, uploaded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            id,
            a.name,
            a.content_type,
            a.size,
            a.sha256,
            data,
            by,
            a.uploaded_at
        ],
    )?;
    Ok(c.last_insert_rowid())
}

/// An attachment of the request `id`, with its bytes.
pub fn attachment(c: &Connection, id: ConferenceId, aid: i64) -> Result<Option<AttachmentFile>> {
    Ok(c.query_row(
        "SELECT name, content_type, data FROM conference_attachments
         WHERE id = ?1 AND request_id = ?2",
        params![aid, id],
        |r| {
            Ok(AttachmentFile {
                name: r.get(0)?,
                content_type: r.get(1)?,
                data: r.get(2)?,
            })
        },
    )
    .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tuxa_protocol::ErrorCode;

    /// The rows these tests start from, on the real schema.
    const SCHEMA: &str = "
        INSERT INTO facilities(id, name, tier, created_at) VALUES
            (1, 'BVĐK tỉnh', 'province', 0), (2, 'TTYT huyện A', 'district', 0);
        INSERT INTO practitioners(id, name, title, licence_number, specialty, facility_id, created_at)
            VALUES (1, 'Lan', 'BS', '000123/BYT-CCHN', 'Nội khoa', 1, 0);
        INSERT INTO staff(id, username, display_name, password_hash, totp_secret, role,
                          facility_id, practitioner_id, disabled, created_at) VALUES
            (1, 'bs.lan', 'BS. Lan', 'x', x'00', 'doctor', 1, 1, 0, 0),
            (2, 'dd.hoa', 'Hoa', 'x', x'00', 'nurse', 2, NULL, 0, 0),
            (3, 'dp.nam', 'Nam', 'x', x'00', 'coordinator', 1, NULL, 1, 0);
        INSERT INTO consultations(id, kind, title, status, created_at)
            VALUES ('room-1', 'conference', 'Hội chẩn', 'open', 0);";

    fn db() -> Connection {
        let c = crate::test_db();
        c.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
        c.execute_batch(SCHEMA).unwrap();
        c
    }

    fn filed(c: &Connection) -> ConferenceId {
        let r = NewRequest {
            urgency: Urgency::Urgent,
            from_facility: FacilityId(2),
            to_facility: FacilityId(1),
            specialty: "Nội khoa".into(),
            patient: Patient {
                name: "Nguyễn Văn B".into(),
                birth_year: Some(1960),
                sex: Some(Sex::Male),
                address: Some("Xã C".into()),
                record_number: None,
                citizen_id: Some("001060012345".into()),
            },
            summary: "Sốt".into(),
            question: "Chẩn đoán?".into(),
            requested_by: StaffId(2),
            consent: Consent {
                text_version: "v1".into(),
                remote_examination: true,
                third_parties: true,
                recording: false,
            },
        };
        insert(c, &r, 100).unwrap()
    }

    fn schedule_row<'a>(invitees: &'a [StaffId]) -> ScheduleRow<'a> {
        ScheduleRow {
            consultation_id: "room-1",
            starts_at: 10_000,
            duration_min: 60,
            chair: StaffId(1),
            by: "staff:bs.lan",
            invitees,
        }
    }

    #[test]
    fn a_filed_request_loads_with_its_people() {
        let c = db();
        let id = filed(&c);
        let r = load(&c, id).unwrap().unwrap();
        assert_eq!(r.status, Status::Requested);
        assert_eq!(r.urgency, Urgency::Urgent);
        assert_eq!(r.from_facility.name.as_deref(), Some("TTYT huyện A"));
        assert_eq!(r.to_facility.name.as_deref(), Some("BVĐK tỉnh"));
        assert_eq!(r.patient.sex, Some(Sex::Male));
        assert_eq!(r.patient.citizen_id.as_deref(), Some("001060012345"));
        assert_eq!(r.requested_by.name(), Some("Hoa"));
        assert_eq!(r.requested_by.licence_number(), None);
        assert!(r.consent.third_parties && !r.consent.recording);
        assert_eq!(
            (r.created_at, r.schedule.as_ref(), r.conclusion.as_ref()),
            (100, None, None)
        );
        assert!(load(&c, ConferenceId(99)).unwrap().is_none());
        // A doctor's licence comes from their practitioner record; a gone
        // account has no details.
        let lan = person(&c, StaffId(1)).unwrap();
        assert_eq!(lan.name(), Some("BS. Lan"));
        assert_eq!(lan.licence_number(), Some("000123/BYT-CCHN"));
        assert_eq!(lan.details.unwrap().facility, "BVĐK tỉnh");
        assert_eq!(person(&c, StaffId(9)).unwrap().details, None);
        assert_eq!(
            facility_tier(&c, FacilityId(2)).unwrap(),
            Some(Tier::District)
        );
        assert_eq!(facility_tier(&c, FacilityId(9)).unwrap(), None);
        let found = invitable(&c, &[StaffId(3), StaffId(9)]).unwrap();
        assert_eq!(
            found,
            vec![
                (
                    StaffId(3),
                    Some(Invitable {
                        role: StaffRole::Coordinator,
                        disabled: true
                    })
                ),
                (StaffId(9), None)
            ]
        );
    }

    #[test]
    fn scheduling_then_cancelling() {
        let c = db();
        let id = filed(&c);
        let inv = [StaffId(1), StaffId(2)];
        schedule(&c, id, &schedule_row(&inv)).unwrap();
        // Twice: the second finds it scheduled meanwhile.
        let e = schedule(&c, id, &schedule_row(&inv)).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Conflict);
        // Declining a scheduled request changes nothing.
        decline(&c, id, "no", 200).unwrap();
        let r = load(&c, id).unwrap().unwrap();
        assert_eq!(r.status, Status::Scheduled);
        assert_eq!(r.decline_reason, None);
        assert_eq!(r.invitees, inv);
        let s = r.schedule.unwrap();
        assert_eq!(s.chair.name(), Some("BS. Lan"));
        assert_eq!(s.invitees.len(), 2);
        assert_eq!((s.starts_at, s.duration_min), (Some(10_000), Some(60)));
        assert_eq!(
            conference_parties(&c, "room-1").unwrap(),
            Some(ConferenceParties {
                requester: FacilityId(2),
                chair: Some(StaffId(1)),
                secretary: None,
                invitees: inv.to_vec(),
            })
        );
        assert_eq!(conference_parties(&c, "room-2").unwrap(), None);
        assert_eq!(
            named_chairs(&c).unwrap(),
            vec![("room-1".to_owned(), StaffId(1))]
        );
        assert_eq!(for_consultation(&c, "room-1").unwrap().unwrap().id, id);
        assert!(!has_started(&c, "room-1").unwrap());

        reschedule(&c, id, 20_000, 90).unwrap();
        let r = load(&c, id).unwrap().unwrap();
        assert_eq!((r.starts_at, r.duration_min), (Some(20_000), Some(90)));

        cancel(&c, id, "room-1", "bệnh nhân chuyển viện", 300).unwrap();
        let r = load(&c, id).unwrap().unwrap();
        assert_eq!(r.status, Status::Cancelled);
        let k = r.cancelled.unwrap();
        assert_eq!(
            (k.at, k.reason.as_deref()),
            (300, Some("bệnh nhân chuyển viện"))
        );
        // Its room ended with it: no chair to tell the hub of any more.
        assert!(named_chairs(&c).unwrap().is_empty());
        assert_eq!(
            cancel(&c, id, "room-1", "again", 400).unwrap_err().code(),
            ErrorCode::Conflict
        );
        assert_eq!(
            reschedule(&c, id, 30_000, 60).unwrap_err().code(),
            ErrorCode::Conflict
        );
    }

    #[test]
    fn declined_started_held_and_concluded() {
        let c = db();
        let declined = filed(&c);
        decline(&c, declined, "thiếu thông tin", 200).unwrap();
        let r = load(&c, declined).unwrap().unwrap();
        assert_eq!(r.status, Status::Declined);
        assert_eq!(r.decline_reason.as_deref(), Some("thiếu thông tin"));
        assert_eq!(
            schedule(&c, declined, &schedule_row(&[]))
                .unwrap_err()
                .code(),
            ErrorCode::Conflict
        );

        let id = filed(&c);
        schedule(&c, id, &schedule_row(&[StaffId(1)])).unwrap();
        c.execute_batch(
            "INSERT INTO attendance(consultation_id, participant_id, name, role, joined_at)
             VALUES ('room-1', 1, 'BS. Lan', 'doctor', 10000);
             UPDATE consultations SET status = 'ended' WHERE id = 'room-1';",
        )
        .unwrap();
        assert!(has_started(&c, "room-1").unwrap());
        assert_eq!(load(&c, id).unwrap().unwrap().status, Status::Held);

        set_conclusion(
            &c,
            id,
            "Viêm phổi",
            Some("Kháng sinh"),
            Some(StaffId(1)),
            500,
        )
        .unwrap();
        let k = load(&c, id).unwrap().unwrap().conclusion.unwrap();
        assert_eq!(k.text, "Viêm phổi");
        assert_eq!(k.management_plan.as_deref(), Some("Kháng sinh"));
        assert_eq!((k.by.name(), k.at), (Some("BS. Lan"), Some(500)));
    }

    #[test]
    fn attachments_are_kept_and_read_by_their_request() {
        let c = db();
        let id = filed(&c);
        let other = filed(&c);
        let a = Attachment {
            id: 0,
            name: "phim X-quang.png".into(),
            content_type: "image/png".into(),
            size: 3,
            sha256: "abc".into(),
            uploaded_at: 150,
        };
        let aid = insert_attachment(&c, id, &a, b"png", "staff:dd.hoa").unwrap();
        let listed = load(&c, id).unwrap().unwrap().attachments;
        assert_eq!(listed, vec![Attachment { id: aid, ..a }]);
        let f = attachment(&c, id, aid).unwrap().unwrap();
        assert_eq!(
            (f.name.as_str(), f.data.as_slice()),
            ("phim X-quang.png", &b"png"[..])
        );
        // Not through another request's id.
        assert_eq!(attachment(&c, other, aid).unwrap(), None);
        assert!(load(&c, other).unwrap().unwrap().attachments.is_empty());
        let all = all(&c).unwrap();
        assert_eq!(
            all.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![other, id]
        );
    }
}
