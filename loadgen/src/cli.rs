//! All of loadgen's flags, in one place: [`Cli`] is the root the binary parses (and the
//! README's flag reference is generated from); the raw structs mirror the command line
//! ([`args`], [`packet_args`]) and are validated into the configurations the program
//! runs on ([`config`], [`packet_config`]), ripgrep style. Help text comes from here.
mod args;
mod config;
mod error;
mod packet_args;
mod packet_config;

use clap::{Parser, Subcommand};

pub use args::{AttackArgs, ReportArgs, ReportFormat, ThresholdArgs};
pub(crate) use config::config_json;
pub use config::to_config;
pub use error::ConfigError;
pub use packet_args::{InjectArgs, PacketsArgs, PacketsCommand, SynArgs};

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Exact-rate HTTP/1.1 and HTTP/2 load that says why every failed request failed",
    after_help = "Exit codes: 0 success, 1 error (unreadable or malformed file, unreachable host, \
                  unwritable file), 2 bad usage (a flag or value that makes no sense: bad \
                  --rate, -H, threshold, URL), 3 a --fail-under/--max-latency threshold was \
                  violated."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send load at a URL or the targets in a file, and report.
    Attack(Box<AttackArgs>),
    /// Rebuild the report from one or more --events files (runs split across hosts merge).
    Report(ReportArgs),
    /// Packet-level tools: raw SYN probes (`syn`) and RST/FIN injection (`inject`).
    Packets(PacketsArgs),
}

#[cfg(test)]
mod tests;
