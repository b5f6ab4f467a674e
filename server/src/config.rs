//! Configuration: built-in defaults, then a TOML file, then environment
//! variables, then command-line flags (each overrides the one before).
//! clap reads the command line and the environment (`Cli`); the file and the
//! defaults fill in what they left, and the checks apply to every source.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
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
    /// Recordings: their keys and retention (vault.rs, docs/recording.md).
    pub recording: crate::vault::RecordingConfig,
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
            recording: crate::vault::RecordingConfig::for_tests(),
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
    pub log_format: LogFormat,
    pub config: Config,
}

/// The command line: sub-commands, and the server's options. Every option
/// also has a `TUXA_*` environment variable and a key in the TOML file
/// (`--config`); the file's keys are the long names with `_` for `-`.
#[derive(Debug, Parser)]
#[command(
    name = "tuxa",
    about = "tuxa — video consultation server (tư vấn, khám chữa bệnh từ xa)",
    after_help = ENV_ONLY_HELP,
    // The options also serve the sub-commands (`verify-audit --data-dir …`).
    args_conflicts_with_subcommands = false
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub options: Options,
}

/// What the binary does besides serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Check the audit log's hash chain (exit status 1 when it is broken).
    VerifyAudit,
    /// Load a demo province (facilities, staff, queues) and print its sign-ins.
    LoadDemo,
    /// Seal the database's secrets under a new master key.
    RotateKey {
        /// The new master key (made if absent); the current one comes from
        /// --key-file or TUXA_MASTER_KEY as usual.
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
    },
    /// Check every recording file: present, size and SHA-256 as recorded,
    /// every chunk decrypts (exit status 1 naming the first that fails).
    VerifyRecordings,
    /// Delete the recordings past their retention (--recording-retention),
    /// auditing each deletion.
    PurgeRecordings {
        /// List what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a new recording key line (`ID BASE64`) to add to the key file.
    RecordingKey {
        /// The key's id [default: one more than the configured keys' highest, or 1].
        #[arg(long, value_name = "N")]
        id: Option<u32>,
    },
    // Backup and restore (backup.rs; README, "Backup and restore").
    /// Copy the store, while the server runs, into a new folder (checked,
    /// with a manifest authenticated under the master key).
    Backup {
        /// The new (or empty) folder to write the backup into.
        #[arg(value_name = "DEST")]
        dest: PathBuf,
    },
    /// Check a backup (manifest, digest, audit chain, schema, keys) and put
    /// its database into --data-dir, which must not hold one yet.
    Restore {
        /// The backup's folder.
        #[arg(value_name = "SRC")]
        src: PathBuf,
    },
}

/// Variables that have no flag: a secret on a command line is visible to
/// every user of the machine (`ps`).
const ENV_ONLY_HELP: &str = "\
Environment only:
  TUXA_ADMIN_KEY    set the admin API key instead of generating one
  TUXA_MASTER_KEY   the master key itself (base64 or 64 hex digits), instead of a file
  TUXA_KEY_FILE     as --key-file, when TUXA_MASTER_KEY is not set
  TUXA_DEMO         1: as --demo; 0 (or false, no): as --no-demo
  TUXA_RECORDING_KEYS  the recording key lines themselves (`ID BASE64`, one a line), instead of a file

Precedence: command line, then environment, then the --config file, then the default.";

/// The server's options as given on the command line or in the environment;
/// `None` where neither gave one (the file or the default decides).
///
/// No clap default values: a default would hide the TOML file's value.
#[derive(Debug, Clone, Default, Args)]
pub struct Options {
    /// TOML file with the options below (keys: listen, media_listen, …).
    #[arg(long, global = true, env = "TUXA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// HTTPS + WebSocket address [default: 0.0.0.0:8443].
    #[arg(long, global = true, env = "TUXA_LISTEN", value_name = "ADDR", value_parser = listen_addr)]
    pub listen: Option<SocketAddr>,
    /// UDP media address [default: 0.0.0.0:8443].
    #[arg(long, global = true, env = "TUXA_MEDIA_LISTEN", value_name = "ADDR", value_parser = listen_addr)]
    pub media_listen: Option<SocketAddr>,
    /// Media over TCP (ICE-TCP) for networks that block UDP; `off` disables
    /// it (docs/turn.md) [default: 0.0.0.0:8444].
    #[arg(long, global = true, env = "TUXA_MEDIA_TCP_LISTEN", value_name = "ADDR|off", value_parser = tcp_listen)]
    pub media_tcp_listen: Option<TcpListen>,
    /// Addresses put in ICE candidates, comma-separated (behind NAT: the
    /// public address) [default: the machine's primary address and 127.0.0.1].
    #[arg(long, global = true, env = "TUXA_ANNOUNCE", value_name = "IP[,IP…]", value_parser = ip_list)]
    pub announce: Option<IpList>,
    /// Addresses in the TCP candidates [default: as --announce].
    #[arg(long, global = true, env = "TUXA_ANNOUNCE_TCP", value_name = "IP[,IP…]", value_parser = ip_list)]
    pub announce_tcp: Option<IpList>,
    /// Base of join links, https:// [default: https://<announced address>:<port>].
    #[arg(long, global = true, env = "TUXA_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// The SQLite file's folder (made 0700, its files 0600) [default: data].
    #[arg(long, global = true, env = "TUXA_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Master key sealing the secrets in the database; made if absent; keep
    /// it outside the data directory (docs/security.md) [env: TUXA_KEY_FILE,
    /// below TUXA_MASTER_KEY] [default: <config file's folder, or .>/keys/tuxa.key].
    #[arg(long, global = true, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Earlier master keys, comma-separated, after a rotation.
    #[arg(
        long,
        global = true,
        env = "TUXA_OLD_KEY_FILES",
        value_name = "FILE[,FILE…]"
    )]
    pub old_key_file: Option<String>,
    /// Where the self-signed dev certificate is kept (certs/README.md) [default: certs].
    #[arg(long, global = true, env = "TUXA_CERT_DIR", value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// A real certificate chain (PEM); with --key.
    #[arg(long, global = true, env = "TUXA_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The real certificate's private key (PEM); with --cert.
    #[arg(long, global = true, env = "TUXA_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Participants per room, 2–250 [default: 16].
    #[arg(long, global = true, env = "TUXA_MAX_PARTICIPANTS", value_name = "N", value_parser = whole_number)]
    pub max_participants: Option<usize>,
    /// A dropped participant's place is kept this long, at most 600 [default: 30].
    #[arg(long, global = true, env = "TUXA_RECONNECT_GRACE", value_name = "SECS", value_parser = seconds)]
    pub reconnect_grace: Option<u64>,
    /// A room without a doctor or nurse ends (abandoned) after this long,
    /// 1–3600 [default: 600].
    #[arg(long, global = true, env = "TUXA_ABANDON_AFTER", value_name = "SECS", value_parser = seconds)]
    pub abandon_after: Option<u64>,
    /// TURN server(s) for networks without UDP, comma-separated, e.g.
    /// turns:turn.example.vn:443?transport=tcp (docs/turn.md).
    #[arg(long, global = true, env = "TUXA_TURN_URL", value_name = "URL[,URL…]")]
    pub turn_url: Option<String>,
    /// coturn's static-auth-secret; with --turn-url.
    #[arg(
        long,
        global = true,
        env = "TUXA_TURN_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub turn_secret: Option<String>,
    /// Lifetime of TURN credentials, 60 s–7 days [default: 21600].
    #[arg(long, global = true, env = "TUXA_TURN_TTL", value_name = "SECS", value_parser = seconds)]
    pub turn_ttl: Option<u64>,
    /// HTTPS connections open at once [default: 2000].
    #[arg(long, global = true, env = "TUXA_MAX_CONNECTIONS", value_name = "N", value_parser = whole_number)]
    pub max_connections: Option<usize>,
    /// HTTPS connections open at once from one address (IPv6: /64) [default: 64].
    #[arg(long, global = true, env = "TUXA_MAX_CONNECTIONS_PER_IP", value_name = "N", value_parser = whole_number)]
    pub max_connections_per_ip: Option<usize>,
    /// Time for the TLS handshake and each request header, 1–3600 [default: 10].
    #[arg(long, global = true, env = "TUXA_HEADER_TIMEOUT", value_name = "SECS", value_parser = seconds)]
    pub header_timeout: Option<u64>,
    /// Close a connection silent this long, 1–3600 [default: 60].
    #[arg(long, global = true, env = "TUXA_IDLE_TIMEOUT", value_name = "SECS", value_parser = seconds)]
    pub idle_timeout: Option<u64>,
    /// On-call queue places held from one address (IPv6: /64), all queues
    /// together, 1–10000 [default: 5].
    #[arg(long, global = true, env = "TUXA_QUEUE_MAX_PER_ADDRESS", value_name = "N", value_parser = whole_number)]
    pub queue_max_per_address: Option<usize>,
    /// Places per phone number in one queue, 1–10000 [default: 1].
    #[arg(long, global = true, env = "TUXA_QUEUE_MAX_PER_PHONE", value_name = "N", value_parser = whole_number)]
    pub queue_max_per_phone: Option<usize>,
    /// The Department of Health heading the minutes, e.g. "Sở Y tế tỉnh An
    /// Hòa" [default: a blank to fill in].
    #[arg(long, global = true, env = "TUXA_DEPARTMENT_NAME", value_name = "NAME")]
    pub department_name: Option<String>,
    /// Create a demo consultation and print its links at every start
    /// [env: TUXA_DEMO=1] [default: at the first start, at a terminal].
    #[arg(long, global = true)]
    pub demo: bool,
    /// Never create or print a demo consultation (wins over --demo) [env: TUXA_DEMO=0].
    #[arg(long, global = true)]
    pub no_demo: bool,
    /// Log filter, e.g. info,tuxa_sfu=debug [default: info].
    #[arg(long, global = true, env = "TUXA_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// Recording keys, one `ID BASE64` a line (`tuxa recording-key`): outside
    /// the data directory, mode 0600 (docs/recording.md) [default: none,
    /// recordings unavailable].
    #[arg(
        long,
        global = true,
        env = "TUXA_RECORDING_KEY_FILE",
        value_name = "FILE"
    )]
    pub recording_keys: Option<PathBuf>,
    /// How long recordings are kept per consultation kind, in years (y) or
    /// days (d) [default: visit=10y,conference=10y].
    #[arg(long, global = true, env = "TUXA_RECORDING_RETENTION", value_name = "KIND=PERIOD[,…]", value_parser = retention)]
    pub recording_retention: Option<tuxa_records::recording::Retention>,
    /// Log lines as text, or one JSON object a line (for a log shipper)
    /// [default: text].
    #[arg(long, global = true, env = "TUXA_LOG_FORMAT", value_name = "text|json", value_parser = log_format)]
    pub log_format: Option<LogFormat>,
}

/// How log lines are written (`--log-format`). Both go to standard output,
/// which systemd sends to the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (without colours when not at a terminal).
    #[default]
    Text,
    /// One JSON object a line: time, level, target, message and fields.
    Json,
}

fn log_format(s: &str) -> Result<LogFormat, String> {
    match s.trim() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("must be text or json".to_owned()),
    }
}

fn retention(s: &str) -> Result<tuxa_records::recording::Retention, String> {
    tuxa_records::recording::Retention::parse(s).map_err(|e| e.to_string())
}

/// `--media-tcp-listen`: an address, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpListen(pub Option<SocketAddr>);

/// A comma-separated list of IP addresses (`--announce`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpList(pub Vec<IpAddr>);

fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| "must be an address like 0.0.0.0:8443".to_owned())
}

fn tcp_listen(s: &str) -> Result<TcpListen, String> {
    match s.trim() {
        "off" | "" => Ok(TcpListen(None)),
        a => a
            .parse()
            .map(|a| TcpListen(Some(a)))
            .map_err(|_| "must be an address like 0.0.0.0:8444, or off".to_owned()),
    }
}

fn ip_list(s: &str) -> Result<IpList, String> {
    ip_items(s.split(','))
}

fn ip_items<'a>(items: impl Iterator<Item = &'a str>) -> Result<IpList, String> {
    items
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpAddr>()
                .map_err(|_| format!("{s:?} is not an IP address"))
        })
        .collect::<Result<_, _>>()
        .map(IpList)
}

fn whole_number(s: &str) -> Result<usize, String> {
    s.parse().map_err(|_| "must be a whole number".to_owned())
}

fn seconds(s: &str) -> Result<u64, String> {
    s.parse()
        .map_err(|_| "must be a whole number of seconds".to_owned())
}

impl Cli {
    /// Parses `args` (without the program name) with `env` standing in for
    /// the process environment: what `Cli::parse` does, for tests (a test
    /// may not change its process's environment) and for embedding.
    pub fn parse_with_env(
        args: &[String],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Cli, clap::Error> {
        let with_env = Cli::command();
        let env_args: Vec<(String, String, String)> = with_env
            .get_arguments()
            .filter_map(|a| {
                Some((
                    a.get_id().to_string(),
                    a.get_long()?.to_owned(),
                    a.get_env()?.to_str()?.to_owned(),
                ))
            })
            .collect();
        // clap reads the process's variables itself: take them off, then
        // give the caller's values as flags to those the command line left.
        let bare = || Cli::command().mut_args(|a| a.env(None));
        let mut argv: Vec<String> = std::iter::once("tuxa".to_owned())
            .chain(args.iter().cloned())
            .collect();
        let given = bare().try_get_matches_from(&argv)?;
        for (id, long, var) in env_args {
            if given.value_source(&id) != Some(ValueSource::CommandLine)
                && let Some(value) = env(&var)
            {
                argv.push(format!("--{long}={value}"));
            }
        }
        let matches = bare().try_get_matches_from(&argv)?;
        Cli::from_arg_matches(&matches)
    }
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
    recording_keys: Option<PathBuf>,
    recording_retention: Option<String>,
    log_format: Option<String>,
}

/// The file's value for an option given as text, checked as the flag is.
fn from_file<T>(
    value: Option<String>,
    key: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> anyhow::Result<Option<T>> {
    value
        .map(|v| parse(&v).map_err(|e| anyhow!("{key} in the configuration file: {v:?} {e}")))
        .transpose()
}

impl Settings {
    /// Resolves settings from flags (`args` without the program name) and
    /// the environment (`env` returns a variable's value).
    pub fn resolve(
        args: &[String],
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Settings> {
        let cli = Cli::parse_with_env(args, &env).map_err(|e| anyhow!("{}", e.render()))?;
        Settings::from_options(cli.options, env)
    }

    /// Completes the command line's and environment's options with the
    /// TOML file and the defaults, and checks them. `env` is asked only for
    /// the variables without a flag (`ENV_ONLY_HELP`).
    pub fn from_options(
        o: Options,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Settings> {
        let file: FileConfig = match &o.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("reading the configuration file {}", path.display())
                })?;
                toml::from_str(&text)
                    .with_context(|| format!("in the configuration file {}", path.display()))?
            }
            None => FileConfig::default(),
        };

        let default_listen = SocketAddr::from(([0, 0, 0, 0], 8443));
        let listen = match o.listen {
            Some(a) => a,
            None => from_file(file.listen, "listen", listen_addr)?.unwrap_or(default_listen),
        };
        let media_listen = match o.media_listen {
            Some(a) => a,
            None => {
                from_file(file.media_listen, "media_listen", listen_addr)?.unwrap_or(default_listen)
            }
        };
        let media_tcp_listen = match o.media_tcp_listen {
            Some(TcpListen(a)) => a,
            None => match from_file(file.media_tcp_listen, "media_tcp_listen", tcp_listen)? {
                Some(TcpListen(a)) => a,
                None => Some(SocketAddr::from(([0, 0, 0, 0], 8444))),
            },
        };
        let ips = |given: Option<IpList>, key: &str, from: Option<Vec<String>>| match given {
            Some(IpList(list)) => anyhow::Ok(list),
            None => Ok(
                ip_items(from.unwrap_or_default().iter().map(String::as_str))
                    .map_err(|e| anyhow!("{key} in the configuration file: {e}"))?
                    .0,
            ),
        };
        let announce = ips(o.announce, "announce", file.announce)?;
        let announce_tcp = ips(o.announce_tcp, "announce_tcp", file.announce_tcp)?;
        let public_url = o
            .public_url
            .or(file.public_url)
            .map(|u| u.trim_end_matches('/').to_owned());
        if let Some(u) = &public_url
            && !u.starts_with("https://")
        {
            bail!(
                "--public-url must start with https:// (browsers allow camera access only on secure pages)"
            );
        }
        let data_dir = o
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("data"));
        let cert = o.cert.or(file.cert);
        let key = o.key.or(file.key);
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            (None, None) => TlsSource::SelfSigned {
                dir: o
                    .cert_dir
                    .or(file.cert_dir)
                    .unwrap_or_else(|| PathBuf::from("certs")),
            },
            _ => bail!("--cert and --key go together"),
        };
        let max_participants = o.max_participants.or(file.max_participants).unwrap_or(16);
        // 16 suits a consultation; a teaching session or a hospital-wide
        // briefing may need a few hundred receivers (the SFU's benchmark S3
        // runs one publisher and 199 subscribers in one room).
        if !(2..=MAX_PARTICIPANTS_LIMIT).contains(&max_participants) {
            bail!("--max-participants must be between 2 and {MAX_PARTICIPANTS_LIMIT}");
        }
        let demo = if o.no_demo {
            Demo::Never
        } else if o.demo {
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
        let at_least_one = |flag: &str, n: usize| {
            if n == 0 {
                bail!("--{flag} must be at least 1");
            }
            anyhow::Ok(n)
        };
        let max_connections = at_least_one(
            "max-connections",
            o.max_connections
                .or(file.max_connections)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS),
        )?;
        let max_connections_per_ip = at_least_one(
            "max-connections-per-ip",
            o.max_connections_per_ip
                .or(file.max_connections_per_ip)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_IP),
        )?;
        let secs = |flag: &str, n: u64| {
            if !(1..=3600).contains(&n) {
                bail!("--{flag} must be between 1 and 3600 seconds");
            }
            anyhow::Ok(Duration::from_secs(n))
        };
        let abandon_after = secs(
            "abandon-after",
            o.abandon_after
                .or(file.abandon_after)
                .unwrap_or(tuxa_signaling::DEFAULT_ABANDON_AFTER.as_secs()),
        )?;
        let header_timeout = secs(
            "header-timeout",
            o.header_timeout
                .or(file.header_timeout)
                .unwrap_or(DEFAULT_HEADER_TIMEOUT.as_secs()),
        )?;
        let idle_timeout = secs(
            "idle-timeout",
            o.idle_timeout
                .or(file.idle_timeout)
                .unwrap_or(DEFAULT_IDLE_TIMEOUT.as_secs()),
        )?;
        let reconnect_grace = o
            .reconnect_grace
            .or(file.reconnect_grace)
            .unwrap_or(tuxa_signaling::DEFAULT_RECONNECT_GRACE.as_secs());
        if reconnect_grace > 600 {
            bail!("--reconnect-grace must be at most 600 seconds");
        }
        let turn_urls: Vec<String> = match o.turn_url {
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
        let turn_secret = o.turn_secret.or(file.turn_secret).filter(|s| !s.is_empty());
        let turn_ttl = o
            .turn_ttl
            .or(file.turn_ttl)
            .unwrap_or(crate::turn::DEFAULT_TTL.as_secs());
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
        let places = |flag: &str, n: usize| {
            if !(1..=10_000).contains(&n) {
                bail!("--{flag} must be between 1 and 10000");
            }
            anyhow::Ok(n)
        };
        let queue_max_per_address = places(
            "queue-max-per-address",
            o.queue_max_per_address
                .or(file.queue_max_per_address)
                .unwrap_or(DEFAULT_QUEUE_MAX_PER_ADDRESS),
        )?;
        let queue_max_per_phone = places(
            "queue-max-per-phone",
            o.queue_max_per_phone
                .or(file.queue_max_per_phone)
                .unwrap_or(DEFAULT_QUEUE_MAX_PER_PHONE),
        )?;
        let department_name = o
            .department_name
            .or(file.department_name)
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty());
        if department_name
            .as_ref()
            .is_some_and(|n| n.chars().count() > 200 || n.chars().any(char::is_control))
        {
            bail!("--department-name must be one line of at most 200 characters");
        }
        let log = o.log.or(file.log).unwrap_or_else(|| "info".into());
        let log_format = match o.log_format {
            Some(f) => f,
            None => from_file(file.log_format, "log_format", log_format)?.unwrap_or_default(),
        };
        // The key is kept apart from the data directory (a copy or backup of
        // it must not carry the key): next to the configuration by default.
        let master_key = match (o.key_file, env("TUXA_MASTER_KEY").filter(|k| !k.is_empty())) {
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
                        o.config
                            .as_deref()
                            .and_then(|c| c.parent().map(PathBuf::from))
                            .unwrap_or_default()
                            .join("keys")
                            .join("tuxa.key")
                    }),
            ),
        };
        let old_key_files: Vec<PathBuf> = match o.old_key_file {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect(),
            None => file.old_key_files.unwrap_or_default(),
        };
        // Recordings (vault.rs): the key file (flag or its variable), else
        // the keys' text from the environment, else the file's; none is
        // allowed (recordings are then unavailable, calls are not).
        let recording = crate::vault::RecordingConfig {
            keys: match (
                o.recording_keys,
                env(crate::vault::KEYS_ENV).filter(|k| !k.trim().is_empty()),
            ) {
                (Some(path), _) => crate::vault::KeySource::File(path),
                (None, Some(text)) => crate::vault::KeySource::Text(text),
                (None, None) => file
                    .recording_keys
                    .map_or(crate::vault::KeySource::None, crate::vault::KeySource::File),
            },
            retention: match o.recording_retention {
                Some(r) => r,
                None => from_file(file.recording_retention, "recording_retention", retention)?
                    .unwrap_or_default(),
            },
        };
        Ok(Settings {
            listen,
            media_listen,
            media_tcp_listen,
            log,
            log_format,
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
                recording,
            },
        })
    }
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
    fn log_format_from_flag_variable_or_file() {
        let s = Settings::resolve(&args(&[]), |_| None).unwrap();
        assert_eq!(s.log_format, LogFormat::Text);
        let s = Settings::resolve(&args(&["--log-format", "json"]), |_| None).unwrap();
        assert_eq!(s.log_format, LogFormat::Json);
        let s = Settings::resolve(&args(&[]), |k| {
            (k == "TUXA_LOG_FORMAT").then(|| "json".to_owned())
        })
        .unwrap();
        assert_eq!(s.log_format, LogFormat::Json);
        assert!(Settings::resolve(&args(&["--log-format", "xml"]), |_| None).is_err());
        let dir = std::env::temp_dir().join(format!("tuxa-cfg-logfmt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tuxa.toml");
        std::fs::write(&path, "log_format = \"json\"\n").unwrap();
        let s = Settings::resolve(&args(&["--config", path.to_str().unwrap()]), |_| None).unwrap();
        assert_eq!(s.log_format, LogFormat::Json);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flag_over_variable_over_file_over_default() {
        let dir = std::env::temp_dir().join(format!("tuxa-cfg-prec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tuxa.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9100\"\nmedia_listen = \"127.0.0.1:9101\"\n\
             max_participants = 20\nidle_timeout = 40\nlog = \"debug\"\n",
        )
        .unwrap();
        let config = path.to_str().unwrap().to_owned();
        // The file path itself may come from the environment.
        let env = |k: &str| match k {
            "TUXA_CONFIG" => Some(config.clone()),
            "TUXA_LISTEN" => Some("127.0.0.1:9200".to_owned()),
            "TUXA_MEDIA_LISTEN" => Some("127.0.0.1:9201".to_owned()),
            "TUXA_MAX_PARTICIPANTS" => Some("30".to_owned()),
            _ => None,
        };
        let s = Settings::resolve(&args(&["--listen", "127.0.0.1:9300"]), env).unwrap();
        assert_eq!(s.listen.port(), 9300, "the flag wins over all");
        assert_eq!(
            s.media_listen.port(),
            9201,
            "the variable wins over the file"
        );
        assert_eq!(s.config.max_participants, 30);
        assert_eq!(
            s.config.idle_timeout,
            Duration::from_secs(40),
            "the file over the default"
        );
        assert_eq!(s.log, "debug");
        assert_eq!(
            s.config.header_timeout, DEFAULT_HEADER_TIMEOUT,
            "the default"
        );
        // `--opt=value` is the same as `--opt value`, and options may follow
        // a sub-command.
        let cli = Cli::parse_with_env(
            &args(&[
                "rotate-key",
                "--new-key-file=/k/new.key",
                "--data-dir",
                "/srv/d",
            ]),
            |_| None,
        )
        .unwrap();
        assert!(
            matches!(&cli.command, Some(Command::RotateKey { new_key_file }) if new_key_file == std::path::Path::new("/k/new.key"))
        );
        let s = Settings::from_options(cli.options, |_| None).unwrap();
        assert_eq!(s.config.data_dir, PathBuf::from("/srv/d"));
        let cli = Cli::parse_with_env(&args(&["--data-dir", "/srv/e", "verify-audit"]), |k| {
            (k == "TUXA_DATA_DIR").then(|| "/srv/env".to_owned())
        })
        .unwrap();
        assert!(matches!(cli.command, Some(Command::VerifyAudit)));
        assert_eq!(cli.options.data_dir, Some(PathBuf::from("/srv/e")));
        assert!(Cli::parse_with_env(&args(&["rotate-key"]), |_| None).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_bad_value_names_its_option_whatever_its_source() {
        let err = |a: &[&str], env: &dyn Fn(&str) -> Option<String>| {
            format!("{:#}", Settings::resolve(&args(a), env).unwrap_err())
        };
        let e = err(&["--max-connections", "many"], &|_| None);
        assert!(
            e.contains("--max-connections") && e.contains("whole number"),
            "{e}"
        );
        let e = err(&[], &|k| (k == "TUXA_LISTEN").then(|| "nowhere".to_owned()));
        assert!(e.contains("--listen") && e.contains("0.0.0.0:8443"), "{e}");
        let e = err(&[], &|k| (k == "TUXA_IDLE_TIMEOUT").then(|| "0".to_owned()));
        assert!(
            e.contains("--idle-timeout must be between 1 and 3600"),
            "{e}"
        );
        let e = err(&["--announce", "10.0.0.1,not-an-ip"], &|_| None);
        assert!(e.contains("\"not-an-ip\" is not an IP address"), "{e}");
        let e = err(&["--frobnicate"], &|_| None);
        assert!(e.contains("--frobnicate"), "{e}");
        let dir = std::env::temp_dir().join(format!("tuxa-cfg-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tuxa.toml");
        std::fs::write(&path, "media_tcp_listen = \"8444\"\n").unwrap();
        let e = err(&["--config", path.to_str().unwrap()], &|_| None);
        assert!(
            e.contains("media_tcp_listen") && e.contains("or off"),
            "{e}"
        );
        std::fs::write(&path, "announce = [\"10.0.0.1\", \"x\"]\n").unwrap();
        let e = err(&["--config", path.to_str().unwrap()], &|_| None);
        assert!(e.contains("announce") && e.contains("\"x\" is not"), "{e}");
        // A bad value in the file does not matter when a flag overrides it.
        assert!(
            Settings::resolve(
                &args(&["--config", path.to_str().unwrap(), "--announce", "10.0.0.2"]),
                |_| None
            )
            .is_ok()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn help_lists_every_option_and_its_variable() {
        let help = Cli::command().render_long_help().to_string();
        for arg in Cli::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            assert!(
                help.contains(&format!("--{long}")),
                "--{long} missing from --help"
            );
            if let Some(var) = arg.get_env() {
                assert!(
                    help.contains(var.to_str().unwrap()),
                    "{var:?} missing from --help"
                );
            }
        }
        for var in [
            "TUXA_ADMIN_KEY",
            "TUXA_MASTER_KEY",
            "TUXA_KEY_FILE",
            "TUXA_DEMO",
        ] {
            assert!(help.contains(var), "{var} missing from --help");
        }
        assert!(
            !help.contains("TUXA_TURN_SECRET="),
            "a secret's value is never shown"
        );
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

    #[test]
    fn recording_keys_and_retention_come_from_flag_variable_or_file() {
        use crate::vault::KeySource;
        use tuxa_records::recording::{Period, Retention};
        let s = Settings::resolve(&args(&[]), |_| None).unwrap();
        assert!(matches!(s.config.recording.keys, KeySource::None));
        assert_eq!(s.config.recording.retention, Retention::default());
        let env = |k: &str| match k {
            "TUXA_RECORDING_KEYS" => Some("1 x".to_owned()),
            "TUXA_RECORDING_RETENTION" => Some("visit=2y".to_owned()),
            _ => None,
        };
        let s = Settings::resolve(&args(&[]), env).unwrap();
        assert!(matches!(&s.config.recording.keys, KeySource::Text(t) if t == "1 x"));
        assert_eq!(s.config.recording.retention.visit, Period::Years(2));
        // The file flag (or its variable) wins over the text.
        let s = Settings::resolve(&args(&["--recording-keys", "/etc/tuxa/r.keys"]), env).unwrap();
        assert!(
            matches!(&s.config.recording.keys, KeySource::File(p) if p == std::path::Path::new("/etc/tuxa/r.keys"))
        );
        let s = Settings::resolve(&args(&[]), |k| {
            (k == "TUXA_RECORDING_KEY_FILE").then(|| "/run/r.keys".to_owned())
        })
        .unwrap();
        assert!(
            matches!(&s.config.recording.keys, KeySource::File(p) if p == std::path::Path::new("/run/r.keys"))
        );
        let e =
            Settings::resolve(&args(&["--recording-retention", "visit=10"]), |_| None).unwrap_err();
        assert!(e.to_string().contains("--recording-retention"), "{e}");
        let dir = std::env::temp_dir().join(format!("tuxa-cfg-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tuxa.toml");
        std::fs::write(
            &path,
            "recording_keys = \"/etc/tuxa/r.keys\"\nrecording_retention = \"conference=30d\"\n",
        )
        .unwrap();
        let s = Settings::resolve(&args(&["--config", path.to_str().unwrap()]), |_| None).unwrap();
        assert!(matches!(&s.config.recording.keys, KeySource::File(_)));
        assert_eq!(s.config.recording.retention.conference, Period::Days(30));
        assert_eq!(s.config.recording.retention.visit, Period::Years(10));
        std::fs::write(&path, "recording_retention = \"x\"\n").unwrap();
        let e =
            Settings::resolve(&args(&["--config", path.to_str().unwrap()]), |_| None).unwrap_err();
        assert!(format!("{e:#}").contains("recording_retention"), "{e:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
