//! On-call queues and rosters (tuxa-records' `roster`), as stored.

use rusqlite::{Connection, OptionalExtension, params};
use tuxa_records::roster::{self, NewWindow, Queue, RosterEntry};
use tuxa_records::{Error, FacilityId, QueueId, Result, StaffId, UnixTime};

pub fn queues(c: &Connection) -> rusqlite::Result<Vec<Queue>> {
    let mut st = c.prepare(
        "SELECT q.id, q.facility_id, f.name, q.specialty, q.name
         FROM queues q JOIN facilities f ON f.id = q.facility_id ORDER BY q.id",
    )?;
    st.query_map([], row_to_queue)?.collect()
}

pub fn queue(c: &Connection, id: QueueId) -> rusqlite::Result<Option<Queue>> {
    c.query_row(
        "SELECT q.id, q.facility_id, f.name, q.specialty, q.name
         FROM queues q JOIN facilities f ON f.id = q.facility_id WHERE q.id = ?1",
        [id],
        row_to_queue,
    )
    .optional()
}

fn row_to_queue(r: &rusqlite::Row<'_>) -> rusqlite::Result<Queue> {
    Ok(Queue {
        id: r.get(0)?,
        facility_id: r.get(1)?,
        facility_name: r.get(2)?,
        specialty: r.get(3)?,
        name: r.get(4)?,
    })
}

pub fn roster(c: &Connection, queue_id: QueueId) -> rusqlite::Result<Vec<RosterEntry>> {
    let mut st = c.prepare(
        "SELECT id, queue_id, staff_id, weekday, start_min, end_min
         FROM rosters WHERE queue_id = ?1 ORDER BY id",
    )?;
    st.query_map([queue_id], |r| {
        Ok(RosterEntry {
            id: r.get(0)?,
            queue_id: r.get(1)?,
            staff_id: r.get(2)?,
            weekday: r.get(3)?,
            start_min: r.get(4)?,
            end_min: r.get(5)?,
        })
    })?
    .collect()
}

/// Whether `staff` is on call for `queue_id` at Unix time `at`: only they
/// may mark themselves available for it.
pub fn on_call(
    c: &Connection,
    queue_id: QueueId,
    staff: StaffId,
    at: i64,
) -> rusqlite::Result<bool> {
    Ok(roster(c, queue_id)?
        .iter()
        .any(|e| e.staff_id == staff && e.covers(at)))
}

/// Creates a queue (idempotent on facility + specialty); `None` when there
/// is no such facility.
pub fn create_queue(
    c: &Connection,
    facility: FacilityId,
    specialty: &str,
    name: Option<&str>,
    now: UnixTime,
) -> rusqlite::Result<Option<Queue>> {
    let facility_name: Option<String> = c
        .query_row(
            "SELECT name FROM facilities WHERE id = ?1",
            [facility],
            |r| r.get(0),
        )
        .optional()?;
    let Some(facility_name) = facility_name else {
        return Ok(None);
    };
    let name = name
        .map(str::to_owned)
        .unwrap_or_else(|| roster::default_name(specialty, &facility_name));
    c.execute(
        "INSERT INTO queues(facility_id, specialty, name, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(facility_id, specialty) DO NOTHING",
        params![facility, specialty, name, now],
    )?;
    let id: QueueId = c.query_row(
        "SELECT id FROM queues WHERE facility_id = ?1 AND specialty = ?2",
        params![facility, specialty],
        |r| r.get(0),
    )?;
    queue(c, id)
}

pub fn add_roster(
    c: &Connection,
    queue_id: QueueId,
    staff: StaffId,
    window: NewWindow,
) -> rusqlite::Result<i64> {
    c.execute(
        "INSERT INTO rosters(queue_id, staff_id, weekday, start_min, end_min) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            queue_id,
            staff,
            window.weekday,
            window.start_min,
            window.end_min
        ],
    )?;
    Ok(c.last_insert_rowid())
}

/// Adds a window to a queue's roster for one of the queue's facility's
/// staff (`roster::may_be_rostered`); the new row's id.
pub fn add_window(
    c: &Connection,
    queue_id: QueueId,
    staff: StaffId,
    window: NewWindow,
) -> Result<i64> {
    let q = queue(c, queue_id)?.ok_or_else(|| Error::not_found("no such queue"))?;
    let home: FacilityId = c
        .query_row(
            "SELECT facility_id FROM staff WHERE id = ?1",
            [staff],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| Error::not_found("no such staff member"))?;
    roster::may_be_rostered(home, &q)?;
    Ok(add_roster(c, queue_id, staff, window)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_and_rosters() {
        let c = crate::test_db();
        c.execute(
            "INSERT INTO facilities(id, name, tier, parent_id, created_at) VALUES (1, 'BVĐK tỉnh', 'province', NULL, 0)",
            [],
        )
        .unwrap();
        let now = UnixTime(0);
        let q = create_queue(&c, FacilityId(1), "Nội khoa", None, now)
            .unwrap()
            .unwrap();
        assert_eq!(q.name, "Nội khoa — BVĐK tỉnh");
        // Idempotent.
        let again = create_queue(&c, FacilityId(1), "Nội khoa", None, now)
            .unwrap()
            .unwrap();
        assert_eq!(again.id, q.id);
        assert!(
            create_queue(&c, FacilityId(9), "Nhi", None, now)
                .unwrap()
                .is_none()
        );
        c.execute(
            "INSERT INTO practitioners(id, name, title, licence_number, specialty, facility_id, created_at)
             VALUES (1, 'BS. Lan', 'BS', '000123/BYT-CCHN', 'Nội khoa', 1, 0)",
            [],
        )
        .unwrap();
        c.execute(
            "INSERT INTO staff(id, username, display_name, password_hash, totp_secret, role, facility_id, practitioner_id, created_at)
             VALUES (1, 'bs.lan', 'BS. Lan', 'x', x'00', 'doctor', 1, 1, 0)",
            [],
        )
        .unwrap();
        let window = NewWindow::parse(None, "07:00", "17:00").unwrap();
        add_window(&c, q.id, StaffId(1), window).unwrap();
        let t = 1795570200; // 08:30 local
        assert!(on_call(&c, q.id, StaffId(1), t).unwrap());
        assert!(!on_call(&c, q.id, StaffId(1), t + 10 * 3600).unwrap());
        assert!(!on_call(&c, q.id, StaffId(2), t).unwrap());
        // Only the queue's facility's staff, and only existing ones.
        assert!(matches!(
            add_window(&c, q.id, StaffId(9), window),
            Err(Error::NotFound(_))
        ));
    }
}
