//! The activity report: what the Department of Health asks of the network,
//! by period, facility and kind — counts, wait times and drop rates. Only
//! aggregates: no name, phone, ticket or participant id ever leaves here.

use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tuxa_protocol::ErrorCode;
use tuxa_signaling::queue::{DropStage, QueueEvent};

use crate::gate::{Access, Routes};
use crate::http::{ApiError, AppState, check_admin};
use crate::hub_task::unix_now;

/// One queue event as stored: its kind, the queue, and how long the patient
/// had waited. The ticket is kept only as a hash, to count a patient once.
pub struct StoredEvent {
    pub kind: &'static str,
    pub queue: i64,
    pub ticket_hash: String,
    pub waited_secs: Option<i64>,
}

/// What of a queue event the report needs (None: not counted).
pub fn to_stored(ev: &QueueEvent) -> Option<StoredEvent> {
    let hash = |t: &tuxa_signaling::queue::Ticket| crate::hex(&crate::sha256(t.0.as_bytes())[..8]);
    let (kind, queue, ticket, waited) = match ev {
        QueueEvent::Joined { queue, ticket, .. } => ("joined", queue, ticket, None),
        QueueEvent::Accepted {
            queue,
            ticket,
            waited,
            ..
        } => ("accepted", queue, ticket, Some(waited)),
        QueueEvent::Dropped {
            queue,
            ticket,
            stage: s,
            waited,
            ..
        } if *s != DropStage::InCall => ("dropped", queue, ticket, Some(waited)),
        QueueEvent::Cancelled {
            queue,
            ticket,
            waited,
            ..
        } => ("cancelled", queue, ticket, Some(waited)),
        QueueEvent::CallEnded {
            queue,
            ticket,
            duration,
            ..
        } => ("call_ended", queue, ticket, Some(duration)),
        _ => return None,
    };
    Some(StoredEvent {
        kind,
        queue: queue.0 as i64,
        ticket_hash: hash(ticket),
        waited_secs: waited.map(|d| d.as_secs() as i64),
    })
}

pub fn insert(c: &Connection, at: i64, e: &StoredEvent) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO queue_events(at, queue_id, kind, ticket_hash, waited_secs) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![at, e.queue, e.kind, e.ticket_hash, e.waited_secs],
    )?;
    Ok(())
}

/// One row of the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub facility: String,
    pub kind: String,
    /// Consultations started (visits and conferences), or patients who
    /// joined a queue.
    pub count: i64,
    /// Queues: patients who reached a doctor.
    pub served: Option<i64>,
    /// Queues: patients who left or were dropped before a doctor took them.
    pub abandoned: Option<i64>,
    /// `abandoned / count`, 0–1.
    pub drop_rate: Option<f64>,
    pub wait_avg_secs: Option<f64>,
    pub wait_max_secs: Option<i64>,
    /// Mean length of calls (queues) or consultations (ended ones).
    pub duration_avg_secs: Option<f64>,
}

/// The facility of the network-wide rows (consultations not from a queue).
pub const NETWORK: &str = "(toàn mạng / network)";

/// The language of the CSV's words (headers, kinds); numbers stay plain
/// (a dot before decimals, no grouping) so that any spreadsheet reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    Vi,
    En,
}

impl Lang {
    fn header(self) -> &'static str {
        match self {
            Lang::Vi => {
                "Cơ sở,Loại,Số lượt,Được khám,Bỏ về,Tỷ lệ bỏ,Chờ trung bình (giây),Chờ lâu nhất (giây),Thời lượng trung bình (giây)"
            }
            Lang::En => {
                "facility,kind,count,served,abandoned,drop_rate,wait_avg_secs,wait_max_secs,duration_avg_secs"
            }
        }
    }

    fn kind(self, kind: &str) -> &str {
        match (self, kind) {
            (Lang::Vi, "visit") => "Khám từ xa",
            (Lang::Vi, "conference") => "Hội chẩn",
            (Lang::Vi, "queue") => "Hàng chờ trực tuyến",
            (_, k) => k,
        }
    }

    fn facility(self, name: &str) -> &str {
        match (self, name) {
            (Lang::Vi, NETWORK) => "(toàn mạng)",
            (Lang::En, NETWORK) => "(network)",
            (_, n) => n,
        }
    }
}

/// The report for `[from, to)` (Unix seconds), optionally one facility.
pub fn activity(
    c: &Connection,
    from: i64,
    to: i64,
    facility: Option<i64>,
) -> rusqlite::Result<Vec<Row>> {
    let mut rows = Vec::new();
    // Consultations by kind. A consultation's facility is that of the
    // queue it came from when there is one; others are counted network-wide.
    // A duration runs from the first join (a conference is created when it
    // is scheduled, maybe days before) to the end; open ones have none yet.
    let mut st = c.prepare(
        "SELECT k.kind, count(*),
                avg(k.ended_at - coalesce(
                    (SELECT min(a.joined_at) FROM attendance a WHERE a.consultation_id = k.id),
                    k.created_at))
         FROM consultations k
         WHERE k.created_at >= ?1 AND k.created_at < ?2 GROUP BY k.kind ORDER BY k.kind",
    )?;
    if facility.is_none() {
        for r in st.query_map(params![from, to], |r| {
            Ok(Row {
                facility: NETWORK.into(),
                kind: r.get(0)?,
                count: r.get(1)?,
                served: None,
                abandoned: None,
                drop_rate: None,
                wait_avg_secs: None,
                wait_max_secs: None,
                duration_avg_secs: r.get(2)?,
            })
        })? {
            rows.push(r?);
        }
    }
    // Queues, per facility.
    let mut st = c.prepare(
        "SELECT f.name,
                sum(e.kind = 'joined'),
                sum(e.kind = 'accepted'),
                sum(e.kind IN ('dropped', 'cancelled')),
                avg(CASE WHEN e.kind = 'accepted' THEN e.waited_secs END),
                max(CASE WHEN e.kind IN ('accepted', 'dropped', 'cancelled') THEN e.waited_secs END),
                avg(CASE WHEN e.kind = 'call_ended' THEN e.waited_secs END)
         FROM queue_events e JOIN queues q ON q.id = e.queue_id JOIN facilities f ON f.id = q.facility_id
         WHERE e.at >= ?1 AND e.at < ?2 AND (?3 IS NULL OR f.id = ?3)
         GROUP BY f.id ORDER BY f.name",
    )?;
    for r in st.query_map(params![from, to, facility], |r| {
        let count: i64 = r.get(1)?;
        let abandoned: i64 = r.get(3)?;
        Ok(Row {
            facility: r.get(0)?,
            kind: "queue".into(),
            count,
            served: Some(r.get(2)?),
            abandoned: Some(abandoned),
            drop_rate: (count > 0).then(|| abandoned as f64 / count as f64),
            wait_avg_secs: r.get(4)?,
            wait_max_secs: r.get(5)?,
            duration_avg_secs: r.get(6)?,
        })
    })? {
        rows.push(r?);
    }
    Ok(rows)
}

/// CSV (RFC 4180, UTF-8 with a BOM so that Excel shows Vietnamese right).
pub fn to_csv(rows: &[Row], lang: Lang) -> String {
    fn field(s: &str) -> String {
        // A cell that starts like a formula is run as one by Excel and
        // LibreOffice (CSV injection): a facility named "=HYPERLINK(…)" must
        // stay text. OWASP's remedy: a leading apostrophe, which the
        // spreadsheet shows as text and hides.
        let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            std::borrow::Cow::Owned(format!("'{s}"))
        } else {
            std::borrow::Cow::Borrowed(s)
        };
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.into_owned()
        }
    }
    fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
        v.as_ref().map(|x| x.to_string()).unwrap_or_default()
    }
    let mut out = format!("\u{feff}{}\r\n", lang.header());
    for r in rows {
        let _ = write!(
            out,
            "{},{},{},{},{},{},{},{},{}\r\n",
            field(lang.facility(&r.facility)),
            field(lang.kind(&r.kind)),
            r.count,
            opt(&r.served),
            opt(&r.abandoned),
            r.drop_rate.map(|d| format!("{d:.3}")).unwrap_or_default(),
            r.wait_avg_secs
                .map(|d| format!("{d:.0}"))
                .unwrap_or_default(),
            opt(&r.wait_max_secs),
            r.duration_avg_secs
                .map(|d| format!("{d:.0}"))
                .unwrap_or_default(),
        );
    }
    out
}

pub fn routes() -> Routes {
    Routes::new().get("/api/v1/reports/activity", Access::STAFF, report)
}

#[derive(Deserialize)]
struct Params {
    from: Option<i64>,
    to: Option<i64>,
    facility: Option<i64>,
    format: Option<String>,
    /// The CSV's words: `vi` (default) or `en`.
    #[serde(default)]
    lang: Lang,
}

/// `GET /api/v1/reports/activity?from=&to=&facility=&format=csv|json&lang=vi|en`.
/// The admin key, or a signed-in coordinator or admin: at a province-level
/// facility they see the whole network, elsewhere their own facility.
async fn report(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Result<Response, ApiError> {
    let facility = if check_admin(&state, &headers).is_ok() {
        p.facility
    } else {
        let me = crate::auth::signed_in(&state, &headers)
            .await
            .map_err(|_| {
                ApiError::new(ErrorCode::Unauthorized, "sign in, or send the admin key")
            })?;
        use crate::directory::{StaffRole, Tier};
        match me.profile.staff.role {
            StaffRole::Coordinator | StaffRole::Admin
                if me.profile.facility.tier == Tier::Province =>
            {
                p.facility
            }
            StaffRole::Coordinator | StaffRole::Admin => Some(me.profile.facility.id.0),
            _ => {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "the activity report is for coordinators",
                ));
            }
        }
    };
    let to = p.to.unwrap_or(unix_now() as i64 + 1);
    let from = p.from.unwrap_or(to - 30 * 86_400);
    if from >= to {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "from must be before to",
        ));
    }
    let rows = state
        .store
        .call(move |c| activity(c, from, to, facility))
        .await
        .map_err(|e| {
            tracing::error!("report: {e}");
            ApiError::new(ErrorCode::Internal, "internal error; see the server log")
        })?;
    match p.format.as_deref() {
        None | Some("json") => Ok(axum::Json(
            json!({"from": from, "to": to, "facility": facility, "rows": rows}),
        )
        .into_response()),
        Some("csv") => {
            let mut res = to_csv(&rows, p.lang).into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            res.headers_mut().insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static(match p.lang {
                    Lang::Vi => "attachment; filename=\"tuxa-bao-cao-hoat-dong.csv\"",
                    Lang::En => "attachment; filename=\"tuxa-activity.csv\"",
                }),
            );
            Ok(res)
        }
        Some(_) => Err(ApiError::new(
            ErrorCode::BadRequest,
            "format is csv or json",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::migrate(&mut c).unwrap();
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

    fn ev(kind: &'static str, queue: i64, t: &str, waited: Option<i64>) -> StoredEvent {
        StoredEvent {
            kind,
            queue,
            ticket_hash: t.into(),
            waited_secs: waited,
        }
    }

    #[test]
    fn counts_waits_and_drop_rates_without_identifiers() {
        let c = db();
        for (at, e) in [
            (100, ev("joined", 1, "t1", None)),
            (110, ev("joined", 1, "t2", None)),
            (120, ev("joined", 1, "t3", None)),
            (130, ev("accepted", 1, "t1", Some(60))),
            (140, ev("accepted", 1, "t2", Some(180))),
            (150, ev("cancelled", 1, "t3", Some(300))),
            (900, ev("call_ended", 1, "t1", Some(600))),
            (200, ev("joined", 2, "t4", None)),
            (210, ev("dropped", 2, "t4", Some(40))),
            (99_999, ev("joined", 2, "t5", None)),
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
        let rows = activity(&c, 0, 10_000, Some(2)).unwrap();
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

    /// A facility name that a spreadsheet would run as a formula comes out
    /// as text: each of the four trigger characters (and a leading tab),
    /// with and without the quoting a comma needs.
    #[test]
    fn csv_cells_never_start_a_formula() {
        let row = |facility: &str| Row {
            facility: facility.into(),
            kind: "queue".into(),
            count: 1,
            served: None,
            abandoned: None,
            drop_rate: None,
            wait_avg_secs: None,
            wait_max_secs: None,
            duration_avg_secs: None,
        };
        let names = [
            "=HYPERLINK(\"http://x\",\"y\")",
            "+1+1",
            "-2+3",
            "@SUM(A1)",
            "\t=1",
            "=1,2",
        ];
        let csv = to_csv(&names.map(row), Lang::En);
        let cells: Vec<&str> = csv
            .lines()
            .skip(1)
            .map(|l| l.split(",queue,").next().unwrap())
            .collect();
        assert_eq!(
            cells,
            [
                r#""'=HYPERLINK(""http://x"",""y"")""#,
                "'+1+1",
                "'-2+3",
                "'@SUM(A1)",
                "'\t=1",
                "\"'=1,2\"",
            ]
        );
        // An ordinary name is left as it is.
        assert!(to_csv(&[row("TTYT Tân Lập")], Lang::En).contains("\r\nTTYT Tân Lập,queue,"));
        // Kept in Vietnamese too.
        let vi = to_csv(&names.map(row), Lang::Vi);
        assert!(vi.contains("\r\n'+1+1,Hàng chờ trực tuyến,"), "{vi}");
        assert!(vi.contains("\r\n\"'=1,2\",Hàng chờ trực tuyến,"), "{vi}");
    }
}
