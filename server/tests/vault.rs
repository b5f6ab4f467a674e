//! Recordings at rest through the real binary and the real server
//! (server/src/vault.rs): `verify-recordings` names a tampered file, a
//! start after a kill -9 marks the cut file incomplete and it reads to its
//! last chunk, `purge-recordings` deletes and audits what is past its
//! retention (and `--dry-run` nothing), and a bad or wrong recording key
//! leaves the server serving with recordings unavailable and one clear log
//! line. Real SQLite files on the real migrations, real sealed files.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rusqlite::Connection;
use tuxa_protocol::{MediaKind, ParticipantId, Role, TrackSource};
use tuxa_recording::keys::{KEY_LEN, KeyId, KeyRing, key_line};
use tuxa_recording::seal::{SealReader, SealWriter, hash_all};
use tuxa_records::UnixTime;
use tuxa_records::recording::{
    Codec, FileOutcome, FileState, NewRecording, NewRecordingFile, RecordingFileId, RecordingId,
    RecordingPath, RecordingState, Retention, StartedBy, StopReason,
};
use tuxa_server::vault::{self, KeySource, RecordingConfig};
use tuxa_store::recordings;

const ROOM: &str = "abcdefghijklmnop";
const YEAR: i64 = 365 * 86_400;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tuxa-vault-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("data")).unwrap();
    std::fs::set_permissions(d.join("data"), std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}

fn test_key_text() -> String {
    match RecordingConfig::for_tests().keys {
        KeySource::Text(t) => t,
        other => panic!("{other:?}"),
    }
}

fn test_ring(data: &Path) -> KeyRing {
    vault::load_keys(&RecordingConfig::for_tests().keys, data).unwrap()
}

/// The record's file, on the real migrations, with one consultation.
fn db(data: &Path, kind: &str) -> Connection {
    let mut c = Connection::open(data.join("tuxa.sqlite3")).unwrap();
    tuxa_store::schema::configure(&c).unwrap();
    tuxa_store::schema::migrate(&mut c).unwrap();
    c.execute(
        "INSERT OR IGNORE INTO consultations(id, kind, title, status, created_at)
         VALUES (?1, ?2, 't', 'ended', 0)",
        [ROOM, kind],
    )
    .unwrap();
    c
}

fn start_recording(c: &Connection, at: i64) -> RecordingId {
    recordings::start(
        c,
        &NewRecording {
            consultation: ROOM.into(),
            started_by: StartedBy {
                participant: ParticipantId(1),
                name: "BS. Minh".into(),
                staff: None,
            },
            started_at: UnixTime(at),
        },
    )
    .unwrap()
}

fn open_row(c: &Connection, rec: RecordingId, name: &str, at: i64) -> (RecordingFileId, String) {
    let rel = format!("{ROOM}/{rec}/{name}.webm.sealed");
    let id = recordings::open_file(
        c,
        &NewRecordingFile {
            recording: rec,
            participant: ParticipantId(2),
            role: Role::Patient,
            display_name: "Nguyễn Văn A".into(),
            facility: Some("Trạm y tế xã".into()),
            kind: MediaKind::Video,
            source: TrackSource::Camera,
            codec: Codec::Vp8,
            segment: 0,
            path: RecordingPath::parse(&rel).unwrap(),
            offset_ms: 0,
            started_at: UnixTime(at),
            width: Some(640),
            height: Some(480),
            key_id: 1,
        },
    )
    .unwrap();
    (id, rel)
}

fn chunk(i: usize) -> Vec<u8> {
    (0..5000).map(|j| ((i * 31 + j * 7) % 251) as u8).collect()
}

const HEAD: [u8; 64] = [0x1a; 64];

/// Seals `chunks` chunks into `data/recordings/<rel>`; finished (size and
/// SHA-256 returned) or left as a killed writer leaves it.
fn seal(data: &Path, rel: &str, ring: &KeyRing, chunks: usize, finish: bool) -> (u64, String) {
    let path = vault::recordings_dir(data).join(rel);
    let file = vault::create_file(data, &RecordingPath::parse(rel).unwrap()).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    // Never over an existing file.
    assert!(vault::create_file(data, &RecordingPath::parse(rel).unwrap()).is_err());
    let mut w = SealWriter::create(file, ring, &HEAD).unwrap();
    for i in 0..chunks {
        w.append(&chunk(i)).unwrap();
        w.flush_chunk().unwrap();
    }
    if finish {
        let s = w.finish(&HEAD).unwrap();
        (s.size, data_encoding::HEXLOWER.encode(&s.sha256))
    } else {
        // Appended, never flushed: gone with the process.
        w.append(b"lost").unwrap();
        drop(w);
        (0, String::new())
    }
}

fn finished(c: &mut Connection, id: RecordingFileId, size: u64, sha: String, at: i64) {
    assert!(
        recordings::finish_file(
            c,
            id,
            &FileOutcome {
                state: FileState::Complete,
                duration_ms: Some(10_000),
                frames: Some(300),
                width: None,
                height: None,
                size,
                sha256: sha,
            },
            UnixTime(at),
        )
        .unwrap()
    );
}

fn audit_count(c: &Connection, action: &str) -> i64 {
    c.query_row(
        "SELECT COUNT(*) FROM audit WHERE action = ?1",
        [action],
        |r| r.get(0),
    )
    .unwrap()
}

fn tuxa(args: &[&str], data: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tuxa"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_clear()
        .env("TUXA_RECORDING_KEYS", test_key_text())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn verify_recordings_names_the_tampered_file_and_its_chunk() {
    let dir = temp_dir("verify");
    let data = dir.join("data");
    let ring = test_ring(&data);
    let mut c = db(&data, "conference");
    let t = now() - 3600;
    let rec = start_recording(&c, t);
    let mut rels = Vec::new();
    for name in ["p2-camera-0", "p2-microphone-0"] {
        let (id, rel) = open_row(&c, rec, name, t);
        let (size, sha) = seal(&data, &rel, &ring, 4, true);
        finished(&mut c, id, size, sha, t + 60);
        rels.push(rel);
    }
    recordings::end(
        &c,
        rec,
        UnixTime(t + 60),
        RecordingState::Complete,
        StopReason::Stopped,
    )
    .unwrap();
    // The audit chain holds each file's size and hash.
    assert_eq!(audit_count(&c, "recording_file_sealed"), 2);

    let (ok, out) = tuxa(&["verify-recordings"], &data);
    assert!(ok, "{out}");
    assert!(out.contains("recordings intact: 2 files"), "{out}");

    // One byte of the second file's third data chunk (frames: header 93,
    // head 5+64+16, then data chunks of 5+5000+16).
    let victim = vault::recordings_dir(&data).join(&rels[1]);
    let pristine = std::fs::read(&victim).unwrap();
    let mut bytes = pristine.clone();
    let at = 93 + 85 + 2 * 5021 + 5 + 100;
    bytes[at] ^= 0x20;
    std::fs::write(&victim, &bytes).unwrap();
    let (ok, out) = tuxa(&["verify-recordings"], &data);
    assert!(!ok, "{out}");
    let first = out.lines().next().unwrap();
    assert!(first.contains(&rels[1]), "{out}");
    assert!(first.contains(&format!("consultation {ROOM}")), "{out}");
    assert!(first.contains("data chunk 2"), "{out}");
    assert!(first.contains("SHA-256"), "{out}");
    assert!(first.contains("patient participant 2 camera"), "{out}");
    assert!(!out.contains("Nguyễn"), "reports name no one: {out}");
    assert!(!out.contains(&format!("{}:", rels[0])), "{out}");

    // Another well-sealed file put in its place, and its row's size and
    // hash changed to match: every chunk opens, the row agrees, the audit
    // chain does not.
    std::fs::write(&victim, &pristine).unwrap();
    let (ok, out) = tuxa(&["verify-recordings"], &data);
    assert!(ok, "{out}");
    let (_, other_rel) = open_row(&c, rec, "p9-camera-0", t);
    let (size, sha) = seal(&data, &other_rel, &ring, 2, true);
    let other = vault::recordings_dir(&data).join(&other_rel);
    std::fs::rename(&other, &victim).unwrap();
    c.execute(
        "UPDATE recording_files SET size = ?1, sha256 = ?2 WHERE path = ?3",
        rusqlite::params![size as i64, sha, rels[1]],
    )
    .unwrap();
    c.execute("DELETE FROM recording_files WHERE path = ?1", [&other_rel])
        .unwrap();
    let (ok, out) = tuxa(&["verify-recordings"], &data);
    assert!(!ok, "{out}");
    let first = out.lines().next().unwrap();
    assert!(
        first.contains(&rels[1]) && first.contains("audit chain"),
        "{out}"
    );
    assert!(!first.contains("decrypt"), "{out}");

    // A missing file is named too; without keys verify cannot run.
    std::fs::remove_file(vault::recordings_dir(&data).join(&rels[0])).unwrap();
    let (report, intact) = vault::verify_recordings(&data, &RecordingConfig::for_tests()).unwrap();
    assert!(!intact);
    assert!(
        report.lines().next().unwrap().contains("missing"),
        "{report}"
    );
    assert!(report.contains("2 of 2 files failed"), "{report}");
    let none = RecordingConfig {
        keys: KeySource::None,
        ..RecordingConfig::default()
    };
    let e = vault::verify_recordings(&data, &none).unwrap_err();
    assert!(
        format!("{e:#}").contains("no recording key configured"),
        "{e:#}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every test's log lines, from every thread (the store thread logs too).
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        struct W(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || W(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buf
    })
}

fn log_text() -> String {
    String::from_utf8_lossy(&log().lock().unwrap()).into_owned()
}

/// Starts the real server on `data`, checks it serves (its HTTPS port
/// accepts and it has not stopped), stops it cleanly.
fn serve_once(data: &Path, recording: RecordingConfig) {
    log();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = http.local_addr().unwrap();
        let media = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut config = tuxa_server::Config::for_tests(data.to_path_buf());
        config.recording = recording;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(tuxa_server::run(
            tuxa_server::Listeners {
                http,
                media,
                media_tcp: None,
            },
            config,
            async move {
                let _ = stopped.await;
            },
        ));
        let mut up = false;
        for _ in 0..100 {
            if server.is_finished() {
                break;
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() && !server.is_finished() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Serving: the accept loop runs after the recordings' start work.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(up && !server.is_finished(), "the server did not come up");
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(20), server)
            .await
            .expect("the server stops")
            .unwrap()
            .expect("the server ran without error");
    });
}

#[test]
fn a_start_after_kill_9_marks_the_cut_file_incomplete_and_it_reads_to_its_last_chunk() {
    let dir = temp_dir("recover");
    let data = dir.join("data");
    let ring = test_ring(&data);
    let c = db(&data, "visit");
    let t = now() - 600;
    let rec = start_recording(&c, t);
    // Killed while writing: three chunks flushed, a fourth cut mid-write.
    let (cut, cut_rel) = open_row(&c, rec, "p2-camera-0", t);
    seal(&data, &cut_rel, &ring, 3, false);
    let cut_path = vault::recordings_dir(&data).join(&cut_rel);
    OpenOptions::new()
        .append(true)
        .open(&cut_path)
        .unwrap()
        .write_all(&[0, 0, 0x13, 0x99, 0x10, 1, 2, 3])
        .unwrap();
    // Finished on disk, killed before its row said so.
    let (done, done_rel) = open_row(&c, rec, "p2-microphone-0", t);
    seal(&data, &done_rel, &ring, 2, true);
    // Opened, killed before a byte was written.
    let (never, _) = open_row(&c, rec, "p2-screen-0", t);
    drop(c);

    serve_once(&data, RecordingConfig::for_tests());

    let c = db(&data, "visit");
    let f = recordings::file(&c, cut).unwrap().unwrap();
    assert_eq!(f.state, FileState::Incomplete);
    let (size, sha) = hash_all(File::open(&cut_path).unwrap()).unwrap();
    assert_eq!(f.size, Some(size));
    assert_eq!(
        f.sha256.as_deref(),
        Some(data_encoding::HEXLOWER.encode(&sha).as_str())
    );
    let mut r = SealReader::open(File::open(&cut_path).unwrap(), &ring).unwrap();
    assert!(!r.complete());
    let want: Vec<u8> = HEAD.iter().copied().chain((0..3).flat_map(chunk)).collect();
    assert_eq!(r.plaintext_len(), want.len() as u64);
    let mut got = vec![0u8; want.len() + 100];
    let n = r.read_at(0, &mut got).unwrap();
    assert_eq!(&got[..n], &want[..]);
    assert_eq!(r.verify().unwrap().trailing_bytes, 8);

    assert_eq!(
        recordings::file(&c, done).unwrap().unwrap().state,
        FileState::Complete
    );
    let never = recordings::file(&c, never).unwrap().unwrap();
    assert_eq!((never.state, never.size), (FileState::Incomplete, Some(0)));
    let r = recordings::get(&c, rec).unwrap().unwrap();
    assert_eq!(r.state, RecordingState::Incomplete);
    assert_eq!(r.stop_reason, Some(StopReason::ServerRestart));
    assert_eq!(audit_count(&c, "recording_file_incomplete"), 2);
    assert_eq!(audit_count(&c, "recording_file_sealed"), 1);
    let detail: String = c
        .query_row(
            "SELECT detail FROM audit WHERE action = 'recording_file_incomplete' ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        detail.contains(&data_encoding::HEXLOWER.encode(&sha)),
        "{detail}"
    );
    drop(c);
    assert!(log_text().contains("recordings cut by the last stop: 2 files incomplete"));

    // What verify says now: the cut file is fine as incomplete; the one
    // never written is missing.
    let (report, intact) = vault::verify_recordings(&data, &RecordingConfig::for_tests()).unwrap();
    assert!(!intact, "{report}");
    assert!(
        report.contains("p2-screen-0.webm.sealed") && report.contains("missing"),
        "{report}"
    );
    assert!(!report.contains("p2-camera-0.webm.sealed"), "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn purge_deletes_and_audits_what_is_past_retention_and_dry_run_changes_nothing() {
    let dir = temp_dir("purge");
    let data = dir.join("data");
    let ring = test_ring(&data);
    let mut c = db(&data, "visit");
    let t = now();
    // Ended eleven years ago, two days ago, and one still running that
    // started eleven years ago (an open file is never touched).
    let mut made = Vec::new();
    for (name, started, ended) in [
        ("old", t - 11 * YEAR, Some(t - 11 * YEAR + 3600)),
        ("recent", t - 2 * 86_400 - 3600, Some(t - 2 * 86_400)),
        ("running", t - 11 * YEAR, None),
    ] {
        let rec = start_recording(&c, started);
        let (id, rel) = open_row(&c, rec, name, started);
        let (size, sha) = seal(&data, &rel, &ring, 1, true);
        if let Some(end) = ended {
            finished(&mut c, id, size, sha, end);
            recordings::end(
                &c,
                rec,
                UnixTime(end),
                RecordingState::Complete,
                StopReason::Stopped,
            )
            .unwrap();
        }
        made.push((id, vault::recordings_dir(&data).join(rel)));
    }
    let audit_before: i64 = c
        .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
        .unwrap();

    let (ok, out) = tuxa(&["purge-recordings", "--dry-run"], &data);
    assert!(ok, "{out}");
    assert!(
        out.contains("would delete") && out.contains("old.webm.sealed"),
        "{out}"
    );
    assert!(
        !out.contains("recent.webm.sealed") && !out.contains("running"),
        "{out}"
    );
    assert!(out.contains("would purge 1 files"), "{out}");
    assert!(made.iter().all(|(_, p)| p.exists()));
    assert_eq!(
        recordings::file(&c, made[0].0).unwrap().unwrap().state,
        FileState::Complete
    );
    let audit_now: i64 = c
        .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
        .unwrap();
    assert_eq!(audit_now, audit_before, "a dry run audits nothing");

    let (ok, out) = tuxa(&["purge-recordings"], &data);
    assert!(ok, "{out}");
    assert!(
        out.contains("deleted") && out.contains("purged 1 files"),
        "{out}"
    );
    assert!(!made[0].1.exists());
    assert!(made[1].1.exists() && made[2].1.exists());
    assert_eq!(
        recordings::file(&c, made[0].0).unwrap().unwrap().state,
        FileState::Purged
    );
    assert_eq!(audit_count(&c, "recording_file_purged"), 1);
    let detail: String = c
        .query_row(
            "SELECT detail FROM audit WHERE action = 'recording_file_purged'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        detail.contains("old.webm.sealed") && detail.contains("visit=10y"),
        "{detail}"
    );

    // A shorter policy reaches the recent one; the running one, never.
    let short = RecordingConfig {
        retention: Retention::parse("visit=1d").unwrap(),
        ..RecordingConfig::for_tests()
    };
    let out = vault::purge_recordings(&data, &short, UnixTime(t), false).unwrap();
    assert!(out.contains("purged 1 files"), "{out}");
    assert!(!made[1].1.exists() && made[2].1.exists());
    assert_eq!(
        recordings::file(&c, made[2].0).unwrap().unwrap().state,
        FileState::Open
    );
    assert!(matches!(
        tuxa_store::audit::verify(&c).unwrap(),
        tuxa_records::audit::Verdict::Intact { .. }
    ));
    // Verify no longer looks for purged files.
    let (report, intact) = vault::verify_recordings(&data, &short).unwrap();
    assert!(intact, "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_or_wrong_recording_key_leaves_the_server_up_without_recordings() {
    let dir = temp_dir("keys");
    let data = dir.join("data");
    let ring = test_ring(&data);
    let mut c = db(&data, "conference");
    let t = now() - 600;
    let rec = start_recording(&c, t);
    let (id, rel) = open_row(&c, rec, "p2-camera-0", t);
    let (size, sha) = seal(&data, &rel, &ring, 1, true);
    finished(&mut c, id, size, sha, t + 10);
    recordings::end(
        &c,
        rec,
        UnixTime(t + 10),
        RecordingState::Complete,
        StopReason::Stopped,
    )
    .unwrap();
    drop(c);

    // The right id with other bytes: found on the newest file under it.
    let wrong = RecordingConfig {
        keys: KeySource::Text(key_line(KeyId(1), &[0x01; KEY_LEN])),
        ..RecordingConfig::default()
    };
    serve_once(&data, wrong);
    let line = format!(
        "recordings unavailable: recording key 1 does not open {}",
        vault::recordings_dir(&data).join(&rel).display()
    );
    assert!(log_text().contains(&line), "{}", log_text());

    // A key file inside the data directory.
    let inside = data.join("recording.keys");
    std::fs::write(&inside, format!("{}\n", test_key_text())).unwrap();
    std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o600)).unwrap();
    serve_once(
        &data,
        RecordingConfig {
            keys: KeySource::File(inside.clone()),
            ..RecordingConfig::default()
        },
    );
    let line = format!(
        "recordings unavailable: the recording key file {} is inside the data directory",
        inside.display()
    );
    assert!(log_text().contains(&line), "{}", log_text());

    // Readable by others; a bad line; none at all: refused with why.
    let outside = dir.join("recording.keys");
    std::fs::write(&outside, format!("# keys\n{}\n", test_key_text())).unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = vault::load_keys(&KeySource::File(outside.clone()), &data).unwrap_err();
    assert!(
        format!("{e:#}").contains("readable by group or others (mode 640)"),
        "{e:#}"
    );
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(vault::load_keys(&KeySource::File(outside.clone()), &data).is_ok());
    let e = vault::load_keys(&KeySource::Text("1 AAAA".into()), &data).unwrap_err();
    assert!(format!("{e:#}").contains("line 1"), "{e:#}");
    let e = vault::load_keys(&KeySource::None, &data).unwrap_err();
    assert!(
        format!("{e:#}").contains("no recording key configured"),
        "{e:#}"
    );

    // The right key: available, and a new key line follows its id.
    serve_once(
        &data,
        RecordingConfig {
            keys: KeySource::File(outside.clone()),
            ..RecordingConfig::default()
        },
    );
    assert!(log_text().contains("recordings available: recording keys [1]"));
    let (ok, out) = tuxa(&["recording-key"], &data);
    assert!(ok, "{out}");
    let next = KeyRing::parse(out.trim()).unwrap();
    assert_eq!(next.sealing().id(), KeyId(2));
    let _ = std::fs::remove_dir_all(&dir);
}

const CHILD_DIR: &str = "TUXA_VAULT_CHILD_DIR";

/// Not a test of its own: the recorder of the kill -9 test, run as a child
/// process (this binary with `--ignored --exact`), writing chunks until it
/// is killed.
#[test]
#[ignore = "runs only as the child process of a_recorder_killed_with_sigkill_leaves_a_readable_file"]
fn vault_child_recorder() {
    let Ok(data) = std::env::var(CHILD_DIR) else {
        return;
    };
    let data = PathBuf::from(data);
    let ring = test_ring(&data);
    let c = db(&data, "visit");
    let rec = start_recording(&c, now());
    let (_, rel) = open_row(&c, rec, "p2-camera-0", now());
    let file = vault::create_file(&data, &RecordingPath::parse(&rel).unwrap()).unwrap();
    let mut w = SealWriter::create(file, &ring, &HEAD).unwrap();
    // At most 10 MB, then wait to be killed: never finished.
    for i in 0..2000 {
        w.append(&chunk(i)).unwrap();
        w.flush_chunk().unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_recorder_killed_with_sigkill_leaves_a_readable_file() {
    /// Kills the child whatever happens to the test.
    struct Child(std::process::Child);
    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let dir = temp_dir("sigkill");
    let data = dir.join("data");
    let ring = test_ring(&data);
    drop(db(&data, "visit"));
    let mut child = Child(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "vault_child_recorder",
                "--nocapture",
            ])
            .env(CHILD_DIR, &data)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let folder = vault::recordings_dir(&data).join(ROOM);
    let size = || -> u64 {
        walk(&folder)
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum()
    };
    let mut waited = 0;
    while size() < 150_000 {
        assert!(waited < 600, "the child recorder wrote nothing");
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the child recorder died"
        );
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
    }
    // SIGKILL: no destructor, no flush, no finish.
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    let mut c = db(&data, "visit");
    let open = recordings::open_files(&c).unwrap();
    assert_eq!(open.len(), 1);
    let recovered = vault::recover(&mut c, &data, Some(&ring), UnixTime(now())).unwrap();
    assert_eq!(
        recovered,
        vault::Recovered {
            incomplete: 1,
            complete: 0,
            missing: 0,
            recordings: 1
        }
    );
    let f = recordings::file(&c, open[0].id).unwrap().unwrap();
    assert_eq!(f.state, FileState::Incomplete);
    let path = vault::recordings_dir(&data).join(f.path.as_str());
    assert_eq!(f.size, Some(std::fs::metadata(&path).unwrap().len()));
    let mut r = SealReader::open(File::open(&path).unwrap(), &ring).unwrap();
    assert!(!r.complete());
    let chunks = r.chunks() as usize;
    assert!(chunks >= 25, "{chunks} chunks");
    // Every whole chunk reads back, in order, exactly as written.
    let want: Vec<u8> = HEAD
        .iter()
        .copied()
        .chain((0..chunks).flat_map(chunk))
        .collect();
    assert_eq!(r.plaintext_len(), want.len() as u64);
    let mut got = vec![0u8; want.len()];
    assert_eq!(r.read_at(0, &mut got).unwrap(), want.len());
    assert!(got == want);
    assert!(r.verify().is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let p = e.path();
            if p.is_dir() { walk(&p) } else { vec![p] }
        })
        .collect()
}
