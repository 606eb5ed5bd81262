//! A small HTTP/1.1 server (RFC 9112) over any byte stream, plaintext or TLS.
//!
//! Hand-written rather than hyper: the faults need byte-level control of what is written
//! and when (a head and half a body, then RST or FIN; a request read and never answered;
//! an idle close racing the next request), and the moment the socket is aborted. hyper owns
//! the socket and its writes, and gives none of that.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use crate::faults::{
    self, Action, BEFORE_RST, ConnCtx, MID_RESPONSE_LEN_BYTES, MID_RESPONSE_SENT_BYTES, Shutdown,
};

/// Largest request head accepted; larger ones get 431 (RFC 6585 section 5).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields parsed per request.
const MAX_HEADERS: usize = 64;
/// How long a closing connection is drained after our FIN, so that request bytes still in
/// flight do not turn the close into a RST (Linux resets on close with unread data).
const DRAIN_AFTER_FIN: Duration = Duration::from_secs(5);

/// How the request body is framed (RFC 9112 section 6.3).
enum BodyFraming {
    Length(u64),
    Chunked,
}

struct Head {
    keep_alive: bool,
    is_head_method: bool,
    body: BodyFraming,
}

enum ReadHead {
    Request(Head),
    /// The client closed between requests.
    Eof,
    /// No request began within the idle limit.
    Idle,
    /// The head could not be parsed: answer with this status and close.
    Bad(http::StatusCode),
}

/// Serves requests on `io` until the client leaves, the fault ends the connection, or
/// shutdown.
pub(crate) async fn serve<S>(mut io: S, mut ctx: ConnCtx)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(4096);
    let mut answered = 0usize;
    loop {
        let read = tokio::select! {
            read = read_head(&mut io, &mut buf, ctx.idle_limit()) => read,
            () = ctx.shutdown.wait() => return,
        };
        let head = match read {
            Ok(ReadHead::Request(head)) => head,
            Ok(ReadHead::Eof) => return,
            Ok(ReadHead::Idle) => {
                debug!(
                    conn = ctx.id,
                    answered, "idle limit reached, closing with FIN"
                );
                close_with_fin(io, &mut ctx.shutdown).await;
                return;
            }
            Ok(ReadHead::Bad(status)) => {
                let _ = write_response(&mut io, status, &[], true, false).await;
                close_with_fin(io, &mut ctx.shutdown).await;
                return;
            }
            Err(err) => {
                debug!(conn = ctx.id, cause = %err, "read request head");
                return;
            }
        };
        match head.body {
            BodyFraming::Length(len_bytes) => {
                if let Err(err) = discard_body(&mut io, &mut buf, len_bytes).await {
                    debug!(conn = ctx.id, cause = %err, "read request body");
                    return;
                }
            }
            // Nothing in faultline sends chunked requests; decoding them is not worth the
            // code. RFC 9110 section 15.6.2 allows 501 for an unsupported mechanism.
            BodyFraming::Chunked => {
                let status = http::StatusCode::NOT_IMPLEMENTED;
                let _ = write_response(&mut io, status, &[], true, false).await;
                close_with_fin(io, &mut ctx.shutdown).await;
                return;
            }
        }

        match faults::action(&ctx.fault, answered) {
            Action::Respond {
                status,
                body,
                delay,
                close,
            } => {
                if !delay.is_zero() {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = ctx.shutdown.wait() => return,
                    }
                }
                let close = close || !head.keep_alive;
                let written =
                    write_response(&mut io, status, &body, close, head.is_head_method).await;
                if let Err(err) = written {
                    debug!(conn = ctx.id, cause = %err, "write response");
                    return;
                }
                answered += 1;
                if close {
                    close_with_fin(io, &mut ctx.shutdown).await;
                    return;
                }
            }
            Action::Rst => {
                debug!(
                    conn = ctx.id,
                    answered, "aborting with RST instead of answering"
                );
                drop(io);
                ctx.rst.abort();
                return;
            }
            Action::RstMidResponse => {
                if write_partial(&mut io).await.is_ok() {
                    tokio::time::sleep(BEFORE_RST).await;
                }
                drop(io);
                ctx.rst.abort();
                return;
            }
            Action::FinMidResponse => {
                if write_partial(&mut io).await.is_ok() {
                    close_with_fin(io, &mut ctx.shutdown).await;
                }
                return;
            }
            Action::Stall => {
                debug!(conn = ctx.id, "stalling: reading, never answering");
                drain(&mut io, &mut ctx.shutdown, None).await;
                return;
            }
        }
    }
}

/// Reads until a full request head is in `buf`, then parses and consumes it.
async fn read_head<S>(
    io: &mut S,
    buf: &mut BytesMut,
    idle_limit: Option<Duration>,
) -> std::io::Result<ReadHead>
where
    S: AsyncRead + Unpin,
{
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(buf) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let head = interpret(&req);
                    buf.advance(head_len);
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
                    return Ok(ReadHead::Bad(
                        http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    ));
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Ok(ReadHead::Bad(
                        http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    ));
                }
                Err(_) => return Ok(ReadHead::Bad(http::StatusCode::BAD_REQUEST)),
            }
        }
        // The idle clock runs only between requests, not inside a slowly arriving head.
        let read = match idle_limit {
            Some(limit) if buf.is_empty() => {
                match tokio::time::timeout(limit, io.read_buf(buf)).await {
                    Ok(read) => read?,
                    Err(_) => return Ok(ReadHead::Idle),
                }
            }
            _ => io.read_buf(buf).await?,
        };
        if read == 0 {
            return if buf.is_empty() {
                Ok(ReadHead::Eof)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
    }
}

fn interpret(req: &httparse::Request<'_, '_>) -> ReadHead {
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    for header in req.headers.iter() {
        let value = String::from_utf8_lossy(header.value);
        if header.name.eq_ignore_ascii_case("content-length") {
            match value.trim().parse::<u64>() {
                // RFC 9112 section 6.3: differing Content-Length values are unrecoverable.
                Ok(len) if content_length.is_none_or(|seen| seen == len) => {
                    content_length = Some(len);
                }
                _ => return ReadHead::Bad(http::StatusCode::BAD_REQUEST),
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked |= value.to_ascii_lowercase().contains("chunked");
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',') {
                let token = token.trim();
                connection_close |= token.eq_ignore_ascii_case("close");
                connection_keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        }
    }
    // RFC 9112 section 9.3: HTTP/1.1 persists unless `close`; HTTP/1.0 only with keep-alive.
    let keep_alive = match req.version {
        Some(1) => !connection_close,
        _ => connection_keep_alive && !connection_close,
    };
    // RFC 9112 section 6.3: Transfer-Encoding overrides Content-Length.
    let body = if chunked {
        BodyFraming::Chunked
    } else {
        BodyFraming::Length(content_length.unwrap_or(0))
    };
    ReadHead::Request(Head {
        keep_alive,
        is_head_method: req.method == Some("HEAD"),
        body,
    })
}

async fn discard_body<S>(io: &mut S, buf: &mut BytesMut, len_bytes: u64) -> std::io::Result<()>
where
    S: AsyncRead + Unpin,
{
    let mut left = len_bytes;
    let buffered = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
    buf.advance(buffered);
    left -= buffered as u64;
    let mut scratch = vec![0u8; 16 * 1024];
    while left > 0 {
        let want = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(scratch.len());
        let read = io.read(&mut scratch[..want]).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        left -= read as u64;
    }
    Ok(())
}

fn response_head(status: http::StatusCode, content_len_bytes: usize, close: bool) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain\r\ncontent-length: {content_len_bytes}\r\n\
         server: faultline-testbed\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    if close {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

async fn write_response<S>(
    io: &mut S,
    status: http::StatusCode,
    body: &[u8],
    close: bool,
    head_only: bool,
) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let mut out = response_head(status, body.len(), close);
    // RFC 9110 section 9.3.2: a HEAD answer has the GET answer's head and no body.
    if !head_only {
        out.extend_from_slice(body);
    }
    io.write_all(&out).await?;
    io.flush().await
}

/// The head announcing the full length and the first part of the body, flushed.
async fn write_partial<S>(io: &mut S) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let mut out = response_head(http::StatusCode::OK, MID_RESPONSE_LEN_BYTES, false);
    out.extend_from_slice(&faults::body(MID_RESPONSE_SENT_BYTES));
    io.write_all(&out).await?;
    io.flush().await
}

/// Ends our side with FIN (after TLS close_notify, for TLS streams), then drains the
/// client's leftovers for a bounded time.
async fn close_with_fin<S>(mut io: S, shutdown: &mut Shutdown)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if io.shutdown().await.is_err() {
        return;
    }
    drain(&mut io, shutdown, Some(DRAIN_AFTER_FIN)).await;
}

/// Reads and discards until EOF, error, shutdown or `limit`.
async fn drain<S>(io: &mut S, shutdown: &mut Shutdown, limit: Option<Duration>)
where
    S: AsyncRead + Unpin,
{
    let mut scratch = vec![0u8; 16 * 1024];
    let read_all = async {
        while let Ok(read) = io.read(&mut scratch).await {
            if read == 0 {
                break;
            }
        }
    };
    let bounded = async {
        match limit {
            Some(limit) => {
                let _ = tokio::time::timeout(limit, read_all).await;
            }
            None => read_all.await,
        }
    };
    tokio::select! {
        () = bounded => {}
        () = shutdown.wait() => {}
    }
}
