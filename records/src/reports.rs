//! The activity report: what the Department of Health asks of the network,
//! by period, facility and kind — counts, wait times and drop rates. Only
//! aggregates: no name, phone, ticket or participant id ever leaves here.
//!
//! The rules are here, over plain rows the store reads
//! (`tuxa_store::reports`): which events count as served or abandoned, how
//! long a consultation lasted, and the CSV a spreadsheet opens.

use serde::{Deserialize, Serialize};

use crate::ids::{FacilityId, QueueId};

/// What happened to a patient in a queue, as the report counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Joined,
    /// A doctor took them (served).
    Accepted,
    /// Dropped before a doctor took them (abandoned).
    Dropped,
    /// They left the queue (abandoned).
    Cancelled,
    /// Their call ended (its length is `waited_secs`).
    CallEnded,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::Joined,
        EventKind::Accepted,
        EventKind::Dropped,
        EventKind::Cancelled,
        EventKind::CallEnded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Joined => "joined",
            EventKind::Accepted => "accepted",
            EventKind::Dropped => "dropped",
            EventKind::Cancelled => "cancelled",
            EventKind::CallEnded => "call_ended",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[cfg(feature = "sqlite")]
crate::text_enum_sql!(EventKind);

/// One queue event as stored: its kind, the queue, and how long the patient
/// had waited. The ticket is kept only as a hash, to count a patient once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub kind: EventKind,
    pub queue: QueueId,
    pub ticket_hash: String,
    /// The wait (or for `CallEnded` the call's length), in seconds.
    pub waited_secs: Option<i64>,
}

/// A consultation created in the period, as the report needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsultationFact {
    /// `visit` or `conference`.
    pub kind: String,
    pub created_at: i64,
    pub ended_at: Option<i64>,
    /// The first join, if anybody joined.
    pub first_join: Option<i64>,
}

/// A queue event in the period, with the facility its queue belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFact {
    pub facility: FacilityId,
    pub facility_name: String,
    /// As stored: an unknown kind is not counted.
    pub kind: String,
    pub waited_secs: Option<i64>,
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

fn avg(values: impl Iterator<Item = i64>) -> Option<f64> {
    let (sum, n) = values.fold((0i64, 0i64), |(s, n), v| (s.saturating_add(v), n + 1));
    (n > 0).then(|| sum as f64 / n as f64)
}

/// The report's rows: with `facility` unset, consultations by kind
/// (network-wide, ordered by kind) first; then each facility's queues
/// (ordered by the facility's name). The facts are those of the period.
///
/// A consultation's duration runs from the first join (a conference is
/// created when it is scheduled, maybe days before) to its end; open ones
/// have none yet.
pub fn activity(
    consultations: &[ConsultationFact],
    events: &[EventFact],
    facility: Option<FacilityId>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    if facility.is_none() {
        let mut kinds: Vec<&str> = consultations.iter().map(|c| c.kind.as_str()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        for kind in kinds {
            let of_kind = || consultations.iter().filter(move |c| c.kind == kind);
            rows.push(Row {
                facility: NETWORK.into(),
                kind: kind.into(),
                count: of_kind().count() as i64,
                served: None,
                abandoned: None,
                drop_rate: None,
                wait_avg_secs: None,
                wait_max_secs: None,
                duration_avg_secs: avg(of_kind()
                    .filter_map(|c| c.ended_at.map(|e| e - c.first_join.unwrap_or(c.created_at)))),
            });
        }
    }
    let mut facilities: Vec<(&str, FacilityId)> = events
        .iter()
        .filter(|e| facility.is_none_or(|f| f == e.facility))
        .map(|e| (e.facility_name.as_str(), e.facility))
        .collect();
    facilities.sort_unstable();
    facilities.dedup();
    for (name, id) in facilities {
        let of = |kinds: &'static [EventKind]| {
            events.iter().filter(move |e| {
                e.facility == id && EventKind::parse(&e.kind).is_some_and(|k| kinds.contains(&k))
            })
        };
        let waits = |kinds: &'static [EventKind]| of(kinds).filter_map(|e| e.waited_secs);
        const ABANDONED: &[EventKind] = &[EventKind::Dropped, EventKind::Cancelled];
        let count = of(&[EventKind::Joined]).count() as i64;
        let abandoned = of(ABANDONED).count() as i64;
        rows.push(Row {
            facility: name.into(),
            kind: "queue".into(),
            count,
            served: Some(of(&[EventKind::Accepted]).count() as i64),
            abandoned: Some(abandoned),
            drop_rate: (count > 0).then(|| abandoned as f64 / count as f64),
            wait_avg_secs: avg(waits(&[EventKind::Accepted])),
            wait_max_secs: waits(&[
                EventKind::Accepted,
                EventKind::Dropped,
                EventKind::Cancelled,
            ])
            .max(),
            duration_avg_secs: avg(waits(&[EventKind::CallEnded])),
        });
    }
    rows
}

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
    fn header(self) -> [&'static str; 9] {
        match self {
            Lang::Vi => [
                "Cơ sở",
                "Loại",
                "Số lượt",
                "Được khám",
                "Bỏ về",
                "Tỷ lệ bỏ",
                "Chờ trung bình (giây)",
                "Chờ lâu nhất (giây)",
                "Thời lượng trung bình (giây)",
            ],
            Lang::En => [
                "facility",
                "kind",
                "count",
                "served",
                "abandoned",
                "drop_rate",
                "wait_avg_secs",
                "wait_max_secs",
                "duration_avg_secs",
            ],
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

/// A cell that starts like a formula is run as one by Excel and
/// LibreOffice (CSV injection): a facility named "=HYPERLINK(…)" must stay
/// text. OWASP's remedy: a leading apostrophe, which the spreadsheet shows
/// as text and hides.
fn text_cell(s: &str) -> std::borrow::Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{s}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// CSV (RFC 4180: CRLF, quoted only where needed; UTF-8 with a BOM so that
/// Excel shows Vietnamese right).
pub fn to_csv(rows: &[Row], lang: Lang) -> String {
    fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
        v.as_ref().map(|x| x.to_string()).unwrap_or_default()
    }
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer("\u{feff}".as_bytes().to_vec());
    // Writing to a Vec cannot fail, and every record has the header's nine
    // fields; `expect` states that rather than hiding an error.
    w.write_record(lang.header()).expect("a CSV in memory");
    for r in rows {
        w.write_record([
            text_cell(lang.facility(&r.facility)).as_ref(),
            text_cell(lang.kind(&r.kind)).as_ref(),
            &r.count.to_string(),
            &opt(&r.served),
            &opt(&r.abandoned),
            &r.drop_rate.map(|d| format!("{d:.3}")).unwrap_or_default(),
            &r.wait_avg_secs
                .map(|d| format!("{d:.0}"))
                .unwrap_or_default(),
            &opt(&r.wait_max_secs),
            &r.duration_avg_secs
                .map(|d| format!("{d:.0}"))
                .unwrap_or_default(),
        ])
        .expect("a CSV in memory");
    }
    let bytes = w.into_inner().expect("a CSV in memory");
    String::from_utf8(bytes).expect("UTF-8 in, UTF-8 out")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(facility: &str) -> Row {
        Row {
            facility: facility.into(),
            kind: "queue".into(),
            count: 1,
            served: None,
            abandoned: None,
            drop_rate: None,
            wait_avg_secs: None,
            wait_max_secs: None,
            duration_avg_secs: None,
        }
    }

    /// A facility name that a spreadsheet would run as a formula comes out
    /// as text: each of the four trigger characters (and a leading tab),
    /// with and without the quoting a comma needs.
    #[test]
    fn csv_cells_never_start_a_formula() {
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

    #[test]
    fn the_csv_has_a_bom_crlf_and_plain_numbers() {
        let mut r = row("BVĐK tỉnh");
        (r.served, r.abandoned, r.drop_rate) = (Some(2), Some(1), Some(1.0 / 3.0));
        (r.wait_avg_secs, r.wait_max_secs) = (Some(119.6), Some(300));
        let csv = to_csv(&[r], Lang::En);
        assert_eq!(
            csv,
            "\u{feff}facility,kind,count,served,abandoned,drop_rate,wait_avg_secs,wait_max_secs,duration_avg_secs\r\n\
             BVĐK tỉnh,queue,1,2,1,0.333,120,300,\r\n"
        );
    }

    fn ev(facility: i64, name: &str, kind: &str, waited: Option<i64>) -> EventFact {
        EventFact {
            facility: FacilityId(facility),
            facility_name: name.into(),
            kind: kind.into(),
            waited_secs: waited,
        }
    }

    #[test]
    fn queues_count_served_abandoned_and_waits_per_facility() {
        let events = [
            ev(2, "B", "joined", None),
            ev(1, "A", "joined", None),
            ev(1, "A", "joined", None),
            ev(1, "A", "accepted", Some(60)),
            ev(1, "A", "cancelled", Some(300)),
            ev(1, "A", "call_ended", Some(600)),
            ev(2, "B", "dropped", Some(40)),
        ];
        let consultations = [ConsultationFact {
            kind: "visit".into(),
            created_at: 100,
            ended_at: None,
            first_join: None,
        }];
        let rows = activity(&consultations, &events, None);
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[0].kind.as_str(), rows[0].count), ("visit", 1));
        assert_eq!(rows[0].duration_avg_secs, None, "still open");
        assert_eq!(rows[1].facility, "A", "ordered by name");
        assert_eq!(
            (rows[1].count, rows[1].served, rows[1].abandoned),
            (2, Some(1), Some(1))
        );
        assert_eq!(rows[1].drop_rate, Some(0.5));
        assert_eq!(rows[1].wait_avg_secs, Some(60.0));
        assert_eq!(rows[1].wait_max_secs, Some(300));
        assert_eq!(rows[1].duration_avg_secs, Some(600.0));
        assert_eq!((rows[2].count, rows[2].abandoned), (1, Some(1)));
        let only_b = activity(&consultations, &events, Some(FacilityId(2)));
        assert_eq!(only_b.len(), 1);
        assert_eq!(only_b[0].facility, "B");
    }
}
