//! The command line: flags parsed into a raw struct that mirrors them ([`AttackArgs`]),
//! then validated into the [`RunConfig`] the engine uses. Help text comes from here.
use std::{net::IpAddr, path::PathBuf, time::Duration};

use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use crate::{
    engine::{Load, ProtoChoice, Resolve, RunConfig},
    rate::{self, Rate, Schedule, ThinkTime, UserGroup},
    targets::{self, Target, TargetFormat},
    thresholds::Threshold,
    tls::TlsOptions,
};

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Exact-rate HTTP/1.1 and HTTP/2 load that says why every failed request failed",
    after_help = "Exit codes: 0 success, 1 error (bad input, unreachable host, unwritable file), \
                  2 bad usage, 3 a --fail-under/--max-latency threshold was violated."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send load at a URL or the targets in a file, and report.
    Attack(Box<AttackArgs>),
    /// Rebuild the report from one or more --events files (runs split across hosts merge).
    Report(ReportArgs),
    /// Packet-level tools: raw SYN probes (`syn`) and RST/FIN injection (`inject`).
    Packets(crate::packets::args::PacketsArgs),
}

/// Output format of the final report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct AttackArgs {
    /// The URL to load (or use --targets).
    pub url: Option<String>,
    /// A targets file in vegeta's formats (see --format).
    #[arg(long, value_name = "FILE")]
    pub targets: Option<PathBuf>,
    /// Format of --targets: http (METHOD URL, headers, @body) or json (one object per line).
    #[arg(long, default_value = "http")]
    pub format: String,
    /// Request method for URL.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Header added to every request ("Name: value"), repeatable.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Request body for URL; @FILE reads it from a file.
    #[arg(long)]
    pub body: Option<String>,

    /// Open model: requests per second (1250, 100/1s, 6000/1m).
    #[arg(long)]
    pub rate: Option<String>,
    /// How long to run (30s, 33m); required for --rate, optional for users.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Open model with ramps: DURATION:RATE stages, linear between (30s:100,2m:1250,30s:0).
    #[arg(long, conflicts_with = "rate")]
    pub stages: Option<String>,
    /// Closed model: this many virtual users, each sending, waiting, thinking.
    #[arg(long, conflicts_with_all = ["rate", "stages"])]
    pub users: Option<u32>,
    /// Think time between a user's requests: 4s..10s (uniform) or 2s.
    #[arg(long, default_value = "0s")]
    pub think: String,
    /// A user group NAME:users=N[:think=T][:url=URL][:ramp=D], repeatable.
    #[arg(long = "group", conflicts_with_all = ["rate", "stages", "users"])]
    pub groups: Vec<String>,
    /// A file of user groups, one per line in --group syntax.
    #[arg(long, conflicts_with_all = ["rate", "stages", "users"])]
    pub scenario: Option<PathBuf>,

    /// HTTP/1.1 only (ALPN offers http/1.1).
    #[arg(long, group = "proto")]
    pub http1: bool,
    /// HTTP/2 over TLS only (ALPN offers h2).
    #[arg(long, group = "proto")]
    pub http2: bool,
    /// HTTP/2 over cleartext with prior knowledge (http:// URLs).
    #[arg(long, group = "proto")]
    pub h2c: bool,
    /// Close HTTP/1.1 connections after each request.
    #[arg(long)]
    pub no_keepalive: bool,
    /// Connections per origin [default: 1 with --http2/--h2c; users for a closed model
    /// over HTTP/1.1; otherwise 64 (also when ALPN picks h2: the protocol is not known
    /// before the first handshake)].
    #[arg(long)]
    pub connections: Option<usize>,
    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, default_value_t = 100)]
    pub max_streams_per_conn: u32,
    /// Deadline for a request from its send to the end of its body.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Deadline for the TCP handshake.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// A request that waits longer than this for a free connection or stream is not sent
    /// and counts as client_overload.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub max_lag: Duration,
    /// Local address to connect from, repeatable (round robin).
    #[arg(long = "local-addr")]
    pub local_addrs: Vec<IpAddr>,

    /// Connect HOST:PORT to ADDR, keeping SNI and :authority (curl's --resolve).
    #[arg(long, value_name = "HOST:PORT:ADDR")]
    pub resolve: Vec<String>,
    /// SNI to send instead of the URL's host.
    #[arg(long)]
    pub sni: Option<String>,
    /// Trust these CA certificates (PEM) instead of the system's, repeatable.
    #[arg(long)]
    pub cacert: Vec<PathBuf>,
    /// Accept any server certificate (it is still recorded).
    #[arg(long)]
    pub insecure: bool,
    /// Client certificate (PEM), with --key.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM), with --cert.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Append TLS secrets to FILE in SSLKEYLOGFILE format (for Wireshark).
    #[arg(long, value_name = "FILE")]
    pub keylog: Option<PathBuf>,

    /// Retry, once, requests the server provably never processed (stream above a
    /// GOAWAY's last_stream_id, REFUSED_STREAM); counted apart.
    #[arg(long)]
    pub retry_unprocessed: bool,
    /// Name of this attack in every record.
    #[arg(long, default_value = "")]
    pub name: String,

    /// Write the summary JSON here.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Stream one JSON line per request and per connection step here.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Format of the report on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub report: ReportFormat,
    /// No live progress on stderr.
    #[arg(long)]
    pub quiet: bool,

    #[command(flatten)]
    pub thresholds: ThresholdArgs,
}

#[derive(Debug, Args)]
pub struct ThresholdArgs {
    /// Exit 3 when the success ratio is under this (success=99%), repeatable.
    #[arg(long = "fail-under", value_name = "METRIC=VALUE")]
    pub fail_under: Vec<String>,
    /// Exit 3 when a latency percentile exceeds this (p95=500ms), repeatable.
    #[arg(long = "max-latency", value_name = "PCT=DURATION")]
    pub max_latency: Vec<String>,
}

impl ThresholdArgs {
    /// Parses every threshold flag.
    /// `--fail-under` takes ratios only and `--max-latency` latencies only.
    pub fn parse(&self) -> Result<Vec<Threshold>, ConfigError> {
        let mut out = Vec::new();
        for s in &self.fail_under {
            out.push(
                Threshold::parse_fail_under(s)
                    .map_err(|e| usage(format!("--fail-under {s}: {e}")))?,
            );
        }
        for s in &self.max_latency {
            out.push(
                Threshold::parse_max_latency(s)
                    .map_err(|e| usage(format!("--max-latency {s}: {e}")))?,
            );
        }
        Ok(out)
    }
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Events files written by `loadgen attack --events`.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Format of the report on stdout (text or json); `--report` is accepted too, as
    /// `attack` spells it.
    #[arg(long = "format", alias = "report", value_enum, default_value = "text")]
    pub report: ReportFormat,
    /// Also write the summary JSON here.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
}

/// A flag that does not make sense, with what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Targets(#[from] targets::TargetsError),
    #[error(transparent)]
    Rate(#[from] rate::RateError),
    #[error("read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn usage(s: impl Into<String>) -> ConfigError {
    ConfigError::Usage(s.into())
}

/// Validates the raw flags into a run configuration.
pub fn to_config(a: &AttackArgs) -> Result<RunConfig, ConfigError> {
    let targets = match (&a.url, &a.targets) {
        (Some(_), Some(_)) => return Err(usage("give a URL or --targets, not both")),
        (None, None) => return Err(usage("give a URL to load, or --targets FILE")),
        (None, Some(path)) => {
            let format: TargetFormat = a
                .format
                .parse()
                .map_err(|_| usage(format!("--format {}: expected http or json", a.format)))?;
            targets::load(path, format)?
        }
        (Some(url), None) => {
            let uri: Uri = url
                .parse()
                .map_err(|e| usage(format!("URL {url:?}: {e}")))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(usage(format!(
                    "URL {url:?}: expected an absolute http:// or https:// URL"
                )));
            }
            let method: Method = a
                .method
                .parse()
                .map_err(|_| usage(format!("--method {:?}: not an HTTP method", a.method)))?;
            let body = match a.body.as_deref() {
                None => Bytes::new(),
                Some(b) => match b.strip_prefix('@') {
                    Some(path) => std::fs::read(path).map(Bytes::from).map_err(|source| {
                        ConfigError::Read {
                            path: path.into(),
                            source,
                        }
                    })?,
                    None => Bytes::from(b.to_owned()),
                },
            };
            vec![Target {
                method,
                url: uri,
                headers: HeaderMap::new(),
                body,
            }]
        }
    };
    let mut targets = targets;
    let extra = parse_headers(&a.headers)?;
    for t in &mut targets {
        for (k, v) in &extra {
            t.headers.append(k.clone(), v.clone());
        }
    }

    let load = if a.users.is_some() || !a.groups.is_empty() || a.scenario.is_some() {
        let mut groups = Vec::new();
        if let Some(n) = a.users {
            let think: ThinkTime = a.think.parse()?;
            groups.push(UserGroup {
                name: "users".into(),
                users: n,
                think,
                url: None,
                ramp_up: None,
            });
        }
        for g in &a.groups {
            groups.push(g.parse()?);
        }
        if let Some(path) = &a.scenario {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            groups.extend(rate::parse_scenario(&text, path)?);
        }
        Load::Closed {
            groups,
            duration: a.duration,
        }
    } else if let Some(stages) = &a.stages {
        if a.duration.is_some() {
            return Err(usage(
                "--stages sets the run's length (the sum of the stages): drop --duration",
            ));
        }
        Load::Open(Schedule::stages(0.0, rate::parse_stages(stages)?))
    } else if let Some(r) = &a.rate {
        let rate: Rate = r.parse()?;
        let Some(d) = a.duration else {
            return Err(usage("--rate needs --duration (e.g. --duration 30s)"));
        };
        Load::Open(Schedule::constant(rate, Some(d)))
    } else {
        return Err(usage(
            "say how much load: --rate R --duration D, --stages, --users N, --group or --scenario",
        ));
    };

    let proto = match (a.http1, a.http2, a.h2c) {
        (true, _, _) => ProtoChoice::Http1,
        (_, true, _) => ProtoChoice::H2,
        (_, _, true) => ProtoChoice::H2c,
        _ => ProtoChoice::Auto,
    };
    let multiplexed = matches!(proto, ProtoChoice::H2 | ProtoChoice::H2c);
    let connections = match (a.connections, &load) {
        (Some(0), _) => return Err(usage("--connections must be at least 1")),
        (Some(n), _) => n,
        (None, Load::Closed { groups, .. }) if !multiplexed => groups
            .iter()
            .map(|g| g.users as usize)
            .sum::<usize>()
            .max(1),
        (None, _) if multiplexed => 1,
        (None, _) => 64,
    };
    if a.max_streams_per_conn == 0 {
        return Err(usage("--max-streams-per-conn must be at least 1"));
    }
    let resolve = a
        .resolve
        .iter()
        .map(|r| parse_resolve(r))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RunConfig {
        attack: a.name.clone(),
        targets,
        load,
        proto,
        connections,
        max_streams_per_conn: a.max_streams_per_conn,
        keepalive: !a.no_keepalive,
        timeout: a.timeout,
        connect_timeout: a.connect_timeout,
        max_lag: a.max_lag,
        local_addrs: a.local_addrs.clone(),
        resolve,
        sni: a.sni.clone(),
        tls: TlsOptions {
            cacerts: a.cacert.clone(),
            insecure: a.insecure,
            client_cert: a.cert.clone().zip(a.key.clone()),
            keylog: a.keylog.clone(),
            alpn: Vec::new(),
        },
        retry_unprocessed: a.retry_unprocessed,
        events: a.events.clone(),
    })
}

fn parse_headers(raw: &[String]) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    raw.iter()
        .map(|h| {
            let (k, v) = h
                .split_once(':')
                .ok_or_else(|| usage(format!("-H {h:?}: expected \"Name: value\"")))?;
            let name = HeaderName::from_bytes(k.trim().as_bytes())
                .map_err(|_| usage(format!("-H {h:?}: {:?} is not a header name", k.trim())))?;
            let value = HeaderValue::from_str(v.trim())
                .map_err(|_| usage(format!("-H {h:?}: the value has forbidden characters")))?;
            Ok((name, value))
        })
        .collect()
}

/// `host:port:addr`, with an IPv6 address optionally in brackets.
pub fn parse_resolve(s: &str) -> Result<Resolve, ConfigError> {
    let bad = || {
        usage(format!(
            "--resolve {s:?}: expected HOST:PORT:ADDR, e.g. example.com:443:127.0.0.1"
        ))
    };
    let (host, rest) = s.split_once(':').ok_or_else(bad)?;
    let (port, addr) = rest.split_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let addr: IpAddr = addr
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok(Resolve {
        host: host.to_owned(),
        port,
        addr,
    })
}

/// The configuration echoed into the summary JSON.
pub fn config_json(a: &AttackArgs, cfg: &RunConfig) -> serde_json::Value {
    serde_json::json!({
        "url": a.url,
        "targets": a.targets,
        "targets_count": cfg.targets.len(),
        "rate": a.rate,
        "duration": a.duration.map(|d| humantime::format_duration(d).to_string()),
        "stages": a.stages,
        "users": a.users,
        "groups": a.groups,
        "scenario": a.scenario,
        "proto": format!("{:?}", cfg.proto),
        "connections": cfg.connections,
        "max_streams_per_conn": cfg.max_streams_per_conn,
        "keepalive": cfg.keepalive,
        "timeout": humantime::format_duration(cfg.timeout).to_string(),
        "connect_timeout": humantime::format_duration(cfg.connect_timeout).to_string(),
        "max_lag": humantime::format_duration(cfg.max_lag).to_string(),
        "resolve": a.resolve,
        "sni": a.sni,
        "insecure": a.insecure,
        "retry_unprocessed": cfg.retry_unprocessed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<RunConfig, String> {
        let mut argv = vec!["loadgen", "attack"];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let Command::Attack(a) = cli.command else {
            unreachable!()
        };
        to_config(&a).map_err(|e| e.to_string())
    }

    #[test]
    fn resolve_flag_parses_v4_and_v6() {
        let r = parse_resolve("api.example:443:127.0.0.1").unwrap();
        assert_eq!((r.host.as_str(), r.port), ("api.example", 443));
        let r = parse_resolve("h:8443:[::1]").unwrap();
        assert_eq!(r.addr, "::1".parse::<IpAddr>().unwrap());
        let e = parse_resolve("nohost").unwrap_err().to_string();
        assert!(e.contains("HOST:PORT:ADDR"), "{e}");
        assert!(parse_resolve("h:x:127.0.0.1").is_err());
        assert!(parse_resolve("h:1:notanip").is_err());
    }

    #[test]
    fn bad_flags_say_what_to_do() {
        let e = args(&["http://127.0.0.1:1/"]).unwrap_err();
        assert!(e.contains("say how much load"), "{e}");
        let e = args(&["http://127.0.0.1:1/", "--rate", "10"]).unwrap_err();
        assert!(e.contains("--rate needs --duration"), "{e}");
        let e = args(&["ftp://x/", "--rate", "10", "--duration", "1s"]).unwrap_err();
        assert!(e.contains("absolute http"), "{e}");
        let e = args(&[
            "http://x/",
            "--rate",
            "10",
            "--duration",
            "1s",
            "-H",
            "nocolon",
        ])
        .unwrap_err();
        assert!(e.contains("Name: value"), "{e}");
        let e = args(&["--rate", "10", "--duration", "1s"]).unwrap_err();
        assert!(e.contains("give a URL"), "{e}");
        let e = args(&["http://x/", "--rate", "abc", "--duration", "1s"]).unwrap_err();
        assert!(e.contains("abc"), "{e}");
        let e = args(&["http://x/", "--rate", "1", "--users", "3"]).unwrap_err();
        assert!(e.contains("cannot be used with"), "{e}");
    }

    #[test]
    fn connections_default_by_protocol_and_model() {
        let c = args(&["http://x/", "--rate", "10", "--duration", "1s"]).unwrap();
        assert_eq!(c.connections, 64);
        let c = args(&["http://x/", "--rate", "10", "--duration", "1s", "--h2c"]).unwrap();
        assert_eq!((c.connections, c.proto), (1, ProtoChoice::H2c));
        let c = args(&["http://x/", "--users", "7"]).unwrap();
        assert_eq!(c.connections, 7);
    }

    #[test]
    fn headers_apply_to_every_target() {
        let c = args(&[
            "http://x/",
            "--rate",
            "1",
            "--duration",
            "1s",
            "-H",
            "X-A: 1",
            "-H",
            "X-A: 2",
        ])
        .unwrap();
        let v: Vec<_> = c.targets[0].headers.get_all("x-a").iter().collect();
        assert_eq!(v, ["1", "2"]);
    }
}
