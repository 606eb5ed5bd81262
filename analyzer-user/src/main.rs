//! The `analyzer` command line. Exit codes: 0 success, 1 failure (a failed `check`, or an
//! error, printed with its causes), 2 bad usage (from clap).
use std::process::ExitCode;

use analyzer::{
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
    let opts = a.session_options();
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
