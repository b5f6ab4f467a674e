//! Media end to end: real WebRTC clients (webrtc-rs and str0m, neither of them the server's own
//! code path) publish synthetic Opus and VP8 frames through a whole in-process tuxa server, over
//! the real WebSocket and the real UDP port with DTLS-SRTP, and check that every frame they
//! receive is intact and comes from whom the server says.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-tests cargo test -p tuxa-tests --test media`
//! (`RUST_LOG=tuxa_tests=debug,tuxa_server=debug` for more).

use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use tuxa_protocol::{
    ClientMsg, ConsultationKind, LeaveReason, MediaKind, ParticipantId, Role, ServerMsg,
};
use tuxa_tests::{Flavor, Peer, PeerEvent, PeerOptions, TestServer, serial};

/// How long media may take to start flowing (ICE, DTLS, negotiation, a keyframe).
const MEDIA_TIMEOUT: Duration = Duration::from_secs(20);
/// Signaling replies.
const MSG_TIMEOUT: Duration = Duration::from_secs(10);
/// Intact frames of each kind each receiver must get from each sender.
const FRAMES: u64 = 40;

/// Waits until `rx` got `FRAMES` intact frames of both kinds from each of `from`.
async fn expect_media_from(rx: &Peer, from: &[&Peer]) -> anyhow::Result<()> {
    let waits = from.iter().flat_map(|p| {
        [MediaKind::Audio, MediaKind::Video]
            .map(|kind| rx.wait_frames(p.id(), kind, FRAMES, MEDIA_TIMEOUT))
    });
    try_join_all(waits).await?;
    Ok(())
}

/// Every peer receives from every other.
async fn expect_full_mesh(peers: &[&Peer]) -> anyhow::Result<()> {
    let waits = peers.iter().map(|rx| {
        let others: Vec<&Peer> = peers
            .iter()
            .copied()
            .filter(|p| p.id() != rx.id())
            .collect();
        async move { expect_media_from(rx, &others).await }
    });
    try_join_all(waits).await?;
    Ok(())
}

/// What is wrong with what these peers saw: damaged frames, frames of one's own, mislabelled
/// tracks, peer failures, frames that are not protocol messages, and a first video frame from
/// some sender that was not a keyframe. Collected rather than asserted at once, so that a test
/// goes on to check the rest and reports everything at the end.
fn problems(peers: &[&Peer]) -> Vec<String> {
    let mut out = Vec::new();
    for p in peers {
        let who = format!("{} ({})", p.label, p.id());
        for f in p.failures() {
            out.push(format!("{who}: peer failed: {f}"));
        }
        if p.rx.corrupt() > 0 {
            out.push(format!(
                "{who}: {} damaged frames: {:?}",
                p.rx.corrupt(),
                p.rx.errors()
            ));
        }
        for kind in [MediaKind::Audio, MediaKind::Video] {
            if p.rx.intact(p.id(), kind) > 0 {
                out.push(format!("{who}: its own {kind:?} came back to it"));
            }
        }
        for (from, kind) in p.rx.senders() {
            let t = p.rx.track(from, kind);
            if t.label_mismatch > 0 {
                out.push(format!(
                    "{who}: {} frames from {from} on a track whose MediaStream id is not {from}",
                    t.label_mismatch
                ));
            }
            if kind == MediaKind::Video && t.first.map(|f| f.1) != Some(true) {
                out.push(format!(
                    "{who}: the first video frame from {from} (#{:?}) was not a keyframe",
                    t.first_counter
                ));
            }
        }
        for e in p.events.entries() {
            if let PeerEvent::Note(n) = &e.event
                && n.starts_with("UNPARSABLE")
            {
                out.push(format!("{who}: {n}"));
            }
        }
    }
    out
}

/// Fails with every problem and every peer's story.
fn assert_no_problems(problems: Vec<String>, peers: &[&Peer]) {
    if !problems.is_empty() {
        let stories: Vec<String> = peers.iter().map(|p| p.describe()).collect();
        panic!(
            "{} problems:\n  {}\n\n{}",
            problems.len(),
            problems.join("\n  "),
            stories.join("\n")
        );
    }
}

fn joined_msg(id: ParticipantId) -> impl FnMut(&ServerMsg) -> Option<()> {
    move |m| match m {
        ServerMsg::ParticipantJoined { participant } if participant.id == id => Some(()),
        _ => None,
    }
}

/// `track_published` messages for tracks of `owner` seen so far: (track id, kind).
fn published_by(p: &Peer, owner: ParticipantId) -> Vec<(String, MediaKind)> {
    p.events
        .messages()
        .into_iter()
        .filter_map(|m| match m {
            ServerMsg::TrackPublished {
                participant_id,
                track,
            } if participant_id == owner => Some((track.id.0, track.kind)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visit_webrtc_rs_and_str0m_exchange_intact_media() -> anyhow::Result<()> {
    let _serial = serial().await;
    let server = TestServer::start().await?;
    let api = server.api();
    let room = api
        .create_consultation(ConsultationKind::Visit, "Khám từ xa — Nội khoa")
        .await?;

    let doctor = Peer::join_new(
        Flavor::WebrtcRs,
        &server,
        &room,
        Role::Doctor,
        "Bác sĩ Trần Thị B",
        PeerOptions::default(),
    )
    .await?;
    assert_eq!(doctor.joined.you.role, Role::Doctor);
    assert_eq!(doctor.joined.you.name, "Bác sĩ Trần Thị B");
    assert!(doctor.joined.participants.is_empty());

    // The patient waits in the lobby until the doctor admits them.
    let patient = Peer::join_admitted(
        Flavor::Str0m,
        &server,
        &room,
        Role::Patient,
        "Nguyễn Văn A",
        PeerOptions::default(),
        &doctor,
    )
    .await?;
    assert_eq!(patient.joined.you.role, Role::Patient);
    assert_eq!(
        patient
            .joined
            .participants
            .iter()
            .map(|p| p.id)
            .collect::<Vec<_>>(),
        vec![doctor.id()],
        "the patient sees the doctor already there"
    );
    doctor
        .wait_msg(
            0,
            MSG_TIMEOUT,
            "participant_joined (patient)",
            joined_msg(patient.id()),
        )
        .await?;

    doctor.wait_media_up(MEDIA_TIMEOUT).await?;
    patient.wait_media_up(MEDIA_TIMEOUT).await?;
    expect_full_mesh(&[&doctor, &patient]).await?;

    // Each was told about the other's two tracks, one of each kind.
    for (rx, from) in [(&doctor, &patient), (&patient, &doctor)] {
        let mut kinds: Vec<_> = published_by(rx, from.id())
            .into_iter()
            .map(|t| t.1)
            .collect();
        kinds.sort_by_key(|k| *k == MediaKind::Video);
        assert_eq!(
            kinds,
            vec![MediaKind::Audio, MediaKind::Video],
            "track_published for {}'s tracks: {}",
            from.label,
            rx.describe()
        );
    }

    // Mute is relayed.
    let mark = patient.events.len();
    doctor.send(ClientMsg::Mute {
        kind: MediaKind::Video,
        muted: true,
    });
    let doctor_id = doctor.id();
    patient
        .wait_msg(mark, MSG_TIMEOUT, "mute_changed", |m| match m {
            ServerMsg::MuteChanged {
                participant_id,
                kind: MediaKind::Video,
                muted: true,
            } if *participant_id == doctor_id => Some(()),
            _ => None,
        })
        .await?;

    for p in [&doctor, &patient] {
        tracing::info!("{}", p.describe());
    }
    assert_no_problems(problems(&[&doctor, &patient]), &[&doctor, &patient]);
    doctor.close().await;
    patient.close().await;
    server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conference_of_three_survives_one_leaving() -> anyhow::Result<()> {
    let _serial = serial().await;
    let server = TestServer::start().await?;
    let api = server.api();
    let room = api
        .create_consultation(ConsultationKind::Conference, "Hội chẩn liên viện")
        .await?;

    let a = Peer::join_new(
        Flavor::WebrtcRs,
        &server,
        &room,
        Role::Doctor,
        "BV tỉnh",
        PeerOptions::default(),
    )
    .await?;
    let b = Peer::join_new(
        Flavor::Str0m,
        &server,
        &room,
        Role::Doctor,
        "TTYT huyện",
        PeerOptions::default(),
    )
    .await?;
    let c = Peer::join_new(
        Flavor::WebrtcRs,
        &server,
        &room,
        Role::Nurse,
        "Trạm y tế xã",
        PeerOptions::default(),
    )
    .await?;
    assert_eq!(
        c.joined.participants.len(),
        2,
        "c sees a and b: {:?}",
        c.joined
    );

    expect_full_mesh(&[&a, &b, &c]).await?;

    // a leaves. b and c are told, lose a's tracks through a renegotiation, and keep talking.
    let a_id = a.id();
    let a_tracks = published_by(&b, a_id);
    assert_eq!(
        a_tracks.len(),
        2,
        "b was told of a's tracks: {}",
        b.describe()
    );
    let marks = [b.events.len(), c.events.len()];
    let a_mark = a.events.len();
    a.leave();
    a.events
        .wait_for(
            a_mark,
            MSG_TIMEOUT,
            "the server closing a's session after leave",
            |e| matches!(e, PeerEvent::Closed(_)).then_some(()),
        )
        .await?;

    for (p, mark) in [(&b, marks[0]), (&c, marks[1])] {
        p.wait_msg(mark, MSG_TIMEOUT, "participant_left for a", |m| match m {
            ServerMsg::ParticipantLeft {
                participant_id,
                reason,
            } if *participant_id == a_id => Some(*reason),
            _ => None,
        })
        .await
        .map(|(_, reason)| assert_eq!(reason, LeaveReason::Left, "{}", p.describe()))?;
        for (track_id, _) in &a_tracks {
            p.wait_msg(
                mark,
                MSG_TIMEOUT,
                &format!("track_unpublished {track_id}"),
                |m| match m {
                    ServerMsg::TrackUnpublished {
                        participant_id,
                        track_id: t,
                    } if *participant_id == a_id && &t.0 == track_id => Some(()),
                    _ => None,
                },
            )
            .await?;
        }
        p.wait_answered(mark, MSG_TIMEOUT).await?;
    }

    let after = Instant::now();
    try_join_all([
        b.wait_more_media(c.id(), FRAMES, MEDIA_TIMEOUT),
        c.wait_more_media(b.id(), FRAMES, MEDIA_TIMEOUT),
    ])
    .await?;
    tracing::info!(
        "media kept flowing; {FRAMES} more frames each way in {:?}",
        after.elapsed()
    );
    // Nothing of a's arrives any more.
    let a_frames = [
        b.rx.intact(a_id, MediaKind::Video),
        c.rx.intact(a_id, MediaKind::Video),
    ];
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        a_frames,
        [
            b.rx.intact(a_id, MediaKind::Video),
            c.rx.intact(a_id, MediaKind::Video)
        ],
        "video from a still arrives after a left"
    );

    for p in [&a, &b, &c] {
        tracing::info!("{}", p.describe());
    }
    assert_no_problems(problems(&[&a, &b, &c]), &[&a, &b, &c]);
    a.close().await;
    b.close().await;
    c.close().await;
    server.shutdown().await?;
    Ok(())
}

/// Publishers here send keyframes only when asked (first frame, then PLI/FIR), so a late
/// joiner only sees a keyframe if the server asks the publishers for one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiners_get_a_keyframe_promptly() -> anyhow::Result<()> {
    let _serial = serial().await;
    let server = TestServer::start().await?;
    let api = server.api();
    let room = api
        .create_consultation(ConsultationKind::Conference, "Hội chẩn")
        .await?;

    let a = Peer::join_new(
        Flavor::WebrtcRs,
        &server,
        &room,
        Role::Doctor,
        "A",
        PeerOptions::default(),
    )
    .await?;
    let b = Peer::join_new(
        Flavor::Str0m,
        &server,
        &room,
        Role::Doctor,
        "B",
        PeerOptions::default(),
    )
    .await?;
    expect_full_mesh(&[&a, &b]).await?;
    // Let the publishers' first keyframes be long gone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let keyframes_before = [a.tx.get(&a.tx.keyframes), b.tx.get(&b.tx.keyframes)];

    let mut late_problems = Vec::new();
    for (n, flavor) in [(1, Flavor::WebrtcRs), (2, Flavor::Str0m)] {
        let late = Peer::join_admitted(
            flavor,
            &server,
            &room,
            Role::Guest,
            &format!("late {n}"),
            PeerOptions::default(),
            &a,
        )
        .await?;
        late.wait_media_up(MEDIA_TIMEOUT).await?;
        let up = Instant::now();
        for from in [&a, &b] {
            // The first keyframe, however long it takes (up to 10 s).
            let id = from.id();
            let t = late
                .rx
                .wait_until(Duration::from_secs(10), || {
                    let t = late.rx.track(id, MediaKind::Video);
                    (t.keyframes > 0).then_some(t)
                })
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "{} got no keyframe from {} in 10 s: {}",
                        late.label,
                        from.label,
                        late.describe()
                    )
                })?;
            let (first_at, first_key) = t.first.expect("a first frame");
            let key_at = t.first_keyframe_at.expect("a keyframe");
            let key_delay = key_at.saturating_duration_since(up);
            tracing::info!(
                "{} got {}'s first video frame (#{:?}, key: {first_key}) {:?} and its first keyframe {key_delay:?} after media up",
                late.label,
                from.label,
                t.first_counter,
                first_at.saturating_duration_since(up),
            );
            if !first_key {
                late_problems.push(format!(
                    "{}: the first video frame from {} (#{:?}) was not a keyframe; {} frames came before the first keyframe ({key_delay:?} after media up)",
                    late.label,
                    from.label,
                    t.first_counter,
                    t.intact - t.keyframes.min(t.intact),
                ));
            }
            if key_delay > Duration::from_secs(3) {
                late_problems.push(format!(
                    "{}: waited {key_delay:?} for a keyframe from {}",
                    late.label, from.label
                ));
            }
        }
        expect_media_from(&late, &[&a, &b]).await?;
        // (`problems` would repeat the first-frame finding above.)
        late_problems.extend(
            problems(&[&late])
                .into_iter()
                .filter(|p| !p.contains("was not a keyframe")),
        );
        late.close().await;
    }
    let keyframes_after = [a.tx.get(&a.tx.keyframes), b.tx.get(&b.tx.keyframes)];
    if !(keyframes_after[0] > keyframes_before[0] && keyframes_after[1] > keyframes_before[1]) {
        late_problems.push(format!(
            "publishers were not asked for keyframes for the late joiners: keyframes sent before {keyframes_before:?}, after {keyframes_after:?}"
        ));
    }
    late_problems.extend(problems(&[&a, &b]));
    assert_no_problems(late_problems, &[&a, &b]);
    a.close().await;
    b.close().await;
    server.shutdown().await?;
    Ok(())
}
