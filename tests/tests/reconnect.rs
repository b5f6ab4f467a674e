//! Reconnect through the whole server: a client's WebSocket is cut, it comes
//! back with the same link inside the grace window, keeps its participant id,
//! and media flows again both ways; a second session with the same link
//! replaces the first; TURN credentials come with join-check.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-tests cargo test -p tuxa-tests --test reconnect`

use std::time::{Duration, Instant};

use tuxa_protocol::{ConsultationKind, ErrorCode, MediaKind, Role, ServerMsg};
use tuxa_tests::{Flavor, Peer, PeerOptions, TestServer, serial};

const MEDIA_TIMEOUT: Duration = Duration::from_secs(20);
const MSG_TIMEOUT: Duration = Duration::from_secs(10);
const FRAMES: u64 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_websocket_rejoins_with_its_link_and_media_flows_again() -> anyhow::Result<()> {
    let _serial = serial().await;
    let server = TestServer::start().await?;
    let api = server.api();
    let room = api
        .create_consultation(ConsultationKind::Visit, "Khám từ xa — vùng núi")
        .await?;
    let doctor = Peer::join_new(
        Flavor::WebrtcRs,
        &server,
        &room,
        Role::Doctor,
        "BS. Trần Thị B",
        PeerOptions::default(),
    )
    .await?;
    let nurse_token = api.mint_link(&room, Role::Nurse, "YT. Lò Văn C").await?;
    let nurse = Peer::join(
        Flavor::Str0m,
        &server,
        &room,
        &nurse_token,
        "nurse (str0m)",
        PeerOptions::default(),
    )
    .await?;
    let nurse_id = nurse.id();
    assert!(!nurse.joined.resumed);
    for (rx, from) in [(&doctor, &nurse), (&nurse, &doctor)] {
        for kind in [MediaKind::Audio, MediaKind::Video] {
            rx.wait_frames(from.id(), kind, FRAMES, MEDIA_TIMEOUT)
                .await?;
        }
    }

    // The nurse's WebSocket goes (no `leave`): the doctor hears
    // "reconnecting", and no participant_left.
    let mark = doctor.events.len();
    let cut = Instant::now();
    nurse.close().await;
    doctor
        .wait_msg(mark, MSG_TIMEOUT, "participant_reconnecting", |m| match m {
            ServerMsg::ParticipantReconnecting { participant_id }
                if *participant_id == nurse_id =>
            {
                Some(())
            }
            _ => None,
        })
        .await?;

    // Back with the same link: same participant, media both ways again.
    let back = Peer::join(
        Flavor::Str0m,
        &server,
        &room,
        &nurse_token,
        "nurse again (str0m)",
        PeerOptions::default(),
    )
    .await?;
    assert_eq!(back.id(), nurse_id, "the place was kept");
    assert!(back.joined.resumed, "joined says resumed");
    doctor
        .wait_msg(mark, MSG_TIMEOUT, "participant_reconnected", |m| match m {
            ServerMsg::ParticipantReconnected { participant_id } if *participant_id == nurse_id => {
                Some(())
            }
            _ => None,
        })
        .await?;
    doctor
        .wait_more_media(nurse_id, FRAMES, MEDIA_TIMEOUT)
        .await?;
    for kind in [MediaKind::Audio, MediaKind::Video] {
        back.wait_frames(doctor.id(), kind, FRAMES, MEDIA_TIMEOUT)
            .await?;
    }
    println!(
        "reconnect over loopback: {FRAMES} new frames of each kind both ways {:.2} s after the cut",
        cut.elapsed().as_secs_f64()
    );
    let left = doctor.events.messages().into_iter().any(|m| {
        matches!(m, ServerMsg::ParticipantLeft { participant_id, .. } if participant_id == nurse_id)
    });
    assert!(!left, "the doctor never saw the nurse leave");
    for p in [&doctor, &back] {
        assert!(p.failures().is_empty(), "{}", p.describe());
    }

    // The record keeps the gap, ended by the return.
    back.close().await;
    doctor.close().await;
    let (status, _) = api.end_consultation(&room).await?;
    assert_eq!(status, 200);
    let (status, record) = api
        .admin(
            "GET",
            &format!("/api/v1/consultations/{room}/record.json"),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{record}");
    let gaps: Vec<&serde_json::Value> = record["continuity"]["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["participant_id"] == nurse_id.0)
        .flat_map(|p| p["gaps"].as_array().into_iter().flatten())
        .collect();
    assert!(
        gaps.iter().any(|g| g["outcome"] == "resumed"),
        "a resumed gap in {}",
        record["continuity"]
    );
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_session_with_the_same_link_replaces_the_first() -> anyhow::Result<()> {
    let _serial = serial().await;
    let server = TestServer::start().await?;
    let api = server.api();
    let room = api
        .create_consultation(ConsultationKind::Visit, "Khám từ xa")
        .await?;
    let token = api.mint_link(&room, Role::Doctor, "BS. An").await?;
    let mut first = server.signal().await?;
    first.hello().await?;
    let a = first.join(&room, &token).await?;
    let mut second = server.signal().await?;
    second.hello().await?;
    let b = second.join(&room, &token).await?;
    assert_eq!(b.you.id, a.you.id);
    assert!(b.resumed);
    first
        .recv_until(MSG_TIMEOUT, "error replaced", |m| {
            matches!(
                m,
                ServerMsg::Error {
                    code: ErrorCode::Replaced,
                    ..
                }
            )
            .then_some(())
        })
        .await?;
    first.expect_close(MSG_TIMEOUT).await?;
    // The second one is the live one (ping waits for its pong).
    second.ping(7).await?;
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_check_hands_out_turn_credentials_when_configured() -> anyhow::Result<()> {
    let _serial = serial().await;
    let server = TestServer::start_with(|c| {
        c.turn = Some(tuxa_server::turn::TurnConfig {
            urls: vec!["turns:turn.example.vn:443?transport=tcp".into()],
            secret: "north-secret".into(),
            ttl: Duration::from_secs(3600),
        });
    })
    .await?;
    let api = server.api();
    let room = api
        .create_consultation(ConsultationKind::Visit, "Khám từ xa")
        .await?;
    let token = api.mint_link(&room, Role::Patient, "Bệnh nhân").await?;
    let (status, body) = api.join_check(room.as_str(), &token).await?;
    assert_eq!(status, 200, "{body}");
    let servers = body["ice_servers"].as_array().expect("ice_servers");
    assert_eq!(servers.len(), 1);
    let s = &servers[0];
    assert_eq!(s["urls"][0], "turns:turn.example.vn:443?transport=tcp");
    let username = s["username"].as_str().unwrap();
    let expiry: u64 = username.split(':').next().unwrap().parse()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    assert!(expiry > now + 3500 && expiry <= now + 3601, "{username}");
    assert_eq!(
        s["credential"].as_str().unwrap(),
        tuxa_server::turn::password("north-secret", username)
    );
    // A bad link gets no credentials.
    let (status, body) = api.join_check(room.as_str(), "v1.AAAA").await?;
    assert_ne!(status, 200);
    assert!(body.get("ice_servers").is_none());
    server.shutdown().await?;
    Ok(())
}

/// The `a=ice-ufrag` of an SDP.
fn ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_accepts_an_ice_restart_in_a_client_offer() -> anyhow::Result<()> {
    let _serial = serial().await;
    let server = TestServer::start().await?;
    let api = server.api();
    let room = api
        .create_consultation(ConsultationKind::Visit, "Khám từ xa")
        .await?;
    let doctor = Peer::join_new(
        Flavor::WebrtcRs,
        &server,
        &room,
        Role::Doctor,
        "BS. An",
        PeerOptions::default(),
    )
    .await?;
    let nurse = Peer::join_new(
        Flavor::Str0m,
        &server,
        &room,
        Role::Nurse,
        "YT. Bình",
        PeerOptions::default(),
    )
    .await?;
    for (rx, from) in [(&doctor, &nurse), (&nurse, &doctor)] {
        for kind in [MediaKind::Audio, MediaKind::Video] {
            rx.wait_frames(from.id(), kind, FRAMES, MEDIA_TIMEOUT)
                .await?;
        }
    }
    let answers = |p: &Peer| -> Vec<String> {
        p.events
            .messages()
            .into_iter()
            .filter_map(|m| match m {
                ServerMsg::Answer { sdp } => ufrag(&sdp),
                _ => None,
            })
            .collect()
    };
    let before = answers(&nurse);
    let first = before
        .first()
        .cloned()
        .expect("an answer to the first offer");
    // The network changed under a live WebSocket: new ICE credentials, same session.
    let mark = nurse.events.len();
    nurse.ice_restart();
    nurse
        .wait_msg(mark, MSG_TIMEOUT, "the answer to the restart", |m| {
            matches!(m, ServerMsg::Answer { .. }).then_some(())
        })
        .await?;
    let after = answers(&nurse);
    let last = after.last().cloned().expect("an answer to the restart");
    assert_ne!(
        last, first,
        "str0m (ICE-lite) answers an ICE restart with new credentials of its own"
    );
    // Media keeps flowing both ways over the restarted ICE (same DTLS).
    nurse
        .wait_more_media(doctor.id(), FRAMES, MEDIA_TIMEOUT)
        .await?;
    doctor
        .wait_more_media(nurse.id(), FRAMES, MEDIA_TIMEOUT)
        .await?;
    let errors: Vec<ServerMsg> = nurse
        .events
        .messages()
        .into_iter()
        .filter(|m| matches!(m, ServerMsg::Error { .. }))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(nurse.failures().is_empty(), "{}", nurse.describe());
    doctor.close().await;
    nurse.close().await;
    server.shutdown().await?;
    Ok(())
}
