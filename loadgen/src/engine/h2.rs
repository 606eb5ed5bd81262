//! One HTTP/2 connection: up to `max_streams_per_conn` streams at once over the h2
//! crate, with the frame tap underneath reporting what h2 does not expose (GOAWAY's
//! last_stream_id and debug data, RST_STREAM codes, SETTINGS).
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use h2::client::SendRequest;
use http::Request;
use tokio::{
    sync::Semaphore,
    task::{JoinError, JoinHandle, JoinSet},
};

use super::{
    open::Opened,
    state::{Ctx, Job, Origin, Prepared},
    tap::{ReadEnd, Tap, TapHandle, TapMode},
};
use crate::{
    classify::{classify_h2, close_how},
    record::{ConnState, Failure, Outcome},
};
use events::model::{Class, CloseHow, ConnStep, H2Facts, Phase};

/// The connection task h2 hands back, spawned.
type Driver = JoinHandle<Result<(), h2::Error>>;
/// What the connection task ended with.
type DriverResult = Result<Result<(), h2::Error>, JoinError>;

/// Runs the connection until it ends or the queue is done. Returns a job taken but never
/// sent (the connection was going away), for the next connection.
pub async fn run(ctx: &Arc<Ctx>, origin: &Origin, opened: Opened, first: Job) -> Option<Job> {
    let Opened { stream, state, .. } = opened;
    let conn_id = state.conn_id;
    let (tap, handle) = Tap::new(stream, TapMode::Http2);
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 24);
    let (send, connection) = match builder.handshake::<_, Bytes>(tap).await {
        Ok(pair) => pair,
        Err(e) => {
            handshake_failed(ctx, &handle, &state, first, &e).await;
            return None;
        }
    };
    let mut driver = tokio::spawn(connection);
    let conn = StreamCtx {
        handle,
        state: Arc::new(Mutex::new(state)),
        inflight: Arc::new(AtomicU32::new(0)),
    };
    let mut streams = JoinSet::new();
    let (leftover, driver_result) =
        pull(ctx, origin, &conn, &send, &mut driver, &mut streams, first).await;
    drop(send);
    while streams.join_next().await.is_some() {}
    let result = match driver_result {
        Some(r) => r,
        None => match tokio::time::timeout(Duration::from_secs(2), &mut driver).await {
            Ok(r) => r,
            Err(_) => Ok(Ok(())),
        },
    };
    driver.abort();
    emit_frames(ctx, conn_id, &conn.handle).await;
    let (how, error) = match result {
        Ok(Ok(())) if conn.handle.goaway().is_some() => (CloseHow::Goaway, String::new()),
        Ok(Ok(())) => (CloseHow::Local, String::new()),
        Ok(Err(e)) => {
            let class = effective_class(classify_h2(&e, Phase::Body), &conn.handle);
            (close_how(class), e.to_string())
        }
        Err(e) => (CloseHow::Error, e.to_string()),
    };
    let st = conn.state.lock().unwrap().clone();
    ctx.rec.closed(&st, how, error).await;
    leftover
}

/// Records the first job as failed, the frames seen and the `closed` line of a
/// connection whose HTTP/2 handshake failed.
async fn handshake_failed(
    ctx: &Ctx,
    handle: &TapHandle,
    state: &ConnState,
    first: Job,
    e: &h2::Error,
) {
    let class = effective_class(classify_h2(e, Phase::Write), handle);
    let failure = Failure {
        class,
        phase: Phase::Write,
        error: format!("HTTP/2 handshake: {e}"),
    };
    ctx.fail_job(first, state.facts(Instant::now(), 0), failure)
        .await;
    emit_frames(ctx, state.conn_id, handle).await;
    ctx.rec.closed(state, close_how(class), e.to_string()).await;
}

/// Pulls jobs onto streams, at most `max_streams_per_conn` at once, until the queue is
/// done, the connection goes away or ends, or the run stops. Returns the job taken but
/// not sent, and the connection task's result when it ended first.
async fn pull(
    ctx: &Arc<Ctx>,
    origin: &Origin,
    conn: &StreamCtx,
    send: &SendRequest<Bytes>,
    driver: &mut Driver,
    streams: &mut JoinSet<()>,
    first: Job,
) -> (Option<Job>, Option<DriverResult>) {
    let slots = Arc::new(Semaphore::new(ctx.cfg.max_streams_per_conn.max(1) as usize));
    let mut next = Some(first);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            r = &mut *driver => return (next.take(), Some(r)),
        };
        let job = match next_sendable(ctx, origin, next.take(), driver).await {
            Pulled::Job(j) => j,
            Pulled::QueueDone => return (None, None),
            Pulled::DriverEnded(r) => return (None, Some(r)),
        };
        // ready() fails once the connection is going away (GOAWAY received) or broken.
        let ready = match send.clone().ready().await {
            Ok(s) => s,
            Err(e) => return (going_away(ctx, conn, job, &e).await, None),
        };
        let (ctx_run, sctx) = (ctx.clone(), conn.clone());
        streams.spawn(async move {
            let _permit = permit;
            run_stream(&ctx_run, sctx, ready, job).await;
        });
        // Reap finished streams as we go: a JoinSet keeps every finished task until it
        // is joined, which grew memory with every request on a long-lived connection.
        while streams.try_join_next().is_some() {}
        if ctx.stopped() {
            return (None, None);
        }
    }
}

/// What waiting for the next job gave.
enum Pulled {
    Job(Job),
    /// The origin's queue is closed and empty.
    QueueDone,
    /// The connection ended while waiting.
    DriverEnded(DriverResult),
}

/// The next job within `--max-lag`: `next` if given, else from the queue.
async fn next_sendable(
    ctx: &Ctx,
    origin: &Origin,
    mut next: Option<Job>,
    driver: &mut Driver,
) -> Pulled {
    loop {
        let j = match next.take() {
            Some(j) => j,
            None => tokio::select! {
                j = origin.next_job() => match j {
                    Ok(j) => j,
                    Err(_) => return Pulled::QueueDone,
                },
                r = &mut *driver => return Pulled::DriverEnded(r),
            },
        };
        if let Some(j) = ctx.check_lag(j).await {
            return Pulled::Job(j);
        }
    }
}

/// A job the connection can no longer send: carried to the next connection once, then
/// recorded as failed. Returns the job to carry.
async fn going_away(ctx: &Ctx, conn: &StreamCtx, mut job: Job, e: &h2::Error) -> Option<Job> {
    if job.carried == 0 {
        job.carried = 1;
        return Some(job);
    }
    // Carried once already: a second connection also refused it.
    let class = effective_class(classify_h2(e, Phase::Write), &conn.handle);
    let failure = Failure {
        class,
        phase: Phase::Write,
        error: format!("not sent: connection going away: {e}"),
    };
    let facts = conn.state.lock().unwrap().facts(Instant::now(), 0);
    ctx.fail_job(job, facts, failure).await;
    None
}

/// What every stream of a connection shares.
#[derive(Clone)]
struct StreamCtx {
    handle: TapHandle,
    state: Arc<Mutex<ConnState>>,
    inflight: Arc<AtomicU32>,
}

async fn run_stream(ctx: &Ctx, s: StreamCtx, send: SendRequest<Bytes>, job: Job) {
    let target = &ctx.targets[job.target];
    let before = s.inflight.fetch_add(1, Ordering::Relaxed);
    let sent = Instant::now();
    let facts = s.state.lock().unwrap().facts(sent, before);
    let out = exchange(ctx, &s.handle, send, target, sent).await;
    s.inflight.fetch_sub(1, Ordering::Relaxed);
    let ended = Instant::now();
    {
        let mut st = s.state.lock().unwrap();
        st.requests += 1;
        st.last_active = ended;
    }
    let class = out.failure.as_ref().map(|f| f.class);
    let unprocessed = out.h2.as_ref().is_some_and(|h| {
        h.above_last_stream_id == Some(true) || h.rst_code.as_deref() == Some("REFUSED_STREAM")
    });
    ctx.rec.request(&job.attempt, facts, out, ended).await;
    ctx.maybe_retry(&job, class, unprocessed).await;
    job.finish();
}

async fn exchange(
    ctx: &Ctx,
    tap: &TapHandle,
    mut send: SendRequest<Bytes>,
    target: &Prepared,
    sent: Instant,
) -> Outcome {
    let mut req = Request::builder()
        .method(target.method.clone())
        .uri(target.uri.clone())
        .body(())
        .expect("a request built from validated parts");
    *req.headers_mut() = target.headers.clone();
    // RFC 9113 section 8.2.2: connection-specific headers are malformed in HTTP/2.
    for h in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "host",
    ] {
        req.headers_mut().remove(h);
    }
    let mut h2 = H2Facts::default();
    let mut code = 0u16;
    let mut bytes_in = 0u64;
    let mut phase = Phase::Write;
    let end_of_stream = target.body.is_empty();
    let work = async {
        let (resp, mut body_tx) = send.send_request(req, end_of_stream)?;
        h2.stream_id = Some(resp.stream_id().as_u32());
        if !end_of_stream {
            body_tx.send_data(target.body.clone(), true)?;
        }
        phase = Phase::AwaitHeaders;
        let resp = resp.await?;
        code = resp.status().as_u16();
        phase = Phase::Body;
        let mut body = resp.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            bytes_in += chunk.len() as u64;
            // Give the window back, or bodies larger than it stall (RFC 9113 6.9).
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        Ok::<(), h2::Error>(())
    };
    let result = tokio::time::timeout(ctx.cfg.timeout, work).await;
    let failure = match result {
        Ok(Ok(())) => None,
        Err(_) => Some(Failure {
            class: Class::Timeout,
            phase,
            error: format!("timeout after {:?} in {phase}", ctx.cfg.timeout),
        }),
        Ok(Err(e)) => {
            let class = effective_class(classify_h2(&e, phase), tap);
            if class == Class::H2RstStream {
                h2.rst_code = e
                    .reason()
                    .map(|r| wire::h2frame::ErrorCode(r.into()).name().into_owned());
            }
            if class == Class::H2Goaway
                && let Some(g) = tap.goaway()
            {
                h2.above_last_stream_id =
                    h2.stream_id.map(|id| id > g.last_stream_id).or(Some(true));
                h2.goaway = Some(g);
            }
            Some(Failure {
                class,
                phase,
                error: e.to_string(),
            })
        }
    };
    Outcome {
        code,
        bytes_in,
        sent: Some(sent),
        failure,
        h2: (h2 != H2Facts::default()).then_some(h2),
    }
}

/// A request that died because its connection closed after the server's GOAWAY was
/// ended by that GOAWAY (shared/DESIGN.md: "GOAWAY ended the request").
///
/// The h2 crate reports a connection that ended under a stream as a "broken pipe"
/// whether the peer sent FIN or RST; the tap saw which, so a stream cut by the peer's FIN
/// is `peer_eof`, not `tcp_reset`.
fn effective_class(class: Class, tap: &TapHandle) -> Class {
    match class {
        Class::PeerEof | Class::TcpReset | Class::Other if tap.goaway().is_some() => {
            Class::H2Goaway
        }
        Class::TcpReset if tap.read_end() == ReadEnd::Eof => Class::PeerEof,
        c => c,
    }
}

async fn emit_frames(ctx: &Ctx, conn_id: u64, tap: &TapHandle) {
    for frame in tap.take_frames() {
        ctx.rec
            .conn(conn_id, Instant::now(), ConnStep::Frame { frame })
            .await;
    }
}
