//! The raw flags of `loadgen packets`, as the command line spells them;
//! [`super::packet_config`] validates them.
use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use clap::{ArgGroup, Args, Subcommand};

use super::args::ReportFormat;
use crate::packets::inject::Direction;

#[derive(Debug, Args)]
pub struct PacketsArgs {
    #[command(subcommand)]
    pub command: PacketsCommand,
}

#[derive(Debug, Subcommand)]
pub enum PacketsCommand {
    /// Send raw TCP SYNs at an exact rate; say per target: open, closed,
    /// listen_queue_full or filtered (root: raw sockets and nftables).
    Syn(SynArgs),
    /// Send one crafted RST or FIN into a live connection, like a middlebox would
    /// (root; loopback and this host's addresses only, unless --allow-target).
    Inject(InjectArgs),
}

#[derive(Debug, Args)]
pub struct SynArgs {
    /// ADDR:PORT to probe ([::1]:443 for IPv6), repeatable; probes go round robin.
    #[arg(long = "target", required = true, value_name = "ADDR:PORT")]
    pub targets: Vec<SocketAddr>,
    /// SYNs per second over all targets (100, 50/1s, 6000/1m).
    #[arg(long)]
    pub rate: String,
    /// How long to send; with --count, whichever ends first.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Send at most this many SYNs.
    #[arg(long)]
    pub count: Option<u64>,
    /// A probe with no answer within this is lost.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Source ports of the probes, LO-HI; the default sits above Linux's ephemeral
    /// range (32768-60999), so no local connection uses them.
    #[arg(long, default_value = "61000-61999", value_name = "LO-HI")]
    pub source_ports: String,
    /// When a target answers nothing, probe this port of the same host to tell a
    /// filtered port from a host that is down.
    #[arg(long, default_value_t = 9, value_name = "PORT")]
    pub alive_port: u16,
    /// Skip the --alive-port check.
    #[arg(long)]
    pub no_alive_check: bool,
    /// Format of the report on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// Also write the JSON report here (atomically).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("kind").required(true).args(["rst", "fin"])))]
pub struct InjectArgs {
    /// Send an RST (with ACK, window 0).
    #[arg(long)]
    pub rst: bool,
    /// Send a FIN (with ACK).
    #[arg(long)]
    pub fin: bool,
    /// The connection: client SRC:PORT and server DST:PORT ([::1]:5000-[::1]:80 for IPv6).
    #[arg(long = "match", value_name = "SRC:PORT-DST:PORT")]
    pub matches: String,
    /// Which end receives the segment.
    #[arg(long, value_enum, default_value = "to-client")]
    pub direction: Direction,
    /// IPv4 TTL / IPv6 hop limit of the segment. 128 by default: not the 64 of the
    /// Linux stacks at either end, so it reads as a different box on the path.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u8).range(1..))]
    pub ttl: u8,
    /// Give up when no segment of the connection is seen within this.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Allow a target that is not loopback or this host's (repeatable).
    #[arg(long = "allow-target", value_name = "ADDR")]
    pub allow_targets: Vec<IpAddr>,
    /// Format of the line on stdout.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
}
