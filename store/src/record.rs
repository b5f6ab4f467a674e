//! Reading a consultation's record: the consultation, who attended, the
//! links minted, consents, its audit entries, chat, the connection's
//! continuity, the facility and the visit's reason. What they mean and how
//! they render is `tuxa_records::record`'s (and `fhir`, `minutes`).

use rusqlite::{Connection, OptionalExtension};
use serde_json::{Value, json};
use tuxa_records::record::ConsultationKind;
use tuxa_records::record::{
    self, Attendance, AuditRow, ConsentRow, ConsultationRow, LinkGap, LinkRow, QualityWindow,
    Record,
};

const CONSULTATION_COLUMNS: &str =
    "id, kind, title, status, created_at, ended_at, facility_id, end_reason";

fn row_to_consultation(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConsultationRow> {
    let kind: String = r.get(1)?;
    let kind = ConsultationKind::parse(&kind).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            1,
            rusqlite::types::Type::Text,
            format!("unknown consultation kind {kind:?}").into(),
        )
    })?;
    Ok(ConsultationRow {
        id: r.get(0)?,
        kind,
        title: r.get(2)?,
        status: r.get(3)?,
        created_at: r.get(4)?,
        ended_at: r.get(5)?,
        facility_id: r.get(6)?,
        end_reason: r.get(7)?,
    })
}

/// Every consultation, oldest first.
pub fn consultations(c: &Connection) -> rusqlite::Result<Vec<ConsultationRow>> {
    let mut st = c.prepare(&format!(
        "SELECT {CONSULTATION_COLUMNS} FROM consultations ORDER BY created_at"
    ))?;
    st.query_map([], row_to_consultation)?.collect()
}

pub fn consultation(c: &Connection, id: &str) -> rusqlite::Result<Option<ConsultationRow>> {
    c.query_row(
        &format!("SELECT {CONSULTATION_COLUMNS} FROM consultations WHERE id = ?1"),
        [id],
        row_to_consultation,
    )
    .optional()
}

/// Reads one consultation's facts. `Ok(None)`: no such consultation.
///
/// The conference request it holds is left `None`: the caller reads it
/// (the conferences' queries are not in this crate yet).
pub fn read_record(
    c: &Connection,
    id: &str,
    exported_at: i64,
    exported_by: &str,
    department: Option<&str>,
    quality_window_secs: u64,
) -> rusqlite::Result<Option<Record>> {
    let Some(consultation) = consultation(c, id)? else {
        return Ok(None);
    };
    let participants = c
        .prepare(
            "SELECT participant_id, name, role, facility, joined_at, left_at, leave_reason,
                    licence_number
             FROM attendance WHERE consultation_id = ?1 ORDER BY joined_at, id",
        )?
        .query_map([id], |r| {
            Ok(Attendance {
                participant_id: r.get(0)?,
                name: r.get(1)?,
                role: r.get(2)?,
                facility: r.get(3)?,
                licence_number: r.get(7)?,
                joined_at: r.get(4)?,
                left_at: r.get(5)?,
                leave_reason: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let links = c
        .prepare(
            "SELECT id, role, name, facility, created_at, expires_at
             FROM links WHERE consultation_id = ?1 ORDER BY id",
        )?
        .query_map([id], |r| {
            Ok(LinkRow {
                id: r.get(0)?,
                role: r.get(1)?,
                name: r.get(2)?,
                facility: r.get(3)?,
                created_at: r.get(4)?,
                expires_at: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let consents = c
        .prepare(
            "SELECT participant_id, text_version, remote_examination, third_parties, recording, at
             FROM consents WHERE consultation_id = ?1 ORDER BY id",
        )?
        .query_map([id], |r| {
            Ok(ConsentRow {
                participant_id: r.get(0)?,
                text_version: r.get(1)?,
                remote_examination: r.get(2)?,
                third_parties: r.get(3)?,
                recording: r.get(4)?,
                at: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let audit = c
        .prepare(
            "SELECT id, at, action, actor, detail, prev_hash, hash
             FROM audit WHERE consultation_id = ?1 ORDER BY id",
        )?
        .query_map([id], |r| {
            let detail_text: String = r.get(4)?;
            Ok(AuditRow {
                id: r.get(0)?,
                at: r.get(1)?,
                action: r.get(2)?,
                actor: r.get(3)?,
                detail: serde_json::from_str(&detail_text)
                    .unwrap_or_else(|_| Value::String(detail_text.clone())),
                detail_text,
                prev_hash: r.get(5)?,
                hash: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let chain_head = crate::audit::head(c)?;
    let chat = c
        .prepare(
            "SELECT participant_id, name, text, at FROM chat_messages
             WHERE consultation_id = ?1 ORDER BY id",
        )?
        .query_map([id], |r| {
            Ok(json!({
                "participant_id": r.get::<_, i64>(0)?,
                "name": r.get::<_, String>(1)?,
                "text": r.get::<_, String>(2)?,
                "at": r.get::<_, i64>(3)?,
            }))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let continuity = continuity(c, id, quality_window_secs)?;
    let facility = match consultation.facility_id {
        Some(f) => c
            .query_row("SELECT name FROM facilities WHERE id = ?1", [f], |r| {
                r.get(0)
            })
            .optional()?,
        None => None,
    };
    let visit_reason = c
        .query_row(
            "SELECT reason FROM visit_reasons WHERE consultation_id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?;
    let recordings = crate::recordings::of_consultation(c, id)?
        .into_iter()
        .map(|r| Ok((r.clone(), crate::recordings::files_of(c, r.id)?)))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(Record {
        recordings,
        continuity,
        department: department.map(str::to_owned),
        facility,
        visit_reason,
        consultation,
        participants,
        links,
        consents,
        audit,
        chain_head,
        exported_at,
        exported_by: exported_by.to_owned(),
        conference: None,
        chat,
    }))
}

/// Keeps a queue visit's stated reason with its consultation (the first
/// one: a resumed pairing does not change it).
pub fn store_visit_reason(
    c: &Connection,
    consultation: &str,
    reason: &str,
    now: tuxa_records::UnixTime,
) -> rusqlite::Result<()> {
    c.execute(
        "INSERT OR IGNORE INTO visit_reasons(consultation_id, reason, at)
         VALUES (?1, ?2, ?3)",
        rusqlite::params![consultation, reason, now],
    )?;
    Ok(())
}

/// The link telemetry (windows of ~10 s, see `signaling::QualityWindow`)
/// and connection gaps of a consultation, summed up per participant by
/// `tuxa_records::record::continuity`.
pub fn continuity(c: &Connection, id: &str, window_secs: u64) -> rusqlite::Result<Value> {
    let windows = c
        .prepare(
            "SELECT participant_id, from_at, to_at, samples, rtt_ms_avg, rtt_ms_max, loss_pct_max,
                    jitter_ms_max, frame_height_min, covered_ms, audio_only_ms
             FROM link_quality WHERE consultation_id = ?1 ORDER BY participant_id, from_at, id",
        )?
        .query_map([id], |r| {
            Ok(QualityWindow {
                participant_id: r.get(0)?,
                from: r.get(1)?,
                to: r.get(2)?,
                samples: r.get(3)?,
                rtt_ms_avg: r.get(4)?,
                rtt_ms_max: r.get(5)?,
                loss_pct_max: r.get(6)?,
                jitter_ms_max: r.get(7)?,
                frame_height_min: r.get(8)?,
                covered_ms: r.get(9)?,
                audio_only_ms: r.get(10)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let gaps = c
        .prepare(
            "SELECT participant_id, started_at, ended_at, outcome
             FROM link_gaps WHERE consultation_id = ?1 ORDER BY started_at, id",
        )?
        .query_map([id], |r| {
            Ok(LinkGap {
                participant_id: r.get(0)?,
                started_at: r.get(1)?,
                ended_at: r.get(2)?,
                outcome: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(record::continuity(&windows, &gaps, window_secs))
}

#[cfg(test)]
mod tests {
    use tuxa_records::audit::{Action, Entry};

    use super::*;

    const ROOM: &str = "abcdefghijklmnop";

    /// What the record holds comes from every table that keeps a part of it,
    /// in order; an unknown consultation has none.
    #[test]
    fn a_record_is_read_from_its_tables() {
        let mut c = crate::test_db();
        assert!(
            read_record(&c, ROOM, 0, "admin", None, 10)
                .unwrap()
                .is_none()
        );
        c.execute_batch(
            "INSERT INTO facilities(id, name, tier, parent_id, created_at)
                 VALUES (1, 'BVĐK tỉnh', 'province', NULL, 0);
             INSERT INTO consultations(id, kind, title, status, created_at, facility_id)
                 VALUES ('abcdefghijklmnop', 'visit', 'Khám', 'open', 100, 1);
             INSERT INTO attendance(consultation_id, participant_id, name, role, joined_at, left_at, leave_reason)
                 VALUES ('abcdefghijklmnop', 2, 'BN A', 'patient', 130, NULL, NULL),
                        ('abcdefghijklmnop', 1, 'BS B', 'doctor', 120, 200, 'left');
             INSERT INTO consents(consultation_id, participant_id, text_version,
                     remote_examination, third_parties, recording, at)
                 VALUES ('abcdefghijklmnop', 2, 'vi-2026-11', 1, 0, 1, 129);
             INSERT INTO link_gaps(consultation_id, participant_id, started_at)
                 VALUES ('abcdefghijklmnop', 2, 150);",
        )
        .unwrap();
        store_visit_reason(&c, ROOM, "Ho", tuxa_records::UnixTime(100)).unwrap();
        store_visit_reason(&c, ROOM, "changed", tuxa_records::UnixTime(200)).unwrap();
        for (at, consultation) in [(100, Some(ROOM)), (101, None)] {
            crate::audit::append(
                &mut c,
                &Entry {
                    at,
                    action: Action::ConsultationCreated,
                    consultation: consultation.map(str::to_owned),
                    actor: "admin".into(),
                    detail: serde_json::json!({"kind": "visit"}),
                },
            )
            .unwrap();
        }
        let r = read_record(&c, ROOM, 300, "staff:1", Some("Sở Y tế"), 10)
            .unwrap()
            .unwrap();
        assert_eq!(
            r.consultation.facility_id,
            Some(tuxa_records::FacilityId(1))
        );
        assert_eq!(r.facility.as_deref(), Some("BVĐK tỉnh"));
        let names: Vec<&str> = r.participants.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["BS B", "BN A"], "in order of joining");
        assert!(r.consents[0].remote_examination && r.consents[0].recording);
        assert_eq!(r.audit.len(), 1, "this consultation's entries only");
        assert_eq!(
            r.chain_head.as_ref().map(|h| h.0),
            Some(2),
            "the whole log's head"
        );
        assert_eq!(
            r.visit_reason.as_deref(),
            Some("Ho"),
            "the first reason stays"
        );
        assert_eq!(
            r.continuity["participants"][0]["gaps"][0]["started_at"],
            150
        );
        assert_eq!((r.exported_at, r.exported_by.as_str()), (300, "staff:1"));
        assert!(r.conference.is_none(), "the caller reads it");
    }
}
