//! `tuxa-bench`: the load generator, the floor forwarder and the report writer.
//!
//! ```text
//! tuxa-bench run --target tuxa|janus|floor --addr ADDR [--key KEY] --scenario s1|s2|s2r|s3|s4|s6 [--data-dir DIR]
//!                [--pid PID] [--run N] [--duration S] [--warmup S] [--subscribers N]
//!                [--cycles N] [--rooms N] [--cpu-cap CORES] [--server-log FILE]
//!                [--out FILE.jsonl]
//! tuxa-bench floor-server --listen ADDR
//! tuxa-bench report FILE.jsonl          # markdown tables and goals on stdout
//! tuxa-bench smoke                      # a few seconds of S1 against an in-process tuxa
//! ```

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use tuxa_bench::run::{Params, Target};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BENCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match args.first().map(String::as_str) {
        Some("floor-server") => {
            let listen = arg(&args, "--listen").unwrap_or_else(|| "127.0.0.1:0".into());
            let socket = std::net::UdpSocket::bind(&listen)?;
            println!("floor listening on {}", socket.local_addr()?);
            tuxa_bench::floor::serve(socket)?;
            Ok(())
        }
        Some("report") => {
            let file = args.get(1).context("report FILE")?;
            print!(
                "{}",
                tuxa_bench::report::markdown(&std::fs::read_to_string(file)?)?
            );
            Ok(())
        }
        Some("smoke") => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let rep = rt.block_on(tuxa_bench::smoke::smoke(Duration::from_secs(3)))?;
            println!("{}", serde_json::to_string_pretty(&rep)?);
            Ok(())
        }
        Some("run") => {
            let t = arg(&args, "--target").context("--target")?;
            let addr = arg(&args, "--addr").context("--addr")?;
            let target = match t.as_str() {
                "tuxa" => Target::Tuxa {
                    addr: addr.parse()?,
                    key: arg(&args, "--key")
                        .or_else(|| std::env::var("TUXA_ADMIN_KEY").ok())
                        .context("--key or TUXA_ADMIN_KEY")?,
                },
                "janus" => Target::Janus { url: addr },
                "floor" => Target::Floor {
                    addr: addr.parse()?,
                },
                _ => bail!("--target tuxa|janus|floor"),
            };
            let secs = |n: &str, d: f64| {
                Duration::from_secs_f64(arg(&args, n).and_then(|x| x.parse().ok()).unwrap_or(d))
            };
            let p = Params {
                scenario: arg(&args, "--scenario").unwrap_or_else(|| "s1".into()),
                pid: arg(&args, "--pid").and_then(|x| x.parse().ok()),
                warmup: secs("--warmup", 2.0),
                duration: secs("--duration", 10.0),
                subscribers: arg(&args, "--subscribers")
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(99),
                cycles: arg(&args, "--cycles")
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(1000),
                run: arg(&args, "--run")
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(1),
                max_rooms: arg(&args, "--rooms")
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(300),
                cpu_cap: arg(&args, "--cpu-cap")
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(1.0),
                server_log: arg(&args, "--server-log"),
                data_dir: arg(&args, "--data-dir"),
            };
            // The generator: one thread drives every peer.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let rep = rt.block_on(tuxa_bench::run::scenario(&target, &p));
            let line = match &rep {
                Ok(r) => serde_json::to_string(r)?,
                Err(e) => serde_json::json!({
                    "target": target.name(), "scenario": p.scenario, "run": p.run,
                    "failed": format!("{e:#}")})
                .to_string(),
            };
            println!("{line}");
            if let Some(out) = arg(&args, "--out") {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(out)?;
                writeln!(f, "{line}")?;
            }
            rep.map(|_| ())
        }
        _ => {
            eprintln!("usage: tuxa-bench run|floor-server|report|smoke (see the source header)");
            std::process::exit(2);
        }
    }
}
