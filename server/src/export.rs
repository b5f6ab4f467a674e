//! Record exports: one consultation's facts as tuxa JSON, as a FHIR R4
//! `Bundle`, and as a printable minutes page (biên bản hội chẩn / tư vấn từ
//! xa). Shapes and mappings are documented in `docs/api.md`, "Record exports".
//! The record and its renderings are `tuxa_records`' (`record`, `fhir`,
//! `minutes`), reading it is `tuxa_store::record`'s; here are the routes.
//!
//! Every export reads the facts and appends its own `record_exported` audit
//! entry in one job on the store thread, so the export contains the entry
//! that records it, and its `audit_chain` head is that entry's hash: printed
//! on the minutes, it anchors the chain outside the database.
//!
//! Who may export is decided by [`authorize`] alone: `authz::Permission::Export`.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};

use crate::authz::Actor;
use axum::response::{IntoResponse, Response};
use rusqlite::Connection;
use serde_json::json;
use tuxa_protocol::{ErrorCode, RoomId};

use crate::app::AppState;
use crate::audit::{self, Action, Entry};
use crate::clock::unix_now;
use crate::error::ApiError;
use crate::gate::{Access, Routes};

pub use tuxa_records::fhir::record_to_fhir;
pub use tuxa_records::minutes::render_minutes;
pub use tuxa_records::record::{Format, Record, record_to_json};
pub use tuxa_store::record::store_visit_reason;

pub fn routes() -> Routes {
    Routes::new()
        .get(
            "/api/v1/consultations/{id}/record.json",
            Access::STAFF,
            record_json,
        )
        .get(
            "/api/v1/consultations/{id}/record.fhir.json",
            Access::STAFF,
            record_fhir,
        )
        .get("/consultations/{id}/minutes", Access::STAFF, minutes)
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
    actor: &Actor,
    consultation: &str,
) -> Result<Requester, ApiError> {
    crate::app::load_for(state, actor, consultation, crate::authz::Permission::Export).await?;
    Ok(Requester {
        actor: actor.audit_name(),
    })
}

// ---------------------------------------------------------------------------
// The facts.

/// Reads one consultation's facts (`tuxa_store::record::read_record`) with
/// the conference request it holds. `Ok(None)`: no such consultation.
pub fn read_record(
    c: &Connection,
    id: &str,
    exported_at: i64,
    exported_by: &str,
    department: Option<&str>,
) -> rusqlite::Result<Option<Record>> {
    let Some(mut record) = tuxa_store::record::read_record(
        c,
        id,
        exported_at,
        exported_by,
        department,
        tuxa_signaling::QUALITY_WINDOW_SECS,
    )?
    else {
        return Ok(None);
    };
    record.conference = crate::conferences::for_consultation(c, id)?;
    Ok(Some(record))
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
    actor: Actor,
    id: &str,
    format: Format,
) -> Result<Record, ApiError> {
    let who = authorize(state, &actor, id).await?;
    let room = RoomId::parse(id).map_err(|_| not_found())?;
    let now = unix_now() as i64;
    let department = state.department_name.clone();
    state
        .store
        .call(move |c| {
            if tuxa_store::record::consultation(c, room.as_str())?.is_none() {
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
    actor: Actor,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = export(&state, actor, &id, Format::Json).await?;
    Ok(no_store(
        axum::Json(record_to_json(&record)).into_response(),
        "application/json",
    ))
}

async fn record_fhir(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = export(&state, actor, &id, Format::Fhir).await?;
    Ok(no_store(
        axum::Json(record_to_fhir(&record)).into_response(),
        "application/fhir+json; charset=utf-8",
    ))
}

async fn minutes(
    State(state): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = export(&state, actor, &id, Format::Minutes).await?;
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tokio::sync::{mpsc, watch};
    use tower::ServiceExt;

    use serde_json::Value;
    use tuxa_records::fhir::{DCM, NS_ACTION, V3_ACT_CODE, V3_PARTICIPATION_TYPE};

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
        let (state, hub, shutdown) = crate::app::test_state(&dir, KEY);
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
}
