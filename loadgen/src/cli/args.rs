//! The raw flags of `attack` and `report`, as the command line spells them; [`super::config`]
//! validates them.
use std::{net::IpAddr, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};

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
