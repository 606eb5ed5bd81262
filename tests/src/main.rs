//! The `testbed` binary: starts the fault listeners, prints them, runs until SIGINT/SIGTERM.
//!
//! Exit codes: 0 after a clean stop on a signal; 1 when the testbed cannot start (bad
//! spec, port in use, unwritable file); 2 for command-line usage errors (clap).

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use testbed::{Config, ListenerSpec, Testbed};

/// Fault-injecting HTTP test server: one listener per fault, TLS and plaintext, HTTP/1.1
/// and HTTP/2 on every port. Prints one line per listener (address, spec, what it does).
#[derive(Debug, Parser)]
#[command(name = "testbed", version)]
struct Args {
    /// Address every listener binds to.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Server name the good certificate is issued for.
    #[arg(long, default_value = testbed::DEFAULT_SERVER_NAME)]
    name: String,
    /// Write the CA certificate (PEM) here [default: a file in a new temporary directory].
    #[arg(long, value_name = "PATH")]
    ca_out: Option<PathBuf>,
    /// Write a JSON manifest of the listeners here once all are bound.
    #[arg(long, value_name = "PATH")]
    manifest: Option<PathBuf>,
    /// Fault specs, each optionally with a port: ok[:size=N], status:CODE, wrong-cert,
    /// untrusted-cert, expired-cert, goaway:CODE[:after=N], goaway-on-concurrency:N[:hold=DUR],
    /// rst-stream:CODE[:after=N], rst[:after=N], rst-mid-response, fin-mid-response,
    /// close-idle:DUR, stall, slow:DUR, backlog-full, refused. Without any: one of each.
    #[arg(value_name = "SPEC[@PORT]", value_parser = parse_spec)]
    specs: Vec<ListenerSpec>,
}

fn parse_spec(text: &str) -> Result<ListenerSpec, testbed::SpecError> {
    text.parse()
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("testbed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let mut config = Config {
        bind: args.bind,
        server_name: args.name,
        ca_out: args.ca_out,
        ..Config::default()
    };
    if !args.specs.is_empty() {
        config.listeners = args.specs;
    }

    let runtime = tokio::runtime::Runtime::new().context("start the tokio runtime")?;
    runtime.block_on(async {
        let testbed = Testbed::start(config).await.context("start the testbed")?;
        let mut out = std::io::stdout().lock();
        for listener in testbed.listeners() {
            writeln!(
                out,
                "{}\t{}\t{}",
                listener.addr, listener.spec, listener.description
            )?;
        }
        writeln!(out, "CA certificate: {}", testbed.ca_path().display())?;
        out.flush()?;
        drop(out);
        if let Some(path) = &args.manifest {
            testbed
                .write_manifest(path)
                .with_context(|| format!("write the manifest {}", path.display()))?;
        }

        wait_for_signal().await?;
        tracing::info!("stopping");
        testbed.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    tokio::select! {
        ctrl_c = tokio::signal::ctrl_c() => ctrl_c.context("wait for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
