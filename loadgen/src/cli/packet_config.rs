//! Validating the raw `loadgen packets` flags into [`SynConfig`] and [`InjectConfig`].
//! Bad values are [`ConfigError::Usage`] (exit 2).
use std::{
    net::{IpAddr, SocketAddr},
    ops::RangeInclusive,
    time::Duration,
};

use super::{
    error::{ConfigError, usage},
    packet_args::{InjectArgs, SynArgs},
};
use crate::{
    packets::{
        inject::{self, InjectConfig, Kind},
        syn::SynConfig,
    },
    rate::Rate,
};

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
