//! A consultation's record: the facts an export is made from (the
//! consultation, who attended, the links minted, consents, the audit
//! entries, the conference request, chat, the connection's continuity, the
//! visit's reason), read by `tuxa_store::record`, and its `record.json`
//! rendering. The FHIR Bundle is [`crate::fhir`]'s, the minutes page
//! [`crate::minutes`]'s. Shapes and mappings are documented in
//! `docs/api.md`, "Record exports".

use serde::Serialize;
use serde_json::{Value, json};

use crate::ids::FacilityId;

/// The version of the `record.json` shape. Adding a field keeps it; renaming,
/// removing or changing the meaning of one bumps it.
pub const FORMAT_VERSION: u32 = 1;

pub use tuxa_protocol::ConsultationKind;

/// Whether a consultation is still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsultationStatus {
    Open,
    Ended,
}

impl ConsultationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsultationStatus::Open => "open",
            ConsultationStatus::Ended => "ended",
        }
    }

    pub fn parse(s: &str) -> Option<ConsultationStatus> {
        match s {
            "open" => Some(ConsultationStatus::Open),
            "ended" => Some(ConsultationStatus::Ended),
            _ => None,
        }
    }
}

/// Why a consultation ended: the wire's `EndReason`, or a conference called
/// off before it was held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    Ended,
    Abandoned,
    ServerRestart,
    Cancelled,
}

impl Ending {
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Ended => "ended",
            Ending::Abandoned => "abandoned",
            Ending::ServerRestart => "server_restart",
            Ending::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Ending> {
        [
            Ending::Ended,
            Ending::Abandoned,
            Ending::ServerRestart,
            Ending::Cancelled,
        ]
        .into_iter()
        .find(|e| e.as_str() == s)
    }
}

#[cfg(feature = "sqlite")]
crate::text_enum_sql!(ConsultationStatus);
#[cfg(feature = "sqlite")]
crate::text_enum_sql!(Ending);

/// A consultation row.
#[derive(Debug, Clone)]
pub struct ConsultationRow {
    pub id: String,
    pub kind: ConsultationKind,
    pub title: String,
    pub status: ConsultationStatus,
    pub created_at: i64,
    pub ended_at: Option<i64>,
    /// Whose it is (who may see it); none when made with the admin key.
    pub facility_id: Option<FacilityId>,
    /// Why it ended, once it has.
    pub end_reason: Option<Ending>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Fhir,
    Minutes,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Fhir => "fhir",
            Format::Minutes => "minutes",
        }
    }
}

/// One presence in the room: a join and, once it ended, its leave.
#[derive(Debug, Clone, Serialize)]
pub struct Attendance {
    pub participant_id: i64,
    pub name: String,
    pub role: String,
    pub facility: Option<String>,
    /// The practitioner's licence (giấy phép hành nghề) number. Always
    /// `null` until the directory work adds the column to `attendance`.
    pub licence_number: Option<String>,
    pub joined_at: i64,
    pub left_at: Option<i64>,
    pub leave_reason: Option<String>,
}

/// A join link that was minted. The token itself is never stored.
#[derive(Debug, Clone, Serialize)]
pub struct LinkRow {
    pub id: i64,
    pub role: String,
    pub name: String,
    pub facility: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A patient's consent answers, per purpose, as given (a change of mind is
/// another row).
#[derive(Debug, Clone, Serialize)]
pub struct ConsentRow {
    pub participant_id: i64,
    pub text_version: String,
    pub remote_examination: bool,
    pub third_parties: bool,
    pub recording: bool,
    pub at: i64,
}

/// One audit entry, with what its hash covers.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub action: String,
    pub actor: String,
    /// `detail_text` parsed (or the text itself if it is not JSON).
    pub detail: Value,
    /// The detail exactly as stored and hashed.
    pub detail_text: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Everything an export is made from.
#[derive(Debug, Clone)]
pub struct Record {
    pub consultation: ConsultationRow,
    pub participants: Vec<Attendance>,
    pub links: Vec<LinkRow>,
    pub consents: Vec<ConsentRow>,
    pub audit: Vec<AuditRow>,
    /// The last entry of the whole audit log when the record was read.
    pub chain_head: Option<(i64, String)>,
    pub exported_at: i64,
    pub exported_by: String,
    /// The conference request held in this consultation (summary, question,
    /// consent given on the patient's behalf, schedule, conclusion).
    pub conference: Option<Value>,
    /// Chat, kept for conferences only.
    pub chat: Vec<Value>,
    /// Evidence of the connection's continuity: per participant, their link
    /// telemetry summed up and every gap (see [`continuity`]).
    pub continuity: Value,
    /// The Department of Health the facility answers to (`--department-name`).
    pub department: Option<String>,
    /// The facility the consultation belongs to, from the directory.
    pub facility: Option<String>,
    /// A queue visit's reason, as the patient stated it when queueing.
    pub visit_reason: Option<String>,
    /// The consultation's recordings, each with its files (purged ones
    /// included: the row outlives the file, and says when it went).
    pub recordings: Vec<(
        crate::recording::Recording,
        Vec<crate::recording::RecordingFile>,
    )>,
}

impl Record {
    /// When the consultation took place: from the first join (or its
    /// creation, if nobody joined) to, once it has ended, the last leave (or
    /// its end, if nobody joined). `None` as the end while it is open.
    pub fn period(&self) -> (i64, Option<i64>) {
        let c = &self.consultation;
        let start = self
            .participants
            .iter()
            .map(|p| p.joined_at)
            .min()
            .unwrap_or(c.created_at);
        let end = c.ended_at.map(|ended| {
            self.participants
                .iter()
                .filter_map(|p| p.left_at)
                .max()
                .unwrap_or(ended)
                .max(start)
        });
        (start, end)
    }
}

/// One window of a participant's link telemetry (~10 s, see
/// `signaling::QualityWindow`), as stored.
#[derive(Debug, Clone, Serialize)]
pub struct QualityWindow {
    pub participant_id: i64,
    pub from: i64,
    pub to: i64,
    pub samples: i64,
    pub rtt_ms_avg: Option<i64>,
    pub rtt_ms_max: Option<i64>,
    pub loss_pct_max: Option<f64>,
    pub jitter_ms_max: Option<i64>,
    pub frame_height_min: Option<i64>,
    pub covered_ms: i64,
    pub audio_only_ms: i64,
}

/// A gap in a participant's connection, and how it ended (`resumed`,
/// `left`, or `None` while still open).
#[derive(Debug, Clone, Serialize)]
pub struct LinkGap {
    pub participant_id: i64,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub outcome: Option<String>,
}

/// Evidence of the connection's continuity: the link telemetry and gaps
/// summed up per participant: how long their samples covered, how much of
/// it audio-only, the worst loss, round trip and jitter, the smallest
/// picture, and each gap with how it ended. `window_secs` is the telemetry
/// window's length (`signaling::QUALITY_WINDOW_SECS`).
pub fn continuity(windows: &[QualityWindow], gaps: &[LinkGap], window_secs: u64) -> Value {
    let mut ids: Vec<i64> = windows
        .iter()
        .map(|w| w.participant_id)
        .chain(gaps.iter().map(|g| g.participant_id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    fn max_of<T: PartialOrd + Copy>(values: impl Iterator<Item = T>) -> Option<T> {
        values.fold(None, |m, v| {
            Some(m.map_or(v, |m: T| if v > m { v } else { m }))
        })
    }
    let participants: Vec<Value> = ids
        .iter()
        .map(|&pid| {
            let ws: Vec<&QualityWindow> =
                windows.iter().filter(|w| w.participant_id == pid).collect();
            let my_gaps: Vec<Value> = gaps
                .iter()
                .filter(|g| g.participant_id == pid)
                .map(|g| {
                    json!({
                        "started_at": g.started_at,
                        "ended_at": g.ended_at,
                        "secs": g.ended_at.map(|e| e - g.started_at),
                        "outcome": g.outcome,
                    })
                })
                .collect();
            json!({
                "participant_id": pid,
                "samples": ws.iter().map(|w| w.samples).sum::<i64>(),
                "covered_secs": ws.iter().map(|w| w.covered_ms).sum::<i64>() / 1000,
                "audio_only_secs": ws.iter().map(|w| w.audio_only_ms).sum::<i64>() / 1000,
                "loss_pct_max": max_of(ws.iter().filter_map(|w| w.loss_pct_max)),
                "rtt_ms_max": max_of(ws.iter().filter_map(|w| w.rtt_ms_max)),
                "jitter_ms_max": max_of(ws.iter().filter_map(|w| w.jitter_ms_max)),
                "frame_height_min": ws.iter().filter_map(|w| w.frame_height_min).min(),
                "gaps": my_gaps,
            })
        })
        .collect();
    json!({
        "window_secs": window_secs,
        "participants": participants,
        "windows": windows,
    })
}

// ---------------------------------------------------------------------------
// tuxa JSON.

pub fn record_to_json(r: &Record) -> Value {
    let c = &r.consultation;
    let (start, end) = r.period();
    json!({
        "format": "tuxa.record",
        "format_version": FORMAT_VERSION,
        "exported_at": r.exported_at,
        "exported_by": r.exported_by,
        "consultation": {
            "id": c.id,
            "kind": c.kind,
            "title": c.title,
            "status": c.status,
            "created_at": c.created_at,
            "ended_at": c.ended_at,
            "end_reason": c.end_reason,
        },
        "period": {"start": start, "end": end},
        "department": r.department,
        "facility": {"id": c.facility_id, "name": r.facility},
        "visit": if c.kind == ConsultationKind::Visit { json!({"reason": r.visit_reason}) } else { Value::Null },
        "participants": r.participants,
        "links": r.links,
        "consents": r.consents,
        "audit": r.audit,
        "conference": r.conference,
        "chat": r.chat,
        "continuity": r.continuity,
        "recordings": recordings_json(&r.recordings),
        "audit_chain": {
            "head_id": r.chain_head.as_ref().map(|h| h.0),
            "head_hash": r.chain_head.as_ref().map(|h| h.1.clone()),
        },
    })
}

/// The recordings as `record.json` lists them: who started each and why it
/// stopped, and per track who it shows, where it sits on the recording's
/// clock, and the file's size and SHA-256 as sealed (what
/// `tuxa verify-recordings` and the audit chain hold).
pub fn recordings_json(
    recs: &[(
        crate::recording::Recording,
        Vec<crate::recording::RecordingFile>,
    )],
) -> Value {
    use crate::recording::{kind_as_str, source_as_str};
    Value::Array(
        recs.iter()
            .map(|(r, files)| {
                json!({
                    "id": r.id,
                    "state": r.state.as_str(),
                    "started_at": r.started_at.0,
                    "ended_at": r.ended_at.map(|t| t.0),
                    "started_by": {"participant_id": r.started_by.participant.0, "name": r.started_by.name},
                    "stop_reason": r.stop_reason.map(|s| s.as_str()),
                    "tracks": files.iter().map(|f| json!({
                        "id": f.id,
                        "participant_id": f.participant.0,
                        "name": f.display_name,
                        "role": f.role,
                        "facility": f.facility,
                        "kind": kind_as_str(f.kind),
                        "source": source_as_str(f.source),
                        "codec": f.codec.as_str(),
                        "segment": f.segment,
                        "offset_ms": f.offset_ms,
                        "started_at": f.started_at.0,
                        "duration_ms": f.duration_ms,
                        "frames": f.frames,
                        "width": f.width,
                        "height": f.height,
                        "size": f.size,
                        "sha256": f.sha256,
                        "key_id": f.key_id,
                        "state": f.state.as_str(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(
        pid: i64,
        from: i64,
        loss: Option<f64>,
        rtt: Option<i64>,
        h: Option<i64>,
    ) -> QualityWindow {
        QualityWindow {
            participant_id: pid,
            from,
            to: from + 10,
            samples: 5,
            rtt_ms_avg: rtt,
            rtt_ms_max: rtt,
            loss_pct_max: loss,
            jitter_ms_max: Some(30),
            frame_height_min: h,
            covered_ms: 9_500,
            audio_only_ms: 1_500,
        }
    }

    /// Per participant: sums, the worst figures, the smallest picture, and
    /// each gap with its length (none while it is open); a participant with
    /// only a gap is listed too.
    #[test]
    fn continuity_sums_up_each_participant() {
        let windows = [
            window(2, 100, Some(1.5), Some(80), Some(360)),
            window(2, 110, Some(7.25), Some(40), Some(180)),
            window(2, 120, None, None, None),
        ];
        let gaps = [
            LinkGap {
                participant_id: 2,
                started_at: 115,
                ended_at: Some(127),
                outcome: Some("resumed".into()),
            },
            LinkGap {
                participant_id: 3,
                started_at: 130,
                ended_at: None,
                outcome: None,
            },
        ];
        let v = continuity(&windows, &gaps, 10);
        assert_eq!(v["window_secs"], 10);
        assert_eq!(v["windows"].as_array().unwrap().len(), 3);
        let p = &v["participants"][0];
        assert_eq!(p["participant_id"], 2);
        assert_eq!(
            (p["samples"].as_i64(), p["covered_secs"].as_i64()),
            (Some(15), Some(28))
        );
        assert_eq!(p["audio_only_secs"], 4);
        assert_eq!(p["loss_pct_max"], 7.25);
        assert_eq!(p["rtt_ms_max"], 80);
        assert_eq!(p["jitter_ms_max"], 30);
        assert_eq!(p["frame_height_min"], 180);
        assert_eq!(p["gaps"][0]["secs"], 12);
        let q = &v["participants"][1];
        assert_eq!(q["participant_id"], 3);
        assert!(q["loss_pct_max"].is_null() && q["frame_height_min"].is_null());
        assert!(q["gaps"][0]["secs"].is_null(), "still open");
    }
}
