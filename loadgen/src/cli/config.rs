//! Validating the raw `attack` flags into the [`RunConfig`] the engine runs on, and the
//! thresholds of `attack` and `report`. Mistakes are [`ConfigError::Usage`] (exit 2).
use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use super::{
    args::{AttackArgs, ThresholdArgs},
    error::{ConfigError, usage},
};
use crate::{
    engine::{Load, ProtoChoice, Resolve, RunConfig},
    rate::{self, Rate, Schedule, ThinkTime, UserGroup},
    targets::{self, Target, TargetFormat},
    thresholds::Threshold,
    tls::TlsOptions,
};

impl ThresholdArgs {
    /// Parses every threshold flag.
    /// `--fail-under` takes ratios only and `--max-latency` latencies only.
    pub fn parse(&self) -> Result<Vec<Threshold>, ConfigError> {
        let mut out = Vec::new();
        for s in &self.fail_under {
            out.push(
                Threshold::parse_fail_under(s)
                    .map_err(|e| usage(format!("--fail-under {s}: {e}")))?,
            );
        }
        for s in &self.max_latency {
            out.push(
                Threshold::parse_max_latency(s)
                    .map_err(|e| usage(format!("--max-latency {s}: {e}")))?,
            );
        }
        Ok(out)
    }
}

/// Validates the raw flags into a run configuration.
pub fn to_config(a: &AttackArgs) -> Result<RunConfig, ConfigError> {
    let mut targets = targets_of(a)?;
    let extra = parse_headers(&a.headers)?;
    for t in &mut targets {
        for (k, v) in &extra {
            t.headers.append(k.clone(), v.clone());
        }
    }
    let load = load_of(a)?;
    let proto = match (a.http1, a.http2, a.h2c) {
        (true, _, _) => ProtoChoice::Http1,
        (_, true, _) => ProtoChoice::H2,
        (_, _, true) => ProtoChoice::H2c,
        _ => ProtoChoice::Auto,
    };
    let connections = connections_of(a.connections, &load, proto)?;
    if a.max_streams_per_conn == 0 {
        return Err(usage("--max-streams-per-conn must be at least 1"));
    }
    let resolve = a
        .resolve
        .iter()
        .map(|r| parse_resolve(r))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RunConfig {
        attack: a.name.clone(),
        targets,
        load,
        proto,
        connections,
        max_streams_per_conn: a.max_streams_per_conn,
        keepalive: !a.no_keepalive,
        timeout: a.timeout,
        connect_timeout: a.connect_timeout,
        max_lag: a.max_lag,
        local_addrs: a.local_addrs.clone(),
        resolve,
        sni: a.sni.clone(),
        tls: TlsOptions {
            cacerts: a.cacert.clone(),
            insecure: a.insecure,
            client_cert: a.cert.clone().zip(a.key.clone()),
            keylog: a.keylog.clone(),
            alpn: Vec::new(),
        },
        retry_unprocessed: a.retry_unprocessed,
        events: a.events.clone(),
    })
}

/// The targets: the URL with `--method` and `--body`, or the `--targets` file.
fn targets_of(a: &AttackArgs) -> Result<Vec<Target>, ConfigError> {
    match (&a.url, &a.targets) {
        (Some(_), Some(_)) => Err(usage("give a URL or --targets, not both")),
        (None, None) => Err(usage("give a URL to load, or --targets FILE")),
        (None, Some(path)) => {
            let format: TargetFormat = a
                .format
                .parse()
                .map_err(|_| usage(format!("--format {}: expected http or json", a.format)))?;
            Ok(targets::load(path, format)?)
        }
        (Some(url), None) => Ok(vec![url_target(a, url)?]),
    }
}

/// The one target of `attack URL`.
fn url_target(a: &AttackArgs, url: &str) -> Result<Target, ConfigError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| usage(format!("URL {url:?}: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(usage(format!(
            "URL {url:?}: expected an absolute http:// or https:// URL"
        )));
    }
    let method: Method = a
        .method
        .parse()
        .map_err(|_| usage(format!("--method {:?}: not an HTTP method", a.method)))?;
    let body = match a.body.as_deref() {
        None => Bytes::new(),
        Some(b) => match b.strip_prefix('@') {
            Some(path) => {
                std::fs::read(path)
                    .map(Bytes::from)
                    .map_err(|source| ConfigError::Read {
                        path: path.into(),
                        source,
                    })?
            }
            None => Bytes::from(b.to_owned()),
        },
    };
    Ok(Target {
        method,
        url: uri,
        headers: HeaderMap::new(),
        body,
    })
}

/// The load model: users, groups or a scenario (closed); stages or a rate (open).
fn load_of(a: &AttackArgs) -> Result<Load, ConfigError> {
    if a.users.is_some() || !a.groups.is_empty() || a.scenario.is_some() {
        return Ok(Load::Closed {
            groups: user_groups(a)?,
            duration: a.duration,
        });
    }
    if let Some(stages) = &a.stages {
        if a.duration.is_some() {
            return Err(usage(
                "--stages sets the run's length (the sum of the stages): drop --duration",
            ));
        }
        return Ok(Load::Open(Schedule::stages(
            0.0,
            rate::parse_stages(stages)?,
        )));
    }
    if let Some(r) = &a.rate {
        let rate: Rate = r.parse()?;
        let Some(d) = a.duration else {
            return Err(usage("--rate needs --duration (e.g. --duration 30s)"));
        };
        return Ok(Load::Open(Schedule::constant(rate, Some(d))));
    }
    Err(usage(
        "say how much load: --rate R --duration D, --stages, --users N, --group or --scenario",
    ))
}

/// The closed model's groups: `--users` (with `--think`), each `--group`, then the
/// `--scenario` file's.
fn user_groups(a: &AttackArgs) -> Result<Vec<UserGroup>, ConfigError> {
    let mut groups = Vec::new();
    if let Some(n) = a.users {
        let think: ThinkTime = a.think.parse()?;
        groups.push(UserGroup {
            name: "users".into(),
            users: n,
            think,
            url: None,
            ramp_up: None,
        });
    }
    for g in &a.groups {
        groups.push(g.parse()?);
    }
    if let Some(path) = &a.scenario {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        groups.extend(rate::parse_scenario(&text, path)?);
    }
    Ok(groups)
}

/// `--connections`, or its default by protocol and model (see its help).
fn connections_of(
    flag: Option<usize>,
    load: &Load,
    proto: ProtoChoice,
) -> Result<usize, ConfigError> {
    let multiplexed = matches!(proto, ProtoChoice::H2 | ProtoChoice::H2c);
    Ok(match (flag, load) {
        (Some(0), _) => return Err(usage("--connections must be at least 1")),
        (Some(n), _) => n,
        (None, Load::Closed { groups, .. }) if !multiplexed => groups
            .iter()
            .map(|g| g.users as usize)
            .sum::<usize>()
            .max(1),
        (None, _) if multiplexed => 1,
        (None, _) => 64,
    })
}

fn parse_headers(raw: &[String]) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    raw.iter()
        .map(|h| {
            let (k, v) = h
                .split_once(':')
                .ok_or_else(|| usage(format!("-H {h:?}: expected \"Name: value\"")))?;
            let name = HeaderName::from_bytes(k.trim().as_bytes())
                .map_err(|_| usage(format!("-H {h:?}: {:?} is not a header name", k.trim())))?;
            let value = HeaderValue::from_str(v.trim())
                .map_err(|_| usage(format!("-H {h:?}: the value has forbidden characters")))?;
            Ok((name, value))
        })
        .collect()
}

/// `host:port:addr`, with an IPv6 address optionally in brackets.
pub fn parse_resolve(s: &str) -> Result<Resolve, ConfigError> {
    let bad = || {
        usage(format!(
            "--resolve {s:?}: expected HOST:PORT:ADDR, e.g. example.com:443:127.0.0.1"
        ))
    };
    let (host, rest) = s.split_once(':').ok_or_else(bad)?;
    let (port, addr) = rest.split_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let addr: IpAddr = addr
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok(Resolve {
        host: host.to_owned(),
        port,
        addr,
    })
}

/// The configuration echoed into the summary JSON.
pub fn config_json(a: &AttackArgs, cfg: &RunConfig) -> serde_json::Value {
    serde_json::json!({
        "url": a.url,
        "targets": a.targets,
        "targets_count": cfg.targets.len(),
        "rate": a.rate,
        "duration": a.duration.map(|d| humantime::format_duration(d).to_string()),
        "stages": a.stages,
        "users": a.users,
        "groups": a.groups,
        "scenario": a.scenario,
        "proto": format!("{:?}", cfg.proto),
        "connections": cfg.connections,
        "max_streams_per_conn": cfg.max_streams_per_conn,
        "keepalive": cfg.keepalive,
        "timeout": humantime::format_duration(cfg.timeout).to_string(),
        "connect_timeout": humantime::format_duration(cfg.connect_timeout).to_string(),
        "max_lag": humantime::format_duration(cfg.max_lag).to_string(),
        "resolve": a.resolve,
        "sni": a.sni,
        "insecure": a.insecure,
        "retry_unprocessed": cfg.retry_unprocessed,
    })
}
