//! Recordings read back over HTTP (server/src/playback.rs): the list, a
//! track streamed by byte range and decrypted on the fly, a download, the
//! audit of each, and the faults — a range past the end, a tampered or
//! missing file, a server without its recording key. Who may read is the
//! permission matrix's (permissions.rs).

use tuxa_protocol::ConsultationKind;
use tuxa_tests::http::Auth;
use tuxa_tests::{TestServer, recordings};

/// Plaintext whose every byte says where it is, so a slice in the wrong
/// place cannot pass for the right one.
fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn audit_of(dir: &std::path::Path, consultation: &str) -> anyhow::Result<Vec<(String, String)>> {
    let c = rusqlite::Connection::open(dir.join("tuxa.sqlite3"))?;
    let mut q = c.prepare(
        "SELECT action, detail FROM audit WHERE consultation_id = ?1 AND action LIKE 'recording_%' ORDER BY id",
    )?;
    let rows = q
        .query_map([consultation], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

#[tokio::test]
async fn a_track_streams_by_range_downloads_whole_and_each_opening_is_audited() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    let api = server.api();
    let room = api
        .create_consultation(ConsultationKind::Conference, "Hội chẩn ghi hình")
        .await?;
    let body = plaintext(23_456);
    let seeded = recordings::seed(&server.data_dir, room.as_str(), &body)?;
    let key = Auth::Bearer(api.admin_key());

    // The list names the track with what an inspector checks it by.
    let list = api
        .get_with(
            &format!("/api/v1/consultations/{room}/recordings"),
            &[],
            key,
        )
        .await?;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.json["available"], true);
    let track = &list.json["recordings"][0]["tracks"][0];
    assert_eq!(track["id"], seeded.file.0);
    assert_eq!(track["state"], "complete");
    assert_eq!(track["content_type"], "video/webm");
    assert_eq!(track["size"], std::fs::metadata(&seeded.path)?.len());
    assert_eq!(track["sha256"].as_str().unwrap_or_default().len(), 64);
    assert_eq!(list.json["recordings"][0]["started_by"], "BS. Ghi Hình");
    let url = track["media_url"].as_str().unwrap_or_default().to_owned();

    // The whole stream, decrypted.
    let whole = api.get_with(&url, &[], key).await?;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(whole.header("cache-control"), Some("no-store"));
    assert_eq!(whole.bytes, body, "the plaintext, byte for byte");

    // Ranges across the sealed chunks' edges (5,000-byte chunks after a
    // 64-byte head), a suffix, and one clipped at the end.
    for (range, a, b) in [
        ("bytes=0-99", 0, 99),
        ("bytes=4990-15070", 4990, 15070),
        ("bytes=23000-", 23000, 23455),
        ("bytes=-100", 23356, 23455),
        ("bytes=23450-99999", 23450, 23455),
    ] {
        let part = api.get_with(&url, &[("Range", range)], key).await?;
        assert_eq!(part.status, 206, "{range}");
        assert_eq!(
            part.header("content-range"),
            Some(format!("bytes {a}-{b}/23456").as_str()),
            "{range}"
        );
        assert_eq!(part.bytes, body[a..=b], "{range}");
    }
    // Past the end: 416 with the length, as RFC 9110 asks.
    let past = api
        .get_with(&url, &[("Range", "bytes=23456-")], key)
        .await?;
    assert_eq!(past.status, 416);
    assert_eq!(past.header("content-range"), Some("bytes */23456"));

    let download = api.get_with(&format!("{url}?download=1"), &[], key).await?;
    assert_eq!(download.status, 200);
    assert!(
        download.header("content-disposition").is_some_and(|d| d
            .starts_with("attachment; filename=\"tuxa-")
            && d.ends_with(".webm\"")),
        "{:?}",
        download.headers
    );
    assert_eq!(download.bytes, body);

    // Audited: the three streams opened from the start (whole, 0-99 and the
    // download), not the seeks. The audit is written in order but without
    // waiting, so give it a moment.
    let mut audit = Vec::new();
    for _ in 0..50 {
        audit = audit_of(&server.data_dir, room.as_str())?;
        if audit
            .iter()
            .filter(|(a, _)| a != "recording_file_sealed")
            .count()
            >= 3
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let actions: Vec<&str> = audit
        .iter()
        .map(|(a, _)| a.as_str())
        .filter(|a| *a != "recording_file_sealed")
        .collect();
    assert_eq!(
        actions,
        [
            "recording_viewed",
            "recording_viewed",
            "recording_downloaded"
        ],
        "{audit:?}"
    );
    assert!(
        audit[1].1.contains(&format!("\"file\":{}", seeded.file.0)),
        "{audit:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_tampered_or_missing_file_is_refused_with_a_clear_error() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let api = server.api();
    let room = api
        .create_consultation(ConsultationKind::Visit, "Khám ghi hình")
        .await?;
    let key = Auth::Bearer(api.admin_key());
    let a = recordings::seed(&server.data_dir, room.as_str(), &plaintext(20_000))?;
    let b = recordings::seed(&server.data_dir, room.as_str(), &plaintext(12_345))?;
    let url = |f: &recordings::Seeded| format!("/api/v1/recordings/{}", f.file.0);

    // One byte changed in the middle: the chunks before it still stream,
    // the stream through it is cut short (never passed off as whole).
    let mut bytes = std::fs::read(&a.path)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&a.path, &bytes)?;
    let first = api
        .get_with(&url(&a), &[("Range", "bytes=0-999")], key)
        .await?;
    assert_eq!(first.status, 206);
    assert_eq!(first.bytes, a.plaintext[..1000]);
    let through = api.get_with(&url(&a), &[], key).await;
    // An error here is the connection cut: the client knows it is not whole.
    if let Ok(r) = through {
        assert!(
            r.status != 200 || r.bytes.len() < a.plaintext.len(),
            "a tampered file streamed whole"
        );
    }

    // The header changed: nothing opens, and the answer says why.
    let mut bytes = std::fs::read(&b.path)?;
    bytes[8] ^= 0x01;
    std::fs::write(&b.path, &bytes)?;
    let r = api.get_with(&url(&b), &[], key).await?;
    assert_eq!(r.status, 500);
    assert_eq!(r.error_code(), Some("internal"));
    assert!(r.body.contains("integrity"), "{}", r.body);

    std::fs::remove_file(&b.path)?;
    let r = api.get_with(&url(&b), &[], key).await?;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("missing"), "{}", r.body);

    // Unknown and malformed ids.
    for path in [
        "/api/v1/recordings/999999",
        "/api/v1/recordings/x",
        "/api/v1/recordings/-1",
    ] {
        let r = api.get_with(path, &[], key).await?;
        assert_eq!(r.status, 404, "{path}");
    }
    Ok(())
}

#[tokio::test]
async fn without_its_key_the_server_serves_calls_and_says_recordings_are_unavailable()
-> anyhow::Result<()> {
    let server = TestServer::start_with(|c| {
        c.recording.keys = tuxa_server::vault::KeySource::None;
    })
    .await?;
    let api = server.api();
    let room = api
        .create_consultation(ConsultationKind::Visit, "Khám")
        .await?;
    // A file sealed while the key was there (the seeding has it).
    let seeded = recordings::seed(&server.data_dir, room.as_str(), &plaintext(3000))?;
    let api = server.api();
    let key = Auth::Bearer(api.admin_key());
    let list = api
        .get_with(
            &format!("/api/v1/consultations/{room}/recordings"),
            &[],
            key,
        )
        .await?;
    assert_eq!(list.status, 200);
    assert_eq!(list.json["available"], false);
    let r = api
        .get_with(&format!("/api/v1/recordings/{}", seeded.file.0), &[], key)
        .await?;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.error_code(), Some("recording_unavailable"));
    // Calls still work: a new consultation and a link.
    let other = api
        .create_consultation(ConsultationKind::Visit, "Khám tiếp")
        .await?;
    api.mint_link(&other, tuxa_protocol::Role::Patient, "Bệnh nhân")
        .await?;
    Ok(())
}
