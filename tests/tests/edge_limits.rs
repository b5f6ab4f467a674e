//! What a stranger can make the server do (issue 11, findings 4, 6 and 10):
//! - slow and idle HTTPS connections are closed (header read timeout, idle
//!   timeout), WebSockets excepted;
//! - connections are capped per address and in total;
//! - a request body is judged from the request's head (declared length,
//!   authentication) before any of it is read;
//! - demo join links (tokens) are printed only when asked for, never at
//!   every start.
//!
//! Run: `cargo test --release -p tuxa-tests --test edge_limits`

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tuxa_protocol::{ConsultationKind, Role};
use tuxa_tests::tls::insecure_client_config;
use tuxa_tests::{ApiClient, Auth, TestServer};

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A TLS connection to `server`, from `from` (any 127.x address reaches a
/// server on 127.0.0.1), offering `alpn`.
async fn tls_from(
    from: IpAddr,
    server: SocketAddr,
    alpn: &[&[u8]],
) -> anyhow::Result<TlsStream<TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let tcp = socket.connect(server).await.context("TCP connect")?;
    let connector = TlsConnector::from(insecure_client_config(alpn));
    let name = ServerName::IpAddress(server.ip().into());
    tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .context("TLS handshake: no answer in 5 s")?
        .context("TLS handshake")
}

async fn tls(server: SocketAddr) -> anyhow::Result<TlsStream<TcpStream>> {
    tls_from(LOCALHOST, server, &[b"http/1.1"]).await
}

/// Reads until the server closes the connection (a clean close, a missing
/// close_notify or a reset all count); what came, and when the close came.
async fn until_closed(
    tls: &mut TlsStream<TcpStream>,
    within: Duration,
) -> anyhow::Result<(Vec<u8>, Duration)> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within
            .checked_sub(start.elapsed())
            .with_context(|| format!("still open after {within:?}; got {:?}", text(&got)))?;
        match tokio::time::timeout(left, tls.read(&mut buf)).await {
            Err(_) => bail!("still open after {within:?}; got {:?}", text(&got)),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok((got, start.elapsed())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The status of the first response in `raw` (`HTTP/1.1 NNN …`).
fn status(raw: &[u8]) -> Option<u16> {
    text(raw).strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// `GET /healthz` on an open connection: its status.
async fn healthz(mut tls: TlsStream<TcpStream>) -> anyhow::Result<u16> {
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: tuxa\r\nConnection: close\r\n\r\n")
        .await?;
    let (raw, _) = until_closed(&mut tls, Duration::from_secs(5)).await?;
    status(&raw).with_context(|| format!("no response: {:?}", text(&raw)))
}

/// Sends a request head (and `body`, if any) and reads the answer until the
/// server closes: the status of the first response, and the whole text.
async fn send_head(
    server: SocketAddr,
    head: &str,
    body: &[u8],
    within: Duration,
) -> anyhow::Result<(u16, String)> {
    let mut tls = tls(server).await?;
    tls.write_all(head.as_bytes()).await?;
    tls.write_all(body).await?;
    tls.flush().await?;
    let (raw, _) = until_closed(&mut tls, within)
        .await
        .with_context(|| format!("answer to {:?}", head.lines().next()))?;
    let s = status(&raw).with_context(|| format!("no response: {:?}", text(&raw)))?;
    Ok((s, text(&raw)))
}

/// A TLS connection that sends half a request header, or nothing at all, is
/// closed at the header read timeout. Before the fix it stayed open for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_header_is_cut_at_the_header_timeout() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| {
        c.header_timeout = Duration::from_secs(1);
        c.idle_timeout = Duration::from_secs(60);
    })
    .await?;
    let mut half = tls(server.http_addr).await?;
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: tu").await?;
    half.flush().await?;
    let mut silent = tls(server.http_addr).await?;
    let (_, took) = until_closed(&mut half, Duration::from_secs(5)).await?;
    assert!(
        took >= Duration::from_millis(800),
        "closed after {took:?}: before the timeout"
    );
    until_closed(&mut silent, Duration::from_secs(5)).await?;
    // A whole request on a fresh connection is still served.
    assert_eq!(healthz(tls(server.http_addr).await?).await?, 200);
    server.shutdown().await
}

/// A request whose body stalls, and an HTTP/2 connection that sends nothing
/// after its preface, are closed at the idle timeout; a WebSocket that is
/// quiet for longer still works (it has its own keepalive). Before the fix
/// the first two stayed open for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_cut_but_not_websockets() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| {
        c.header_timeout = Duration::from_secs(30);
        c.idle_timeout = Duration::from_secs(1);
    })
    .await?;
    let mut ws = server.signal().await?;
    ws.hello().await?;

    let mut stalled = tls(server.http_addr).await?;
    stalled
        .write_all(
            b"POST /api/v1/join-check HTTP/1.1\r\nHost: tuxa\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"room\":",
        )
        .await?;
    stalled.flush().await?;

    let mut h2 = tls_from(LOCALHOST, server.http_addr, &[b"h2"]).await?;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // The client preface and an empty SETTINGS frame, then nothing.
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await?;
    h2.flush().await?;

    let (_, took) = until_closed(&mut stalled, Duration::from_secs(6)).await?;
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
    until_closed(&mut h2, Duration::from_secs(6)).await?;

    // The WebSocket has been quiet for more than the idle timeout.
    ws.ping(7).await?;
    server.shutdown().await
}

/// Connections over the cap of one address are closed at once, while other
/// addresses are served up to the total cap; a place given back is free
/// again. Before the fix every connection was taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_address_and_in_total() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| {
        c.max_connections = 5;
        c.max_connections_per_ip = 3;
        c.header_timeout = Duration::from_secs(60);
    })
    .await?;
    // Let the start-up health checks' connections give their places back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let addr = server.http_addr;
    let a: IpAddr = "127.0.0.1".parse()?;
    let b: IpAddr = "127.0.0.2".parse()?;
    let c: IpAddr = "127.0.0.3".parse()?;

    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tls_from(a, addr, &[b"http/1.1"]).await?);
    }
    let start = Instant::now();
    let refused = tls_from(a, addr, &[b"http/1.1"]).await;
    assert!(refused.is_err(), "a 4th connection from one address");
    assert!(start.elapsed() < Duration::from_secs(2), "closed at once");

    // Another address is served; two of them fill the total of 5.
    assert_eq!(
        healthz(tls_from(b, addr, &[b"http/1.1"]).await?).await?,
        200
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    held.push(tls_from(b, addr, &[b"http/1.1"]).await?);
    held.push(tls_from(c, addr, &[b"http/1.1"]).await?);
    assert!(
        tls_from(c, addr, &[b"http/1.1"]).await.is_err(),
        "a 6th connection in all"
    );

    // One closed: its place is free again.
    drop(held.remove(0));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        healthz(tls_from(a, addr, &[b"http/1.1"]).await?).await?,
        200
    );
    drop(held);
    server.shutdown().await
}

/// Bodies are judged from the head: an anonymous upload gets 401 without
/// its body being read (nor `100 Continue` asked for), a declared length over
/// the limit gets 413, a chunked body 411; signed-in uploads and JSON calls
/// work. Before the fix the server waited for the 10 MiB before answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_judged_before_they_are_read() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let addr = server.http_addr;
    let key = server.admin_key.clone();
    let quick = Duration::from_secs(3);

    // An anonymous 10 MiB upload: refused from its head.
    let (s, body) = send_head(
        addr,
        "POST /api/v1/conferences/1/attachments?name=x.png HTTP/1.1\r\nHost: tuxa\r\n\
         Content-Type: image/png\r\nContent-Length: 10485760\r\nExpect: 100-continue\r\n\r\n",
        b"",
        quick,
    )
    .await?;
    assert_eq!(s, 401, "{body}");
    assert!(body.contains("\"unauthorized\""), "{body}");

    // Anonymous JSON to an endpoint that needs a sign-in: the same.
    let (s, body) = send_head(
        addr,
        "POST /api/v1/consultations HTTP/1.1\r\nHost: tuxa\r\n\
         Content-Type: application/json\r\nContent-Length: 60\r\n\r\n",
        b"",
        quick,
    )
    .await?;
    assert_eq!(s, 401, "{body}");

    // A public endpoint with a declared length over the JSON limit.
    let (s, body) = send_head(
        addr,
        "POST /api/v1/join-check HTTP/1.1\r\nHost: tuxa\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
        b"",
        quick,
    )
    .await?;
    assert_eq!(s, 413, "{body}");
    assert!(body.contains("\"payload_too_large\""), "{body}");

    // Signed in, far over the upload limit: refused from the head too.
    let (s, body) = send_head(
        addr,
        &format!(
            "POST /api/v1/conferences/1/attachments?name=x.png HTTP/1.1\r\nHost: tuxa\r\n\
             Authorization: Bearer {key}\r\nContent-Type: image/png\r\n\
             Content-Length: 1073741824\r\n\r\n"
        ),
        b"",
        quick,
    )
    .await?;
    assert_eq!(s, 413, "{body}");
    assert!(body.contains("\"payload_too_large\""), "{body}");

    // Signed in, just over: the body is read and dropped, so the uploader
    // sees the answer instead of a reset in the middle of the upload.
    let big = vec![b'%'; 10 * 1024 * 1024 + 1];
    let r = server
        .api()
        .request_typed(
            "POST",
            "/api/v1/conferences/1/attachments?name=big.png",
            Some(&big),
            "image/png",
            Auth::Bearer(&key),
        )
        .await?;
    assert_eq!(
        (r.status, r.error_code()),
        (413, Some("payload_too_large")),
        "{}",
        r.body
    );

    // A chunked body (no declared length).
    let (s, body) = send_head(
        addr,
        "POST /api/v1/join-check HTTP/1.1\r\nHost: tuxa\r\nConnection: close\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"2\r\n{}\r\n0\r\n\r\n",
        quick,
    )
    .await?;
    assert_eq!(s, 411, "{body}");

    // Ordinary calls still work: JSON with the admin key, and the public
    // link check with a body.
    let api: ApiClient = server.api();
    let room = api
        .create_consultation(ConsultationKind::Visit, "Khám từ xa")
        .await?;
    let token = api.mint_link(&room, Role::Patient, "Bệnh nhân").await?;
    let (s, body) = api.join_check(room.as_str(), &token).await?;
    assert_eq!(s, 200, "{body}");
    let r = api
        .request_raw("POST", "/api/v1/auth/logout", None, Auth::None)
        .await?;
    assert_eq!(r.status, 204, "{}", r.body);
    server.shutdown().await
}

// ---------------------------------------------------------------------------
// Demo links: the server runs in a child process (this test binary, re-run
// with `--ignored --exact demo_child_server`) so that its standard output
// can be read, as a service's journal would.

const CHILD_ARGS: &str = "TUXA_EDGE_CHILD_ARGS";

/// Not a test of its own: the body of the child process. Runs `tuxa` with
/// the arguments in `TUXA_EDGE_CHILD_ARGS` (separated by newlines) until its
/// standard input closes.
#[test]
#[ignore = "runs only as the child process of demo_links_are_printed_only_when_asked"]
fn demo_child_server() {
    let Ok(args) = std::env::var(CHILD_ARGS) else {
        return;
    };
    let args: Vec<String> = args.lines().map(str::to_owned).collect();
    let settings = tuxa_server::Settings::resolve(&args, |_| None).expect("settings");
    let http = std::net::TcpListener::bind("127.0.0.1:0").expect("bind TCP");
    let media = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime
        .block_on(tuxa_server::run(
            tuxa_server::Listeners {
                http,
                media,
                media_tcp: None,
            },
            settings.config,
            async {
                let _ = tokio::task::spawn_blocking(|| {
                    let mut all = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut all)
                })
                .await;
            },
        ))
        .expect("server");
}

/// Starts the child server on `dir` with `extra` arguments, waits until it
/// serves, stops it, and returns everything it printed.
async fn start_and_stop(dir: &std::path::Path, extra: &[&str]) -> anyhow::Result<String> {
    let mut args = vec![
        "--data-dir".to_owned(),
        dir.join("data").display().to_string(),
        "--cert-dir".to_owned(),
        dir.join("certs").display().to_string(),
        "--key-file".to_owned(),
        dir.join("keys").join("tuxa.key").display().to_string(),
        "--log".to_owned(),
        "warn".to_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["--ignored", "--exact", "demo_child_server", "--nocapture"])
        .env(CHILD_ARGS, args.join("\n"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawning the child server")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut out = String::new();
    let addr: SocketAddr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            out.push_str(&line);
            out.push('\n');
            if let Some(rest) = line.strip_prefix("tuxa listening on https://") {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                return Ok::<_, anyhow::Error>(addr.parse()?);
            }
        }
        bail!("the child ended before listening")
    })
    .await
    .with_context(|| format!("the child did not start; it printed:\n{out}"))??;
    // Once it serves, everything of the start has been printed.
    let api = ApiClient::new(addr, "");
    let mut up = false;
    for _ in 0..200 {
        if let Ok(r) = api.request_raw("GET", "/healthz", None, Auth::None).await
            && r.status == 200
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(child.stdin.take());
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            out.push_str(&line);
            out.push('\n');
        }
        anyhow::Ok(())
    })
    .await
    .context("the child did not stop")??;
    child.wait().await?;
    if !up {
        bail!("the child never served /healthz; it printed:\n{out}");
    }
    Ok(out)
}

/// Join links are tokens: a start prints them only with `--demo`, or on the
/// first start when a person reads the output (a terminal; never into a
/// journal). Before the fix every start created a demo consultation and
/// printed its two tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_links_are_printed_only_when_asked() -> anyhow::Result<()> {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "tuxa-edge-demo-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir)?;
    let result = async {
        // First start, output to a pipe (as under a service manager).
        let first = start_and_stop(&dir, &[]).await?;
        assert!(first.contains("Admin API key"), "{first}");
        assert!(!first.contains("#v1."), "a token printed:\n{first}");
        // Asked for: the links are printed.
        let asked = start_and_stop(&dir, &["--demo"]).await?;
        assert_eq!(asked.matches("#v1.").count(), 2, "{asked}");
        // A later start prints no token.
        let again = start_and_stop(&dir, &[]).await?;
        assert!(!again.contains("#v1."), "a token printed:\n{again}");
        assert!(!again.contains("Admin API key"), "{again}");
        anyhow::Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}
