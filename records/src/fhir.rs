//! A consultation's record as a FHIR R4 `Bundle` (a `collection`): the
//! Encounter, its patients and practitioners, consents, attachments, the
//! conclusion as a Composition, and the audit entries as AuditEvents.
//! Mappings are documented in `docs/api.md`, "Record exports".

use serde_json::{Value, json};

use crate::dates::rfc3339;
use crate::minutes::{html_escape, kind_vi, same_person};
use crate::record::ConsultationStatus;
use crate::record::{Attendance, AuditRow, Record};

/// Namespaces for tuxa's own identifiers and codes in FHIR. Change them
/// here (e.g. to OIDs assigned by the Department of Health) and nowhere else.
const NS_CONSULTATION: &str = "urn:tuxa:consultation";
const NS_KIND: &str = "urn:tuxa:consultation-kind";
pub const NS_ACTION: &str = "urn:tuxa:audit-action";
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

pub const V3_ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub const V3_PARTICIPATION_TYPE: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const PRACTITIONER_ROLE: &str = "http://terminology.hl7.org/CodeSystem/practitioner-role";
pub const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const AUDIT_ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const SECURITY_SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";

/// A deterministic UUID (RFC 9562 version 8) for one resource of one
/// consultation: the same consultation always gives the same ids.
fn fhir_id(consultation: &str, key: &str) -> String {
    let h = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("tuxa/fhir/{consultation}/{key}").as_bytes(),
    );
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x: String = b.iter().map(|b| format!("{b:02x}")).collect();
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
            let (code, display) = participation_type(&p.role, c.kind.as_str());
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
        "status": if c.status == ConsultationStatus::Ended { "finished" } else { "in-progress" },
        "class": coding(V3_ACT_CODE, "VR", "virtual"),
        "type": [{
            "coding": [{"system": NS_KIND, "code": c.kind}],
            "text": kind_vi(c.kind.as_str()),
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

    // Each recorded track (issue 13), a Media with the file's SHA-256 as an
    // identifier (R4's Attachment.hash is SHA-1): what an inspector checks
    // the file against. Purged tracks stay listed, marked as gone.
    for (rec, files) in &r.recordings {
        for f in files {
            let id = fhir_id(cid, &format!("recording/{}", f.id));
            let kind = crate::recording::kind_as_str(f.kind);
            let end = f
                .duration_ms
                .map(|d| f.started_at.0 + (d + 999) / 1000)
                .or(rec.ended_at.map(|t| t.0));
            let mut media = json!({
                "resourceType": "Media",
                "id": id,
                "status": match f.state {
                    crate::recording::FileState::Complete => "completed",
                    crate::recording::FileState::Open => "in-progress",
                    crate::recording::FileState::Incomplete => "stopped",
                    crate::recording::FileState::Purged => "entered-in-error",
                },
                "type": {"coding": [coding(
                    "http://terminology.hl7.org/CodeSystem/media-type",
                    if kind == "audio" { "audio" } else { "video" },
                    if kind == "audio" { "Audio" } else { "Video" },
                )]},
                "encounter": {"reference": urn(&encounter_id)},
                "createdPeriod": fhir_period(f.started_at.0, end),
                "deviceName": "tuxa",
                "content": {
                    "contentType": match f.codec {
                        crate::recording::Codec::Opus => "audio/webm",
                        crate::recording::Codec::H264 => "video/x-matroska",
                        _ => "video/webm",
                    },
                    "title": format!(
                        "{} — {} ({}){}",
                        f.display_name,
                        kind,
                        crate::recording::source_as_str(f.source),
                        if f.segment > 0 { format!(", segment {}", f.segment + 1) } else { String::new() }
                    ),
                    "creation": rfc3339(f.started_at.0),
                },
                "note": [{"text": format!(
                    "Recording {} (state {}), file state {}, sealed under key {}",
                    rec.id, rec.state.as_str(), f.state.as_str(), f.key_id
                )}],
            });
            if let Some(h) = &f.sha256 {
                media["identifier"] = json!([{"system": NS_SHA256, "value": h}]);
            }
            if let Some(size) = f.size {
                media["content"]["size"] = json!(size);
            }
            if let Some(d) = f.duration_ms.filter(|d| *d > 0) {
                media["duration"] = json!(d as f64 / 1000.0);
            }
            if let Some(n) = f.frames.filter(|n| *n > 0 && kind == "video") {
                media["frames"] = json!(n);
            }
            if let (Some(w), Some(h)) = (f.width.filter(|w| *w > 0), f.height.filter(|h| *h > 0)) {
                media["width"] = json!(w);
                media["height"] = json!(h);
            }
            if let Some(s) = &subject {
                media["subject"] = json!({"reference": s});
            }
            entries.push((urn(&id), media));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
