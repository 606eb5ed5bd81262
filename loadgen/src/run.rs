//! Running an attack end to end: prepare targets and origins, start the consumer and the
//! connection slots, drive the load (schedule or users), stop cleanly on the deadline or
//! on Ctrl-C/SIGTERM, and hand back the statistics.
use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, oneshot, watch},
    task::JoinSet,
};

use crate::{
    engine::{Ctx, Load, Origin, Prepared, ProtoChoice, RunConfig, grow_pool, live_slots},
    rate::UserGroup,
    record::{Failure, Recorder, RunClock},
    sink::{self, SinkError, SinkResult},
    stats::{RunMeta, Stats},
    targets::Target,
    tls,
};
use events::model::{Class, ConnFacts, Phase};

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
    let needs_tls = origins.iter().any(|o| o.tls);
    let tls = if needs_tls {
        let mut opts = cfg.tls.clone();
        opts.alpn = match cfg.proto {
            ProtoChoice::Http1 => vec![b"http/1.1".to_vec()],
            ProtoChoice::H2 => vec![b"h2".to_vec()],
            ProtoChoice::Auto | ProtoChoice::H2c => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        };
        Some(tls::client_config(&opts)?)
    } else {
        None
    };
    let events = match &cfg.events {
        Some(p) => Some((p.clone(), sink::open_events(p)?)),
        None => None,
    };
    let target_rate = match &cfg.load {
        Load::Open(s) => s
            .expected_requests()
            .zip(s.total_duration())
            .and_then(|(n, d)| (d > Duration::ZERO).then(|| n as f64 / d.as_secs_f64())),
        Load::Closed { .. } => None,
    };
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

    let (stop_tx, stop_rx) = watch::channel(false);
    let driver = {
        let ctx = ctx.clone();
        tokio::spawn(async move { drive(ctx, stop_rx).await })
    };
    let mut sigterm = signal(SignalKind::terminate()).map_err(RunError::Signal)?;
    let mut driver = driver;
    let interrupted = tokio::select! {
        _ = &mut driver => false,
        _ = tokio::signal::ctrl_c() => true,
        _ = sigterm.recv() => true,
    };
    if interrupted {
        eprintln!("loadgen: interrupted: stopping, writing what was recorded");
        ctx.stop.store(true, Ordering::Relaxed);
        let _ = stop_tx.send(true);
        let _ = driver.await;
    }
    // The load is over. Let queued and in-flight jobs end (and any retry they make be
    // sent), then close the queues so the slots finish.
    if !interrupted {
        ctx.pending.wait_zero().await;
    }
    for o in &ctx.origins {
        o.jobs_tx.close();
    }
    let mut abandoned = 0u64;
    if interrupted {
        // Queued jobs were never sent; drop them, then give in-flight requests a grace.
        for o in &ctx.origins {
            while let Ok(job) = o.jobs.try_recv() {
                abandoned += 1;
                job.finish();
            }
        }
        if tokio::time::timeout(INTERRUPT_GRACE, wait_slots(&ctx))
            .await
            .is_err()
        {
            abandoned += live_slots(&ctx) as u64;
            for h in ctx.slot_handles.lock().expect("slot handle list").iter() {
                h.abort();
            }
            wait_slots(&ctx).await;
        }
    } else {
        wait_slots(&ctx).await;
    }
    let retries = ctx.retries.load(Ordering::Relaxed);
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

/// Waits until every connection slot has ended.
async fn wait_slots(ctx: &Ctx) {
    loop {
        let exited = ctx.slot_exited.notified();
        if live_slots(ctx) == 0 {
            return;
        }
        exited.await;
    }
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
            .position(|o| o.tls == tls && o.host == host && o.port == port)
        {
            Some(i) => i,
            None => {
                let addr = resolve(cfg, &host, port).await?;
                let (jobs_tx, jobs) = async_channel::unbounded();
                origins.push(Origin {
                    tls,
                    sni: cfg.sni.clone().unwrap_or_else(|| host.clone()),
                    host: host.clone(),
                    port,
                    addr,
                    authority: authority.clone(),
                    proto: cfg.proto,
                    jobs_tx,
                    jobs,
                    idle: 0.into(),
                    live: 0.into(),
                });
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

/// Drives the load until the schedule or the duration ends, or `stop` is set.
async fn drive(ctx: Arc<Ctx>, stop: watch::Receiver<bool>) {
    match &ctx.cfg.load {
        Load::Open(_) => open_model(ctx, stop).await,
        Load::Closed { groups, duration } => {
            let groups = groups.clone();
            let duration = *duration;
            closed_model(ctx, groups, duration, stop).await;
        }
    }
}

/// The most jobs allowed to wait for a slot, per origin, before new ones are recorded as
/// client overload at once; keeps memory bounded when the server stalls.
fn queue_cap(ctx: &Ctx, rate_per_sec: f64) -> usize {
    let slots = ctx.cfg.connections.max(1) * ctx.cfg.max_streams_per_conn.max(1) as usize;
    let by_lag = (rate_per_sec * ctx.cfg.max_lag.as_secs_f64()).ceil() as usize;
    (slots * 2).max(by_lag).clamp(64, 1 << 20)
}

async fn enqueue(ctx: &Arc<Ctx>, job: crate::engine::Job, cap: usize) {
    let origin_idx = ctx.targets[job.target].origin;
    let origin = &ctx.origins[origin_idx];
    if origin.jobs_tx.len() >= cap {
        let failure = Failure {
            class: Class::ClientOverload,
            phase: Phase::Queue,
            error: format!(
                "not sent: {cap} requests already waiting for a free connection or stream"
            ),
        };
        ctx.fail_job(job, ConnFacts::default(), failure).await;
        return;
    }
    if let Err(e) = origin.jobs_tx.try_send(job) {
        e.into_inner().finish();
        return;
    }
    grow_pool(ctx, origin_idx);
}

async fn open_model(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let Load::Open(schedule) = &ctx.cfg.load else {
        return;
    };
    let schedule = schedule.clone();
    let rate = schedule
        .expected_requests()
        .zip(schedule.total_duration())
        .map_or(1000.0, |(n, d)| n as f64 / d.as_secs_f64().max(1e-9));
    let cap = queue_cap(&ctx, rate);
    let start = ctx.rec.clock.start;
    let n = ctx.targets.len();
    for (i, offset) in schedule.enumerate() {
        let at = start + offset;
        if at > Instant::now() {
            tokio::select! {
                () = tokio::time::sleep_until(at.into()) => {}
                _ = stop.changed() => return,
            }
        }
        if *stop.borrow() {
            return;
        }
        let job = ctx.job(i % n, at, None);
        enqueue(&ctx, job, cap).await;
    }
}

async fn closed_model(
    ctx: Arc<Ctx>,
    groups: Vec<UserGroup>,
    duration: Option<Duration>,
    stop: watch::Receiver<bool>,
) {
    let deadline = duration.map(|d| ctx.rec.clock.start + d);
    let n_plain = ctx.cfg.targets.len();
    let mut users = JoinSet::new();
    let mut group_target = n_plain;
    for (gi, g) in groups.into_iter().enumerate() {
        let targets: Vec<usize> = if g.url.is_some() {
            group_target += 1;
            vec![group_target - 1]
        } else {
            (0..n_plain).collect()
        };
        let g = Arc::new(g);
        for u in 0..g.users {
            let ctx = ctx.clone();
            let g = g.clone();
            let targets = targets.clone();
            let stop = stop.clone();
            let seed = (gi as u64) << 32 | u64::from(u);
            users.spawn(async move { user(ctx, g, u, targets, deadline, stop, seed).await });
        }
    }
    while users.join_next().await.is_some() {}
}

async fn user(
    ctx: Arc<Ctx>,
    g: Arc<UserGroup>,
    index: u32,
    targets: Vec<usize>,
    deadline: Option<Instant>,
    mut stop: watch::Receiver<bool>,
    seed: u64,
) {
    // xorshift64*: think times need spread, not cryptographic randomness.
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next_rand = move || {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let cap = usize::MAX;
    let stop_for_wait = stop.clone();
    // Waits out a ramp delay or a think time; true when the run ends first (a stop, or
    // the deadline falling inside the wait).
    let wait = |d: Duration| {
        let mut stop = stop_for_wait.clone();
        async move {
            let until = Instant::now() + d;
            let (until, ends_run) = match deadline {
                Some(dl) if dl <= until => (dl, true),
                _ => (until, false),
            };
            tokio::select! {
                () = tokio::time::sleep_until(until.into()) => ends_run,
                _ = stop.changed() => true,
            }
        }
    };
    if let Some(ramp) = g.ramp_up {
        let delay = ramp.mul_f64(f64::from(index) / f64::from(g.users.max(1)));
        if wait(delay).await {
            return;
        }
    }
    let mut k = 0usize;
    loop {
        if *stop.borrow_and_update() || deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        let mut job = ctx.job(targets[k % targets.len()], Instant::now(), None);
        k += 1;
        let (tx, rx) = oneshot::channel();
        job.done = Some(tx);
        enqueue(&ctx, job, cap).await;
        tokio::select! {
            _ = rx => {}
            _ = stop.changed() => return,
        }
        let think = g.think.sample(next_rand());
        // No think time: go straight on (a zero sleep still waits for the next timer tick).
        if !think.is_zero() && wait(think).await {
            return;
        }
    }
}
