//! Signaling for one peer: tuxa's WebSocket protocol (`docs/protocol.md`) or Janus's VideoRoom
//! over Janus's WebSocket transport.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tuxa_protocol::{ClientMsg, ErrorCode, RecordingState, RoomId, ServerMsg, parse_server_msg};

use crate::tls::insecure_client_config;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const TIMEOUT: Duration = Duration::from_secs(20);

pub enum SigEvent {
    Offer(String),
    Answer(String),
    Candidate(String),
    /// tuxa's `recording` state changed (to this peer's room).
    Recording(RecordingState),
    Closed(String),
    Nothing,
}

pub enum Sig {
    Tuxa(TuxaSig),
    Janus(JanusSig),
}

impl Sig {
    pub async fn next(&mut self) -> SigEvent {
        match self {
            Sig::Tuxa(s) => s.next().await,
            Sig::Janus(s) => s.next().await,
        }
    }
    pub async fn send_offer(&mut self, sdp: String) -> anyhow::Result<()> {
        match self {
            Sig::Tuxa(s) => s.send(&ClientMsg::Offer { sdp }).await,
            Sig::Janus(s) => s.send_offer(sdp).await,
        }
    }
    pub async fn send_answer(&mut self, sdp: String) -> anyhow::Result<()> {
        match self {
            Sig::Tuxa(s) => s.send(&ClientMsg::Answer { sdp }).await,
            Sig::Janus(s) => s.send_answer(sdp).await,
        }
    }
    /// Sends another protocol message (tuxa only: Janus has no counterpart here).
    pub async fn send_control(&mut self, m: &ClientMsg) -> anyhow::Result<()> {
        match self {
            Sig::Tuxa(s) => s.send(m).await,
            Sig::Janus(_) => bail!("no control messages for Janus"),
        }
    }
    pub async fn keepalive(&mut self) -> anyhow::Result<()> {
        match self {
            Sig::Tuxa(s) => s.send(&ClientMsg::Ping { seq: 1 }).await,
            Sig::Janus(s) => s.keepalive().await,
        }
    }
    pub fn keepalive_interval(&self) -> Duration {
        match self {
            Sig::Tuxa(_) => Duration::from_secs(15),
            Sig::Janus(_) => Duration::from_secs(20),
        }
    }
    /// Leaves and closes.
    pub async fn leave(&mut self) {
        match self {
            Sig::Tuxa(s) => {
                let _ = s.send(&ClientMsg::Leave {}).await;
                let _ = tokio::time::timeout(Duration::from_secs(2), s.ws.close(None)).await;
            }
            Sig::Janus(s) => s.leave().await,
        }
    }
}

// ---------------------------------------------------------------- tuxa

pub struct TuxaSig {
    ws: Ws,
    /// The server said `negotiation_glare` or similar; the peer may retry.
    pub errors: Vec<ErrorCode>,
}

impl TuxaSig {
    /// Connects, says hello and joins; returns once `joined` arrived.
    pub async fn join(addr: SocketAddr, room: &str, token: &str) -> anyhow::Result<TuxaSig> {
        let url = format!("wss://{addr}/ws");
        let connector = Connector::Rustls(insecure_client_config(&[]));
        let (ws, _) = tokio::time::timeout(
            TIMEOUT,
            tokio_tungstenite::connect_async_tls_with_config(
                url.as_str(),
                // As the server does: the default 128 KiB read buffer is zeroed before every
                // read, a cost per wake-up of each of the generator's 200 sessions.
                Some(
                    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                        .read_buffer_size(4096),
                ),
                true,
                Some(connector),
            ),
        )
        .await
        .context("WebSocket connect timed out")??;
        let mut s = TuxaSig {
            ws,
            errors: Vec::new(),
        };
        s.send(&ClientMsg::Hello {
            versions: vec![1],
            client: Some("tuxa-bench".into()),
        })
        .await?;
        s.expect(|m| matches!(m, ServerMsg::Welcome { .. })).await?;
        let room = RoomId::parse(room).map_err(|e| anyhow::anyhow!("room id: {e}"))?;
        s.send(&ClientMsg::Join {
            room,
            token: token.to_owned(),
        })
        .await?;
        s.expect(|m| matches!(m, ServerMsg::Joined { .. })).await?;
        Ok(s)
    }

    async fn expect(&mut self, want: impl Fn(&ServerMsg) -> bool) -> anyhow::Result<ServerMsg> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let m = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .context("timed out waiting for the server")?
                .context("WebSocket closed")??;
            if let Message::Text(t) = m {
                let msg = parse_server_msg(t.as_str())
                    .map_err(|e| anyhow::anyhow!("unparsable server message: {e:?}"))?;
                if want(&msg) {
                    return Ok(msg);
                }
                if let ServerMsg::Error { code, message, .. } = &msg {
                    bail!("server error {code:?}: {message}");
                }
            }
        }
    }

    pub async fn send(&mut self, m: &ClientMsg) -> anyhow::Result<()> {
        let text = serde_json::to_string(m)?;
        self.ws.send(Message::text(text)).await?;
        Ok(())
    }

    async fn next(&mut self) -> SigEvent {
        match self.ws.next().await {
            Some(Ok(Message::Text(t))) => match parse_server_msg(t.as_str()) {
                Ok(ServerMsg::Offer { sdp }) => SigEvent::Offer(sdp),
                Ok(ServerMsg::Answer { sdp }) => SigEvent::Answer(sdp),
                Ok(ServerMsg::Recording { state, .. }) => SigEvent::Recording(state),
                Ok(ServerMsg::Error { code, message, .. }) => {
                    if code.is_fatal() {
                        return SigEvent::Closed(format!("{code:?}: {message}"));
                    }
                    self.errors.push(code);
                    SigEvent::Nothing
                }
                _ => SigEvent::Nothing,
            },
            Some(Ok(Message::Close(c))) => SigEvent::Closed(format!("close {c:?}")),
            Some(Ok(_)) => SigEvent::Nothing,
            Some(Err(e)) => SigEvent::Closed(e.to_string()),
            None => SigEvent::Closed("ended".into()),
        }
    }
}

// ---------------------------------------------------------------- Janus

pub struct JanusSig {
    ws: Ws,
    session: u64,
    handle: u64,
    room: u64,
    tx: u64,
    queued: VecDeque<SigEvent>,
    /// The publisher's feed id (publishers only).
    pub feed: u64,
}

fn jsep_event(v: &Value) -> Option<SigEvent> {
    let j = v.get("jsep")?;
    let sdp = j["sdp"].as_str()?.to_owned();
    match j["type"].as_str()? {
        "offer" => Some(SigEvent::Offer(sdp)),
        "answer" => Some(SigEvent::Answer(sdp)),
        _ => None,
    }
}

impl JanusSig {
    async fn connect(url: &str) -> anyhow::Result<JanusSig> {
        let mut req = url.into_client_request()?;
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "janus-protocol".parse()?);
        let (ws, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(req))
            .await
            .context("Janus WebSocket connect timed out")??;
        let mut s = JanusSig {
            ws,
            session: 0,
            handle: 0,
            room: 0,
            tx: 0,
            queued: VecDeque::new(),
            feed: 0,
        };
        let r = s.call(json!({"janus": "create"}), |_| true).await?;
        s.session = r["data"]["id"].as_u64().context("no session id")?;
        let r = s
            .call(
                json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
                |_| true,
            )
            .await?;
        s.handle = r["data"]["id"].as_u64().context("no handle id")?;
        Ok(s)
    }

    async fn raw_send(&mut self, mut v: Value) -> anyhow::Result<String> {
        self.tx += 1;
        let tx = format!("t{}", self.tx);
        v["transaction"] = json!(tx);
        if self.session != 0 {
            v["session_id"] = json!(self.session);
        }
        if self.handle != 0 && v["janus"] != "keepalive" && v["janus"] != "destroy" {
            v["handle_id"] = json!(self.handle);
        }
        self.ws.send(Message::text(v.to_string())).await?;
        Ok(tx)
    }

    /// Sends a request and waits for the reply with its transaction that `done` accepts
    /// (skipping `ack`s); other messages are queued for `next`.
    async fn call(&mut self, v: Value, done: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let tx = self.raw_send(v).await?;
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let m = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .context("timed out waiting for Janus")?
                .context("Janus closed")??;
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(t.as_str())?;
            if v["transaction"] == tx.as_str() {
                match v["janus"].as_str() {
                    Some("ack") => continue,
                    Some("error") => bail!("Janus error: {v}"),
                    _ => {
                        if let Some(e) = v["plugindata"]["data"].get("error") {
                            bail!("VideoRoom error: {e}");
                        }
                        if done(&v) {
                            return Ok(v);
                        }
                    }
                }
            } else {
                let e = self.classify(&v);
                self.queued.push_back(e);
            }
        }
    }

    fn classify(&self, v: &Value) -> SigEvent {
        tracing::trace!("janus: {v}");
        if let Some(e) = jsep_event(v) {
            return e;
        }
        match v["janus"].as_str() {
            Some("trickle") => match v["candidate"]["candidate"].as_str() {
                Some(c) => SigEvent::Candidate(c.to_owned()),
                None => SigEvent::Nothing,
            },
            Some("hangup") | Some("detached") => SigEvent::Closed(v.to_string()),
            _ => SigEvent::Nothing,
        }
    }

    /// Creates a VideoRoom room (a control session, closed afterwards).
    pub async fn create_room(url: &str, room: u64) -> anyhow::Result<()> {
        let mut s = JanusSig::connect(url).await?;
        s.call(
            json!({"janus": "message", "body": {
                "request": "create", "room": room, "publishers": 100, "bitrate": 0,
                "fir_freq": 0, "audiocodec": "opus", "videocodec": "vp8",
                "notify_joining": false, "permanent": false}}),
            |_| true,
        )
        .await?;
        s.leave().await;
        Ok(())
    }

    pub async fn publisher(url: &str, room: u64, name: &str) -> anyhow::Result<JanusSig> {
        let mut s = JanusSig::connect(url).await?;
        s.room = room;
        let r = s
            .call(
                json!({"janus": "message", "body": {
                    "request": "join", "ptype": "publisher", "room": room, "display": name}}),
                |v| v["janus"] == "event",
            )
            .await?;
        s.feed = r["plugindata"]["data"]["id"]
            .as_u64()
            .context("no feed id")?;
        Ok(s)
    }

    /// Subscribes to `feeds` with one handle; Janus's offer is queued for `next`.
    pub async fn subscriber(url: &str, room: u64, feeds: &[u64]) -> anyhow::Result<JanusSig> {
        let mut s = JanusSig::connect(url).await?;
        s.room = room;
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        let r = s
            .call(
                json!({"janus": "message", "body": {
                    "request": "join", "ptype": "subscriber", "room": room, "streams": streams}}),
                |v| v["janus"] == "event",
            )
            .await?;
        let e = jsep_event(&r).context("Janus sent no offer to the subscriber")?;
        s.queued.push_front(e);
        Ok(s)
    }

    async fn send_offer(&mut self, sdp: String) -> anyhow::Result<()> {
        self.raw_send(json!({"janus": "message",
            "body": {"request": "configure", "audio": true, "video": true},
            "jsep": {"type": "offer", "sdp": sdp}}))
            .await?;
        self.raw_send(json!({"janus": "trickle", "candidate": {"completed": true}}))
            .await?;
        Ok(())
    }

    async fn send_answer(&mut self, sdp: String) -> anyhow::Result<()> {
        self.raw_send(json!({"janus": "message",
            "body": {"request": "start", "room": self.room},
            "jsep": {"type": "answer", "sdp": sdp}}))
            .await?;
        self.raw_send(json!({"janus": "trickle", "candidate": {"completed": true}}))
            .await?;
        Ok(())
    }

    async fn keepalive(&mut self) -> anyhow::Result<()> {
        self.raw_send(json!({"janus": "keepalive"})).await?;
        Ok(())
    }

    async fn leave(&mut self) {
        let _ = self.raw_send(json!({"janus": "destroy"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(m)) = self.ws.next().await {
                if let Message::Text(t) = m
                    && t.contains("\"success\"")
                {
                    break;
                }
            }
        })
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }

    async fn next(&mut self) -> SigEvent {
        if let Some(e) = self.queued.pop_front() {
            return e;
        }
        match self.ws.next().await {
            Some(Ok(Message::Text(t))) => match serde_json::from_str::<Value>(t.as_str()) {
                Ok(v) => self.classify(&v),
                Err(_) => SigEvent::Nothing,
            },
            Some(Ok(Message::Close(c))) => SigEvent::Closed(format!("close {c:?}")),
            Some(Ok(_)) => SigEvent::Nothing,
            Some(Err(e)) => SigEvent::Closed(e.to_string()),
            None => SigEvent::Closed("ended".into()),
        }
    }
}
