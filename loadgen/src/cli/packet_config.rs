//! The `loadgen packets` command line: raw flags ([`SynArgs`], [`InjectArgs`]) validated
//! into [`SynConfig`] and [`InjectConfig`]. Bad values are [`ConfigError::Usage`] (exit 2).
use std::{
    net::{IpAddr, SocketAddr},
    ops::RangeInclusive,
    path::PathBuf,
    time::Duration,
};

use clap::{ArgGroup, Args, Subcommand};

use super::{
    inject::{self, Direction, InjectConfig, Kind},
    syn::SynConfig,
};

use crate::{
    cli::{ConfigError, ReportFormat},
    rate::Rate,
};

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

fn usage(s: impl Into<String>) -> ConfigError {
    ConfigError::Usage(s.into())
}

/// `LO-HI`, both above 0, LO <= HI.
pub fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, ConfigError> {
    let bad = || {
        usage(format!(
            "--source-ports {s:?}: expected LO-HI, e.g. 61000-61999"
        ))
    };
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok(lo..=hi)
}

/// `SRC:PORT-DST:PORT`.
pub fn parse_match(s: &str) -> Result<(SocketAddr, SocketAddr), ConfigError> {
    let bad = || {
        usage(format!(
            "--match {s:?}: expected SRC:PORT-DST:PORT, e.g. 127.0.0.1:40000-127.0.0.1:8080"
        ))
    };
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: SocketAddr = a.trim().parse().map_err(|_| bad())?;
    let b: SocketAddr = b.trim().parse().map_err(|_| bad())?;
    if a.is_ipv4() != b.is_ipv4() {
        return Err(usage(format!(
            "--match {s:?}: both ends must be IPv4 or both IPv6"
        )));
    }
    Ok((a, b))
}

impl SynArgs {
    pub fn to_config(&self) -> Result<SynConfig, ConfigError> {
        let rate: Rate = self.rate.parse()?;
        if rate.per_sec() <= 0.0 {
            return Err(usage("--rate must be above 0"));
        }
        let duration = match (self.duration, self.count) {
            (Some(d), _) => d,
            (None, Some(n)) => Duration::from_secs_f64(n as f64 / rate.per_sec()),
            (None, None) => {
                return Err(usage("say how many probes: --duration D and/or --count N"));
            }
        };
        if self.timeout.is_zero() {
            return Err(usage("--timeout must be above 0"));
        }
        if let Some(t) = self
            .targets
            .iter()
            .find(|t| t.port() == 0 || t.ip().is_unspecified())
        {
            return Err(usage(format!(
                "--target {t}: expected a real address and a port above 0"
            )));
        }
        Ok(SynConfig {
            targets: self.targets.clone(),
            rate,
            duration,
            count: self.count,
            timeout: self.timeout,
            source_ports: parse_port_range(&self.source_ports)?,
            alive_port: (!self.no_alive_check && self.alive_port != 0).then_some(self.alive_port),
        })
    }
}

impl InjectArgs {
    /// Validates the flags; `locals` are this namespace's addresses (for the refusal).
    pub fn to_config(&self, locals: &[IpAddr]) -> Result<InjectConfig, ConfigError> {
        let (client, server) = parse_match(&self.matches)?;
        let cfg = InjectConfig {
            kind: if self.rst { Kind::Rst } else { Kind::Fin },
            client,
            server,
            direction: self.direction,
            ttl: self.ttl,
            timeout: self.timeout,
        };
        let (target, _) = cfg.ends();
        if let Some(why) = inject::refusal(target.ip(), locals, &self.allow_targets) {
            return Err(usage(why));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn packets(argv: &[&str]) -> Result<PacketsCommand, String> {
        let mut v = vec!["loadgen", "packets"];
        v.extend_from_slice(argv);
        match Cli::try_parse_from(v).map_err(|e| e.to_string())?.command {
            Command::Packets(p) => Ok(p.command),
            _ => unreachable!(),
        }
    }

    fn syn(argv: &[&str]) -> Result<SynConfig, String> {
        let mut v = vec!["syn"];
        v.extend_from_slice(argv);
        match packets(&v)? {
            PacketsCommand::Syn(a) => a.to_config().map_err(|e| e.to_string()),
            _ => unreachable!(),
        }
    }

    #[test]
    fn syn_flags() {
        let c = syn(&["--target", "127.0.0.1:80", "--rate", "100", "--count", "50"]).unwrap();
        assert_eq!(c.duration, Duration::from_millis(500));
        assert_eq!(
            (c.source_ports.clone(), c.alive_port),
            (61000..=61999, Some(9))
        );
        let c = syn(&[
            "--target",
            "[::1]:80",
            "--rate",
            "10",
            "--duration",
            "1s",
            "--no-alive-check",
        ])
        .unwrap();
        assert_eq!(c.alive_port, None);
        let e = syn(&["--target", "127.0.0.1:80", "--rate", "10"]).unwrap_err();
        assert!(e.contains("--count"), "{e}");
        let e = syn(&["--target", "127.0.0.1:80", "--rate", "0", "--count", "1"]).unwrap_err();
        assert!(e.contains("above 0"), "{e}");
        let e = syn(&[
            "--target",
            "127.0.0.1:80",
            "--rate",
            "1",
            "--count",
            "1",
            "--source-ports",
            "9-3",
        ])
        .unwrap_err();
        assert!(e.contains("LO-HI"), "{e}");
        assert!(syn(&["--target", "nohost", "--rate", "1", "--count", "1"]).is_err());
        assert!(syn(&["--target", "127.0.0.1:0", "--rate", "1", "--count", "1"]).is_err());
    }

    #[test]
    fn inject_flags() {
        let p = packets(&["inject", "--rst", "--match", "127.0.0.1:5-127.0.0.1:80"]).unwrap();
        let PacketsCommand::Inject(a) = p else {
            unreachable!()
        };
        let c = a.to_config(&[]).unwrap();
        assert_eq!(
            (c.kind, c.direction, c.ttl),
            (Kind::Rst, Direction::ToClient, 128)
        );
        assert!(packets(&["inject", "--match", "127.0.0.1:5-127.0.0.1:80"]).is_err());
        assert!(
            packets(&[
                "inject",
                "--rst",
                "--fin",
                "--match",
                "127.0.0.1:5-127.0.0.1:80"
            ])
            .is_err()
        );
        assert!(
            packets(&[
                "inject",
                "--rst",
                "--ttl",
                "0",
                "--match",
                "127.0.0.1:5-127.0.0.1:80"
            ])
            .is_err()
        );
        let (a, b) = parse_match("[::1]:5000-[::1]:80").unwrap();
        assert_eq!((a.port(), b.port()), (5000, 80));
        assert!(parse_match("127.0.0.1:5-[::1]:80").is_err());
        assert!(parse_match("127.0.0.1:5").is_err());
    }
}
