//! ICE over TCP (passive candidates on the server, RFC 6544; RFC 4571 framing): a patient whose
//! network blocks UDP reaches the SFU over the media TCP port only, and media flows between them
//! and a participant on UDP in both directions. What arrives on the media TCP port from strangers
//! (garbage, frames too long or empty, an HTTP request, silence) closes that connection only.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-tests cargo test --release -p tuxa-tests --test ice_tcp`

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::future::try_join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tuxa_protocol::{ConsultationKind, MediaKind, Role};
use tuxa_tests::{Flavor, Peer, PeerOptions, TestServer, serial};

const MEDIA_TIMEOUT: Duration = Duration::from_secs(20);
const FRAMES: u64 = 40;

/// Waits until `rx` got `FRAMES` intact frames of both kinds from `from`.
async fn expect_media(rx: &Peer, from: &Peer) -> anyhow::Result<()> {
    try_join_all(
        [MediaKind::Audio, MediaKind::Video]
            .map(|kind| rx.wait_frames(from.id(), kind, FRAMES, MEDIA_TIMEOUT)),
    )
    .await?;
    Ok(())
}

/// Waits until the server closes `s` (EOF or reset), reading and discarding what it sends;
/// returns how long that took.
async fn closed_within(mut s: TcpStream, limit: Duration) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at((t0 + limit).into(), s.read(&mut buf)).await {
            Err(_) => bail!("still open after {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(t0.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

async fn connect_and_send(addr: SocketAddr, bytes: &[u8]) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    if !bytes.is_empty() {
        s.write_all(bytes).await?;
    }
    Ok(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_only_patient_and_udp_doctor_exchange_media() -> anyhow::Result<()> {
    let _serial = serial().await;
    let server = TestServer::start().await?;
    let tcp_addr = server
        .media_tcp_addr
        .context("the test server has media TCP")?;
    let api = server.api();
    let room = api
        .create_consultation(ConsultationKind::Visit, "Khám từ xa — mạng chặn UDP")
        .await?;

    let doctor = Peer::join_new(
        Flavor::WebrtcRs,
        &server,
        &room,
        Role::Doctor,
        "Bác sĩ UDP",
        PeerOptions::default(),
    )
    .await?;
    let patient = Peer::join_admitted(
        Flavor::Str0m,
        &server,
        &room,
        Role::Patient,
        "Bệnh nhân TCP",
        PeerOptions {
            tcp_only: Some(tcp_addr),
            ..PeerOptions::default()
        },
        &doctor,
    )
    .await?;

    doctor.wait_media_up(MEDIA_TIMEOUT).await?;
    patient.wait_media_up(MEDIA_TIMEOUT).await?;
    expect_media(&doctor, &patient)
        .await
        .context("doctor (UDP) receiving the patient (TCP)")?;
    expect_media(&patient, &doctor)
        .await
        .context("patient (TCP) receiving the doctor (UDP)")?;
    // Everything the patient got came over TCP: it offered no UDP candidate.
    assert_eq!(
        patient.tx.udp_packets_in.load(Ordering::Relaxed),
        0,
        "{}",
        patient.describe()
    );
    assert!(
        patient.tx.tcp_packets_in.load(Ordering::Relaxed) > 2 * FRAMES,
        "{}",
        patient.describe()
    );

    // Strangers on the media TCP port: each is closed, nothing else is.
    let mut http = b"GET / HTTP/1.1\r\nHost: tuxa\r\n\r\n".to_vec(); // length 0x4745: too long
    http.extend_from_slice(&[0; 64]);
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("garbage frame", [&[0, 5][..], b"hello"].concat()),
        (
            "STUN-looking frame with no peer's ufrag",
            [
                &[0, 20][..],
                &[0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42],
                &[7; 12],
            ]
            .concat(),
        ),
        ("oversize length", vec![0xff, 0xff, 1, 2, 3]),
        (
            "just over the maximum",
            [&[0x08, 0x01][..], &[0; 2049]].concat(),
        ),
        ("empty frame", vec![0, 0]),
        ("an HTTP request", http),
    ];
    let mut checks = Vec::new();
    for (what, bytes) in bad {
        let s = connect_and_send(tcp_addr, &bytes).await?;
        checks.push(async move {
            closed_within(s, Duration::from_secs(3))
                .await
                .with_context(|| format!("{what}: the server did not close the connection"))
        });
    }
    // Silence: closed after the handshake timeout (10 s), not before.
    let silent = connect_and_send(tcp_addr, &[]).await?;
    let silent = async {
        let took = closed_within(silent, Duration::from_secs(15))
            .await
            .context("a silent connection was not closed")?;
        anyhow::ensure!(
            took >= Duration::from_secs(8),
            "a silent connection was closed after {took:?}, before the 10 s handshake timeout"
        );
        anyhow::Ok(took)
    };
    // Meanwhile media keeps flowing both ways over the patient's own connection.
    let media = async {
        doctor
            .wait_more_media(patient.id(), FRAMES, MEDIA_TIMEOUT)
            .await?;
        patient
            .wait_more_media(doctor.id(), FRAMES, MEDIA_TIMEOUT)
            .await
    };
    let (closed, silent, media) = tokio::join!(try_join_all(checks), silent, media);
    closed?;
    let took = silent?;
    media.context("media after the strangers came")?;
    tracing::info!("silent connection closed after {took:?}");
    // And still flows after all of them were closed.
    patient
        .wait_more_media(doctor.id(), FRAMES, MEDIA_TIMEOUT)
        .await?;
    doctor
        .wait_more_media(patient.id(), FRAMES, MEDIA_TIMEOUT)
        .await?;

    for p in [&doctor, &patient] {
        assert!(p.failures().is_empty(), "{}", p.describe());
        assert_eq!(p.rx.corrupt(), 0, "{}", p.describe());
        tracing::info!("{}", p.describe());
    }
    assert!(server.is_running());
    doctor.close().await;
    patient.close().await;
    server.shutdown().await?;
    Ok(())
}

/// Two patients over TCP from the same host (distinct connections), a doctor over UDP: the
/// server routes each connection's packets to its own peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tcp_patients_are_routed_apart() -> anyhow::Result<()> {
    let _serial = serial().await;
    let server = TestServer::start().await?;
    let tcp_addr = server
        .media_tcp_addr
        .context("the test server has media TCP")?;
    let api = server.api();
    let room = api
        .create_consultation(ConsultationKind::Conference, "Hội chẩn — hai điểm TCP")
        .await?;
    let doctor = Peer::join_new(
        Flavor::Str0m,
        &server,
        &room,
        Role::Doctor,
        "Bác sĩ UDP",
        PeerOptions::default(),
    )
    .await?;
    let tcp = PeerOptions {
        tcp_only: Some(tcp_addr),
        ..PeerOptions::default()
    };
    let a = Peer::join_new(
        Flavor::Str0m,
        &server,
        &room,
        Role::Nurse,
        "Trạm A (TCP)",
        tcp.clone(),
    )
    .await?;
    let b = Peer::join_new(
        Flavor::Str0m,
        &server,
        &room,
        Role::Nurse,
        "Trạm B (TCP)",
        tcp,
    )
    .await?;
    for p in [&doctor, &a, &b] {
        p.wait_media_up(MEDIA_TIMEOUT).await?;
    }
    let pairs = [
        (&doctor, &a),
        (&doctor, &b),
        (&a, &doctor),
        (&a, &b),
        (&b, &doctor),
        (&b, &a),
    ];
    try_join_all(pairs.iter().map(|(rx, tx)| expect_media(rx, tx))).await?;
    for p in [&doctor, &a, &b] {
        assert!(p.failures().is_empty(), "{}", p.describe());
        assert_eq!(p.rx.corrupt(), 0, "{}", p.describe());
    }
    for p in [&a, &b] {
        assert_eq!(p.tx.udp_packets_in.load(Ordering::Relaxed), 0);
    }
    doctor.close().await;
    a.close().await;
    b.close().await;
    server.shutdown().await?;
    Ok(())
}
