//! `tuxa backup` and `tuxa restore` on the real binary and real SQLite files
//! (README, "Backup and restore"; server/src/backup.rs):
//! - a backup made while the server runs and keeps writing records restores
//!   into a new data directory, its audit chain verifies, and the records and
//!   the join links made before it are there;
//! - a tampered backup, another installation's, and a folder that is not a
//!   backup are refused, each with its reason, and nothing is written;
//! - a destination that is read-only or full fails with a clear error and
//!   leaves no half backup.

mod common;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Server, key_hex, run, temp_dir, tuxa};
use serde_json::{Value, json};

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

async fn create(server: &Server, title: &str) -> String {
    let (status, body) = server
        .admin(
            "POST",
            "/api/v1/consultations",
            Some(&json!({"kind": "visit", "title": title})),
        )
        .await
        .expect("create");
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn patient_link(server: &Server, room: &str) -> String {
    let (status, body) = server
        .admin(
            "POST",
            &format!("/api/v1/consultations/{room}/links"),
            Some(&json!({"role": "patient", "name": "Nguyễn Văn A"})),
        )
        .await
        .expect("link");
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

async fn join_check(server: &Server, room: &str, token: &str) -> u16 {
    let body = json!({"room": room, "token": token}).to_string();
    common::request(server.addr, "POST", "/api/v1/join-check", Some(&body), None)
        .await
        .expect("join-check")
        .0
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest"))
        .expect("manifest JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_during_live_writes_restores_into_a_new_data_directory() {
    let root = temp_dir("backup-live");
    let (live, dest, restored) = (root.join("data"), root.join("backup"), root.join("new"));
    let key = key_hex(0x31);
    let server = Arc::new(Server::start(&live, &key).await);

    let mut before = Vec::new();
    for i in 0..3 {
        before.push(create(&server, &format!("trước sao lưu {i}")).await);
    }
    let token = patient_link(&server, &before[0]).await;
    assert_eq!(join_check(&server, &before[0], &token).await, 200);

    // Records keep being written (consultations, links, their audit
    // entries) all through the backup.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (server, stop, written) = (server.clone(), stop.clone(), written.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let room = create(&server, &format!("trong khi sao lưu {i}")).await;
                patient_link(&server, &room).await;
                written.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };
    while written.load(Ordering::Relaxed) < 5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at_start = written.load(Ordering::Relaxed);
    let args = [
        "backup".to_owned(),
        path(&dest).to_owned(),
        "--data-dir".to_owned(),
        path(&live).to_owned(),
    ];
    let k = key.clone();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, &k)
    })
    .await
    .unwrap();
    let at_end = written.load(Ordering::Relaxed);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("backup written"),
        "{}",
        text(&out)
    );
    // Writes go on after the backup too, and the server still answers.
    while written.load(Ordering::Relaxed) < at_end + 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let total = 3 + written.load(Ordering::Relaxed) as u64;

    let m = manifest(&dest);
    let in_backup = m["consultations"].as_u64().unwrap();
    assert!(
        in_backup >= 3 + at_start as u64 && in_backup <= 3 + at_end as u64 + 1,
        "the backup holds {in_backup} consultations; {} were written before it started, {} by its end",
        3 + at_start,
        3 + at_end
    );
    assert!(in_backup < total, "writes after the backup are not in it");
    assert_eq!(m["master_key_id"].as_str().unwrap().len(), 16);
    // The master key is never in a backup.
    let names: Vec<String> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["manifest.json", "tuxa.sqlite3"]);
    let backup_bytes = std::fs::read(dest.join("tuxa.sqlite3")).unwrap();
    assert!(!backup_bytes.windows(64).any(|w| w == key.as_bytes()));
    match Arc::try_unwrap(server) {
        Ok(s) => s.stop(),
        Err(_) => panic!("the writer still holds the server"),
    }

    // Restore into a new data directory, with the same master key.
    let out = run(
        &["restore", path(&dest), "--data-dir", path(&restored)],
        &key,
    );
    assert!(out.status.success(), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("audit chain intact"), "{report}");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&restored), 0o700);
        assert_eq!(mode(&restored.join("tuxa.sqlite3")), 0o600);
    }
    let out = run(&["verify-audit", "--data-dir", path(&restored)], &key);
    assert!(out.status.success(), "{}", text(&out));
    let verified = String::from_utf8_lossy(&out.stdout);
    assert!(
        verified.contains(&format!(
            "audit chain intact: {} entries, head {}",
            m["audit_entries"],
            m["audit_head"].as_str().unwrap()
        )),
        "{verified} vs {m}"
    );

    // The records are there, and a link made before the backup still opens
    // its room: the join-token key came with it.
    let server = Server::start(&restored, &key).await;
    let (status, list) = server
        .admin("GET", "/api/v1/consultations", None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list
        .as_array()
        .or_else(|| list["consultations"].as_array())
        .expect("a list of consultations")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    for id in &before {
        assert!(ids.contains(&id.as_str()), "{id} not restored: {ids:?}");
    }
    assert_eq!(ids.len() as u64, in_backup);
    assert_eq!(join_check(&server, &before[0], &token).await, 200);
    server.stop();
    let _ = std::fs::remove_dir_all(&root);
}

/// A small data directory with a stopped server's records, and its backup.
async fn stopped_with_backup(root: &Path, key: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (data, dest) = (root.join("data"), root.join("backup"));
    let server = Server::start(&data, key).await;
    let room = create(&server, "một buổi khám").await;
    patient_link(&server, &room).await;
    server.stop();
    let out = run(&["backup", path(&dest), "--data-dir", path(&data)], key);
    assert!(out.status.success(), "{}", text(&out));
    (data, dest)
}

fn copy_backup(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["manifest.json", "tuxa.sqlite3"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

/// Restores `src` into a new folder with `key`; must be refused with
/// `reason`, writing no database.
fn refused(src: &Path, root: &Path, key: &str, reason: &str) {
    let target = root.join(format!(
        "target-{}",
        src.file_name().unwrap().to_string_lossy()
    ));
    let out = run(&["restore", path(src), "--data-dir", path(&target)], key);
    assert!(!out.status.success(), "restored: {}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(reason), "expected {reason:?}: {}", text(&out));
    assert!(
        !target.join("tuxa.sqlite3").exists(),
        "a refused restore wrote a database"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_and_foreign_backups_are_refused_with_the_reason() {
    let root = temp_dir("backup-refused");
    let key = key_hex(0x42);
    let (data, dest) = stopped_with_backup(&root, &key).await;

    // One byte of the database changed.
    let flipped = root.join("flipped");
    copy_backup(&dest, &flipped);
    let mut db = std::fs::read(flipped.join("tuxa.sqlite3")).unwrap();
    let at = db.len() / 2;
    db[at] ^= 0x01;
    std::fs::write(flipped.join("tuxa.sqlite3"), &db).unwrap();
    refused(&flipped, &root, &key, "has been altered or damaged");

    // A record changed and the manifest's digest made to match, without
    // the key: the manifest's HMAC gives it away.
    let forged = root.join("forged");
    copy_backup(&dest, &forged);
    {
        let c = rusqlite::Connection::open(forged.join("tuxa.sqlite3")).unwrap();
        c.execute("UPDATE consultations SET title = 'đã sửa'", [])
            .unwrap();
    }
    let bytes = std::fs::read(forged.join("tuxa.sqlite3")).unwrap();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
    let mut m = manifest(&forged);
    m["database_sha256"] = Value::String(data_encoding::HEXLOWER.encode(digest.as_ref()));
    m["database_bytes"] = json!(bytes.len());
    std::fs::write(forged.join("manifest.json"), m.to_string()).unwrap();
    refused(&forged, &root, &key, "has been altered (its HMAC");

    // Another installation's backup: made under another master key.
    refused(
        &dest,
        &root,
        &key_hex(0x43),
        "another installation's backup",
    );

    // Not a backup at all: a database copied by hand.
    let bare = root.join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::copy(data.join("tuxa.sqlite3"), bare.join("tuxa.sqlite3")).unwrap();
    refused(&bare, &root, &key, "is not a tuxa backup");

    // Restoring over a database is refused too, and leaves it alone.
    let before = std::fs::read(data.join("tuxa.sqlite3")).unwrap();
    let out = run(&["restore", path(&dest), "--data-dir", path(&data)], &key);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already holds a database"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read(data.join("tuxa.sqlite3")).unwrap(), before);

    // The untouched backup still restores.
    let out = run(
        &["restore", path(&dest), "--data-dir", path(&root.join("ok"))],
        &key,
    );
    assert!(out.status.success(), "{}", text(&out));
    let _ = std::fs::remove_dir_all(&root);
}

/// Whether this process may mount a tmpfs in its own mount namespace.
fn can_mount() -> bool {
    std::process::Command::new("unshare")
        .args([
            "--mount",
            "sh",
            "-c",
            "mount -t tmpfs -o size=64k tmpfs /mnt",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `tuxa backup DEST` with DEST on a tmpfs mounted with `options` in a
/// mount namespace of its own.
fn backup_onto_tmpfs(options: &str, mnt: &Path, data: &Path, key: &str) -> Output {
    std::fs::create_dir_all(mnt).unwrap();
    let dest = mnt.join("backup");
    let mut c = tuxa(&[], key);
    let program = c.get_program().to_owned();
    c = std::process::Command::new("unshare");
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TUXA_MASTER_KEY", key)
        .args([
            "--mount",
            "sh",
            "-c",
            r#"mount -t tmpfs -o "$1" tmpfs "$2" && shift 2 && exec "$@""#,
            "sh",
            options,
            path(mnt),
        ])
        .arg(program)
        .args(["backup", path(&dest), "--data-dir", path(data)]);
    c.output().expect("unshare")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_not_writable_or_full_is_a_clear_error() {
    let root = temp_dir("backup-dest");
    let key = key_hex(0x55);
    let (data, made) = stopped_with_backup(&root, &key).await;
    // The live file's pages may still be in its write-ahead log: the
    // backup's file has them all.
    let size = std::fs::metadata(made.join("tuxa.sqlite3")).unwrap().len();
    if can_mount() {
        let out = backup_onto_tmpfs("ro,size=1m", &root.join("ro"), &data, &key);
        assert!(!out.status.success(), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("cannot create the backup folder")
                && err.contains("Read-only file system"),
            "{}",
            text(&out)
        );

        // A disk smaller than the database: SQLite's "disk is full", and no
        // half backup left behind.
        assert!(size > 48 * 1024, "the database is only {size} bytes");
        let mnt = root.join("full");
        let out = backup_onto_tmpfs("size=32k", &mnt, &data, &key);
        assert!(!out.status.success(), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("the backup to") && err.contains("failed") && err.contains("full"),
            "{}",
            text(&out)
        );
    } else {
        // Not root: a folder without write permission.
        use std::os::unix::fs::PermissionsExt as _;
        let locked = root.join("locked");
        std::fs::create_dir_all(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
        let dest = locked.join("backup");
        let out = run(&["backup", path(&dest), "--data-dir", path(&data)], &key);
        assert!(!out.status.success(), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("cannot create the backup folder") && err.contains("Permission denied"),
            "{}",
            text(&out)
        );
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    // A destination that already holds something is not written over.
    let busy = root.join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("keep.txt"), "x").unwrap();
    let out = run(&["backup", path(&busy), "--data-dir", path(&data)], &key);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not empty"),
        "{}",
        text(&out)
    );
    let _ = std::fs::remove_dir_all(&root);
}
