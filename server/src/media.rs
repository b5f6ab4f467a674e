//! The media task: owns the UDP socket and the SFU. Datagrams go straight
//! from the socket into the SFU and out again in the same task — no channel
//! and no lock per packet. Only control messages (SDP, removal) arrive over
//! a channel, and only signaling leaves by one.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tuxa_sfu::{Sfu, SfuOutput};
use tuxa_signaling::{Input, MediaCommand};

use crate::hub_task::HubMsg;

/// Datagrams handled per wake-up before commands and timers get a turn.
const RECV_BATCH: usize = 64;

pub struct MediaTask {
    pub socket: UdpSocket,
    pub sfu: Sfu,
    pub commands: mpsc::UnboundedReceiver<MediaCommand>,
    pub hub: mpsc::UnboundedSender<HubMsg>,
    /// Announced candidate addresses; see [`MediaTask::local_for`].
    pub candidates: Vec<SocketAddr>,
    pub shutdown: watch::Receiver<bool>,
}

impl MediaTask {
    pub async fn run(mut self) {
        let mut buf = vec![0u8; 2048];
        loop {
            self.flush().await;
            let deadline = self
                .sfu
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => break,
                r = self.socket.readable() => {
                    if r.is_err() {
                        continue;
                    }
                    for _ in 0..RECV_BATCH {
                        match self.socket.try_recv_from(&mut buf) {
                            Ok((n, source)) => {
                                let dest = self.local_for(source);
                                self.sfu.handle_receive(Instant::now(), source, dest, &buf[..n]);
                                self.flush().await;
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
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    self.sfu.handle_timeout(Instant::now());
                }
            }
        }
    }

    async fn flush(&mut self) {
        while let Some(out) = self.sfu.poll_output() {
            match out {
                SfuOutput::Transmit(t) => {
                    match self.socket.try_send_to(&t.contents, t.destination) {
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            let _ = self.socket.send_to(&t.contents, t.destination).await;
                        }
                        Err(e) => tracing::debug!("media send to {}: {e}", t.destination),
                    }
                }
                SfuOutput::Signal(pid, msg) => {
                    let _ = self.hub.send(HubMsg::Input(Input::FromMedia(pid, msg)));
                }
                SfuOutput::Gone(pid) => {
                    let _ = self.hub.send(HubMsg::Input(Input::MediaGone(pid)));
                }
            }
        }
    }

    /// Which of our announced addresses a datagram from `source` was sent to.
    /// The socket is usually bound to all interfaces, so the kernel does not
    /// say; str0m's ICE needs it to match a candidate. Loopback peers talk
    /// to the loopback candidate, everyone else to the first other one (the
    /// LAN address, or behind NAT the public one).
    fn local_for(&self, source: SocketAddr) -> SocketAddr {
        let same_family = |c: &&SocketAddr| c.is_ipv4() == source.is_ipv4();
        let loopback = source.ip().is_loopback();
        self.candidates
            .iter()
            .filter(same_family)
            .find(|c| c.ip().is_loopback() == loopback)
            .or_else(|| self.candidates.iter().find(same_family))
            .or_else(|| self.candidates.first())
            .copied()
            .unwrap_or(source)
    }
}
