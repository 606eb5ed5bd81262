//! The run: a scheduler (open model) or virtual users (closed model) put jobs on a queue
//! per origin; connection slots pull jobs from it, each owning one connection at a time;
//! every outcome goes to the single consumer ([`crate::sink`]) that owns the statistics.
//!
//! Coordinated omission: a job carries its intended send time, and latency is measured
//! from it whatever the server does. A job that waits longer than `max_lag` for a free
//! connection or stream is not sent: it is recorded as `client_overload` (phase `queue`).
use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};
use rustls::ClientConfig;
use tokio::sync::oneshot;

use crate::{
    conn::{self, DialError, Stream},
    rate::{Schedule, UserGroup},
    record::{Attempt, ConnState, Failure, Outcome, Recorder},
    targets::Target,
    tls::TlsOptions,
};
use events::model::{Class, CloseHow, ConnFacts, ConnStep, Phase, Proto};

/// Which protocol to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoChoice {
    /// HTTP/1.1 for `http://`; for `https://`, what ALPN picks (h2 preferred).
    Auto,
    /// HTTP/1.1 only (ALPN offers only `http/1.1`).
    Http1,
    /// HTTP/2 over TLS (ALPN offers only `h2`).
    H2,
    /// HTTP/2 over cleartext with prior knowledge.
    H2c,
}

/// Open or closed model.
#[derive(Debug)]
pub enum Load {
    /// Requests at intended times, whatever the server does.
    Open(Schedule),
    /// Virtual users: send, wait for the answer, think, repeat.
    Closed {
        groups: Vec<UserGroup>,
        duration: Option<Duration>,
    },
}

/// `--resolve host:port:addr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolve {
    pub host: String,
    pub port: u16,
    pub addr: IpAddr,
}

/// Everything a run needs, validated.
#[derive(Debug)]
pub struct RunConfig {
    pub attack: String,
    pub targets: Vec<Target>,
    pub load: Load,
    pub proto: ProtoChoice,
    /// Connections per origin.
    pub connections: usize,
    pub max_streams_per_conn: u32,
    pub keepalive: bool,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_lag: Duration,
    pub local_addrs: Vec<IpAddr>,
    pub resolve: Vec<Resolve>,
    pub sni: Option<String>,
    pub tls: TlsOptions,
    pub retry_unprocessed: bool,
    pub events: Option<PathBuf>,
}

/// Where a target's requests go: one pool of connections per origin.
#[derive(Debug)]
pub struct Origin {
    pub tls: bool,
    /// Host as written in the URL (for SNI and :authority).
    pub host: String,
    pub port: u16,
    pub addr: SocketAddr,
    pub sni: String,
    pub authority: String,
    pub proto: ProtoChoice,
    pub jobs_tx: async_channel::Sender<Job>,
    pub jobs: async_channel::Receiver<Job>,
    /// Slots waiting for a job right now (a connection, or room for one, is free).
    pub idle: AtomicUsize,
    /// Slots running.
    pub live: AtomicUsize,
}

impl Origin {
    /// Takes the next job, counted as an idle slot while waiting. `Err` when the queue is
    /// closed and empty.
    pub async fn next_job(&self) -> Result<Job, async_channel::RecvError> {
        self.idle.fetch_add(1, Ordering::SeqCst);
        let _idle = scopeguard(|| {
            self.idle.fetch_sub(1, Ordering::SeqCst);
        });
        self.jobs.recv().await
    }
}

/// Runs `f` when dropped (also when the owning future is cancelled mid-await).
fn scopeguard<F: FnMut()>(f: F) -> impl Drop {
    struct Guard<F: FnMut()>(F);
    impl<F: FnMut()> Drop for Guard<F> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    Guard(f)
}

/// A target, ready to send.
#[derive(Debug)]
pub struct Prepared {
    pub origin: usize,
    pub method: Method,
    /// Absolute URI (HTTP/2 takes :scheme and :authority from it).
    pub uri: Uri,
    /// Origin-form path and query for HTTP/1.1.
    pub path: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub url: String,
}

/// A request to send.
#[derive(Debug)]
pub struct Job {
    pub attempt: Attempt,
    pub target: usize,
    /// Closed model: the user waiting for this request.
    pub done: Option<oneshot::Sender<()>>,
    /// Times this job was carried to a new connection because its connection was going
    /// away before the job was sent (never sent, so not a retry). Bounded by one.
    pub carried: u8,
    /// Counts the job as outstanding until it is dropped, whichever way it ends.
    _pending: PendingGuard,
}

/// Jobs created and not yet ended. The run closes its queues only when the schedule is
/// over and this is zero, so a retry made by the last request still gets sent.
#[derive(Debug, Default)]
pub struct Pending {
    n: AtomicU64,
    zero: tokio::sync::Notify,
}

impl Pending {
    /// Waits until no job is outstanding.
    pub async fn wait_zero(&self) {
        loop {
            let notified = self.zero.notified();
            if self.n.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[derive(Debug)]
struct PendingGuard(Arc<Pending>);

impl PendingGuard {
    fn new(p: &Arc<Pending>) -> Self {
        p.n.fetch_add(1, Ordering::SeqCst);
        Self(p.clone())
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if self.0.n.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.zero.notify_waiters();
        }
    }
}

impl Job {
    /// Wakes the user waiting for this job, if any.
    pub fn finish(self) {
        if let Some(d) = self.done {
            let _ = d.send(());
        }
    }
}

/// State shared by every task of a run.
#[derive(Debug)]
pub struct Ctx {
    pub cfg: RunConfig,
    pub origins: Vec<Origin>,
    pub targets: Vec<Prepared>,
    pub tls: Option<Arc<ClientConfig>>,
    pub rec: Recorder,
    pub stop: AtomicBool,
    pub retries: AtomicU64,
    next_conn_id: AtomicU64,
    next_local: AtomicUsize,
    pub next_seq: AtomicU64,
    /// Abort handles of the connection slots, for an interrupted run's grace period.
    pub slot_handles: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
    /// Notified whenever a slot ends.
    pub slot_exited: tokio::sync::Notify,
    pub pending: Arc<Pending>,
}

impl Ctx {
    pub fn new(
        cfg: RunConfig,
        origins: Vec<Origin>,
        targets: Vec<Prepared>,
        tls: Option<Arc<ClientConfig>>,
        rec: Recorder,
    ) -> Self {
        Self {
            cfg,
            origins,
            targets,
            tls,
            rec,
            stop: AtomicBool::new(false),
            retries: AtomicU64::new(0),
            next_conn_id: AtomicU64::new(1),
            next_local: AtomicUsize::new(0),
            next_seq: AtomicU64::new(0),
            slot_handles: std::sync::Mutex::new(Vec::new()),
            slot_exited: tokio::sync::Notify::new(),
            pending: Arc::default(),
        }
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    fn local_ip(&self) -> Option<IpAddr> {
        let l = &self.cfg.local_addrs;
        (!l.is_empty()).then(|| l[self.next_local.fetch_add(1, Ordering::Relaxed) % l.len()])
    }

    /// Builds a job for target `target` intended at `intended`.
    pub fn job(&self, target: usize, intended: Instant, retry_of: Option<u64>) -> Job {
        let t = &self.targets[target];
        Job {
            attempt: Attempt {
                seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
                method: t.method.as_str().to_owned(),
                url: t.url.clone(),
                bytes_out: t.body.len() as u64,
                intended,
                retry_of,
            },
            target,
            done: None,
            carried: 0,
            _pending: PendingGuard::new(&self.pending),
        }
    }

    /// Records a job that fails before any connection is involved (or with the facts
    /// of a connection that failed to open).
    pub async fn fail_job(&self, job: Job, conn: ConnFacts, failure: Failure) {
        let now = Instant::now();
        self.rec
            .request(
                &job.attempt,
                conn,
                Outcome {
                    failure: Some(failure),
                    ..Outcome::default()
                },
                now,
            )
            .await;
        job.finish();
    }

    /// If the job waited too long for a slot, records it as client overload and returns
    /// None; otherwise gives it back.
    pub async fn check_lag(&self, job: Job) -> Option<Job> {
        let waited = job.attempt.intended.elapsed();
        if waited <= self.cfg.max_lag {
            return Some(job);
        }
        let failure = Failure {
            class: Class::ClientOverload,
            phase: Phase::Queue,
            error: format!(
                "not sent: waited {:.1} ms for a free connection or stream (--max-lag {:?})",
                waited.as_secs_f64() * 1e3,
                self.cfg.max_lag
            ),
        };
        self.fail_job(job, ConnFacts::default(), failure).await;
        None
    }

    /// Re-queues a request the server provably never processed, when asked to.
    pub async fn maybe_retry(&self, job: &Job, class: Option<Class>, h2_unprocessed: bool) {
        if !self.cfg.retry_unprocessed || job.attempt.retry_of.is_some() || self.stopped() {
            return;
        }
        if !(h2_unprocessed && matches!(class, Some(Class::H2Goaway | Class::H2RstStream))) {
            return;
        }
        self.retries.fetch_add(1, Ordering::Relaxed);
        let origin = &self.origins[self.targets[job.target].origin];
        let retry = self.job(job.target, Instant::now(), Some(job.attempt.seq));
        // A closed queue means the run is ending: the retry is not made, and the
        // original failure stands on its own.
        let _ = origin.jobs_tx.try_send(retry);
    }
}

/// A connection that is open and ready for HTTP.
#[derive(Debug)]
pub struct Opened {
    pub stream: Stream,
    pub state: ConnState,
    /// True when ALPN (or --h2c) selected HTTP/2.
    pub h2: bool,
}

/// Opens a connection for `origin`: TCP, then TLS when the origin is https, emitting the
/// `opened` and `tls` lifecycle lines. On failure returns the failure with whatever
/// connection facts exist (the cookie of a refused socket joins with the kernel's RST).
pub async fn open(ctx: &Ctx, origin: &Origin) -> Result<Opened, (ConnFacts, Failure)> {
    let conn_id = ctx.conn_id();
    let rec = &ctx.rec;
    let fail = |e: DialError| {
        let facts = ConnFacts {
            conn_id,
            sock_cookie: e.sock_cookie,
            local: e.local,
            remote: Some(origin.addr),
            ..ConnFacts::default()
        };
        (
            facts,
            Failure {
                class: e.class,
                phase: e.phase,
                error: e.error,
            },
        )
    };
    let started = Instant::now();
    let dialed = match conn::dial(origin.addr, ctx.local_ip(), ctx.cfg.connect_timeout).await {
        Ok(d) => d,
        Err(e) => {
            rec.conn(
                conn_id,
                started,
                ConnStep::Opened {
                    sock_cookie: e.sock_cookie,
                    local: e.local,
                    remote: origin.addr,
                    connect_us: started.elapsed().as_micros() as u64,
                },
            )
            .await;
            rec.conn(
                conn_id,
                Instant::now(),
                ConnStep::Closed {
                    how: CloseHow::Failed,
                    error: e.error.clone(),
                    requests: 0,
                    age_us: started.elapsed().as_micros() as u64,
                },
            )
            .await;
            return Err(fail(e));
        }
    };
    rec.conn(
        conn_id,
        started,
        ConnStep::Opened {
            sock_cookie: dialed.sock_cookie,
            local: Some(dialed.local),
            remote: origin.addr,
            connect_us: dialed.connect_us,
        },
    )
    .await;
    let state = ConnState {
        conn_id,
        sock_cookie: dialed.sock_cookie,
        local: Some(dialed.local),
        remote: origin.addr,
        opened: started,
        requests: 0,
        last_active: Instant::now(),
    };
    let closed_failed = |error: String| ConnStep::Closed {
        how: CloseHow::Failed,
        error,
        requests: 0,
        age_us: started.elapsed().as_micros() as u64,
    };
    let (stream, h2) = if origin.tls {
        let config = ctx
            .tls
            .clone()
            .expect("TLS config exists for https origins");
        let tls_started = Instant::now();
        match conn::handshake(dialed.stream, config, &origin.sni, ctx.cfg.timeout).await {
            Ok((s, facts)) => {
                let h2 = facts.alpn.as_deref() == Some("h2");
                rec.conn(
                    conn_id,
                    Instant::now(),
                    ConnStep::Tls {
                        tls: facts,
                        handshake_us: tls_started.elapsed().as_micros() as u64,
                    },
                )
                .await;
                if origin.proto == ProtoChoice::H2 && !h2 {
                    let error = "ALPN: the server did not agree to h2 (--http2)".to_owned();
                    rec.conn(conn_id, Instant::now(), closed_failed(error.clone()))
                        .await;
                    return Err(fail(DialError {
                        class: Class::ProtocolError,
                        phase: Phase::Tls,
                        error,
                        sock_cookie: dialed.sock_cookie,
                        local: Some(dialed.local),
                        tls: None,
                    }));
                }
                (Stream::Tls(Box::new(s)), h2)
            }
            Err((mut e, facts)) => {
                rec.conn(
                    conn_id,
                    Instant::now(),
                    ConnStep::Tls {
                        tls: facts,
                        handshake_us: tls_started.elapsed().as_micros() as u64,
                    },
                )
                .await;
                rec.conn(conn_id, Instant::now(), closed_failed(e.error.clone()))
                    .await;
                e.sock_cookie = dialed.sock_cookie;
                e.local = Some(dialed.local);
                return Err(fail(e));
            }
        }
    } else {
        (
            Stream::Plain(dialed.stream),
            origin.proto == ProtoChoice::H2c,
        )
    };
    let proto = match (h2, origin.tls) {
        (true, true) => Proto::H2,
        (true, false) => Proto::H2c,
        (false, _) => Proto::Http1,
    };
    rec.conn(conn_id, Instant::now(), ConnStep::Ready { proto })
        .await;
    Ok(Opened { stream, state, h2 })
}

/// Starts another connection slot for the origin when none is idle and the pool is below
/// `--connections`: the pool grows to the concurrency the load needs, so warm
/// connections are reused instead of each job opening its own.
pub fn grow_pool(ctx: &Arc<Ctx>, origin_idx: usize) {
    let origin = &ctx.origins[origin_idx];
    if origin.idle.load(Ordering::SeqCst) > 0 {
        return;
    }
    let max = ctx.cfg.connections.max(1);
    let grew = origin
        .live
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok();
    if grew {
        let handle = tokio::spawn(slot(ctx.clone(), origin_idx));
        ctx.slot_handles
            .lock()
            .expect("slot handle list")
            .push(handle.abort_handle());
    }
}

/// Slots still running, over all origins.
pub fn live_slots(ctx: &Ctx) -> usize {
    ctx.origins
        .iter()
        .map(|o| o.live.load(Ordering::SeqCst))
        .sum()
}

/// One connection slot of an origin: pulls jobs, opens a connection when it has work,
/// runs it until it ends, and starts over. Returns when the origin's queue is closed
/// and empty.
async fn slot(ctx: Arc<Ctx>, origin_idx: usize) {
    let origin = &ctx.origins[origin_idx];
    let _live = scopeguard(|| {
        origin.live.fetch_sub(1, Ordering::SeqCst);
        ctx.slot_exited.notify_waiters();
    });
    let mut pending: Option<Job> = None;
    loop {
        let job = match pending.take() {
            Some(j) => j,
            None => match origin.next_job().await {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        let Some(job) = ctx.check_lag(job).await else {
            continue;
        };
        let opened = match open(&ctx, origin).await {
            Ok(o) => o,
            Err((facts, failure)) => {
                ctx.fail_job(job, facts, failure).await;
                continue;
            }
        };
        pending = if opened.h2 {
            crate::h2conn::run(&ctx, origin, opened, job).await
        } else {
            crate::h1conn::run(&ctx, origin, opened, job).await
        };
    }
}
