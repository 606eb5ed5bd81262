//! The `packets` subcommands as functions `main` calls: flags in, report out, exit code.
use std::{
    process::ExitCode,
    sync::{Arc, atomic::AtomicBool},
};

use anyhow::{Context, Result};

use super::{
    args::{InjectArgs, PacketsArgs, PacketsCommand, SynArgs},
    inject, net, report, syn,
};

use crate::cli::ReportFormat;

/// `loadgen packets ...`.
pub fn packets(p: &PacketsArgs) -> Result<ExitCode> {
    match &p.command {
        PacketsCommand::Syn(a) => syn(a),
        PacketsCommand::Inject(a) => inject(a),
    }
}

/// `loadgen packets syn`. Ctrl-C or SIGTERM stops the schedule; the run then waits for
/// the answers still due, removes the nft table and reports as usual (exit 0).
pub fn syn(a: &SynArgs) -> Result<ExitCode> {
    let cfg = a.to_config()?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("install the signal handler")?;
    }
    let r = syn::run(cfg, &stop, |fw| {
        eprintln!(
            "loadgen: nft: installed table inet {} (removed at exit): {}",
            fw.table(),
            fw.rules.join("; ")
        );
    })?;
    if r.interrupted {
        eprintln!("loadgen: interrupted: stopped sending, reporting what was sent");
    }
    let json = report::json(&r);
    if let Some(path) = &a.out {
        events::fs::write_atomic(path, json.as_bytes())?;
    }
    match a.format {
        ReportFormat::Text => print!("{}", report::text(&r)),
        ReportFormat::Json => println!("{json}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `loadgen packets inject`.
pub fn inject(a: &InjectArgs) -> Result<ExitCode> {
    let cfg = a.to_config(&net::local_addrs())?;
    let sent = inject::run(&cfg)?;
    match a.format {
        ReportFormat::Text => print!("{}", inject::text(&sent)),
        ReportFormat::Json => println!("{}", report::json(&sent)),
    }
    Ok(ExitCode::SUCCESS)
}
