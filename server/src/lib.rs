//! tuxa's server: the only crate that does IO.
//!
//! [`run`] takes already-bound sockets, a [`Config`] and a shutdown future,
//! so the binary stays thin and tests start a whole server on port 0.
//!
//! Tasks and who owns what:
//! - the **hub task** owns all signaling state ([`tuxa_signaling::Hub`]);
//! - the **media task** owns the UDP socket and the SFU ([`tuxa_sfu::Sfu`]),
//!   and the routing of ICE-TCP connections;
//! - the **media TCP acceptor** and one task per ICE-TCP connection (framing
//!   only; `media_tcp.rs`);
//! - one **session task** per WebSocket, holding only its socket;
//! - the **store thread** owns the SQLite connection;
//! - the **health monitor** owns the readiness checks and publishes them on
//!   a watch (`health.rs`);
//! - the HTTPS accept loop owns the connection counts and spawns one task
//!   per TLS connection (`accept.rs`).
//!
//! They talk by message over bounded channels; nothing is shared behind a
//! lock (ARCHITECTURE.md, "Backpressure and stopping").

mod accept;
mod app;
pub mod appointments;
pub mod audit;
mod auth;
mod authz;
pub mod backup;
mod check;
mod clock;
mod conferences;
pub mod config;
pub mod demo;
mod directory;
mod error;
mod export;
pub mod gate;
pub mod health;
/// Every route with its access (gate.rs), for the permission matrix test.
pub use http::route_table;
mod http;
mod hub_task;
mod limits;
mod media;
mod media_tcp;
mod playback;
mod qr;
pub mod queues;
mod recorder;
mod reports;
pub mod secrets;
mod store;
mod tls;
pub mod turn;
/// Recordings at rest: keys, crash recovery, verify, retention and purge.
pub mod vault;
mod web;
mod ws;

use std::future::Future;
use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tuxa_protocol::{ConsultationKind, Role, RoomId, RoomInfo};
use tuxa_sfu::{Sfu, SfuConfig};
use tuxa_signaling::{Hub, HubConfig, Input, RoomStatus, TokenKey};

pub use config::{Config, Demo, Settings, TlsSource};

/// The sockets the server serves on, bound by the caller.
pub struct Listeners {
    /// HTTPS: the web client, the API and the WebSocket.
    pub http: std::net::TcpListener,
    /// Media for every participant (ICE-lite, demultiplexed per peer).
    pub media: std::net::UdpSocket,
    /// Media over TCP (ICE-TCP, passive candidates) for networks that block
    /// UDP; `None` announces no TCP candidate.
    pub media_tcp: Option<std::net::TcpListener>,
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b).expect("the system random source");
    b
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub(crate) fn hex(data: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(data)
}

/// Serves until `shutdown` completes, then stops cleanly: every session is
/// told `server_shutdown`, and what was recorded is on disk.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let http_addr = listeners.http.local_addr()?;
    let media_addr = listeners.media.local_addr()?;

    let announce = announce_addresses(&config, media_addr);
    let candidates: Vec<SocketAddr> = announce
        .iter()
        .map(|ip| SocketAddr::new(*ip, media_addr.port()))
        .collect();
    let media_tcp_addr = match &listeners.media_tcp {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let tcp_candidates: Vec<SocketAddr> = match media_tcp_addr {
        Some(tcp) => {
            let ips = if config.announce_tcp.is_empty() {
                announce_addresses(&config, tcp)
            } else {
                config.announce_tcp.clone()
            };
            ips.iter()
                .map(|ip| SocketAddr::new(*ip, tcp.port()))
                .collect()
        }
        None => Vec::new(),
    };
    let public_url = match &config.public_url {
        Some(u) => u.clone(),
        None => {
            let host = announce
                .iter()
                .find(|ip| !ip.is_loopback())
                .or(announce.first())
                .copied()
                .unwrap_or(http_addr.ip());
            match host {
                IpAddr::V6(v6) => format!("https://[{v6}]:{}", http_addr.port()),
                IpAddr::V4(v4) => format!("https://{v4}:{}", http_addr.port()),
            }
        }
    };

    // The store, its secrets, and what it already knows. A start that
    // creates the database is a first start (for the demo).
    let first_start = !config.data_dir.join("tuxa.sqlite3").exists();
    let store = store::Store::open_with(&config.data_dir.join("tuxa.sqlite3"), &config.keys)?;
    if let Some(path) = store.keys().created() {
        println!(
            "Created a master key: {} (keep it, apart from backups of the data directory)",
            path.display()
        );
    }
    let keys = store.keys().clone();
    let admin_key = config.admin_key.clone();
    let (token_key, admin_hash, new_admin_key, rooms, attended, contacts) = store
        .call(move |c| {
            // Sealed under the master key (secrets.rs).
            let token_key = secrets::token_key(c, &keys)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
            let mut new_key = None;
            let admin_hash = match (admin_key, store::get_meta(c, "admin_key_sha256")?) {
                (Some(k), _) => {
                    let h = sha256(k.as_bytes()).to_vec();
                    store::set_meta(c, "admin_key_sha256", &h)?;
                    h
                }
                (None, Some(h)) => h,
                (None, None) => {
                    let k = format!("tuxa_{}", hex(&random_bytes::<24>()));
                    let h = sha256(k.as_bytes()).to_vec();
                    store::set_meta(c, "admin_key_sha256", &h)?;
                    new_key = Some(k);
                    h
                }
            };
            // A room with people in it when the server died ends at the
            // restart (`server_restart`), its attendance with it: the
            // record gets an end time instead of staying open for ever.
            let crashed = tuxa_store::live::rooms_left_open(c)?;
            let now = hub_task::unix_now() as i64;
            for id in &crashed {
                tuxa_store::live::end_at_restart(c, id, tuxa_records::UnixTime(now))?;
                audit::append(
                    c,
                    &audit::Entry {
                        at: now,
                        action: audit::Action::ConsultationEnded,
                        consultation: Some(id.clone()),
                        actor: "system".into(),
                        detail: serde_json::json!({"reason": "server_restart"}),
                    },
                )?;
            }
            tuxa_store::live::close_attendance_at_restart(c, tuxa_records::UnixTime(now))?;
            let rooms = store::consultations(c)?;
            // Open rooms someone was in before a clean stop: with no doctor
            // or nurse coming back they end as abandoned.
            let attended = tuxa_store::live::staffed_open_rooms(c)?;
            let contacts = rooms
                .iter()
                .filter(|r| r.status == tuxa_records::record::ConsultationStatus::Open)
                .map(|r| Ok((r.id.clone(), store::facility_contact(c, r.facility_id)?)))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((token_key, admin_hash, new_key, rooms, attended, contacts))
        })
        .await
        .context("opening the store")?;
    // Recordings (vault.rs): their keys (a missing or bad one is one log
    // line, never a failed start), then crash recovery before any
    // recording can begin. The hub's `recording_available` and the
    // recorder read `recording_keys`.
    let recording_keys = {
        let cfg = config.recording.clone();
        let data_dir = config.data_dir.clone();
        let now = tuxa_records::UnixTime(hub_task::unix_now() as i64);
        store
            .call(move |c| Ok(vault::start(c, &cfg, &data_dir, now)))
            .await
            .context("recordings at start")?
    };
    if let vault::RecordingKeys::Available(ring) = &recording_keys {
        tracing::debug!("recordings seal under key {}", ring.sealing().id());
    }
    let tokens = Arc::new(TokenKey::new(&token_key));
    let mut admin_key_hash = [0u8; 32];
    admin_key_hash.copy_from_slice(&admin_hash[..32.min(admin_hash.len())]);

    // TLS.
    let names: Vec<String> = config
        .public_url
        .as_deref()
        .and_then(|u| u.strip_prefix("https://"))
        .map(|h| h.split([':', '/']).next().unwrap_or("").to_owned())
        .filter(|h| !h.is_empty() && h.parse::<IpAddr>().is_err())
        .into_iter()
        .collect();
    let mut cert_ips = announce.clone();
    cert_ips.push(IpAddr::from([127, 0, 0, 1]));
    let loaded = tls::load(&config.tls, &names, &cert_ips)?;
    if let Some(path) = &loaded.created {
        println!("Created a self-signed certificate: {}", path.display());
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(loaded.server_config);

    // Tasks. `accepting` stops the listeners; `stop` everything else once
    // the hub has ended the rooms. The sessions hear `stop` through
    // `AppState::shutdown` (a watch, set from it below).
    let accepting = CancellationToken::new();
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (hub_tx, hub_rx) = mpsc::channel(hub_task::HUB_QUEUE);
    let (media_tx, media_rx) = mpsc::channel(hub_task::MEDIA_QUEUE);
    let (from_media_tx, from_media_rx) = mpsc::channel(hub_task::MEDIA_EVENTS);
    let mut hub = Hub::new(
        HubConfig {
            max_participants: config.max_participants,
            reconnect_grace: config.reconnect_grace,
            abandon_after: config.abandon_after,
            // Without a recording key (none configured, or one that does not
            // load: vault.rs said why in the log) calls go on and a request
            // to record is refused with `recording_unavailable`.
            recording_available: recording_keys.available(),
            ..HubConfig::default()
        },
        tokens.clone(),
    )
    .with_ticket_key(random_bytes())
    .with_queue_config(tuxa_signaling::QueueConfig {
        max_per_address: config.queue_max_per_address,
        max_per_phone: config.queue_max_per_phone,
        ..tuxa_signaling::QueueConfig::default()
    });
    for r in &rooms {
        let Ok(id) = RoomId::parse(&r.id) else {
            continue;
        };
        let kind = r.kind;
        let status = if r.status == tuxa_records::record::ConsultationStatus::Open {
            RoomStatus::Open
        } else {
            RoomStatus::Ended
        };
        hub.handle(
            std::time::Instant::now(),
            hub_task::unix_now(),
            Input::RoomOpened(
                RoomInfo {
                    id,
                    kind,
                    title: r.title.clone(),
                },
                status,
            ),
        );
    }
    for (room, contact) in contacts {
        let (Ok(room), Some(contact)) = (RoomId::parse(&room), contact) else {
            continue;
        };
        hub.handle(
            std::time::Instant::now(),
            hub_task::unix_now(),
            Input::RoomContact { room, contact },
        );
    }
    for room in attended.iter().filter_map(|r| RoomId::parse(r).ok()) {
        hub.handle(
            std::time::Instant::now(),
            hub_task::unix_now(),
            Input::Attended(room),
        );
    }
    // Each open conference's named chair, and whoever the chair removed: a
    // restart gives neither a self-made chair nor a removed participant a way in.
    let (chairs, bars) = store
        .run(|c| {
            Ok((
                tuxa_store::conferences::named_chairs(c)?,
                hub_task::room_bars(c)?,
            ))
        })
        .await
        .context("loading the rooms' chairs and bars")?;
    let restored = chairs
        .into_iter()
        .filter_map(|(room, staff)| {
            let room = RoomId::parse(&room).ok()?;
            Some(Input::ChairNamed { room, staff })
        })
        .chain(bars.into_iter().filter_map(|(room, bar)| {
            Some(Input::Barred {
                room: RoomId::parse(&room).ok()?,
                bar,
            })
        }));
    for input in restored {
        hub.handle(std::time::Instant::now(), hub_task::unix_now(), input);
    }
    let open_queues = store
        .call(|c| queues::queues(c))
        .await
        .context("loading the on-call queues")?;
    for q in open_queues {
        hub.handle(
            std::time::Instant::now(),
            hub_task::unix_now(),
            Input::QueueOpened {
                queue: q.id,
                name: q.name,
                facility: q.facility_id,
            },
        );
    }
    let (pairings_tx, pairings_rx) = mpsc::channel(hub_task::PAIRING_QUEUE);
    store.audit(audit::Entry {
        at: hub_task::unix_now() as i64,
        action: audit::Action::ServerStarted,
        consultation: None,
        actor: "system".into(),
        detail: serde_json::json!({"version": env!("CARGO_PKG_VERSION")}),
    });
    // The recorder (recorder.rs): its own thread, fed by the media task
    // through a bounded queue it never waits on; the hub describes rooms to
    // it (their recording's row, who is in them).
    let (recorder_events_tx, mut recorder_events) = mpsc::channel(recorder::EVENT_QUEUE);
    let (recorder_tx, recorder_control, recorder_thread) =
        recorder::spawn(recorder::RecorderConfig {
            dir: vault::recordings_dir(&config.data_dir),
            keys: recording_keys.ring().cloned(),
            store: Some(store.clone()),
            runtime: Some(tokio::runtime::Handle::current()),
            events: recorder_events_tx,
            queue: recorder::QUEUE,
        })
        .context("starting the recorder thread")?;
    // A fault stops the room's recording in the hub, which tells the
    // chair (or doctor) and the room, and records why.
    {
        let hub = hub_tx.clone();
        tokio::spawn(async move {
            while let Some(ev) = recorder_events.recv().await {
                let recorder::RecorderEvent::Failed { room, reason } = ev;
                tracing::warn!(%room, "recording stopped: {reason}");
                if hub
                    .send(hub_task::HubMsg::Input(Input::RecordingFailed {
                        room,
                        reason,
                    }))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
    }
    let hub_handle = tokio::spawn(
        hub_task::HubTask {
            hub,
            rx: hub_rx,
            from_media: from_media_rx,
            media: hub_task::Outbox::new(media_tx),
            store: store.clone(),
            pairings: hub_task::Outbox::new(pairings_tx),
            recorder: Some(recorder_control.clone()),
        }
        .run(),
    );

    listeners.media.set_nonblocking(true)?;
    let media_socket = tokio::net::UdpSocket::from_std(listeners.media)?;
    let media_tcp = match listeners.media_tcp {
        Some(l) => {
            l.set_nonblocking(true)?;
            let l = tokio::net::TcpListener::from_std(l)?;
            let (tx, rx) = mpsc::channel(media_tcp::EVENT_QUEUE);
            tokio::spawn(media_tcp::accept_loop(
                l,
                tx,
                accepting.clone(),
                tracker.clone(),
            ));
            Some(rx)
        }
        None => None,
    };
    let (media_beat, media_beat_rx) = health::media_beat();
    let health = health::spawn_monitor(store.clone(), media_beat_rx, stop.clone());
    let media_handle = tokio::spawn(
        media::MediaTask {
            recorder: Some(recorder_tx),
            beat: media_beat,
            socket: media_socket,
            sfu: Sfu::new(SfuConfig {
                candidates: candidates.clone(),
                tcp_candidates: tcp_candidates.clone(),
            }),
            commands: media_rx,
            hub: from_media_tx,
            candidates: candidates.clone(),
            shutdown: stop.clone(),
            tcp: media_tcp,
            tcp_routes: media_tcp::TcpRoutes::new(tcp_candidates.clone()),
        }
        .run(),
    );

    let state = app::AppState {
        hub: hub_tx.clone(),
        store: store.clone(),
        tokens,
        admin_key_hash: Arc::new(admin_key_hash),
        public_url: public_url.clone().into(),
        next_session: Arc::new(AtomicU64::new(1)),
        shutdown: shutdown_rx.clone(),
        turn: config.turn.clone().map(Arc::new),
        department_name: config.department_name.as_deref().map(Arc::from),
        recordings: vault::Recordings::new(
            vault::recordings_dir(&config.data_dir),
            recording_keys.clone(),
        ),
        health,
    };
    // Extractors read at most this much even of a body whose length the
    // body check (limits.rs) could not know; the upload route sets its own.
    let app = http::router(state.clone())
        .layer(axum::extract::DefaultBodyLimit::max(limits::JSON_BODY_MAX));
    // Not tracked: they end with the hub's channel, and what they were
    // doing (a pairing's room) is in the store or never started.
    tokio::spawn(pairing_task(state.clone(), pairings_rx));
    tokio::spawn(roster_task(state.clone()));

    listeners.http.set_nonblocking(true)?;
    let tcp = tokio::net::TcpListener::from_std(listeners.http)?;

    println!("tuxa listening on https://{http_addr} (media UDP {media_addr})");
    println!("  announced media addresses: {candidates:?}");
    match media_tcp_addr {
        Some(a) => println!("  media TCP (ICE-TCP) {a}, announced: {tcp_candidates:?}"),
        None => println!("  media TCP (ICE-TCP) off"),
    }
    if let Some(k) = &new_admin_key {
        println!();
        println!("  Admin API key (shown once; only its hash is stored):");
        println!("    {k}");
    }
    let terminal = std::io::stdout().is_terminal();
    if demo_wanted(config.demo, first_start, terminal) {
        print_demo(&state).await;
    } else if first_start && config.demo == Demo::FirstStart {
        println!("  (No demo consultation: the output is not a terminal. `--demo` makes one.)");
    }

    let accept = accept::accept_loop(
        tcp,
        acceptor,
        app,
        accept::Limits {
            max_connections: config.max_connections,
            max_per_ip: config.max_connections_per_ip,
            header_timeout: config.header_timeout,
            idle_timeout: config.idle_timeout,
        },
        accepting.clone(),
        tracker.clone(),
    );

    let (trigger_tx, trigger_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        shutdown.await;
        let _ = trigger_tx.send(());
    });
    tokio::select! {
        _ = accept => {}
        _ = trigger_rx => {}
    }

    // The drain, in order, all of it within DRAIN_TIMEOUT:
    // 1. no new connection (HTTPS, media TCP);
    // 2. the hub ends every room (attendance closed, `server_shutdown` and a
    //    1001 close queued for each session) and returns;
    // 3. `stop`: connections finish their request and close, sessions send
    //    what they have queued and their close frame, the media task ends;
    // 4. every tracked connection and session is gone;
    // 5. the store has written everything queued before.
    tracing::info!("shutting down");
    accepting.cancel();
    let drain = async {
        let (done_tx, done_rx) = oneshot::channel();
        if hub_tx
            .send(hub_task::HubMsg::Shutdown(done_tx))
            .await
            .is_ok()
        {
            let _ = done_rx.await;
        }
        stop.cancel();
        let _ = shutdown_tx.send(true);
        tracker.close();
        tracker.wait().await;
        let _ = media_handle.await;
        let _ = hub_handle.await;
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        tracing::warn!(
            "shutdown: connections still open after {DRAIN_TIMEOUT:?}; stopping without them"
        );
        stop.cancel();
        let _ = shutdown_tx.send(true);
    }
    // With the media and hub tasks gone (their ends of its queue), the
    // recorder finishes every open file (tail, head, hash, row) and ends.
    // Bounded: a file it could not finish in time is found open at the
    // next start and recovered as incomplete (vault.rs), readable to its
    // last chunk.
    drop(recorder_control);
    let finishing = tokio::task::spawn_blocking(move || recorder_thread.join());
    if tokio::time::timeout(RECORDER_FINISH, finishing)
        .await
        .is_err()
    {
        tracing::warn!(
            "shutdown: recordings not finished after {RECORDER_FINISH:?}; they will be recovered as incomplete at the next start"
        );
    }
    drop(hub_tx);
    drop(state);
    // A last round trip through the store thread: everything queued before
    // it (the hub's last records included) has been written.
    let _ = store.call(|_| Ok(())).await;
    Ok(())
}

/// How long a stop waits for sessions and connections to close. A session's
/// close handshake waits at most 2 s for its client (`ws.rs`), an HTTP
/// connection 1 s; what is still open after this belongs to a client that
/// does not answer, and the process exits without it.
/// How long a stop waits for the recorder to finish its open files.
const RECORDER_FINISH: Duration = Duration::from_secs(30);

const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The addresses to announce as ICE candidates.
fn announce_addresses(config: &Config, media: SocketAddr) -> Vec<IpAddr> {
    if !config.announce.is_empty() {
        return config.announce.clone();
    }
    if !media.ip().is_unspecified() {
        return vec![media.ip()];
    }
    let mut v = Vec::new();
    if let Some(ip) = primary_ip() {
        v.push(ip);
    }
    v.push(IpAddr::from([127, 0, 0, 1]));
    v
}

/// The address this machine would use towards the outside. A UDP `connect`
/// only consults the routing table: no packet is sent. 192.0.2.1 is
/// TEST-NET-1, reserved for documentation.
fn primary_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

/// Whether this start makes a demo consultation and prints its links. The
/// links carry join tokens: printed where nobody reads them (a service's
/// journal) they would be tokens in a log, so without `--demo` only a first
/// start at a terminal — someone trying tuxa out — gets them.
fn demo_wanted(demo: Demo, first_start: bool, terminal: bool) -> bool {
    match demo {
        Demo::Always => true,
        Demo::Never => false,
        Demo::FirstStart => first_start && terminal,
    }
}

async fn print_demo(state: &app::AppState) {
    let result = async {
        let row = state
            .create_consultation(
                ConsultationKind::Visit,
                "Demo — khám từ xa / remote visit".into(),
                None,
                "system",
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let room = RoomId::parse(&row.id).map_err(|e| anyhow::anyhow!("{e}"))?;
        let doctor = state
            .mint_link(
                &room,
                app::LinkSpec::new(
                    Role::Doctor,
                    "BS. Demo".into(),
                    Some("Bệnh viện đa khoa tỉnh".into()),
                    86_400,
                ),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let patient = state
            .mint_link(
                &room,
                app::LinkSpec::new(
                    Role::Patient,
                    "Bệnh nhân Demo".into(),
                    Some("Trạm y tế xã".into()),
                    86_400,
                ),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        anyhow::Ok((doctor, patient))
    }
    .await;
    match result {
        Ok((d, p)) => {
            println!();
            println!("  Demo consultation — open each link in its own browser window:");
            println!("    doctor  / bác sĩ:     {}", d.url);
            println!("    patient / bệnh nhân:  {}", p.url);
            println!("  (The certificate is self-signed: accept the browser's warning once.)");
            println!();
        }
        Err(e) => tracing::warn!("could not create the demo consultation: {e}"),
    }
}

/// `tuxa verify-audit`: walks the audit chain of the SQLite file in
/// `data_dir`. Returns the report line and whether the chain is intact.
pub fn verify_audit(data_dir: &std::path::Path) -> anyhow::Result<(String, bool)> {
    let path = data_dir.join("tuxa.sqlite3");
    if !path.exists() {
        anyhow::bail!("no database at {}", path.display());
    }
    let c =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(match audit::verify(&c)? {
        audit::Verdict::Intact { entries, head } => (
            format!("audit chain intact: {entries} entries, head {head}"),
            true,
        ),
        audit::Verdict::Broken { entry, reason } => (
            format!("audit chain BROKEN at entry {entry}: {reason}"),
            false,
        ),
    })
}

/// Makes the room of each queue pairing: a visit, the doctor's link and the
/// patient's (pre-admitted: the doctor already accepted them), then hands the
/// links to the hub, which sends each their own.
/// Shifts start and end while doctors are signed in: every 30 seconds the
/// rosters of the staff who are online are read again and the hub told, so
/// that nobody has to reconnect to go on call, and availability ends with
/// the shift.
async fn roster_task(state: app::AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        if state
            .hub
            .send(hub_task::HubMsg::StaffOnline(tx))
            .await
            .is_err()
        {
            return;
        }
        let Ok(online) = rx.await else { return };
        if online.is_empty() {
            continue;
        }
        let now = hub_task::unix_now() as i64;
        let changes = state
            .store
            .call(move |c| {
                let queues = queues::queues(c)?;
                let mut out = Vec::new();
                for staff in online {
                    let mut on_call = Vec::new();
                    for q in &queues {
                        if queues::on_call(c, q.id, staff, now)? {
                            on_call.push(q.id);
                        }
                    }
                    out.push((staff, on_call));
                }
                Ok(out)
            })
            .await;
        match changes {
            Ok(changes) => {
                for (staff, on_call) in changes {
                    let _ = state
                        .hub
                        .send(hub_task::HubMsg::Input(
                            tuxa_signaling::Input::OnCallChanged { staff, on_call },
                        ))
                        .await;
                }
            }
            Err(e) => tracing::warn!("roster refresh: {e}"),
        }
    }
}

async fn pairing_task(
    state: app::AppState,
    mut pairings: mpsc::Receiver<tuxa_signaling::queue::Pairing>,
) {
    while let Some(p) = pairings.recv().await {
        let queue_id = p.queue;
        let queue = state
            .store
            .call(move |c| queues::queue(c, queue_id))
            .await
            .ok()
            .flatten();
        let facility = queue.as_ref().map(|q| q.facility_id);
        let queue_name = queue.map(|q| q.name).unwrap_or_else(|| "Khám từ xa".into());
        // The doctor is shown to the patient with facility and licence number.
        let doctor_id = p.doctor.id;
        let doctor_profile = state
            .store
            .call(move |c| directory::profile(c, doctor_id))
            .await
            .ok()
            .flatten();
        let made = async {
            let row = state
                .create_consultation(ConsultationKind::Visit, queue_name, facility, "system")
                .await?;
            let room = RoomId::parse(&row.id)
                .map_err(|_| error::ApiError::new(tuxa_protocol::ErrorCode::Internal, "room id"))?;
            // The patient's stated reason is the visit's "Tóm tắt" in its minutes.
            let (cid, reason) = (row.id.clone(), p.card.reason.trim().to_owned());
            if !reason.is_empty() {
                let now = tuxa_records::UnixTime(hub_task::unix_now() as i64);
                state.store.spawn("visit reason", move |c| {
                    crate::export::store_visit_reason(c, &cid, &reason, now)
                });
            }
            // A consultation from the queue lasts hours at most.
            let ttl = 4 * 3600;
            let doctor = state
                .mint_link(
                    &room,
                    app::LinkSpec {
                        staff_id: Some(p.doctor.id),
                        licence_number: doctor_profile
                            .as_ref()
                            .and_then(|d| d.practitioner.as_ref())
                            .map(|pr| pr.licence_number.clone()),
                        actor: "system".into(),
                        ..app::LinkSpec::new(
                            Role::Doctor,
                            p.doctor.name.clone(),
                            doctor_profile.as_ref().map(|d| d.facility.name.clone()),
                            ttl,
                        )
                    },
                )
                .await?;
            let patient = state
                .mint_link(
                    &room,
                    app::LinkSpec {
                        pre_admitted: true,
                        actor: "system".into(),
                        ..app::LinkSpec::new(Role::Patient, p.card.name.clone(), None, ttl)
                    },
                )
                .await?;
            Ok::<_, error::ApiError>(tuxa_signaling::CallLinks {
                ticket: p.ticket.0.clone(),
                room,
                patient_url: patient.url.clone(),
                doctor_url: doctor.url.clone(),
            })
        }
        .await;
        match made {
            Ok(links) => {
                let _ = state
                    .hub
                    .send(hub_task::HubMsg::Input(Input::CallReady {
                        links,
                        patient: p.patient_session,
                        doctor: p.doctor_session,
                    }))
                    .await;
            }
            Err(e) => tracing::error!("could not make the room of a queue call: {e:?}"),
        }
    }
}

/// The current code of a TOTP secret given as base32 (as `POST /api/v1/staff`
/// returns it): what an authenticator app shows. For tests and tooling.
pub fn totp_code(secret_base32: &str, unix: u64) -> Option<String> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits: u64 = 0;
    let mut n = 0;
    let mut key = Vec::new();
    for c in secret_base32.bytes().filter(|c| *c != b'=' && *c != b' ') {
        let v = ALPHABET.iter().position(|a| *a == c.to_ascii_uppercase())? as u64;
        bits = (bits << 5) | v;
        n += 5;
        if n >= 8 {
            n -= 8;
            key.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    Some(format!("{:06}", auth::totp(&key, unix, 6)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_links_only_when_asked_or_on_a_first_start_at_a_terminal() {
        assert!(demo_wanted(Demo::FirstStart, true, true));
        assert!(!demo_wanted(Demo::FirstStart, false, true));
        assert!(!demo_wanted(Demo::FirstStart, true, false));
        assert!(demo_wanted(Demo::Always, false, false));
        assert!(!demo_wanted(Demo::Never, true, true));
    }
}
