//! Liveness and readiness, for systemd, a load balancer or a monitoring
//! system (docs/api.md, "Health").
//!
//! The routes are in http.rs (this module does not know `AppState`):
//! - `GET /livez`: the process answers and its hub task is alive. When it
//!   fails, restarting is the cure.
//! - `GET /readyz`: whether the server can take consultations now: the store
//!   thread commits to the SQLite file, and the media task runs its loop on
//!   the UDP socket. It also names the version and the build.
//! - `GET /healthz` (http.rs) stays as it was: `ok` while HTTPS answers.
//!
//! The checks are not run per request: an anonymous caller must not be able
//! to queue work on the store thread. One monitor task owns them, probes
//! every [`PROBE_INTERVAL`], and publishes its [`Report`] on a watch channel
//! that the handlers read. The media task publishes a heartbeat
//! ([`MediaBeat`]) once per loop tick; nothing is shared behind a lock.

use std::time::{Duration, Instant};

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How often the monitor probes the store and looks at the media heartbeat.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A store probe that takes longer than this fails: a store thread that is
/// stuck on a locked or stalled disk is not ready, whether or not it
/// answers later.
pub const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The media task beats at least once a second (its timer tick); a beat
/// older than this means its loop is stuck.
pub const MEDIA_BEAT_MAX_AGE: Duration = Duration::from_secs(5);

/// tuxa's version (Cargo's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The build: the git commit it was built from (`build.rs`), or what the
/// packager set in `TUXA_BUILD`.
pub const BUILD: &str = env!("TUXA_BUILD");

/// The state of one dependency of readiness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum Check {
    /// Not probed yet (the first second after start).
    Starting,
    Ok,
    /// Not working, and why (one line, no path, no patient data).
    Failing(String),
}

impl Check {
    pub fn is_ok(&self) -> bool {
        matches!(self, Check::Ok)
    }
}

/// What the monitor found at its last probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub store: Check,
    pub media: Check,
}

impl Report {
    pub const STARTING: Report = Report {
        store: Check::Starting,
        media: Check::Starting,
    };

    pub fn ready(&self) -> bool {
        self.store.is_ok() && self.media.is_ok()
    }
}

/// The media task's heartbeat: it calls [`MediaBeat::beat`] once per tick
/// (not per packet: a watch send takes a lock). Dropped when the task ends,
/// which the monitor sees.
pub struct MediaBeat(watch::Sender<Instant>);

impl MediaBeat {
    pub fn beat(&self, now: Instant) {
        self.0.send_replace(now);
    }
}

/// A heartbeat for the media task and the end the monitor reads.
pub fn media_beat() -> (MediaBeat, watch::Receiver<Instant>) {
    let (tx, rx) = watch::channel(Instant::now());
    (MediaBeat(tx), rx)
}

/// Judges the media task from its heartbeat at `now`.
pub fn media_check(beat: &watch::Receiver<Instant>, now: Instant) -> Check {
    if beat.has_changed().is_err() {
        return Check::Failing("the media task has stopped".into());
    }
    let age = now.saturating_duration_since(*beat.borrow());
    if age > MEDIA_BEAT_MAX_AGE {
        // Not the age itself: the words stay the same while it lasts (one
        // journal line).
        Check::Failing(format!(
            "the media task has not run its loop for over {} s",
            MEDIA_BEAT_MAX_AGE.as_secs()
        ))
    } else {
        Check::Ok
    }
}

/// Probes the store: the store thread takes a job and SQLite grants it the
/// write lock (an empty write transaction, so nothing is written).
async fn probe_store(store: Store) -> Check {
    match store
        .call(|c| c.execute_batch("BEGIN IMMEDIATE; ROLLBACK;"))
        .await
    {
        Ok(()) => Check::Ok,
        Err(e) => Check::Failing(format!("the store cannot write: {e}")),
    }
}

/// The same words however long it has been, so that the journal gets one
/// line when it starts, not one per probe.
fn store_too_slow() -> Check {
    Check::Failing(format!(
        "the store did not answer within {} s",
        STORE_PROBE_TIMEOUT.as_secs()
    ))
}

/// One probe of the store, given at most [`STORE_PROBE_TIMEOUT`].
pub async fn store_check(store: &Store) -> Check {
    tokio::time::timeout(STORE_PROBE_TIMEOUT, probe_store(store.clone()))
        .await
        .unwrap_or_else(|_| store_too_slow())
}

/// Starts the monitor; it runs until `stop`. The receiver starts at
/// [`Report::STARTING`] (not ready).
pub fn spawn_monitor(
    store: Store,
    media: watch::Receiver<Instant>,
    stop: CancellationToken,
) -> watch::Receiver<Report> {
    let (tx, rx) = watch::channel(Report::STARTING);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<Report> = None;
        let mut ever_ready = false;
        // A probe that has not answered is waited for, not repeated: a
        // stuck store thread must not collect one probe per second.
        let mut pending: Option<(Instant, tokio::task::JoinHandle<Check>)> = None;
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    sd_notify("STOPPING=1\nSTATUS=stopping");
                    return;
                }
                _ = tick.tick() => {}
            }
            let (started, mut probe) = pending
                .take()
                .unwrap_or_else(|| (Instant::now(), tokio::spawn(probe_store(store.clone()))));
            let left = STORE_PROBE_TIMEOUT.saturating_sub(started.elapsed());
            let store_state = match tokio::time::timeout(left, &mut probe).await {
                Ok(Ok(check)) => check,
                Ok(Err(_)) => Check::Failing("the store probe failed".into()),
                Err(_) => {
                    pending = Some((started, probe));
                    store_too_slow()
                }
            };
            let report = Report {
                store: store_state,
                media: media_check(&media, Instant::now()),
            };
            // A change is logged once, in one line, for the journal, and
            // told to systemd (the first ready ends the unit's start).
            if last.as_ref() != Some(&report) {
                let first_ready = report.ready() && !ever_ready;
                ever_ready |= report.ready();
                sd_notify(&format!(
                    "{}{}",
                    if first_ready { "READY=1\n" } else { "" },
                    status_line(&report)
                ));
                if report.ready() {
                    tracing::info!("ready: store and media are working");
                } else {
                    tracing::warn!(
                        store = ?report.store,
                        media = ?report.media,
                        "not ready"
                    );
                }
                last = Some(report.clone());
            }
            tx.send_replace(report);
        }
    });
    rx
}

/// Tells systemd (a `Type=notify` service: `$NOTIFY_SOCKET`) `msg`, e.g.
/// `READY=1` or `STATUS=…`; nothing when not run by systemd. What `systemctl
/// status tuxa` shows comes from here.
pub fn sd_notify(msg: &str) {
    if let Some(socket) = std::env::var_os("NOTIFY_SOCKET")
        && let Err(e) = notify_to(&socket, msg)
    {
        tracing::debug!("systemd notification: {e}");
    }
}

/// Sends `msg` to systemd's notification socket `socket` (a path, or
/// `@name` for an abstract socket).
pub fn notify_to(socket: &std::ffi::OsStr, msg: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::ffi::OsStrExt as _;
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    let bytes = socket.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(msg.as_bytes(), &addr)?;
    } else {
        sock.send_to(msg.as_bytes(), socket)?;
    }
    Ok(())
}

/// The systemd status line of a report.
fn status_line(r: &Report) -> String {
    let part = |name: &str, c: &Check| match c {
        Check::Ok => format!("{name} ok"),
        Check::Starting => format!("{name} starting"),
        Check::Failing(why) => format!("{name}: {why}"),
    };
    if r.ready() {
        "STATUS=ready: store and media working".to_owned()
    } else {
        format!(
            "STATUS=not ready: {}; {}",
            part("store", &r.store),
            part("media", &r.media)
        )
    }
}

/// `GET /livez` (http.rs): alive while the hub task runs, since the HTTP
/// side alone is not the server.
pub fn live_answer(hub_stopped: bool) -> Response {
    if hub_stopped {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the hub task has stopped\n",
        )
            .into_response()
    } else {
        "ok\n".into_response()
    }
}

#[derive(Serialize)]
struct ReadyBody<'a> {
    ready: bool,
    version: &'static str,
    build: &'static str,
    checks: &'a Report,
}

/// `GET /readyz` (http.rs): 200 when ready, 503 when not (or `stopping`);
/// the body says which check failed and why.
pub fn ready_answer(report: &Report, stopping: bool) -> Response {
    let ready = report.ready() && !stopping;
    let body = ReadyBody {
        ready,
        version: VERSION,
        build: BUILD,
        checks: report,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_or_stopped_media_task_is_not_ready() {
        let (beat, rx) = media_beat();
        let t0 = Instant::now();
        beat.beat(t0);
        assert_eq!(media_check(&rx, t0 + Duration::from_secs(1)), Check::Ok);
        let stale = media_check(&rx, t0 + Duration::from_secs(9));
        assert!(
            matches!(&stale, Check::Failing(r) if r.contains("over 5 s")),
            "{stale:?}"
        );
        beat.beat(t0 + Duration::from_secs(9));
        assert_eq!(media_check(&rx, t0 + Duration::from_secs(10)), Check::Ok);
        drop(beat);
        assert!(matches!(
            media_check(&rx, t0 + Duration::from_secs(10)),
            Check::Failing(r) if r.contains("stopped")
        ));
    }

    #[tokio::test]
    async fn the_store_probe_fails_while_another_holds_the_write_lock() {
        let dir = std::env::temp_dir().join(format!("tuxa-health-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir.join("tuxa.sqlite3")).unwrap();
        assert_eq!(store_check(&store).await, Check::Ok);
        let other = rusqlite::Connection::open(dir.join("tuxa.sqlite3")).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE;").unwrap();
        let held = store_check(&store).await;
        assert!(matches!(&held, Check::Failing(_)), "{held:?}");
        other.execute_batch("ROLLBACK;").unwrap();
        // The probe that timed out still holds the store thread until its
        // busy timeout ends; the store comes back after it.
        let mut back = Check::Starting;
        for _ in 0..10 {
            back = store_check(&store).await;
            if back.is_ok() {
                break;
            }
        }
        assert_eq!(back, Check::Ok);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn systemd_hears_the_status() {
        let dir = std::env::temp_dir().join(format!("tuxa-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let r = Report {
            store: Check::Failing("the store did not answer within 2 s".into()),
            media: Check::Ok,
        };
        notify_to(path.as_os_str(), &status_line(&r)).unwrap();
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            "STATUS=not ready: store: the store did not answer within 2 s; media ok"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ready_needs_both() {
        assert!(!Report::STARTING.ready());
        let r = Report {
            store: Check::Ok,
            media: Check::Failing("x".into()),
        };
        assert!(!r.ready());
        assert!(
            Report {
                store: Check::Ok,
                media: Check::Ok
            }
            .ready()
        );
    }
}
