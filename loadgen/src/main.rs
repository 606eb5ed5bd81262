//! The `loadgen` binary: parse, run, report. Exit codes in `loadgen --help`.
use std::process::ExitCode;

use clap::Parser;
use loadgen::cli::{Cli, Command};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Attack(a) => loadgen::app::attack(&a),
        Command::Report(r) => loadgen::app::report(&r),
        Command::Packets(p) => loadgen::app::packets(&p),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: error: {e:#}");
            loadgen::app::exit_code_for(&e)
        }
    }
}
