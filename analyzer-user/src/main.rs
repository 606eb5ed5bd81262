//! The `analyzer` command line. Exit codes: 0 success, 1 failure (a failed `check`, or an
//! error, printed with its causes), 2 bad usage (from clap).
use std::{net::IpAddr, path::PathBuf, process::ExitCode, time::Duration};

use analyzer::{
    attach::{AttachOptions, Backend},
    check,
    offline::Format,
    probe::{FilterConfig, error_chain},
    session::{self, SessionOptions},
};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Parser)]
#[command(
    name = "analyzer",
    version,
    about = "Explain why load-test requests fail, from kernel evidence"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// Kernel event file(s) written by `analyzer attach --raw-events`.
    #[arg(long, value_name = "FILE", required = true)]
    kernel: Vec<PathBuf>,
    /// loadgen --events file(s) to join.
    #[arg(long, value_name = "FILE")]
    loadgen: Vec<PathBuf>,
    /// text, json or markdown.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// List every connection, not only the failed ones.
    #[arg(long)]
    all: bool,
    /// Write the report here (atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct AttachArgs {
    /// Record only connections with this local or remote port (repeatable or
    /// comma-separated; at most 16). Default: every port.
    #[arg(long = "port", value_delimiter = ',')]
    ports: Vec<u16>,
    /// Record only connections with this local or remote address (repeatable; at most 4).
    #[arg(long = "remote")]
    remotes: Vec<IpAddr>,
    /// Keep only sockets that this process connected (learned from the kernel's
    /// SYN_SENT transition, which runs in the connecting process).
    #[arg(long)]
    pid: Option<u32>,
    /// Stop after this long (e.g. 30s, 33m).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// loadgen's --events file(s) to join by socket cookie at the end (repeatable).
    #[arg(long = "loadgen-events", value_name = "FILE")]
    loadgen_events: Vec<PathBuf>,
    /// Write the JSON report here (atomically: a temporary file, then a rename).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Write every kernel event as one JSON line to this file, after a header line
    /// (`analyzer report --kernel` reads it).
    #[arg(long, value_name = "FILE")]
    raw_events: Option<PathBuf>,
    /// Report on stdout as text, json or markdown.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Keep a record of every connection, not only the failed ones.
    #[arg(long)]
    all: bool,
    /// Also record packet drops that name no receiving socket (host-wide, noisy).
    #[arg(long)]
    all_drops: bool,
    /// No live counters on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// ebpf (tracepoints), raw (AF_PACKET capture: TCP, TLS and h2c from the wire), or
    /// auto: eBPF, falling back to raw with a notice saying why.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// Interface the raw backend captures on (repeatable; default lo).
    #[arg(long = "iface", value_name = "NAME")]
    ifaces: Vec<String>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("analyzer: error: {}", error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check { json } => {
            let report = check::run();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Attach(a) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("start the tokio runtime")?;
            rt.block_on(attach(a))
        }
        Command::Report(r) => {
            let text = analyzer::offline::report_offline(&r.kernel, &r.loadgen, r.format, r.all)?;
            match &r.out {
                Some(p) => events::fs::write_atomic(p, text.as_bytes())?,
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn attach(a: AttachArgs) -> Result<ExitCode> {
    let opts = SessionOptions {
        attach: AttachOptions {
            filter: FilterConfig {
                ports: a.ports,
                addrs: a.remotes,
                all_drops: a.all_drops,
            },
            pid: a.pid,
            duration: a.duration,
            raw_events: a.raw_events,
            progress: !a.quiet,
            ready: None,
            backend: a.backend,
            ifaces: a.ifaces,
        },
        loadgen_events: a.loadgen_events,
        all: a.all,
    };
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm.recv() => {}
        }
    };
    let (outcome, report) = session::run(&opts, stop).await?;
    if let Some(c) = &outcome.capture {
        eprintln!(
            "capture: {} packets on {}, {} dropped by the kernel, {} wire facts, {} connections followed",
            c.interfaces.iter().map(|i| i.packets).sum::<u64>(),
            c.interfaces
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            c.drops(),
            outcome.wire_events,
            c.track.flows
        );
    }
    eprintln!(
        "events: {} ({}); lost in kernel: {} (ring full), field read failures: {}, \
         undecodable: {}",
        outcome.events,
        outcome
            .by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        outcome.stats.reserve_failed,
        outcome.stats.read_failed,
        outcome.decode_errors
    );
    if let Some(p) = &a.out {
        events::fs::write_atomic(p, report.to_json().as_bytes())?;
        eprintln!("report: {}", p.display());
    }
    print!("{}", report.render(a.format));
    Ok(ExitCode::SUCCESS)
}
