//! Consultations, the links minted into them, appointments, and the
//! server's meta rows.

use rusqlite::{Connection, OptionalExtension, params};
use tuxa_records::record::ConsultationRow;
use tuxa_records::{FacilityId, UnixTime};

pub fn get_meta(c: &Connection, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

pub fn set_meta(c: &Connection, key: &str, value: &[u8]) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO meta(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// The facility's name and phone, for a room's end screen.
pub fn facility_contact(
    c: &Connection,
    facility: Option<FacilityId>,
) -> rusqlite::Result<Option<tuxa_protocol::FacilityContact>> {
    let Some(id) = facility else {
        return Ok(None);
    };
    c.query_row(
        "SELECT name, phone FROM facilities WHERE id = ?1",
        [id],
        |r| {
            Ok(tuxa_protocol::FacilityContact {
                name: r.get(0)?,
                phone: r.get(1)?,
            })
        },
    )
    .optional()
}

/// A new consultation, open.
pub fn insert_consultation(c: &Connection, row: &ConsultationRow) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO consultations(id, kind, title, status, created_at, facility_id)
         VALUES (?1, ?2, ?3, 'open', ?4, ?5)",
        params![
            row.id,
            row.kind.as_str(),
            row.title,
            row.created_at,
            row.facility_id
        ],
    )?;
    Ok(())
}

/// That a link was minted (never the token itself).
pub fn insert_link(
    c: &Connection,
    consultation: &str,
    role: &str,
    name: &str,
    facility: Option<&str>,
    created_at: UnixTime,
    expires_at: UnixTime,
) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO links(consultation_id, role, name, facility, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![consultation, role, name, facility, created_at, expires_at],
    )?;
    Ok(())
}

/// Ends an open consultation by hand; false when it had ended already
/// (the first end time stands).
pub fn end_by_hand(c: &Connection, id: &str, now: UnixTime) -> rusqlite::Result<bool> {
    Ok(c.execute(
        "UPDATE consultations SET status = 'ended', ended_at = ?1, end_reason = 'ended'
         WHERE id = ?2 AND status = 'open'",
        params![now, id],
    )? > 0)
}

/// An appointment's time, for its consultation.
pub fn insert_appointment(
    c: &Connection,
    consultation: &str,
    starts_at: i64,
    duration_min: i64,
    now: UnixTime,
) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO appointments(consultation_id, starts_at, duration_min, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![consultation, starts_at, duration_min, now],
    )?;
    Ok(())
}

/// An appointment as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Appointment {
    pub consultation: String,
    pub starts_at: i64,
    pub duration_min: i64,
    pub title: String,
    pub status: String,
    #[serde(skip)]
    pub facility_id: Option<FacilityId>,
}

/// Appointments that have not ended by `now`, soonest first.
pub fn upcoming_appointments(c: &Connection, now: UnixTime) -> rusqlite::Result<Vec<Appointment>> {
    let mut st = c.prepare(
        "SELECT a.consultation_id, a.starts_at, a.duration_min, k.title, k.status, k.facility_id
         FROM appointments a JOIN consultations k ON k.id = a.consultation_id
         WHERE a.starts_at + a.duration_min * 60 >= ?1 ORDER BY a.starts_at",
    )?;
    st.query_map([now], |r| {
        Ok(Appointment {
            consultation: r.get(0)?,
            starts_at: r.get(1)?,
            duration_min: r.get(2)?,
            title: r.get(3)?,
            status: r.get(4)?,
            facility_id: r.get(5)?,
        })
    })?
    .collect()
}
