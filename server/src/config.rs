//! Configuration: built-in defaults, then a TOML file, then environment
//! variables, then command-line flags (each overrides the one before).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

/// Where the HTTPS certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// A self-signed certificate made with rcgen on first start and kept in
    /// this folder (reused later). For trying tuxa out and for a LAN.
    SelfSigned { dir: PathBuf },
    /// A real certificate chain and key, PEM.
    Files { cert: PathBuf, key: PathBuf },
    /// A fresh self-signed certificate held in memory only (tests).
    InMemory,
}

/// The largest room `--max-participants` accepts.
pub const MAX_PARTICIPANTS_LIMIT: usize = 250;

/// HTTPS connections open at once, in total (WebSockets included).
pub const DEFAULT_MAX_CONNECTIONS: usize = 2000;
/// HTTPS connections open at once from one address (an IPv6 /64). A commune
/// station or a hospital's NAT shares one address; a browser holds about two
/// (pages and API, and its WebSocket).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 64;
/// The TLS handshake, and each request's header, must arrive within this.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTPS connection on which nothing moves for this long is closed
/// (not a WebSocket: it has its own keepalive).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Live queue tickets from one address (docs/protocol.md, "On-call
/// queues"): a commune station's or a carrier's shared address may have a
/// few patients waiting at once; a script gets five places, not the line.
pub const DEFAULT_QUEUE_MAX_PER_ADDRESS: usize = 5;
/// Live queue tickets per phone number and queue.
pub const DEFAULT_QUEUE_MAX_PER_PHONE: usize = 1;

/// When the demo consultation is made and its links printed. The links are
/// join tokens: printed, they end up in whatever keeps the output (a
/// service's journal), so never without someone asking for them or a person
/// reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demo {
    /// On the first start, the one that creates the data directory's
    /// database, when the output is a terminal (someone trying tuxa out).
    FirstStart,
    /// At every start (`--demo`).
    Always,
    /// Never (`--no-demo`).
    Never,
}

/// What `server::run` needs besides its sockets.
#[derive(Debug, Clone)]
pub struct Config {
    /// Holds the SQLite file.
    pub data_dir: PathBuf,
    pub tls: TlsSource,
    /// Addresses announced as ICE candidates (with the media port). Empty:
    /// the media socket's own address, or, when it is bound to all
    /// interfaces, this machine's primary address and 127.0.0.1.
    pub announce: Vec<IpAddr>,
    /// Addresses announced in the passive TCP candidates (with the media
    /// TCP port). Empty: the same as `announce` (resolved the same way). For
    /// a TCP listener on another address than UDP media (e.g. port 443 of a
    /// second address).
    pub announce_tcp: Vec<IpAddr>,
    /// The base of join links, e.g. `https://tuxa.soyte.example.vn`. Empty:
    /// `https://<first announced address>:<HTTPS port>`.
    pub public_url: Option<String>,
    /// Sets the admin API key instead of generating one (automation, tests).
    pub admin_key: Option<String>,
    /// Whether to create a demo consultation at start and print its links.
    pub demo: Demo,
    pub max_participants: usize,
    /// How long a dropped participant keeps their place for a reconnect.
    pub reconnect_grace: std::time::Duration,
    /// How long a room may go without a doctor or nurse, once one was in
    /// it, before it ends by itself (`abandoned`).
    pub abandon_after: Duration,
    /// A TURN server to hand out credentials for (networks without UDP).
    pub turn: Option<crate::turn::TurnConfig>,
    /// HTTPS connections open at once; over it, new ones are closed at once.
    pub max_connections: usize,
    /// HTTPS connections open at once from one address (IPv6: one /64).
    pub max_connections_per_ip: usize,
    /// Time for the TLS handshake, and for each request's header.
    pub header_timeout: Duration,
    /// A connection with no byte read or written for this long is closed.
    pub idle_timeout: Duration,
    /// The master key that seals the secrets in the database, and earlier
    /// ones after a rotation (secrets.rs, docs/security.md).
    pub keys: crate::secrets::KeysConfig,
    /// On-call queues: live tickets from one client address (IPv6: /64).
    pub queue_max_per_address: usize,
    /// On-call queues: live tickets with one phone number in one queue.
    pub queue_max_per_phone: usize,
    /// The Department of Health (Sở Y tế) the facilities answer to, as the
    /// minutes' header names it; `None`: a blank to write on.
    pub department_name: Option<String>,
}

impl Config {
    /// A configuration for tests: in-memory certificate, loopback
    /// candidates, the admin key `test-admin-key`, no demo.
    pub fn for_tests(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            tls: TlsSource::InMemory,
            announce: vec![IpAddr::from([127, 0, 0, 1])],
            announce_tcp: Vec::new(),
            public_url: None,
            admin_key: Some("test-admin-key".to_owned()),
            demo: Demo::Never,
            max_participants: 16,
            reconnect_grace: tuxa_signaling::DEFAULT_RECONNECT_GRACE,
            abandon_after: tuxa_signaling::DEFAULT_ABANDON_AFTER,
            turn: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            keys: crate::secrets::KeysConfig::for_tests(),
            queue_max_per_address: DEFAULT_QUEUE_MAX_PER_ADDRESS,
            queue_max_per_phone: DEFAULT_QUEUE_MAX_PER_PHONE,
            department_name: None,
        }
    }
}

/// The listening addresses and the configuration, as the binary resolves them.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub media_listen: SocketAddr,
    /// The ICE-TCP listener (media over TCP); `None`: off.
    pub media_tcp_listen: Option<SocketAddr>,
    pub log: String,
    pub config: Config,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    media_listen: Option<String>,
    media_tcp_listen: Option<String>,
    announce: Option<Vec<String>>,
    announce_tcp: Option<Vec<String>>,
    public_url: Option<String>,
    data_dir: Option<PathBuf>,
    cert_dir: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    max_participants: Option<usize>,
    log: Option<String>,
    demo: Option<bool>,
    reconnect_grace: Option<u64>,
    abandon_after: Option<u64>,
    turn_url: Option<Vec<String>>,
    turn_secret: Option<String>,
    turn_ttl: Option<u64>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    header_timeout: Option<u64>,
    idle_timeout: Option<u64>,
    queue_max_per_address: Option<usize>,
    queue_max_per_phone: Option<usize>,
    department_name: Option<String>,
    key_file: Option<PathBuf>,
    old_key_files: Option<Vec<PathBuf>>,
}

pub const USAGE: &str = "\
tuxa — video consultation server (tư vấn, khám chữa bệnh từ xa)

USAGE: tuxa [OPTIONS]
       tuxa verify-audit [--data-dir DIR]   check the audit log's hash chain
       tuxa load-demo [--data-dir DIR]      load a demo province (facilities, staff, queues)
       tuxa rotate-key --new-key-file FILE  seal the database's secrets under a new master key

OPTIONS (each also as an environment variable, and as a key in the TOML file):
  --config FILE           TOML file with the options below            TUXA_CONFIG
  --listen ADDR           HTTPS + WebSocket address [0.0.0.0:8443]    TUXA_LISTEN
  --media-listen ADDR     UDP media address [0.0.0.0:8443]            TUXA_MEDIA_LISTEN
  --media-tcp-listen ADDR media over TCP (ICE-TCP) for networks that  TUXA_MEDIA_TCP_LISTEN
                          block UDP; `off` to disable [0.0.0.0:8444] (docs/turn.md)
  --announce IP[,IP…]     addresses put in ICE candidates             TUXA_ANNOUNCE
                          (behind NAT: the public address) [auto]
  --announce-tcp IP[,IP…] addresses in TCP candidates [--announce]    TUXA_ANNOUNCE_TCP
  --public-url URL        base of join links [https://<announce>:<port>]  TUXA_PUBLIC_URL
  --data-dir DIR          the SQLite file (made 0700/0600) [data]     TUXA_DATA_DIR
  --key-file FILE         master key sealing the secrets in the       TUXA_KEY_FILE
                          database; made if absent, keep it outside the data directory
                          [<config file's folder or .>/keys/tuxa.key] (docs/security.md)
  --old-key-file FILE[,FILE…]  earlier master keys, after a rotation  TUXA_OLD_KEY_FILES
  --cert-dir DIR          where the self-signed dev cert is kept [certs]  TUXA_CERT_DIR
  --cert FILE --key FILE  a real certificate chain and key (PEM)      TUXA_CERT, TUXA_KEY
  --max-participants N    per room, at most 250 [16]                  TUXA_MAX_PARTICIPANTS
  --reconnect-grace SECS  a dropped participant's place is kept [30]  TUXA_RECONNECT_GRACE
  --abandon-after SECS    a room without a doctor or nurse ends      TUXA_ABANDON_AFTER
                          (abandoned) after this long, 1–3600 [600]
  --turn-url URL[,URL…]   TURN server(s) for networks without UDP,    TUXA_TURN_URL
                          e.g. turns:turn.example.vn:443?transport=tcp (docs/turn.md)
  --turn-secret SECRET    coturn's static-auth-secret                 TUXA_TURN_SECRET
  --turn-ttl SECS         lifetime of TURN credentials [21600]        TUXA_TURN_TTL
  --max-connections N     HTTPS connections open at once [2000]       TUXA_MAX_CONNECTIONS
  --max-connections-per-ip N  …from one address (IPv6: /64) [64]      TUXA_MAX_CONNECTIONS_PER_IP
  --header-timeout SECS   TLS handshake and request header [10]       TUXA_HEADER_TIMEOUT
  --idle-timeout SECS     close a connection silent this long [60]    TUXA_IDLE_TIMEOUT
  --queue-max-per-address N  on-call queue places held from one       TUXA_QUEUE_MAX_PER_ADDRESS
                          address (IPv6: /64), all queues [5]
  --queue-max-per-phone N places per phone number in one queue [1]    TUXA_QUEUE_MAX_PER_PHONE
  --department-name NAME  the Department of Health heading the        TUXA_DEPARTMENT_NAME
                          minutes, e.g. Sở Y tế tỉnh An Hòa [a blank to fill in]
  --demo                  create a demo consultation and print its    TUXA_DEMO=1
                          links at every start [first start, at a terminal]
  --no-demo               never create or print a demo consultation   TUXA_DEMO=0
  --log FILTER            log filter [info]                           TUXA_LOG
  TUXA_ADMIN_KEY          set the admin API key instead of generating one
  TUXA_MASTER_KEY         the master key itself (base64 or 64 hex digits), instead of a file
  -h, --help              this text
";

impl Settings {
    /// Resolves settings from flags (`args` without the program name) and
    /// the environment (`env` returns a variable's value).
    pub fn resolve(
        args: &[String],
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Settings> {
        let flags = parse_flags(args)?;
        let flag = |name: &str| {
            flags
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let pick = |name: &str, var: &str| flag(name).or_else(|| env(var));

        let file: FileConfig = match pick("config", "TUXA_CONFIG") {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading the configuration file {path}"))?;
                toml::from_str(&text)
                    .with_context(|| format!("in the configuration file {path}"))?
            }
            None => FileConfig::default(),
        };

        let listen: SocketAddr = pick("listen", "TUXA_LISTEN")
            .or(file.listen)
            .unwrap_or_else(|| "0.0.0.0:8443".into())
            .parse()
            .context("--listen must be an address like 0.0.0.0:8443")?;
        let media_listen: SocketAddr = pick("media-listen", "TUXA_MEDIA_LISTEN")
            .or(file.media_listen)
            .unwrap_or_else(|| "0.0.0.0:8443".into())
            .parse()
            .context("--media-listen must be an address like 0.0.0.0:8443")?;
        let media_tcp_listen = match pick("media-tcp-listen", "TUXA_MEDIA_TCP_LISTEN")
            .or(file.media_tcp_listen)
            .unwrap_or_else(|| "0.0.0.0:8444".into())
            .trim()
        {
            "off" | "" => None,
            a => Some(
                a.parse::<SocketAddr>()
                    .context("--media-tcp-listen must be an address like 0.0.0.0:8444, or off")?,
            ),
        };
        let ip_list = |flag: &str, var: &str, from_file: Option<Vec<String>>| {
            let list: Vec<String> = match pick(flag, var) {
                Some(list) => list.split(',').map(|s| s.trim().to_owned()).collect(),
                None => from_file.unwrap_or_default(),
            };
            list.iter()
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<IpAddr>()
                        .with_context(|| format!("--{flag}: {s:?} is not an IP address"))
                })
                .collect::<anyhow::Result<Vec<_>>>()
        };
        let announce = ip_list("announce", "TUXA_ANNOUNCE", file.announce)?;
        let announce_tcp = ip_list("announce-tcp", "TUXA_ANNOUNCE_TCP", file.announce_tcp)?;
        let public_url = pick("public-url", "TUXA_PUBLIC_URL")
            .or(file.public_url)
            .map(|u| u.trim_end_matches('/').to_owned());
        if let Some(u) = &public_url
            && !u.starts_with("https://")
        {
            bail!(
                "--public-url must start with https:// (browsers allow camera access only on secure pages)"
            );
        }
        let data_dir = pick("data-dir", "TUXA_DATA_DIR")
            .map(PathBuf::from)
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("data"));
        let cert = pick("cert", "TUXA_CERT").map(PathBuf::from).or(file.cert);
        let key = pick("key", "TUXA_KEY").map(PathBuf::from).or(file.key);
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            (None, None) => TlsSource::SelfSigned {
                dir: pick("cert-dir", "TUXA_CERT_DIR")
                    .map(PathBuf::from)
                    .or(file.cert_dir)
                    .unwrap_or_else(|| PathBuf::from("certs")),
            },
            _ => bail!("--cert and --key go together"),
        };
        let max_participants = match pick("max-participants", "TUXA_MAX_PARTICIPANTS") {
            Some(n) => n
                .parse()
                .context("--max-participants must be a whole number")?,
            None => file.max_participants.unwrap_or(16),
        };
        // 16 suits a consultation; a teaching session or a hospital-wide
        // briefing may need a few hundred receivers (the SFU's benchmark S3
        // runs one publisher and 199 subscribers in one room).
        if !(2..=MAX_PARTICIPANTS_LIMIT).contains(&max_participants) {
            bail!("--max-participants must be between 2 and {MAX_PARTICIPANTS_LIMIT}");
        }
        let demo = if flags.iter().any(|(k, _)| k == "no-demo") {
            Demo::Never
        } else if flags.iter().any(|(k, _)| k == "demo") {
            Demo::Always
        } else if let Some(v) = env("TUXA_DEMO").filter(|v| !v.is_empty()) {
            if matches!(v.as_str(), "0" | "false" | "no") {
                Demo::Never
            } else {
                Demo::Always
            }
        } else {
            match file.demo {
                Some(true) => Demo::Always,
                Some(false) => Demo::Never,
                None => Demo::FirstStart,
            }
        };
        let count = |flag: &str, var: &str, from_file: Option<usize>, default: usize| {
            let n = match pick(flag, var) {
                Some(n) => n
                    .parse()
                    .with_context(|| format!("--{flag} must be a whole number"))?,
                None => from_file.unwrap_or(default),
            };
            if n == 0 {
                bail!("--{flag} must be at least 1");
            }
            anyhow::Ok(n)
        };
        let max_connections = count(
            "max-connections",
            "TUXA_MAX_CONNECTIONS",
            file.max_connections,
            DEFAULT_MAX_CONNECTIONS,
        )?;
        let max_connections_per_ip = count(
            "max-connections-per-ip",
            "TUXA_MAX_CONNECTIONS_PER_IP",
            file.max_connections_per_ip,
            DEFAULT_MAX_CONNECTIONS_PER_IP,
        )?;
        let secs = |flag: &str, var: &str, from_file: Option<u64>, default: Duration| {
            let n: u64 = match pick(flag, var) {
                Some(n) => n
                    .parse()
                    .with_context(|| format!("--{flag} must be a whole number of seconds"))?,
                None => from_file.unwrap_or(default.as_secs()),
            };
            if !(1..=3600).contains(&n) {
                bail!("--{flag} must be between 1 and 3600 seconds");
            }
            anyhow::Ok(Duration::from_secs(n))
        };
        let abandon_after = secs(
            "abandon-after",
            "TUXA_ABANDON_AFTER",
            file.abandon_after,
            tuxa_signaling::DEFAULT_ABANDON_AFTER,
        )?;
        let header_timeout = secs(
            "header-timeout",
            "TUXA_HEADER_TIMEOUT",
            file.header_timeout,
            DEFAULT_HEADER_TIMEOUT,
        )?;
        let idle_timeout = secs(
            "idle-timeout",
            "TUXA_IDLE_TIMEOUT",
            file.idle_timeout,
            DEFAULT_IDLE_TIMEOUT,
        )?;
        let reconnect_grace = match pick("reconnect-grace", "TUXA_RECONNECT_GRACE") {
            Some(n) => n
                .parse()
                .context("--reconnect-grace must be a whole number of seconds")?,
            None => file
                .reconnect_grace
                .unwrap_or(tuxa_signaling::DEFAULT_RECONNECT_GRACE.as_secs()),
        };
        if reconnect_grace > 600 {
            bail!("--reconnect-grace must be at most 600 seconds");
        }
        let turn_urls: Vec<String> = match pick("turn-url", "TUXA_TURN_URL") {
            Some(list) => list.split(',').map(|s| s.trim().to_owned()).collect(),
            None => file.turn_url.unwrap_or_default(),
        }
        .into_iter()
        .filter(|u| !u.is_empty())
        .collect();
        if let Some(bad) = turn_urls
            .iter()
            .find(|u| !(u.starts_with("turn:") || u.starts_with("turns:")))
        {
            bail!("--turn-url: {bad:?} must start with turn: or turns:");
        }
        let turn_secret = pick("turn-secret", "TUXA_TURN_SECRET")
            .or(file.turn_secret)
            .filter(|s| !s.is_empty());
        let turn_ttl = match pick("turn-ttl", "TUXA_TURN_TTL") {
            Some(n) => n
                .parse()
                .context("--turn-ttl must be a whole number of seconds")?,
            None => file.turn_ttl.unwrap_or(crate::turn::DEFAULT_TTL.as_secs()),
        };
        if !(60..=7 * 86400).contains(&turn_ttl) {
            bail!("--turn-ttl must be between 60 seconds and 7 days");
        }
        let turn = match (turn_urls.is_empty(), turn_secret) {
            (true, None) => None,
            (false, Some(secret)) => Some(crate::turn::TurnConfig {
                urls: turn_urls,
                secret,
                ttl: std::time::Duration::from_secs(turn_ttl),
            }),
            _ => bail!("--turn-url and --turn-secret go together"),
        };
        let count = |flag: &str, var: &str, from_file: Option<usize>, default: usize| {
            let n: usize = match pick(flag, var) {
                Some(n) => n
                    .parse()
                    .with_context(|| format!("--{flag} must be a whole number"))?,
                None => from_file.unwrap_or(default),
            };
            if !(1..=10_000).contains(&n) {
                bail!("--{flag} must be between 1 and 10000");
            }
            anyhow::Ok(n)
        };
        let queue_max_per_address = count(
            "queue-max-per-address",
            "TUXA_QUEUE_MAX_PER_ADDRESS",
            file.queue_max_per_address,
            DEFAULT_QUEUE_MAX_PER_ADDRESS,
        )?;
        let queue_max_per_phone = count(
            "queue-max-per-phone",
            "TUXA_QUEUE_MAX_PER_PHONE",
            file.queue_max_per_phone,
            DEFAULT_QUEUE_MAX_PER_PHONE,
        )?;
        let department_name = pick("department-name", "TUXA_DEPARTMENT_NAME")
            .or(file.department_name)
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty());
        if department_name
            .as_ref()
            .is_some_and(|n| n.chars().count() > 200 || n.chars().any(char::is_control))
        {
            bail!("--department-name must be one line of at most 200 characters");
        }
        let log = pick("log", "TUXA_LOG")
            .or(file.log)
            .unwrap_or_else(|| "info".into());
        // The key is kept apart from the data directory (a copy or backup of
        // it must not carry the key): next to the configuration by default.
        let key_file = flag("key-file").map(PathBuf::from);
        let master_key = match (key_file, env("TUXA_MASTER_KEY").filter(|k| !k.is_empty())) {
            (Some(path), _) => crate::secrets::MasterKeySource::File(path),
            (None, Some(text)) => crate::secrets::MasterKeySource::Inline(std::sync::Arc::new(
                crate::secrets::MasterKey::parse_text(&text)
                    .context("TUXA_MASTER_KEY must be 32 bytes as base64 or 64 hex digits")?,
            )),
            (None, None) => crate::secrets::MasterKeySource::File(
                env("TUXA_KEY_FILE")
                    .map(PathBuf::from)
                    .or(file.key_file)
                    .unwrap_or_else(|| {
                        pick("config", "TUXA_CONFIG")
                            .and_then(|c| PathBuf::from(c).parent().map(PathBuf::from))
                            .unwrap_or_default()
                            .join("keys")
                            .join("tuxa.key")
                    }),
            ),
        };
        let old_key_files: Vec<PathBuf> = match pick("old-key-file", "TUXA_OLD_KEY_FILES") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect(),
            None => file.old_key_files.unwrap_or_default(),
        };
        Ok(Settings {
            listen,
            media_listen,
            media_tcp_listen,
            log,
            config: Config {
                data_dir,
                tls,
                announce,
                announce_tcp,
                public_url,
                admin_key: env("TUXA_ADMIN_KEY").filter(|k| !k.is_empty()),
                demo,
                max_participants,
                reconnect_grace: std::time::Duration::from_secs(reconnect_grace),
                abandon_after,
                turn,
                max_connections,
                max_connections_per_ip,
                header_timeout,
                idle_timeout,
                keys: crate::secrets::KeysConfig {
                    current: master_key,
                    old_files: old_key_files,
                },
                queue_max_per_address,
                queue_max_per_phone,
                department_name,
            },
        })
    }
}

fn parse_flags(args: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    const WITH_VALUE: &[&str] = &[
        "config",
        "listen",
        "media-listen",
        "media-tcp-listen",
        "announce",
        "announce-tcp",
        "public-url",
        "data-dir",
        "cert-dir",
        "cert",
        "key",
        "max-participants",
        "abandon-after",
        "log",
        "reconnect-grace",
        "turn-url",
        "turn-secret",
        "turn-ttl",
        "max-connections",
        "max-connections-per-ip",
        "header-timeout",
        "idle-timeout",
        "key-file",
        "old-key-file",
        "queue-max-per-address",
        "queue-max-per-phone",
        "department-name",
    ];
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let Some(name) = arg.strip_prefix("--") else {
            bail!("unexpected argument {arg:?} (see --help)");
        };
        let (name, inline) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (name, None),
        };
        if name == "no-demo" || name == "demo" {
            out.push((name.to_owned(), String::new()));
        } else if WITH_VALUE.contains(&name) {
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .with_context(|| format!("--{name} needs a value"))?
                    .clone(),
            };
            out.push((name.to_owned(), value));
        } else {
            bail!("unknown option --{name} (see --help)");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_override_env_override_defaults() {
        let s = Settings::resolve(&args(&[]), |_| None).unwrap();
        assert_eq!(s.listen.port(), 8443);
        assert_eq!(s.media_tcp_listen.map(|a| a.port()), Some(8444));
        assert_eq!(s.config.demo, Demo::FirstStart);
        assert_eq!(s.config.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(
            s.config.max_connections_per_ip,
            DEFAULT_MAX_CONNECTIONS_PER_IP
        );
        assert_eq!(s.config.header_timeout, DEFAULT_HEADER_TIMEOUT);
        assert_eq!(s.config.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        let env = |k: &str| match k {
            "TUXA_LISTEN" => Some("127.0.0.1:9000".to_owned()),
            "TUXA_ANNOUNCE" => Some("10.0.0.5, 127.0.0.1".to_owned()),
            _ => None,
        };
        let s =
            Settings::resolve(&args(&["--listen", "127.0.0.1:9001", "--no-demo"]), env).unwrap();
        assert_eq!(s.listen.port(), 9001);
        assert_eq!(s.config.announce.len(), 2);
        assert_eq!(s.config.demo, Demo::Never);
        let s = Settings::resolve(&args(&["--demo"]), |_| None).unwrap();
        assert_eq!(s.config.demo, Demo::Always);
        let env = |k: &str| match k {
            "TUXA_DEMO" => Some("1".to_owned()),
            "TUXA_MAX_CONNECTIONS_PER_IP" => Some("8".to_owned()),
            "TUXA_IDLE_TIMEOUT" => Some("30".to_owned()),
            _ => None,
        };
        let s = Settings::resolve(&args(&["--header-timeout", "5"]), env).unwrap();
        assert_eq!(s.config.demo, Demo::Always);
        assert_eq!(s.config.max_connections_per_ip, 8);
        assert_eq!(s.config.idle_timeout, Duration::from_secs(30));
        assert_eq!(s.config.header_timeout, Duration::from_secs(5));
        let s = Settings::resolve(
            &args(&["--media-tcp-listen", "off", "--announce-tcp", "192.0.2.1"]),
            |_| None,
        )
        .unwrap();
        assert_eq!(s.media_tcp_listen, None);
        assert_eq!(s.config.announce_tcp, vec![IpAddr::from([192, 0, 2, 1])]);
    }

    #[test]
    fn bad_values_are_explained() {
        for bad in [
            &["--listen", "nowhere"][..],
            &["--announce", "not-an-ip"],
            &["--announce-tcp", "not-an-ip"],
            &["--media-tcp-listen", "8444"],
            &["--cert", "a.pem"],
            &["--public-url", "http://x"],
            &["--frobnicate"],
            &["--listen"],
            &["--max-participants", "1"],
            &["--turn-url", "turns:t.example.vn:443"],
            &["--turn-secret", "s"],
            &["--turn-url", "https://t.example.vn", "--turn-secret", "s"],
            &["--reconnect-grace", "soon"],
            &["--max-connections", "0"],
            &["--max-connections-per-ip", "many"],
            &["--header-timeout", "0"],
            &["--idle-timeout", "86400"],
        ] {
            assert!(Settings::resolve(&args(bad), |_| None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn toml_file_is_read() {
        let dir = std::env::temp_dir().join(format!("tuxa-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tuxa.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9443\"\nannounce = [\"192.168.1.10\"]\n",
        )
        .unwrap();
        let s = Settings::resolve(&args(&["--config", path.to_str().unwrap()]), |_| None).unwrap();
        assert_eq!(s.listen.port(), 9443);
        assert_eq!(
            s.config.announce,
            vec!["192.168.1.10".parse::<IpAddr>().unwrap()]
        );
        std::fs::write(
            &path,
            "turn_url = [\"turns:turn.example.vn:443?transport=tcp\"]\nturn_secret = \"x\"\nreconnect_grace = 20\n",
        )
        .unwrap();
        let s = Settings::resolve(&args(&["--config", path.to_str().unwrap()]), |_| None).unwrap();
        let turn = s.config.turn.expect("TURN from the file");
        assert_eq!(turn.urls, ["turns:turn.example.vn:443?transport=tcp"]);
        assert_eq!(turn.ttl, crate::turn::DEFAULT_TTL);
        assert_eq!(s.config.reconnect_grace.as_secs(), 20);
        std::fs::write(&path, "lisen = 1\n").unwrap();
        assert!(Settings::resolve(&args(&["--config", path.to_str().unwrap()]), |_| None).is_err());
    }

    #[test]
    fn the_master_key_is_found_outside_the_data_directory() {
        use crate::secrets::MasterKeySource;
        let file = |s: &Settings| match &s.config.keys.current {
            MasterKeySource::File(p) => p.clone(),
            MasterKeySource::Inline(_) => panic!("a file was expected"),
        };
        // Default: keys/ beside the configuration file, or in the working
        // directory; never in the data directory.
        let s = Settings::resolve(&args(&[]), |_| None).unwrap();
        assert_eq!(file(&s), PathBuf::from("keys/tuxa.key"));
        let key = "ab".repeat(32);
        let env = |k: &str| match k {
            "TUXA_MASTER_KEY" => Some(key.clone()),
            "TUXA_OLD_KEY_FILES" => Some("/k/1.key, /k/2.key".to_owned()),
            _ => None,
        };
        let s = Settings::resolve(&args(&[]), env).unwrap();
        assert!(matches!(&s.config.keys.current, MasterKeySource::Inline(k) if k[0] == 0xab));
        assert_eq!(
            s.config.keys.old_files,
            [PathBuf::from("/k/1.key"), PathBuf::from("/k/2.key")]
        );
        // A flag wins over the environment.
        let s = Settings::resolve(&args(&["--key-file", "/srv/k.key"]), env).unwrap();
        assert_eq!(file(&s), PathBuf::from("/srv/k.key"));
        let s = Settings::resolve(&args(&[]), |k| {
            (k == "TUXA_KEY_FILE").then(|| "/run/k.key".to_owned())
        })
        .unwrap();
        assert_eq!(file(&s), PathBuf::from("/run/k.key"));
        assert!(
            Settings::resolve(&args(&[]), |k| (k == "TUXA_MASTER_KEY")
                .then(|| "short".to_owned()))
            .is_err()
        );
        let dir = std::env::temp_dir().join(format!("tuxa-cfg-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tuxa.toml");
        std::fs::write(&path, "data_dir = \"/var/lib/tuxa\"\n").unwrap();
        let s = Settings::resolve(&args(&["--config", path.to_str().unwrap()]), |_| None).unwrap();
        assert_eq!(file(&s), dir.join("keys").join("tuxa.key"));
        std::fs::write(&path, "key_file = \"/etc/tuxa/k.key\"\n").unwrap();
        let s = Settings::resolve(&args(&["--config", path.to_str().unwrap()]), |_| None).unwrap();
        assert_eq!(file(&s), PathBuf::from("/etc/tuxa/k.key"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
