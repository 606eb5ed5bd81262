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

use crate::{
    classify::{classify_hyper, find_io},
    engine::{Ctx, Job, Opened, Origin},
    record::{Failure, Outcome},
    tap::{Tap, TapHandle, TapMode},
};
use events::model::{Class, CloseHow, ConnStep, Phase};

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
    let mut close: Option<(CloseHow, String)> = None;
    loop {
        // A closed connection (the server timed it out while idle) is found before the
        // job is written: the job goes to a new connection, unsent.
        if sender.ready().await.is_err() {
            leftover = Some(job);
            break;
        }
        let now = Instant::now();
        let facts = state.facts(now, 0);
        let target = &ctx.targets[job.target];
        let mut req = Request::builder()
            .method(target.method.clone())
            .uri(target.path.clone())
            .body(Full::new(target.body.clone()))
            .expect("a request built from validated parts");
        *req.headers_mut() = target.headers.clone();
        if !req.headers().contains_key(header::HOST) {
            req.headers_mut().insert(
                header::HOST,
                origin.authority.parse().expect("validated authority"),
            );
        }
        if !ctx.cfg.keepalive {
            req.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        let out = exchange(&mut sender, &handle, req, ctx.cfg.timeout).await;
        let ended = Instant::now();
        let failed = out.failure.clone();
        state.requests += 1;
        state.last_active = ended;
        ctx.rec.request(&job.attempt, facts, out, ended).await;
        job.finish();
        if let Some(f) = failed {
            close = Some((close_how(f.class), f.error));
            break;
        }
        if !ctx.cfg.keepalive || ctx.stopped() {
            close = Some((CloseHow::Local, String::new()));
            break;
        }
        job = tokio::select! {
            j = origin.next_job() => match j {
                Ok(j) => j,
                Err(_) => { close = Some((CloseHow::Local, String::new())); break; }
            },
            r = &mut driver => {
                // The server closed the idle connection before we had a job for it.
                close = Some(match r {
                    Ok(Ok(())) => (CloseHow::PeerFin, String::new()),
                    Ok(Err(e)) => (close_how(classify_hyper(&e, Phase::Body)), e.to_string()),
                    Err(e) => (CloseHow::Error, e.to_string()),
                });
                break;
            }
        };
        match ctx.check_lag(job).await {
            Some(j) => job = j,
            None => {
                // The job was recorded as overload; wait for the next one.
                match origin.next_job().await {
                    Ok(j) => job = j,
                    Err(_) => {
                        close = Some((CloseHow::Local, String::new()));
                        break;
                    }
                }
            }
        }
    }
    drop(sender);
    let (how, error) = match close {
        Some(c) => c,
        None => match tokio::time::timeout(Duration::from_secs(1), &mut driver).await {
            Ok(Ok(Ok(()))) => (CloseHow::PeerFin, String::new()),
            Ok(Ok(Err(e))) => (close_how(classify_hyper(&e, Phase::Body)), e.to_string()),
            _ => (
                CloseHow::Error,
                "connection driver did not finish".to_owned(),
            ),
        },
    };
    driver.abort();
    ctx.rec
        .conn(
            state.conn_id,
            Instant::now(),
            ConnStep::Closed {
                how,
                error,
                requests: state.requests,
                age_us: state.opened.elapsed().as_micros() as u64,
            },
        )
        .await;
    leftover
}

/// How the connection ended, from the class of the failure that ended it.
pub fn close_how(class: Class) -> CloseHow {
    match class {
        Class::TcpReset => CloseHow::PeerRst,
        Class::PeerEof => CloseHow::PeerFin,
        Class::H2Goaway => CloseHow::Goaway,
        Class::HttpStatus => CloseHow::Local,
        _ => CloseHow::Error,
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
