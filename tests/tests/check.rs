//! The pre-call check's room, end to end: a stranger's `POST /api/v1/check` gives a link that a
//! real WebRTC peer (str0m, over real UDP and DTLS) joins; media goes up to the SFU and the SFU's
//! packets come back; then the peer leaves and the room is gone — and the SQLite file holds
//! nothing of it (no consultation, attendance, consent, link gap, quality or audit row). The same
//! steps in a real consultation do write rows (so the comparison can fail).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use tuxa_protocol::{ConsultationKind, RoomId};
use tuxa_tests::{Auth, Flavor, Peer, PeerOptions, TestServer, serial};

/// Rows per table that a consultation's life writes.
fn rows(dir: &Path) -> Value {
    let c = rusqlite::Connection::open(dir.join("tuxa.sqlite3")).unwrap();
    let mut out = serde_json::Map::new();
    for table in [
        "consultations",
        "attendance",
        "consents",
        "link_gaps",
        "link_quality",
        "audit",
    ] {
        let n: i64 = c
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        out.insert(table.into(), json!(n));
    }
    Value::Object(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_reaches_the_sfu_and_leaves_no_trace_in_the_record() -> anyhow::Result<()> {
    let _serial = serial().await;
    let server = TestServer::start().await?;
    let api = server.api();
    // Let the start's own writes land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rows(&server.data_dir);

    let r = api
        .request_raw("POST", "/api/v1/check", None, Auth::None)
        .await?;
    anyhow::ensure!(r.status == 200, "check: {} {}", r.status, r.body);
    let room = RoomId::parse(r.json["room"].as_str().unwrap_or_default())
        .map_err(|e| anyhow::anyhow!("room id: {e}"))?;
    let token = r.json["token"].as_str().unwrap_or_default().to_owned();
    assert_eq!(r.json["expires_in_secs"], 30);

    let peer = Peer::join(
        Flavor::Str0m,
        &server,
        &room,
        &token,
        "check (str0m)",
        PeerOptions::default(),
    )
    .await?;
    peer.wait_media_up(Duration::from_secs(15)).await?;
    // A few seconds of audio and video up; the SFU's RTCP and STUN come back down.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent = peer.tx.video_frames.load(Ordering::Relaxed);
    let back = peer.tx.udp_packets_in.load(Ordering::Relaxed);
    assert!(sent > 20, "video frames sent: {sent}");
    assert!(back > 0, "packets from the SFU: {back}");
    peer.leave();
    peer.close().await;
    // The hub's 1 s tick closes the room; the store's writes are asynchronous.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let after = rows(&server.data_dir);
    assert_eq!(before, after, "the check wrote to the record");

    // The link is dead with its room.
    let (status, body) = api.join_check(room.as_str(), &token).await?;
    assert_eq!(status, 404, "{body}");

    // The same in a real consultation writes rows: the comparison above can fail.
    let real = api
        .create_consultation(ConsultationKind::Visit, "Khám từ xa")
        .await?;
    let nurse = Peer::join_new(
        Flavor::Str0m,
        &server,
        &real,
        tuxa_protocol::Role::Nurse,
        "YT. Lò Thị Hoa",
        PeerOptions::default(),
    )
    .await?;
    nurse.wait_media_up(Duration::from_secs(15)).await?;
    nurse.leave();
    nurse.close().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let real_rows = rows(&server.data_dir);
    assert_ne!(real_rows["attendance"], after["attendance"], "{real_rows}");
    assert_ne!(real_rows["audit"], after["audit"], "{real_rows}");

    server.shutdown().await?;
    Ok(())
}
