//! The HTTPS accept loop: who may hold a connection, and for how long.
//!
//! Who owns what:
//! - the **accept loop** ([`accept_loop`]) owns the listener, the places
//!   (a semaphore of `max_connections` permits, as in mini-redis) and the
//!   count of open connections per address (an IPv6 /64 counts as one
//!   address: one client holds a whole /64). Over either cap a new
//!   connection is closed at once, before TLS, rather than left waiting in
//!   the kernel's backlog: a browser shows its error (and the web client
//!   retries) at once instead of after a silent minute, and a flood from one
//!   address cannot hold the accept loop for everyone else;
//! - each connection's socket carries a [`Slot`] that gives its place back
//!   when the socket is dropped: when the connection ends, or, for a
//!   WebSocket (the socket moves into the upgraded stream), when the
//!   WebSocket closes. A WebSocket counts for as long as it is open, and so
//!   does it for the server's drain at shutdown (the slot holds a
//!   [`TaskTracker`] token);
//! - one **connection task** per connection runs TLS and hyper, and watches
//!   the connection's last activity.
//!
//! Time limits: the TLS handshake, and each HTTP/1 request header, must
//! arrive within `header_timeout` (hyper's header read timeout also runs
//! while a keep-alive connection waits for its next request, so an idle
//! HTTP/1 connection ends there). A connection on which no byte was read or
//! written for `idle_timeout` is closed: an idle HTTP/2 connection, a
//! request whose body stalls. An upgrade ends hyper's connection future and
//! so the watch: a WebSocket session is not cut by it (it has its own
//! keepalive, `ws.rs`).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{TaskTracker, task_tracker::TaskTrackerToken};

/// The bounds of the HTTPS listener (from [`crate::Config`]).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_ip: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// How long an idle connection told to close (HTTP/2: GOAWAY) is given
/// before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Accepts connections until `stop` is cancelled; each gets its own task,
/// and every connection (WebSockets included) is tracked on `tracker`.
/// `stop` also tells open connections to close.
pub async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: axum::Router,
    limits: Limits,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    // The configuration has no upper bound; a semaphore does (and panics
    // over it). Past it the cap is no cap anyway.
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let places = Arc::new(Semaphore::new(max));
    // Each connection sends exactly one message, when its slot is dropped,
    // and holds a place meanwhile: the channel never holds more than `max`,
    // so the slot's `try_send` never finds it full.
    let (done_tx, mut done_rx) = mpsc::channel::<IpAddr>(max);
    let mut per_ip: HashMap<IpAddr, usize> = HashMap::new();
    loop {
        tokio::select! {
            // Places given back first: a client that closed one connection
            // and opens the next finds its place free.
            biased;
            _ = stop.cancelled() => break,
            Some(key) = done_rx.recv() => {
                if let Some(n) = per_ip.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        per_ip.remove(&key);
                    }
                }
            }
            r = listener.accept() => {
                let (stream, peer) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors, say: wait, do not spin.
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let key = address_key(peer.ip());
                let from_ip = per_ip.get(&key).copied().unwrap_or(0);
                let place = match places.clone().try_acquire_owned() {
                    Ok(p) if from_ip < limits.max_per_ip => p,
                    _ => {
                        // Debug only: a flood must not flood the journal too.
                        tracing::debug!(%peer, from_ip, "https: too many connections, closed");
                        drop(stream);
                        continue;
                    }
                };
                *per_ip.entry(key).or_default() += 1;
                let slot = Slot {
                    key,
                    done: done_tx.clone(),
                    _place: place,
                    _tracked: tracker.token(),
                };
                tracker.spawn(connection(
                    stream,
                    peer,
                    slot,
                    acceptor.clone(),
                    app.clone(),
                    limits,
                    stop.clone(),
                ));
            }
        }
    }
}

/// The address a connection counts against: IPv4 as it is, IPv6 by its /64
/// (one subscriber's prefix), an IPv4-mapped IPv6 address as IPv4.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// One connection: TLS, then hyper, until it ends, idles, or the server stops.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    acceptor: tokio_rustls::TlsAcceptor,
    app: axum::Router,
    limits: Limits,
    stop: CancellationToken,
) {
    let activity = Arc::new(Activity::new());
    let io = Tracked {
        _slot: slot,
        inner: stream,
        activity: activity.clone(),
    };
    let tls = match tokio::time::timeout(limits.header_timeout, acceptor.accept(io)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "TLS handshake: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake: timed out");
            return;
        }
    };
    // Every request carries its peer's address (`ConnectInfo`), for limits
    // per client address (sign-in attempts).
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        tower::Service::call(&mut app, req)
    });
    // The protocol is the one TLS agreed (ALPN), not sniffed from the first
    // bytes: sniffing waits for them with no time limit, before hyper's
    // header timeout starts.
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    if h2 {
        let conn = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .serve_connection(io, service);
        drive(
            conn,
            |c| c.graceful_shutdown(),
            &activity,
            peer,
            limits,
            stop,
        )
        .await;
    } else {
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(io, service)
            .with_upgrades();
        drive(
            conn,
            |c| c.graceful_shutdown(),
            &activity,
            peer,
            limits,
            stop,
        )
        .await;
    }
}

/// Runs a connection until it ends, the server stops, or nothing moved on it
/// for the idle timeout (then `graceful` asks it to close).
async fn drive<F, E>(
    conn: F,
    graceful: impl FnOnce(Pin<&mut F>),
    activity: &Activity,
    peer: SocketAddr,
    limits: Limits,
    stop: CancellationToken,
) where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    loop {
        let idle_at = activity.last() + limits.idle_timeout;
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, "http: {e}");
                }
                return;
            }
            // Requests under way finish; keep-alive and HTTP/2 end.
            _ = stop.cancelled() => {
                graceful(conn.as_mut());
                let _ = tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await;
                return;
            }
            _ = tokio::time::sleep_until(idle_at) => {
                // Something may have moved while this slept: look again.
                if activity.last() + limits.idle_timeout <= Instant::now() {
                    tracing::debug!(%peer, "http: idle for {:?}, closed", limits.idle_timeout);
                    graceful(conn.as_mut());
                    let _ = tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await;
                    return;
                }
            }
        }
    }
}

/// A connection's place in the counts; dropping it gives the place back.
struct Slot {
    key: IpAddr,
    done: mpsc::Sender<IpAddr>,
    _place: OwnedSemaphorePermit,
    _tracked: TaskTrackerToken,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Never full (see `accept_loop`); the loop is gone only at
        // shutdown, with nothing left to count.
        let _ = self.done.try_send(self.key);
    }
}

/// When a byte last moved on a connection, in milliseconds since it opened.
/// Written by the socket (inside hyper, or a WebSocket), read by the
/// connection task.
struct Activity {
    opened: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// The TCP socket with its slot and its activity clock. The slot is the
/// first field, so it is given back before the socket closes: a client that
/// sees the close and connects again finds the place free.
struct Tracked {
    _slot: Slot,
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_count_by_ipv4_or_ipv6_prefix() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(address_key(v4), v4);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), v4);
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));
        assert_eq!(address_key(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
    }
}
