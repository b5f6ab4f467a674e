//! `/livez`, `/readyz` and `/healthz` on the real binary (docs/api.md,
//! "Health"): ready with version and build while the store and the media
//! task work; not ready, with the store named as the reason, while another
//! process holds the database's write lock; ready again once it lets go.

mod common;

use std::time::{Duration, Instant};

use common::{Server, key_hex, temp_dir};
use serde_json::Value;

async fn readyz(server: &Server) -> (u16, Value) {
    let (status, body) = server.get("/readyz").await.expect("GET /readyz");
    (status, serde_json::from_str(&body).expect("JSON"))
}

/// Polls `/readyz` until `want(status)` or `within` has passed.
async fn readyz_until(
    server: &Server,
    within: Duration,
    want: impl Fn(u16) -> bool,
) -> (u16, Value) {
    let deadline = Instant::now() + within;
    loop {
        let r = readyz(server).await;
        if want(r.0) || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_store_and_names_version_and_build() {
    let root = temp_dir("health");
    let data = root.join("data");
    let server = Server::start(&data, &key_hex(0x61)).await;

    assert_eq!(server.get("/healthz").await.unwrap(), (200, "ok".into()));
    let (status, body) = server.get("/livez").await.unwrap();
    assert_eq!((status, body.trim()), (200, "ok"));

    let (status, body) = readyz(&server).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    let build = body["build"].as_str().unwrap();
    assert!(!build.is_empty(), "{body}");
    assert_eq!(body["checks"]["store"]["status"], "ok", "{body}");
    assert_eq!(body["checks"]["media"]["status"], "ok", "{body}");

    // Another process takes the write lock: the store cannot commit, and
    // readiness says so within a few probes.
    let lock = rusqlite::Connection::open(data.join("tuxa.sqlite3")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    let (status, body) = readyz_until(&server, Duration::from_secs(10), |s| s == 503).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["checks"]["store"]["status"], "failing", "{body}");
    let reason = body["checks"]["store"]["reason"].as_str().unwrap();
    assert!(reason.contains("store"), "{reason}");
    assert_eq!(body["checks"]["media"]["status"], "ok", "{body}");
    // Liveness is not readiness: restarting would not help.
    assert_eq!(server.get("/livez").await.unwrap().0, 200);

    lock.execute_batch("ROLLBACK;").unwrap();
    drop(lock);
    let (status, body) = readyz_until(&server, Duration::from_secs(20), |s| s == 200).await;
    assert_eq!(status, 200, "ready again once the lock is gone: {body}");
    assert_eq!(body["checks"]["store"]["status"], "ok");
    server.stop();
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_a_line() {
    use std::io::BufRead as _;
    let root = temp_dir("health-json");
    let mut server = Server::start_with(
        &root.join("data"),
        &key_hex(0x62),
        &["--log-format", "json", "--log", "info"],
        &[],
        std::process::Stdio::piped(),
    )
    .await;
    let stdout = server.child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The monitor logs `ready` once, as JSON.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let ready = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            break None;
        };
        if line.starts_with('{') {
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
            if v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("ready"))
            {
                break Some(v);
            }
        }
        seen.push(line);
    };
    let ready = ready.unwrap_or_else(|| panic!("no JSON `ready` line in {seen:#?}"));
    assert_eq!(ready["level"], "INFO");
    assert_eq!(ready["target"], "tuxa_server::health");
    assert!(ready["timestamp"].is_string(), "{ready}");
    server.stop();
    let _ = std::fs::remove_dir_all(&root);
}

/// Under systemd (`Type=notify`), the server says READY=1 once the store
/// and the media work, and what it is doing in STATUS= (what `systemctl
/// status tuxa` shows); STOPPING=1 at SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_is_told_ready_and_stopping() {
    let root = temp_dir("health-notify");
    let path = root.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let server = Server::start_with(
        &root.join("data"),
        &key_hex(0x63),
        &[],
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
        std::process::Stdio::null(),
    )
    .await;
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("a notification");
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert_eq!(first, "READY=1\nSTATUS=ready: store and media working");
    server.stop();
    let n = sock.recv(&mut buf).expect("a notification at stop");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("STOPPING=1"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let _ = std::fs::remove_dir_all(&root);
}
