//! `cargo xtask`: the project's developer tasks. Every task works as root or through sudo
//! and says what it runs.
//!
//! Exit codes: 0 success, 1 a step failed (named in the error), 2 bad usage.
//!
//! It must never depend on a faultline crate: it builds them, and has to compile on a
//! fresh machine before the kernel object the analyzer embeds exists.
mod demo;
mod ebpf;
mod layout;
mod setup;
mod sh;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "faultline developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what a fresh machine lacks (nightly rust-src, llvm-22-dev, bpf-linker, test
    /// tools); skips what is already there.
    Setup,
    /// Build the kernel programs (analyzer-ebpf) for bpfel-unknown-none.
    BuildEbpf {
        /// Build the release profile (what `cargo build --release` of the analyzer embeds).
        #[arg(long)]
        release: bool,
    },
    /// Check the structure: no import circles between modules or folders, no file over
    /// 600 lines of code, no printing from library code.
    Layout,
    /// Everything CI runs: setup, build-ebpf, fmt, clippy -D warnings, layout, all tests
    /// (privileged ones included: run as root).
    Test,
    /// Run every fuzz target for a bounded time (libFuzzer via cargo-fuzz, nightly).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 30)]
        seconds: u32,
    },
    /// Start the fault-injecting testbed on loopback, drive traffic at each fault with the
    /// analyzer attached, and print what was seen.
    Demo,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::BuildEbpf { release } => ebpf::build(release),
        Task::Layout => layout::run(),
        Task::Test => test(),
        Task::Demo => demo::run(),
        Task::Fuzz { seconds } => fuzz(seconds),
    }
}

/// The test pipeline. Order matters: the analyzer embeds the kernel object, so
/// build-ebpf comes before anything that compiles the workspace.
fn test() -> Result<()> {
    setup::run()?;
    ebpf::build(false)?;
    let root = sh::workspace_root();
    sh::run(
        sh::cargo()
            .args(["fmt", "--all", "--", "--check"])
            .current_dir(&root),
    )?;
    sh::run(
        ebpf::nightly_cargo()
            .args(["fmt", "--", "--check"])
            .current_dir(root.join("analyzer-ebpf")),
    )?;
    sh::run(
        sh::cargo()
            .args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])
            .current_dir(&root),
    )?;
    ebpf::clippy()?;
    layout::run()?;
    sh::run(
        sh::cargo()
            .args(["test", "--workspace", "--no-fail-fast"])
            .current_dir(&root),
    )?;
    fuzz(FUZZ_SECONDS_IN_TEST)?;
    Ok(())
}

/// Seconds per fuzz target in `cargo xtask test`.
const FUZZ_SECONDS_IN_TEST: u32 = 20;

/// The cargo-fuzz targets in `fuzz/` (see fuzz/Cargo.toml).
const FUZZ_TARGETS: &[&str] = &["targets", "h2frame", "packet", "tls", "hpack"];

/// Runs each fuzz target for `seconds`; a crash fails the run and leaves the input
/// under fuzz/artifacts/.
fn fuzz(seconds: u32) -> Result<()> {
    // The `tls` target links analyzer-user, whose build embeds the kernel object of the
    // profile being built; cargo-fuzz builds in release.
    ebpf::build(true)?;
    let dir = sh::workspace_root().join("fuzz");
    for t in FUZZ_TARGETS {
        sh::run(
            ebpf::nightly_cargo()
                .args(["fuzz", "run", t, "--"])
                .arg(format!("-max_total_time={seconds}"))
                .current_dir(&dir),
        )?;
    }
    Ok(())
}
