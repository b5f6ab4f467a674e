//! The media task: owns the UDP socket and the SFU. Datagrams go straight
//! from the socket into the SFU and out again in the same task — no channel
//! and no lock per packet. Only control messages (SDP, removal) arrive over
//! a channel, and only signaling leaves by one.
//!
//! Datagrams are read in batches (`recvmmsg`: one system call per batch
//! instead of per datagram) and written in batches of `sendto` calls (see
//! `send_batch` for why not `sendmmsg`). A batch read is fed to the
//! SFU whole before its output is drained, so each subscriber is polled once
//! per batch (see `tuxa_sfu`'s cost model).
//!
//! ICE-TCP (`media_tcp.rs`) feeds the same SFU: TCP frames arrive over a
//! bounded channel from the connection tasks, and the SFU's TCP `Transmit`s
//! are queued on their connection; this task owns that routing.
//!
//! Both channels with the hub are bounded. This task awaits room to send
//! its events to the hub (an SDP answer must not be lost); that wait always
//! ends because the hub takes media events before anything else and never
//! waits on this task (its commands to us go through an `Outbox`). So
//! there is no cycle of waits between the two.

use std::io::{ErrorKind, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendto};
use str0m::net::{Protocol, Transmit};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tuxa_sfu::{Sfu, SfuOutput};
use tuxa_signaling::{Input, MediaCommand};

use crate::media_tcp::{TcpEvent, TcpRoutes};
use crate::recorder::RecorderTx;

/// Datagrams per `recvmmsg`.
const RECV_BATCH: usize = 32;
/// `recvmmsg` calls per wake-up before commands and timers get a turn.
const RECV_ROUNDS: usize = 4;
/// Datagrams per `sendmmsg`.
const SEND_BATCH: usize = 64;
/// Larger than any datagram str0m accepts or sends (its MTU is 1150 bytes
/// of RTP payload); a longer one is truncated, then refused by the SFU.
const DATAGRAM_MAX: usize = 2048;

/// How often the SFU's table sizes are checked; they are logged (target
/// `tuxa::sfu_counts`, level debug) when they changed, so that a benchmark or
/// an operator (`--log warn,tuxa::sfu_counts=debug`) can see them return to
/// their baseline once participants leave.
const COUNTS_LOG_INTERVAL: Duration = Duration::from_secs(1);

pub struct MediaTask {
    pub socket: UdpSocket,
    pub sfu: Sfu,
    pub commands: mpsc::Receiver<MediaCommand>,
    /// To the hub ([`crate::hub_task::MEDIA_EVENTS`]).
    pub hub: mpsc::Sender<Input>,
    /// Announced candidate addresses; see [`MediaTask::local_for`].
    pub candidates: Vec<SocketAddr>,
    pub shutdown: CancellationToken,
    /// Frames and connection events from the ICE-TCP connections (`None`:
    /// no TCP listener).
    pub tcp: Option<mpsc::Receiver<TcpEvent>>,
    /// Where each TCP connection is, by remote address.
    pub tcp_routes: TcpRoutes,
    /// The recorder's queue (recorder.rs): the tap's events go there without
    /// waiting; `None` in set-ups that record nothing.
    pub recorder: Option<RecorderTx>,
    /// Readiness (health.rs): beaten once per counts tick, not per packet.
    pub beat: crate::health::MediaBeat,
}

impl MediaTask {
    pub async fn run(mut self) {
        let mut bufs = vec![[0u8; DATAGRAM_MAX]; RECV_BATCH];
        let mut got: Vec<(usize, Option<SocketAddr>)> = Vec::with_capacity(RECV_BATCH);
        let mut batch: Vec<Transmit> = Vec::with_capacity(SEND_BATCH);
        let mut next_counts = Instant::now();
        let mut last_counts = None;
        loop {
            // TCP frames are taken every round, whichever branch woke us:
            // a busy UDP socket (polled first below) must not starve them.
            self.drain_tcp();
            self.flush(&mut batch).await;
            let now = Instant::now();
            if now >= next_counts {
                next_counts = now + COUNTS_LOG_INTERVAL;
                self.beat.beat(now);
                self.tcp_routes.sweep(now);
                let c = self.sfu.counts();
                if last_counts != Some(c) {
                    last_counts = Some(c);
                    tracing::debug!(
                        target: "tuxa::sfu_counts",
                        peers = c.peers,
                        rooms = c.rooms,
                        addresses = c.addresses,
                        timers = c.timers,
                        dirty = c.dirty,
                        queued = c.queued_outputs,
                        tcp_connections = self.tcp_routes.len(),
                        tcp_dropped = self.tcp_routes.dropped,
                        "sfu counts"
                    );
                }
            }
            let deadline = self
                .sfu
                .poll_timeout()
                .unwrap_or(now + Duration::from_secs(1))
                .min(next_counts);
            // A deadline already passed is served now: tokio's timer rounds
            // up to the next millisecond, which would add up to 1 ms.
            if deadline <= now {
                self.sfu.handle_timeout(now);
                continue;
            }
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                // Timers before the socket: a socket that is always readable
                // must not starve retransmissions and reports.
                _ = tokio::time::sleep_until(deadline.into()) => {
                    self.sfu.handle_timeout(Instant::now());
                }
                r = self.socket.readable() => {
                    if r.is_err() {
                        continue;
                    }
                    for _ in 0..RECV_ROUNDS {
                        let fd = self.socket.as_raw_fd();
                        let r = self
                            .socket
                            .try_io(Interest::READABLE, || recv_batch(fd, &mut bufs, &mut got));
                        match r {
                            Ok(n) => {
                                let now = Instant::now();
                                for (i, &(len, source)) in got.iter().enumerate() {
                                    // A datagram without a usable source
                                    // cannot be answered.
                                    let Some(source) = source else { continue };
                                    let dest = self.local_for(source);
                                    self.sfu.handle_receive(now, source, dest, &bufs[i][..len]);
                                }
                                if n < RECV_BATCH {
                                    break;
                                }
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            // ICMP port unreachable from a peer that went away
                            // surfaces here on Linux; it concerns that peer only.
                            Err(e) => {
                                tracing::debug!("media recv: {e}");
                                break;
                            }
                        }
                    }
                }
                ev = next_tcp(&mut self.tcp) => match ev {
                    Some(ev) => {
                        self.on_tcp(ev);
                        self.drain_tcp();
                    }
                    // The acceptor and every connection are gone (shutdown).
                    None => self.tcp = None,
                },
                cmd = self.commands.recv() => {
                    let Some(cmd) = cmd else { break };
                    let now = Instant::now();
                    match cmd {
                        MediaCommand::Offer { room, participant, sdp } => {
                            self.sfu.handle_offer(now, &room, participant, &sdp)
                        }
                        MediaCommand::Answer { participant, sdp } => {
                            self.sfu.handle_answer(now, participant, &sdp)
                        }
                        MediaCommand::Remove { participant } => self.sfu.remove(now, participant),
                        MediaCommand::Sources { participant, sources } => {
                            self.sfu.set_sources(participant, sources)
                        }
                        MediaCommand::AudioOnly { participant, on } => {
                            self.sfu.set_audio_only(now, participant, on)
                        }
                        MediaCommand::Recording { room, on } => {
                            self.sfu.set_recording(now, &room, on)
                        }
                    }
                }
            }
        }
    }

    /// Sends everything the SFU has to say: datagrams in batches, signaling
    /// to the hub.
    async fn flush(&mut self, batch: &mut Vec<Transmit>) {
        if let Some(r) = &mut self.recorder {
            r.retry();
        }
        while let Some(out) = self.sfu.poll_output() {
            match out {
                SfuOutput::Transmit(t) if t.proto == Protocol::Tcp => {
                    if !self.tcp_routes.send(t) {
                        // The connection closed; the peer's ICE will notice.
                        tracing::trace!("media TCP: no connection for a transmit");
                    }
                }
                SfuOutput::Transmit(t) => {
                    batch.push(t);
                    if batch.len() == SEND_BATCH {
                        self.send(batch).await;
                    }
                }
                SfuOutput::Signal(pid, msg) => {
                    let _ = self.hub.send(Input::FromMedia(pid, msg)).await;
                }
                SfuOutput::Gone(pid) => {
                    let _ = self.hub.send(Input::MediaGone(pid)).await;
                }
                SfuOutput::Record(rec) => {
                    // A full queue stops that room's recording (the recorder
                    // is told, and says so); the call goes on.
                    let cut = self.recorder.as_mut().and_then(|r| r.send(rec));
                    if let Some(room) = cut {
                        self.sfu.set_recording(Instant::now(), &room, false);
                    }
                }
            }
        }
        self.send(batch).await;
    }

    async fn send(&self, batch: &mut Vec<Transmit>) {
        let fd = self.socket.as_raw_fd();
        let mut done = 0;
        while done < batch.len() {
            let rest = &batch[done..];
            match self
                .socket
                .try_io(Interest::WRITABLE, || send_batch(fd, rest))
            {
                Ok(n) => done += n.max(1),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if self.socket.writable().await.is_err() {
                        break;
                    }
                }
                // The first datagram of the batch was refused (an unroutable
                // address, say): skip it, send the rest.
                Err(e) => {
                    tracing::debug!("media send to {}: {e}", rest[0].destination);
                    done += 1;
                }
            }
        }
        batch.clear();
    }

    fn local_for(&self, source: SocketAddr) -> SocketAddr {
        local_for(&self.candidates, source)
    }

    /// Takes the TCP events that are waiting (a batch at most) before the
    /// SFU is drained: each subscriber is polled once per batch, as for UDP.
    fn drain_tcp(&mut self) {
        for _ in 0..RECV_BATCH * RECV_ROUNDS {
            let Some(Ok(ev)) = self.tcp.as_mut().map(|r| r.try_recv()) else {
                break;
            };
            self.on_tcp(ev);
        }
    }

    /// One event from the TCP connections.
    fn on_tcp(&mut self, ev: TcpEvent) {
        let now = Instant::now();
        match ev {
            TcpEvent::Opened {
                id,
                remote,
                local,
                out,
            } => self.tcp_routes.opened(now, id, remote, local, out),
            TcpEvent::Frame { id, remote, data } => {
                let Some(dest) = self.tcp_routes.destination(id, remote) else {
                    return;
                };
                let taken = self
                    .sfu
                    .handle_receive_on(now, Protocol::Tcp, remote, dest, &data);
                self.tcp_routes.received(now, id, remote, taken);
            }
            TcpEvent::Closed { id, remote } => self.tcp_routes.closed(id, remote),
        }
    }
}

/// The next TCP event, or never when there is no TCP listener.
async fn next_tcp(rx: &mut Option<mpsc::Receiver<TcpEvent>>) -> Option<TcpEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

pub(crate) use crate::media_tcp::local_for;

/// One `recvmmsg` into `bufs`; `got` gets (length, source) per datagram.
/// The headers are made per call: the kernel shortens each one's address
/// length to the address it wrote, so reused headers could truncate a
/// longer (IPv6) address later.
fn recv_batch(
    fd: i32,
    bufs: &mut [[u8; DATAGRAM_MAX]],
    got: &mut Vec<(usize, Option<SocketAddr>)>,
) -> std::io::Result<usize> {
    got.clear();
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(bufs.len(), None);
    let mut slices: Vec<[IoSliceMut<'_>; 1]> = bufs
        .iter_mut()
        .map(|b| [IoSliceMut::new(&mut b[..])])
        .collect();
    let results = recvmmsg(
        fd,
        &mut headers,
        slices.iter_mut(),
        MsgFlags::MSG_DONTWAIT,
        None,
    )
    .map_err(std::io::Error::from)?;
    for r in results {
        got.push((
            r.bytes.min(DATAGRAM_MAX),
            r.address.as_ref().and_then(to_std),
        ));
    }
    Ok(got.len())
}

/// Sends (a prefix of) `batch`, one `sendto` each; returns how many were
/// sent before the socket refused one (the caller retries or skips it).
///
/// Not `sendmmsg`: nix 0.31's `sendmmsg` reports how many were sent only
/// through an iterator that reads its (for sends, never written) address
/// slots with `assume_init` — undefined behaviour in the dependency. The
/// benchmark figures measured with `sendmmsg` are marked so in BENCHMARKS.md.
fn send_batch(fd: i32, batch: &[Transmit]) -> std::io::Result<usize> {
    let batch = &batch[..batch.len().min(SEND_BATCH)];
    for (i, t) in batch.iter().enumerate() {
        let to = SockaddrStorage::from(t.destination);
        if let Err(e) = sendto(fd, &t.contents, &to, MsgFlags::MSG_DONTWAIT) {
            if i == 0 {
                return Err(std::io::Error::from(e));
            }
            return Ok(i);
        }
    }
    Ok(batch.len())
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    if let Some(v6) = a.as_sockaddr_in6() {
        return Some(SocketAddr::V6(SocketAddrV6::from(*v6)));
    }
    None
}
