//! The `tuxa` binary: resolve settings, bind sockets, run until Ctrl-C.

use anyhow::Context;
use clap::Parser;
use tuxa_server::config::{Cli, Command, LogFormat};
use tuxa_server::{Listeners, Settings};

fn main() -> anyhow::Result<()> {
    // clap reads the command line and the TUXA_* variables; `--help` and a
    // bad value end here with clap's message and status.
    let cli = Cli::parse();
    let settings = Settings::from_options(cli.options, |k| std::env::var(k).ok())?;
    match cli.command {
        None => {}
        Some(Command::VerifyAudit) => {
            let (report, intact) = tuxa_server::verify_audit(&settings.config.data_dir)?;
            println!("{report}");
            std::process::exit(if intact { 0 } else { 1 });
        }
        Some(Command::LoadDemo) => {
            print!(
                "{}",
                tuxa_server::demo::load(&settings.config.data_dir, &settings.config.keys)?
            );
            return Ok(());
        }
        Some(Command::VerifyRecordings) => {
            let (report, intact) = tuxa_server::vault::verify_recordings(
                &settings.config.data_dir,
                &settings.config.recording,
            )?;
            println!("{report}");
            std::process::exit(if intact { 0 } else { 1 });
        }
        Some(Command::PurgeRecordings { dry_run }) => {
            println!(
                "{}",
                tuxa_server::vault::purge_recordings(
                    &settings.config.data_dir,
                    &settings.config.recording,
                    tuxa_records::UnixTime(
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)?
                            .as_secs() as i64,
                    ),
                    dry_run,
                )?
            );
            return Ok(());
        }
        Some(Command::RecordingKey { id }) => {
            println!(
                "{}",
                tuxa_server::vault::new_key_line(
                    &settings.config.recording,
                    &settings.config.data_dir,
                    id
                )
            );
            return Ok(());
        }
        Some(Command::RotateKey { new_key_file }) => {
            println!(
                "{}",
                tuxa_server::secrets::rotate(
                    &settings.config.data_dir,
                    &settings.config.keys,
                    &new_key_file,
                )?
            );
            return Ok(());
        }
        // Backup and restore (backup.rs).
        Some(Command::Backup { dest }) => {
            let report = tuxa_server::backup::backup(
                &settings.config.data_dir,
                &settings.config.keys,
                &dest,
            )?;
            println!("{report}");
            return Ok(());
        }
        Some(Command::Restore { src }) => {
            let report = tuxa_server::backup::restore(
                &src,
                &settings.config.data_dir,
                &settings.config.keys,
            )?;
            println!("{report}");
            return Ok(());
        }
    }

    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log)
        .context("--log is not a valid filter")?;
    match settings.log_format {
        // Under systemd the lines go to the journal, which keeps its own
        // time and does not read colour codes.
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(false)
            .init(),
    }

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
