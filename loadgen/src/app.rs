//! The subcommands as functions: what `main` calls, and what tests can call in-process.
use std::{path::Path, process::ExitCode};

use anyhow::{Context, Result};

use crate::{
    cli::{AttackArgs, ReportArgs, ReportFormat, ThresholdArgs, config_json, to_config},
    report,
    run::{Finished, run},
    stats::RunMeta,
    summary::Summary,
    thresholds,
};

/// Exit code when a threshold is violated (documented in `--help`).
pub const EXIT_THRESHOLD: u8 = 3;
/// Exit code for bad usage (flags that do not make sense), as clap uses.
pub const EXIT_USAGE: u8 = 2;

/// The exit code for an error: usage mistakes (bad flags, rates, thresholds) exit 2,
/// everything else (unreadable or malformed files, unreachable hosts) 1.
pub fn exit_code_for(e: &anyhow::Error) -> ExitCode {
    use crate::cli::ConfigError;
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

/// `loadgen packets` (see [`crate::packets::cmd`]).
pub fn packets(p: &crate::packets::args::PacketsArgs) -> Result<ExitCode> {
    crate::packets::cmd::packets(p)
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
