//! The activity report's rows: queue events as the hub records them, and
//! the facts of a period that `tuxa_records::reports::activity` aggregates.

use rusqlite::{Connection, params};
use tuxa_records::FacilityId;
use tuxa_records::reports::{ConsultationFact, EventFact, Row, StoredEvent};

pub fn insert(c: &Connection, at: i64, e: &StoredEvent) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO queue_events(at, queue_id, kind, ticket_hash, waited_secs) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![at, e.queue, e.kind, e.ticket_hash, e.waited_secs],
    )?;
    Ok(())
}

/// The consultations created in `[from, to)`, each with its first join.
pub fn consultations(
    c: &Connection,
    from: i64,
    to: i64,
) -> rusqlite::Result<Vec<ConsultationFact>> {
    c.prepare(
        "SELECT k.kind, k.created_at, k.ended_at,
                (SELECT min(a.joined_at) FROM attendance a WHERE a.consultation_id = k.id)
         FROM consultations k
         WHERE k.created_at >= ?1 AND k.created_at < ?2",
    )?
    .query_map(params![from, to], |r| {
        Ok(ConsultationFact {
            kind: r.get(0)?,
            created_at: r.get(1)?,
            ended_at: r.get(2)?,
            first_join: r.get(3)?,
        })
    })?
    .collect()
}

/// The queue events of `[from, to)` (one facility's, or all), each with
/// its queue's facility.
pub fn events(
    c: &Connection,
    from: i64,
    to: i64,
    facility: Option<FacilityId>,
) -> rusqlite::Result<Vec<EventFact>> {
    c.prepare(
        "SELECT f.id, f.name, e.kind, e.waited_secs
         FROM queue_events e JOIN queues q ON q.id = e.queue_id JOIN facilities f ON f.id = q.facility_id
         WHERE e.at >= ?1 AND e.at < ?2 AND (?3 IS NULL OR f.id = ?3)",
    )?
    .query_map(params![from, to, facility], |r| {
        Ok(EventFact {
            facility: r.get(0)?,
            facility_name: r.get(1)?,
            kind: r.get(2)?,
            waited_secs: r.get(3)?,
        })
    })?
    .collect()
}

/// The report for `[from, to)` (Unix seconds), optionally one facility's.
pub fn activity(
    c: &Connection,
    from: i64,
    to: i64,
    facility: Option<FacilityId>,
) -> rusqlite::Result<Vec<Row>> {
    // One facility's report has no network-wide rows: no need to read them.
    let consultations = match facility {
        None => consultations(c, from, to)?,
        Some(_) => Vec::new(),
    };
    let events = events(c, from, to, facility)?;
    Ok(tuxa_records::reports::activity(
        &consultations,
        &events,
        facility,
    ))
}

#[cfg(test)]
mod tests {
    use tuxa_records::QueueId;
    use tuxa_records::reports::{EventKind, Lang, to_csv};

    use super::*;

    fn db() -> Connection {
        let c = crate::test_db();
        c.execute_batch(
            "INSERT INTO facilities(id, name, tier, parent_id, created_at) VALUES
                 (1, 'BVĐK tỉnh', 'province', NULL, 0),
                 (2, 'TTYT huyện Tân Lập, \"cơ sở 2\"', 'district', 1, 0);
             INSERT INTO queues(id, facility_id, specialty, name, created_at) VALUES
                 (1, 1, 'Nội khoa', 'Nội khoa — BVĐK tỉnh', 0),
                 (2, 2, 'Nhi khoa', 'Nhi khoa — TTYT', 0);
             INSERT INTO consultations(id, kind, title, status, created_at, ended_at) VALUES
                 ('aaaaaaaaaaaaaaaa', 'visit', 'Nguyễn Văn A', 'ended', 100, 700),
                 ('bbbbbbbbbbbbbbbb', 'conference', 'x', 'open', 150, NULL);",
        )
        .unwrap();
        c
    }

    fn ev(kind: EventKind, queue: i64, t: &str, waited: Option<i64>) -> StoredEvent {
        StoredEvent {
            kind,
            queue: QueueId(queue),
            ticket_hash: t.into(),
            waited_secs: waited,
        }
    }

    #[test]
    fn counts_waits_and_drop_rates_without_identifiers() {
        use EventKind::*;
        let c = db();
        for (at, e) in [
            (100, ev(Joined, 1, "t1", None)),
            (110, ev(Joined, 1, "t2", None)),
            (120, ev(Joined, 1, "t3", None)),
            (130, ev(Accepted, 1, "t1", Some(60))),
            (140, ev(Accepted, 1, "t2", Some(180))),
            (150, ev(Cancelled, 1, "t3", Some(300))),
            (900, ev(CallEnded, 1, "t1", Some(600))),
            (200, ev(Joined, 2, "t4", None)),
            (210, ev(Dropped, 2, "t4", Some(40))),
            (99_999, ev(Joined, 2, "t5", None)),
        ] {
            insert(&c, at, &e).unwrap();
        }
        let rows = activity(&c, 0, 10_000, None).unwrap();
        let visit = rows.iter().find(|r| r.kind == "visit").unwrap();
        assert_eq!((visit.count, visit.duration_avg_secs), (1, Some(600.0)));
        let q1 = rows.iter().find(|r| r.facility == "BVĐK tỉnh").unwrap();
        assert_eq!((q1.count, q1.served, q1.abandoned), (3, Some(2), Some(1)));
        assert!((q1.drop_rate.unwrap() - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(q1.wait_avg_secs, Some(120.0));
        assert_eq!(q1.wait_max_secs, Some(300));
        assert_eq!(q1.duration_avg_secs, Some(600.0));
        let q2 = rows
            .iter()
            .find(|r| r.kind == "queue" && r.facility != "BVĐK tỉnh")
            .unwrap();
        assert_eq!(
            (q2.count, q2.abandoned),
            (1, Some(1)),
            "t5 is outside the period"
        );

        // One facility only: its queue, no network-wide consultation rows.
        let rows = activity(&c, 0, 10_000, Some(FacilityId(2))).unwrap();
        assert_eq!(rows.len(), 1);

        let rows = activity(&c, 0, 10_000, None).unwrap();
        // Vietnamese by default: headers and kinds; the same numbers.
        let vi = to_csv(&rows, Lang::default());
        assert!(
            vi.starts_with("\u{feff}Cơ sở,Loại,Số lượt,Được khám,Bỏ về,Tỷ lệ bỏ,"),
            "{vi}"
        );
        assert!(
            vi.contains("\"TTYT huyện Tân Lập, \"\"cơ sở 2\"\"\",Hàng chờ trực tuyến,1,0,1,1.000"),
            "{vi}"
        );
        assert!(vi.contains("\r\n(toàn mạng),Khám từ xa,1,"), "{vi}");
        let csv = to_csv(&rows, Lang::En);
        assert!(csv.contains("\r\n(network),visit,1,"), "{csv}");
        assert!(csv.starts_with("\u{feff}facility,kind,count"));
        assert!(
            csv.contains("\"TTYT huyện Tân Lập, \"\"cơ sở 2\"\"\",queue,1,0,1,1.000"),
            "{csv}"
        );
        // Aggregates only: no consultation title (here a patient's name), no ticket.
        assert!(!csv.contains("Nguyễn Văn A") && !csv.contains("t1"));
    }

    /// An ended consultation's duration runs from its first join to its
    /// end: a conference scheduled a day ahead lasted its call, not the day.
    #[test]
    fn durations_of_ended_consultations_run_from_the_first_join() {
        let c = db();
        c.execute_batch(
            "INSERT INTO consultations(id, kind, title, status, created_at, ended_at) VALUES
                 ('cccccccccccccccc', 'conference', 'y', 'ended', 200, 90000);
             INSERT INTO attendance(consultation_id, participant_id, name, role, joined_at, left_at)
                 VALUES ('cccccccccccccccc', 1, 'BS A', 'doctor', 87000, 90000),
                        ('cccccccccccccccc', 2, 'BS B', 'doctor', 87600, 89000);",
        )
        .unwrap();
        let rows = activity(&c, 0, 10_000, None).unwrap();
        let conf = rows.iter().find(|r| r.kind == "conference").unwrap();
        // Two conferences, one still open: only the ended one has a duration.
        assert_eq!((conf.count, conf.duration_avg_secs), (2, Some(3000.0)));
        let visit = rows.iter().find(|r| r.kind == "visit").unwrap();
        assert_eq!(
            visit.duration_avg_secs,
            Some(600.0),
            "nobody joined: from its creation"
        );
    }
}
