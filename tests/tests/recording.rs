//! Recordings end to end through a whole server (issue 13): a doctor and a
//! consenting patient publish real VP8 and Opus (encoded by Debian's ffmpeg,
//! packetized by str0m), the doctor records a few seconds, and each track,
//! downloaded through the HTTP API, is checked with an independent tool
//! (ffprobe/ffmpeg): its frame count and duration against what was sent, the
//! tracks' offsets against each other, and who the rows say was there.
//!
//! ffmpeg is required (the test command installs it): these tests fail,
//! loudly, without it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::Value;
use tuxa_protocol::{
    ClientMsg, ConsultationKind, RecordingAction, RecordingState, Role, ServerMsg,
};
use tuxa_tests::real_media::{RealMedia, run_tool, work_dir};
use tuxa_tests::{ApiClient, Auth, Flavor, Peer, PeerOptions, TestServer, serial};

const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);
const STATE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long media is recorded.
const RECORD_FOR: Duration = Duration::from_secs(4);

/// Frames sent so far by a peer: (audio, video).
fn sent(p: &Peer) -> (u64, u64) {
    (
        p.tx.audio_frames.load(Ordering::Relaxed),
        p.tx.video_frames.load(Ordering::Relaxed),
    )
}

/// What ffprobe reads in a file: frames decoded (counted) and the duration.
#[derive(Debug)]
struct Probe {
    codec: String,
    frames: u64,
    duration: f64,
    width: Option<u64>,
}

fn probe(file: &std::path::Path) -> anyhow::Result<Probe> {
    let f = file.to_str().context("a UTF-8 path")?;
    let out = run_tool(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,nb_read_frames,width:format=duration",
            "-of",
            "json",
            f,
        ],
    )?;
    let v: Value = serde_json::from_slice(&out.stdout)?;
    let s = &v["streams"][0];
    Ok(Probe {
        codec: s["codec_name"].as_str().unwrap_or_default().to_owned(),
        frames: s["nb_read_frames"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no frame count in {v}"))?,
        duration: v["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .with_context(|| format!("no duration in {v}"))?,
        width: s["width"].as_u64(),
    })
}

/// Decodes the whole file; what ffmpeg says at level `error` (empty when it
/// decodes cleanly).
fn decode_errors(file: &std::path::Path) -> anyhow::Result<String> {
    let f = file.to_str().context("a UTF-8 path")?;
    // Frames keep their own (millisecond) times: at ffmpeg's default output
    // time base of one frame (1/29.9 s, guessed from the rate), two frames
    // sent 25 ms apart by a jittery sender would collide in the null muxer,
    // which is not a decoding error.
    let out = run_tool(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            f,
            "-fps_mode",
            "passthrough",
            "-enc_time_base",
            "1:1000",
            "-f",
            "null",
            "-",
        ],
    )?;
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Lists the consultation's recordings until `done` holds (the recorder
/// finishes its files off the media task, a moment after `stop`).
async fn recordings_until(
    api: &ApiClient,
    room: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + STATE_TIMEOUT;
    loop {
        let list = api
            .get_with(
                &format!("/api/v1/consultations/{room}/recordings"),
                &[],
                Auth::Bearer(api.admin_key()),
            )
            .await?;
        ensure!(list.status == 200, "listing recordings: {}", list.body);
        if done(&list.json) {
            return Ok(list.json);
        }
        if Instant::now() > deadline {
            bail!(
                "{what}: not within {STATE_TIMEOUT:?}; last list: {:#}",
                list.json
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn download(api: &ApiClient, track: &Value, to: &std::path::Path) -> anyhow::Result<()> {
    let url = track["download_url"]
        .as_str()
        .with_context(|| format!("no download_url in {track}"))?;
    let res = api
        .get_with(url, &[], Auth::Bearer(api.admin_key()))
        .await?;
    ensure!(res.status == 200, "GET {url}: {} {}", res.status, res.body);
    // The row's size is the sealed file's; the plaintext is a little smaller
    // (chunk headers and tags).
    let sealed = track["size"].as_u64().unwrap_or(0);
    ensure!(
        !res.bytes.is_empty() && res.bytes.len() as u64 <= sealed,
        "{url}: {} bytes downloaded; the sealed file is {sealed}",
        res.bytes.len()
    );
    std::fs::write(to, &res.bytes)?;
    Ok(())
}

fn within(x: f64, lo: f64, hi: f64, pct: f64) -> bool {
    x >= lo * (1.0 - pct / 100.0) && x <= hi * (1.0 + pct / 100.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consented_visit_is_recorded_and_each_track_decodes_as_sent() -> anyhow::Result<()> {
    tuxa_tests::init_tracing();
    let _serial = serial().await;
    let dir = work_dir("visit")?;
    let media = Arc::new(RealMedia::encode(&dir, "320x240", 3)?);
    let server = TestServer::start().await?;
    let api = server.api();
    let room = api
        .create_consultation(ConsultationKind::Visit, "Khám từ xa — ghi hình")
        .await?;
    let opts = PeerOptions {
        real_media: Some(media.clone()),
        ..PeerOptions::default()
    };
    let doctor_name = "BS. Lê Thị Ghi";
    let patient_name = "Nguyễn Văn Đồng Ý";
    let doctor = Peer::join_new(
        Flavor::Str0m,
        &server,
        &room,
        Role::Doctor,
        doctor_name,
        opts.clone(),
    )
    .await?;
    let patient = Peer::join_admitted(
        Flavor::Str0m,
        &server,
        &room,
        Role::Patient,
        patient_name,
        opts,
        &doctor,
    )
    .await?;
    doctor.wait_media_up(MEDIA_TIMEOUT).await?;
    patient.wait_media_up(MEDIA_TIMEOUT).await?;

    // The harness's patient said no to recording; they now say yes (an answer
    // may be changed at any time, docs/protocol.md "Recording").
    let from = patient.events.len();
    patient.send(ClientMsg::Consent {
        text_version: "test-1".into(),
        remote_examination: true,
        third_parties: false,
        recording: true,
    });
    patient
        .events
        .wait_msg(from, STATE_TIMEOUT, "consent_recorded", |m| {
            matches!(m, ServerMsg::ConsentRecorded { .. }).then_some(())
        })
        .await?;

    // Media is up; then a pause, as when a doctor starts recording
    // once the call is under way: the SFU throttles keyframe requests (one
    // per 500 ms per layer), and the one the recorder makes at its start
    // would otherwise wait behind the subscribers' first ones (the video
    // track would then begin up to 500 ms late, by design).
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Start: both peers' counts bracket the moment recording began.
    let is_state = |want: RecordingState| {
        move |m: &ServerMsg| match m {
            ServerMsg::Recording { state, .. } if *state == want => Some(()),
            ServerMsg::Error { code, .. } => {
                panic!("recording refused: {code:?} ({m:?})")
            }
            _ => None,
        }
    };
    let (d0, p0, t0) = (sent(&doctor), sent(&patient), Instant::now());
    let from = doctor.events.len();
    doctor.send(ClientMsg::Recording {
        action: RecordingAction::Start,
    });
    doctor
        .events
        .wait_msg(
            from,
            STATE_TIMEOUT,
            "recording on",
            is_state(RecordingState::On),
        )
        .await?;
    let (d1, p1, t1) = (sent(&doctor), sent(&patient), Instant::now());

    tokio::time::sleep(RECORD_FOR).await;

    let (d2, p2, t2) = (sent(&doctor), sent(&patient), Instant::now());
    let from = doctor.events.len();
    doctor.send(ClientMsg::Recording {
        action: RecordingAction::Stop,
    });
    doctor
        .events
        .wait_msg(
            from,
            STATE_TIMEOUT,
            "recording off",
            is_state(RecordingState::Off),
        )
        .await?;
    let (d3, p3, t3) = (sent(&doctor), sent(&patient), Instant::now());

    // The rows: one recording, complete, with four complete tracks.
    let list = recordings_until(&api, room.as_str(), "four complete tracks", |v| {
        v["recordings"][0]["tracks"]
            .as_array()
            .is_some_and(|t| t.len() == 4 && t.iter().all(|t| t["state"] == "complete"))
    })
    .await?;
    let recs = list["recordings"].as_array().context("recordings")?;
    assert_eq!(recs.len(), 1, "one recording: {list:#}");
    let rec = &recs[0];
    assert_eq!(rec["state"], "complete", "{rec:#}");
    assert_eq!(rec["started_by"], doctor_name, "{rec:#}");
    assert_eq!(rec["stop_reason"], "stopped", "{rec:#}");
    let tracks = rec["tracks"].as_array().context("tracks")?;

    let mut seen = Vec::new();
    let mut offsets = Vec::new();
    let mut ends = Vec::new();
    for t in tracks {
        let (name, role, kind) = (
            t["name"].as_str().unwrap_or_default(),
            t["role"].as_str().unwrap_or_default(),
            t["kind"].as_str().unwrap_or_default(),
        );
        seen.push((name.to_owned(), role.to_owned(), kind.to_owned()));
        let (who, (before, after)) = match role {
            "doctor" => (&doctor, (d0, d1)),
            "patient" => (&patient, (p0, p1)),
            other => bail!("a track of role {other}: {t:#}"),
        };
        assert_eq!(t["participant_id"], who.id().0, "{t:#}");
        let (at_stop, after_stop) = if role == "doctor" { (d2, d3) } else { (p2, p3) };
        let file = dir.join(format!("{}-{kind}.webm", t["id"]));
        download(&api, t, &file).await?;
        let p = probe(&file)?;
        let errors = decode_errors(&file)?;
        assert!(
            errors.trim().is_empty(),
            "{name} {kind}: ffmpeg says {errors}"
        );

        // Sent while it certainly recorded (after `on`, before `stop` was
        // sent) and while it may have (from `start` sent to `off` seen).
        let (least, most, least_s, most_s) = match kind {
            "audio" => (
                (at_stop.0 - after.0) as f64,
                (after_stop.0 - before.0) as f64,
                (t2 - t1).as_secs_f64(),
                (t3 - t0).as_secs_f64(),
            ),
            "video" => (
                (at_stop.1 - after.1) as f64,
                (after_stop.1 - before.1) as f64,
                (t2 - t1).as_secs_f64(),
                (t3 - t0).as_secs_f64(),
            ),
            other => bail!("a track of kind {other}"),
        };
        let expected_codec = if kind == "audio" { "opus" } else { "vp8" };
        assert_eq!(p.codec, expected_codec, "{name} {kind}: {p:?}");
        if kind == "video" {
            assert_eq!(p.width, Some(320), "{name} video: {p:?}");
        }
        assert!(
            within(p.frames as f64, least, most, 5.0),
            "{name} {kind}: {} frames decoded; sent {least}..{most} while recording ({p:?}, row {t:#})",
            p.frames
        );
        assert!(
            within(p.duration, least_s, most_s, 5.0),
            "{name} {kind}: {:.3} s long; recorded for {least_s:.3}..{most_s:.3} s ({p:?})",
            p.duration
        );
        // The row agrees with the file.
        // The row agrees with the file: the file's times are on the
        // recording's clock, so it ends at the track's offset plus its length.
        let row_ms = t["duration_ms"].as_f64().unwrap_or(0.0);
        let offset = t["offset_ms"].as_f64().context("offset_ms")?;
        assert!(
            ((offset + row_ms) / 1000.0 - p.duration).abs() <= 0.1,
            "{name} {kind}: the row says {offset} + {row_ms} ms, the file ends at {:.3} s",
            p.duration
        );
        offsets.push(offset);
        ends.push(offset + p.duration * 1000.0);
    }
    seen.sort();
    let mut want = vec![
        (
            doctor_name.to_owned(),
            "doctor".to_owned(),
            "audio".to_owned(),
        ),
        (
            doctor_name.to_owned(),
            "doctor".to_owned(),
            "video".to_owned(),
        ),
        (
            patient_name.to_owned(),
            "patient".to_owned(),
            "audio".to_owned(),
        ),
        (
            patient_name.to_owned(),
            "patient".to_owned(),
            "video".to_owned(),
        ),
    ];
    want.sort();
    assert_eq!(seen, want, "who the tracks say they are");

    // The tracks line up on the room's clock: they start together (video
    // waits for its keyframe) and end together (at `stop`), within the time
    // `start` and `stop` took to take effect.
    let slack_ms = ((t1 - t0).max(t3 - t2).as_secs_f64() * 1000.0).max(300.0);
    let spread = |v: &[f64]| {
        v.iter().cloned().fold(f64::MIN, f64::max) - v.iter().cloned().fold(f64::MAX, f64::min)
    };
    assert!(
        spread(&offsets) <= slack_ms,
        "track offsets {offsets:?} ms differ by more than {slack_ms} ms"
    );
    assert!(
        spread(&ends) <= slack_ms,
        "track ends {ends:?} ms differ by more than {slack_ms} ms"
    );

    doctor.close().await;
    patient.close().await;
    server.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
