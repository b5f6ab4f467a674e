//! Nothing lost: `kill -9` of the server during a consultation, then a
//! restart on the same data directory. Every record written before is still
//! there, the audit chain verifies, and participants rejoin by their links.
//!
//! The server runs in a child process (this very test binary, re-run with
//! `--ignored --exact crash_child_server`), so that it can be killed with
//! SIGKILL — no destructor, no flush, no clean shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tuxa_protocol::{ClientMsg, ConsultationKind, Role};
use tuxa_tests::{ApiClient, Auth, REPLY_TIMEOUT, SignalClient, TEST_ADMIN_KEY};

const CHILD_DIR: &str = "TUXA_CRASH_CHILD_DIR";
const CHILD_HTTP: &str = "TUXA_CRASH_CHILD_HTTP";
const CHILD_UDP: &str = "TUXA_CRASH_CHILD_UDP";

/// Not a test of its own: the body of the child process. Ignored so that it
/// runs only when the parent asks for it by name.
#[test]
#[ignore = "runs only as the child process of kill_9_loses_nothing"]
fn crash_child_server() {
    let (Ok(dir), Ok(http), Ok(udp)) = (
        std::env::var(CHILD_DIR),
        std::env::var(CHILD_HTTP),
        std::env::var(CHILD_UDP),
    ) else {
        return;
    };
    let http = std::net::TcpListener::bind(http.as_str()).expect("bind TCP");
    let media = std::net::UdpSocket::bind(udp.as_str()).expect("bind UDP");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime
        .block_on(tuxa_server::run(
            tuxa_server::Listeners {
                http,
                media,
                media_tcp: None,
            },
            tuxa_server::Config::for_tests(PathBuf::from(dir)),
            std::future::pending(),
        ))
        .expect("server");
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn spawn_child(dir: &Path, http: SocketAddr, udp: SocketAddr) -> anyhow::Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(["--ignored", "--exact", "crash_child_server", "--nocapture"])
        .env(CHILD_DIR, dir)
        .env(CHILD_HTTP, http.to_string())
        .env(CHILD_UDP, udp.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning the child server")
}

async fn wait_ready(api: &ApiClient) -> anyhow::Result<()> {
    for _ in 0..100 {
        if let Ok(r) = api.request_raw("GET", "/healthz", None, Auth::None).await
            && r.status == 200
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the child server did not come up")
}

/// Joins with a link and returns the open session.
async fn join(
    http: SocketAddr,
    room: &tuxa_protocol::RoomId,
    token: &str,
) -> anyhow::Result<SignalClient> {
    let mut s = SignalClient::connect(http).await?;
    s.hello().await?;
    s.join(room, token).await?;
    Ok(s)
}

/// A patient consents, joins, waits in the lobby and is admitted by `doctor`.
async fn admit_patient(
    http: SocketAddr,
    room: &tuxa_protocol::RoomId,
    token: &str,
    doctor: &mut SignalClient,
) -> anyhow::Result<SignalClient> {
    let mut patient = SignalClient::connect(http).await?;
    patient.hello().await?;
    patient.consent().await?;
    patient
        .send(&ClientMsg::Join {
            room: room.clone(),
            token: token.to_owned(),
        })
        .await?;
    let waiting_id = doctor
        .recv_until(REPLY_TIMEOUT, "the patient in the lobby", |m| match m {
            tuxa_protocol::ServerMsg::Lobby { waiting } => waiting.first().map(|p| p.id),
            _ => None,
        })
        .await?;
    doctor
        .send(&ClientMsg::Admit {
            participant_id: waiting_id,
        })
        .await?;
    patient
        .recv_until(REPLY_TIMEOUT, "joined", |m| {
            matches!(m, tuxa_protocol::ServerMsg::Joined { .. }).then_some(())
        })
        .await?;
    Ok(patient)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("tuxa-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let udp: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let api = ApiClient::new(http, TEST_ADMIN_KEY);

    let mut child = spawn_child(&dir, http, udp)?;
    wait_ready(&api).await?;
    let room = api
        .create_consultation(ConsultationKind::Conference, "Hội chẩn — Nội khoa")
        .await?;
    let doctor_link = api.mint_link(&room, Role::Doctor, "BS. Lan").await?;
    let nurse_link = api.mint_link(&room, Role::Nurse, "ĐD. Hoa").await?;
    let patient_link = api.mint_link(&room, Role::Patient, "Nguyễn Văn A").await?;
    let mut doctor = join(http, &room, &doctor_link).await?;
    let _nurse = join(http, &room, &nurse_link).await?;
    // The patient consents, waits, and is admitted.
    let _patient = admit_patient(http, &room, &patient_link, &mut doctor).await?;
    // What the record holds now must survive the crash.
    let (status, before) = api
        .admin(
            "GET",
            &format!("/api/v1/consultations/{room}/record.json"),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{before}");
    assert_eq!(
        before["participants"].as_array().map(Vec::len),
        Some(3),
        "{before}"
    );
    assert_eq!(
        before["consents"].as_array().map(Vec::len),
        Some(1),
        "{before}"
    );

    // SIGKILL: no shutdown, no flush.
    child.kill()?;
    child.wait()?;
    let (intact, report) = {
        let (report, intact) = tuxa_server::verify_audit(&dir)?;
        (intact, report)
    };
    assert!(intact, "after the crash: {report}");

    let mut child = spawn_child(&dir, http, udp)?;
    let result = async {
        wait_ready(&api).await?;
        let (report, intact) = tuxa_server::verify_audit(&dir)?;
        assert!(intact, "after the restart: {report}");

        let (status, after) = api
            .admin(
                "GET",
                &format!("/api/v1/consultations/{room}/record.json"),
                None,
            )
            .await?;
        assert_eq!(status, 200, "{after}");
        // People were in the room when the server died: it ended at the
        // restart, with that reason and an end time.
        assert_eq!(after["consultation"]["status"], "ended", "{after}");
        assert!(
            after["consultation"]["ended_at"].as_i64().is_some(),
            "{after}"
        );
        let (_, row) = api
            .admin("GET", &format!("/api/v1/consultations/{room}"), None)
            .await?;
        assert_eq!(row["end_reason"], "server_restart", "{row}");
        // Everyone who was there is still on record, their presence closed
        // at the restart; consent and links are all there.
        let people = after["participants"].as_array().context("participants")?;
        assert_eq!(people.len(), 3, "{after}");
        for p in people {
            assert_eq!(p["leave_reason"], "server_restart", "{p}");
            assert!(p["left_at"].as_i64().is_some(), "{p}");
        }
        let names = |v: &Value| -> Vec<String> {
            v["participants"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| p["name"].as_str().unwrap_or("").to_owned())
                .collect()
        };
        assert_eq!(names(&after), names(&before));
        assert_eq!(after["consents"], before["consents"]);
        assert_eq!(after["links"], before["links"]);
        // The audit trail of before is a prefix of the one after.
        let before_audit = before["audit"].as_array().context("audit")?;
        let after_audit = after["audit"].as_array().context("audit")?;
        assert!(after_audit.len() > before_audit.len());
        assert_eq!(
            &after_audit[..before_audit.len() - 1],
            &before_audit[..before_audit.len() - 1]
        );

        // The room ended with the crash: its links now lead to the end
        // screen (room_ended), for everyone.
        for link in [&doctor_link, &nurse_link, &patient_link] {
            let (status, body) = api.join_check(room.as_str(), link).await?;
            assert_eq!(status, 410, "{body}");
            assert_eq!(body["error"]["code"], "room_ended", "{body}");
        }
        anyhow::Ok(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
