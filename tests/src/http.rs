//! A small HTTPS JSON client for the admin and public API (`docs/api.md`).
//!
//! Hand-written HTTP/1.1 with `Connection: close` over tokio-rustls: one request per
//! connection, the response read to the end. Enough for tests, and it keeps the test crate
//! free of an HTTP client stack.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tuxa_protocol::{ConsultationKind, Role, RoomId};

use crate::tls::insecure_client_config;

/// How a request authenticates.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    None,
    /// `Authorization: Bearer <key>`
    Bearer(&'a str),
    /// An `Authorization` header given verbatim.
    Raw(&'a str),
    /// A `Cookie` header (a staff sign-in), given verbatim.
    Cookie(&'a str),
}

/// A response: status, headers (lower-cased names), body, and the body as JSON when it is JSON
/// (`Value::String(body)` otherwise, so an assertion shows what came).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub json: Value,
    /// The body as sent (media, files).
    pub bytes: Vec<u8>,
}

impl Response {
    /// `error.code` of an API error body.
    pub fn error_code(&self) -> Option<&str> {
        self.json.pointer("/error/code").and_then(Value::as_str)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
pub struct ApiClient {
    addr: SocketAddr,
    admin_key: String,
    tls: TlsConnector,
    timeout: Duration,
}

impl ApiClient {
    pub fn new(addr: SocketAddr, admin_key: impl Into<String>) -> ApiClient {
        ApiClient {
            addr,
            admin_key: admin_key.into(),
            tls: TlsConnector::from(insecure_client_config(&[b"http/1.1"])),
            timeout: Duration::from_secs(10),
        }
    }

    pub fn admin_key(&self) -> &str {
        &self.admin_key
    }

    /// One request. `body` is sent as given, with `Content-Type: application/json`.
    pub async fn request_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        auth: Auth<'_>,
    ) -> anyhow::Result<Response> {
        self.request_typed(method, path, body, "application/json", auth)
            .await
    }

    /// One request whose body has its own `Content-Type` (file uploads).
    pub async fn request_typed(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: &str,
        auth: Auth<'_>,
    ) -> anyhow::Result<Response> {
        tokio::time::timeout(
            self.timeout,
            self.request_inner(method, path, body, content_type, &[], auth),
        )
        .await
        .with_context(|| format!("{method} {path}: no response in {:?}", self.timeout))?
    }

    /// A `GET` with headers of its own (e.g. `Range`).
    pub async fn get_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        auth: Auth<'_>,
    ) -> anyhow::Result<Response> {
        tokio::time::timeout(
            self.timeout,
            self.request_inner("GET", path, None, "application/json", headers, auth),
        )
        .await
        .with_context(|| format!("GET {path}: no response in {:?}", self.timeout))?
    }

    async fn request_inner(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: &str,
        extra: &[(&str, &str)],
        auth: Auth<'_>,
    ) -> anyhow::Result<Response> {
        let tcp = TcpStream::connect(self.addr).await.context("connect")?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
        let mut tls = self.tls.connect(name, tcp).await.context("TLS handshake")?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\nUser-Agent: tuxa-tests\r\n",
            self.addr
        );
        match auth {
            Auth::None => {}
            Auth::Bearer(key) => req.push_str(&format!("Authorization: Bearer {key}\r\n")),
            Auth::Raw(v) => req.push_str(&format!("Authorization: {v}\r\n")),
            Auth::Cookie(c) => req.push_str(&format!("Cookie: {c}\r\n")),
        }
        for (name, value) in extra {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            req.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                body.len()
            ));
        } else if method != "GET" && method != "HEAD" {
            req.push_str("Content-Length: 0\r\n");
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        if let Some(body) = body {
            bytes.extend_from_slice(body);
        }
        tls.write_all(&bytes).await?;
        tls.flush().await?;
        let mut raw = Vec::new();
        // A server may close without close_notify; what was read is still the response.
        match tls.read_to_end(&mut raw).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
            Err(e) => return Err(e).context("reading the response"),
        }
        parse_response(&raw).with_context(|| format!("{method} {path}"))
    }

    /// A JSON request: `(status, body as JSON)`.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        auth: Auth<'_>,
    ) -> anyhow::Result<(u16, Value)> {
        let body = body.map(|b| serde_json::to_vec(b).expect("JSON serialises"));
        let r = self
            .request_raw(method, path, body.as_deref(), auth)
            .await?;
        Ok((r.status, r.json))
    }

    /// A request with the admin key.
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let key = self.admin_key.clone();
        self.request(method, path, body, Auth::Bearer(&key)).await
    }

    /// `POST /api/v1/consultations`; the new consultation's JSON.
    pub async fn create_consultation_json(
        &self,
        kind: ConsultationKind,
        title: &str,
    ) -> anyhow::Result<Value> {
        let (status, body) = self
            .admin(
                "POST",
                "/api/v1/consultations",
                Some(&json!({"kind": kind.as_str(), "title": title})),
            )
            .await?;
        if status != 201 {
            bail!("create consultation: {status} {body}");
        }
        Ok(body)
    }

    /// Creates a consultation and returns its room id.
    pub async fn create_consultation(
        &self,
        kind: ConsultationKind,
        title: &str,
    ) -> anyhow::Result<RoomId> {
        let body = self.create_consultation_json(kind, title).await?;
        let id = body["id"]
            .as_str()
            .with_context(|| format!("no id in {body}"))?;
        RoomId::parse(id).with_context(|| format!("bad room id in {body}"))
    }

    /// `POST /api/v1/consultations/{room}/links` with any body: `(status, JSON)`.
    pub async fn mint_link_with(&self, room: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        self.admin(
            "POST",
            &format!("/api/v1/consultations/{room}/links"),
            Some(body),
        )
        .await
    }

    /// Mints a join link and returns its token.
    pub async fn mint_link(&self, room: &RoomId, role: Role, name: &str) -> anyhow::Result<String> {
        let (status, body) = self
            .mint_link_with(room.as_str(), &json!({"role": role.as_str(), "name": name}))
            .await?;
        if status != 201 {
            bail!("mint link: {status} {body}");
        }
        body["token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no token in {body}"))
    }

    /// `POST /api/v1/consultations/{room}/end`.
    pub async fn end_consultation(&self, room: &RoomId) -> anyhow::Result<(u16, Value)> {
        self.admin("POST", &format!("/api/v1/consultations/{room}/end"), None)
            .await
    }

    /// `GET /api/v1/consultations/{room}` once it reads `ended` (the store
    /// closes the row after the hub ended the room), or as it is after
    /// `within`.
    pub async fn consultation_once_ended(
        &self,
        room: &RoomId,
        within: Duration,
    ) -> anyhow::Result<Value> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let (_, row) = self
                .admin("GET", &format!("/api/v1/consultations/{room}"), None)
                .await?;
            if row["status"] == "ended" || std::time::Instant::now() > deadline {
                return Ok(row);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `POST /api/v1/join-check`: `(status, JSON)`.
    pub async fn join_check(&self, room: &str, token: &str) -> anyhow::Result<(u16, Value)> {
        self.request(
            "POST",
            "/api/v1/join-check",
            Some(&json!({"room": room, "token": token})),
            Auth::None,
        )
        .await
    }
}

fn parse_response(raw: &[u8]) -> anyhow::Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("no end of headers in {} bytes", raw.len()))?;
    let head = std::str::from_utf8(&raw[..split]).context("headers are not UTF-8")?;
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        body = dechunk(&body)?;
    } else if let Some(len) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    let bytes = body;
    let body = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_str(&body).unwrap_or_else(|_| Value::String(body.clone()));
    Ok(Response {
        status,
        headers,
        body,
        json,
        bytes,
    })
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size line")?;
        let size_str = std::str::from_utf8(&b[..line_end])?;
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("chunk size {size_str:?}"))?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&b[..size]);
        b = b.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked() {
        let r = parse_response(b"HTTP/1.1 201 Created\r\ncontent-length: 9\r\n\r\n{\"a\":1}xxxx")
            .unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.body, "{\"a\":1}xx");
        let r = parse_response(
            b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.status, 401);
        assert_eq!(r.json, json!({"a": 1}));
    }
}
