//! The real network stack, in Linux network namespaces: a client namespace and a server
//! namespace joined through a "router" namespace (veth pairs, `tbf` at 2 Mbit/s each way, a
//! 3G-ish uplink). The router stops forwarding for 10 s (total loss, silently: no ICMP, no
//! reset), then forwards again. The client (a str0m peer, in its own process inside the client
//! namespace) notices its media stalled, rejoins with its link (backing off while the link is
//! down), takes its place back within the grace window, and media flows again both ways.
//!
//! `tc netem` is absent on these kernels and `tc` classifiers too (see
//! /work/shared/notes/testing-on-these-machines.md): the outage is the router's `ip_forward`
//! switched off. Needs root and `ip` (iproute2). Without them the test fails and says so;
//! `TUXA_SKIP_NETNS=1` skips it with a loud notice instead.
//!
//! Each namespace's side is this same test binary, run again under `ip netns exec` with
//! `TUXA_NETNS_ROLE=server|client`; the roles talk to the orchestrator over stdin/stdout lines.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-tests cargo test --release -p tuxa-tests --test netns -- --nocapture`

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use tuxa_protocol::{ConsultationKind, MediaKind, ParticipantId, Role, RoomId};
use tuxa_tests::{Flavor, Peer, PeerOptions, TestServer};

const TEST_NAME: &str = "an_outage_of_ten_seconds_with_total_loss_is_survived";
const OUTAGE: Duration = Duration::from_secs(10);
/// Generous: the client backs off up to 4 s between attempts, and a rejoin is a TLS handshake,
/// an SDP exchange, ICE, DTLS and a keyframe over a 2 Mbit/s link.
const BACK_WITHIN: Duration = Duration::from_secs(20);
const SERVER_IP: [u8; 4] = [10, 231, 2, 2];
const CLIENT_IP: [u8; 4] = [10, 231, 1, 2];

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_ten_seconds_with_total_loss_is_survived() -> anyhow::Result<()> {
    match std::env::var("TUXA_NETNS_ROLE").as_deref() {
        Ok("server") => return server_role().await,
        Ok("client") => return client_role().await,
        _ => {}
    }
    if std::env::var("TUXA_SKIP_NETNS").as_deref() == Ok("1") {
        eprintln!(
            "\n!!!!!!!! SKIPPED: {TEST_NAME} (TUXA_SKIP_NETNS=1): the outage test in network \
             namespaces did NOT run !!!!!!!!\n"
        );
        return Ok(());
    }
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .context("running id -u")?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        bail!(
            "this test needs root (network namespaces); run it as root, or set TUXA_SKIP_NETNS=1 \
             to skip it loudly"
        );
    }
    if Command::new("ip").arg("-V").output().is_err() {
        bail!("this test needs `ip` (iproute2); install it, or set TUXA_SKIP_NETNS=1");
    }
    let _net = Net::create()?;
    let exe = std::env::current_exe()?;

    // The server (and the doctor, next to it) in the server namespace.
    let mut server = Proc::spawn(&_net.srv, &exe, "server", &[])?;
    let ready = server.wait_line("READY", Duration::from_secs(60))?;
    let field = |name: &str| -> anyhow::Result<String> {
        ready
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_owned))
            .with_context(|| format!("no {name} in {ready:?}"))
    };
    let env = [
        ("TUXA_NETNS_HTTP", field("http")?),
        ("TUXA_NETNS_MEDIA", field("media")?),
        ("TUXA_NETNS_ROOM", field("room")?),
        ("TUXA_NETNS_TOKEN", field("token")?),
        ("TUXA_NETNS_DOCTOR", field("doctor")?),
    ];
    let mut client = Proc::spawn(&_net.cli, &exe, "client", &env)?;
    let up = client.wait_line("MEDIA_UP", Duration::from_secs(60))?;
    println!("netns: client media up ({up})");

    std::thread::sleep(Duration::from_secs(2));
    _net.forwarding(false)?;
    let cut_ms = unix_ms();
    println!("netns: link cut (total loss) for {} s", OUTAGE.as_secs());
    std::thread::sleep(OUTAGE);
    _net.forwarding(true)?;
    let restore_ms = unix_ms();
    println!("netns: link back");

    let back = client.wait_line("MEDIA_BACK", OUTAGE + BACK_WITHIN + Duration::from_secs(10))?;
    let num = |line: &str, name: &str| -> anyhow::Result<u128> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .with_context(|| format!("no {name} in {line:?}"))?
            .parse()
            .with_context(|| format!("{name} in {line:?}"))
    };
    let back_ms = num(&back, "at")?;
    let stalled_ms = num(&back, "stalled_at")?;
    let rejoined_ms = num(&back, "rejoined_at")?;
    let attempts = num(&back, "attempts")?;
    let resumed = back.contains("resumed=true");
    // And the doctor gets the client's media again.
    server.say("CHECK")?;
    let check = server.wait_line("DOCTOR", Duration::from_secs(30))?;

    let s = |ms: u128, from: u128| (ms as f64 - from as f64) / 1000.0;
    println!(
        "netns figures: outage {:.1} s; client saw its media stall {:.1} s after the cut; \
         rejoined {:.1} s after the link came back (attempt {attempts}); media from the doctor \
         again {:.1} s after the link came back; place kept: {resumed}; doctor: {check}",
        s(restore_ms, cut_ms),
        s(stalled_ms, cut_ms),
        s(rejoined_ms, restore_ms),
        s(back_ms, restore_ms),
    );
    assert!(
        back_ms >= restore_ms,
        "media cannot come back through a cut link: {back}"
    );
    assert!(
        back_ms - restore_ms <= BACK_WITHIN.as_millis(),
        "media came back {:.1} s after the link (bound {BACK_WITHIN:?})",
        s(back_ms, restore_ms)
    );
    assert!(
        resumed,
        "the client should have taken its place back: {back}"
    );
    assert!(check.contains("DOCTOR_OK"), "{check}");
    client.finish();
    server.finish();
    Ok(())
}

// ---------------------------------------------------------------------------
// The namespaces.

/// client (10.231.1.2) — router (10.231.1.1 | 10.231.2.1) — server (10.231.2.2); removed on drop.
struct Net {
    cli: String,
    rtr: String,
    srv: String,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn netns_exec(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["netns", "exec", ns];
    all.extend_from_slice(args);
    ip(&all)
}

impl Net {
    fn create() -> anyhow::Result<Net> {
        let id = std::process::id();
        let net = Net {
            cli: format!("tuxa-cli-{id}"),
            rtr: format!("tuxa-rtr-{id}"),
            srv: format!("tuxa-srv-{id}"),
        };
        for ns in [&net.cli, &net.rtr, &net.srv] {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        let (cli, rtr, srv) = (net.cli.as_str(), net.rtr.as_str(), net.srv.as_str());
        ip(&[
            "-n", rtr, "link", "add", "to-cli", "type", "veth", "peer", "name", "eth0", "netns",
            cli,
        ])?;
        ip(&[
            "-n", rtr, "link", "add", "to-srv", "type", "veth", "peer", "name", "eth0", "netns",
            srv,
        ])?;
        ip(&["-n", rtr, "addr", "add", "10.231.1.1/24", "dev", "to-cli"])?;
        ip(&["-n", rtr, "addr", "add", "10.231.2.1/24", "dev", "to-srv"])?;
        ip(&["-n", cli, "addr", "add", "10.231.1.2/24", "dev", "eth0"])?;
        ip(&["-n", srv, "addr", "add", "10.231.2.2/24", "dev", "eth0"])?;
        for (ns, dev) in [
            (rtr, "to-cli"),
            (rtr, "to-srv"),
            (cli, "eth0"),
            (srv, "eth0"),
        ] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        ip(&["-n", cli, "route", "add", "default", "via", "10.231.1.1"])?;
        ip(&["-n", srv, "route", "add", "default", "via", "10.231.2.1"])?;
        // A 3G-ish link: 2 Mbit/s each way, up to 300 ms of queue.
        for dev in ["to-cli", "to-srv"] {
            let out = Command::new("tc")
                .args([
                    "-n", rtr, "qdisc", "add", "dev", dev, "root", "tbf", "rate", "2mbit", "burst",
                    "32kbit", "latency", "300ms",
                ])
                .output()
                .context("running tc")?;
            if !out.status.success() {
                bail!("tc tbf: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
        }
        net.forwarding(true)?;
        Ok(net)
    }

    /// The router forwards, or drops everything silently (total loss; no ICMP, no reset).
    fn forwarding(&self, on: bool) -> anyhow::Result<()> {
        let v = if on { "1" } else { "0" };
        netns_exec(
            &self.rtr,
            &["sysctl", "-qw", &format!("net.ipv4.ip_forward={v}")],
        )
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.cli, &self.rtr, &self.srv] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

// ---------------------------------------------------------------------------
// The roles' processes.

struct Proc {
    name: &'static str,
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(
        ns: &str,
        exe: &std::path::Path,
        name: &'static str,
        env: &[(&str, String)],
    ) -> anyhow::Result<Proc> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(exe)
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env("TUXA_NETNS_ROLE", name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting the {name} role"))?;
        let out = child.stdout.take().context("role stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                println!("  [{name}] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Proc { name, child, lines })
    }

    fn wait_line(&mut self, prefix: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return Ok(line),
                Ok(_) => {}
                Err(_) => bail!(
                    "the {} role did not say {prefix} within {timeout:?}",
                    self.name
                ),
            }
        }
    }

    fn say(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.child.stdin.as_mut().context("role stdin")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    fn finish(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads the orchestrator's lines (stdin) on a thread; `None` once it closed.
fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn say(line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}

// ---------------------------------------------------------------------------
// Server role: tuxa on 10.231.2.2 and a doctor (webrtc-rs) next to it.

async fn server_role() -> anyhow::Result<()> {
    let server = TestServer::start_on(SERVER_IP.into(), |_| {}).await?;
    let api = server.api();
    let room = api
        .create_consultation(ConsultationKind::Visit, "Khám từ xa — bản vùng cao")
        .await?;
    let doctor = Peer::join_new(
        Flavor::WebrtcRs,
        &server,
        &room,
        Role::Doctor,
        "BS. Trạm huyện",
        PeerOptions {
            local_ip: SERVER_IP.into(),
            ..PeerOptions::default()
        },
    )
    .await?;
    let token = api.mint_link(&room, Role::Nurse, "YT. Bản Phìn").await?;
    say(&format!(
        "READY http={} media={} room={room} token={token} doctor={}",
        server.http_addr,
        server.media_addr,
        doctor.id()
    ));
    let mut lines = stdin_lines();
    while let Some(line) = lines.recv().await {
        if line == "CHECK" {
            // The nurse's id is the one they had: the place was kept.
            let nurse = doctor.events.messages().into_iter().find_map(|m| match m {
                tuxa_protocol::ServerMsg::ParticipantJoined { participant } => Some(participant.id),
                _ => None,
            });
            let verdict = match nurse {
                Some(id) => match doctor
                    .wait_more_media(id, 20, Duration::from_secs(20))
                    .await
                {
                    Ok(()) => format!("DOCTOR_OK receives the nurse ({id}) again"),
                    Err(e) => format!("DOCTOR_FAIL {e:#}"),
                },
                None => "DOCTOR_FAIL never saw the nurse".to_owned(),
            };
            say(&verdict.replace('\n', " | "));
        }
    }
    doctor.close().await;
    server.shutdown().await
}

// ---------------------------------------------------------------------------
// Client role: a nurse's str0m peer that rejoins by itself, as the web client does.

async fn client_role() -> anyhow::Result<()> {
    let var = |k: &str| std::env::var(k).with_context(|| format!("{k} not set"));
    let server = TestServer::remote(
        var("TUXA_NETNS_HTTP")?.parse()?,
        var("TUXA_NETNS_MEDIA")?.parse()?,
    );
    let room = RoomId::parse(&var("TUXA_NETNS_ROOM")?).map_err(|e| anyhow::anyhow!("{e}"))?;
    let token = var("TUXA_NETNS_TOKEN")?;
    let doctor = ParticipantId(var("TUXA_NETNS_DOCTOR")?.parse()?);
    let join = || async {
        tokio::time::timeout(
            Duration::from_secs(5),
            Peer::join(
                Flavor::Str0m,
                &server,
                &room,
                &token,
                "nurse (str0m)",
                PeerOptions {
                    local_ip: CLIENT_IP.into(),
                    ..PeerOptions::default()
                },
            ),
        )
        .await
        .map_err(|_| anyhow::anyhow!("join timed out"))?
    };
    let mut peer = join().await?;
    let first_id = peer.id();
    for kind in [MediaKind::Audio, MediaKind::Video] {
        peer.wait_frames(doctor, kind, 30, Duration::from_secs(30))
            .await?;
    }
    say(&format!("MEDIA_UP at={} id={first_id}", unix_ms()));

    let frames =
        |p: &Peer| p.rx.intact(doctor, MediaKind::Audio) + p.rx.intact(doctor, MediaKind::Video);
    let mut last = frames(&peer);
    let mut last_growth = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(90);
    // Stalled: no media for 3 s. Then rejoin, backing off 0.5 s → 4 s between attempts.
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n = frames(&peer);
        if n > last {
            last = n;
            last_growth = Instant::now();
        }
        if last_growth.elapsed() < Duration::from_secs(3) {
            continue;
        }
        let stalled_at = unix_ms();
        say(&format!("STALLED at={stalled_at}"));
        peer.close().await;
        let mut attempts = 0u32;
        let mut delay = Duration::from_millis(500);
        peer = loop {
            attempts += 1;
            match join().await {
                Ok(p) => break p,
                Err(e) => {
                    say(&format!(
                        "ATTEMPT {attempts} failed: {}",
                        format!("{e:#}").replace('\n', " | ")
                    ));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(4));
                }
            }
            if Instant::now() > deadline {
                bail!("no rejoin before the deadline");
            }
        };
        let rejoined_at = unix_ms();
        let resumed = peer.joined.resumed && peer.id() == first_id;
        // Media from the doctor again: both kinds.
        for kind in [MediaKind::Audio, MediaKind::Video] {
            peer.wait_frames(doctor, kind, 20, Duration::from_secs(30))
                .await?;
        }
        say(&format!(
            "MEDIA_BACK at={} stalled_at={stalled_at} rejoined_at={rejoined_at} attempts={attempts} resumed={resumed} id={}",
            unix_ms(),
            peer.id()
        ));
        // Stay until the orchestrator is done (its stdin closes).
        let mut lines = stdin_lines();
        while lines.recv().await.is_some() {}
        peer.close().await;
        return Ok(());
    }
    bail!("media never stalled (the outage did not reach the client?)")
}
