//! Driving the load: the open model's schedule and the closed model's virtual users make
//! jobs and put them on their origin's queue, until the schedule or the duration ends or
//! the run is stopped.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{sync::oneshot, task::JoinSet};

use super::{
    config::Load,
    pool::grow_pool,
    state::{Ctx, Job},
};
use crate::{rate::UserGroup, record::Failure};
use events::model::{Class, ConnFacts, Phase};

/// Drives the load until the schedule or the duration ends, or the run is stopped.
pub async fn drive(ctx: Arc<Ctx>) {
    match &ctx.cfg.load {
        Load::Open(_) => open_model(ctx).await,
        Load::Closed { groups, duration } => {
            let groups = groups.clone();
            let duration = *duration;
            closed_model(ctx, groups, duration).await;
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

async fn enqueue(ctx: &Arc<Ctx>, job: Job, cap: usize) {
    let origin_idx = ctx.targets[job.target].origin;
    let origin = &ctx.origins[origin_idx];
    if origin.queued() >= cap {
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
    if let Err(job) = origin.try_send(job) {
        job.finish();
        return;
    }
    grow_pool(ctx, origin_idx);
}

async fn open_model(ctx: Arc<Ctx>) {
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
                () = ctx.stopping() => return,
            }
        }
        if ctx.stopped() {
            return;
        }
        let job = ctx.job(i % n, at, None);
        enqueue(&ctx, job, cap).await;
    }
}

async fn closed_model(ctx: Arc<Ctx>, groups: Vec<UserGroup>, duration: Option<Duration>) {
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
            let user = User {
                ctx: ctx.clone(),
                group: g.clone(),
                index: u,
                targets: targets.clone(),
                deadline,
            };
            let seed = (gi as u64) << 32 | u64::from(u);
            users.spawn(user.run(seed));
        }
    }
    while users.join_next().await.is_some() {}
}

/// One virtual user of a closed model.
struct User {
    ctx: Arc<Ctx>,
    group: Arc<UserGroup>,
    /// Its index in the group (spreads the ramp-up).
    index: u32,
    /// The targets it cycles through.
    targets: Vec<usize>,
    deadline: Option<Instant>,
}

impl User {
    /// Sends, waits for the answer, thinks, repeats, until the run ends.
    async fn run(self, seed: u64) {
        // xorshift64*: think times need spread, not cryptographic randomness.
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next_rand = move || {
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let g = &self.group;
        if let Some(ramp) = g.ramp_up {
            let delay = ramp.mul_f64(f64::from(self.index) / f64::from(g.users.max(1)));
            if self.wait(delay).await {
                return;
            }
        }
        let ctx = &self.ctx;
        let mut k = 0usize;
        loop {
            if ctx.stopped() || self.deadline.is_some_and(|d| Instant::now() >= d) {
                return;
            }
            let mut job = ctx.job(self.targets[k % self.targets.len()], Instant::now(), None);
            k += 1;
            let (tx, rx) = oneshot::channel();
            job.done = Some(tx);
            enqueue(ctx, job, usize::MAX).await;
            tokio::select! {
                _ = rx => {}
                () = ctx.stopping() => return,
            }
            let think = g.think.sample(next_rand());
            // No think time: go straight on (a zero sleep still waits for the next timer tick).
            if !think.is_zero() && self.wait(think).await {
                return;
            }
        }
    }

    /// Waits out a ramp delay or a think time; true when the run ends first (a stop, or
    /// the deadline falling inside the wait).
    async fn wait(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        let (until, ends_run) = match self.deadline {
            Some(dl) if dl <= until => (dl, true),
            _ => (until, false),
        };
        tokio::select! {
            () = tokio::time::sleep_until(until.into()) => ends_run,
            () = self.ctx.stopping() => true,
        }
    }
}
