//! The HTTP/2 server (RFC 9113) on the `h2` crate, for TLS with ALPN h2 and for h2c.
//!
//! One task drives the h2 connection and owns every per-connection decision (GOAWAY,
//! abort, idle close); each stream is answered by its own task, which reports back over a
//! channel, so responses can be held while the connection keeps reading frames.

use std::time::Duration;

use bytes::Bytes;
use h2::SendStream;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use crate::faults::{
    self, Action, BEFORE_RST, ConnCtx, MID_RESPONSE_LEN_BYTES, MID_RESPONSE_SENT_BYTES,
};
use crate::spec::Fault;

/// How long a client may take to send the preface and SETTINGS.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a stream task reports to the connection task.
#[derive(Debug)]
enum StreamDone {
    /// The response was sent in full (or the stream ended trying).
    Answered,
    /// Abort the connection with RST now.
    Abort(SendStream<Bytes>),
    /// Close the connection with FIN now.
    Fin(SendStream<Bytes>),
}

/// Per-connection bookkeeping of the connection task.
struct Counts {
    /// Streams accepted so far.
    accepted: usize,
    /// Streams answered in full.
    answered: usize,
    /// Streams accepted and not yet answered.
    in_flight: usize,
    /// GOAWAY already sent.
    going_away: bool,
}

/// Serves HTTP/2 on `io` until the client leaves, the fault ends the connection, or
/// shutdown.
pub(crate) async fn serve<S>(io: S, mut ctx: ConnCtx)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // No SETTINGS_MAX_CONCURRENT_STREAMS is advertised (unlimited, RFC 9113 section 6.5.2):
    // `goaway-on-concurrency` punishes concurrency the client was never told to limit,
    // which is what Go's server (and so Traefik) does under stream floods.
    let handshake = h2::server::Builder::new().handshake::<S, Bytes>(io);
    let mut conn = tokio::select! {
        done = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake) => match done {
            Ok(Ok(conn)) => conn,
            Ok(Err(err)) => {
                debug!(conn = ctx.id, cause = %err, "h2 handshake");
                return;
            }
            Err(_) => {
                debug!(conn = ctx.id, "h2 handshake timed out");
                return;
            }
        },
        () = ctx.shutdown.wait() => return,
    };

    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<StreamDone>();
    let mut counts = Counts {
        accepted: 0,
        answered: 0,
        in_flight: 0,
        going_away: false,
    };
    // Streams never to be answered (stall, or caught by GOAWAY): kept so that dropping
    // them does not send RST_STREAM CANCEL ahead of the fault's own frames.
    let mut held: Vec<SendResponse<Bytes>> = Vec::new();
    let idle_limit = ctx.idle_limit();
    let mut idle_since = Instant::now();

    if let Fault::GoAway { reason, after: 0 } = ctx.fault {
        go_away(&mut conn, &mut counts, reason, ctx.id);
    }

    loop {
        // Only `close-idle` has a deadline, and it runs only while nothing is in flight.
        let idle_deadline = idle_limit
            .filter(|_| counts.in_flight == 0 && held.is_empty())
            .map(|limit| idle_since + limit);
        // Biased, connection first: a stream task queues its last DATA frame, then reports
        // Answered; polling the connection first writes that frame to the socket before the
        // report can trigger a GOAWAY, so the GOAWAY never cuts the answer it follows.
        tokio::select! {
            biased;
            next = conn.accept() => match next {
                None => break,
                Some(Err(err)) => {
                    debug!(conn = ctx.id, cause = %err, "h2 connection ended");
                    break;
                }
                Some(Ok((request, respond))) => {
                    idle_since = Instant::now();
                    counts.accepted += 1;
                    let index = counts.accepted - 1;
                    let body = request.into_body();
                    match on_stream(&ctx, &mut counts, index, body, respond, &done_tx) {
                        StreamStep::Continue => {}
                        StreamStep::Hold(respond) => held.push(respond),
                        StreamStep::GoAway(reason, respond) => {
                            held.push(respond);
                            go_away(&mut conn, &mut counts, reason, ctx.id);
                        }
                        StreamStep::Abort => {
                            let answered = counts.answered;
                            debug!(conn = ctx.id, answered, "aborting with RST");
                            drop(conn);
                            ctx.rst.abort();
                            return;
                        }
                    }
                }
            },
            Some(done) = done_rx.recv() => match done {
                StreamDone::Answered => {
                    idle_since = Instant::now();
                    counts.answered += 1;
                    counts.in_flight = counts.in_flight.saturating_sub(1);
                    if let Fault::GoAway { reason, after } = ctx.fault
                        && counts.answered >= after
                    {
                        go_away(&mut conn, &mut counts, reason, ctx.id);
                    }
                }
                // The half-sent stream is dropped only after the connection: dropped
                // first, h2 would queue RST_STREAM CANCEL ahead of the cut.
                StreamDone::Abort(stream) => {
                    drop(conn);
                    drop(stream);
                    ctx.rst.abort();
                    return;
                }
                // Dropping the connection closes the socket: FIN with no GOAWAY, as when a
                // process dies; the client sees EOF mid-body.
                StreamDone::Fin(stream) => {
                    drop(conn);
                    drop(stream);
                    return;
                }
            },
            () = sleep_until_some(idle_deadline) => {
                let answered = counts.answered;
                debug!(conn = ctx.id, answered, "idle limit reached, closing with FIN");
                return;
            }
            () = ctx.shutdown.wait() => return,
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Sends GOAWAY once: h2's abrupt shutdown writes the code with the last stream id it
/// processed (RFC 9113 section 6.8) and closes the connection once the frame is out.
fn go_away<S, B>(
    conn: &mut h2::server::Connection<S, B>,
    counts: &mut Counts,
    reason: Reason,
    id: u64,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    B: bytes::Buf,
{
    if !counts.going_away {
        debug!(
            conn = id,
            ?reason,
            answered = counts.answered,
            "sending GOAWAY"
        );
        counts.going_away = true;
        conn.abrupt_shutdown(reason);
    }
}

enum StreamStep {
    Continue,
    Hold(SendResponse<Bytes>),
    GoAway(Reason, SendResponse<Bytes>),
    Abort,
}

/// Decides what happens to stream number `index` (0-based) of the connection.
fn on_stream(
    ctx: &ConnCtx,
    counts: &mut Counts,
    index: usize,
    body: RecvStream,
    mut respond: SendResponse<Bytes>,
    done_tx: &mpsc::UnboundedSender<StreamDone>,
) -> StreamStep {
    if counts.going_away {
        return StreamStep::Hold(respond);
    }
    match ctx.fault {
        Fault::RstStream { reason, after } if index >= after => {
            respond.send_reset(reason);
            return StreamStep::Continue;
        }
        Fault::GoAwayOnConcurrency { max_streams, hold } => {
            counts.in_flight += 1;
            if counts.in_flight > max_streams {
                return StreamStep::GoAway(Reason::ENHANCE_YOUR_CALM, respond);
            }
            spawn_answer(ctx, body, respond, done_tx, hold, ok_action());
            return StreamStep::Continue;
        }
        _ => {}
    }
    let action = faults::action(&ctx.fault, counts.answered);
    match action {
        Action::Rst => StreamStep::Abort,
        Action::Stall => StreamStep::Hold(respond),
        action => {
            counts.in_flight += 1;
            spawn_answer(ctx, body, respond, done_tx, Duration::ZERO, action);
            StreamStep::Continue
        }
    }
}

fn ok_action() -> Action {
    faults::action(&Fault::Ok { body_bytes: 2 }, 0)
}

/// Answers one stream on its own task: drain the request body, wait, respond.
fn spawn_answer(
    ctx: &ConnCtx,
    body: RecvStream,
    respond: SendResponse<Bytes>,
    done_tx: &mpsc::UnboundedSender<StreamDone>,
    hold: Duration,
    action: Action,
) {
    let done_tx = done_tx.clone();
    let mut shutdown = ctx.shutdown.clone();
    let conn = ctx.id;
    tokio::spawn(async move {
        tokio::select! {
            done = answer(body, respond, hold, action) => {
                if let Err(err) = &done {
                    debug!(conn, cause = %err, "h2 stream ended early");
                }
                let _ = done_tx.send(done.unwrap_or(StreamDone::Answered));
            }
            () = shutdown.wait() => {}
        }
    });
}

async fn answer(
    mut body: RecvStream,
    mut respond: SendResponse<Bytes>,
    hold: Duration,
    action: Action,
) -> Result<StreamDone, h2::Error> {
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        // Give the window back so large request bodies keep flowing (RFC 9113 section 5.2).
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    match action {
        Action::Respond {
            status,
            body,
            delay,
            close: _,
        } => {
            tokio::time::sleep(hold + delay).await;
            let mut send = respond.send_response(response(status, body.len()), body.is_empty())?;
            if !body.is_empty() {
                send_body(&mut send, body).await?;
            }
            Ok(StreamDone::Answered)
        }
        Action::RstMidResponse | Action::FinMidResponse => {
            let mut send = respond.send_response(
                response(http::StatusCode::OK, MID_RESPONSE_LEN_BYTES),
                false,
            )?;
            send.send_data(faults::body(MID_RESPONSE_SENT_BYTES), false)?;
            // The connection task flushes the frames while this task waits.
            tokio::time::sleep(BEFORE_RST).await;
            Ok(if action == Action::RstMidResponse {
                StreamDone::Abort(send)
            } else {
                StreamDone::Fin(send)
            })
        }
        Action::Rst | Action::Stall => Ok(StreamDone::Answered),
    }
}

/// Sends `body` as flow control allows (RFC 9113 section 5.2): each chunk is handed to h2
/// only once the peer's window has room, so it is written on the connection's next poll
/// instead of waiting in h2's buffer.
async fn send_body(send: &mut SendStream<Bytes>, mut body: Bytes) -> Result<(), h2::Error> {
    while !body.is_empty() {
        send.reserve_capacity(body.len());
        let granted = match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(granted) => granted?,
            // The stream can no longer send (reset or connection gone).
            None => return Err(h2::Error::from(h2::Reason::CANCEL)),
        };
        if granted == 0 {
            continue;
        }
        let chunk = body.split_to(granted.min(body.len()));
        send.send_data(chunk, body.is_empty())?;
    }
    Ok(())
}

fn response(status: http::StatusCode, content_len_bytes: usize) -> http::Response<()> {
    let mut response = http::Response::new(());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(content_len_bytes),
    );
    headers.insert(
        http::header::SERVER,
        http::HeaderValue::from_static("faultline-testbed"),
    );
    response
}
