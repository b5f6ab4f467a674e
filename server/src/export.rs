//! Record exports: one consultation's facts as tuxa JSON, as a FHIR R4
//! `Bundle`, and as a printable minutes page (biên bản hội chẩn / tư vấn từ
//! xa). Shapes and mappings are documented in `docs/api.md`, "Record exports".
//!
//! Every export reads the facts and appends its own `record_exported` audit
//! entry in one job on the store thread, so the export contains the entry
//! that records it, and its `audit_chain` head is that entry's hash: printed
//! on the minutes, it anchors the chain outside the database.
//!
//! Who may export is decided by [`authorize`] alone: `authz::Permission::Export`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;
use serde_json::{Value, json};
use tuxa_protocol::{ErrorCode, RoomId};

use crate::audit::{self, Action, Entry};
use crate::http::{ApiError, AppState};
use crate::hub_task::unix_now;
use crate::store::{self, ConsultationRow};

/// The version of the `record.json` shape. Adding a field keeps it; renaming,
/// removing or changing the meaning of one bumps it.
pub const FORMAT_VERSION: u32 = 1;

/// Namespaces for tuxa's own identifiers and codes in FHIR. Change them
/// here (e.g. to OIDs assigned by the Department of Health) and nowhere else.
const NS_CONSULTATION: &str = "urn:tuxa:consultation";
const NS_KIND: &str = "urn:tuxa:consultation-kind";
const NS_ACTION: &str = "urn:tuxa:audit-action";
/// What a patient consented to (tuxa's three purposes, Law 91/2025).
const NS_CONSENT_PURPOSE: &str = "urn:tuxa:consent-purpose";
/// The text of the consent shown, by version (web-client/i18n.js).
const NS_CONSENT_TEXT: &str = "urn:tuxa:consent-text";
/// A requesting facility's own record number for the patient.
const NS_RECORD_NUMBER: &str = "urn:tuxa:facility-record-number";
/// Vietnam's personal identification number (số định danh cá nhân, CCCD).
/// No OID is published for it that we could cite; change it here.
const NS_CITIZEN_ID: &str = "urn:tuxa:vn-citizen-id";
/// An attachment's SHA-256 (hex), as stored at upload. FHIR R4's
/// `Attachment.hash` is defined as the base64 SHA-1 of the data only; SHA-1
/// no longer resists collisions, tuxa never computed it, and computing it
/// now would mean reading every stored file at each export. So the SHA-256
/// goes in `DocumentReference.identifier` under this system: an identifier
/// is what a content address is, any R4 reader keeps it, and it is the same
/// value the audit log's `attachment_added` entry chained. docs/api.md says so.
const NS_SHA256: &str = "urn:tuxa:sha256";
const V2_IDENTIFIER_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
const CONSENT_SCOPE: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
const LOINC: &str = "http://loinc.org";

const V3_ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const V3_PARTICIPATION_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const PRACTITIONER_ROLE: &str = "http://terminology.hl7.org/CodeSystem/practitioner-role";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const AUDIT_ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const SECURITY_SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";

const VIETNAM_OFFSET_SECS: i64 = 7 * 3600;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/consultations/{id}/record.json", get(record_json))
        .route(
            "/api/v1/consultations/{id}/record.fhir.json",
            get(record_fhir),
        )
        .route("/consultations/{id}/minutes", get(minutes))
}

// ---------------------------------------------------------------------------
// Who may export.

/// Who asked for an export, as the audit log names them.
#[derive(Debug, Clone)]
pub struct Requester {
    pub actor: String,
}

/// Decides whether this request may export this consultation's record
/// (`authz::Permission::Export`): the admin key, staff whose scope includes
/// the consultation's facility, and for a conference the requesting
/// facility's staff and the invitees.
async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    consultation: &str,
) -> Result<Requester, ApiError> {
    let actor = crate::authz::Actor::from_headers(state, headers).await?;
    crate::http::load_for(
        state,
        &actor,
        consultation,
        crate::authz::Permission::Export,
    )
    .await?;
    Ok(Requester {
        actor: actor.audit_name(),
    })
}

// ---------------------------------------------------------------------------
// The facts.

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
    /// telemetry summed up and every gap (see [`read_continuity`]).
    pub continuity: Value,
    /// The Department of Health the facility answers to (`--department-name`).
    pub department: Option<String>,
    /// The facility the consultation belongs to, from the directory.
    pub facility: Option<String>,
    /// A queue visit's reason, as the patient stated it when queueing.
    pub visit_reason: Option<String>,
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

/// Reads one consultation's facts. `Ok(None)`: no such consultation.
pub fn read_record(
    c: &Connection,
    id: &str,
    exported_at: i64,
    exported_by: &str,
    department: Option<&str>,
) -> rusqlite::Result<Option<Record>> {
    let Some(consultation) = store::consultation(c, id)? else {
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
    let chain_head = c
        .query_row(
            "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let conference = crate::conferences::for_consultation(c, id)?;
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
    let continuity = read_continuity(c, id)?;
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
    Ok(Some(Record {
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
        conference,
        chat,
    }))
}

/// Keeps a queue visit's stated reason with its consultation (the first
/// one: a resumed pairing does not change it).
pub fn store_visit_reason(
    c: &Connection,
    consultation: &str,
    reason: &str,
) -> rusqlite::Result<()> {
    c.execute(
        "INSERT OR IGNORE INTO visit_reasons(consultation_id, reason, at)
         VALUES (?1, ?2, strftime('%s','now'))",
        rusqlite::params![consultation, reason],
    )?;
    Ok(())
}

/// The link telemetry (windows of ~10 s, see `signaling::QualityWindow`)
/// and connection gaps of a consultation, summed up per participant: how
/// long their samples covered, how much of it audio-only, the worst loss,
/// round trip and jitter, the smallest picture, and each gap with how it
/// ended (`resumed`, `left`, or `null` while still open).
pub fn read_continuity(c: &Connection, id: &str) -> rusqlite::Result<Value> {
    let windows = c
        .prepare(
            "SELECT participant_id, from_at, to_at, samples, rtt_ms_avg, rtt_ms_max, loss_pct_max,
                    jitter_ms_max, frame_height_min, covered_ms, audio_only_ms
             FROM link_quality WHERE consultation_id = ?1 ORDER BY participant_id, from_at, id",
        )?
        .query_map([id], |r| {
            Ok(json!({
                "participant_id": r.get::<_, i64>(0)?,
                "from": r.get::<_, i64>(1)?,
                "to": r.get::<_, i64>(2)?,
                "samples": r.get::<_, i64>(3)?,
                "rtt_ms_avg": r.get::<_, Option<i64>>(4)?,
                "rtt_ms_max": r.get::<_, Option<i64>>(5)?,
                "loss_pct_max": r.get::<_, Option<f64>>(6)?,
                "jitter_ms_max": r.get::<_, Option<i64>>(7)?,
                "frame_height_min": r.get::<_, Option<i64>>(8)?,
                "covered_ms": r.get::<_, i64>(9)?,
                "audio_only_ms": r.get::<_, i64>(10)?,
            }))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let gaps = c
        .prepare(
            "SELECT participant_id, started_at, ended_at, outcome
             FROM link_gaps WHERE consultation_id = ?1 ORDER BY started_at, id",
        )?
        .query_map([id], |r| {
            Ok(json!({
                "participant_id": r.get::<_, i64>(0)?,
                "started_at": r.get::<_, i64>(1)?,
                "ended_at": r.get::<_, Option<i64>>(2)?,
                "outcome": r.get::<_, Option<String>>(3)?,
            }))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut ids: Vec<i64> = windows
        .iter()
        .chain(&gaps)
        .filter_map(|v| v["participant_id"].as_i64())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let max_of = |ws: &[&Value], key: &str| {
        ws.iter()
            .filter_map(|w| w[key].as_f64())
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    let participants: Vec<Value> = ids
        .iter()
        .map(|pid| {
            let ws: Vec<&Value> = windows
                .iter()
                .filter(|w| w["participant_id"].as_i64() == Some(*pid))
                .collect();
            let sum = |key: &str| ws.iter().filter_map(|w| w[key].as_i64()).sum::<i64>();
            let min_height = ws
                .iter()
                .filter_map(|w| w["frame_height_min"].as_i64())
                .min();
            let my_gaps: Vec<Value> = gaps
                .iter()
                .filter(|g| g["participant_id"].as_i64() == Some(*pid))
                .map(|g| {
                    json!({
                        "started_at": g["started_at"],
                        "ended_at": g["ended_at"],
                        "secs": g["ended_at"].as_i64().map(|e| e - g["started_at"].as_i64().unwrap_or(e)),
                        "outcome": g["outcome"],
                    })
                })
                .collect();
            json!({
                "participant_id": pid,
                "samples": sum("samples"),
                "covered_secs": sum("covered_ms") / 1000,
                "audio_only_secs": sum("audio_only_ms") / 1000,
                "loss_pct_max": max_of(&ws, "loss_pct_max"),
                "rtt_ms_max": max_of(&ws, "rtt_ms_max").map(|v| v as i64),
                "jitter_ms_max": max_of(&ws, "jitter_ms_max").map(|v| v as i64),
                "frame_height_min": min_height,
                "gaps": my_gaps,
            })
        })
        .collect();
    Ok(json!({
        "window_secs": tuxa_signaling::QUALITY_WINDOW_SECS,
        "participants": participants,
        "windows": windows,
    }))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!("export: {e}");
    ApiError::new(ErrorCode::Internal, "internal error; see the server log")
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such consultation")
}

/// Authorizes, records the export in the audit log, and reads the record
/// (which then includes that entry) in one store job.
async fn export(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    format: Format,
) -> Result<Record, ApiError> {
    let who = authorize(state, headers, id).await?;
    let room = RoomId::parse(id).map_err(|_| not_found())?;
    let now = unix_now() as i64;
    let department = state.department_name.clone();
    state
        .store
        .call(move |c| {
            if store::consultation(c, room.as_str())?.is_none() {
                return Ok(None);
            }
            audit::append(
                c,
                &Entry {
                    at: now,
                    action: Action::RecordExported,
                    consultation: Some(room.to_string()),
                    actor: who.actor.clone(),
                    detail: json!({ "format": format.as_str() }),
                },
            )?;
            read_record(c, room.as_str(), now, &who.actor, department.as_deref())
        })
        .await
        .map_err(internal)?
        .ok_or_else(not_found)
}

fn no_store(mut res: Response, content_type: &'static str) -> Response {
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Health records: never kept by a browser or a proxy.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

async fn record_json(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = export(&state, &headers, &id, Format::Json).await?;
    Ok(no_store(
        axum::Json(record_to_json(&record)).into_response(),
        "application/json",
    ))
}

async fn record_fhir(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = export(&state, &headers, &id, Format::Fhir).await?;
    Ok(no_store(
        axum::Json(record_to_fhir(&record)).into_response(),
        "application/fhir+json; charset=utf-8",
    ))
}

async fn minutes(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = export(&state, &headers, &id, Format::Minutes).await?;
    let mut res = no_store(
        render_minutes(&record).into_response(),
        "text/html; charset=utf-8",
    );
    // Nothing on the page runs or loads; its style is inline.
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    Ok(res)
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
        "visit": if c.kind == "visit" { json!({"reason": r.visit_reason}) } else { Value::Null },
        "participants": r.participants,
        "links": r.links,
        "consents": r.consents,
        "audit": r.audit,
        "conference": r.conference,
        "chat": r.chat,
        "continuity": r.continuity,
        "audit_chain": {
            "head_id": r.chain_head.as_ref().map(|h| h.0),
            "head_hash": r.chain_head.as_ref().map(|h| h.1.clone()),
        },
    })
}

// ---------------------------------------------------------------------------
// FHIR R4.

/// A deterministic UUID (RFC 9562 version 8) for one resource of one
/// consultation: the same consultation always gives the same ids.
fn fhir_id(consultation: &str, key: &str) -> String {
    let h = crate::sha256(format!("tuxa/fhir/{consultation}/{key}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = crate::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

fn urn(id: &str) -> String {
    format!("urn:uuid:{id}")
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"system": system, "code": code, "display": display})
}

fn fhir_period(start: i64, end: Option<i64>) -> Value {
    let mut p = json!({ "start": rfc3339(start) });
    if let Some(e) = end {
        p["end"] = json!(rfc3339(e));
    }
    p
}

/// The Encounter participant type for a tuxa role.
fn participation_type(role: &str, kind: &str) -> (&'static str, &'static str) {
    match (role, kind) {
        ("doctor", "conference") => ("CON", "consultant"),
        ("doctor", _) => ("PPRF", "primary performer"),
        _ => ("PART", "Participation"),
    }
}

/// A person as the bundle knows them: the resource that stands for them
/// (`None`: named only, e.g. a guest), and their name for `display`.
struct Person {
    reference: Option<String>,
    display: String,
}

/// A bundle entry: its `fullUrl` and its resource.
type BundleEntry = (String, Value);

/// The resources that stand for one person: `key` is who (name, role,
/// facility; patients by name alone), `url` what references point at.
struct Stand {
    key: (String, String, Option<String>),
    url: String,
    entries: Vec<BundleEntry>,
}

/// Patients (one `Patient` each) and doctors and nurses (a `Practitioner`
/// and the `PractitionerRole` that references point at).
struct People {
    patients: Vec<Stand>,
    staff: Vec<Stand>,
}

impl People {
    fn patient_key(name: &str) -> (String, String, Option<String>) {
        (name.to_owned(), "patient".to_owned(), None)
    }

    fn staff_key(p: &Attendance) -> (String, String, Option<String>) {
        (p.name.clone(), p.role.clone(), p.facility.clone())
    }

    fn build(r: &Record) -> People {
        let cid = &r.consultation.id;
        let mut people = People {
            patients: Vec::new(),
            staff: Vec::new(),
        };
        // The patient a conference is about (who may never join), patients
        // who took part, then patients who were sent a link.
        let asked_about = r
            .conference
            .as_ref()
            .and_then(|c| c["patient"]["name"].as_str())
            .map(str::to_owned);
        let patient_names = asked_about
            .into_iter()
            .chain(
                r.participants
                    .iter()
                    .filter(|p| p.role == "patient")
                    .map(|p| p.name.clone()),
            )
            .chain(
                r.links
                    .iter()
                    .filter(|l| l.role == "patient")
                    .map(|l| l.name.clone()),
            );
        for name in patient_names {
            let key = People::patient_key(&name);
            if people.patients.iter().any(|s| s.key == key) {
                continue;
            }
            let id = fhir_id(cid, &format!("patient/{}", people.patients.len()));
            let mut res = json!({
                "resourceType": "Patient",
                "id": id,
                "name": [{"text": name}],
            });
            if people.patients.is_empty()
                && let Some(conf) = &r.conference
            {
                patient_identity(&mut res, conf);
            }
            people.patients.push(Stand {
                key,
                url: urn(&id),
                entries: vec![(urn(&id), res)],
            });
        }
        for p in &r.participants {
            if !matches!(p.role.as_str(), "doctor" | "nurse") {
                continue;
            }
            let key = People::staff_key(p);
            if people.staff.iter().any(|s| s.key == key) {
                continue;
            }
            let n = people.staff.len();
            let pract_id = fhir_id(cid, &format!("practitioner/{n}"));
            let role_id = fhir_id(cid, &format!("practitioner-role/{n}"));
            let mut practitioner = json!({
                "resourceType": "Practitioner",
                "id": pract_id,
                "name": [{"text": p.name}],
            });
            if let Some(lic) = &p.licence_number {
                practitioner["identifier"] =
                    json!([{"type": {"text": "licence number"}, "value": lic}]);
            }
            let (code, display) = match p.role.as_str() {
                "doctor" => ("doctor", "Doctor"),
                _ => ("nurse", "Nurse"),
            };
            let mut role = json!({
                "resourceType": "PractitionerRole",
                "id": role_id,
                "practitioner": {"reference": urn(&pract_id), "display": p.name},
                "code": [{"coding": [coding(PRACTITIONER_ROLE, code, display)], "text": p.role}],
            });
            if let Some(f) = &p.facility {
                role["organization"] = json!({"display": f});
            }
            people.staff.push(Stand {
                key,
                url: urn(&role_id),
                entries: vec![(urn(&pract_id), practitioner), (urn(&role_id), role)],
            });
        }
        people
    }

    fn person(&self, p: &Attendance) -> Person {
        let (list, key) = if p.role == "patient" {
            (&self.patients, People::patient_key(&p.name))
        } else {
            (&self.staff, People::staff_key(p))
        };
        let reference = list.iter().find(|s| s.key == key).map(|s| s.url.clone());
        let display = match &p.facility {
            Some(f) if reference.is_none() => format!("{} ({f})", p.name),
            _ => p.name.clone(),
        };
        Person { reference, display }
    }
}

/// What the requester gave of a conference's patient, on its `Patient`.
fn patient_identity(res: &mut Value, conf: &Value) {
    let p = &conf["patient"];
    if let Some(g) = p["sex"].as_str() {
        // tuxa's sexes are FHIR's administrative genders, less `unknown`.
        res["gender"] = json!(g);
    }
    if let Some(y) = p["birth_year"].as_i64() {
        // A FHIR `date` may be the year alone.
        res["birthDate"] = json!(format!("{y:04}"));
    }
    if let Some(a) = p["address"].as_str() {
        res["address"] = json!([{"text": a}]);
    }
    let mut ids = Vec::new();
    if let Some(n) = p["record_number"].as_str() {
        let mut id = json!({
            "use": "usual",
            "type": {"coding": [coding(V2_IDENTIFIER_TYPE, "MR", "Medical record number")],
                     "text": "Số hồ sơ"},
            "system": NS_RECORD_NUMBER,
            "value": n,
        });
        if let Some(f) = conf["from_facility"]["name"].as_str() {
            id["assigner"] = json!({"display": f});
        }
        ids.push(id);
    }
    if let Some(n) = p["citizen_id"].as_str() {
        ids.push(json!({
            "use": "official",
            "type": {"coding": [coding(V2_IDENTIFIER_TYPE, "NI", "National unique individual identifier")],
                     "text": "Số định danh cá nhân (CCCD)"},
            "system": NS_CITIZEN_ID,
            "value": n,
        }));
    }
    if !ids.is_empty() {
        res["identifier"] = json!(ids);
    }
}

/// The three purposes a consent answers, as (field, code, Vietnamese, scope).
const CONSENT_PURPOSES: [(&str, &str, &str, &str); 3] = [
    (
        "remote_examination",
        "remote-examination",
        "Khám, tư vấn từ xa",
        "treatment",
    ),
    (
        "third_parties",
        "third-parties",
        "Có người thứ ba tham dự",
        "patient-privacy",
    ),
    (
        "recording",
        "recording",
        "Ghi hình, ghi âm",
        "patient-privacy",
    ),
];

/// One `Consent` per purpose of one answer set.
fn consents_for(
    cid: &str,
    key: &str,
    answers: &Value,
    text_version: &str,
    at: i64,
    patient: Option<&str>,
    performer: Value,
) -> Vec<BundleEntry> {
    CONSENT_PURPOSES
        .iter()
        .filter_map(|(field, code, vi, scope)| {
            let yes = answers[*field].as_bool()?;
            let id = fhir_id(cid, &format!("consent/{key}/{code}"));
            let mut res = json!({
                "resourceType": "Consent",
                "id": id,
                "status": "active",
                "scope": {"coding": [{"system": CONSENT_SCOPE, "code": scope}]},
                "category": [{"coding": [coding(LOINC, "59284-0", "Patient Consent")]}],
                "dateTime": rfc3339(at),
                "performer": [performer.clone()],
                "policy": [{"uri": format!("{NS_CONSENT_TEXT}:{text_version}")}],
                "provision": {
                    "type": if yes { "permit" } else { "deny" },
                    "purpose": [{"system": NS_CONSENT_PURPOSE, "code": code, "display": vi}],
                },
            });
            if let Some(p) = patient {
                res["patient"] = json!({"reference": p});
            }
            Some((urn(&id), res))
        })
        .collect()
}

/// Narrative for a Composition section: the text, escaped, a paragraph a line.
fn narrative(text: &str) -> Value {
    let body: String = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("<p>{}</p>", html_escape(l)))
        .collect();
    json!({
        "status": "generated",
        "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{body}</div>"),
    })
}

fn reference(p: &Person) -> Value {
    match &p.reference {
        Some(r) => json!({"reference": r, "display": p.display}),
        None => json!({"display": p.display}),
    }
}

/// A code and its display.
type Code = (&'static str, &'static str);

/// How a tuxa audit action reads as a FHIR AuditEvent: type (DCM), subtype
/// (DCM, if any), action (C R U D E), outcome (0 success, 4 minor failure).
fn audit_mapping(action: &str) -> (Code, Option<Code>, &'static str, &'static str) {
    const APP: Code = ("110100", "Application Activity");
    const EXPORT: Code = ("110106", "Export");
    const PROCEDURE: Code = ("110111", "Procedure Record");
    const SECURITY: Code = ("110113", "Security Alert");
    const AUTH: Code = ("110114", "User Authentication");
    match action {
        "server_started" => (APP, Some(("110120", "Application Start")), "E", "0"),
        "admin_auth_failed" => (AUTH, None, "E", "4"),
        "consultation_created" => (PROCEDURE, None, "C", "0"),
        "consultation_ended" => (PROCEDURE, None, "U", "0"),
        "link_minted" => (
            SECURITY,
            Some(("110136", "Security Roles Changed")),
            "C",
            "0",
        ),
        "link_refused" => (AUTH, None, "E", "4"),
        "joined" => (AUTH, Some(("110122", "Login")), "E", "0"),
        "left" => (AUTH, Some(("110123", "Logout")), "E", "0"),
        "admitted" => (AUTH, None, "E", "0"),
        "refused" => (AUTH, None, "E", "4"),
        "record_exported" => (EXPORT, None, "R", "0"),
        _ => (APP, None, "E", "0"),
    }
}

pub fn record_to_fhir(r: &Record) -> Value {
    let c = &r.consultation;
    let cid = &c.id;
    let people = People::build(r);
    let encounter_id = fhir_id(cid, "encounter");
    let device_id = fhir_id(cid, "device");
    let (start, end) = r.period();

    let participants: Vec<Value> = r
        .participants
        .iter()
        .filter(|p| p.role != "patient")
        .map(|p| {
            let (code, display) = participation_type(&p.role, &c.kind);
            json!({
                "type": [{"coding": [coding(V3_PARTICIPATION_TYPE, code, display)], "text": p.role}],
                "period": fhir_period(p.joined_at, p.left_at),
                "individual": reference(&people.person(p)),
            })
        })
        .collect();
    let mut encounter = json!({
        "resourceType": "Encounter",
        "id": encounter_id,
        "identifier": [{"system": NS_CONSULTATION, "value": cid}],
        "status": if c.status == "ended" { "finished" } else { "in-progress" },
        "class": coding(V3_ACT_CODE, "VR", "virtual"),
        "type": [{
            "coding": [{"system": NS_KIND, "code": c.kind}],
            "text": kind_vi(&c.kind),
        }],
        "period": fhir_period(start, end),
    });
    if let Some(patient) = people.patients.first() {
        encounter["subject"] = json!({"reference": patient.url, "display": patient.key.0});
    }
    if !participants.is_empty() {
        encounter["participant"] = json!(participants);
    }

    let device = json!({
        "resourceType": "Device",
        "id": device_id,
        "deviceName": [{"name": "tuxa", "type": "user-friendly-name"}],
        "version": [{"value": env!("CARGO_PKG_VERSION")}],
    });

    let mut entries: Vec<BundleEntry> = vec![(urn(&encounter_id), encounter)];
    for stand in people.patients.iter().chain(&people.staff) {
        entries.extend(stand.entries.iter().cloned());
    }
    entries.push((urn(&device_id), device));

    let subject = people.patients.first().map(|p| p.url.clone());

    // Consent: the requester's, on the patient's behalf, then the
    // patient's own answers in the room (a change of mind is another set).
    if let Some(conf) = &r.conference {
        let k = &conf["consent"];
        entries.extend(consents_for(
            cid,
            "request",
            k,
            k["text_version"].as_str().unwrap_or_default(),
            k["at"].as_i64().unwrap_or(c.created_at),
            subject.as_deref(),
            // R4's Consent has no note: who answered, and for whom, is in the display.
            json!({"display": format!(
                "{} (thay mặt người bệnh / on the patient's behalf)",
                conf["requested_by"]["name"].as_str().unwrap_or_default()
            )}),
        ));
    }
    for (i, k) in r.consents.iter().enumerate() {
        let who = r
            .participants
            .iter()
            .filter(|p| p.participant_id == k.participant_id && p.joined_at <= k.at)
            .max_by_key(|p| p.joined_at);
        let person = who.map(|p| people.person(p));
        let patient = person
            .as_ref()
            .and_then(|p| p.reference.clone())
            .or(subject.clone());
        let performer = match &person {
            Some(p) => reference(p),
            None => json!({"display": format!("participant:{}", k.participant_id)}),
        };
        entries.extend(consents_for(
            cid,
            &i.to_string(),
            &serde_json::to_value(k).unwrap_or_default(),
            &k.text_version,
            k.at,
            patient.as_deref(),
            performer,
        ));
    }

    if let Some(conf) = &r.conference {
        // The files reviewed, each with its SHA-256 as an identifier (see NS_SHA256).
        for a in conf["attachments"].as_array().into_iter().flatten() {
            let id = fhir_id(cid, &format!("attachment/{}", a["id"]));
            let mut doc = json!({
                "resourceType": "DocumentReference",
                "id": id,
                "identifier": [{"system": NS_SHA256, "value": a["sha256"]}],
                "status": "current",
                "description": a["name"],
                "content": [{"attachment": {
                    "contentType": a["content_type"],
                    "title": a["name"],
                    "size": a["size"],
                    "creation": rfc3339(a["uploaded_at"].as_i64().unwrap_or(0)),
                }}],
                "context": {"encounter": [{"reference": urn(&encounter_id)}]},
            });
            if let Some(at) = a["uploaded_at"].as_i64() {
                doc["date"] = json!(rfc3339(at));
            }
            if let Some(s) = &subject {
                doc["subject"] = json!({"reference": s});
            }
            entries.push((urn(&id), doc));
        }
        // The conclusion, with the management plan as its own section.
        let k = &conf["conclusion"];
        if let Some(text) = k["text"].as_str() {
            let id = fhir_id(cid, "composition/conclusion");
            let by = k["by"]["name"].as_str().unwrap_or_default();
            let author = r
                .participants
                .iter()
                .filter(|p| p.role != "patient")
                .find(|p| same_person(p, by, None))
                .map(|p| reference(&people.person(p)))
                .unwrap_or_else(|| json!({"display": by}));
            let mut sections = vec![json!({
                "title": "Kết luận",
                "code": {"coding": [coding(LOINC, "55110-1", "Conclusions [Interpretation] Document")]},
                "text": narrative(text),
            })];
            if let Some(plan) = k["management_plan"].as_str() {
                sections.push(json!({
                    "title": "Hướng xử trí",
                    "code": {"coding": [coding(LOINC, "18776-5", "Plan of care note")]},
                    "text": narrative(plan),
                }));
            }
            let mut attesters = Vec::new();
            for who in [&conf["schedule"]["chair"], &conf["secretary"]] {
                if let Some(n) = who["name"].as_str() {
                    attesters.push(json!({"mode": "professional", "party": {"display": n}}));
                }
            }
            let mut comp = json!({
                "resourceType": "Composition",
                "id": id,
                "status": "final",
                "type": {"coding": [coding(LOINC, "11488-4", "Consult note")],
                         "text": "Biên bản hội chẩn"},
                "encounter": {"reference": urn(&encounter_id)},
                "date": rfc3339(k["at"].as_i64().unwrap_or(r.exported_at)),
                "author": [author],
                "title": "Kết luận hội chẩn",
                "section": sections,
            });
            if let Some(s) = &subject {
                comp["subject"] = json!({"reference": s});
            }
            if !attesters.is_empty() {
                comp["attester"] = json!(attesters);
            }
            entries.push((urn(&id), comp));
        }
    }

    for a in &r.audit {
        let (ty, subtype, action, outcome) = audit_mapping(&a.action);
        let mut subtypes = Vec::new();
        if let Some((code, display)) = subtype {
            subtypes.push(coding(DCM, code, display));
        }
        subtypes.push(json!({"system": NS_ACTION, "code": a.action}));
        let agent = audit_agent(r, &people, a, &device_id);
        let id = fhir_id(cid, &format!("audit/{}", a.id));
        let event = json!({
            "resourceType": "AuditEvent",
            "id": id,
            "type": coding(DCM, ty.0, ty.1),
            "subtype": subtypes,
            "action": action,
            "recorded": rfc3339(a.at),
            "outcome": outcome,
            "agent": [agent],
            "source": {
                "site": "tuxa",
                "observer": {"reference": urn(&device_id), "display": "tuxa"},
                "type": [coding(SECURITY_SOURCE_TYPE, "4", "Application Server")],
            },
            "entity": [{
                "what": {"reference": urn(&encounter_id)},
                "type": coding(AUDIT_ENTITY_TYPE, "2", "System Object"),
                "detail": [
                    {"type": "tuxa.audit.id", "valueString": a.id.to_string()},
                    {"type": "tuxa.audit.actor", "valueString": a.actor},
                    {"type": "tuxa.audit.detail", "valueString": a.detail_text},
                    {"type": "tuxa.audit.prev_hash", "valueString": a.prev_hash},
                    {"type": "tuxa.audit.hash", "valueString": a.hash},
                ],
            }],
        });
        entries.push((urn(&id), event));
    }

    json!({
        "resourceType": "Bundle",
        "id": fhir_id(cid, "bundle"),
        "identifier": {"system": NS_CONSULTATION, "value": cid},
        "type": "collection",
        "timestamp": rfc3339(r.exported_at),
        "entry": entries
            .into_iter()
            .map(|(full_url, resource)| json!({"fullUrl": full_url, "resource": resource}))
            .collect::<Vec<_>>(),
    })
}

/// The AuditEvent agent for an entry's actor: `system` is tuxa itself,
/// `participant:<id>` the person who held that participant id at the time.
fn audit_agent(r: &Record, people: &People, a: &AuditRow, device_id: &str) -> Value {
    if a.actor == "system" {
        return json!({
            "who": {"reference": urn(device_id), "display": "tuxa"},
            "requestor": false,
        });
    }
    let attendee = a
        .actor
        .strip_prefix("participant:")
        .and_then(|n| n.parse::<i64>().ok())
        .and_then(|pid| {
            // Participant ids restart with the server: take the latest
            // presence with that id that began no later than the entry.
            let mut same: Vec<&Attendance> = r
                .participants
                .iter()
                .filter(|p| p.participant_id == pid)
                .collect();
            same.sort_by_key(|p| p.joined_at);
            same.iter()
                .rev()
                .find(|p| p.joined_at <= a.at)
                .or(same.first())
                .copied()
        });
    match attendee {
        Some(p) => json!({
            "type": {"text": p.role},
            "who": reference(&people.person(p)),
            "altId": a.actor,
            "requestor": true,
        }),
        None => json!({
            "who": {"display": a.actor},
            "altId": a.actor,
            "requestor": true,
        }),
    }
}

// ---------------------------------------------------------------------------
// The minutes page.

const MINUTES_TEMPLATE: &str = include_str!("minutes.html");

fn role_vi(role: &str) -> Option<&'static str> {
    Some(match role {
        "doctor" => "Bác sĩ",
        "nurse" => "Điều dưỡng",
        "patient" => "Bệnh nhân",
        "guest" => "Khách mời",
        _ => return None,
    })
}

fn kind_vi(kind: &str) -> &'static str {
    match kind {
        "conference" => "Hội chẩn từ xa",
        _ => "Khám, tư vấn từ xa",
    }
}

fn leave_reason_vi(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "left" => "Tự rời phòng",
        "disconnected" => "Mất kết nối",
        "ended" => "Kết thúc phiên",
        "server_restart" => "Máy chủ khởi động lại",
        _ => return None,
    })
}

/// Whether an attendance row is the staff member named `name` (with licence
/// `licence`, when known). Attendance keeps no staff id: a staff member's
/// link names them "<title> <name>" with their licence number, so the
/// licence decides when both sides have one, the name otherwise.
fn same_person(p: &Attendance, name: &str, licence: Option<&str>) -> bool {
    if name.is_empty() {
        return false;
    }
    if let (Some(a), Some(b)) = (p.licence_number.as_deref(), licence) {
        return a == b;
    }
    p.name == name || p.name.ends_with(&format!(" {name}"))
}

/// The chair and the secretary of a conference: (name, licence number).
fn chair_and_secretary(r: &Record) -> [Option<(String, Option<String>)>; 2] {
    let Some(conf) = &r.conference else {
        return [None, None];
    };
    [&conf["schedule"]["chair"], &conf["secretary"]].map(|v| {
        v["name"].as_str().map(|n| {
            (
                n.to_owned(),
                v["licence_number"].as_str().map(str::to_owned),
            )
        })
    })
}

fn sex_vi(sex: &str) -> &'static str {
    match sex {
        "male" => "Nam",
        "female" => "Nữ",
        _ => "Khác",
    }
}

/// Escapes text for HTML element content and quoted attributes.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Fills `{{name}}` placeholders in one pass: inserted values are never
/// scanned again, so a value that contains `{{…}}` stays as it is.
fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 1024);
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find("}}") {
            Some(j) => {
                let name = &after[..j];
                match values.iter().find(|(k, _)| *k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[i..i + 2 + j + 2]),
                }
                rest = &after[j + 2..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

pub fn render_minutes(r: &Record) -> String {
    let c = &r.consultation;
    let (start, end) = r.period();
    let (date, from) = (vn_date(start), vn_time(start));
    let to = match end {
        Some(e) if vn_date(e) == date => vn_time(e),
        Some(e) => vn_datetime(e),
        None => "………".to_owned(),
    };
    let status = if c.status == "ended" {
        "Đã kết thúc"
    } else {
        "Đang mở"
    };

    let [chair, secretary] = chair_and_secretary(r);
    let marks = |p: &Attendance| -> String {
        let mut m = String::new();
        for (who, label) in [(&chair, "Chủ trì"), (&secretary, "Thư ký")] {
            if let Some((name, lic)) = who
                && p.role != "patient"
                && same_person(p, name, lic.as_deref())
            {
                m.push_str(&format!("<br><b class=\"mark\">{label}</b>"));
            }
        }
        m
    };
    let participants = if r.participants.is_empty() {
        "<p class=\"none\">(Chưa có người tham dự.)</p>".to_owned()
    } else {
        let mut rows = String::new();
        for (i, p) in r.participants.iter().enumerate() {
            let role = role_vi(&p.role)
                .map(str::to_owned)
                .unwrap_or_else(|| html_escape(&p.role));
            // The time alone on the meeting's day; with the date otherwise.
            let when = |t: i64| {
                if vn_date(t) == date {
                    vn_time(t)
                } else {
                    format!("{} {}", vn_time(t), vn_date(t))
                }
            };
            let left = p.left_at.map(when).unwrap_or_default();
            let note = match (&p.leave_reason, p.left_at) {
                (Some(reason), _) => leave_reason_vi(reason)
                    .map(str::to_owned)
                    .unwrap_or_else(|| html_escape(reason)),
                (None, None) if c.status == "open" => "Đang tham dự".to_owned(),
                _ => String::new(),
            };
            rows.push_str(&format!(
                "<tr><td class=\"n\">{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                i + 1,
                html_escape(&p.name),
                role,
                marks(p),
                html_escape(p.facility.as_deref().unwrap_or("")),
                html_escape(p.licence_number.as_deref().unwrap_or("")),
                when(p.joined_at),
                left,
                note,
            ));
        }
        format!(
            "<table class=\"people\">\n<colgroup><col style=\"width:7%\"><col style=\"width:20%\"><col style=\"width:10%\">\
             <col style=\"width:20%\"><col style=\"width:10%\"><col style=\"width:9%\"><col style=\"width:9%\"><col style=\"width:15%\"></colgroup>\n<thead><tr><th>STT</th><th>Họ và tên</th><th>Vai trò</th>\
             <th>Cơ sở y tế</th><th>Số CCHN</th><th>Vào lúc</th><th>Rời lúc</th><th>Ghi chú</th></tr></thead>\n\
             <tbody>\n{rows}</tbody>\n</table>"
        )
    };
    let (y, m, d, _, _, _) = civil(start + VIETNAM_OFFSET_SECS);
    let signer = |who: &Option<(String, Option<String>)>| match who {
        Some((name, lic)) => {
            let lic = lic
                .as_deref()
                .map(|l| format!("<div class=\"lic\">Số CCHN: {}</div>", html_escape(l)))
                .unwrap_or_default();
            format!("<div class=\"name\">{}</div>{lic}", html_escape(name))
        }
        None => String::new(),
    };
    // Unknown, the form's blank to write on, as the printed forms have it.
    let heading = |name: &Option<String>, blank: &str| match name {
        Some(n) => html_escape(&n.to_uppercase()),
        None => format!("{blank} ………………"),
    };
    let ended = match c.ended_at {
        Some(e) => vn_datetime(e),
        None => "(chưa kết thúc)".to_owned(),
    };
    let audit_ref = match &r.chain_head {
        Some((id, hash)) => format!("mục số {id}, mã băm {}", html_escape(hash)),
        None => "(trống)".to_owned(),
    };
    fill(
        MINUTES_TEMPLATE,
        &[
            ("title", html_escape(&c.title)),
            ("id", html_escape(&c.id)),
            ("kind", kind_vi(&c.kind).to_owned()),
            ("date", date),
            ("time_from", from),
            ("time_to", to),
            ("status", status.to_owned()),
            ("ended_at", ended),
            ("department", heading(&r.department, "SỞ Y TẾ")),
            ("facility", heading(&r.facility, "CƠ SỞ Y TẾ")),
            ("patient", minutes_patient(r)),
            ("attachments", minutes_attachments(r)),
            ("plan", minutes_plan(r)),
            ("chair_name", signer(&chair)),
            ("secretary_name", signer(&secretary)),
            ("participants", participants),
            ("place_date", format!("ngày {d:02} tháng {m:02} năm {y}")),
            ("exported_at", vn_datetime(r.exported_at)),
            ("audit_ref", audit_ref),
            ("summary", minutes_summary(r)),
            ("conclusion", minutes_conclusion(r)),
        ],
    )
}

/// Blank lines to write on, for what the record does not hold.
const BLANK_LINES: &str =
    "<div class=\"lines\"><div></div><div></div><div></div><div></div><div></div></div>";

fn paragraphs(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("<p>{}</p>", html_escape(l)))
        .collect()
}

/// The patient's identity as the requester gave it (a conference), or as
/// the patient's link named them (a visit).
fn minutes_patient(r: &Record) -> String {
    let item = |label: &str, value: &str| {
        format!(
            "<li><span class=\"label\">{label}:</span> {}</li>",
            html_escape(value)
        )
    };
    let Some(conf) = &r.conference else {
        let name = r
            .participants
            .iter()
            .find(|p| p.role == "patient")
            .map(|p| p.name.clone())
            .or_else(|| {
                r.links
                    .iter()
                    .find(|l| l.role == "patient")
                    .map(|l| l.name.clone())
            });
        return match name {
            Some(n) => format!("<ul class=\"facts\">{}</ul>", item("Họ và tên", &n)),
            None => BLANK_LINES.to_owned(),
        };
    };
    let p = &conf["patient"];
    let mut out = String::from("<ul class=\"facts patient\">");
    out.push_str(&item("Họ và tên", p["name"].as_str().unwrap_or_default()));
    if let Some(s) = p["sex"].as_str() {
        out.push_str(&item("Giới tính", sex_vi(s)));
    }
    if let Some(y) = p["birth_year"].as_i64() {
        out.push_str(&item("Năm sinh", &y.to_string()));
    }
    if let Some(a) = p["address"].as_str() {
        out.push_str(&item("Địa chỉ", a));
    }
    if let Some(n) = p["citizen_id"].as_str() {
        out.push_str(&item("Số định danh cá nhân (CCCD)", n));
    }
    if let Some(n) = p["record_number"].as_str() {
        out.push_str(&item("Số hồ sơ tại cơ sở đề nghị", n));
    }
    out.push_str("</ul>");
    out
}

/// Section IV: the conference request's case, or a visit's stated reason.
fn minutes_summary(r: &Record) -> String {
    let Some(conf) = &r.conference else {
        return match &r.visit_reason {
            Some(reason) => format!(
                "<p><b>Tóm tắt</b> (lý do khám người bệnh nêu khi đăng ký):</p>{}",
                paragraphs(reason)
            ),
            None => BLANK_LINES.to_owned(),
        };
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    format!(
        "<p><b>Cơ sở đề nghị:</b> {} — <b>chuyên khoa:</b> {}</p>\n<p><b>Tóm tắt:</b></p>{}\n<p><b>Câu hỏi hội chẩn:</b></p>{}",
        html_escape(&text(&conf["from_facility"]["name"])),
        html_escape(&text(&conf["specialty"])),
        paragraphs(&text(&conf["summary"])),
        paragraphs(&text(&conf["question"])),
    )
}

/// The files the conference reviewed, each with its SHA-256 as stored at
/// upload: anyone holding a copy can check it is the one reviewed.
fn minutes_attachments(r: &Record) -> String {
    let files: Vec<&Value> = r
        .conference
        .as_ref()
        .and_then(|c| c["attachments"].as_array())
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if files.is_empty() {
        return "<p class=\"none\">(Không có tài liệu đính kèm.)</p>".to_owned();
    }
    let rows: String = files
        .iter()
        .enumerate()
        .map(|(i, a)| {
            format!(
                "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"hash\">{}</td></tr>\n",
                i + 1,
                html_escape(a["name"].as_str().unwrap_or_default()),
                html_escape(a["content_type"].as_str().unwrap_or_default()),
                vn_bytes(a["size"].as_i64().unwrap_or(0)),
                html_escape(a["sha256"].as_str().unwrap_or_default()),
            )
        })
        .collect();
    format!(
        "<table class=\"people files\">\n<colgroup><col style=\"width:7%\"><col style=\"width:25%\"><col style=\"width:16%\"><col style=\"width:12%\"><col style=\"width:40%\"></colgroup>\n\
         <thead><tr><th>STT</th><th>Tên tệp</th><th>Loại</th><th>Dung lượng</th><th>SHA-256</th></tr></thead>\n<tbody>\n{rows}</tbody>\n</table>"
    )
}

/// A size in bytes the Vietnamese way: `1.234.567 byte`.
fn vn_bytes(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(ch);
    }
    format!("{out} byte")
}

/// Section VI: the management plan entered with the conclusion.
fn minutes_plan(r: &Record) -> String {
    match r
        .conference
        .as_ref()
        .and_then(|c| c["conclusion"]["management_plan"].as_str())
    {
        Some(plan) => paragraphs(plan),
        None => BLANK_LINES.to_owned(),
    }
}

/// Section IV: the conclusion the chair or secretary entered.
fn minutes_conclusion(r: &Record) -> String {
    let Some(c) = r
        .conference
        .as_ref()
        .map(|c| &c["conclusion"])
        .filter(|c| !c.is_null())
    else {
        return BLANK_LINES.to_owned();
    };
    let by = c["by"]["name"].as_str().unwrap_or_default();
    let at = c["at"].as_i64().map(vn_datetime).unwrap_or_default();
    format!(
        "{}\n<p class=\"by\">({} — {})</p>",
        paragraphs(c["text"].as_str().unwrap_or_default()),
        html_escape(by),
        at
    )
}

// ---------------------------------------------------------------------------
// Time, without a date library: Unix seconds to the proleptic Gregorian
// calendar (H. Hinnant's `civil_from_days`).

fn civil(unix: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (secs / 3600) as u32,
        (secs % 3600 / 60) as u32,
        (secs % 60) as u32,
    )
}

/// RFC 3339 in UTC, e.g. `2025-11-25T08:40:00Z` (a FHIR `instant`/`dateTime`).
pub fn rfc3339(unix: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `dd/mm/yyyy` in Vietnam time (UTC+7, no daylight saving).
fn vn_date(unix: i64) -> String {
    let (y, m, d, _, _, _) = civil(unix + VIETNAM_OFFSET_SECS);
    format!("{d:02}/{m:02}/{y:04}")
}

/// `HH:MM` in Vietnam time.
fn vn_time(unix: i64) -> String {
    let (_, _, _, h, mi, _) = civil(unix + VIETNAM_OFFSET_SECS);
    format!("{h:02}:{mi:02}")
}

/// `dd/mm/yyyy HH:MM` in Vietnam time.
fn vn_datetime(unix: i64) -> String {
    format!("{} {}", vn_date(unix), vn_time(unix))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tokio::sync::{mpsc, watch};
    use tower::ServiceExt;

    use super::*;
    use crate::hub_task::HubMsg;

    const KEY: &str = "tuxa_export_test_key";
    /// 2025-11-25 08:40:00 UTC = 15:40 in Vietnam.
    const T0: i64 = 1_764_060_000;

    struct Scratch(PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    struct Server {
        _dir: Scratch,
        _hub: mpsc::Receiver<HubMsg>,
        _shutdown: watch::Sender<bool>,
        state: AppState,
        app: axum::Router,
    }

    /// The real router over a real SQLite file in a fresh directory.
    fn server() -> Server {
        let dir = std::env::temp_dir().join(format!(
            "tuxa-export-{}-{}",
            std::process::id(),
            crate::hex(&crate::random_bytes::<6>())
        ));
        let (state, hub, shutdown) = crate::http::test_state(&dir, KEY);
        Server {
            _dir: Scratch(dir),
            _hub: hub,
            _shutdown: shutdown,
            app: crate::http::router(state.clone()),
            state,
        }
    }

    struct Reply {
        status: StatusCode,
        headers: axum::http::HeaderMap,
        body: String,
    }

    impl Reply {
        fn json(&self) -> Value {
            serde_json::from_str(&self.body).unwrap_or(Value::String(self.body.clone()))
        }
    }

    async fn send(
        s: &Server,
        method: &str,
        uri: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(k) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let res = s.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 24)
            .await
            .unwrap();
        Reply {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    fn entry(at: i64, action: Action, room: &str, actor: &str, detail: Value) -> Entry {
        Entry {
            at,
            action,
            consultation: Some(room.to_owned()),
            actor: actor.to_owned(),
            detail,
        }
    }

    /// A conference that took place from 15:40 to 16:10 (Vietnam time) on
    /// 25/11/2025: a doctor, a patient (whose name tries HTML injection), a
    /// nurse and a guest; two links minted through the API.
    async fn fixture(s: &Server) -> String {
        let id = RoomId::from_random([42u8; 10]).to_string();
        let room = id.clone();
        s.state
            .store
            .call(move |c| {
                c.execute(
                    "INSERT INTO consultations(id, kind, title, status, created_at) VALUES (?1, 'conference', ?2, 'open', ?3)",
                    rusqlite::params![room, "Hội chẩn <b>Nội khoa</b> & \"tim mạch\"", T0 - 600],
                )?;
                audit::append(c, &entry(T0 - 600, Action::ConsultationCreated, &room, "admin", json!({"kind": "conference"})))?;
                Ok(())
            })
            .await
            .unwrap();
        for (role, name, facility) in [
            ("doctor", "BS. Trần Thị B", "BVĐK tỉnh"),
            (
                "patient",
                "<script>alert(1)</script> Nguyễn Văn A",
                "Trạm y tế xã Tân Lập",
            ),
        ] {
            let r = send(
                s,
                "POST",
                &format!("/api/v1/consultations/{id}/links"),
                Some(KEY),
                Some(json!({"role": role, "name": name, "facility": facility})),
            )
            .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        }
        let room = id.clone();
        s.state
            .store
            .call(move |c| {
                // As the hub task records them: (participant, name, role, facility, joined, left, reason).
                type Row<'a> = (i64, &'a str, &'a str, Option<&'a str>, i64, i64, &'a str);
                let rows: [Row<'_>; 4] = [
                    (1, "BS. Trần Thị B", "doctor", Some("BVĐK tỉnh"), T0, T0 + 1800, "left"),
                    (2, "<script>alert(1)</script> Nguyễn Văn A", "patient", Some("Trạm y tế xã Tân Lập"), T0 + 60, T0 + 1700, "disconnected"),
                    (3, "ĐD. Lê Văn C", "nurse", Some("TTYT huyện Tân Lập"), T0 + 120, T0 + 1800, "ended"),
                    (4, "Phiên dịch viên", "guest", None, T0 + 200, T0 + 300, "left"),
                ];
                for (pid, name, role, facility, joined, _, _) in rows {
                    c.execute(
                        "INSERT INTO attendance(consultation_id, participant_id, name, role, facility, joined_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        rusqlite::params![room, pid, name, role, facility, joined],
                    )?;
                    audit::append(c, &entry(joined, Action::Joined, &room, &format!("participant:{pid}"), json!({"role": role, "facility": facility})))?;
                }
                for (pid, _, _, _, _, left, reason) in rows {
                    c.execute(
                        "UPDATE attendance SET left_at = ?1, leave_reason = ?2
                         WHERE consultation_id = ?3 AND participant_id = ?4 AND left_at IS NULL",
                        rusqlite::params![left, reason, room, pid],
                    )?;
                    audit::append(c, &entry(left, Action::Left, &room, &format!("participant:{pid}"), json!({"reason": reason})))?;
                }
                // The patient's consent: yes to the examination, then a change of mind on third parties.
                for (third, at) in [(false, T0 + 59), (true, T0 + 900)] {
                    c.execute(
                        "INSERT INTO consents(consultation_id, participant_id, text_version,
                             remote_examination, third_parties, recording, at)
                         VALUES (?1, 2, 'vi-2026-11', 1, ?2, 0, ?3)",
                        rusqlite::params![room, third, at],
                    )?;
                }
                c.execute(
                    "UPDATE consultations SET status = 'ended', ended_at = ?1, end_reason = 'ended' WHERE id = ?2",
                    rusqlite::params![T0 + 1800, room],
                )?;
                audit::append(c, &entry(T0 + 1800, Action::ConsultationEnded, &room, "admin", json!({})))?;
                Ok(())
            })
            .await
            .unwrap();
        id
    }

    /// The recipe docs/api.md gives for checking an entry's hash.
    fn documented_hash(prev: &str, e: &Value, consultation: &str) -> String {
        let mut buf = Vec::new();
        for field in [
            prev.to_owned(),
            e["id"].as_i64().unwrap().to_string(),
            e["at"].as_i64().unwrap().to_string(),
            e["action"].as_str().unwrap().to_owned(),
            consultation.to_owned(),
            e["actor"].as_str().unwrap().to_owned(),
            e["detail_text"].as_str().unwrap().to_owned(),
        ] {
            buf.extend_from_slice(&(field.len() as u64).to_be_bytes());
            buf.extend_from_slice(field.as_bytes());
        }
        crate::hex(&crate::sha256(&buf))
    }

    #[tokio::test]
    async fn record_json_sums_up_link_quality_and_gaps() {
        let s = server();
        let id = fixture(&s).await;
        let room = id.clone();
        s.state
            .store
            .call(move |c| {
                // As the hub task records them: the patient (2) on 3G, two
                // windows, the second audio-only, and one gap they came back from.
                type W = (i64, i64, i64, Option<i64>, Option<f64>, Option<i64>, i64, i64);
                let windows: [W; 2] = [
                    (T0 + 60, T0 + 65, 2, Some(240), Some(1.5), Some(360), 5000, 0),
                    (T0 + 70, T0 + 75, 2, Some(900), Some(14.0), None, 10_000, 10_000),
                ];
                for (from, to, n, rtt, loss, h, cov, ao) in windows {
                    c.execute(
                        "INSERT INTO link_quality(consultation_id, participant_id, from_at, to_at,
                             samples, rtt_ms_avg, rtt_ms_max, loss_pct_max, jitter_ms_max,
                             frame_height_min, covered_ms, audio_only_ms)
                         VALUES (?1, 2, ?2, ?3, ?4, ?5, ?5, ?6, 30, ?7, ?8, ?9)",
                        rusqlite::params![room, from, to, n, rtt, loss, h, cov, ao],
                    )?;
                }
                c.execute(
                    "INSERT INTO link_gaps(consultation_id, participant_id, started_at, ended_at, outcome)
                     VALUES (?1, 2, ?2, ?3, 'resumed')",
                    rusqlite::params![room, T0 + 80, T0 + 92],
                )?;
                c.execute(
                    "INSERT INTO link_gaps(consultation_id, participant_id, started_at)
                     VALUES (?1, 3, ?2)",
                    rusqlite::params![room, T0 + 1790],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let r = send(
            &s,
            "GET",
            &format!("/api/v1/consultations/{id}/record.json"),
            Some(KEY),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let v = r.json();
        let c = &v["continuity"];
        assert_eq!(c["window_secs"], 10);
        assert_eq!(c["windows"].as_array().unwrap().len(), 2);
        assert_eq!(
            c["participants"],
            json!([
                {"participant_id": 2, "samples": 4, "covered_secs": 15, "audio_only_secs": 10,
                 "loss_pct_max": 14.0, "rtt_ms_max": 900, "jitter_ms_max": 30, "frame_height_min": 360,
                 "gaps": [{"started_at": T0 + 80, "ended_at": T0 + 92, "secs": 12, "outcome": "resumed"}]},
                {"participant_id": 3, "samples": 0, "covered_secs": 0, "audio_only_secs": 0,
                 "loss_pct_max": null, "rtt_ms_max": null, "jitter_ms_max": null, "frame_height_min": null,
                 "gaps": [{"started_at": T0 + 1790, "ended_at": null, "secs": null, "outcome": null}]},
            ])
        );
    }

    #[tokio::test]
    async fn record_json_has_the_facts_and_never_a_token() {
        let s = server();
        let id = fixture(&s).await;
        let r = send(
            &s,
            "GET",
            &format!("/api/v1/consultations/{id}/record.json"),
            Some(KEY),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
        assert!(
            r.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let v = r.json();
        assert_eq!(v["format"], "tuxa.record");
        assert_eq!(v["format_version"], 1);
        assert_eq!(v["exported_by"], "admin");
        assert_eq!(
            v["consultation"],
            json!({"id": id, "kind": "conference", "title": "Hội chẩn <b>Nội khoa</b> & \"tim mạch\"",
                   "status": "ended", "created_at": T0 - 600, "ended_at": T0 + 1800,
                   "end_reason": "ended"})
        );
        assert_eq!(v["period"], json!({"start": T0, "end": T0 + 1800}));

        let p = v["participants"].as_array().unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(
            p[0],
            json!({"participant_id": 1, "name": "BS. Trần Thị B", "role": "doctor", "facility": "BVĐK tỉnh",
                   "licence_number": null, "joined_at": T0, "left_at": T0 + 1800, "leave_reason": "left"})
        );
        assert_eq!(p[1]["role"], "patient");
        assert_eq!(p[1]["leave_reason"], "disconnected");
        assert_eq!(p[3]["facility"], Value::Null);

        assert_eq!(
            v["consents"],
            json!([
                {"participant_id": 2, "text_version": "vi-2026-11", "remote_examination": true,
                 "third_parties": false, "recording": false, "at": T0 + 59},
                {"participant_id": 2, "text_version": "vi-2026-11", "remote_examination": true,
                 "third_parties": true, "recording": false, "at": T0 + 900},
            ])
        );

        let links = v["links"].as_array().unwrap();
        assert_eq!(links.len(), 2);
        assert_eq!(links[0]["role"], "doctor");
        assert_eq!(links[1]["role"], "patient");
        for l in links {
            let keys: Vec<&str> = l.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                ["created_at", "expires_at", "facility", "id", "name", "role"]
            );
            assert!(l["expires_at"].as_i64().unwrap() > l["created_at"].as_i64().unwrap());
        }
        assert!(
            !r.body.contains("\"token\"") && !r.body.contains("v1."),
            "a token leaked: {}",
            r.body
        );

        // The audit entries of this consultation, chained, ending with this export.
        let audit = v["audit"].as_array().unwrap();
        let actions: Vec<&str> = audit
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            [
                "consultation_created",
                "link_minted",
                "link_minted",
                "joined",
                "joined",
                "joined",
                "joined",
                "left",
                "left",
                "left",
                "left",
                "consultation_ended",
                "record_exported",
            ]
        );
        for e in audit {
            assert_eq!(
                e["hash"],
                documented_hash(e["prev_hash"].as_str().unwrap(), e, &id)
            );
            assert_eq!(
                e["detail"],
                serde_json::from_str::<Value>(e["detail_text"].as_str().unwrap()).unwrap()
            );
        }
        let last = audit.last().unwrap();
        assert_eq!(last["detail"], json!({"format": "json"}));
        assert_eq!(last["actor"], "admin");
        assert_eq!(v["audit_chain"]["head_id"], last["id"]);
        assert_eq!(v["audit_chain"]["head_hash"], last["hash"]);
    }

    fn is_rfc3339(s: &str) -> bool {
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| {
            r.into_iter()
                .all(|i| b.get(i).is_some_and(u8::is_ascii_digit))
        };
        let shape = b.len() >= 20
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && b[10] == b'T'
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19);
        if !shape {
            return false;
        }
        let mut rest = &s[19..];
        if let Some(frac) = rest.strip_prefix('.') {
            let n = frac.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return false;
            }
            rest = &frac[n..];
        }
        let zb = rest.as_bytes();
        rest == "Z"
            || (zb.len() == 6
                && (zb[0] == b'+' || zb[0] == b'-')
                && zb[1..3].iter().all(u8::is_ascii_digit)
                && zb[3] == b':'
                && zb[4..6].iter().all(u8::is_ascii_digit))
    }

    /// Every `reference` in the bundle, and every time field with its value.
    fn walk<'a>(v: &'a Value, refs: &mut Vec<&'a str>, times: &mut Vec<(&'a str, &'a str)>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("reference", Value::String(r)) => refs.push(r),
                        ("start" | "end" | "recorded" | "timestamp", Value::String(t)) => {
                            times.push((k, t))
                        }
                        _ => walk(x, refs, times),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, refs, times)),
            _ => {}
        }
    }

    /// Checks what FHIR R4 requires of the resources tuxa writes.
    fn check_bundle(b: &Value) {
        assert_eq!(b["resourceType"], "Bundle");
        assert_eq!(b["type"], "collection");
        let entries = b["entry"].as_array().unwrap();
        let mut full_urls = Vec::new();
        for e in entries {
            let id = e["resource"]["id"].as_str().unwrap();
            assert!(
                id.len() <= 64
                    && id
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
            );
            assert_eq!(e["fullUrl"], format!("urn:uuid:{id}"));
            assert!(
                !full_urls.contains(&e["fullUrl"].as_str().unwrap()),
                "duplicate {id}"
            );
            full_urls.push(e["fullUrl"].as_str().unwrap());
        }
        let (mut refs, mut times) = (Vec::new(), Vec::new());
        walk(b, &mut refs, &mut times);
        assert!(!refs.is_empty());
        for r in refs {
            assert!(full_urls.contains(&r), "{r} does not resolve in the bundle");
        }
        assert!(times.iter().any(|(k, _)| *k == "timestamp"));
        for (k, t) in times {
            assert!(is_rfc3339(t), "{k}: {t} is not RFC 3339 with a time zone");
        }
        let of = |ty: &str| -> Vec<&Value> {
            entries
                .iter()
                .map(|e| &e["resource"])
                .filter(|r| r["resourceType"] == ty)
                .collect()
        };
        let enc = of("Encounter");
        assert_eq!(enc.len(), 1);
        let enc = enc[0];
        assert!(
            [
                "planned",
                "arrived",
                "triaged",
                "in-progress",
                "onleave",
                "finished",
                "cancelled"
            ]
            .contains(&enc["status"].as_str().unwrap())
        );
        assert_eq!(enc["class"]["system"], V3_ACT_CODE);
        assert_eq!(enc["class"]["code"], "VR");
        for p in enc["participant"].as_array().into_iter().flatten() {
            assert_eq!(p["type"][0]["coding"][0]["system"], V3_PARTICIPATION_TYPE);
            assert!(p["period"]["start"].is_string());
            assert!(
                p["individual"]["reference"].is_string() || p["individual"]["display"].is_string()
            );
        }
        let enc_url = format!("urn:uuid:{}", enc["id"].as_str().unwrap());
        for a in of("AuditEvent") {
            assert_eq!(a["type"]["system"], DCM);
            assert!(a["type"]["code"].is_string());
            assert!(["C", "R", "U", "D", "E"].contains(&a["action"].as_str().unwrap()));
            assert!(["0", "4", "8", "12"].contains(&a["outcome"].as_str().unwrap()));
            assert!(a["recorded"].is_string());
            let agents = a["agent"].as_array().unwrap();
            assert!(!agents.is_empty());
            for g in agents {
                assert!(g["requestor"].is_boolean());
                assert!(g["who"].is_object());
            }
            assert!(a["source"]["observer"]["reference"].is_string());
            assert_eq!(a["entity"][0]["what"]["reference"], enc_url.as_str());
            for d in a["entity"][0]["detail"].as_array().unwrap() {
                assert!(d["type"].is_string() && d["valueString"].is_string());
            }
        }
        for p in of("Patient") {
            let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                ["id", "name", "resourceType"],
                "a Patient carries only a name"
            );
        }
    }

    #[tokio::test]
    async fn fhir_bundle_is_well_formed_and_deterministic() {
        let s = server();
        let id = fixture(&s).await;
        let uri = format!("/api/v1/consultations/{id}/record.fhir.json");
        let r = send(&s, "GET", &uri, Some(KEY), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(
            r.headers[header::CONTENT_TYPE],
            "application/fhir+json; charset=utf-8"
        );
        let b = r.json();
        check_bundle(&b);

        let res: Vec<&Value> = b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["resource"])
            .collect();
        let enc = res
            .iter()
            .find(|r| r["resourceType"] == "Encounter")
            .unwrap();
        assert_eq!(enc["status"], "finished");
        assert_eq!(enc["identifier"][0]["value"], id.as_str());
        assert_eq!(
            enc["period"],
            json!({"start": "2025-11-25T08:40:00Z", "end": "2025-11-25T09:10:00Z"})
        );
        // The patient is the subject, named as the link named them.
        let patient_url = enc["subject"]["reference"].as_str().unwrap();
        let patient = b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["fullUrl"] == patient_url)
            .unwrap();
        assert_eq!(
            patient["resource"]["name"][0]["text"],
            "<script>alert(1)</script> Nguyễn Văn A"
        );
        // Doctor (a consultant, in a conference), nurse, guest; not the patient.
        let parts = enc["participant"].as_array().unwrap();
        let codes: Vec<&str> = parts
            .iter()
            .map(|p| p["type"][0]["coding"][0]["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["CON", "PART", "PART"]);
        assert_eq!(
            parts[0]["period"],
            json!({"start": "2025-11-25T08:40:00Z", "end": "2025-11-25T09:10:00Z"})
        );
        assert_eq!(
            parts[2]["individual"],
            json!({"display": "Phiên dịch viên"})
        );
        let role_url = parts[0]["individual"]["reference"].as_str().unwrap();
        let role = res
            .iter()
            .find(|r| format!("urn:uuid:{}", r["id"].as_str().unwrap()) == role_url)
            .unwrap();
        assert_eq!(role["resourceType"], "PractitionerRole");
        assert_eq!(role["organization"]["display"], "BVĐK tỉnh");

        let events: Vec<&&Value> = res
            .iter()
            .filter(|r| r["resourceType"] == "AuditEvent")
            .collect();
        assert_eq!(events.len(), 13);
        let joined = events
            .iter()
            .find(|e| e["subtype"][0]["code"] == "110122")
            .unwrap();
        assert_eq!(joined["type"]["code"], "110114");
        assert_eq!(joined["agent"][0]["who"]["display"], "BS. Trần Thị B");
        let export = events.last().unwrap();
        assert_eq!(export["type"]["code"], "110106");
        assert_eq!(export["action"], "R");
        assert_eq!(
            export["subtype"],
            json!([{"system": NS_ACTION, "code": "record_exported"}])
        );

        // Again: the same ids for the same things, and one more AuditEvent.
        let again = send(&s, "GET", &uri, Some(KEY), None).await.json();
        check_bundle(&again);
        let ids = |b: &Value| -> Vec<String> {
            b["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["fullUrl"].as_str().unwrap().to_owned())
                .collect()
        };
        let (first, second) = (ids(&b), ids(&again));
        assert_eq!(second.len(), first.len() + 1);
        assert_eq!(&second[..first.len()], &first[..]);
        assert_eq!(b["id"], again["id"]);
    }

    #[tokio::test]
    async fn minutes_are_prefilled_and_escaped() {
        let s = server();
        let id = fixture(&s).await;
        let r = send(
            &s,
            "GET",
            &format!("/consultations/{id}/minutes"),
            Some(KEY),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(
            r.headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .starts_with("default-src 'none'")
        );
        let h = &r.body;
        for want in [
            "BIÊN BẢN HỘI CHẨN / TƯ VẤN TỪ XA",
            "Hội chẩn &lt;b&gt;Nội khoa&lt;/b&gt; &amp; &quot;tim mạch&quot;",
            "Hội chẩn từ xa",
            "<span class=\"label\">Ngày:</span> 25/11/2025",
            "từ 15:40 đến 16:10",
            "Đã kết thúc",
            "&lt;script&gt;alert(1)&lt;/script&gt; Nguyễn Văn A",
            "<td>BS. Trần Thị B</td><td>Bác sĩ</td><td>BVĐK tỉnh</td><td></td><td>15:40</td><td>16:10</td><td>Tự rời phòng</td>",
            "<td>Bệnh nhân</td>",
            "<td>Điều dưỡng</td>",
            "<td>Khách mời</td>",
            "Mất kết nối",
            "TÓM TẮT BỆNH ÁN",
            "KẾT LUẬN",
            "HƯỚNG XỬ TRÍ",
            "CHỦ TRÌ",
            "THƯ KÝ",
            "ngày 25 tháng 11 năm 2025",
            "size: A4",
        ] {
            assert!(h.contains(want), "missing {want:?} in\n{h}");
        }
        assert!(
            !h.contains("<script>") && !h.contains("<b>"),
            "injected markup came through"
        );
        assert!(!h.contains("{{"), "a placeholder was left");
        // The footer anchors the audit chain at the entry recording this export.
        let head: (i64, String) = s
            .state
            .store
            .call(|c| {
                c.query_row(
                    "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .await
            .unwrap();
        assert!(h.contains(&format!("mục số {}, mã băm {}", head.0, head.1)));
    }

    #[tokio::test]
    async fn each_export_is_audited_and_the_chain_holds() {
        let s = server();
        let id = fixture(&s).await;
        for path in [
            format!("/api/v1/consultations/{id}/record.json"),
            format!("/api/v1/consultations/{id}/record.fhir.json"),
            format!("/consultations/{id}/minutes"),
        ] {
            assert_eq!(
                send(&s, "GET", &path, Some(KEY), None).await.status,
                StatusCode::OK
            );
        }
        let room = id.clone();
        let (exports, verdict) = s
            .state
            .store
            .call(move |c| {
                let exports = c
                    .prepare("SELECT actor, detail FROM audit WHERE action = 'record_exported' AND consultation_id = ?1 ORDER BY id")?
                    .query_map([room], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok((exports, audit::verify(c)?))
            })
            .await
            .unwrap();
        assert_eq!(
            exports,
            [
                ("admin".to_owned(), r#"{"format":"json"}"#.to_owned()),
                ("admin".to_owned(), r#"{"format":"fhir"}"#.to_owned()),
                ("admin".to_owned(), r#"{"format":"minutes"}"#.to_owned()),
            ]
        );
        assert!(
            matches!(verdict, audit::Verdict::Intact { .. }),
            "{verdict:?}"
        );
    }

    #[tokio::test]
    async fn refused_without_the_key_and_not_found_for_unknown_ids() {
        let s = server();
        let id = fixture(&s).await;
        let unknown = RoomId::from_random([1u8; 10]).to_string();
        for shape in [
            "/api/v1/consultations/{}/record.json",
            "/api/v1/consultations/{}/record.fhir.json",
            "/consultations/{}/minutes",
        ] {
            let at = |room: &str| shape.replace("{}", room);
            for key in [None, Some("wrong")] {
                let r = send(&s, "GET", &at(&id), key, None).await;
                assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{shape} {key:?}");
                assert_eq!(r.json()["error"]["code"], "unauthorized");
                // The key is checked first: no answer tells whether an id exists.
                assert_eq!(
                    send(&s, "GET", &at(&unknown), key, None).await.status,
                    StatusCode::UNAUTHORIZED
                );
            }
            for room in [unknown.as_str(), "not-a-room"] {
                let r = send(&s, "GET", &at(room), Some(KEY), None).await;
                assert_eq!(r.status, StatusCode::NOT_FOUND, "{shape} {room}");
                assert_eq!(r.json()["error"]["code"], "not_found");
            }
        }
        // Refusals are not exports.
        let n: i64 = s
            .state
            .store
            .call(|c| {
                c.query_row(
                    "SELECT count(*) FROM audit WHERE action = 'record_exported'",
                    [],
                    |r| r.get(0),
                )
            })
            .await
            .unwrap();
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn an_open_consultation_nobody_joined() {
        let s = server();
        let r = send(
            &s,
            "POST",
            "/api/v1/consultations",
            Some(KEY),
            Some(json!({"kind": "visit", "title": "Khám từ xa"})),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let id = r.json()["id"].as_str().unwrap().to_owned();
        let v = send(
            &s,
            "GET",
            &format!("/api/v1/consultations/{id}/record.json"),
            Some(KEY),
            None,
        )
        .await
        .json();
        assert_eq!(v["consultation"]["ended_at"], Value::Null);
        assert_eq!(v["participants"], json!([]));
        assert_eq!(v["period"]["end"], Value::Null);
        let b = send(
            &s,
            "GET",
            &format!("/api/v1/consultations/{id}/record.fhir.json"),
            Some(KEY),
            None,
        )
        .await
        .json();
        check_bundle(&b);
        let enc = &b["entry"][0]["resource"];
        assert_eq!(enc["status"], "in-progress");
        assert!(enc.get("participant").is_none() && enc.get("subject").is_none());
        assert!(enc["period"].get("end").is_none());
        let h = send(
            &s,
            "GET",
            &format!("/consultations/{id}/minutes"),
            Some(KEY),
            None,
        )
        .await
        .body;
        assert!(
            h.contains("Chưa có người tham dự")
                && h.contains("Khám, tư vấn từ xa")
                && h.contains("Đang mở")
        );
    }

    #[test]
    fn calendar_and_vietnam_time() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(T0), "2025-11-25T08:40:00Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(vn_datetime(T0), "25/11/2025 15:40");
        // 17:00 UTC is already the next day in Vietnam.
        assert_eq!(vn_datetime(T0 + 30_000), "26/11/2025 00:00");
        assert_eq!(vn_date(1_767_200_399), "31/12/2025");
        assert_eq!(vn_date(1_767_200_400), "01/01/2026");
    }

    #[test]
    fn placeholders_in_values_are_not_filled() {
        let out = fill(
            "<h1>{{title}}</h1>{{body}}{{unknown}}",
            &[("title", "{{body}}".into()), ("body", "B".into())],
        );
        assert_eq!(out, "<h1>{{body}}</h1>B{{unknown}}");
        assert_eq!(
            html_escape("<a href='x'>\"&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn fhir_ids_are_uuids_fixed_by_the_consultation() {
        let a = fhir_id("abcdefghijklmnop", "encounter");
        assert_eq!(a, fhir_id("abcdefghijklmnop", "encounter"));
        assert_ne!(a, fhir_id("abcdefghijklmnoq", "encounter"));
        assert_ne!(a, fhir_id("abcdefghijklmnop", "device"));
        let parts: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert_eq!(&a[14..15], "8");
        assert!("89ab".contains(&a[19..20]));
    }
}
