//! Minutes a hospital can file, and a FHIR R4 Bundle a validator accepts
//! (issue 12, item 5), over the real API, WebSocket and SQLite file: a
//! district doctor files a request with the patient's full identity and an
//! attachment, the province schedules it with a chair, the chair, the asker
//! and the patient join, the chair names the asker secretary, the room is
//! ended, and the secretary enters the conclusion with its management plan.
//! The record's three exports then carry every field the TT49/2017 form asks
//! for, and the FHIR Bundle passes the `fhir.resources` R4 models
//! (tests/fhir/validate.py, in the venv scripts/test-all.sh makes).

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use tuxa_protocol::{ClientMsg, RoomId, ServerMsg};
use tuxa_tests::staff::{code, created, sign_in, staff};
use tuxa_tests::{ApiClient, Auth, REPLY_TIMEOUT, TestServer};

const CITIZEN_ID: &str = "001058012345";

fn link_parts(url: &str) -> (RoomId, String) {
    let (path, token) = url.split_once('#').expect("a token after #");
    let room = RoomId::parse(path.rsplit('/').next().expect("room")).expect("room id");
    (room, token.to_owned())
}

async fn as_staff(
    api: &ApiClient,
    cookie: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    api.request(method, path, body.as_ref(), Auth::Cookie(cookie))
        .await
}

/// The Python of the venv with the pinned validator: `TUXA_FHIR_PYTHON`, or
/// `target/pyenv` as scripts/test-all.sh makes it. Missing, the test fails
/// and says how to make it: a validation that silently did not run would
/// pass whatever the Bundle holds.
fn validator_python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("TUXA_FHIR_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"))
                .join("pyenv/bin/python")
        });
    assert!(
        python.exists(),
        "no FHIR validator at {}: run `python3 -m venv target/pyenv && target/pyenv/bin/pip install \
         -r tests/fhir/requirements.txt` (scripts/test-all.sh does), or set TUXA_FHIR_PYTHON",
        python.display()
    );
    python
}

/// Runs tests/fhir/validate.py on `bundle`: (passed, what it printed).
fn validate(bundle: &Value, name: &str) -> (bool, String) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let file = std::env::temp_dir().join(format!("tuxa-fhir-{}-{name}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec_pretty(bundle).expect("json")).expect("write");
    let out = Command::new(validator_python())
        .arg(root.join("tests/fhir/validate.py"))
        .arg(&file)
        .output()
        .expect("the validator runs");
    let _ = std::fs::remove_file(&file);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn resources<'a>(b: &'a Value, ty: &str) -> Vec<&'a Value> {
    b["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == ty)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_conference_gives_filable_minutes_and_a_valid_fhir_bundle() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| {
        c.department_name = Some("Sở Y tế tỉnh An Hòa".into());
    })
    .await?;
    let api = server.api();
    let province = created(
        &api,
        "/api/v1/facilities",
        json!({"name": "Bệnh viện Đa khoa tỉnh An Hòa", "tier": "province"}),
    )
    .await?;
    let district = created(
        &api,
        "/api/v1/facilities",
        json!({"name": "TTYT huyện Tân Lập", "tier": "district", "parent_id": province["id"]}),
    )
    .await?;
    let chair = staff(
        &api,
        &province,
        "bs.chutri",
        "Lê Hoàng Minh",
        "doctor",
        Some("000125/AH-CCHN"),
    )
    .await?;
    let coord = staff(
        &api,
        &province,
        "dp.tinh",
        "Phạm Thu Hà",
        "coordinator",
        None,
    )
    .await?;
    let asker = staff(
        &api,
        &district,
        "bs.huyen",
        "Nguyễn Văn An",
        "doctor",
        Some("000733/AH-CCHN"),
    )
    .await?;
    let c_chair = sign_in(&api, &chair).await?;
    let c_coord = sign_in(&api, &coord).await?;
    let c_asker = sign_in(&api, &asker).await?;

    let request = |citizen_id: &str| {
        json!({"to_facility_id": province["id"], "specialty": "Nội khoa", "urgency": "urgent",
               "patient": {"name": "Trần Thị B", "birth_year": 1958, "sex": "female",
                           "address": "Thôn 3, xã Tân Tiến, huyện Tân Lập",
                           "record_number": "TL-2026-00417", "citizen_id": citizen_id},
               "summary": "Khó thở tăng dần 3 ngày.\nSpO2 89 %.", "question": "Có cần chuyển tuyến?",
               "consent": {"text_version": "vi-2026-11", "remote_examination": true,
                           "third_parties": true, "recording": false}})
    };
    // A citizen ID is 12 digits: anything else is refused and nothing is filed.
    for bad in [
        "00105801234",
        "0010580123456",
        "00105801234X",
        "001 58012345",
    ] {
        let (s, v) = as_staff(
            &api,
            &c_asker,
            "POST",
            "/api/v1/conferences",
            Some(request(bad)),
        )
        .await?;
        assert_eq!((s, code(&v)), (400, "bad_request"), "{bad}: {v}");
    }
    let (_, list) = as_staff(&api, &c_asker, "GET", "/api/v1/conferences", None).await?;
    assert_eq!(
        list["conferences"],
        json!([]),
        "a refused request left nothing"
    );
    let (s, req) = as_staff(
        &api,
        &c_asker,
        "POST",
        "/api/v1/conferences",
        Some(request(CITIZEN_ID)),
    )
    .await?;
    assert_eq!(s, 201, "{req}");
    assert_eq!(
        req["patient"],
        json!({"name": "Trần Thị B", "birth_year": 1958, "sex": "female",
               "address": "Thôn 3, xã Tân Tiến, huyện Tân Lập",
               "record_number": "TL-2026-00417", "citizen_id": CITIZEN_ID})
    );
    let base = format!("/api/v1/conferences/{}", req["id"]);
    let pdf = b"%PDF-1.4\n% phim X quang nguc\n";
    let r = api
        .request_typed(
            "POST",
            &format!("{base}/attachments?name=xquang.pdf"),
            Some(pdf),
            "application/pdf",
            Auth::Cookie(&c_asker),
        )
        .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    let sha = r.json["sha256"].as_str().expect("sha256").to_owned();
    assert_eq!(sha.len(), 64);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let (s, v) = as_staff(
        &api,
        &c_coord,
        "POST",
        &format!("{base}/schedule"),
        Some(json!({"starts_at": now, "duration_min": 60, "chair_staff_id": chair["staff"]["id"]})),
    )
    .await?;
    assert_eq!(s, 200, "{v}");
    let (_, chair_link) = as_staff(&api, &c_chair, "POST", &format!("{base}/join"), None).await?;
    let (_, asker_link) = as_staff(&api, &c_asker, "POST", &format!("{base}/join"), None).await?;
    let (_, patient_link) = as_staff(
        &api,
        &c_chair,
        "POST",
        &format!("{base}/guest-link"),
        Some(json!({"role": "patient", "name": "Trần Thị B"})),
    )
    .await?;

    let (room, chair_token) = link_parts(chair_link["url"].as_str().expect("url"));
    let mut c = server.signal().await?;
    c.hello().await?;
    c.join(&room, &chair_token).await?;
    let (_, asker_token) = link_parts(asker_link["url"].as_str().expect("url"));
    let mut a = server.signal().await?;
    a.hello().await?;
    let aj = a.join(&room, &asker_token).await?;
    let (_, patient_token) = link_parts(patient_link["url"].as_str().expect("url"));
    let mut p = server.signal().await?;
    p.hello().await?;
    p.consent().await?;
    p.send(&ClientMsg::Join {
        room: room.clone(),
        token: patient_token,
    })
    .await?;
    let pid = p
        .recv_until(REPLY_TIMEOUT, "waiting", |m| match m {
            ServerMsg::Waiting { you, .. } => Some(you.id),
            _ => None,
        })
        .await?;
    c.send(&ClientMsg::Admit {
        participant_id: pid,
    })
    .await?;
    p.recv_until(REPLY_TIMEOUT, "admitted", |m| {
        matches!(m, ServerMsg::Joined { .. }).then_some(())
    })
    .await?;
    c.send(&ClientMsg::SetSecretary {
        participant_id: Some(aj.you.id),
    })
    .await?;
    a.recv_until(REPLY_TIMEOUT, "secretary", |m| match m {
        ServerMsg::RoomState {
            secretary: Some(s), ..
        } if *s == aj.you.id => Some(()),
        _ => None,
    })
    .await?;

    let (s, v) = as_staff(
        &api,
        &c_chair,
        "POST",
        &format!("/api/v1/consultations/{room}/end"),
        None,
    )
    .await?;
    assert_eq!(s, 200, "{v}");
    let concl = json!({"text": "Viêm phổi nặng, suy hô hấp độ II.",
                       "management_plan": "Thở oxy 3 l/phút.\nChuyển tuyến tỉnh trong ngày."});
    let mut held = None;
    for _ in 0..50 {
        let (s, v) = as_staff(
            &api,
            &c_asker,
            "POST",
            &format!("{base}/conclusion"),
            Some(concl.clone()),
        )
        .await?;
        assert_eq!(s, 200, "{v}");
        if v["status"] == "held" {
            held = Some(v);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let held = held.expect("held once ended");
    assert_eq!(
        held["conclusion"]["management_plan"],
        concl["management_plan"]
    );
    assert_eq!(held["secretary"]["name"], "Nguyễn Văn An");

    // The ended records list has it, for those who see it; a bad status is refused.
    let (s, v) = as_staff(
        &api,
        &c_asker,
        "GET",
        "/api/v1/consultations?status=ended",
        None,
    )
    .await?;
    assert_eq!(s, 200, "{v}");
    let listed: Vec<&str> = v["consultations"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|k| k["id"].as_str())
        .collect();
    assert_eq!(listed, [room.as_str()], "{v}");
    let (s, v) = as_staff(
        &api,
        &c_asker,
        "GET",
        "/api/v1/consultations?status=gone",
        None,
    )
    .await?;
    assert_eq!((s, code(&v)), (400, "bad_request"), "{v}");

    // record.json
    let (s, rec) = as_staff(
        &api,
        &c_asker,
        "GET",
        &format!("/api/v1/consultations/{room}/record.json"),
        None,
    )
    .await?;
    assert_eq!(s, 200, "{rec}");
    assert_eq!(rec["department"], "Sở Y tế tỉnh An Hòa");
    assert_eq!(rec["facility"]["name"], "Bệnh viện Đa khoa tỉnh An Hòa");
    assert_eq!(rec["conference"]["patient"]["citizen_id"], CITIZEN_ID);
    assert_eq!(
        rec["conference"]["conclusion"]["management_plan"],
        concl["management_plan"]
    );
    assert_eq!(rec["consultation"]["status"], "ended");

    // The minutes.
    let r = api
        .request_raw(
            "GET",
            &format!("/consultations/{room}/minutes"),
            None,
            Auth::Cookie(&c_chair),
        )
        .await?;
    assert_eq!(r.status, 200);
    let h = &r.body;
    let ended = rec["consultation"]["ended_at"].as_i64().expect("ended_at");
    for want in [
        "SỞ Y TẾ TỈNH AN HÒA".to_owned(),
        "BỆNH VIỆN ĐA KHOA TỈNH AN HÒA".to_owned(),
        "Trần Thị B".to_owned(),
        "Giới tính:</span> Nữ".to_owned(),
        "Năm sinh:</span> 1958".to_owned(),
        "Thôn 3, xã Tân Tiến, huyện Tân Lập".to_owned(),
        format!("Số định danh cá nhân (CCCD):</span> {CITIZEN_ID}"),
        "TL-2026-00417".to_owned(),
        "Tình trạng:</span> Đã kết thúc".to_owned(),
        format!("Kết thúc lúc:</span> {}", vn_datetime(ended)),
        "Thở oxy 3 l/phút.".to_owned(),
        "Chuyển tuyến tỉnh trong ngày.".to_owned(),
        "xquang.pdf".to_owned(),
        sha.clone(),
        "<b class=\"mark\">Chủ trì</b>".to_owned(),
        "<b class=\"mark\">Thư ký</b>".to_owned(),
        "<div class=\"name\">Lê Hoàng Minh</div><div class=\"lic\">Số CCHN: 000125/AH-CCHN</div>"
            .to_owned(),
        "<div class=\"name\">Nguyễn Văn An</div><div class=\"lic\">Số CCHN: 000733/AH-CCHN</div>"
            .to_owned(),
    ] {
        assert!(h.contains(&want), "the minutes lack {want:?}:\n{h}");
    }
    assert!(
        h.contains("<span class=\"dept\">SỞ Y TẾ TỈNH AN HÒA</span><br><b class=\"facility\">BỆNH VIỆN ĐA KHOA TỈNH AN HÒA</b>"),
        "the header names both, with no blank to fill in:\n{h}"
    );
    // The chair's row carries the chair's mark, the secretary's the secretary's.
    let row = |name: &str| {
        h.lines()
            .find(|l| l.contains(&format!("<td>BS {name}</td>")))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        row("Lê Hoàng Minh").contains("Chủ trì") && !row("Lê Hoàng Minh").contains("Thư ký"),
        "{h}"
    );
    assert!(
        row("Nguyễn Văn An").contains("Thư ký") && !row("Nguyễn Văn An").contains("Chủ trì"),
        "{h}"
    );

    // FHIR: what item 5 asks for, then a real R4 validator.
    let (s, b) = as_staff(
        &api,
        &c_asker,
        "GET",
        &format!("/api/v1/consultations/{room}/record.fhir.json"),
        None,
    )
    .await?;
    assert_eq!(s, 200, "{b}");
    let patient = resources(&b, "Patient")[0];
    assert_eq!(patient["gender"], "female");
    assert_eq!(patient["birthDate"], "1958");
    assert!(
        patient["identifier"]
            .as_array()
            .expect("ids")
            .iter()
            .any(|i| i["value"] == CITIZEN_ID)
    );
    // Three purposes answered by the requester, three by the patient in the room.
    let consents = resources(&b, "Consent");
    assert_eq!(consents.len(), 6, "{consents:?}");
    let permits = consents
        .iter()
        .filter(|c| c["provision"]["type"] == "permit")
        .count();
    assert_eq!(permits, 3, "exam + third parties (request), exam (room)");
    let comp = resources(&b, "Composition");
    assert_eq!(comp.len(), 1);
    let sections = comp[0]["section"].as_array().expect("sections");
    assert_eq!(sections[1]["title"], "Hướng xử trí");
    assert!(
        sections[1]["text"]["div"]
            .as_str()
            .expect("div")
            .contains("Thở oxy 3 l/phút.")
    );
    let docs = resources(&b, "DocumentReference");
    assert_eq!(docs.len(), 1);
    assert_eq!(
        docs[0]["identifier"][0],
        json!({"system": "urn:tuxa:sha256", "value": sha})
    );

    let (ok, out) = validate(&b, "held");
    assert!(ok, "the Bundle is not valid FHIR R4:\n{out}");
    // The validator does catch a broken Bundle: a Consent without its
    // required scope, and a gender outside its required value set.
    let mut broken = b.clone();
    for e in broken["entry"].as_array_mut().expect("entries") {
        match e["resource"]["resourceType"].as_str() {
            Some("Consent") => {
                e["resource"].as_object_mut().expect("obj").remove("scope");
            }
            Some("Patient") => e["resource"]["gender"] = json!("nữ"),
            _ => {}
        }
    }
    let (ok, out) = validate(&broken, "broken");
    assert!(!ok, "a broken Bundle passed:\n{out}");
    assert!(out.contains("scope") && out.contains("gender"), "{out}");
    server.shutdown().await
}

/// `dd/mm/yyyy HH:MM` in Vietnam time, as the minutes print it.
fn vn_datetime(unix: i64) -> String {
    let t = unix + 7 * 3600;
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // H. Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{d:02}/{m:02}/{y:04} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// A visit from an on-call queue: its minutes' "Tóm tắt" is the reason the
/// patient gave when queueing, and the header names the queue's facility.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_visit_minutes_carry_the_stated_reason() -> anyhow::Result<()> {
    use tuxa_tests::SignalClient;

    let server = TestServer::start().await?;
    let api = server.api();
    let f = created(
        &api,
        "/api/v1/facilities",
        json!({"name": "Bệnh viện Đa khoa tỉnh An Hòa", "tier": "province"}),
    )
    .await?;
    let doctor = staff(
        &api,
        &f,
        "bs.truc",
        "Lê Hoàng Minh",
        "doctor",
        Some("000125/AH-CCHN"),
    )
    .await?;
    let q = created(
        &api,
        "/api/v1/queues",
        json!({"facility_id": f["id"], "specialty": "Nội khoa"}),
    )
    .await?;
    let queue = q["id"].as_u64().expect("queue id");
    created(
        &api,
        &format!("/api/v1/queues/{queue}/roster"),
        json!({"staff_id": doctor["staff"]["id"], "start": "00:00", "end": "24:00"}),
    )
    .await?;
    let cookie = sign_in(&api, &doctor).await?;
    let mut d = SignalClient::connect_with_cookie(server.http_addr, Some(&cookie)).await?;
    d.hello().await?;
    d.send(&ClientMsg::Available {
        queues: vec![queue],
    })
    .await?;
    d.recv_until(REPLY_TIMEOUT, "available", |m| {
        matches!(
            m,
            ServerMsg::DoctorStatus {
                available: true,
                ..
            }
        )
        .then_some(())
    })
    .await?;
    let mut p = server.signal().await?;
    p.hello().await?;
    p.consent().await?;
    let reason = "Sốt cao 3 ngày, <b>ho</b> nhiều về đêm";
    p.send(&ClientMsg::QueueJoin {
        queue,
        name: "Nguyễn Văn A".into(),
        phone: "0912345678".into(),
        reason: reason.into(),
    })
    .await?;
    let ticket = d
        .recv_until(REPLY_TIMEOUT, "an offer", |m| match m {
            ServerMsg::PatientOffer { ticket, .. } => Some(ticket.clone()),
            _ => None,
        })
        .await?;
    d.send(&ClientMsg::AcceptPatient { ticket }).await?;
    let url = d
        .recv_until(REPLY_TIMEOUT, "call_ready", |m| match m {
            ServerMsg::CallReady { url, .. } => Some(url.clone()),
            _ => None,
        })
        .await?;
    let (room, _) = link_parts(&url);

    let minutes = format!("/consultations/{room}/minutes");
    let r = api
        .request_raw("GET", &minutes, None, Auth::Cookie(&cookie))
        .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains("<b class=\"facility\">BỆNH VIỆN ĐA KHOA TỈNH AN HÒA</b>"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("SỞ Y TẾ ………………"),
        "no Department configured: a blank to fill in"
    );
    assert!(
        r.body
            .contains("<p>Sốt cao 3 ngày, &lt;b&gt;ho&lt;/b&gt; nhiều về đêm</p>"),
        "the stated reason, escaped, is the summary:\n{}",
        r.body
    );
    let (s, rec) = api
        .request(
            "GET",
            &format!("/api/v1/consultations/{room}/record.json"),
            None,
            Auth::Cookie(&cookie),
        )
        .await?;
    assert_eq!(s, 200, "{rec}");
    assert_eq!(rec["visit"]["reason"], reason);
    assert_eq!(rec["department"], Value::Null);
    let (s, b) = api
        .request(
            "GET",
            &format!("/api/v1/consultations/{room}/record.fhir.json"),
            None,
            Auth::Cookie(&cookie),
        )
        .await?;
    assert_eq!(s, 200, "{b}");
    let (ok, out) = validate(&b, "visit");
    assert!(ok, "the visit's Bundle is not valid FHIR R4:\n{out}");
    server.shutdown().await
}
