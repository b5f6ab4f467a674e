//! Data at rest (docs/security.md): the data directory is 0700 and its
//! files 0600 after a start, whatever they were; the join-token key and the
//! TOTP secrets are sealed under a master key kept outside it (plain values
//! from before are sealed in place), and a start with the wrong key stops
//! with the database unchanged.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tuxa_server::secrets::{KeysConfig, MasterKeySource};
use tuxa_tests::{ApiClient, Auth, TestServer};

const PASSWORD: &str = "Mật khẩu thử 2025";

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tuxa-at-rest-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn inline_key(b: u8) -> KeysConfig {
    KeysConfig {
        current: MasterKeySource::Inline(Arc::new([b; 32])),
        old_files: Vec::new(),
    }
}

async fn start(data_dir: &Path, keys: KeysConfig) -> anyhow::Result<TestServer> {
    let data_dir = data_dir.to_path_buf();
    TestServer::start_with(move |c| {
        c.data_dir = data_dir;
        c.keys = keys;
    })
    .await
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A province facility and a coordinator account; returns the account's
/// username and TOTP secret (base32).
async fn staff(api: &ApiClient, username: &str) -> anyhow::Result<(String, String)> {
    let (s, f) = api
        .request(
            "POST",
            "/api/v1/facilities",
            Some(&json!({"name": format!("Bệnh viện {username}"), "tier": "province"})),
            Auth::Bearer(api.admin_key()),
        )
        .await?;
    anyhow::ensure!(s == 201, "facility: {s} {f}");
    let (s, r) = api
        .request(
            "POST",
            "/api/v1/staff",
            Some(
                &json!({"username": username, "name": "Trịnh Văn Lâm", "role": "coordinator",
                         "facility_id": f["id"], "password": PASSWORD}),
            ),
            Auth::Bearer(api.admin_key()),
        )
        .await?;
    anyhow::ensure!(s == 201, "staff: {s} {r}");
    Ok((
        username.to_owned(),
        r["totp"]["secret"].as_str().context("secret")?.to_owned(),
    ))
}

async fn sign_in(api: &ApiClient, username: &str, secret: &str, at: u64) -> anyhow::Result<u16> {
    let code = tuxa_server::totp_code(secret, at).context("a code")?;
    let body =
        serde_json::to_vec(&json!({"username": username, "password": PASSWORD, "totp": code}))?;
    let r = api
        .request_raw("POST", "/api/v1/auth/login", Some(&body), Auth::None)
        .await?;
    Ok(r.status)
}

fn base32_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut n, mut out) = (0u64, 0, Vec::new());
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|a| *a == c).unwrap() as u64;
        bits = (bits << 5) | v;
        n += 5;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    out
}

/// The bytes of the database file and its write-ahead log, as a copy of the
/// data directory would hold them.
fn raw_files(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["tuxa.sqlite3", "tuxa.sqlite3-wal"] {
        if let Ok(b) = std::fs::read(dir.join(name)) {
            all.extend(b);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What a start could change: meta, the staff's secrets, the audit log's
/// length, the schema version.
fn snapshot(dir: &Path) -> Value {
    let c = rusqlite::Connection::open(dir.join("tuxa.sqlite3")).unwrap();
    let meta: Vec<(String, Vec<u8>)> = c
        .prepare("SELECT key, value FROM meta ORDER BY key")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let staff: Vec<(i64, Vec<u8>, i64)> = c
        .prepare("SELECT id, totp_secret, totp_last_step FROM staff ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let audit: i64 = c
        .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
        .unwrap();
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    json!({"meta": format!("{meta:?}"), "staff": format!("{staff:?}"), "audit": audit, "version": version})
}

/// `run` on `dir` with `keys`, expected to stop at once with an error.
async fn start_fails(dir: &Path, keys: KeysConfig) -> String {
    let mut config = tuxa_server::Config::for_tests(dir.to_path_buf());
    config.keys = keys;
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    http.set_nonblocking(true).unwrap();
    let media = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let run = tuxa_server::run(
        tuxa_server::Listeners {
            http,
            media,
            media_tcp: None,
        },
        config,
        std::future::pending(),
    );
    match tokio::time::timeout(Duration::from_secs(10), run).await {
        Ok(Err(e)) => format!("{e:#}"),
        Ok(Ok(())) => panic!("the server ran and stopped"),
        Err(_) => panic!("the server started with the wrong key"),
    }
}

#[tokio::test]
async fn the_data_directory_and_its_files_are_made_private() {
    let _serial = tuxa_tests::serial().await;
    let dir = temp_dir("modes");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = start(&dir, inline_key(1)).await.unwrap();
    assert_eq!(mode(&dir), 0o700, "a new data directory");
    assert_eq!(mode(&dir.join("tuxa.sqlite3")), 0o600);
    server.shutdown().await.unwrap();

    // As an older tuxa (or a careless copy) left them.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("notes.txt"), "x").unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let server = start(&dir, inline_key(1)).await.unwrap();
    assert_eq!(mode(&dir), 0o700);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        files.push(p.file_name().unwrap().to_string_lossy().into_owned());
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    assert!(
        files.iter().any(|f| f == "tuxa.sqlite3-wal"),
        "the WAL checked too: {files:?}"
    );
    server.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn secrets_are_sealed_and_plain_ones_sealed_in_place() {
    let _serial = tuxa_tests::serial().await;
    let dir = temp_dir("sealed");
    let server = start(&dir, inline_key(1)).await.unwrap();
    let api = server.api();
    let (user, secret) = staff(&api, "dp.lan").await.unwrap();
    server.shutdown().await.unwrap();
    let totp = base32_decode(&secret);
    assert_eq!(totp.len(), 20);
    let raw = raw_files(&dir);
    assert!(!contains(&raw, &totp), "a new TOTP secret is stored sealed");
    {
        let c = rusqlite::Connection::open(dir.join("tuxa.sqlite3")).unwrap();
        let key: Vec<u8> = c
            .query_row("SELECT value FROM meta WHERE key = 'token_key'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(key.starts_with(b"enc1:"), "the token key is sealed");
    }

    // A database from before sealing: both secrets in plain.
    let plain_key = [0xa7u8; 32];
    {
        let c = rusqlite::Connection::open(dir.join("tuxa.sqlite3")).unwrap();
        c.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'token_key'",
            [&plain_key[..]],
        )
        .unwrap();
        c.execute(
            "UPDATE staff SET totp_secret = ?1 WHERE username = ?2",
            rusqlite::params![totp, user],
        )
        .unwrap();
    }
    assert!(contains(&raw_files(&dir), &plain_key));

    let server = start(&dir, inline_key(1)).await.unwrap();
    let api = server.api();
    assert_eq!(
        sign_in(&api, &user, &secret, now()).await.unwrap(),
        200,
        "TOTP sign-in works after the secret was sealed"
    );
    // Links minted under the (same) token key still check.
    let room = api
        .create_consultation(tuxa_protocol::ConsultationKind::Visit, "Khám")
        .await
        .unwrap();
    let token = api
        .mint_link(&room, tuxa_protocol::Role::Patient, "Bệnh nhân")
        .await
        .unwrap();
    let (status, body) = api.join_check(room.as_str(), &token).await.unwrap();
    assert_eq!(status, 200, "{body}");
    server.shutdown().await.unwrap();

    let raw = raw_files(&dir);
    assert!(
        !contains(&raw, &plain_key),
        "no plain token key left in the file"
    );
    assert!(
        !contains(&raw, &totp),
        "no plain TOTP secret left in the file"
    );
    let c = rusqlite::Connection::open(dir.join("tuxa.sqlite3")).unwrap();
    let stored: Vec<u8> = c
        .query_row(
            "SELECT totp_secret FROM staff WHERE username = ?1",
            [&user],
            |r| r.get(0),
        )
        .unwrap();
    assert!(stored.starts_with(b"enc1:"));
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_wrong_or_missing_master_key_stops_the_start_and_changes_nothing() {
    let _serial = tuxa_tests::serial().await;
    let dir = temp_dir("wrong-key");
    let server = start(&dir, inline_key(1)).await.unwrap();
    let (user, secret) = staff(&server.api(), "dp.lan").await.unwrap();
    server.shutdown().await.unwrap();
    let before = snapshot(&dir);

    let err = start_fails(&dir, inline_key(2)).await;
    assert!(
        err.contains("master key") && err.contains("Nothing was changed"),
        "{err}"
    );
    assert_eq!(snapshot(&dir), before, "the wrong key changed the database");

    // A key file that does not exist is not made over sealed secrets.
    let keys = temp_dir("keys");
    let missing = keys.join("tuxa.key");
    let err = start_fails(
        &dir,
        KeysConfig {
            current: MasterKeySource::File(missing.clone()),
            old_files: Vec::new(),
        },
    )
    .await;
    assert!(err.contains("no master key"), "{err}");
    assert!(!missing.exists());
    assert_eq!(snapshot(&dir), before);

    // The right key still works.
    let server = start(&dir, inline_key(1)).await.unwrap();
    assert_eq!(
        sign_in(&server.api(), &user, &secret, now()).await.unwrap(),
        200
    );
    server.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&keys);
}

#[tokio::test]
async fn a_key_file_is_made_outside_the_data_directory_and_rotation_reseals() {
    let _serial = tuxa_tests::serial().await;
    let dir = temp_dir("rotate");
    let keys = temp_dir("rotate-keys");
    let old_file = keys.join("tuxa.key");
    let from_file = |p: &Path| KeysConfig {
        current: MasterKeySource::File(p.to_path_buf()),
        old_files: Vec::new(),
    };
    let server = start(&dir.join("data"), from_file(&old_file))
        .await
        .unwrap();
    assert_eq!(mode(&old_file), 0o600, "made on the first start, 0600");
    let (user, secret) = staff(&server.api(), "dp.lan").await.unwrap();
    server.shutdown().await.unwrap();

    let new_file = keys.join("tuxa-2.key");
    let report =
        tuxa_server::secrets::rotate(&dir.join("data"), &from_file(&old_file), &new_file).unwrap();
    assert!(
        report.contains("secret(s) sealed under the new master key"),
        "{report}"
    );
    // The old key alone no longer opens the database; the new one does.
    let err = start_fails(&dir.join("data"), from_file(&old_file)).await;
    assert!(err.contains("cannot open"), "{err}");
    let server = start(&dir.join("data"), from_file(&new_file))
        .await
        .unwrap();
    assert_eq!(
        sign_in(&server.api(), &user, &secret, now()).await.unwrap(),
        200
    );
    server.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&keys);
}
