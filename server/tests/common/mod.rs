//! What the server's process-level tests share: the real `tuxa` binary
//! started on loopback ports in a temporary data directory, and a small
//! HTTPS client (HTTP/1.1, `Connection: close`, any certificate).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const ADMIN_KEY: &str = "backup-test-admin-key";

/// A fresh folder under the system's temporary folder.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tuxa-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("a temporary folder");
    d
}

/// A master key as 64 hex digits.
pub fn key_hex(byte: u8) -> String {
    format!("{byte:02x}").repeat(32)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `tuxa ARGS` with the master key and admin key in the environment.
pub fn tuxa(args: &[&str], master_key: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tuxa"));
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TUXA_MASTER_KEY", master_key)
        .env("TUXA_ADMIN_KEY", ADMIN_KEY);
    c
}

/// Runs `tuxa ARGS` to its end.
pub fn run(args: &[&str], master_key: &str) -> Output {
    tuxa(args, master_key).output().expect("running tuxa")
}

/// A running `tuxa` server.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub media: SocketAddr,
}

impl Server {
    /// Starts the server on `data_dir` (its certificate beside it) and waits
    /// until `/readyz` answers 200.
    pub async fn start(data_dir: &Path, master_key: &str) -> Server {
        Server::start_with(data_dir, master_key, &[], &[], Stdio::null()).await
    }

    /// [`Server::start`] with more options and variables, and its standard
    /// output where `stdout` says.
    pub async fn start_with(
        data_dir: &Path,
        master_key: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        stdout: Stdio,
    ) -> Server {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let media: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let certs = data_dir.with_extension("certs");
        let child = tuxa(
            &[
                "--listen",
                &addr.to_string(),
                "--media-listen",
                &media.to_string(),
                "--media-tcp-listen",
                "off",
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--cert-dir",
                certs.to_str().unwrap(),
                "--no-demo",
            ],
            master_key,
        )
        .args(extra)
        .envs(env.iter().copied())
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting tuxa");
        let mut server = Server { child, addr, media };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, _)) = server.get("/readyz").await {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("tuxa exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "tuxa not ready in 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        request(self.addr, "GET", path, None, None).await
    }

    /// A request with the admin key; the body as JSON.
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let body = body.map(|b| b.to_string());
        let (status, text) =
            request(self.addr, method, path, body.as_deref(), Some(ADMIN_KEY)).await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// SIGTERM, then the exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTPS request; `(status, body)`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    bearer: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let tls = tokio_rustls::TlsConnector::from(tuxa_test_kit::tls::insecure_client_config(&[
        b"http/1.1",
    ]));
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut s = tls.connect(name, tcp).await?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(k) = bearer {
        req.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    let body = body.unwrap_or("");
    if method != "GET" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await?;
    s.flush().await?;
    let mut raw = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await? {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e.into()),
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP head in {text:?}"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status in {head:?}"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
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
