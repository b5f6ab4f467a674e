//! The str0m test peer: str0m in client mode (full ICE, not ICE-lite, the offerer and so the
//! controlling side), one UDP socket on 127.0.0.1 added as a host candidate; the server's
//! candidate comes in its answer. Frames go out with the frame-level `Writer::write` and come in
//! as `Event::MediaData` (depacketized by str0m).
//!
//! One task owns everything (the `Rtc`, the socket, the WebSocket) and drives the sans-IO
//! `Rtc` in a `select!` loop. The str0m set-up, offer/answer and frame writing come from
//! `tuxa-test-kit`; the loop, the sockets and the negotiation rules (glare, rollback) are here.
//!
//! With `PeerOptions::tcp_only` the peer reaches the server over ICE-TCP only: it connects a
//! `TcpStream` to the server's media TCP port first, offers that connection's address as its one
//! (active) TCP candidate, and frames packets with RFC 4571 (2-byte big-endian length); a reader
//! and a writer task move whole frames between the stream and the loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context;
use str0m::media::Direction;
use str0m::net::{Protocol, TcpType};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tuxa_protocol::{ClientMsg, ErrorCode, MediaKind, ServerMsg};
use tuxa_test_kit::rtc;
use tuxa_test_kit::sdp::{self, Mids, PendingOffer, Track};

use crate::events::PeerEvent;
use crate::peer::{FrameSource, Negotiation, PeerCmd, Shared, send_ping};
use crate::signal::{SignalClient, WsEvent};

struct State {
    shared: Arc<Shared>,
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    /// ICE-TCP: frames to write to the server's media TCP port.
    tcp_out: Option<mpsc::UnboundedSender<Vec<u8>>>,
    neg: Negotiation,
    /// Our offer in flight, with the mids it proposes.
    pending: Option<PendingOffer>,
    /// The mids of our published tracks, once the server accepted them.
    published: Mids,
    connected: bool,
    src: FrameSource,
    start: Instant,
}

impl State {
    /// Runs `poll_output` until it wants to wait; sends what it transmits, handles its events.
    fn drive(&mut self) -> anyhow::Result<Instant> {
        loop {
            match self.rtc.poll_output().context("str0m poll_output")? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) if t.proto == Protocol::Tcp => {
                    if let Some(tx) = &self.tcp_out {
                        let _ = tx.send(t.contents.into());
                    }
                }
                Output::Transmit(t) => {
                    // UDP: on a full buffer the datagram is lost, as it would be on a network.
                    if let Err(e) = self.socket.try_send_to(&t.contents, t.destination)
                        && e.kind() != std::io::ErrorKind::WouldBlock
                    {
                        tracing::debug!("{}: send_to {}: {e}", self.shared.label, t.destination);
                    }
                }
                Output::Event(e) => self.on_event(e),
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        let events = &self.shared.events;
        match e {
            Event::Connected => {
                self.connected = true;
                events.note("connection state connected");
                self.shared.media_up.send_replace(true);
            }
            Event::IceConnectionStateChange(s) => {
                events.note(format!("ice state {s:?}"));
                if s == IceConnectionState::Disconnected {
                    self.shared.media_up.send_replace(false);
                } else if self.connected && s == IceConnectionState::Connected {
                    self.shared.media_up.send_replace(true);
                }
            }
            Event::MediaAdded(m) => {
                if let Some(media) = self.rtc.media(m.mid) {
                    events.note(format!(
                        "media {} ({:?}, {:?}) of stream {}",
                        m.mid,
                        m.kind,
                        m.direction,
                        media.stream_id()
                    ));
                }
            }
            Event::MediaData(data) => {
                let Some(media) = self.rtc.media(data.mid) else {
                    return;
                };
                let kind = rtc::protocol_kind(media.kind());
                let label = media.stream_id().to_owned();
                self.shared.rx.record(kind, Some(&label), &data.data);
            }
            Event::KeyframeRequest(req) if Some(req.mid) == self.published.video => {
                self.shared.keyframe_requested();
            }
            Event::Closed => events.note("str0m: closed"),
            _ => {}
        }
    }

    fn offer_if_wanted(&mut self) -> Option<String> {
        if !self.neg.want_offer || self.pending.is_some() {
            return None;
        }
        self.neg.want_offer = false;
        let id = self.shared.id;
        let opts = &self.shared.opts;
        let track =
            |kind: &str| Track::new(Direction::SendRecv, id.to_string(), format!("{id}-{kind}"));
        let (offer, pending) = sdp::offer(
            &mut self.rtc,
            opts.send_audio.then(|| track("audio")),
            opts.send_video.then(|| track("video")),
        )?;
        self.pending = Some(pending);
        self.neg.offer_pending = true;
        self.neg.offers_sent += 1;
        Some(offer)
    }

    fn rollback(&mut self) {
        // Dropping the pending offer is str0m's rollback: nothing was applied yet.
        self.pending = None;
        self.neg.offer_pending = false;
    }

    /// Handles a server message; returns what to send back.
    fn on_server_msg(&mut self, msg: ServerMsg) -> anyhow::Result<Option<ClientMsg>> {
        let events = self.shared.events.clone();
        match msg {
            ServerMsg::Offer { sdp } => {
                if self.neg.offer_pending {
                    self.rollback();
                    self.neg.expected_glares += 1;
                    self.neg.want_offer = true;
                    events.note("rolled back our offer for the server's");
                }
                let answer =
                    sdp::answer(&mut self.rtc, &sdp).context("answering the server's offer")?;
                self.neg.answers_sent += 1;
                events.note(format!("answered ({})", self.neg.answers_sent));
                Ok(Some(ClientMsg::Answer { sdp: answer }))
            }
            ServerMsg::Answer { sdp } => {
                let Some(pending) = self.pending.take() else {
                    events.note("an answer to no offer of ours");
                    return Ok(None);
                };
                let accepted = pending
                    .accept(&mut self.rtc, &sdp)
                    .context("the server's answer")?;
                self.neg.offer_pending = false;
                self.published.adopt(accepted);
                events.note("answer applied");
                Ok(None)
            }
            ServerMsg::Error {
                code: ErrorCode::NegotiationGlare,
                ..
            } => {
                if self.neg.expected_glares > 0 {
                    self.neg.expected_glares -= 1;
                } else if self.neg.offer_pending {
                    self.rollback();
                    self.neg.want_offer = true;
                }
                Ok(None)
            }
            ServerMsg::Error {
                code: ErrorCode::SdpInvalid,
                ..
            } if self.neg.offer_pending => {
                self.rollback();
                events.note("the server rejected our offer");
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    fn write_frame(&mut self, kind: MediaKind) {
        let mid = match kind {
            MediaKind::Audio => self.published.audio,
            MediaKind::Video => self.published.video,
        };
        let Some(mid) = mid else { return };
        if !self.connected {
            return;
        }
        let skind = rtc::str0m_kind(kind);
        let Some(pt) = rtc::pt_for(&mut self.rtc, mid, rtc::codec(skind)) else {
            return;
        };
        let rtp_time = rtc::media_time(skind, self.start.elapsed());
        let (data, key) = match kind {
            MediaKind::Audio => (self.src.audio(), false),
            MediaKind::Video => self.src.video(),
        };
        match rtc::write_frame(&mut self.rtc, mid, pt, Instant::now(), rtp_time, data) {
            Ok(()) => self.src.sent(kind, key),
            Err(e) => {
                if key {
                    self.src.unsent_keyframe();
                }
                self.shared
                    .events
                    .note(format!("writing a {kind:?} frame failed: {e}"));
            }
        }
    }
}

enum Step {
    Udp(std::io::Result<(usize, SocketAddr)>),
    /// A frame from the media TCP connection (`None`: it closed).
    Tcp(Option<Vec<u8>>),
    Timeout,
    Audio,
    Video,
    Ws(WsEvent),
    Cmd(Option<PeerCmd>),
    Ping,
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    mut ws: SignalClient,
    mut cmds: mpsc::UnboundedReceiver<PeerCmd>,
) -> anyhow::Result<()> {
    let socket = UdpSocket::bind((shared.opts.local_ip, 0)).await?;
    let local = socket.local_addr()?;
    let mut rtc = rtc::new_rtc();
    let (mut tcp_in, tcp_out, tcp_local) = match shared.opts.tcp_only {
        None => {
            let candidate = Candidate::host(local, "udp").context("host candidate")?;
            rtc.add_local_candidate(candidate);
            (None, None, None)
        }
        Some(server) => {
            let stream = TcpStream::connect(server)
                .await
                .with_context(|| format!("connecting to the media TCP port {server}"))?;
            stream.set_nodelay(true)?;
            let tcp_local = stream.local_addr()?;
            let candidate = Candidate::builder()
                .tcp()
                .host(tcp_local)
                .tcptype(TcpType::Active)
                .build()
                .context("TCP candidate")?;
            rtc.add_local_candidate(candidate);
            let (rx, tx) = rfc4571(stream, shared.label.clone());
            (Some(rx), Some(tx), Some((tcp_local, server)))
        }
    };

    let mut st = State {
        src: FrameSource::new(shared.clone()),
        shared: shared.clone(),
        rtc,
        socket,
        local,
        tcp_out,
        neg: Negotiation {
            want_offer: true,
            ..Default::default()
        },
        pending: None,
        published: Mids::default(),
        connected: false,
        start: Instant::now(),
    };
    let events = shared.events.clone();
    let opts = shared.opts.clone();
    let mut a_tick = tokio::time::interval(opts.audio_frame_interval);
    let mut v_tick = tokio::time::interval(opts.video_frame_interval);
    a_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    v_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ping = tokio::time::interval(opts.ping_interval);
    ping.tick().await;
    let mut buf = vec![0u8; 2048];

    let result: anyhow::Result<()> = async {
        loop {
            if let Some(sdp) = st.offer_if_wanted() {
                ws.send(&ClientMsg::Offer { sdp }).await?;
                events.note("offered");
            }
            st.rtc
                .handle_input(Input::Timeout(Instant::now()))
                .context("str0m timeout")?;
            let deadline = st.drive()?;
            let sending = st.connected;
            let step = tokio::select! {
                r = st.socket.recv_from(&mut buf) => Step::Udp(r),
                f = next_frame(&mut tcp_in) => Step::Tcp(f),
                _ = tokio::time::sleep_until(deadline.into()) => Step::Timeout,
                _ = a_tick.tick(), if sending && st.published.audio.is_some() => Step::Audio,
                _ = v_tick.tick(), if sending && st.published.video.is_some() => Step::Video,
                ev = ws.next_event() => Step::Ws(ev),
                cmd = cmds.recv() => Step::Cmd(cmd),
                _ = ping.tick() => Step::Ping,
            };
            match step {
                Step::Tcp(None) => {
                    events.note("media TCP connection closed");
                    tcp_in = None;
                }
                Step::Tcp(Some(frame)) => {
                    let Some((tcp_local, server)) = tcp_local else {
                        continue;
                    };
                    let Some(input) =
                        rtc::receive(Instant::now(), Protocol::Tcp, server, tcp_local, &frame)
                    else {
                        continue;
                    };
                    shared.tx.tcp_packets_in.fetch_add(1, Ordering::Relaxed);
                    if st.rtc.accepts(&input) {
                        st.rtc.handle_input(input).context("str0m input (TCP)")?;
                    }
                }
                Step::Udp(r) => {
                    let (n, source) = r.context("UDP recv")?;
                    shared.tx.udp_packets_in.fetch_add(1, Ordering::Relaxed);
                    let Some(input) =
                        rtc::receive(Instant::now(), Protocol::Udp, source, st.local, &buf[..n])
                    else {
                        continue;
                    };
                    if st.rtc.accepts(&input) {
                        st.rtc.handle_input(input).context("str0m input")?;
                    }
                }
                Step::Timeout => {}
                Step::Audio => st.write_frame(MediaKind::Audio),
                Step::Video => st.write_frame(MediaKind::Video),
                Step::Ws(WsEvent::Msg(msg)) => {
                    events.msg(msg.clone());
                    if let Some(reply) = st.on_server_msg(msg)? {
                        ws.send(&reply).await?;
                    }
                }
                Step::Ws(WsEvent::Closed(c)) => {
                    events.push(PeerEvent::Closed(c));
                    return Ok(());
                }
                Step::Ws(WsEvent::Unparsable(u)) => events.note(format!("UNPARSABLE: {u}")),
                Step::Cmd(Some(PeerCmd::Send(m))) => {
                    if let Err(e) = ws.send(&m).await {
                        events.note(format!("sending {}: {e:#}", m.type_name()));
                    }
                }
                Step::Cmd(Some(PeerCmd::IceRestart)) => {
                    if st.pending.is_some() {
                        events.note("ICE restart skipped: an offer is outstanding");
                        continue;
                    }
                    if let Some((sdp, pending, creds)) = sdp::ice_restart(&mut st.rtc) {
                        st.pending = Some(pending);
                        st.neg.offer_pending = true;
                        st.neg.offers_sent += 1;
                        events.note(format!("ICE restart offered (ufrag {})", creds.ufrag));
                        ws.send(&ClientMsg::Offer { sdp }).await?;
                    }
                }
                Step::Cmd(Some(PeerCmd::Close)) | Step::Cmd(None) => {
                    return Ok(());
                }
                Step::Ping => {
                    if let Err(e) = send_ping(&mut ws).await {
                        events.note(format!("sending ping: {e:#}"));
                    }
                }
            }
        }
    }
    .await;
    shared.stopping.store(true, Ordering::Relaxed);
    st.rtc.disconnect();
    ws.close().await;
    result
}

/// The next frame from the media TCP connection; never, without one.
async fn next_frame(rx: &mut Option<mpsc::UnboundedReceiver<Vec<u8>>>) -> Option<Vec<u8>> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// RFC 4571 over `stream`: a reader task that sends each whole frame to the returned receiver
/// (which ends when the connection does), and a writer task that prefixes and writes what is sent
/// to the returned sender (until it is dropped).
fn rfc4571(
    stream: TcpStream,
    label: String,
) -> (
    mpsc::UnboundedReceiver<Vec<u8>>,
    mpsc::UnboundedSender<Vec<u8>>,
) {
    let (mut r, mut w) = stream.into_split();
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        loop {
            let mut len = [0u8; 2];
            if r.read_exact(&mut len).await.is_err() {
                return;
            }
            let mut frame = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if r.read_exact(&mut frame).await.is_err() || in_tx.send(frame).is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            let Ok(len) = u16::try_from(frame.len()) else {
                continue;
            };
            let mut buf = Vec::with_capacity(frame.len() + 2);
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(&frame);
            if let Err(e) = w.write_all(&buf).await {
                tracing::debug!("{label}: media TCP write: {e}");
                return;
            }
        }
    });
    (in_rx, out_tx)
}
