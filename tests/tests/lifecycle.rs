//! A session's life beyond the happy path, over the real WebSocket: rooms that end or fill up,
//! people who vanish without `leave`, a server that stops, and a client that breaks the
//! negotiation rules (glare).
//!
//! Run: `CARGO_TARGET_DIR=/work/target-tests cargo test -p tuxa-tests --test lifecycle`

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind as SMediaKind};
use str0m::{Candidate, Rtc};
use tuxa_protocol::{
    ClientMsg, ConsultationKind, EndReason, ErrorCode, LeaveReason, Role, ServerMsg,
};
use tuxa_tests::{Flavor, Peer, PeerOptions, REPLY_TIMEOUT, SignalClient, TestServer, serial};

/// A joined session (no media).
async fn joined_session(
    server: &TestServer,
    room: &tuxa_protocol::RoomId,
    name: &str,
) -> anyhow::Result<(SignalClient, tuxa_tests::Joined)> {
    let mut s = server.signal().await?;
    s.hello().await?;
    let token = server.api().mint_link(room, Role::Doctor, name).await?;
    let joined = s.join(room, &token).await?;
    Ok((s, joined))
}

/// Ending a consultation through the API disconnects everyone in it with `room_ended`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_consultation_closes_its_sessions() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let api = server.api();
    let room = api
        .create_consultation(ConsultationKind::Conference, "Hội chẩn")
        .await?;
    let late_token = api.mint_link(&room, Role::Doctor, "late").await?;
    let mut sessions = Vec::new();
    for name in ["một", "hai"] {
        let mut s = server.signal().await?;
        s.hello().await?;
        s.join(&room, &api.mint_link(&room, Role::Doctor, name).await?)
            .await?;
        sessions.push(s);
    }
    let (status, body) = api.end_consultation(&room).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ended", "{body}");
    for s in &mut sessions {
        let reason = s
            .recv_until(REPLY_TIMEOUT, "room_ended", |m| match m {
                ServerMsg::RoomEnded { reason, .. } => Some(*reason),
                _ => None,
            })
            .await?;
        assert_eq!(reason, EndReason::Ended);
        s.expect_close(REPLY_TIMEOUT).await?;
    }
    // Ending twice is refused and changes nothing: the first end stands.
    let (status, again) = api.end_consultation(&room).await?;
    assert_eq!(
        (status, again.pointer("/error/code")),
        (410, Some(&json!("room_ended"))),
        "{again}"
    );
    let (_, record) = api
        .admin(
            "GET",
            &format!("/api/v1/consultations/{room}/record.json"),
            None,
        )
        .await?;
    assert_eq!(
        record["consultation"]["ended_at"], body["ended_at"],
        "{record}"
    );
    let ends = record["audit"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["action"] == "consultation_ended")
        .count();
    assert_eq!(ends, 1, "one end in the audit trail: {record}");
    // Its links no longer work, and no new ones are made.
    let mut s = server.signal().await?;
    s.hello().await?;
    s.send(&ClientMsg::Join {
        room: room.clone(),
        token: late_token,
    })
    .await?;
    s.expect_error(ErrorCode::RoomEnded, REPLY_TIMEOUT).await?;
    let (status, body) = api
        .mint_link_with(room.as_str(), &json!({"role": "doctor", "name": "x"}))
        .await?;
    assert_eq!(
        (status, body.pointer("/error/code")),
        (410, Some(&json!("room_ended"))),
        "minting a link for an ended consultation: {body}"
    );
    server.shutdown().await?;
    Ok(())
}

/// The doctor ends a visit from the room (`end_room`): the patient is told at once with the
/// facility's contact, and the record is closed with its end time and reason; a patient's
/// `end_room` is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_doctor_ends_a_visit_from_the_room() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let api = server.api();
    let room = api
        .create_consultation(ConsultationKind::Visit, "Khám")
        .await?;
    let (mut doctor, _) = joined_session(&server, &room, "BS. Lan").await?;
    let mut patient = server.signal().await?;
    patient.hello().await?;
    patient
        .send(&ClientMsg::Consent {
            text_version: "vi-test".into(),
            remote_examination: true,
            third_parties: false,
            recording: false,
        })
        .await?;
    let token = api.mint_link(&room, Role::Patient, "Bà Tư").await?;
    patient
        .send(&ClientMsg::Join {
            room: room.clone(),
            token,
        })
        .await?;
    let pid = patient
        .recv_until(REPLY_TIMEOUT, "waiting", |m| match m {
            ServerMsg::Waiting { you, .. } => Some(you.id),
            _ => None,
        })
        .await?;
    doctor
        .send(&ClientMsg::Admit {
            participant_id: pid,
        })
        .await?;
    patient
        .recv_until(REPLY_TIMEOUT, "joined", |m| match m {
            ServerMsg::Joined { .. } => Some(()),
            _ => None,
        })
        .await?;

    patient.send(&ClientMsg::EndRoom {}).await?;
    patient
        .expect_error(ErrorCode::Forbidden, REPLY_TIMEOUT)
        .await?;
    let (_, open) = api
        .admin("GET", &format!("/api/v1/consultations/{room}"), None)
        .await?;
    assert_eq!(open["status"], "open", "{open}");

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    doctor.send(&ClientMsg::EndRoom {}).await?;
    for (who, s) in [("patient", &mut patient), ("doctor", &mut doctor)] {
        let (reason, by) = s
            .recv_until(REPLY_TIMEOUT, "room_ended", |m| match m {
                ServerMsg::RoomEnded { reason, by, .. } => Some((*reason, by.clone())),
                _ => None,
            })
            .await?;
        assert_eq!(
            (reason, by.as_deref()),
            (EndReason::Ended, Some("BS. Lan")),
            "{who}"
        );
        s.expect_close(REPLY_TIMEOUT).await?;
    }
    // The record is closed by the store task: wait for it.
    let row = api.consultation_once_ended(&room, REPLY_TIMEOUT).await?;
    assert_eq!(row["status"], "ended", "{row}");
    assert_eq!(row["end_reason"], "ended", "{row}");
    let ended_at = row["ended_at"].as_i64().expect("ended_at");
    assert!(ended_at >= before, "{row}");
    server.shutdown().await?;
    Ok(())
}

/// With no doctor or nurse in it for `--abandon-after`, a room ends by itself as `abandoned`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_without_staff_ends_as_abandoned() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| {
        c.abandon_after = Duration::from_secs(2);
        c.reconnect_grace = Duration::ZERO;
    })
    .await?;
    let api = server.api();
    let room = api
        .create_consultation(ConsultationKind::Conference, "Hội chẩn")
        .await?;
    let (doctor, _) = joined_session(&server, &room, "BS. Lan").await?;
    let mut guest = server.signal().await?;
    guest.hello().await?;
    let token = api.mint_link(&room, Role::Guest, "Khách").await?;
    guest
        .send(&ClientMsg::Join {
            room: room.clone(),
            token,
        })
        .await?;
    guest
        .recv_until(REPLY_TIMEOUT, "waiting", |m| match m {
            ServerMsg::Waiting { .. } => Some(()),
            _ => None,
        })
        .await?;
    doctor.close().await;
    let reason = guest
        .recv_until(Duration::from_secs(10), "room_ended", |m| match m {
            ServerMsg::RoomEnded { reason, .. } => Some(*reason),
            _ => None,
        })
        .await?;
    assert_eq!(reason, EndReason::Abandoned);
    let row = api.consultation_once_ended(&room, REPLY_TIMEOUT).await?;
    assert_eq!(row["status"], "ended", "not recorded as abandoned: {row}");
    assert_eq!(row["end_reason"], "abandoned", "{row}");
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_room_refuses_and_others_are_told_who_left_how() -> anyhow::Result<()> {
    // Without a reconnect grace window (`--reconnect-grace 0`) a dropped
    // connection leaves at once; tests/tests/reconnect.rs has the window.
    let server = TestServer::start_with(|c| {
        c.max_participants = 2;
        c.reconnect_grace = std::time::Duration::ZERO;
    })
    .await?;
    let api = server.api();
    let room = api
        .create_consultation(ConsultationKind::Visit, "Khám")
        .await?;
    let (mut one, one_joined) = joined_session(&server, &room, "một").await?;
    let (two, two_joined) = joined_session(&server, &room, "hai").await?;

    // A third is refused, without losing the session.
    let mut three = server.signal().await?;
    three.hello().await?;
    let token = api.mint_link(&room, Role::Nurse, "ba").await?;
    three
        .send(&ClientMsg::Join {
            room: room.clone(),
            token: token.clone(),
        })
        .await?;
    three
        .expect_error(ErrorCode::RoomFull, REPLY_TIMEOUT)
        .await?;
    three.ping(1).await?;

    // "hai" closes its WebSocket without a word: "một" is told it disconnected.
    two.close().await;
    let (id, reason) = one
        .recv_until(REPLY_TIMEOUT, "participant_left", |m| match m {
            ServerMsg::ParticipantLeft {
                participant_id,
                reason,
            } => Some((*participant_id, *reason)),
            _ => None,
        })
        .await?;
    assert_eq!(id, two_joined.you.id);
    assert_eq!(reason, LeaveReason::Disconnected);

    // Now there is room: the same link works, and "một" sees the newcomer.
    let joined = three.join(&room, &token).await?;
    assert_eq!(
        joined.participants.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![one_joined.you.id]
    );
    one.recv_until(REPLY_TIMEOUT, "participant_joined", |m| match m {
        ServerMsg::ParticipantJoined { participant } if participant.id == joined.you.id => Some(()),
        _ => None,
    })
    .await?;

    // `leave` is reported as "left", and the server closes the leaver's session.
    three.send(&ClientMsg::Leave {}).await?;
    three.expect_close(REPLY_TIMEOUT).await?;
    let reason = one
        .recv_until(REPLY_TIMEOUT, "participant_left", |m| match m {
            ServerMsg::ParticipantLeft {
                participant_id,
                reason,
            } if *participant_id == joined.you.id => Some(*reason),
            _ => None,
        })
        .await?;
    assert_eq!(reason, LeaveReason::Left);
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_server_tells_every_session() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let room = server
        .api()
        .create_consultation(ConsultationKind::Conference, "Hội chẩn")
        .await?;
    let (mut joined, _) = joined_session(&server, &room, "một").await?;
    let mut negotiated = server.signal().await?;
    negotiated.hello().await?;

    let stopping = tokio::spawn(server.shutdown());
    for s in [&mut joined, &mut negotiated] {
        let code = s
            .recv_until(REPLY_TIMEOUT, "an error", |m| match m {
                ServerMsg::Error { code, .. } => Some(*code),
                _ => None,
            })
            .await?;
        assert_eq!(code, ErrorCode::ServerShutdown);
        s.expect_close(REPLY_TIMEOUT).await?;
    }
    stopping.await??;
    Ok(())
}

fn str0m_client() -> Rtc {
    let mut rtc = Rtc::builder()
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        .build(Instant::now());
    // Never used: this client only negotiates.
    rtc.add_local_candidate(
        Candidate::host("127.0.0.1:9".parse().expect("addr"), "udp").expect("candidate"),
    );
    rtc
}

/// The server is the impolite peer: a client offer while a server offer is outstanding gets
/// `negotiation_glare` and changes nothing; once the client answers, it may offer again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_across_a_server_offer_is_glare() -> anyhow::Result<()> {
    let _serial = serial().await;
    let server = TestServer::start().await?;
    let room = server
        .api()
        .create_consultation(ConsultationKind::Conference, "Hội chẩn")
        .await?;
    // A publisher, so that the server has tracks to offer the next one.
    let publisher = Peer::join_new(
        Flavor::Str0m,
        &server,
        &room,
        Role::Doctor,
        "publisher",
        PeerOptions::default(),
    )
    .await?;
    publisher.wait_media_up(Duration::from_secs(20)).await?;

    let (mut s, _) = joined_session(&server, &room, "glare").await?;
    let mut rtc = str0m_client();
    let mut api = rtc.sdp_api();
    api.add_media(SMediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = api.apply().expect("an offer");
    s.send(&ClientMsg::Offer {
        sdp: offer.to_sdp_string(),
    })
    .await?;
    let answer = s
        .recv_until(REPLY_TIMEOUT, "answer", |m| match m {
            ServerMsg::Answer { sdp } => Some(sdp.clone()),
            _ => None,
        })
        .await?;
    rtc.sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer)?)?;

    // The server offers the publisher's tracks.
    let server_offer = s
        .recv_until(Duration::from_secs(10), "a server offer", |m| match m {
            ServerMsg::Offer { sdp } => Some(sdp.clone()),
            _ => None,
        })
        .await?;

    // An offer across it: refused.
    let mut api = rtc.sdp_api();
    api.add_media(SMediaKind::Video, Direction::SendRecv, None, None, None);
    let (offer2, _pending2) = api.apply().expect("an offer");
    s.send(&ClientMsg::Offer {
        sdp: offer2.to_sdp_string(),
    })
    .await?;
    // (`in_reply_to` is optional in the protocol; not checked.)
    s.expect_error(ErrorCode::NegotiationGlare, REPLY_TIMEOUT)
        .await?;

    // The polite client rolls back, answers, and offers again.
    let answer = rtc
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&server_offer)?)?;
    s.send(&ClientMsg::Answer {
        sdp: answer.to_sdp_string(),
    })
    .await?;
    s.ping(7).await?;
    let mut api = rtc.sdp_api();
    api.add_media(SMediaKind::Video, Direction::SendRecv, None, None, None);
    let (offer3, pending3) = api.apply().expect("an offer");
    s.send(&ClientMsg::Offer {
        sdp: offer3.to_sdp_string(),
    })
    .await?;
    let answer = s
        .recv_until(REPLY_TIMEOUT, "answer", |m| match m {
            ServerMsg::Answer { sdp } => Some(sdp.clone()),
            ServerMsg::Error { code, .. } => panic!("the offer after answering got {code}"),
            _ => None,
        })
        .await?;
    rtc.sdp_api()
        .accept_answer(pending3, SdpAnswer::from_sdp_string(&answer)?)?;
    for m in &s.skipped {
        assert!(
            !matches!(m, ServerMsg::Error { .. }),
            "unexpected error {m:?}"
        );
    }
    publisher.close().await;
    server.shutdown().await?;
    Ok(())
}

/// Patients and guests wait in the lobby; only a doctor admits or refuses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lobby_over_the_real_websocket() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let api = server.api();
    let room = api
        .create_consultation(ConsultationKind::Visit, "Khám từ xa")
        .await?;

    // The patient arrives first and waits.
    let mut patient = server.signal().await?;
    patient.hello().await?;
    let token = api.mint_link(&room, Role::Patient, "Nguyễn Văn A").await?;
    // Without consent to the examination, a patient cannot join.
    patient
        .send(&ClientMsg::Join {
            room: room.clone(),
            token: token.clone(),
        })
        .await?;
    patient
        .expect_error(ErrorCode::ConsentRequired, REPLY_TIMEOUT)
        .await?;
    patient.consent().await?;
    patient
        .send(&ClientMsg::Join {
            room: room.clone(),
            token,
        })
        .await?;
    let me = patient
        .recv_until(REPLY_TIMEOUT, "waiting", |m| match m {
            ServerMsg::Waiting { you, .. } => Some(you.clone()),
            _ => None,
        })
        .await?;
    assert_eq!(me.role, Role::Patient);
    // Waiting is not being in the room: no media yet.
    patient
        .send(&ClientMsg::Offer { sdp: "v=0".into() })
        .await?;
    patient
        .expect_error(ErrorCode::NotJoined, REPLY_TIMEOUT)
        .await?;

    // A guest waits too.
    let mut guest = server.signal().await?;
    guest.hello().await?;
    let token = api.mint_link(&room, Role::Guest, "Khách").await?;
    guest
        .send(&ClientMsg::Join {
            room: room.clone(),
            token,
        })
        .await?;
    let guest_me = guest
        .recv_until(REPLY_TIMEOUT, "waiting", |m| match m {
            ServerMsg::Waiting { you, .. } => Some(you.clone()),
            _ => None,
        })
        .await?;

    // A nurse enters directly but may not admit.
    let mut nurse = server.signal().await?;
    nurse.hello().await?;
    let token = api.mint_link(&room, Role::Nurse, "ĐD. Hoa").await?;
    nurse.join(&room, &token).await?;
    nurse
        .send(&ClientMsg::Admit {
            participant_id: me.id,
        })
        .await?;
    nurse
        .expect_error(ErrorCode::Forbidden, REPLY_TIMEOUT)
        .await?;

    // The doctor sees both waiting, oldest first.
    let (mut doctor, _) = joined_session(&server, &room, "BS. Lan").await?;
    let waiting = doctor
        .recv_until(REPLY_TIMEOUT, "lobby", |m| match m {
            ServerMsg::Lobby { waiting } => Some(waiting.clone()),
            _ => None,
        })
        .await?;
    assert_eq!(
        waiting.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![me.id, guest_me.id]
    );

    // Refuse the guest: fatal for them.
    doctor
        .send(&ClientMsg::Refuse {
            participant_id: guest_me.id,
        })
        .await?;
    let code = guest
        .recv_until(REPLY_TIMEOUT, "refused", |m| match m {
            ServerMsg::Error { code, .. } => Some(*code),
            _ => None,
        })
        .await?;
    assert_eq!(code, ErrorCode::Refused);
    guest.expect_close(REPLY_TIMEOUT).await?;

    // Admit the patient: joined, with the nurse and the doctor already there.
    doctor
        .send(&ClientMsg::Admit {
            participant_id: me.id,
        })
        .await?;
    let others = patient
        .recv_until(REPLY_TIMEOUT, "joined", |m| match m {
            ServerMsg::Joined { participants, .. } => Some(participants.clone()),
            _ => None,
        })
        .await?;
    assert_eq!(others.len(), 2);
    // Admitting again: nobody is waiting.
    doctor
        .send(&ClientMsg::Admit {
            participant_id: me.id,
        })
        .await?;
    let code = doctor
        .recv_until(REPLY_TIMEOUT, "not_waiting", |m| match m {
            ServerMsg::Error { code, .. } => Some(*code),
            _ => None,
        })
        .await?;
    assert_eq!(code, ErrorCode::NotWaiting);
    server.shutdown().await?;
    Ok(())
}

/// Appointment links open 15 minutes before the appointment and expire
/// after it; before that both the join page check and the WebSocket refuse
/// them with `token_not_yet_valid`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appointment_links_open_shortly_before_and_not_earlier() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let api = server.api();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let book = |starts_at: u64| {
        json!({"starts_at": starts_at, "duration_min": 20,
               "patient": {"name": "Nguyễn Văn A", "facility": "Trạm y tế xã Tân Lập"},
               "doctor": {"name": "BS. Lan", "facility": "BVĐK tỉnh"}})
    };
    let fragment = |link: &serde_json::Value| -> (String, String) {
        let url = link.as_str().expect("a link");
        let (path, token) = url.split_once('#').expect("token in the fragment");
        let room = path.rsplit('/').next().expect("room").to_owned();
        (room, token.to_owned())
    };

    // Two hours ahead: the links exist but do not open yet.
    let (status, later) = api
        .admin("POST", "/api/v1/appointments", Some(&book(now + 7200)))
        .await?;
    assert_eq!(status, 201, "{later}");
    assert_eq!(later["opens_at"], json!(now + 7200 - 900));
    assert_eq!(later["expires_at"], json!(now + 7200 + 20 * 60 + 1800));
    let (room, token) = fragment(&later["patient_link"]);
    let (status, body) = api.join_check(&room, &token).await?;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("token_not_yet_valid")),
        "{body}"
    );
    let mut s = server.signal().await?;
    s.hello().await?;
    s.consent().await?;
    s.send(&ClientMsg::Join {
        room: tuxa_protocol::RoomId::parse(&room).expect("room id"),
        token,
    })
    .await?;
    s.expect_error(ErrorCode::TokenNotYetValid, REPLY_TIMEOUT)
        .await?;

    // Ten minutes ahead: inside the 15-minute window, the doctor gets in.
    let (status, soon) = api
        .admin("POST", "/api/v1/appointments", Some(&book(now + 600)))
        .await?;
    assert_eq!(status, 201, "{soon}");
    let (room, token) = fragment(&soon["doctor_link"]);
    let (status, body) = api.join_check(&room, &token).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], "doctor");
    let room_id = tuxa_protocol::RoomId::parse(&room).expect("room id");
    let mut d = server.signal().await?;
    d.hello().await?;
    d.join(&room_id, &token).await?;

    // Listed among the upcoming ones.
    let (status, list) = api.admin("GET", "/api/v1/appointments", None).await?;
    assert_eq!(status, 200);
    assert_eq!(
        list["appointments"].as_array().map(Vec::len),
        Some(2),
        "{list}"
    );

    // In the past, too long, nameless: refused.
    for bad in [
        book(now - 7200),
        json!({"starts_at": now + 60, "duration_min": 1, "patient": {"name": "A"}, "doctor": {"name": "B"}}),
        json!({"starts_at": now + 60, "patient": {"name": ""}, "doctor": {"name": "B"}}),
    ] {
        let (status, body) = api
            .admin("POST", "/api/v1/appointments", Some(&bad))
            .await?;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("bad_request")),
            "{bad}"
        );
    }
    server.shutdown().await?;
    Ok(())
}
