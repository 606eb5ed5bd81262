//! Each origin's pool of connection slots: it grows to the concurrency the load needs,
//! and each slot owns one connection at a time, handing it to the HTTP/1.1 or HTTP/2
//! driver.
use std::sync::Arc;

use super::{
    h1, h2,
    open::open,
    state::{Ctx, Job, scopeguard},
};

/// Starts another connection slot for the origin when none is idle and the pool is below
/// `--connections`: the pool grows to the concurrency the load needs, so warm
/// connections are reused instead of each job opening its own.
pub fn grow_pool(ctx: &Arc<Ctx>, origin_idx: usize) {
    let origin = &ctx.origins[origin_idx];
    if origin.has_idle_slot() {
        return;
    }
    if origin.try_add_slot(ctx.cfg.connections.max(1)) {
        let handle = tokio::spawn(slot(ctx.clone(), origin_idx));
        ctx.add_slot(handle.abort_handle());
    }
}

/// One connection slot of an origin: pulls jobs, opens a connection when it has work,
/// runs it until it ends, and starts over. Returns when the origin's queue is closed
/// and empty.
async fn slot(ctx: Arc<Ctx>, origin_idx: usize) {
    let origin = &ctx.origins[origin_idx];
    let _live = scopeguard(|| ctx.slot_ended(origin));
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
            h2::run(&ctx, origin, opened, job).await
        } else {
            h1::run(&ctx, origin, opened, job).await
        };
    }
}
