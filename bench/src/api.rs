//! tuxa's admin API over HTTPS (HTTP/1.1, one request per connection), enough to create a
//! consultation and mint links.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tls::insecure_client_config;

pub async fn post(addr: SocketAddr, key: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
    let body = body.to_string();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let tcp = TcpStream::connect(addr)
        .await
        .context("connecting to the API")?;
    let connector = tokio_rustls::TlsConnector::from(insecure_client_config(&[b"http/1.1"]));
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut tls = connector
        .connect(name, tcp)
        .await
        .context("TLS to the API")?;
    tls.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    // The server may close without close_notify; take what arrived.
    let _ = tls.read_to_end(&mut resp).await;
    let text = String::from_utf8_lossy(&resp);
    let (head, rest) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    if !(200..300).contains(&status) {
        bail!("{path}: HTTP {status}: {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("{path}: not JSON: {body}"))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(len.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Creates a consultation and returns its id.
pub async fn create_room(addr: SocketAddr, key: &str, title: &str) -> anyhow::Result<String> {
    let v = post(
        addr,
        key,
        "/api/v1/consultations",
        &serde_json::json!({"kind": "conference", "title": title}),
    )
    .await?;
    Ok(v["id"].as_str().context("no id")?.to_owned())
}

/// Mints a join token for the room.
pub async fn mint(addr: SocketAddr, key: &str, room: &str, name: &str) -> anyhow::Result<String> {
    let v = post(
        addr,
        key,
        &format!("/api/v1/consultations/{room}/links"),
        &serde_json::json!({"role": "doctor", "name": name}),
    )
    .await?;
    Ok(v["token"].as_str().context("no token")?.to_owned())
}
