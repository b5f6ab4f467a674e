//! ICE-TCP (RFC 6544, passive): media over TCP for networks that block UDP.
//!
//! Who owns what:
//! - the **acceptor task** ([`accept_loop`]) owns the listener and the
//!   connection counts (a cap in total and per remote IP);
//! - one **connection task** per accepted connection owns its socket: it
//!   reads RFC 4571 frames (a 2-byte big-endian length, then one STUN, DTLS
//!   or RTP packet) and sends each to the media task over one bounded
//!   channel shared by all connections (a slow media task slows the readers,
//!   and TCP flow control the clients); it writes what the media task queues
//!   for it;
//! - the **media task** owns the routing ([`TcpRoutes`]: remote address →
//!   connection), feeds frames to the SFU and queues the SFU's TCP
//!   `Transmit`s on the right connection's bounded write queue. A full queue
//!   drops the packet (real-time media late by seconds is useless; RTX and
//!   keyframe requests repair). Dropping a connection's route closes it.
//!
//! A connection is closed when its first frame is not taken by the SFU (not
//! STUN for a known peer: garbage), when no frame was taken within
//! [`HANDSHAKE_TIMEOUT`] or for [`IDLE_TIMEOUT`], when a frame is empty or
//! larger than [`FRAME_MAX`], when a write stalls for [`WRITE_TIMEOUT`], and
//! when the client closes it. Nothing a client sends can do more than close
//! its own connection.
//!
//! This path has a channel hop per packet each way (UDP has none): TCP is
//! the fallback, taken only by clients whose UDP fails.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use std::sync::Arc;
use str0m::net::Transmit;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The largest frame accepted or sent. Browsers send over TCP the same
/// packets as over UDP (at most ~1200 bytes; str0m's MTU is 1150 bytes of
/// RTP payload); the UDP path truncates at the same size.
pub const FRAME_MAX: usize = 2048;
/// Connections open at once, in total.
pub const MAX_CONNECTIONS: usize = 1024;
/// Connections open at once from one remote IP (a hospital's NAT may carry
/// many consultations; a browser opens one per candidate pair it tries).
pub const MAX_PER_IP: usize = 64;
/// Packets queued for one connection before media is dropped: ~300 KB, a
/// few hundred milliseconds of a consultation's video.
pub const WRITE_QUEUE: usize = 256;
/// Frames from all connections waiting for the media task.
pub const EVENT_QUEUE: usize = 1024;
/// A connection must send STUN that a peer takes within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection none of whose frames a peer took for this long is closed
/// (browsers send consent checks every ~5 s besides media).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A write that makes no progress for this long closes the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// From the connection tasks to the media task.
#[derive(Debug)]
pub enum TcpEvent {
    Opened {
        id: u64,
        remote: SocketAddr,
        /// The socket's own address (the candidate it reached, unless NAT
        /// changed it).
        local: SocketAddr,
        out: mpsc::Sender<Vec<u8>>,
    },
    Frame {
        id: u64,
        remote: SocketAddr,
        data: Vec<u8>,
    },
    Closed {
        id: u64,
        remote: SocketAddr,
    },
}

/// Why a connection ended (logged at debug level).
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("closed by the client")]
    Eof,
    #[error("frame of {0} bytes (allowed 1 to {FRAME_MAX})")]
    BadLength(usize),
    #[error("no frame for {0:?}")]
    Silent(Duration),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("the media task is gone")]
    MediaGone,
}

/// Accepts connections until shutdown; each gets its own task, on
/// `tracker` (the server's drain waits for them).
pub async fn accept_loop(
    listener: TcpListener,
    events: mpsc::Sender<TcpEvent>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    // A place per connection, given back when its task ends.
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Each connection sends one message, as it ends, after giving back its
    // place: never more in the channel than connections open.
    let (done_tx, mut done_rx) = mpsc::channel::<IpAddr>(MAX_CONNECTIONS);
    let mut per_ip: HashMap<IpAddr, usize> = HashMap::new();
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(ip) = done_rx.recv() => {
                if let Some(n) = per_ip.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        per_ip.remove(&ip);
                    }
                }
            }
            r = listener.accept() => {
                let (stream, remote) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors, say: wait, do not spin.
                        tracing::warn!("media TCP accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let n = per_ip.get(&remote.ip()).copied().unwrap_or(0);
                // Refused, not kept waiting: a browser tries its other
                // candidate pairs at once rather than after a stalled one.
                let place = match places.clone().try_acquire_owned() {
                    Ok(p) if n < MAX_PER_IP => p,
                    _ => {
                        tracing::debug!(%remote, from_ip = n, "media TCP: too many connections, refused");
                        continue;
                    }
                };
                let Ok(local) = stream.local_addr() else { continue };
                *per_ip.entry(remote.ip()).or_default() += 1;
                next_id += 1;
                let id = next_id;
                let events = events.clone();
                let done = done_tx.clone();
                tracker.spawn(async move {
                    connection(id, stream, remote, local, events).await;
                    drop(place);
                    let _ = done.send(remote.ip()).await;
                });
            }
        }
    }
}

async fn connection(
    id: u64,
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
    events: mpsc::Sender<TcpEvent>,
) {
    // Media packets are small and late ones are useless: no Nagle.
    let _ = stream.set_nodelay(true);
    let (out_tx, out_rx) = mpsc::channel(WRITE_QUEUE);
    let opened = TcpEvent::Opened {
        id,
        remote,
        local,
        out: out_tx,
    };
    if events.send(opened).await.is_err() {
        return;
    }
    let (r, w) = stream.into_split();
    let ended = tokio::select! {
        e = read_loop(id, remote, r, &events) => e,
        e = write_loop(w, out_rx) => e,
    };
    tracing::debug!(%remote, id, "media TCP connection ended: {ended}");
    let _ = events.send(TcpEvent::Closed { id, remote }).await;
}

/// Reads frames until the connection ends or misbehaves.
async fn read_loop(
    id: u64,
    remote: SocketAddr,
    r: OwnedReadHalf,
    events: &mpsc::Sender<TcpEvent>,
) -> Ended {
    let mut r = BufReader::with_capacity(8 * 1024, r);
    loop {
        let mut len = [0u8; 2];
        if let Err(e) = read_exact(&mut r, &mut len).await {
            return e;
        }
        let n = usize::from(u16::from_be_bytes(len));
        if n == 0 || n > FRAME_MAX {
            return Ended::BadLength(n);
        }
        let mut data = vec![0u8; n];
        if let Err(e) = read_exact(&mut r, &mut data).await {
            return e;
        }
        if events
            .send(TcpEvent::Frame { id, remote, data })
            .await
            .is_err()
        {
            return Ended::MediaGone;
        }
    }
}

async fn read_exact(r: &mut BufReader<OwnedReadHalf>, buf: &mut [u8]) -> Result<(), Ended> {
    match tokio::time::timeout(IDLE_TIMEOUT, r.read_exact(buf)).await {
        Err(_) => Err(Ended::Silent(IDLE_TIMEOUT)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(Ended::Eof),
        Ok(Err(e)) => Err(Ended::Io(e)),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Writes what the media task queues, a batch per flush, until the media
/// task drops the route (which is how it closes a connection).
async fn write_loop(w: OwnedWriteHalf, mut rx: mpsc::Receiver<Vec<u8>>) -> Ended {
    let mut w = BufWriter::with_capacity(16 * 1024, w);
    while let Some(first) = rx.recv().await {
        let batch = async {
            write_frame(&mut w, &first).await?;
            for _ in 1..WRITE_QUEUE {
                let Ok(f) = rx.try_recv() else { break };
                write_frame(&mut w, &f).await?;
            }
            w.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, batch).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Ended::Io(e),
            Err(_) => return Ended::Silent(WRITE_TIMEOUT),
        }
    }
    Ended::MediaGone
}

async fn write_frame(w: &mut BufWriter<OwnedWriteHalf>, data: &[u8]) -> std::io::Result<()> {
    // The SFU never makes a packet this large; refuse rather than corrupt
    // the framing if it ever did.
    let Ok(len) = u16::try_from(data.len()) else {
        return Ok(());
    };
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(data).await
}

/// One connection as the media task knows it.
struct Conn {
    id: u64,
    /// The TCP candidate the connection reached: the SFU's `destination`.
    candidate: SocketAddr,
    out: mpsc::Sender<Vec<u8>>,
    opened: Instant,
    /// When a peer last took one of its frames.
    last_valid: Option<Instant>,
}

/// What the media task knows of TCP connections: the routing from a remote
/// address to its connection, and each connection's liveness. Owned by the
/// media task alone.
pub struct TcpRoutes {
    /// The announced TCP candidates.
    candidates: Vec<SocketAddr>,
    conns: HashMap<SocketAddr, Conn>,
    /// Packets dropped because a connection's queue was full.
    pub dropped: u64,
}

impl TcpRoutes {
    pub fn new(candidates: Vec<SocketAddr>) -> TcpRoutes {
        TcpRoutes {
            candidates,
            conns: HashMap::new(),
            dropped: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn opened(
        &mut self,
        now: Instant,
        id: u64,
        remote: SocketAddr,
        local: SocketAddr,
        out: mpsc::Sender<Vec<u8>>,
    ) {
        // The socket's own address when it is announced; otherwise (NAT, a
        // listener on all interfaces) the candidate a peer at `remote` uses.
        let candidate = if self.candidates.contains(&local) {
            local
        } else {
            local_for(&self.candidates, remote)
        };
        // A second connection from the same address (through another
        // listener address) replaces the first, which then closes.
        self.conns.insert(
            remote,
            Conn {
                id,
                candidate,
                out,
                opened: now,
                last_valid: None,
            },
        );
    }

    pub fn closed(&mut self, id: u64, remote: SocketAddr) {
        if self.conns.get(&remote).is_some_and(|c| c.id == id) {
            self.conns.remove(&remote);
        }
    }

    /// The SFU's `destination` for a frame of connection `id`, if it is
    /// still routed (a frame still queued from a closed one is dropped).
    pub fn destination(&self, id: u64, remote: SocketAddr) -> Option<SocketAddr> {
        self.conns
            .get(&remote)
            .filter(|c| c.id == id)
            .map(|c| c.candidate)
    }

    /// Whether the SFU took a frame of connection `id`. The first frame of
    /// a connection must be taken (STUN for a peer): if not, it is garbage
    /// and the connection is closed.
    pub fn received(&mut self, now: Instant, id: u64, remote: SocketAddr, taken: bool) {
        let Some(c) = self.conns.get_mut(&remote).filter(|c| c.id == id) else {
            return;
        };
        if taken {
            c.last_valid = Some(now);
        } else if c.last_valid.is_none() {
            tracing::debug!(%remote, id, "media TCP: first frame is not STUN for a peer, closing");
            self.conns.remove(&remote);
        }
    }

    /// Queues a packet on its connection; drops it if the queue is full.
    /// Returns false if no connection has that address.
    pub fn send(&mut self, t: Transmit) -> bool {
        let Some(c) = self.conns.get(&t.destination) else {
            return false;
        };
        match c.out.try_send(t.contents.into()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.dropped += 1,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.conns.remove(&t.destination);
            }
        }
        true
    }

    /// Closes connections that sent nothing a peer took in time.
    pub fn sweep(&mut self, now: Instant) {
        self.conns.retain(|remote, c| {
            let alive = match c.last_valid {
                None => now.saturating_duration_since(c.opened) < HANDSHAKE_TIMEOUT,
                Some(t) => now.saturating_duration_since(t) < IDLE_TIMEOUT,
            };
            if !alive {
                tracing::debug!(%remote, id = c.id, "media TCP: no valid STUN or media in time, closing");
            }
            alive
        });
    }
}

/// Which of our announced addresses (`candidates`) a packet from `source`
/// was sent to. The socket is usually bound to all interfaces, so the
/// kernel does not say; str0m's ICE needs it to match a candidate. Loopback
/// peers talk to the loopback candidate, everyone else to the first other
/// one (the LAN address, or behind NAT the public one).
pub(crate) fn local_for(candidates: &[SocketAddr], source: SocketAddr) -> SocketAddr {
    let same_family = |c: &&SocketAddr| c.is_ipv4() == source.is_ipv4();
    let loopback = source.ip().is_loopback();
    candidates
        .iter()
        .filter(same_family)
        .find(|c| c.ip().is_loopback() == loopback)
        .or_else(|| candidates.iter().find(same_family))
        .or_else(|| candidates.first())
        .copied()
        .unwrap_or(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn routes_close_garbage_and_silent_connections() {
        let t0 = Instant::now();
        let cand = addr("203.0.113.10:8444");
        let mut r = TcpRoutes::new(vec![cand, addr("127.0.0.1:8444")]);
        let (a_tx, mut a_rx) = mpsc::channel(2);
        let (b_tx, _b_rx) = mpsc::channel(2);
        let (c_tx, _c_rx) = mpsc::channel(2);
        let a = addr("198.51.100.7:50000");
        let b = addr("198.51.100.8:50000");
        let c = addr("198.51.100.9:50000");
        // Behind NAT the socket's address is not the announced one.
        r.opened(t0, 1, a, addr("10.0.0.5:8444"), a_tx);
        r.opened(t0, 2, b, addr("10.0.0.5:8444"), b_tx);
        r.opened(t0, 3, c, addr("10.0.0.5:8444"), c_tx);
        assert_eq!(r.destination(1, a), Some(cand));
        assert_eq!(r.destination(9, a), None, "another connection's frame");

        r.received(t0, 1, a, true);
        r.received(t0, 2, b, false); // garbage first: closed at once
        assert_eq!(r.destination(2, b), None);
        r.received(t0, 1, a, false); // later junk on a good one: kept
        assert!(r.destination(1, a).is_some());

        // Queue of 2: the third packet is dropped, not queued.
        for _ in 0..3 {
            let t = Transmit {
                proto: str0m::net::Protocol::Tcp,
                source: cand,
                destination: a,
                contents: vec![1, 2, 3].into(),
            };
            assert!(r.send(t));
        }
        assert_eq!(r.dropped, 1);
        assert_eq!(a_rx.try_recv().unwrap(), vec![1, 2, 3]);

        // c never sent valid STUN; a went idle later.
        r.sweep(t0 + HANDSHAKE_TIMEOUT);
        assert_eq!(r.destination(3, c), None);
        assert!(r.destination(1, a).is_some());
        r.sweep(t0 + IDLE_TIMEOUT);
        assert_eq!(r.len(), 0);
        r.closed(1, a); // late Closed from the task: harmless
    }
}
