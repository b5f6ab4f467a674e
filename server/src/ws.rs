//! One WebSocket session: frames in, parsed, to the hub; the hub's frames
//! out. The session holds no room state of its own.
//!
//! Each session has a budget (docs/protocol.md, "Limits"): frames of any
//! kind, and chat messages apart. It is kept here, before the hub's
//! channel, rather than in the hub: a flood costs parsing and a channel
//! hop per frame, and the frames that are over budget must never take the
//! hub's time. What the budget is for (a per connection resource) is this
//! task's business; the hub keeps room state.
//!
//! Backpressure: a frame within budget waits for its place in the hub's
//! bounded queue ([`crate::hub_task::HUB_QUEUE`]) before the next frame is
//! read, so a session never has more than one frame in flight; when the hub
//! is behind, sessions stop reading and TCP slows their clients. The budget
//! is what cuts off the one client that sends too much; the bound is what
//! keeps the server's memory flat whatever all of them send.

use std::net::IpAddr;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tuxa_protocol::{ClientMsg, ErrorCode, ProtocolError, ServerMsg, parse_client_msg};
use tuxa_signaling::{Input, SessionId};

use crate::hub_task::{HubMsg, SESSION_QUEUE, SessionCmd};

/// Frames of any kind: a burst of 100, then 20 a second. A browser in a
/// call sends a keepalive every 15 s, link stats every few seconds, a few
/// SDP messages per (re)negotiation and the odd click (mute, admit): well
/// under one a second. 100 leaves room for a client that replays what it
/// queued while offline; a script sending hundreds a second is cut off.
pub const FRAME_BURST: u32 = 100;
pub const FRAMES_PER_SEC: f64 = 20.0;

/// Chat messages: a burst of 10, then one every 2 s. A doctor typing, or
/// pasting a prescription a line at a time, stays under it; whatever is
/// over it would otherwise be stored with a conference's record.
pub const CHAT_BURST: u32 = 10;
pub const CHATS_PER_SEC: f64 = 0.5;

/// A session that sends this many frames more after its frame budget ran
/// out (none accepted meanwhile) is closed: it is not listening.
pub const FLOOD_CLOSE_AFTER: u32 = FRAME_BURST;

/// A token bucket; time is an argument (tested without sleeping).
#[derive(Debug, Clone)]
pub struct Bucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(capacity: u32, per_sec: f64, now: Instant) -> Bucket {
        Bucket {
            capacity: f64::from(capacity),
            per_sec,
            tokens: f64::from(capacity),
            at: now,
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a session's budget says about one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within budget: on to the hub.
    Pass,
    /// A chat message over the chat budget: refused (`rate_limited`).
    ChatRefused,
    /// Over the frame budget: dropped; `tell` on the first of a run.
    Dropped { tell: bool },
    /// Still sending after a whole burst was dropped: close the session.
    Close,
}

/// One session's budget.
#[derive(Debug, Clone)]
pub struct Budget {
    frames: Bucket,
    chat: Bucket,
    /// Frames dropped since the last one accepted.
    dropped: u32,
}

impl Budget {
    pub fn new(now: Instant) -> Budget {
        Budget {
            frames: Bucket::new(FRAME_BURST, FRAMES_PER_SEC, now),
            chat: Bucket::new(CHAT_BURST, CHATS_PER_SEC, now),
            dropped: 0,
        }
    }

    /// Judges one frame (`is_chat`: a well-formed `chat` message).
    pub fn judge(&mut self, now: Instant, is_chat: bool) -> Verdict {
        if !self.frames.take(now) {
            self.dropped = self.dropped.saturating_add(1);
            return if self.dropped > FLOOD_CLOSE_AFTER {
                Verdict::Close
            } else {
                Verdict::Dropped {
                    tell: self.dropped == 1,
                }
            };
        }
        self.dropped = 0;
        if is_chat && !self.chat.take(now) {
            return Verdict::ChatRefused;
        }
        Verdict::Pass
    }
}

/// The `scheme://host[:port]` of a URL, lower-cased, without the default
/// port of https (`None` unless https).
fn https_origin(url: &str) -> Option<String> {
    let lower = url.trim().to_ascii_lowercase();
    let rest = lower.strip_prefix("https://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = authority.strip_suffix(":443").unwrap_or(authority);
    Some(format!("https://{authority}"))
}

/// Whether a WebSocket's `Origin` is this server's own pages: the origin
/// of `public_url` (the base of the links it hands out), or `https://` and
/// the request's own `Host` (the server reached by another name or address,
/// e.g. on the LAN). Browsers always send an Origin with a WebSocket;
/// `null` and anything but https is refused.
pub fn origin_allowed(origin: &str, public_url: &str, host: Option<&str>) -> bool {
    let Some(origin) = https_origin(origin) else {
        return false;
    };
    if https_origin(public_url).is_some_and(|o| o == origin) {
        return true;
    }
    host.and_then(|h| https_origin(&format!("https://{h}")))
        .is_some_and(|o| o == origin)
}

/// The close frame of a session closed because the server stops.
fn going_away() -> Message {
    Message::Close(Some(CloseFrame {
        code: close_code::AWAY,
        reason: "server_shutdown".into(),
    }))
}

/// The close frame of a session closed for flooding.
fn policy_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: close_code::POLICY,
        reason: "rate_limited".into(),
    }))
}

fn error_frame(message: &str, in_reply_to: Option<&str>) -> Message {
    let msg = ServerMsg::Error {
        code: ErrorCode::RateLimited,
        message: message.to_owned(),
        in_reply_to: in_reply_to.map(str::to_owned),
    };
    Message::Text(msg.to_json().into())
}

pub async fn session(
    socket: WebSocket,
    sid: SessionId,
    addr: IpAddr,
    hub: mpsc::Sender<HubMsg>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    staff: Option<tuxa_signaling::StaffInfo>,
) {
    let (tx, mut rx) = mpsc::channel(SESSION_QUEUE);
    if hub.send(HubMsg::Register(sid, addr, tx)).await.is_err() {
        return;
    }
    if let Some(staff) = staff {
        let _ = hub.send(HubMsg::Input(Input::Identified(sid, staff))).await;
    }
    let (mut sink, mut stream) = socket.split();
    let mut budget = Budget::new(Instant::now());
    loop {
        tokio::select! {
            frame = stream.next() => {
                let frame = match frame {
                    Some(Ok(f)) => f,
                    // Broken or closed: both are a disconnect to the hub.
                    Some(Err(_)) | None => break,
                };
                let parsed = match frame {
                    Message::Text(text) => parse_client_msg(text.as_str()),
                    Message::Binary(_) => Err(ProtocolError::new(
                        ErrorCode::MessageTooLarge,
                        "binary frames are not part of the protocol; send JSON text",
                    )),
                    Message::Close(_) => break,
                    // Pings are answered by the WebSocket layer, but count.
                    Message::Ping(_) | Message::Pong(_) => {
                        if budget.judge(Instant::now(), false) == Verdict::Close {
                            close(&mut sink, &mut stream, policy_close()).await;
                            break;
                        }
                        continue;
                    }
                };
                let is_chat = matches!(parsed, Ok(ClientMsg::Chat { .. }));
                match budget.judge(Instant::now(), is_chat) {
                    Verdict::Pass => {}
                    Verdict::ChatRefused => {
                        let m = error_frame(
                            "chat is limited to 10 messages at once, then one every 2 s: \
                             this message was not sent",
                            Some("chat"),
                        );
                        if sink.send(m).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    Verdict::Dropped { tell } => {
                        if tell {
                            let m = error_frame(
                                "too many messages: they are dropped until you slow down",
                                None,
                            );
                            if sink.send(m).await.is_err() {
                                break;
                            }
                        }
                        continue;
                    }
                    Verdict::Close => {
                        tracing::info!(session = sid.0, "closing a session that floods");
                        let m = error_frame("too many messages: the session is closed", None);
                        let _ = sink.send(m).await;
                        close(&mut sink, &mut stream, policy_close()).await;
                        break;
                    }
                }
                // Not reading on until the hub has room (see the module
                // doc); what the hub sends meanwhile still goes out, so a
                // busy hub does not fill this session's queue and close it.
                let permit = loop {
                    tokio::select! {
                        // The hub's commands first: at a stop, its
                        // `server_shutdown` and close are queued before its
                        // queue goes away.
                        biased;
                        cmd = rx.recv() => {
                            if !deliver(cmd, &mut sink, &mut stream, &mut rx).await {
                                break None;
                            }
                        }
                        p = hub.reserve() => break p.ok(),
                    }
                };
                let Some(permit) = permit else { break };
                permit.send(HubMsg::Input(Input::Frame(sid, parsed)));
            }
            cmd = rx.recv() => {
                if !deliver(cmd, &mut sink, &mut stream, &mut rx).await {
                    break;
                }
            }
            _ = shutdown.changed() => {
                // The hub's `server_shutdown` (and its own close) first, if
                // it is on its way.
                while let Ok(cmd) = rx.try_recv() {
                    let SessionCmd::Send(text) = cmd else { break };
                    let _ = sink.send(Message::Text(text.into())).await;
                }
                close(&mut sink, &mut stream, going_away()).await;
                break;
            }
        }
    }
    let _ = hub.send(HubMsg::Input(Input::Disconnected(sid))).await;
}

/// Carries out one of the hub's commands; `false`: the session is over.
async fn deliver(
    cmd: Option<SessionCmd>,
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
    rx: &mut mpsc::Receiver<SessionCmd>,
) -> bool {
    match cmd {
        Some(SessionCmd::Send(text)) => sink.send(Message::Text(text.into())).await.is_ok(),
        Some(SessionCmd::Close) | None => {
            // Let the frames queued before the close go out first.
            while let Ok(SessionCmd::Send(text)) = rx.try_recv() {
                let _ = sink.send(Message::Text(text.into())).await;
            }
            let _ = sink.send(Message::Close(None)).await;
            false
        }
        Some(SessionCmd::GoingAway) => {
            close(sink, stream, going_away()).await;
            false
        }
    }
}

/// How long a closing session waits for the client's side of the close.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The WebSocket closing handshake: our close frame, then what the client
/// still sends is read and dropped until its close (or [`CLOSE_WAIT`]).
/// Dropping the socket with the client's frames unread would make the
/// kernel answer with a reset, and a reset throws away what the client had
/// received but not yet read — the very error that says why it is closed.
async fn close(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
    frame: Message,
) {
    if sink.send(frame).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(m)) = stream.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn only_our_own_pages_may_open_a_websocket() {
        let public = "https://tuxa.soyte.example.vn";
        let host = Some("10.0.0.5:8443");
        for ok in [
            "https://tuxa.soyte.example.vn",
            "HTTPS://Tuxa.Soyte.Example.VN",
            "https://tuxa.soyte.example.vn:443",
            "https://10.0.0.5:8443",
        ] {
            assert!(origin_allowed(ok, public, host), "{ok}");
        }
        for bad in [
            "null",
            "",
            "https://evil.example.com",
            "http://tuxa.soyte.example.vn",
            "https://tuxa.soyte.example.vn.evil.example.com",
            "https://tuxa.soyte.example.vn:8443",
            "https://10.0.0.5",
            "https://user@tuxa.soyte.example.vn",
        ] {
            assert!(!origin_allowed(bad, public, host), "{bad}");
        }
        // A public URL with a path, and no Host header.
        assert!(origin_allowed(
            "https://x.example.vn",
            "https://x.example.vn/tuxa/",
            None
        ));
        assert!(!origin_allowed("https://10.0.0.5:8443", public, None));
    }

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(3, 2.0, t0);
        assert!((0..3).all(|_| b.take(t0)));
        assert!(!b.take(t0));
        assert!(!b.take(t0 + 499 * MS));
        assert!(b.take(t0 + 500 * MS));
        assert!(!b.take(t0 + 500 * MS));
        // Never more than the burst, however long it rested.
        let later = t0 + Duration::from_secs(3600);
        assert!((0..3).all(|_| b.take(later)));
        assert!(!b.take(later));
        // A clock that goes backwards gives nothing.
        assert!(!b.take(t0));
    }

    #[test]
    fn ordinary_use_never_trips_the_budget() {
        let t0 = Instant::now();
        let mut b = Budget::new(t0);
        // Joining: hello, join, consent, offer, sources, a few answers.
        for _ in 0..12 {
            assert_eq!(b.judge(t0, false), Verdict::Pass);
        }
        // A burst of eight chat lines, then an hour of a call: stats every
        // 2 s, a keepalive every 15 s, a chat line every 10 s.
        for _ in 0..8 {
            assert_eq!(b.judge(t0, true), Verdict::Pass);
        }
        for s in 1..3600u64 {
            let now = t0 + Duration::from_secs(s);
            if s % 2 == 0 {
                assert_eq!(b.judge(now, false), Verdict::Pass);
            }
            if s % 15 == 0 {
                assert_eq!(b.judge(now, false), Verdict::Pass);
            }
            if s % 10 == 0 {
                assert_eq!(b.judge(now, true), Verdict::Pass);
            }
        }
    }

    #[test]
    fn a_chat_flood_is_refused_and_a_frame_flood_closed() {
        let t0 = Instant::now();
        let mut b = Budget::new(t0);
        let verdicts: Vec<Verdict> = (0..500).map(|_| b.judge(t0, true)).collect();
        let count = |v: Verdict| verdicts.iter().filter(|x| **x == v).count();
        assert_eq!(count(Verdict::Pass), CHAT_BURST as usize);
        assert_eq!(
            count(Verdict::ChatRefused),
            (FRAME_BURST - CHAT_BURST) as usize
        );
        assert_eq!(count(Verdict::Dropped { tell: true }), 1);
        assert_eq!(
            count(Verdict::Dropped { tell: false }),
            FLOOD_CLOSE_AFTER as usize - 1
        );
        assert_eq!(
            verdicts[(FRAME_BURST + FLOOD_CLOSE_AFTER) as usize],
            Verdict::Close
        );
        // A client that slows down is served again.
        let mut b = Budget::new(t0);
        for _ in 0..FRAME_BURST + 5 {
            b.judge(t0, false);
        }
        assert_eq!(b.judge(t0 + 100 * MS, false), Verdict::Pass);
        assert_eq!(b.judge(t0 + 100 * MS, true), Verdict::Pass);
    }
}
