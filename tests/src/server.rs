//! A whole tuxa server, in-process, on port 0 of 127.0.0.1 (TCP for HTTPS + WebSocket, UDP for
//! media, TCP for media over ICE-TCP).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tuxa_server::{Config, Listeners};

use crate::http::{ApiClient, Auth};
use crate::signal::SignalClient;

/// The admin key `Config::for_tests` sets.
pub const TEST_ADMIN_KEY: &str = "test-admin-key";

pub struct TestServer {
    /// The HTTPS + WebSocket address.
    pub http_addr: SocketAddr,
    /// The media (DTLS-SRTP) UDP address.
    pub media_addr: SocketAddr,
    /// The media TCP (ICE-TCP, RFC 4571 framing) address, when the server has one.
    pub media_tcp_addr: Option<SocketAddr>,
    pub admin_key: String,
    pub data_dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts a server with `Config::for_tests` and waits until it serves `/healthz`.
    pub async fn start() -> anyhow::Result<TestServer> {
        Self::start_with(|_| {}).await
    }

    /// Starts a server, letting the test change the configuration first.
    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> anyhow::Result<TestServer> {
        Self::start_on(std::net::IpAddr::from([127, 0, 0, 1]), configure).await
    }

    /// Starts a server on `ip` (port 0), announcing `ip` as its media
    /// candidate (the netns tests run it on a veth address).
    pub async fn start_on(
        ip: std::net::IpAddr,
        configure: impl FnOnce(&mut Config),
    ) -> anyhow::Result<TestServer> {
        crate::init_tracing();
        let data_dir = unique_temp_dir()?;

        let http = std::net::TcpListener::bind((ip, 0)).context("binding TCP")?;
        http.set_nonblocking(true)?;
        let media = std::net::UdpSocket::bind((ip, 0)).context("binding UDP")?;
        media.set_nonblocking(true)?;
        let media_tcp = std::net::TcpListener::bind((ip, 0)).context("binding media TCP")?;
        let media_tcp_addr = media_tcp.local_addr()?;
        let http_addr = http.local_addr()?;
        let media_addr = media.local_addr()?;

        let mut config = Config::for_tests(data_dir.clone());
        config.announce = vec![ip];
        configure(&mut config);
        let admin_key = config
            .admin_key
            .clone()
            .unwrap_or_else(|| TEST_ADMIN_KEY.to_owned());

        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let task = tokio::spawn(tuxa_server::run(
            Listeners {
                http,
                media,
                media_tcp: Some(media_tcp),
            },
            config,
            shutdown,
        ));

        let server = TestServer {
            http_addr,
            media_addr,
            media_tcp_addr: Some(media_tcp_addr),
            admin_key,
            data_dir,
            shutdown: Some(tx),
            task: Some(task),
        };
        server.wait_healthy(Duration::from_secs(15)).await?;
        tracing::info!(%http_addr, %media_addr, "test server up");
        Ok(server)
    }

    /// A handle on a server run elsewhere (another process or network
    /// namespace): for API clients and peers; stopping it stops nothing.
    pub fn remote(http_addr: SocketAddr, media_addr: SocketAddr) -> TestServer {
        crate::init_tracing();
        TestServer {
            http_addr,
            media_addr,
            media_tcp_addr: None,
            admin_key: TEST_ADMIN_KEY.to_owned(),
            data_dir: PathBuf::new(),
            shutdown: None,
            task: None,
        }
    }

    async fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<()> {
        let api = self.api();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            if let Some(task) = &self.task
                && task.is_finished()
            {
                bail!("the server stopped while starting (last /healthz: {last})");
            }
            match api.request_raw("GET", "/healthz", None, Auth::None).await {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => last = format!("{} {}", r.status, r.body),
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("server not healthy after {timeout:?}: {last}")
    }

    /// An API client with the admin key.
    pub fn api(&self) -> ApiClient {
        ApiClient::new(self.http_addr, self.admin_key.clone())
    }

    /// A new WebSocket session (nothing sent yet).
    pub async fn signal(&self) -> anyhow::Result<SignalClient> {
        SignalClient::connect(self.http_addr).await
    }

    /// Whether the server task has ended (it should not, before `shutdown`).
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the server and waits for `run` to return; its result is returned.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.shutdown_inner().await
    }

    async fn shutdown_inner(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let result = match self.task.take() {
            Some(task) => match tokio::time::timeout(Duration::from_secs(15), task).await {
                Ok(Ok(r)) => r.context("tuxa_server::run returned an error"),
                Ok(Err(join)) => Err(anyhow::anyhow!("the server task panicked: {join}")),
                Err(_) => Err(anyhow::anyhow!(
                    "the server did not stop within 15 s of shutdown"
                )),
            },
            None => Ok(()),
        };
        if !self.data_dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
        result
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if !self.data_dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

fn unique_temp_dir() -> anyhow::Result<PathBuf> {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "tuxa-test-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
