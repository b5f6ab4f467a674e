//! A signaling client: the real WebSocket (`wss://…/ws`), speaking `docs/protocol.md`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tuxa_protocol::{
    ClientMsg, ErrorCode, ParticipantInfo, RoomId, RoomInfo, ServerMsg, parse_server_msg,
};

use crate::tls::insecure_client_config;

/// The default time to wait for a reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a patient or guest waits in the lobby for a host in tests.
pub const ADMIT_TIMEOUT: Duration = Duration::from_secs(20);

/// What came over the WebSocket.
#[derive(Debug, Clone)]
pub enum WsEvent {
    Msg(ServerMsg),
    /// A text frame that is not a valid [`ServerMsg`] (a server bug), or a binary frame.
    Unparsable(String),
    /// The server closed (close frame code and reason), or the connection ended.
    Closed(Option<(u16, String)>),
}

/// The result of a successful `join`.
#[derive(Debug, Clone)]
pub struct Joined {
    pub room: RoomInfo,
    pub you: ParticipantInfo,
    pub participants: Vec<ParticipantInfo>,
    /// The server gave back a place kept since this link's connection dropped.
    pub resumed: bool,
}

pub struct SignalClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    closed: bool,
    /// Messages that `recv_until` passed over, oldest first.
    pub skipped: Vec<ServerMsg>,
}

impl SignalClient {
    /// Opens `wss://addr/ws`.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<SignalClient> {
        Self::connect_with_cookie(addr, None).await
    }

    /// Opens `wss://addr/ws` with a `Cookie` header (a staff sign-in).
    pub async fn connect_with_cookie(
        addr: SocketAddr,
        cookie: Option<&str>,
    ) -> anyhow::Result<SignalClient> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("wss://{addr}/ws");
        let mut request = url.as_str().into_client_request()?;
        if let Some(c) = cookie {
            request.headers_mut().insert("cookie", c.parse()?);
        }
        let mut config = WebSocketConfig::default();
        // Let the client send frames bigger than the server's limit (for the bad-input tests).
        config.max_frame_size = Some(16 << 20);
        config.max_message_size = Some(16 << 20);
        let connector = Connector::Rustls(insecure_client_config(&[]));
        let (ws, _resp) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async_tls_with_config(
                request,
                Some(config),
                true,
                Some(connector),
            ),
        )
        .await
        .with_context(|| format!("connecting to {url}: timed out"))?
        .with_context(|| format!("connecting to {url}"))?;
        Ok(SignalClient {
            ws,
            closed: false,
            skipped: Vec::new(),
        })
    }

    pub async fn send(&mut self, msg: &ClientMsg) -> anyhow::Result<()> {
        let text = serde_json::to_string(msg).expect("client messages serialise");
        self.send_text(text).await
    }

    /// Sends any text frame, valid or not.
    pub async fn send_text(&mut self, text: impl Into<String>) -> anyhow::Result<()> {
        self.ws
            .send(Message::text(text.into()))
            .await
            .context("sending a text frame")
    }

    pub async fn send_binary(&mut self, data: Vec<u8>) -> anyhow::Result<()> {
        self.ws
            .send(Message::binary(data))
            .await
            .context("sending a binary frame")
    }

    /// The next event, however long it takes. Cancel-safe (for `select!`).
    pub async fn next_event(&mut self) -> WsEvent {
        if self.closed {
            return WsEvent::Closed(None);
        }
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return match parse_server_msg(t.as_str()) {
                        Ok(m) => WsEvent::Msg(m),
                        Err(e) => WsEvent::Unparsable(format!("{e}: {}", t.as_str())),
                    };
                }
                Some(Ok(Message::Binary(b))) => {
                    return WsEvent::Unparsable(format!("binary frame of {} bytes", b.len()));
                }
                Some(Ok(Message::Close(frame))) => {
                    self.closed = true;
                    return WsEvent::Closed(
                        frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())),
                    );
                }
                Some(Ok(_)) => continue, // ping, pong, raw frames
                Some(Err(e)) => {
                    self.closed = true;
                    tracing::debug!("websocket ended: {e}");
                    return WsEvent::Closed(None);
                }
                None => {
                    self.closed = true;
                    return WsEvent::Closed(None);
                }
            }
        }
    }

    pub async fn recv_event(&mut self, timeout: Duration) -> anyhow::Result<WsEvent> {
        tokio::time::timeout(timeout, self.next_event())
            .await
            .with_context(|| format!("nothing from the server in {timeout:?}"))
    }

    /// The next message; a close or a frame that does not parse is an error.
    pub async fn recv(&mut self, timeout: Duration) -> anyhow::Result<ServerMsg> {
        match self.recv_event(timeout).await? {
            WsEvent::Msg(m) => Ok(m),
            other => bail!("expected a message, got {other:?}"),
        }
    }

    /// Skips messages until `pred` picks one (skipped ones go to `self.skipped`).
    pub async fn recv_until<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&ServerMsg) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let ev = self
                .recv_event(left)
                .await
                .with_context(|| format!("waiting for {what}; skipped {:?}", self.skipped))?;
            match ev {
                WsEvent::Msg(m) => match pred(&m) {
                    Some(v) => return Ok(v),
                    None => self.skipped.push(m),
                },
                other => bail!("waiting for {what}: got {other:?}"),
            }
        }
    }

    /// The next message must be an error with this code; returns `(message, in_reply_to)`.
    pub async fn expect_error(
        &mut self,
        code: ErrorCode,
        timeout: Duration,
    ) -> anyhow::Result<(String, Option<String>)> {
        match self.recv_event(timeout).await? {
            WsEvent::Msg(ServerMsg::Error {
                code: got,
                message,
                in_reply_to,
            }) => {
                if got != code {
                    bail!("expected error {code}, got error {got} ({message:?})");
                }
                Ok((message, in_reply_to))
            }
            other => bail!("expected error {code}, got {other:?}"),
        }
    }

    /// Waits for the server to close the WebSocket, skipping messages; returns the close frame.
    pub async fn expect_close(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<Option<(u16, String)>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self
                .recv_event(left)
                .await
                .context("waiting for the close")?
            {
                WsEvent::Closed(c) => return Ok(c),
                WsEvent::Msg(m) => self.skipped.push(m),
                WsEvent::Unparsable(u) => bail!("waiting for the close: unparsable {u}"),
            }
        }
    }

    /// Whether the server has closed the connection.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// `hello` → `welcome`.
    pub async fn hello(&mut self) -> anyhow::Result<ServerMsg> {
        self.send(&ClientMsg::Hello {
            versions: vec![1],
            client: Some("tuxa-tests".into()),
        })
        .await?;
        let m = self
            .recv(REPLY_TIMEOUT)
            .await
            .context("waiting for welcome")?;
        match &m {
            ServerMsg::Welcome { version: 1, .. } => Ok(m),
            other => bail!("expected welcome, got {other:?}"),
        }
    }

    /// `join` → `joined` (the next message must be `joined`, or `waiting`
    /// and then `joined` once a host admits us — see [`crate::peer::Peer::admit`]).
    pub async fn join(&mut self, room: &RoomId, token: &str) -> anyhow::Result<Joined> {
        // Patients must consent to remote examination before joining; the
        // harness consents for everyone (staff answers are simply recorded).
        self.consent().await?;
        self.send(&ClientMsg::Join {
            room: room.clone(),
            token: token.to_owned(),
        })
        .await?;
        let mut reply = self
            .recv(REPLY_TIMEOUT)
            .await
            .context("waiting for joined")?;
        if let ServerMsg::Waiting { .. } = reply {
            reply = self
                .recv(ADMIT_TIMEOUT)
                .await
                .context("waiting in the lobby to be admitted")?;
        }
        match reply {
            ServerMsg::Joined {
                room,
                you,
                participants,
                resumed,
            } => Ok(Joined {
                room,
                you,
                participants,
                resumed,
            }),
            other => bail!("expected joined, got {other:?}"),
        }
    }

    /// Sends the consent answers a patient gives in the browser (yes to the
    /// examination, no to third parties and recording) and waits for the receipt.
    pub async fn consent(&mut self) -> anyhow::Result<()> {
        self.send(&ClientMsg::Consent {
            text_version: "test-1".into(),
            remote_examination: true,
            third_parties: false,
            recording: false,
        })
        .await?;
        match self
            .recv(REPLY_TIMEOUT)
            .await
            .context("waiting for consent_recorded")?
        {
            ServerMsg::ConsentRecorded { .. } => Ok(()),
            other => bail!("expected consent_recorded, got {other:?}"),
        }
    }

    /// `ping` → `pong` with the same seq (other messages are skipped).
    pub async fn ping(&mut self, seq: u64) -> anyhow::Result<()> {
        self.send(&ClientMsg::Ping { seq }).await?;
        self.recv_until(REPLY_TIMEOUT, "pong", |m| match m {
            ServerMsg::Pong { seq: s } if *s == seq => Some(()),
            _ => None,
        })
        .await
    }

    /// Closes the WebSocket from our side.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
