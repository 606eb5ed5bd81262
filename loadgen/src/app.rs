//! The subcommands as functions: what `main` calls, and what tests can call in-process.
//! This is the command front end: with `main`, the only code that prints (reports on
//! stdout, notices on stderr).
use std::{path::Path, process::ExitCode};

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::{
    cli::{
        AttackArgs, ConfigError, InjectArgs, PacketsArgs, PacketsCommand, ReportArgs, ReportFormat,
        SynArgs, ThresholdArgs, config_json, to_config,
    },
    packets::{inject, net, report as packets_report, syn},
    report,
    run::{Finished, run},
    stats::RunMeta,
    summary::Summary,
    thresholds,
};

/// Exit code when a threshold is violated (documented in `--help`).
pub(crate) const EXIT_THRESHOLD: u8 = 3;
/// Exit code for bad usage (flags that do not make sense), as clap uses.
pub(crate) const EXIT_USAGE: u8 = 2;

/// The exit code for an error: usage mistakes (bad flags, rates, thresholds) exit 2,
/// everything else (unreadable or malformed files, unreachable hosts) 1.
pub fn exit_code_for(e: &anyhow::Error) -> ExitCode {
    match e.downcast_ref::<ConfigError>() {
        Some(ConfigError::Usage(_) | ConfigError::Rate(_)) => ExitCode::from(EXIT_USAGE),
        _ => ExitCode::FAILURE,
    }
}

/// `loadgen attack`.
pub fn attack(a: &AttackArgs) -> Result<ExitCode> {
    let cfg = to_config(a)?;
    let thresholds = a.thresholds.parse()?;
    let config = config_json(a, &cfg);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    let finished = rt.block_on(run(cfg, config, !a.quiet))?;
    if finished.abandoned > 0 {
        eprintln!(
            "loadgen: {} requests were still queued or in flight at the interrupt and are not counted",
            finished.abandoned
        );
    }
    let Finished { stats, meta, .. } = finished;
    let summary = stats.summary(meta);
    finish(&summary, a.output.as_deref(), a.report, &thresholds)
}

/// `loadgen report`.
pub fn report(r: &ReportArgs) -> Result<ExitCode> {
    let (stats, info) = report::read_events(&r.files)?;
    for w in &info.warnings {
        eprintln!("loadgen: warning: {w}");
    }
    let meta = RunMeta {
        attack: info.attacks.join(","),
        config: serde_json::json!({ "rebuilt_from": r.files }),
        started_unix_ns: stats.first_intended_unix_ns().unwrap_or(0),
        wall_ns: stats.span_ns(),
        target_rate_per_sec: None,
        interrupted: false,
    };
    let summary = stats.summary(meta);
    finish(
        &summary,
        r.output.as_deref(),
        r.report,
        &thresholds_of(&r.thresholds)?,
    )
}

/// `loadgen packets ...`.
pub fn packets(p: &PacketsArgs) -> Result<ExitCode> {
    match &p.command {
        PacketsCommand::Syn(a) => packets_syn(a),
        PacketsCommand::Inject(a) => packets_inject(a),
    }
}

/// `loadgen packets syn`. Ctrl-C or SIGTERM stops the schedule; the run then waits for
/// the answers still due, removes the nft table and reports as usual (exit 0).
fn packets_syn(a: &SynArgs) -> Result<ExitCode> {
    let cfg = a.to_config()?;
    let stop = CancellationToken::new();
    let signals = SignalWatch::start(&stop)?;
    let r = syn::run(cfg, &stop, |fw| {
        eprintln!(
            "loadgen: nft: installed table inet {} (removed at exit): {}",
            fw.table(),
            fw.rules.join("; ")
        );
    });
    signals.stop();
    let r = r?;
    if r.interrupted {
        eprintln!("loadgen: interrupted: stopped sending, reporting what was sent");
    }
    let json = packets_report::json(&r);
    if let Some(path) = &a.out {
        events::fs::write_atomic(path, json.as_bytes())?;
    }
    match a.format {
        ReportFormat::Text => print!("{}", packets_report::text(&r)),
        ReportFormat::Json => println!("{json}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `loadgen packets inject`.
fn packets_inject(a: &InjectArgs) -> Result<ExitCode> {
    let cfg = a.to_config(&net::local_addrs())?;
    let sent = inject::run(&cfg)?;
    match a.format {
        ReportFormat::Text => print!("{}", inject::text(&sent)),
        ReportFormat::Json => println!("{}", packets_report::json(&sent)),
    }
    Ok(ExitCode::SUCCESS)
}

/// SIGINT and SIGTERM cancel a token, from a thread, for code that is not async (the
/// packet tools run on plain threads).
struct SignalWatch {
    handle: signal_hook::iterator::Handle,
    thread: std::thread::JoinHandle<()>,
}

impl SignalWatch {
    fn start(token: &CancellationToken) -> Result<Self> {
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])
        .context("install the signal handler")?;
        let handle = signals.handle();
        let token = token.clone();
        let thread = std::thread::spawn(move || {
            for _ in signals.forever() {
                token.cancel();
            }
        });
        Ok(Self { handle, thread })
    }

    /// Uninstalls the handlers and ends the thread.
    fn stop(self) {
        self.handle.close();
        let _ = self.thread.join();
    }
}

fn thresholds_of(t: &ThresholdArgs) -> Result<Vec<thresholds::Threshold>> {
    Ok(t.parse()?)
}

fn finish(
    summary: &Summary,
    output: Option<&Path>,
    format: ReportFormat,
    thresholds: &[thresholds::Threshold],
) -> Result<ExitCode> {
    if let Some(path) = output {
        events::fs::write_atomic(path, report::json(summary).as_bytes())?;
    }
    match format {
        ReportFormat::Text => print!("{}", report::text(summary)),
        ReportFormat::Json => println!("{}", report::json(summary)),
    }
    let violations = thresholds::check(thresholds, summary);
    if violations.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for v in &violations {
        eprintln!("loadgen: threshold violated: {v}");
    }
    Ok(ExitCode::from(EXIT_THRESHOLD))
}
