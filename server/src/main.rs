//! The `tuxa` binary: resolve settings, bind sockets, run until Ctrl-C.

use anyhow::Context;
use tuxa_server::{Listeners, Settings, config::USAGE};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("verify-audit") {
        let settings = Settings::resolve(&args[1..], |k| std::env::var(k).ok())?;
        let (report, intact) = tuxa_server::verify_audit(&settings.config.data_dir)?;
        println!("{report}");
        std::process::exit(if intact { 0 } else { 1 });
    }
    if args.first().map(String::as_str) == Some("load-demo") {
        let settings = Settings::resolve(&args[1..], |k| std::env::var(k).ok())?;
        print!(
            "{}",
            tuxa_server::demo::load(&settings.config.data_dir, &settings.config.keys)?
        );
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("rotate-key") {
        // `--new-key-file` belongs to this command only.
        let mut rest = Vec::new();
        let mut new_key_file = None;
        let mut it = args[1..].iter();
        while let Some(a) = it.next() {
            if let Some(v) = a.strip_prefix("--new-key-file=") {
                new_key_file = Some(v.to_owned());
            } else if a == "--new-key-file" {
                new_key_file = Some(it.next().context("--new-key-file needs a value")?.clone());
            } else {
                rest.push(a.clone());
            }
        }
        let new_key_file = new_key_file.context("rotate-key needs --new-key-file FILE")?;
        let settings = Settings::resolve(&rest, |k| std::env::var(k).ok())?;
        println!(
            "{}",
            tuxa_server::secrets::rotate(
                &settings.config.data_dir,
                &settings.config.keys,
                std::path::Path::new(&new_key_file),
            )?
        );
        return Ok(());
    }
    let settings = Settings::resolve(&args, |k| std::env::var(k).ok())?;

    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&settings.log)
                .context("--log is not a valid filter")?,
        )
        .init();

    let http = std::net::TcpListener::bind(settings.listen)
        .with_context(|| format!("binding HTTPS to {}", settings.listen))?;
    let media = std::net::UdpSocket::bind(settings.media_listen)
        .with_context(|| format!("binding media UDP to {}", settings.media_listen))?;
    let media_tcp = settings
        .media_tcp_listen
        .map(|a| {
            std::net::TcpListener::bind(a)
                .with_context(|| format!("binding media TCP (ICE-TCP) to {a}"))
        })
        .transpose()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Ctrl-C at a terminal, SIGTERM from systemd: both stop cleanly.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => println!("\nStopping (Ctrl-C)…"),
                _ = term.recv() => println!("Stopping (SIGTERM)…"),
            }
        };
        tuxa_server::run(
            Listeners {
                http,
                media,
                media_tcp,
            },
            settings.config,
            shutdown,
        )
        .await
    })
}
