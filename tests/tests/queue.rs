//! The on-call queue end to end, over the real API and WebSocket: a doctor
//! signs in with password and TOTP, is on the roster and marks themselves
//! available; a patient consents and queues; the doctor is offered the
//! patient with the reason, accepts, and both get a link into the same
//! call — the patient straight in, with no second wait in the lobby.

use serde_json::{Value, json};
use tuxa_protocol::{ClientMsg, ErrorCode, QueueState, RoomId, ServerMsg};
use tuxa_tests::{Auth, REPLY_TIMEOUT, SignalClient, TestServer};

fn link_parts(url: &str) -> (RoomId, String) {
    let (path, token) = url.split_once('#').expect("a token after #");
    let room = RoomId::parse(path.rsplit('/').next().expect("room")).expect("room id");
    (room, token.to_owned())
}

async fn created(api: &tuxa_tests::ApiClient, path: &str, body: Value) -> anyhow::Result<Value> {
    let (status, v) = api.admin("POST", path, Some(&body)).await?;
    anyhow::ensure!(status == 201, "{path}: {status} {v}");
    Ok(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_queues_a_doctor_accepts_and_both_are_in_the_call() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let api = server.api();

    // The directory: a hospital, a doctor with a licence and an account, a queue, a roster.
    let f = created(
        &api,
        "/api/v1/facilities",
        json!({"name": "BVĐK tỉnh", "tier": "province"}),
    )
    .await?;
    let p = created(
        &api,
        "/api/v1/practitioners",
        json!({"name": "Lê Hoàng Minh", "title": "BSCKII", "licence_number": "000125/AH-CCHN",
               "specialty": "Nội khoa", "facility_id": f["id"]}),
    )
    .await?;
    let staff = created(
        &api,
        "/api/v1/staff",
        json!({"username": "bs.minh", "name": "BS. Lê Hoàng Minh", "role": "doctor",
               "facility_id": f["id"], "practitioner_id": p["id"], "password": "mat-khau-rat-dai"}),
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
        json!({"staff_id": staff["staff"]["id"], "start": "00:00", "end": "24:00"}),
    )
    .await?;

    // Sign in with password and the authenticator's code.
    let secret = staff["totp"]["secret"].as_str().expect("secret");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let code = tuxa_server::totp_code(secret, now).expect("a code");
    let body = serde_json::to_vec(
        &json!({"username": "bs.minh", "password": "mat-khau-rat-dai", "totp": code}),
    )?;
    let r = api
        .request_raw("POST", "/api/v1/auth/login", Some(&body), Auth::None)
        .await?;
    anyhow::ensure!(r.status == 200, "login: {} {}", r.status, r.body);
    let cookie = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.split(';').next().unwrap_or("").to_owned())
        .expect("a session cookie");

    // A patient without a sign-in cannot take calls.
    let mut stranger = server.signal().await?;
    stranger.hello().await?;
    stranger
        .send(&ClientMsg::Available {
            queues: vec![queue],
        })
        .await?;
    stranger
        .expect_error(ErrorCode::NotOnCall, REPLY_TIMEOUT)
        .await?;

    // The doctor is available for the queue (and only for queues on their roster).
    let mut doctor = SignalClient::connect_with_cookie(server.http_addr, Some(&cookie)).await?;
    doctor.hello().await?;
    // Before going available, the counts of the queue they are on call for
    // (issue 12): nobody waits yet.
    match doctor.recv(REPLY_TIMEOUT).await? {
        ServerMsg::QueueCounts {
            queue: q,
            waiting: 0,
            offered: 0,
            doctors_available: 0,
        } if q == queue => {}
        other => anyhow::bail!("expected the queue's counts after welcome, got {other:?}"),
    }
    doctor
        .send(&ClientMsg::Available {
            queues: vec![queue + 100],
        })
        .await?;
    doctor
        .expect_error(ErrorCode::NotOnCall, REPLY_TIMEOUT)
        .await?;
    doctor
        .send(&ClientMsg::Available {
            queues: vec![queue],
        })
        .await?;
    doctor
        .recv_until(REPLY_TIMEOUT, "available", |m| match m {
            ServerMsg::DoctorStatus {
                available: true,
                queues,
                ..
            } if queues == &vec![queue] => Some(()),
            _ => None,
        })
        .await?;

    // The patient: consent first, then the queue.
    let mut patient = server.signal().await?;
    patient.hello().await?;
    let join = ClientMsg::QueueJoin {
        queue,
        name: "Nguyễn Văn A".into(),
        phone: "0912345678".into(),
        reason: "Sốt cao 3 ngày".into(),
    };
    patient.send(&join).await?;
    patient
        .expect_error(ErrorCode::ConsentRequired, REPLY_TIMEOUT)
        .await?;
    patient.consent().await?;
    patient.send(&join).await?;

    // The doctor is offered the patient, with the reason; the patient sees it.
    let (ticket, reason) = doctor
        .recv_until(REPLY_TIMEOUT, "an offer", |m| match m {
            ServerMsg::PatientOffer {
                ticket,
                reason,
                name,
                queue: q,
                ..
            } if *q == queue && name == "Nguyễn Văn A" => Some((ticket.clone(), reason.clone())),
            _ => None,
        })
        .await?;
    assert_eq!(reason, "Sốt cao 3 ngày");
    patient
        .recv_until(REPLY_TIMEOUT, "offered", |m| match m {
            ServerMsg::QueueStatus {
                state: QueueState::Offered,
                ticket: t,
                ..
            } if *t == ticket => Some(()),
            _ => None,
        })
        .await?;

    // Accept: both get a link into one room.
    doctor
        .send(&ClientMsg::AcceptPatient {
            ticket: ticket.clone(),
        })
        .await?;
    let ready = |m: &ServerMsg| match m {
        ServerMsg::CallReady { url, .. } => Some(url.clone()),
        _ => None,
    };
    let patient_url = patient
        .recv_until(REPLY_TIMEOUT, "call_ready", ready)
        .await?;
    let doctor_url = doctor
        .recv_until(REPLY_TIMEOUT, "call_ready", ready)
        .await?;
    let (room_p, token_p) = link_parts(&patient_url);
    let (room_d, token_d) = link_parts(&doctor_url);
    assert_eq!(room_p, room_d, "one room for both");

    // Both enter; the patient is not made to wait in the lobby again.
    let mut d = server.signal().await?;
    d.hello().await?;
    let dj = d.join(&room_d, &token_d).await?;
    assert_eq!(dj.you.name, "BS. Lê Hoàng Minh");
    let mut pt = server.signal().await?;
    pt.hello().await?;
    pt.consent().await?;
    pt.send(&ClientMsg::Join {
        room: room_p.clone(),
        token: token_p,
    })
    .await?;
    let others = pt
        .recv_until(REPLY_TIMEOUT, "joined at once", |m| match m {
            ServerMsg::Joined { participants, .. } => Some(participants.clone()),
            ServerMsg::Waiting { .. } => Some(Vec::new()),
            _ => None,
        })
        .await?;
    assert_eq!(others.len(), 1, "joined directly, with the doctor there");

    // A second patient queues; the doctor, on a call, is not offered them.
    let mut second = server.signal().await?;
    second.hello().await?;
    second.consent().await?;
    second
        .send(&ClientMsg::QueueJoin {
            queue,
            name: "Trần Thị B".into(),
            phone: String::new(),
            reason: "Ho".into(),
        })
        .await?;
    second
        .recv_until(REPLY_TIMEOUT, "queued first in line", |m| match m {
            ServerMsg::QueueStatus {
                state: QueueState::Queued,
                position: Some(1),
                ..
            } => Some(()),
            _ => None,
        })
        .await?;
    // "Kết thúc, nhận bệnh nhân tiếp": the doctor's console ends the visit
    // (the patient sees the end screen, the record closes) and takes
    // patients again: offered the second.
    doctor.send(&ClientMsg::DoctorFree {}).await?;
    let reason = pt
        .recv_until(REPLY_TIMEOUT, "the end of the visit", |m| match m {
            ServerMsg::RoomEnded { reason, .. } => Some(*reason),
            _ => None,
        })
        .await?;
    assert_eq!(reason, tuxa_protocol::EndReason::Ended);
    let row = api.consultation_once_ended(&room_d, REPLY_TIMEOUT).await?;
    assert_eq!(row["status"], "ended", "still open: {row}");
    assert_eq!(row["end_reason"], "ended", "{row}");
    doctor
        .recv_until(REPLY_TIMEOUT, "the next offer", |m| match m {
            ServerMsg::PatientOffer { name, .. } if name == "Trần Thị B" => Some(()),
            _ => None,
        })
        .await?;

    // Signing out ends the console's doctor identity at once: its socket is
    // told and closed, and the offer it had goes back to the line.
    let r = api
        .request_raw("POST", "/api/v1/auth/logout", None, Auth::Cookie(&cookie))
        .await?;
    assert_eq!(r.status, 204, "{}", r.body);
    let code = doctor
        .recv_until(REPLY_TIMEOUT, "signed out", |m| match m {
            ServerMsg::Error { code, .. } => Some(*code),
            _ => None,
        })
        .await?;
    assert_eq!(code, ErrorCode::Unauthorized);
    doctor.expect_close(REPLY_TIMEOUT).await?;
    second
        .recv_until(REPLY_TIMEOUT, "back in line", |m| match m {
            ServerMsg::QueueStatus {
                state: QueueState::Queued,
                position: Some(1),
                ..
            } => Some(()),
            _ => None,
        })
        .await?;

    // The activity report counts it, with no patient identifiers.
    let (status, report) = api.admin("GET", "/api/v1/reports/activity", None).await?;
    assert_eq!(status, 200, "{report}");
    let queue_row = report["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["kind"] == "queue"))
        .cloned()
        .expect("a queue row");
    assert_eq!(queue_row["facility"], "BVĐK tỉnh");
    assert_eq!(queue_row["count"], 2, "{queue_row}");
    assert_eq!(queue_row["served"], 1, "{queue_row}");
    let csv = api
        .request_raw(
            "GET",
            "/api/v1/reports/activity?format=csv",
            None,
            Auth::Bearer(tuxa_tests::TEST_ADMIN_KEY),
        )
        .await?;
    assert_eq!(csv.status, 200);
    assert!(
        csv.body.contains("BVĐK tỉnh,Hàng chờ trực tuyến,2,1,0"),
        "{}",
        csv.body
    );
    assert!(!csv.body.contains("Nguyễn Văn A") && !csv.body.contains("0912345678"));
    server.shutdown().await?;
    Ok(())
}
