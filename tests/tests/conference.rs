//! A case conference end to end, over the real API and WebSocket: a district
//! doctor asks the provincial hospital for help (with the patient's consent
//! and an attachment), the provincial coordinator schedules it with a
//! provincial doctor in the chair, both join from their sign-ins, the chair
//! admits the patient from the lobby and names the secretary, the secretary
//! enters the conclusion, and the record carries it — while staff of
//! another district see none of it, and roles that may not act are refused.

use serde_json::{Value, json};
use tuxa_protocol::{ClientMsg, ErrorCode, RoomId, ServerMsg};
use tuxa_tests::staff::{code, created, sign_in, staff};
use tuxa_tests::{ApiClient, Auth, REPLY_TIMEOUT, TestServer};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_district_asks_the_province_and_the_conference_is_held_and_recorded() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    let api = server.api();

    let province = created(
        &api,
        "/api/v1/facilities",
        json!({"name": "BVĐK tỉnh An Hòa", "tier": "province"}),
    )
    .await?;
    let district = created(
        &api,
        "/api/v1/facilities",
        json!({"name": "TTYT huyện Tân Lập", "tier": "district", "parent_id": province["id"]}),
    )
    .await?;
    let other = created(
        &api,
        "/api/v1/facilities",
        json!({"name": "TTYT huyện Sơn Hà", "tier": "district", "parent_id": province["id"]}),
    )
    .await?;
    let chair = staff(
        &api,
        &province,
        "bs.tinh",
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
    let outsider = staff(
        &api,
        &other,
        "dd.sonha",
        "Đỗ Thị Hoa",
        "nurse",
        Some("004410/AH-CCHN"),
    )
    .await?;
    let queue = created(
        &api,
        "/api/v1/queues",
        json!({"facility_id": district["id"], "specialty": "Nội khoa"}),
    )
    .await?;
    let c_chair = sign_in(&api, &chair).await?;
    let c_coord = sign_in(&api, &coord).await?;
    let c_asker = sign_in(&api, &asker).await?;
    let c_out = sign_in(&api, &outsider).await?;

    // Scope: a nurse of another district sees neither the queue nor its roster.
    let (s, v) = as_staff(&api, &c_out, "GET", "/api/v1/queues", None).await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["queues"],
        json!([]),
        "another facility's queue is not listed"
    );
    let roster = format!("/api/v1/queues/{}/roster", queue["id"]);
    let (s, v) = as_staff(&api, &c_out, "GET", &roster, None).await?;
    assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");
    // Role: a doctor may not list staff or create facilities; a coordinator lists staff.
    let (s, v) = as_staff(&api, &c_asker, "GET", "/api/v1/staff", None).await?;
    assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");
    let (s, v) = as_staff(
        &api,
        &c_asker,
        "POST",
        "/api/v1/facilities",
        Some(json!({"name": "X", "tier": "province"})),
    )
    .await?;
    assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");
    let (s, v) = as_staff(&api, &c_coord, "GET", "/api/v1/staff", None).await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["staff"].as_array().map(Vec::len), Some(4));
    // Any staff member may list where a conference can be asked.
    let (s, v) = as_staff(&api, &c_asker, "GET", "/api/v1/facilities?upper=1", None).await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["facilities"].as_array().map(Vec::len), Some(1), "{v}");

    // The request: consent to remote examination is required, and it goes upward.
    let request = |to: &Value, exam: bool| {
        json!({"to_facility_id": to["id"], "specialty": "Nội khoa", "urgency": "urgent",
               "patient": {"name": "Trần Thị B", "birth_year": 1958, "sex": "female"},
               "summary": "Khó thở tăng dần 3 ngày.\nSpO2 89 %.", "question": "Có cần chuyển tuyến?",
               "consent": {"text_version": "vi-2026-11", "remote_examination": exam,
                           "third_parties": true, "recording": false}})
    };
    let (s, v) = as_staff(
        &api,
        &c_asker,
        "POST",
        "/api/v1/conferences",
        Some(request(&province, false)),
    )
    .await?;
    assert_eq!((s, code(&v)), (400, "consent_required"), "{v}");
    let (s, v) = as_staff(
        &api,
        &c_asker,
        "POST",
        "/api/v1/conferences",
        Some(request(&other, true)),
    )
    .await?;
    assert_eq!((s, code(&v)), (400, "bad_request"), "{v}");
    let (s, v) = api
        .admin(
            "POST",
            "/api/v1/conferences",
            Some(&request(&province, true)),
        )
        .await?;
    assert_eq!(
        (s, code(&v)),
        (403, "forbidden"),
        "a request has a person behind it: {v}"
    );
    let (s, req) = as_staff(
        &api,
        &c_asker,
        "POST",
        "/api/v1/conferences",
        Some(request(&province, true)),
    )
    .await?;
    assert_eq!(s, 201, "{req}");
    assert_eq!(req["status"], "requested");
    assert_eq!(req["requested_by"]["licence_number"], "000733/AH-CCHN");
    let id = req["id"].as_i64().expect("id");
    let base = format!("/api/v1/conferences/{id}");

    // An attachment: the accepted types only; read back intact.
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
    let aid = r.json["id"].as_i64().expect("attachment id");
    let r = api
        .request_typed(
            "POST",
            &format!("{base}/attachments?name=a.exe"),
            Some(b"MZ"),
            "application/x-msdownload",
            Auth::Cookie(&c_asker),
        )
        .await?;
    assert_eq!((r.status, r.error_code()), (400, Some("bad_request")));
    let big = vec![b'%'; 10 * 1024 * 1024 + 1];
    let r = api
        .request_typed(
            "POST",
            &format!("{base}/attachments?name=big.pdf"),
            Some(&big),
            "application/pdf",
            Auth::Cookie(&c_asker),
        )
        .await?;
    assert_eq!(
        (r.status, r.error_code()),
        (413, Some("payload_too_large")),
        "over 10 MiB, in JSON"
    );
    let r = api
        .request_raw(
            "GET",
            &format!("{base}/attachments/{aid}"),
            None,
            Auth::Cookie(&c_chair),
        )
        .await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_bytes(), pdf);
    assert!(
        r.header("content-disposition")
            .is_some_and(|d| d.contains("xquang.pdf"))
    );

    // The other district sees nothing of it.
    let (s, v) = as_staff(&api, &c_out, "GET", &base, None).await?;
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");
    let (s, v) = as_staff(&api, &c_out, "GET", "/api/v1/conferences", None).await?;
    assert_eq!((s, v["conferences"].clone()), (200, json!([])));

    // Scheduling: not by the asker; by the province's coordinator.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let plan =
        json!({"starts_at": now, "duration_min": 60, "chair_staff_id": chair["staff"]["id"]});
    let (s, v) = as_staff(
        &api,
        &c_asker,
        "POST",
        &format!("{base}/schedule"),
        Some(plan.clone()),
    )
    .await?;
    assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");
    let (s, v) = as_staff(
        &api,
        &c_coord,
        "POST",
        &format!("{base}/schedule"),
        Some(plan.clone()),
    )
    .await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "scheduled");
    assert_eq!(v["schedule"]["invitees"].as_array().map(Vec::len), Some(2));
    let (s, v) = as_staff(
        &api,
        &c_coord,
        "POST",
        &format!("{base}/schedule"),
        Some(plan),
    )
    .await?;
    assert_eq!((s, code(&v)), (409, "conflict"), "scheduled only once: {v}");

    // Links: each invitee their own; the chair's carries the chair.
    let (s, v) = as_staff(&api, &c_out, "POST", &format!("{base}/join"), None).await?;
    assert_eq!(s, 404, "{v}");
    let (s, chair_link) = as_staff(&api, &c_chair, "POST", &format!("{base}/join"), None).await?;
    assert_eq!(s, 200, "{chair_link}");
    let (s, asker_link) = as_staff(&api, &c_asker, "POST", &format!("{base}/join"), None).await?;
    assert_eq!(s, 200, "{asker_link}");
    let (s, v) = as_staff(
        &api,
        &c_asker,
        "POST",
        &format!("{base}/guest-link"),
        Some(json!({"role": "patient", "name": "Trần Thị B"})),
    )
    .await?;
    assert_eq!(
        (s, code(&v)),
        (403, "forbidden"),
        "guest links are the chair's: {v}"
    );
    let (s, patient_link) = as_staff(
        &api,
        &c_chair,
        "POST",
        &format!("{base}/guest-link"),
        Some(json!({"role": "patient", "name": "Trần Thị B"})),
    )
    .await?;
    assert_eq!(s, 201, "{patient_link}");

    let (room, chair_token) = link_parts(chair_link["url"].as_str().expect("url"));
    let mut c = server.signal().await?;
    c.hello().await?;
    let cj = c.join(&room, &chair_token).await?;
    assert_eq!(cj.you.licence_number.as_deref(), Some("000125/AH-CCHN"));
    let (_, asker_token) = link_parts(asker_link["url"].as_str().expect("url"));
    let mut a = server.signal().await?;
    a.hello().await?;
    let aj = a.join(&room, &asker_token).await?;
    assert!(
        aj.participants
            .iter()
            .any(|p| p.licence_number.as_deref() == Some("000125/AH-CCHN"))
    );
    a.recv_until(REPLY_TIMEOUT, "room state", |m| match m {
        ServerMsg::RoomState {
            chair: Some(ch), ..
        } if *ch == cj.you.id => Some(()),
        _ => None,
    })
    .await?;

    // The patient waits; the district doctor may not admit while the chair is there.
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
    a.send(&ClientMsg::Admit {
        participant_id: pid,
    })
    .await?;
    a.recv_until(REPLY_TIMEOUT, "forbidden", |m| match m {
        ServerMsg::Error {
            code: ErrorCode::Forbidden,
            ..
        } => Some(()),
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

    // The chair names the district doctor secretary; a chat line is kept.
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
    a.send(&ClientMsg::Chat {
        text: "SpO2 hiện 91 %".into(),
    })
    .await?;
    c.recv_until(REPLY_TIMEOUT, "chat", |m| match m {
        ServerMsg::Chat { text, .. } if text == "SpO2 hiện 91 %" => Some(()),
        _ => None,
    })
    .await?;
    // The conclusion is not the patient's or an outsider's to write.
    let concl = json!({"text": "Viêm phổi nặng. Chuyển tuyến tỉnh."});
    let (s, v) = as_staff(
        &api,
        &c_coord,
        "POST",
        &format!("{base}/conclusion"),
        Some(concl.clone()),
    )
    .await?;
    assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");

    // The coordinator ends it; the secretary enters the conclusion afterwards.
    let (s, v) = as_staff(
        &api,
        &c_coord,
        "POST",
        &format!("/api/v1/consultations/{room}/end"),
        None,
    )
    .await?;
    assert_eq!(s, 200, "{v}");
    let mut conclusion_saved = None;
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
            conclusion_saved = Some(v);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let v = conclusion_saved.expect("the request shows as held once ended");
    assert_eq!(
        v["conclusion"]["text"],
        "Viêm phổi nặng. Chuyển tuyến tỉnh."
    );
    assert_eq!(v["secretary_staff_id"], asker["staff"]["id"]);

    // The record: the asker's side may export it; it carries the request,
    // the conclusion, the chat and the licence numbers.
    let (s, rec) = as_staff(
        &api,
        &c_asker,
        "GET",
        &format!("/api/v1/consultations/{room}/record.json"),
        None,
    )
    .await?;
    assert_eq!(s, 200, "{rec}");
    assert_eq!(
        rec["conference"]["conclusion"]["text"],
        "Viêm phổi nặng. Chuyển tuyến tỉnh."
    );
    assert_eq!(rec["chat"][0]["text"], "SpO2 hiện 91 %");
    assert!(
        rec["participants"]
            .as_array()
            .expect("participants")
            .iter()
            .any(|p| p["licence_number"] == "000733/AH-CCHN")
    );
    let (s, v) = as_staff(
        &api,
        &c_out,
        "GET",
        &format!("/api/v1/consultations/{room}/record.json"),
        None,
    )
    .await?;
    assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");
    let r = api
        .request_raw(
            "GET",
            &format!("/consultations/{room}/minutes"),
            None,
            Auth::Cookie(&c_chair),
        )
        .await?;
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("Chuyển tuyến tỉnh."),
        "the minutes carry the conclusion"
    );
    assert!(r.body.contains("Có cần chuyển tuyến?"), "and the question");
    server.shutdown().await
}

// ---------------------------------------------------------------------------
// Who may chair, end and come back (security review, issue 11, items 1–3).

/// Everything a conference needs: facilities, staff signed in, a request
/// filed by the district and scheduled by the province's coordinator.
struct Scheduled {
    /// The request's API path (`/api/v1/conferences/{id}`).
    base: String,
    room: RoomId,
    c_chair: String,
    c_coord: String,
    c_asker: String,
    /// A doctor of another district, invited.
    c_invitee: String,
    /// A doctor of the province, not invited.
    c_colleague: String,
    /// A nurse of another district, not invited.
    c_outsider: String,
}

async fn scheduled(api: &ApiClient) -> anyhow::Result<Scheduled> {
    let province = created(
        api,
        "/api/v1/facilities",
        json!({"name": "BVĐK tỉnh Bình An", "tier": "province"}),
    )
    .await?;
    let district = created(
        api,
        "/api/v1/facilities",
        json!({"name": "TTYT huyện Đồng Xuân", "tier": "district", "parent_id": province["id"]}),
    )
    .await?;
    let other = created(
        api,
        "/api/v1/facilities",
        json!({"name": "TTYT huyện Phú Hòa", "tier": "district", "parent_id": province["id"]}),
    )
    .await?;
    let chair = staff(
        api,
        &province,
        "bs.chutoa",
        "Lê Chủ Tọa",
        "doctor",
        Some("000901/BA-CCHN"),
    )
    .await?;
    let coord = staff(
        api,
        &province,
        "dp.binhan",
        "Phạm Điều Phối",
        "coordinator",
        None,
    )
    .await?;
    let asker = staff(
        api,
        &district,
        "bs.dongxuan",
        "Nguyễn Đồng Xuân",
        "doctor",
        Some("000902/BA-CCHN"),
    )
    .await?;
    let invitee = staff(
        api,
        &other,
        "bs.phuhoa",
        "Trần Phú Hòa",
        "doctor",
        Some("000903/BA-CCHN"),
    )
    .await?;
    let colleague = staff(
        api,
        &province,
        "bs.dongnghiep",
        "Võ Đồng Nghiệp",
        "doctor",
        Some("000904/BA-CCHN"),
    )
    .await?;
    let outsider = staff(
        api,
        &other,
        "dd.phuhoa",
        "Đỗ Người Ngoài",
        "nurse",
        Some("000905/BA-CCHN"),
    )
    .await?;
    let c_asker = sign_in(api, &asker).await?;
    let c_coord = sign_in(api, &coord).await?;
    let (s, req) = as_staff(
        api,
        &c_asker,
        "POST",
        "/api/v1/conferences",
        Some(json!({"to_facility_id": province["id"], "specialty": "Tim mạch", "urgency": "routine",
               "patient": {"name": "Hồ Thị C"}, "summary": "Đau ngực.", "question": "Có cần can thiệp?",
               "consent": {"text_version": "vi-2026-11", "remote_examination": true,
                           "third_parties": true, "recording": false}})),
    )
    .await?;
    anyhow::ensure!(s == 201, "request: {s} {req}");
    let base = format!("/api/v1/conferences/{}", req["id"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let (s, v) = as_staff(
        api,
        &c_coord,
        "POST",
        &format!("{base}/schedule"),
        Some(
            json!({"starts_at": now, "duration_min": 60, "chair_staff_id": chair["staff"]["id"],
                    "invite_staff_ids": [invitee["staff"]["id"]]}),
        ),
    )
    .await?;
    anyhow::ensure!(s == 200, "schedule: {s} {v}");
    let room = RoomId::parse(
        v["schedule"]["consultation_id"]
            .as_str()
            .unwrap_or_default(),
    )?;
    Ok(Scheduled {
        base,
        room,
        c_chair: sign_in(api, &chair).await?,
        c_coord,
        c_asker,
        c_invitee: sign_in(api, &invitee).await?,
        c_colleague: sign_in(api, &colleague).await?,
        c_outsider: sign_in(api, &outsider).await?,
    })
}

/// A staff member's own link into the conference (`POST …/join`).
async fn own_link(api: &ApiClient, s: &Scheduled, cookie: &str) -> anyhow::Result<String> {
    let (status, v) = as_staff(api, cookie, "POST", &format!("{}/join", s.base), None).await?;
    anyhow::ensure!(status == 200, "join: {status} {v}");
    Ok(link_parts(v["url"].as_str().unwrap_or_default()).1)
}

/// A new session that says hello, consents and sends `join`; returns it
/// and the first answer.
async fn try_join(
    addr: std::net::SocketAddr,
    room: &RoomId,
    token: &str,
) -> anyhow::Result<(tuxa_tests::SignalClient, ServerMsg)> {
    let mut c = tuxa_tests::SignalClient::connect(addr).await?;
    c.hello().await?;
    c.consent().await?;
    c.send(&ClientMsg::Join {
        room: room.clone(),
        token: token.to_owned(),
    })
    .await?;
    let first = c.recv(REPLY_TIMEOUT).await?;
    Ok((c, first))
}

fn is_error(m: &ServerMsg, want: ErrorCode) -> bool {
    matches!(m, ServerMsg::Error { code, .. } if *code == want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_named_chair_chairs_and_seeing_a_conference_is_not_managing_it()
-> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let api = server.api();
    let s = scheduled(&api).await?;
    let links = format!("/api/v1/consultations/{}/links", s.room);
    let end = format!("/api/v1/consultations/{}/end", s.room);

    // Nobody mints a chair's link through the links endpoint: not the
    // district that asked, not an invitee, not a colleague of the chair's,
    // not even the admin key.
    let chair_link = json!({"role": "doctor", "name": "BS. Tự phong", "chair": true});
    for (who, cookie) in [
        ("the requesting doctor", &s.c_asker),
        ("an invitee", &s.c_invitee),
        ("a colleague of the chair", &s.c_colleague),
        ("the coordinator", &s.c_coord),
    ] {
        let (st, v) = as_staff(&api, cookie, "POST", &links, Some(chair_link.clone())).await?;
        assert_eq!((st, code(&v)), (400, "bad_request"), "{who}: {v}");
        assert!(
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .is_some_and(|m| m.contains("/join")),
            "{who}: the refusal says where the chair's link comes from: {v}"
        );
    }
    let (st, v) = api.admin("POST", &links, Some(&chair_link)).await?;
    assert_eq!((st, code(&v)), (400, "bad_request"), "the admin key: {v}");

    // Plain links into a conference: its scheduler's side only.
    let doctor_link = json!({"role": "doctor", "name": "BS. Khách"});
    for (who, cookie) in [
        ("the requesting doctor", &s.c_asker),
        ("an invitee", &s.c_invitee),
        ("a colleague of the chair", &s.c_colleague),
        ("the chair", &s.c_chair),
    ] {
        let (st, v) = as_staff(&api, cookie, "POST", &links, Some(doctor_link.clone())).await?;
        assert_eq!((st, code(&v)), (403, "forbidden"), "{who}: {v}");
    }
    let (st, v) = as_staff(
        &api,
        &s.c_outsider,
        "POST",
        &links,
        Some(doctor_link.clone()),
    )
    .await?;
    assert_eq!((st, code(&v)), (403, "forbidden"), "an outsider: {v}");
    let (st, v) = as_staff(&api, &s.c_coord, "POST", &links, Some(doctor_link)).await?;
    assert_eq!(st, 201, "the coordinator: {v}");

    // In the call, the chair is the one the scheduler named, whoever enters
    // first: a colleague's link (minted for them by the coordinator) does
    // not chair, the chair's own does.
    let (_, guest_doctor) = link_parts(v["url"].as_str().expect("url"));
    let mut first = server.signal().await?;
    first.hello().await?;
    first.join(&s.room, &guest_doctor).await?;
    let mut c = server.signal().await?;
    c.hello().await?;
    let cj = c
        .join(&s.room, &own_link(&api, &s, &s.c_chair).await?)
        .await?;
    first
        .recv_until(REPLY_TIMEOUT, "the chair announced", |m| match m {
            ServerMsg::RoomState {
                chair: Some(ch), ..
            } => Some(*ch),
            _ => None,
        })
        .await
        .map(|ch| assert_eq!(ch, cj.you.id, "the named chair chairs"))?;
    first.send(&ClientMsg::LockRoom { locked: true }).await?;
    assert!(is_error(
        &first.recv(REPLY_TIMEOUT).await?,
        ErrorCode::Forbidden
    ));

    // Ending: seeing it (invited, the asking district, a colleague) is not
    // enough; the chair may.
    for (who, cookie) in [
        ("the requesting doctor", &s.c_asker),
        ("an invitee", &s.c_invitee),
        ("a colleague of the chair", &s.c_colleague),
    ] {
        let (st, v) = as_staff(&api, cookie, "POST", &end, None).await?;
        assert_eq!((st, code(&v)), (403, "forbidden"), "{who}: {v}");
    }
    let (st, v) = as_staff(&api, &s.c_outsider, "POST", &end, None).await?;
    assert_eq!((st, code(&v)), (403, "forbidden"), "an outsider: {v}");
    let (st, v) = as_staff(&api, &s.c_chair, "POST", &end, None).await?;
    assert_eq!(
        (st, v["status"].as_str()),
        (200, Some("ended")),
        "the chair: {v}"
    );

    // Reading the record is everyone's it concerns: the district that asked
    // and the invitees; not an outsider's.
    let record = format!("/api/v1/consultations/{}/record.json", s.room);
    for (who, cookie) in [
        ("the requesting doctor", &s.c_asker),
        ("an invitee", &s.c_invitee),
    ] {
        let (st, v) = as_staff(&api, cookie, "GET", &record, None).await?;
        assert_eq!(st, 200, "{who}: {v}");
    }
    let (st, v) = as_staff(&api, &s.c_outsider, "GET", &record, None).await?;
    assert_eq!((st, code(&v)), (403, "forbidden"), "{v}");
    server.shutdown().await
}

/// A server on `dir` that can be stopped and started again on the same data.
struct Persistent {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Persistent {
    async fn start(dir: &std::path::Path) -> anyhow::Result<Persistent> {
        tuxa_tests::init_tracing();
        let http = std::net::TcpListener::bind("127.0.0.1:0")?;
        http.set_nonblocking(true)?;
        let media = std::net::UdpSocket::bind("127.0.0.1:0")?;
        media.set_nonblocking(true)?;
        let addr = http.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(tuxa_server::run(
            tuxa_server::Listeners {
                http,
                media,
                media_tcp: None,
            },
            tuxa_server::Config::for_tests(dir.to_owned()),
            async move {
                let _ = stopped.await;
            },
        ));
        let api = ApiClient::new(addr, tuxa_tests::TEST_ADMIN_KEY);
        for _ in 0..300 {
            if let Ok(r) = api.request_raw("GET", "/healthz", None, Auth::None).await
                && r.status == 200
            {
                return Ok(Persistent { addr, stop, task });
            }
            anyhow::ensure!(!task.is_finished(), "the server stopped while starting");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        anyhow::bail!("the server did not come up")
    }

    fn api(&self) -> ApiClient {
        ApiClient::new(self.addr, tuxa_tests::TEST_ADMIN_KEY)
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await?
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_participant_stays_out_with_a_fresh_link_and_after_a_restart()
-> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!(
        "tuxa-bars-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    ));
    let result = removed_then_restart(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn removed_then_restart(dir: &std::path::Path) -> anyhow::Result<()> {
    let server = Persistent::start(dir).await?;
    let api = server.api();
    let s = scheduled(&api).await?;

    // The chair, the requesting doctor and (in the lobby) the patient.
    let mut c = tuxa_tests::SignalClient::connect(server.addr).await?;
    c.hello().await?;
    c.join(&s.room, &own_link(&api, &s, &s.c_chair).await?)
        .await?;
    let asker_link = own_link(&api, &s, &s.c_asker).await?;
    let (mut a, joined) = try_join(server.addr, &s.room, &asker_link).await?;
    let ServerMsg::Joined { you: asker, .. } = joined else {
        anyhow::bail!("the requesting doctor did not enter: {joined:?}");
    };
    let (st, v) = as_staff(
        &api,
        &s.c_chair,
        "POST",
        &format!("{}/guest-link", s.base),
        Some(json!({"role": "patient", "name": "Hồ Thị C"})),
    )
    .await?;
    assert_eq!(st, 201, "{v}");
    let (_, patient_link) = link_parts(v["url"].as_str().expect("url"));
    let (_p, waiting) = try_join(server.addr, &s.room, &patient_link).await?;
    let ServerMsg::Waiting { you: patient, .. } = waiting else {
        anyhow::bail!("the patient did not wait: {waiting:?}");
    };

    // The chair removes both.
    for pid in [asker.id, patient.id] {
        c.send(&ClientMsg::RemoveParticipant {
            participant_id: pid,
        })
        .await?;
    }
    a.recv_until(REPLY_TIMEOUT, "removed", |m| {
        is_error(m, ErrorCode::Removed).then_some(())
    })
    .await?;

    // A fresh link from the conference's own join does not bring the doctor
    // back: not at the join page's check, not at join.
    let fresh = own_link(&api, &s, &s.c_asker).await?;
    let (st, v) = api.join_check(s.room.as_str(), &fresh).await?;
    assert_eq!(code(&v), "removed", "{st} {v}");
    let (_, answer) = try_join(server.addr, &s.room, &fresh).await?;
    assert!(is_error(&answer, ErrorCode::Removed), "{answer:?}");

    // A restart on the same data: the old links, and fresh ones, stay out.
    drop(c);
    server.stop().await?;
    let server = Persistent::start(dir).await?;
    let api = server.api();
    let fresh_again = own_link(&api, &s, &s.c_asker).await?;
    for (who, token) in [
        ("the doctor's old link", &asker_link),
        ("the doctor's fresh link", &fresh),
        ("a link minted after the restart", &fresh_again),
        ("the patient's link", &patient_link),
    ] {
        let (_, answer) = try_join(server.addr, &s.room, token).await?;
        assert!(is_error(&answer, ErrorCode::Removed), "{who}: {answer:?}");
    }
    // The invitee who was not removed enters; the chair still chairs.
    let (_, answer) = try_join(
        server.addr,
        &s.room,
        &own_link(&api, &s, &s.c_invitee).await?,
    )
    .await?;
    assert!(matches!(answer, ServerMsg::Joined { .. }), "{answer:?}");
    let mut c = tuxa_tests::SignalClient::connect(server.addr).await?;
    c.hello().await?;
    let cj = c
        .join(&s.room, &own_link(&api, &s, &s.c_chair).await?)
        .await?;
    let chair = c
        .recv_until(REPLY_TIMEOUT, "room state", |m| match m {
            ServerMsg::RoomState { chair, .. } => Some(*chair),
            _ => None,
        })
        .await?;
    assert_eq!(
        chair,
        Some(cj.you.id),
        "the named chair chairs after the restart"
    );
    server.stop().await
}

/// The coordinator moves a scheduled conference and then calls it off: the invitee's list shows
/// each change; a time in the past, a caller who may not schedule, and a cancelled conference's
/// reschedule are refused and change nothing; the cancelled room's links lead to the end screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_reschedules_and_cancels_and_the_invitees_see_it() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let api = server.api();
    let s = scheduled(&api).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let seen_by_invitee = |v: &Value| -> Value {
        let id: i64 = s
            .base
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .parse()
            .unwrap_or(-1);
        v["conferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["id"].as_i64() == Some(id))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let list = |c: String| {
        let api = &api;
        async move { as_staff(api, &c, "GET", "/api/v1/conferences", None).await }
    };
    let (_, before) = list(s.c_invitee.clone()).await?;
    let was = seen_by_invitee(&before)["schedule"]["starts_at"].clone();
    assert!(was.as_u64().is_some(), "{before}");

    // Refusals change nothing.
    for (who, cookie, body, want) in [
        (
            "into the past",
            &s.c_coord,
            json!({"starts_at": now - 3600}),
            400,
        ),
        (
            "by an invitee",
            &s.c_invitee,
            json!({"starts_at": now + 86_400}),
            403,
        ),
        (
            "a bad duration",
            &s.c_coord,
            json!({"starts_at": now + 86_400, "duration_min": 5}),
            400,
        ),
    ] {
        let (st, v) = as_staff(
            &api,
            cookie,
            "POST",
            &format!("{}/reschedule", s.base),
            Some(body),
        )
        .await?;
        assert_eq!(st, want, "{who}: {v}");
        let (_, after) = list(s.c_invitee.clone()).await?;
        assert_eq!(
            seen_by_invitee(&after)["schedule"]["starts_at"],
            was,
            "{who}"
        );
    }

    let tomorrow = now + 86_400;
    let (st, v) = as_staff(
        &api,
        &s.c_coord,
        "POST",
        &format!("{}/reschedule", s.base),
        Some(json!({"starts_at": tomorrow, "duration_min": 45})),
    )
    .await?;
    assert_eq!(st, 200, "{v}");
    let (_, after) = list(s.c_invitee.clone()).await?;
    let mine = seen_by_invitee(&after);
    assert_eq!(mine["schedule"]["starts_at"], json!(tomorrow), "{after}");
    assert_eq!(mine["schedule"]["duration_min"], json!(45), "{after}");
    assert_eq!(mine["status"], "scheduled");

    let (st, v) = as_staff(
        &api,
        &s.c_coord,
        "POST",
        &format!("{}/cancel", s.base),
        Some(json!({"reason": "Bệnh nhân đã chuyển tuyến trên."})),
    )
    .await?;
    assert_eq!(st, 200, "{v}");
    let (_, after) = list(s.c_invitee.clone()).await?;
    let mine = seen_by_invitee(&after);
    assert_eq!(mine["status"], "cancelled", "{after}");
    assert_eq!(
        mine["cancelled"]["reason"],
        "Bệnh nhân đã chuyển tuyến trên."
    );
    // Cancelled: no new time, no second cancel, no link.
    for path in ["reschedule", "cancel"] {
        let (st, v) = as_staff(
            &api,
            &s.c_coord,
            "POST",
            &format!("{}/{path}", s.base),
            Some(if path == "cancel" {
                json!({"reason": "x"})
            } else {
                json!({"starts_at": tomorrow + 3600})
            }),
        )
        .await?;
        assert_eq!((st, code(&v)), (409, "conflict"), "{path}: {v}");
    }
    let (st, v) = as_staff(&api, &s.c_chair, "POST", &format!("{}/join", s.base), None).await?;
    assert_eq!(st, 409, "{v}");
    let (_, row) = api
        .admin("GET", &format!("/api/v1/consultations/{}", s.room), None)
        .await?;
    assert_eq!(row["status"], "ended", "{row}");
    assert_eq!(row["end_reason"], "cancelled", "{row}");
    server.shutdown().await?;
    Ok(())
}

/// Ending from a session that was signed out is refused (401) and the conference stays open;
/// ending someone else's room (an invitee, who may join but not end) is 403; the chair's end
/// works once, and a second end is 410 with nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_needs_a_live_session_and_the_right_and_happens_once() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let api = server.api();
    let s = scheduled(&api).await?;
    let end = format!("/api/v1/consultations/{}/end", s.room);
    let status = |api: &ApiClient| {
        let path = format!("/api/v1/consultations/{}", s.room);
        let api = api.clone();
        async move { api.admin("GET", &path, None).await.map(|(_, v)| v) }
    };

    // A signed-out session.
    let (st, _) = as_staff(&api, &s.c_chair, "POST", "/api/v1/auth/logout", None).await?;
    assert_eq!(st, 204);
    let (st, v) = as_staff(&api, &s.c_chair, "POST", &end, None).await?;
    assert_eq!((st, code(&v)), (401, "unauthorized"), "{v}");
    assert_eq!(status(&api).await?["status"], "open");

    // Someone else's room.
    let (st, v) = as_staff(&api, &s.c_invitee, "POST", &end, None).await?;
    assert_eq!((st, code(&v)), (403, "forbidden"), "{v}");
    assert_eq!(status(&api).await?["status"], "open");

    // Those who may: once.
    let (st, v) = as_staff(&api, &s.c_coord, "POST", &end, None).await?;
    assert_eq!(st, 200, "{v}");
    let first = status(&api).await?;
    assert_eq!(first["status"], "ended");
    let (st, v) = as_staff(&api, &s.c_coord, "POST", &end, None).await?;
    assert_eq!((st, code(&v)), (410, "room_ended"), "{v}");
    assert_eq!(status(&api).await?["ended_at"], first["ended_at"]);
    // The request reads as held now.
    let (_, req) = as_staff(&api, &s.c_coord, "GET", &s.base, None).await?;
    assert_eq!(req["status"], "held", "{req}");
    server.shutdown().await?;
    Ok(())
}
