//! The `analyzer` command line. Exit codes: 0 success, 1 failure (a failed `check`, or an
//! error, printed with its causes), 2 bad usage (from clap).
use std::process::ExitCode;

use std::io::IsTerminal;

use analyzer::{
    attach::{Progress, Status, StatusSink},
    check,
    cli::{AttachArgs, Cli, Command},
    error::error_chain,
    session,
};
use anyhow::{Context, Result};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

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
    let mut opts = a.session_options();
    let progress = opts.attach.progress;
    let tty = std::io::stderr().is_terminal();
    opts.attach.status = StatusSink::new(move |s| print_status(s, progress, tty));
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

/// What the session tells its user, on stderr: the fallback notice, the probes attached,
/// the live counters (one line rewritten in place on a terminal, one line a second
/// otherwise).
fn print_status(s: Status<'_>, progress: bool, tty: bool) {
    match s {
        Status::Fallback { notice } => eprintln!("notice: {notice}"),
        Status::Attached(rep) => {
            eprintln!("attached: {}", rep.attached.join(", "));
            for m in &rep.missing {
                eprintln!("missing: {} ({})", m.tracepoint, m.reason);
            }
        }
        Status::Progress(p) => print_progress(p, tty),
        Status::Probed { what } => eprintln!("attached: {what} (executed while recording)"),
        Status::ProbeFailed { why } => eprintln!("missing: {why}"),
        Status::Stopped => {
            if progress && tty {
                eprintln!();
            }
        }
    }
}

fn print_progress(p: &Progress, tty: bool) {
    let l = &p.counters;
    let line = format!(
        "analyzer {:>6.1}s  events {}/s ({} total)  conns {}  resets rx {} tx {}  \
         retrans {} (SYN {})  drops {}  lost {}",
        p.elapsed.as_secs_f64(),
        p.rate_per_s,
        l.events,
        p.open_sockets,
        l.resets_rx,
        l.resets_tx,
        l.retrans,
        l.syn_retrans,
        l.drops,
        p.lost,
    );
    if tty {
        eprint!("\r\x1b[2K{line}");
    } else {
        eprintln!("{line}");
    }
}
