//! A test participant: a signaling session plus a WebRTC stack that publishes synthetic audio
//! and video and checks every frame it receives.
//!
//! Two stacks, neither of them the server's code path: [`Flavor::WebrtcRs`] (webrtc-rs 0.21, a
//! full browser-like peer connection) and [`Flavor::Str0m`] (str0m in client mode, full ICE).
//! Both do the same things — join, offer camera and microphone, answer the server's
//! renegotiation offers (as the polite peer), keep the session alive with `ping`, send frames,
//! answer keyframe requests — so a test can mix them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tuxa_protocol::{ClientMsg, MediaKind, ParticipantId, Role, RoomId, ServerMsg};

use crate::events::{EventLog, PeerEvent};
use crate::frames::build_frame;
use crate::server::TestServer;
use crate::signal::{Joined, SignalClient};
use crate::stats::{MediaRx, TrackRx, TxStats};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    WebrtcRs,
    Str0m,
}

impl std::fmt::Display for Flavor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Flavor::WebrtcRs => "webrtc-rs",
            Flavor::Str0m => "str0m",
        })
    }
}

#[derive(Debug, Clone)]
pub struct PeerOptions {
    pub send_audio: bool,
    pub send_video: bool,
    /// Send a keyframe at this interval besides the first frame and the requested ones. `None`
    /// (the default) sends keyframes only first and on PLI/FIR, as an encoder that is asked.
    pub keyframe_interval: Option<Duration>,
    pub video_frame_interval: Duration,
    pub audio_frame_interval: Duration,
    pub ping_interval: Duration,
    /// The address of the peer's UDP socket (its one host candidate).
    pub local_ip: std::net::IpAddr,
    /// ICE over TCP only (str0m peers only): connect to this address (the server's media TCP
    /// port), offer one active TCP host candidate and no UDP one, frame packets with RFC 4571.
    pub tcp_only: Option<std::net::SocketAddr>,
    /// Send real VP8 and Opus (looped) instead of the synthetic frames; the
    /// receivers' frame checks then fail, so only for tests that look at
    /// what the server made of the media (recordings).
    pub real_media: Option<Arc<crate::real_media::RealMedia>>,
}

impl Default for PeerOptions {
    fn default() -> Self {
        PeerOptions {
            send_audio: true,
            send_video: true,
            keyframe_interval: None,
            video_frame_interval: Duration::from_millis(33),
            audio_frame_interval: Duration::from_millis(20),
            ping_interval: Duration::from_secs(10),
            local_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            tcp_only: None,
            real_media: None,
        }
    }
}

pub(crate) enum PeerCmd {
    Send(ClientMsg),
    /// Offer new ICE credentials (str0m peers only; webrtc-rs ignores it).
    IceRestart,
    Close,
}

/// State shared between a peer's tasks and the test.
pub(crate) struct Shared {
    pub label: String,
    pub id: ParticipantId,
    pub opts: PeerOptions,
    pub events: Arc<EventLog>,
    pub rx: Arc<MediaRx>,
    pub tx: Arc<TxStats>,
    /// Media transport (ICE + DTLS) is up.
    pub media_up: watch::Sender<bool>,
    pub force_keyframe: AtomicBool,
    pub stopping: AtomicBool,
}

impl Shared {
    pub fn keyframe_requested(&self) {
        self.tx.keyframe_requests.fetch_add(1, Ordering::Relaxed);
        self.force_keyframe.store(true, Ordering::Relaxed);
    }
}

/// Makes the frames a peer sends, numbering them and deciding which video frames are keyframes.
pub(crate) struct FrameSource {
    shared: Arc<Shared>,
    audio_n: u64,
    video_n: u64,
    last_key: Option<Instant>,
    real: crate::real_media::Cursor,
}

impl FrameSource {
    pub fn new(shared: Arc<Shared>) -> FrameSource {
        FrameSource {
            shared,
            audio_n: 0,
            video_n: 0,
            last_key: None,
            real: Default::default(),
        }
    }

    pub fn audio(&mut self) -> Vec<u8> {
        if let Some(media) = &self.shared.opts.real_media {
            return self.real.audio(media);
        }
        let f = build_frame(MediaKind::Audio, self.shared.id, self.audio_n, false);
        self.audio_n += 1;
        f
    }

    /// The next video frame and whether it is a keyframe.
    pub fn video(&mut self) -> (Vec<u8>, bool) {
        let requested = self.shared.force_keyframe.swap(false, Ordering::Relaxed);
        let periodic = match (self.shared.opts.keyframe_interval, self.last_key) {
            (Some(iv), Some(last)) => last.elapsed() >= iv,
            _ => false,
        };
        let key = self.last_key.is_none() || requested || periodic;
        if let Some(media) = &self.shared.opts.real_media {
            let (f, key) = self.real.video(media, key);
            if key {
                self.last_key = Some(Instant::now());
            }
            self.video_n += 1;
            return (f, key);
        }
        if key {
            self.last_key = Some(Instant::now());
        }
        let f = build_frame(MediaKind::Video, self.shared.id, self.video_n, key);
        self.video_n += 1;
        (f, key)
    }

    /// A frame was written out.
    pub fn sent(&self, kind: MediaKind, key: bool) {
        let tx = &self.shared.tx;
        match kind {
            MediaKind::Audio => tx.audio_frames.fetch_add(1, Ordering::Relaxed),
            MediaKind::Video => tx.video_frames.fetch_add(1, Ordering::Relaxed),
        };
        if key {
            tx.keyframes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A keyframe could not be written: the next frame is a keyframe again.
    pub fn unsent_keyframe(&mut self) {
        self.shared.force_keyframe.store(true, Ordering::Relaxed);
    }
}

/// Client side of perfect negotiation (the client is the polite peer).
#[derive(Debug, Default)]
pub(crate) struct Negotiation {
    /// Our offer is out and not answered.
    pub offer_pending: bool,
    /// We rolled back an offer because a server offer crossed it; the server will tell us
    /// `negotiation_glare` about it, which is then expected, not news.
    pub expected_glares: u32,
    /// We have something to offer (at start, or after a rollback).
    pub want_offer: bool,
    pub offers_sent: u32,
    pub answers_sent: u32,
}

pub(crate) static SEQ: AtomicU64 = AtomicU64::new(1);

pub struct Peer {
    pub flavor: Flavor,
    pub label: String,
    pub joined: Joined,
    pub events: Arc<EventLog>,
    pub rx: Arc<MediaRx>,
    pub tx: Arc<TxStats>,
    shared: Arc<Shared>,
    cmd: mpsc::UnboundedSender<PeerCmd>,
    task: Option<JoinHandle<()>>,
}

impl Peer {
    /// Connects, says `hello`, joins with `token`, and starts the WebRTC side, which then offers
    /// its tracks. Returns once `joined` came; media flows later (see [`Peer::wait_media_up`]).
    pub async fn join(
        flavor: Flavor,
        server: &TestServer,
        room: &RoomId,
        token: &str,
        label: impl Into<String>,
        opts: PeerOptions,
    ) -> anyhow::Result<Peer> {
        let label = label.into();
        let mut ws = server.signal().await?;
        ws.hello()
            .await
            .with_context(|| format!("{label}: hello"))?;
        let joined = ws
            .join(room, token)
            .await
            .with_context(|| format!("{label}: join"))?;
        let events = Arc::new(EventLog::default());
        let shared = Arc::new(Shared {
            label: label.clone(),
            id: joined.you.id,
            opts,
            events: events.clone(),
            rx: Arc::new(MediaRx::default()),
            tx: Arc::new(TxStats::default()),
            media_up: watch::channel(false).0,
            force_keyframe: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        });
        let (cmd, cmds) = mpsc::unbounded_channel();
        let s = shared.clone();
        let task = tokio::spawn(async move {
            let result = match flavor {
                Flavor::WebrtcRs => crate::webrtc_peer::run(s.clone(), ws, cmds).await,
                Flavor::Str0m => crate::str0m_peer::run(s.clone(), ws, cmds).await,
            };
            s.stopping.store(true, Ordering::Relaxed);
            s.media_up.send_replace(false);
            if let Err(e) = result {
                tracing::warn!("{}: peer task failed: {e:#}", s.label);
                s.events.push(PeerEvent::Failed(format!("{e:#}")));
            }
        });
        tracing::info!("{label} ({flavor}) joined as participant {}", joined.you.id);
        Ok(Peer {
            flavor,
            label,
            joined,
            rx: shared.rx.clone(),
            tx: shared.tx.clone(),
            events,
            shared,
            cmd,
            task: Some(task),
        })
    }

    /// Mints a link for `role`/`name` in `room` and joins with it.
    pub async fn join_new(
        flavor: Flavor,
        server: &TestServer,
        room: &RoomId,
        role: Role,
        name: &str,
        opts: PeerOptions,
    ) -> anyhow::Result<Peer> {
        let token = server.api().mint_link(room, role, name).await?;
        Peer::join(
            flavor,
            server,
            room,
            &token,
            format!("{name} ({flavor})"),
            opts,
        )
        .await
    }

    pub fn id(&self) -> ParticipantId {
        self.joined.you.id
    }

    /// Sends a message on this peer's session.
    pub fn send(&self, msg: ClientMsg) {
        let _ = self.cmd.send(PeerCmd::Send(msg));
    }

    /// As a host: waits until someone named `name` is in the lobby and
    /// admits them. Run it alongside the waiting peer's `join`.
    pub async fn admit(&self, name: &str) -> anyhow::Result<ParticipantId> {
        let (_, id) = self
            .events
            .wait_msg(
                0,
                crate::signal::ADMIT_TIMEOUT,
                &format!("{name} in the lobby"),
                |m| match m {
                    ServerMsg::Lobby { waiting } => {
                        waiting.iter().find(|p| p.name == name).map(|p| p.id)
                    }
                    _ => None,
                },
            )
            .await?;
        self.send(ClientMsg::Admit { participant_id: id });
        Ok(id)
    }

    /// Mints a link, joins with it, and has `host` admit the new peer from
    /// the lobby (patients and guests wait there).
    pub async fn join_admitted(
        flavor: Flavor,
        server: &TestServer,
        room: &RoomId,
        role: Role,
        name: &str,
        opts: PeerOptions,
        host: &Peer,
    ) -> anyhow::Result<Peer> {
        let (peer, admitted) = tokio::join!(
            Peer::join_new(flavor, server, room, role, name, opts),
            host.admit(name)
        );
        admitted?;
        peer
    }

    /// Offers an ICE restart (new ufrag and password) on the live session,
    /// as a browser's `pc.restartIce()` does. str0m peers only.
    pub fn ice_restart(&self) {
        let _ = self.cmd.send(PeerCmd::IceRestart);
    }

    /// Sends `leave`; the server then closes the session.
    pub fn leave(&self) {
        self.send(ClientMsg::Leave {});
    }

    /// Waits until ICE and DTLS are up.
    pub async fn wait_media_up(&self, timeout: Duration) -> anyhow::Result<()> {
        let mut rx = self.shared.media_up.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|up| *up))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "{}: media not connected after {timeout:?}; events:\n{}",
                    self.label,
                    self.events.describe()
                )
            })?
            .map_err(|_| anyhow::anyhow!("{}: peer stopped", self.label))?;
        Ok(())
    }

    /// Waits until `n` intact frames of `kind` from `from` arrived in total.
    pub async fn wait_frames(
        &self,
        from: ParticipantId,
        kind: MediaKind,
        n: u64,
        timeout: Duration,
    ) -> anyhow::Result<TrackRx> {
        self.rx
            .wait_frames(from, kind, n, timeout)
            .await
            .with_context(|| {
                format!(
                    "{} ({}), sent: {}; events:\n{}",
                    self.label,
                    self.id(),
                    self.tx.summary(),
                    self.events.describe()
                )
            })
    }

    /// Waits until `n` more intact frames of each kind from `from` arrive than have so far.
    pub async fn wait_more_media(
        &self,
        from: ParticipantId,
        n: u64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let a = self.rx.intact(from, MediaKind::Audio);
        let v = self.rx.intact(from, MediaKind::Video);
        let deadline = tokio::time::Instant::now() + timeout;
        self.wait_frames(from, MediaKind::Audio, a + n, timeout)
            .await?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.wait_frames(
            from,
            MediaKind::Video,
            v + n,
            left.max(Duration::from_millis(1)),
        )
        .await?;
        Ok(())
    }

    /// Waits for a server message at index >= `from` (see [`EventLog::len`]).
    pub async fn wait_msg<T>(
        &self,
        from: usize,
        timeout: Duration,
        what: &str,
        pred: impl FnMut(&ServerMsg) -> Option<T>,
    ) -> anyhow::Result<(usize, T)> {
        self.events
            .wait_msg(from, timeout, what, pred)
            .await
            .with_context(|| format!("{} ({})", self.label, self.id()))
    }

    /// Waits until the peer has answered a server offer that came at index >= `from`.
    pub async fn wait_answered(&self, from: usize, timeout: Duration) -> anyhow::Result<usize> {
        let (i, ()) = self
            .events
            .wait_msg(from, timeout, "a server offer", |m| {
                matches!(m, ServerMsg::Offer { .. }).then_some(())
            })
            .await
            .with_context(|| format!("{} ({})", self.label, self.id()))?;
        let (j, ()) = self
            .events
            .wait_for(i, timeout, "our answer to it", |e| {
                matches!(e, PeerEvent::Note(n) if n.starts_with("answered")).then_some(())
            })
            .await
            .with_context(|| format!("{} ({})", self.label, self.id()))?;
        Ok(j)
    }

    /// Whether the peer's task reported a failure.
    pub fn failures(&self) -> Vec<String> {
        self.events
            .entries()
            .into_iter()
            .filter_map(|e| match e.event {
                PeerEvent::Failed(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Everything known about this peer, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}, participant {}): {}; received {}\nevents:\n{}",
            self.label,
            self.flavor,
            self.id(),
            self.tx.summary(),
            self.rx.summary(),
            self.events.describe()
        )
    }

    /// Stops the peer (closes its peer connection and WebSocket) and waits for its task.
    pub async fn close(mut self) {
        let _ = self.cmd.send(PeerCmd::Close);
        if let Some(task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
        {
            tracing::warn!("{}: peer task did not stop in 5 s", self.label);
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.cmd.send(PeerCmd::Close);
        self.shared.stopping.store(true, Ordering::Relaxed);
    }
}

/// Sends `ping` with a fresh seq.
pub(crate) async fn send_ping(ws: &mut SignalClient) -> anyhow::Result<()> {
    ws.send(&ClientMsg::Ping {
        seq: SEQ.fetch_add(1, Ordering::Relaxed),
    })
    .await
}
