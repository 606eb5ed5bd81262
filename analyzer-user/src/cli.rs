//! Every flag of the `analyzer` command line in one place: the clap description
//! ([`Cli`]), mirroring the command line, and its conversion into the options the
//! library runs with ([`AttachArgs::session_options`]).
use std::{net::IpAddr, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};

use crate::{
    attach::{AttachOptions, Backend, StatusSink},
    offline::Format,
    recording::FilterConfig,
    session::SessionOptions,
    tls_probe::ProbeOptions,
};

/// The `analyzer` command line.
#[derive(Debug, Parser)]
#[command(
    name = "analyzer",
    version,
    about = "Explain why load-test requests fail, from kernel evidence"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check that this host can run the analyzer (kernel, BTF, tracefs, tracepoints,
    /// privileges, a test load); exits 1 when something needed is missing.
    Check {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Attach the kernel probes beside a load run, until Ctrl-C, SIGTERM or --duration;
    /// then join loadgen's events and write the ranked root-cause report.
    Attach(AttachArgs),
    /// Rebuild the report offline from a recorded kernel event file (`attach
    /// --raw-events`) and loadgen's event files: the same correlation, post-mortem.
    Report(ReportArgs),
}

/// `analyzer report`'s flags.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Kernel event file(s) written by `analyzer attach --raw-events`.
    #[arg(long, value_name = "FILE", required = true)]
    pub kernel: Vec<PathBuf>,
    /// loadgen --events file(s) to join.
    #[arg(long, value_name = "FILE")]
    pub loadgen: Vec<PathBuf>,
    /// text, json or markdown.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// List every connection, not only the failed ones.
    #[arg(long)]
    pub all: bool,
    /// Write the report here (atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `analyzer attach`'s flags.
#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// Record only connections with this local or remote port (repeatable or
    /// comma-separated; at most 16). Default: every port.
    #[arg(long = "port", value_delimiter = ',')]
    pub ports: Vec<u16>,
    /// Record only connections with this local or remote address (repeatable; at most 4).
    #[arg(long = "remote")]
    pub remotes: Vec<IpAddr>,
    /// Keep only sockets that this process connected (learned from the kernel's
    /// SYN_SENT transition, which runs in the connecting process).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Do not read the first bytes of client processes' reads and writes on recorded
    /// sockets (eBPF backend): no HTTP status, request counts, GOAWAY or TLS handshake
    /// facts for foreign clients, only TCP evidence.
    #[arg(long)]
    pub no_plaintext: bool,
    /// A Go program (vegeta, k6, any Go client; stripped builds too) whose TLS plaintext
    /// to read: uprobes on crypto/tls.(*Conn).Write and Read, attached before it starts
    /// (repeatable). The system's libssl is probed without asking.
    #[arg(long = "tls-exe", value_name = "PATH")]
    pub tls_exes: Vec<PathBuf>,
    /// Stop after this long (e.g. 30s, 33m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// loadgen's --events file(s) to join by socket cookie at the end (repeatable).
    #[arg(long = "loadgen-events", value_name = "FILE")]
    pub loadgen_events: Vec<PathBuf>,
    /// Write the JSON report here (atomically: a temporary file, then a rename).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Write every kernel event as one JSON line to this file, after a header line
    /// (`analyzer report --kernel` reads it).
    #[arg(long, value_name = "FILE")]
    pub raw_events: Option<PathBuf>,
    /// Report on stdout as text, json or markdown.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Keep a record of every connection, not only the failed ones.
    #[arg(long)]
    pub all: bool,
    /// Also record packet drops that name no receiving socket (host-wide, noisy).
    #[arg(long)]
    pub all_drops: bool,
    /// No live counters on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// ebpf (tracepoints), raw (AF_PACKET capture: TCP, TLS and h2c from the wire), or
    /// auto: eBPF, falling back to raw with a notice saying why.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// Interface the raw backend captures on (repeatable; default lo).
    #[arg(long = "iface", value_name = "NAME")]
    pub ifaces: Vec<String>,
    /// NSS key log (SSLKEYLOGFILE format) the clients write their TLS secrets to (curl,
    /// browsers, `loadgen --keylog`): the raw backend decrypts TLS 1.2 and 1.3 with it and
    /// reads the HTTP inside. Read as it grows; it must exist at the start. Needs the raw
    /// backend (auto then chooses it).
    #[arg(long, value_name = "FILE")]
    pub keylog: Option<PathBuf>,
    #[command(flatten)]
    pub probe: ProbeOptions,
}

impl AttachArgs {
    /// The session these flags ask for.
    pub fn session_options(&self) -> SessionOptions {
        SessionOptions {
            attach: AttachOptions {
                filter: FilterConfig {
                    ports: self.ports.clone(),
                    addrs: self.remotes.clone(),
                    all_drops: self.all_drops,
                    pid: self.pid,
                    no_plaintext: self.no_plaintext,
                },
                duration: self.duration,
                raw_events: self.raw_events.clone(),
                progress: !self.quiet,
                ready: None,
                backend: self.backend,
                ifaces: self.ifaces.clone(),
                tls_exes: self.tls_exes.clone(),
                keylog: self.keylog.clone(),
                // The binary decides where the session's status goes.
                status: StatusSink::default(),
            },
            loadgen_events: self.loadgen_events.clone(),
            all: self.all,
            probe: self.probe.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_flag_description_is_consistent() {
        Cli::command().debug_assert();
    }
}
