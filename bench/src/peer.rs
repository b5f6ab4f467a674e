//! One str0m client peer (full ICE, controlling when it offers) on its own UDP socket, driven
//! by a task of the load generator's single-threaded runtime. The str0m set-up, offer/answer
//! and frame writing come from `tuxa-test-kit`; the scheduling and the measuring are here.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::Context;
use str0m::media::{Direction, MediaKind};
use str0m::net::Protocol;
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tuxa_protocol::{ClientMsg, RecordingState};
use tuxa_test_kit::rtc;
use tuxa_test_kit::sdp::{self, Mids, PendingOffer, Track};

use crate::media::{self, AUDIO_INTERVAL, Kind, Shared, VIDEO_INTERVAL, now_ns};
use crate::sig::{Sig, SigEvent};

#[derive(Debug)]
pub struct PeerOpts {
    /// The publisher number carried in every frame.
    pub id: u32,
    /// Publish audio + video.
    pub publish: bool,
    /// Send an offer first (tuxa always; Janus publishers). A non-publishing offerer offers a
    /// receive-only audio section (tuxa needs an offer to create the transport).
    pub offer: bool,
    /// When the client started (ns since the epoch), for time to first frame.
    pub started_ns: u64,
    /// Leave as soon as the first video frame arrived (join/leave cycles).
    pub leave_after_first_video: bool,
    /// Extra protocol messages the scenario sends through this peer's signaling (tuxa only),
    /// e.g. S2R's `recording start`.
    pub control: Option<mpsc::Receiver<ClientMsg>>,
}

pub struct PeerReport {
    pub frames_in: u64,
    pub connected: bool,
}

struct P {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    opts: PeerOpts,
    col: Shared,
    pending: Option<PendingOffer>,
    /// Our published m-lines (a publisher's, once answered).
    published: Mids,
    connected: bool,
    want_key: bool,
    seq_a: u32,
    seq_v: u32,
    got_video: bool,
    frames_in: u64,
    start: Instant,
    /// Kernel arrival stamp of the datagram handled last (ns since the media epoch).
    last_arrival: u64,
    /// The negotiated RTX payload types (resends, probes and padding).
    rtx_pts: Vec<u8>,
}

impl P {
    fn drive(&mut self) -> anyhow::Result<Instant> {
        loop {
            match self.rtc.poll_output().context("poll_output")? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Output::Event(e) => self.on_event(e),
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::IceConnectionStateChange(s) => {
                tracing::debug!(peer = self.opts.id, "ICE {s:?}");
            }
            Event::Connected => {
                self.connected = true;
                self.rtx_pts = self
                    .rtc
                    .codec_config()
                    .params()
                    .iter()
                    .filter_map(|p| p.resend())
                    .map(|pt| *pt)
                    .collect();
                let mut c = self.col.lock().unwrap();
                c.connected += 1;
                c.ttc_ms
                    .push((now_ns() - self.opts.started_ns) as f64 / 1e6);
            }
            Event::MediaData(d) => {
                let Some(m) = self.rtc.media(d.mid) else {
                    return;
                };
                let kind = match m.kind() {
                    MediaKind::Audio => Kind::Audio,
                    MediaKind::Video => Kind::Video,
                };
                self.frames_in += 1;
                let mut c = self.col.lock().unwrap();
                if kind == Kind::Video && !self.got_video {
                    self.got_video = true;
                    c.first_video += 1;
                    c.ttff_ms
                        .push((now_ns() - self.opts.started_ns) as f64 / 1e6);
                }
                c.on_frame(kind, &d.data, self.last_arrival);
            }
            Event::KeyframeRequest(r) if Some(r.mid) == self.published.video => {
                self.want_key = true
            }
            _ => {}
        }
    }

    fn make_offer(&mut self) -> Option<String> {
        let dir = if self.opts.publish {
            Direction::SendOnly
        } else {
            Direction::RecvOnly
        };
        let s = format!("bench{}", self.opts.id);
        let track = Track::new(dir, &s, &s);
        let video = self.opts.publish.then(|| track.clone());
        let (offer, pending) = sdp::offer(&mut self.rtc, Some(track), video)?;
        self.pending = Some(pending);
        Some(offer)
    }

    fn write(&mut self, kind: Kind) {
        let (mid, skind) = match kind {
            Kind::Audio => (self.published.audio, MediaKind::Audio),
            Kind::Video => (self.published.video, MediaKind::Video),
        };
        let Some(mid) = mid else { return };
        let rtp_time = rtc::media_time(skind, self.start.elapsed());
        let key = kind == Kind::Video && (self.want_key || self.seq_v == 0);
        let seq = match kind {
            Kind::Audio => {
                self.seq_a += 1;
                self.seq_a
            }
            Kind::Video => {
                self.seq_v += 1;
                self.seq_v
            }
        };
        let data = media::frame(kind, self.opts.id, seq, key);
        let Some(pt) = rtc::pt_for(&mut self.rtc, mid, rtc::codec(skind)) else {
            return;
        };
        if rtc::write_frame(&mut self.rtc, mid, pt, Instant::now(), rtp_time, data).is_ok() {
            if key {
                self.want_key = false;
            }
            self.col.lock().unwrap().on_sent(kind, self.opts.id, key);
        }
    }
}

enum Step {
    Udp(std::io::Result<(usize, SocketAddr, u64)>),
    Timeout,
    Audio,
    Video,
    Sig(SigEvent),
    Keepalive,
    Stop,
    Control(ClientMsg),
}

/// Runs one peer until `stop` turns true (then leaves) or signaling closes.
pub async fn run(
    mut sig: Sig,
    mut opts: PeerOpts,
    col: Shared,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<PeerReport> {
    // Janus skips loopback interfaces when it gathers candidates, so its clients bind to the
    // address of a veth in the benchmark's private network namespace (scripts/bench.sh).
    let ip = std::env::var("BENCH_CLIENT_IP").unwrap_or_else(|_| "127.0.0.1".into());
    let socket = UdpSocket::bind((ip.as_str(), 0)).await?;
    crate::rxts::enable(&socket)?;
    let local = socket.local_addr()?;
    let mut rtc = rtc::new_rtc();
    rtc.add_local_candidate(Candidate::host(local, "udp").context("host candidate")?);
    let mut control = opts.control.take();
    let mut p = P {
        rtc,
        socket,
        local,
        opts,
        col,
        pending: None,
        published: Mids::default(),
        connected: false,
        want_key: true,
        seq_a: 0,
        seq_v: 0,
        got_video: false,
        frames_in: 0,
        start: Instant::now(),
        last_arrival: 0,
        rtx_pts: Vec::new(),
    };
    if p.opts.offer
        && let Some(sdp) = p.make_offer()
    {
        sig.send_offer(sdp).await?;
    }
    let mut a_tick = tokio::time::interval(AUDIO_INTERVAL);
    let mut v_tick = tokio::time::interval(VIDEO_INTERVAL);
    a_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    v_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut ka = tokio::time::interval(sig.keepalive_interval());
    ka.tick().await;
    let mut buf = vec![0u8; 2048];
    let result: anyhow::Result<()> = async {
        loop {
            if *stop.borrow() || (p.got_video && p.opts.leave_after_first_video) {
                return Ok(());
            }
            p.rtc.handle_input(Input::Timeout(Instant::now()))?;
            let deadline = p.drive()?;
            let sending = p.connected && p.opts.publish;
            let step = tokio::select! {
                r = crate::rxts::recv(&p.socket, &mut buf) => Step::Udp(r),
                _ = tokio::time::sleep_until(deadline.into()) => Step::Timeout,
                _ = a_tick.tick(), if sending && p.published.audio.is_some() => Step::Audio,
                _ = v_tick.tick(), if sending && p.published.video.is_some() => Step::Video,
                e = sig.next() => Step::Sig(e),
                _ = ka.tick() => Step::Keepalive,
                _ = stop.changed() => Step::Stop,
                Some(m) = async {
                    match control.as_mut() {
                        Some(c) => c.recv().await,
                        None => std::future::pending().await,
                    }
                } => Step::Control(m),
            };
            match step {
                Step::Udp(r) => {
                    let (n, source, arrived) = r?;
                    p.last_arrival = arrived;
                    if media::is_rtp(&buf[..n]) {
                        // Retransmissions, probes and padding (all on the RTX payload
                        // types) are the SFU's work too, but not forwarded media.
                        let resend = p.rtx_pts.contains(&(buf[1] & 0x7f));
                        p.col.lock().unwrap().on_rtp(!resend);
                    }
                    let Some(input) =
                        rtc::receive(Instant::now(), Protocol::Udp, source, p.local, &buf[..n])
                    else {
                        continue;
                    };
                    if p.rtc.accepts(&input) {
                        p.rtc.handle_input(input)?;
                    }
                }
                Step::Timeout => {}
                Step::Audio => p.write(Kind::Audio),
                Step::Video => p.write(Kind::Video),
                Step::Keepalive => sig.keepalive().await?,
                Step::Control(m) => sig.send_control(&m).await?,
                Step::Sig(SigEvent::Recording(state)) => {
                    let mut c = p.col.lock().unwrap();
                    if state == RecordingState::On {
                        c.recording_on += 1;
                    }
                }
                Step::Stop => return Ok(()),
                Step::Sig(SigEvent::Offer(sdp)) => {
                    tracing::debug!(peer = p.opts.id, "remote offer:\n{sdp}");
                    // Polite: drop an offer of ours in flight (tuxa answers it with glare).
                    p.pending = None;
                    let answer = sdp::answer(&mut p.rtc, &sdp)?;
                    sig.send_answer(answer).await?;
                }
                Step::Sig(SigEvent::Answer(sdp)) => {
                    tracing::debug!(peer = p.opts.id, "remote answer:\n{sdp}");
                    if let Some(pending) = p.pending.take() {
                        let accepted = pending.accept(&mut p.rtc, &sdp)?;
                        if p.opts.publish {
                            p.published.adopt(accepted);
                        }
                    }
                }
                Step::Sig(SigEvent::Candidate(c)) => {
                    let c = c.strip_prefix("candidate:").map(|_| c.clone()).unwrap_or(c);
                    if let Ok(c) = Candidate::from_sdp_string(&c) {
                        p.rtc.add_remote_candidate(c);
                    }
                }
                Step::Sig(SigEvent::Closed(why)) => anyhow::bail!("signaling closed: {why}"),
                Step::Sig(SigEvent::Nothing) => {}
            }
        }
    }
    .await;
    let connected = p.connected;
    p.rtc.disconnect();
    sig.leave().await;
    if let Err(e) = &result {
        p.col
            .lock()
            .unwrap()
            .error(format!("peer {}: {e:#}", p.opts.id));
    }
    result.map(|_| PeerReport {
        frames_in: p.frames_in,
        connected,
    })
}
