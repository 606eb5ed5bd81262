//! One HTTP/1.1 connection (hyper's client connection API): requests one at a time,
//! keep-alive or not, each failure classified with the phase it happened in.
//!
//! The phase of a failure before the response head comes from the tap's byte counters:
//! nothing written yet is `write`, written but nothing read is `await_headers`.
use std::{
    sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering::Relaxed},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use super::{
    open::Opened,
    state::{Ctx, Job, Origin, Prepared},
    tap::{Tap, TapHandle, TapMode},
};
use crate::{
    classify::{classify_hyper, close_how, find_io},
    record::{ConnState, Failure, Outcome},
};
use events::model::{Class, CloseHow, Phase};

/// The connection task hyper hands back, spawned.
type Driver = tokio::task::JoinHandle<hyper::Result<()>>;

/// How the connection ended, and why (empty when nothing went wrong).
type Close = (CloseHow, String);

/// Runs the connection until it fails, the server closes it, keep-alive is off, or the
/// queue is done. Returns a job that was taken but never sent (the connection turned
/// out to be closed), for the next connection.
pub async fn run(ctx: &Ctx, origin: &Origin, opened: Opened, first: Job) -> Option<Job> {
    let Opened {
        stream, mut state, ..
    } = opened;
    let (tap, handle) = Tap::new(stream, TapMode::CountOnly);
    let (mut sender, connection) = match http1::handshake(TokioIo::new(tap)).await {
        Ok(pair) => pair,
        Err(e) => {
            let failure = Failure {
                class: classify_hyper(&e, Phase::Write),
                phase: Phase::Write,
                error: format!("HTTP/1.1 handshake: {e}"),
            };
            ctx.fail_job(first, state.facts(Instant::now(), 0), failure)
                .await;
            return None;
        }
    };
    let mut driver = tokio::spawn(connection);
    let mut job = first;
    let mut leftover = None;
    let close = loop {
        // A closed connection (the server timed it out while idle) is found before the
        // job is written: the job goes to a new connection, unsent.
        if sender.ready().await.is_err() {
            leftover = Some(job);
            break None;
        }
        if let Some(close) = send_one(ctx, origin, &mut sender, &handle, &mut state, job).await {
            break Some(close);
        }
        job = match next_job(ctx, origin, &mut driver).await {
            Ok(j) => j,
            Err(close) => break Some(close),
        };
    };
    drop(sender);
    let (how, error) = match close {
        Some(c) => c,
        None => driver_end(&mut driver).await,
    };
    driver.abort();
    ctx.rec.closed(&state, how, error).await;
    leftover
}

/// Sends one job and records its outcome; `Some` when the connection must close after
/// it (a failure, keep-alive off, or the run stopping).
async fn send_one(
    ctx: &Ctx,
    origin: &Origin,
    sender: &mut http1::SendRequest<Full<Bytes>>,
    tap: &TapHandle,
    state: &mut ConnState,
    job: Job,
) -> Option<Close> {
    let facts = state.facts(Instant::now(), 0);
    let req = request(ctx, origin, &ctx.targets[job.target]);
    let out = exchange(sender, tap, req, ctx.cfg.timeout).await;
    let ended = Instant::now();
    let failed = out.failure.clone();
    state.requests += 1;
    state.last_active = ended;
    ctx.rec.request(&job.attempt, facts, out, ended).await;
    job.finish();
    if let Some(f) = failed {
        return Some((close_how(f.class), f.error));
    }
    if !ctx.cfg.keepalive || ctx.stopped() {
        return Some((CloseHow::Local, String::new()));
    }
    None
}

/// The HTTP/1.1 request for a target: its headers, plus Host and (without keep-alive)
/// `Connection: close`.
fn request(ctx: &Ctx, origin: &Origin, target: &Prepared) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(target.method.clone())
        .uri(target.path.clone())
        .body(Full::new(target.body.clone()))
        .expect("a request built from validated parts");
    *req.headers_mut() = target.headers.clone();
    if !req.headers().contains_key(header::HOST) {
        req.headers_mut().insert(
            header::HOST,
            origin.dest.authority.parse().expect("validated authority"),
        );
    }
    if !ctx.cfg.keepalive {
        req.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    req
}

/// Waits for the connection's next job (within `--max-lag`); `Err` with how the
/// connection closes when the queue is done or the server closed it while idle.
async fn next_job(ctx: &Ctx, origin: &Origin, driver: &mut Driver) -> Result<Job, Close> {
    let local = || (CloseHow::Local, String::new());
    let job = tokio::select! {
        j = origin.next_job() => j.map_err(|_| local())?,
        r = driver => {
            // The server closed the idle connection before we had a job for it.
            return Err(match r {
                Ok(Ok(())) => (CloseHow::PeerFin, String::new()),
                Ok(Err(e)) => (close_how(classify_hyper(&e, Phase::Body)), e.to_string()),
                Err(e) => (CloseHow::Error, e.to_string()),
            });
        }
    };
    match ctx.check_lag(job).await {
        Some(j) => Ok(j),
        // The job was recorded as overload; wait for the next one.
        None => origin.next_job().await.map_err(|_| local()),
    }
}

/// How the connection ended when the server closed it under a job not yet sent.
async fn driver_end(driver: &mut Driver) -> Close {
    match tokio::time::timeout(Duration::from_secs(1), driver).await {
        Ok(Ok(Ok(()))) => (CloseHow::PeerFin, String::new()),
        Ok(Ok(Err(e))) => (close_how(classify_hyper(&e, Phase::Body)), e.to_string()),
        _ => (
            CloseHow::Error,
            "connection driver did not finish".to_owned(),
        ),
    }
}

async fn exchange(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    tap: &TapHandle,
    req: Request<Full<Bytes>>,
    timeout: Duration,
) -> Outcome {
    let written0 = tap.bytes_written();
    let read0 = tap.bytes_read();
    let sent = Instant::now();
    // Atomics rather than Cells: the future must be Send, and these outlive it when the
    // timeout drops it mid-flight.
    let in_body = AtomicBool::new(false);
    let code = AtomicU16::new(0);
    let bytes_in = AtomicU64::new(0);
    let work = async {
        let resp = sender.send_request(req).await?;
        code.store(resp.status().as_u16(), Relaxed);
        in_body.store(true, Relaxed);
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            if let Some(d) = frame?.data_ref() {
                bytes_in.fetch_add(d.len() as u64, Relaxed);
            }
        }
        Ok::<(), hyper::Error>(())
    };
    let result = tokio::time::timeout(timeout, work).await;
    let head_phase = || {
        if tap.bytes_written() == written0 {
            Phase::Write
        } else {
            Phase::AwaitHeaders
        }
    };
    let phase = if in_body.load(Relaxed) {
        Phase::Body
    } else {
        head_phase()
    };
    let failure = match result {
        Ok(Ok(())) => None,
        Err(_) => Some(Failure {
            class: Class::Timeout,
            phase,
            error: format!(
                "timeout after {timeout:?} in {phase} ({} bytes received)",
                tap.bytes_read() - read0
            ),
        }),
        Ok(Err(e)) => {
            let class = classify_hyper(&e, phase);
            let detail = find_io(&e).map_or_else(|| e.to_string(), |io| format!("{e}: {io}"));
            Some(Failure {
                class,
                phase,
                error: detail,
            })
        }
    };
    Outcome {
        code: code.load(Relaxed),
        bytes_in: bytes_in.load(Relaxed),
        sent: Some(sent),
        failure,
        h2: None,
    }
}
