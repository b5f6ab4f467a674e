//! The smoke mode: a whole tuxa server in this process (its own runtime on its own threads),
//! one 1:1 call (S1) for a few seconds. It proves the benchmark runs and packets flow; it
//! asserts nothing about speed.

use std::time::Duration;

use anyhow::Context;
use tuxa_server::{Config, Listeners};

use crate::run::{Params, Report, Target};

pub async fn smoke(window: Duration) -> anyhow::Result<Report> {
    let dir = std::env::temp_dir().join(format!(
        "tuxa-bench-smoke-{}-{}",
        std::process::id(),
        crate::media::now_ns()
    ));
    std::fs::create_dir_all(&dir)?;
    let http = std::net::TcpListener::bind("127.0.0.1:0")?;
    let media = std::net::UdpSocket::bind("127.0.0.1:0")?;
    http.set_nonblocking(true)?;
    media.set_nonblocking(true)?;
    let addr = http.local_addr()?;
    let config = Config::for_tests(dir.clone());
    let key = config.admin_key.clone().context("test admin key")?;
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let (up_tx, up_rx) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::spawn(move || {
                let _ = stop_rx.recv();
                let _ = tx.send(());
            });
            let _ = up_tx.send(());
            tuxa_server::run(
                Listeners {
                    http,
                    media,
                    media_tcp: None,
                },
                config,
                async move {
                    let _ = rx.await;
                },
            )
            .await
        })
    });
    let _ = up_rx.recv();
    let target = Target::Tuxa { addr, key };
    let params = Params {
        scenario: "s1".into(),
        pid: None,
        warmup: Duration::from_millis(200),
        duration: window,
        subscribers: 0,
        cycles: 0,
        run: 0,
        max_rooms: 0,
        cpu_cap: 1.0,
        server_log: None,
        data_dir: None,
    };
    let mut result = Err(anyhow::anyhow!("the server did not come up"));
    for _ in 0..50 {
        // The listener is bound; the server may still be opening its store.
        match crate::api::create_room(addr, "test-admin-key", "probe").await {
            Ok(_) => {
                result = crate::run::scenario(&target, &params).await;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let _ = stop_tx.send(());
    let _ = tokio::task::spawn_blocking(move || server.join()).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}
