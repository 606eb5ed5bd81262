//! The state every task of a run shares: the origins with their job queues, the prepared
//! targets, the jobs themselves, and [`Ctx`], which owns the counters, the slot
//! bookkeeping and the run's one shutdown token.
//!
//! Coordinated omission: a job carries its intended send time, and latency is measured
//! from it whatever the server does. A job that waits longer than `max_lag` for a free
//! connection or stream is not sent: it is recorded as `client_overload` (phase `queue`).
use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Instant,
};

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};
use rustls::ClientConfig;
use tokio::{
    sync::{Notify, oneshot},
    task::AbortHandle,
};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::config::{ProtoChoice, RunConfig};
use crate::record::{Attempt, Failure, Outcome, Recorder};
use events::model::{Class, ConnFacts, Phase};

/// Where a target's requests go: one pool of connections per origin.
#[derive(Debug)]
pub struct Origin {
    /// Where its connections go and how they speak.
    pub dest: OriginAddr,
    jobs_tx: async_channel::Sender<Job>,
    jobs: async_channel::Receiver<Job>,
    /// Slots waiting for a job right now (a connection, or room for one, is free).
    idle: AtomicUsize,
    /// Slots running.
    live: AtomicUsize,
}

/// Where an origin's connections go and how they speak; [`Origin::new`] adds the queue.
#[derive(Debug)]
pub struct OriginAddr {
    pub tls: bool,
    /// Host as written in the URL (for SNI and :authority).
    pub host: String,
    pub port: u16,
    pub addr: SocketAddr,
    pub sni: String,
    pub authority: String,
    pub proto: ProtoChoice,
}

impl Origin {
    /// An origin with an empty job queue and no slots.
    pub fn new(dest: OriginAddr) -> Self {
        let (jobs_tx, jobs) = async_channel::unbounded();
        Self {
            dest,
            jobs_tx,
            jobs,
            idle: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
        }
    }

    /// Takes the next job, counted as an idle slot while waiting. `Err` when the queue is
    /// closed and empty.
    pub async fn next_job(&self) -> Result<Job, async_channel::RecvError> {
        self.idle.fetch_add(1, Ordering::SeqCst);
        let _idle = scopeguard(|| {
            self.idle.fetch_sub(1, Ordering::SeqCst);
        });
        self.jobs.recv().await
    }

    /// Queues a job; gives it back when the queue is closed (the run is ending: rare,
    /// so the box costs nothing on the hot path).
    pub fn try_send(&self, job: Job) -> Result<(), Box<Job>> {
        self.jobs_tx
            .try_send(job)
            .map_err(|e| Box::new(e.into_inner()))
    }

    /// Jobs waiting in the queue.
    pub fn queued(&self) -> usize {
        self.jobs_tx.len()
    }

    /// Closes the queue: slots end once it is empty.
    pub fn close(&self) {
        self.jobs_tx.close();
    }

    /// Takes a queued job without waiting.
    pub fn try_take(&self) -> Option<Job> {
        self.jobs.try_recv().ok()
    }

    /// True when a slot is waiting for a job.
    pub fn has_idle_slot(&self) -> bool {
        self.idle.load(Ordering::SeqCst) > 0
    }

    /// Counts one more slot if fewer than `max` run; false when the pool is full.
    pub fn try_add_slot(&self, max: usize) -> bool {
        self.live
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Slots running.
    pub fn live_slots(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

/// Runs `f` when dropped (also when the owning future is cancelled mid-await).
pub fn scopeguard<F: FnMut()>(f: F) -> impl Drop {
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
struct Pending {
    n: AtomicU64,
    zero: Notify,
}

impl Pending {
    /// Waits until no job is outstanding.
    async fn wait_zero(&self) {
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
    /// The run's one shutdown token: cancelled on Ctrl-C/SIGTERM; the load drivers and
    /// the connections watch it.
    shutdown: CancellationToken,
    retries: AtomicU64,
    next_conn_id: AtomicU64,
    next_local: AtomicUsize,
    next_seq: AtomicU64,
    /// Abort handles of the connection slots, for an interrupted run's grace period.
    slot_handles: Mutex<Vec<AbortHandle>>,
    /// Notified whenever a slot ends.
    slot_exited: Notify,
    pending: Arc<Pending>,
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
            shutdown: CancellationToken::new(),
            retries: AtomicU64::new(0),
            next_conn_id: AtomicU64::new(1),
            next_local: AtomicUsize::new(0),
            next_seq: AtomicU64::new(0),
            slot_handles: Mutex::new(Vec::new()),
            slot_exited: Notify::new(),
            pending: Arc::default(),
        }
    }

    /// Stops the run: no new job is made, connections finish what they hold.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// True once [`Self::stop`] was called.
    pub fn stopped(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Resolves when [`Self::stop`] is called (at once if it was).
    pub fn stopping(&self) -> WaitForCancellationFuture<'_> {
        self.shutdown.cancelled()
    }

    /// Requests re-sent by `--retry-unprocessed`.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// A new connection id.
    pub fn conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The next `--local-addr`, round robin; None when none was given.
    pub fn local_ip(&self) -> Option<IpAddr> {
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

    /// Waits until every job made so far has ended (and any retry it made).
    pub async fn wait_jobs_done(&self) {
        self.pending.wait_zero().await;
    }

    /// Keeps a slot's abort handle for [`Self::abort_slots`].
    pub fn add_slot(&self, handle: AbortHandle) {
        self.slot_handles
            .lock()
            .expect("slot handle list")
            .push(handle);
    }

    /// Called by a slot as it ends.
    pub fn slot_ended(&self, origin: &Origin) {
        origin.live.fetch_sub(1, Ordering::SeqCst);
        self.slot_exited.notify_waiters();
    }

    /// Slots still running, over all origins.
    pub fn live_slots(&self) -> usize {
        self.origins.iter().map(Origin::live_slots).sum()
    }

    /// Waits until every connection slot has ended.
    pub async fn wait_slots(&self) {
        loop {
            let exited = self.slot_exited.notified();
            if self.live_slots() == 0 {
                return;
            }
            exited.await;
        }
    }

    /// Aborts every connection slot (an interrupted run out of patience).
    pub fn abort_slots(&self) {
        for h in self.slot_handles.lock().expect("slot handle list").iter() {
            h.abort();
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
        let _ = origin.try_send(retry);
    }
}
