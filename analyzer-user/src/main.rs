//! The `analyzer` command line. Exit codes: 0 success, 1 failure (a failed `check`, or an
//! error, printed with its causes), 2 bad usage (from clap).
use std::{
    fs::File,
    io::{BufWriter, Write},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use analyzer::{
    check,
    event::KernelEvent,
    probe::{Probes, error_chain},
    tracefs,
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
    /// Attach the kernel probes and record TCP evidence until Ctrl-C, SIGTERM or
    /// --duration.
    Attach {
        /// Stop after this long (e.g. 30s, 33m).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Write every kernel event as one JSON line to this file ("-" for stdout).
        #[arg(long, value_name = "FILE")]
        raw_events: Option<PathBuf>,
    },
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
        Command::Attach {
            duration,
            raw_events,
        } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("start the tokio runtime")?;
            rt.block_on(attach(duration, raw_events))
        }
    }
}

async fn attach(duration: Option<Duration>, raw_events: Option<PathBuf>) -> Result<ExitCode> {
    let mount = tracefs::ensure_mounted().context("tracefs")?;
    let mut probes = Probes::attach(mount.path(), &analyzer::probe::FilterConfig::default())
        .context("attach the kernel probes")?;
    let rep = probes.report();
    eprintln!("attached: {}", rep.attached.join(", "));
    for m in &rep.missing {
        eprintln!("missing: {} ({})", m.tracepoint, m.reason);
    }
    let mut out: Option<Box<dyn Write>> = match raw_events.as_deref() {
        None => None,
        Some(p) if p.as_os_str() == "-" => Some(Box::new(std::io::stdout().lock())),
        Some(p) => Some(Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("create {}", p.display()))?,
        ))),
    };
    let mut reader = probes
        .take_reader()
        .context("event reader")?
        .into_async()
        .context("register the ring buffer with epoll")?;
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let deadline = tokio::time::sleep(duration.unwrap_or(Duration::MAX / 4));
    tokio::pin!(deadline);
    let mut batch: Vec<KernelEvent> = Vec::new();
    let mut resets = 0u64;
    let mut total = 0u64;
    loop {
        tokio::select! {
            r = reader.recv(&mut batch) => { r.context("read the ring buffer")?; }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            () = &mut deadline => break,
        }
        write_batch(&mut batch, out.as_mut(), &mut total, &mut resets)?;
    }
    // Whatever arrived before the stop is still recorded.
    reader.drain(&mut batch);
    write_batch(&mut batch, out.as_mut(), &mut total, &mut resets)?;
    if let Some(o) = out.as_mut() {
        o.flush().context("flush the event file")?;
    }
    let stats = probes.stats()?;
    eprintln!(
        "events: {total} (resets received: {resets}); lost in kernel: {} (ring full), \
         field read failures: {}, undecodable: {}",
        stats.reserve_failed,
        stats.read_failed,
        reader.decode_errors()
    );
    Ok(ExitCode::SUCCESS)
}

fn write_batch(
    batch: &mut Vec<KernelEvent>,
    mut out: Option<&mut Box<dyn Write>>,
    total: &mut u64,
    resets: &mut u64,
) -> Result<()> {
    for ev in batch.drain(..) {
        *total += 1;
        if ev.event == analyzer_common::EventKind::ReceiveReset {
            *resets += 1;
        }
        if let Some(o) = out.as_mut() {
            serde_json::to_writer(&mut **o, &ev).context("write event")?;
            o.write_all(b"\n").context("write event")?;
        }
    }
    Ok(())
}
