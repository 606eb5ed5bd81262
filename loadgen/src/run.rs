//! Running an attack end to end: prepare targets and origins, start the consumer and the
//! connection slots, drive the load (schedule or users), stop cleanly on the deadline or
//! on Ctrl-C/SIGTERM, and hand back the statistics.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use rustls::ClientConfig;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
    task::JoinHandle,
};

pub use crate::engine::RunConfig;
use crate::{
    engine::{Ctx, Load, Origin, OriginAddr, Prepared, ProtoChoice, drive, grow_pool},
    record::{Recorder, RunClock},
    sink::{self, SinkError, SinkResult},
    stats::{RunMeta, Stats},
    targets::Target,
    tls,
};

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("target {url}: {reason}")]
    Target { url: String, reason: String },
    #[error("cannot resolve {host}:{port}")]
    Resolve {
        host: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS configuration")]
    Tls(#[from] tls::TlsConfigError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("signal handler")]
    Signal(#[source] std::io::Error),
}

/// What a finished run hands back.
#[derive(Debug)]
pub struct Finished {
    pub stats: Stats,
    pub meta: RunMeta,
    pub retries: u64,
    pub event_lines: u64,
    /// Requests still in flight when an interrupted run gave up waiting for them.
    pub abandoned: u64,
}

/// How long an interrupted run waits for requests in flight before giving up on them.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);

/// Runs the attack described by `cfg`. `config_json` is echoed into the summary.
pub async fn run(
    cfg: RunConfig,
    config_json: serde_json::Value,
    progress: bool,
) -> Result<Finished, RunError> {
    let (origins, targets) = prepare(&cfg).await?;
    let tls = client_tls(&cfg, &origins)?;
    let events = match &cfg.events {
        Some(p) => Some((p.clone(), sink::open_events(p)?)),
        None => None,
    };
    let target_rate = target_rate(&cfg.load);
    let (tx, rx) = mpsc::channel(1 << 14);
    let consumer = tokio::spawn(sink::consume(rx, events, target_rate, progress));
    let clock = RunClock::now();
    let rec = Recorder {
        tx,
        clock,
        attack: cfg.attack.as_str().into(),
    };
    let ctx = Arc::new(Ctx::new(cfg, origins, targets, tls, rec));
    for i in 0..ctx.origins.len() {
        grow_pool(&ctx, i);
    }
    let interrupted = drive_until_done_or_signal(&ctx).await?;
    let abandoned = wind_down(&ctx, interrupted).await;
    let retries = ctx.retries();
    let attack = ctx.cfg.attack.clone();
    // Every sender of records lives in `ctx` (tasks are done): dropping it ends the
    // consumer.
    drop(ctx);
    let SinkResult { stats, event_lines } = consumer.await.expect("the consumer does not panic")?;
    let wall_ns = clock.start.elapsed().as_nanos() as u64;
    Ok(Finished {
        meta: RunMeta {
            attack,
            config: config_json,
            started_unix_ns: clock.start_unix_ns,
            wall_ns,
            target_rate_per_sec: target_rate,
            interrupted,
        },
        stats,
        retries,
        event_lines,
        abandoned,
    })
}

/// The TLS client configuration, when an origin is https; ALPN offers what `--http1`,
/// `--http2` or neither asks for.
fn client_tls(cfg: &RunConfig, origins: &[Origin]) -> Result<Option<Arc<ClientConfig>>, RunError> {
    if !origins.iter().any(|o| o.dest.tls) {
        return Ok(None);
    }
    let mut opts = cfg.tls.clone();
    opts.alpn = match cfg.proto {
        ProtoChoice::Http1 => vec![b"http/1.1".to_vec()],
        ProtoChoice::H2 => vec![b"h2".to_vec()],
        ProtoChoice::Auto | ProtoChoice::H2c => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(Some(tls::client_config(&opts)?))
}

/// The open model's mean rate, for the progress line and the summary.
fn target_rate(load: &Load) -> Option<f64> {
    match load {
        Load::Open(s) => s
            .expected_requests()
            .zip(s.total_duration())
            .and_then(|(n, d)| (d > Duration::ZERO).then(|| n as f64 / d.as_secs_f64())),
        Load::Closed { .. } => None,
    }
}

/// Drives the load until it is over or Ctrl-C/SIGTERM arrives; on a signal, stops the
/// run (its one shutdown token) and waits for the driver. True when interrupted.
async fn drive_until_done_or_signal(ctx: &Arc<Ctx>) -> Result<bool, RunError> {
    let mut driver: JoinHandle<()> = tokio::spawn(drive(ctx.clone()));
    let mut sigterm = signal(SignalKind::terminate()).map_err(RunError::Signal)?;
    let interrupted = tokio::select! {
        _ = &mut driver => false,
        _ = tokio::signal::ctrl_c() => true,
        _ = sigterm.recv() => true,
    };
    if interrupted {
        tracing::warn!("interrupted: stopping, writing what was recorded");
        ctx.stop();
        let _ = driver.await;
    }
    Ok(interrupted)
}

/// Ends the run once the load is over: lets queued and in-flight jobs end (and any retry
/// they make be sent), then closes the queues so the slots finish. Interrupted, queued
/// jobs are dropped and in-flight ones get [`INTERRUPT_GRACE`]. Returns the requests
/// abandoned that way.
async fn wind_down(ctx: &Ctx, interrupted: bool) -> u64 {
    if !interrupted {
        ctx.wait_jobs_done().await;
    }
    for o in &ctx.origins {
        o.close();
    }
    if !interrupted {
        ctx.wait_slots().await;
        return 0;
    }
    let mut abandoned = 0u64;
    // Queued jobs were never sent; drop them, then give in-flight requests a grace.
    for o in &ctx.origins {
        while let Some(job) = o.try_take() {
            abandoned += 1;
            job.finish();
        }
    }
    if tokio::time::timeout(INTERRUPT_GRACE, ctx.wait_slots())
        .await
        .is_err()
    {
        abandoned += ctx.live_slots() as u64;
        ctx.abort_slots();
        ctx.wait_slots().await;
    }
    abandoned
}

/// Resolves every target's origin once, before the run (a name that does not resolve is
/// an error now, not a million failed requests later).
async fn prepare(cfg: &RunConfig) -> Result<(Vec<Origin>, Vec<Prepared>), RunError> {
    let mut origins: Vec<Origin> = Vec::new();
    let mut prepared = Vec::new();
    let mut all: Vec<&Target> = cfg.targets.iter().collect();
    let group_targets: Vec<Target> = match &cfg.load {
        Load::Closed { groups, .. } => groups
            .iter()
            .filter_map(|g| g.url.clone())
            .map(|url| Target {
                method: http::Method::GET,
                url,
                headers: http::HeaderMap::new(),
                body: bytes::Bytes::new(),
            })
            .collect(),
        Load::Open(_) => Vec::new(),
    };
    all.extend(group_targets.iter());
    for t in all {
        let url = t.url.to_string();
        let bad = |reason: &str| RunError::Target {
            url: url.clone(),
            reason: reason.to_owned(),
        };
        let tls = match t.url.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("the scheme must be http or https")),
        };
        if tls && cfg.proto == ProtoChoice::H2c {
            return Err(bad("--h2c is cleartext HTTP/2: use an http:// URL"));
        }
        let host = t.url.host().ok_or_else(|| bad("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = t.url.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let authority = t
            .url
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| bad("no authority"))?;
        let idx = match origins
            .iter()
            .position(|o| o.dest.tls == tls && o.dest.host == host && o.dest.port == port)
        {
            Some(i) => i,
            None => {
                let addr = resolve(cfg, &host, port).await?;
                origins.push(Origin::new(OriginAddr {
                    tls,
                    sni: cfg.sni.clone().unwrap_or_else(|| host.clone()),
                    host: host.clone(),
                    port,
                    addr,
                    authority: authority.clone(),
                    proto: cfg.proto,
                }));
                origins.len() - 1
            }
        };
        let path = t
            .url
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|_| bad("bad path"))?;
        prepared.push(Prepared {
            origin: idx,
            method: t.method.clone(),
            uri: t.url.clone(),
            path,
            headers: t.headers.clone(),
            body: t.body.clone(),
            url,
        });
    }
    Ok((origins, prepared))
}

async fn resolve(cfg: &RunConfig, host: &str, port: u16) -> Result<SocketAddr, RunError> {
    if let Some(r) = cfg
        .resolve
        .iter()
        .find(|r| r.host.eq_ignore_ascii_case(host) && r.port == port)
    {
        return Ok(SocketAddr::new(r.addr, port));
    }
    if let Ok(ip) = host.parse() {
        return Ok(SocketAddr::new(ip, port));
    }
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| RunError::Resolve {
            host: host.to_owned(),
            port,
            source,
        })?;
    addrs.next().ok_or_else(|| RunError::Resolve {
        host: host.to_owned(),
        port,
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
    })
}
