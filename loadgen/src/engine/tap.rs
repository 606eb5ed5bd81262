//! A passive frame tap: counts a connection's bytes and decodes every HTTP/2 frame the server sends.
//!
//! The `h2` crate does not expose GOAWAY debug data or last_stream_id (shared/DESIGN.md),
//! so [`Tap`] sits between the (TLS) byte stream and the HTTP client and feeds the bytes
//! the client reads to a [`FrameDecoder`]. It never changes, delays or buffers the bytes
//! themselves. The hot path is a counter add and a header decode: DATA payloads are
//! skipped in place, and the shared lock is taken only for a GOAWAY, RST_STREAM, SETTINGS
//! or PING frame.
use std::{
    collections::{HashMap, VecDeque},
    io::{self, IoSlice},
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use events::model::{FrameFacts, GoAway};
use wire::h2frame::{DecoderOptions, ErrorCode, Frame, FrameDecoder, SettingId};

/// RST_STREAM codes remembered per connection (the most recent resets win).
pub const RST_CODES_KEPT: usize = 1024;
/// Frame facts queued between two [`TapHandle::take_frames`] calls; older ones are dropped
/// first (and counted by [`TapHandle::frames_dropped`]) so the last GOAWAY survives.
pub const FRAMES_QUEUED_MAX: usize = 256;

/// The SETTINGS_MAX_FRAME_SIZE the h2 client advertises unless told otherwise: the
/// initial value of RFC 9113 section 6.5.2, which `h2::client::Builder` keeps by default.
pub const CLIENT_MAX_FRAME_SIZE_BYTES: u32 = 16_384;

/// What the tap does with the bytes read from the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TapMode {
    /// Count bytes only (HTTP/1.1).
    CountOnly,
    /// Count bytes and decode the server-to-client HTTP/2 frames (no preface expected).
    Http2,
}

/// A byte stream wrapper that observes the traffic; see the module docs.
#[derive(Debug)]
pub struct Tap<S> {
    inner: S,
    /// None in [`TapMode::CountOnly`], and after the server sent something not HTTP/2.
    decoder: Option<FrameDecoder>,
    shared: Arc<Shared>,
}

/// What a [`Tap`] has seen, shared with the connection's owner. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TapHandle(Arc<Shared>);

const NO_VALUE: u64 = u64::MAX;

#[derive(Debug)]
struct Shared {
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    frames_dropped: AtomicU64,
    /// The server's last SETTINGS_MAX_CONCURRENT_STREAMS, or [`NO_VALUE`].
    max_concurrent_streams: AtomicU64,
    /// Lets [`TapHandle::goaway`] skip the lock on connections without a GOAWAY.
    goaway_seen: AtomicBool,
    /// How the read side ended: [`READ_OPEN`], [`READ_EOF`] or [`READ_RESET`].
    read_end: AtomicU8,
    evidence: Mutex<Evidence>,
}

const READ_OPEN: u8 = 0;
const READ_EOF: u8 = 1;
const READ_RESET: u8 = 2;

/// How the server's side of the byte stream ended, as the tap saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadEnd {
    /// Still open (or we closed first).
    Open,
    /// A read returned end of stream: the peer's FIN (or TLS close).
    Eof,
    /// A read failed with ECONNRESET: the peer's RST.
    Reset,
}

#[derive(Debug, Default)]
struct Evidence {
    goaway: Option<GoAway>,
    rst_codes: HashMap<u32, ErrorCode>,
    /// Stream ids of `rst_codes`, oldest first, to evict beyond [`RST_CODES_KEPT`].
    rst_order: VecDeque<u32>,
    frames: VecDeque<FrameFacts>,
    parse_error: Option<String>,
}

impl<S> Tap<S> {
    /// Wraps `inner`; the handle reports what the tap sees.
    ///
    /// The server may not send frames above the client's SETTINGS_MAX_FRAME_SIZE, which
    /// is [`CLIENT_MAX_FRAME_SIZE_BYTES`] here; a larger frame is a parse error, which is
    /// also how a non-HTTP/2 answer (`HTTP/1.1 400 ...`) is caught in a few bytes.
    pub fn new(inner: S, mode: TapMode) -> (Self, TapHandle) {
        Self::with_max_frame_size(inner, mode, CLIENT_MAX_FRAME_SIZE_BYTES)
    }

    /// [`Self::new`] for a client that advertises another SETTINGS_MAX_FRAME_SIZE.
    pub fn with_max_frame_size(
        inner: S,
        mode: TapMode,
        max_frame_size_bytes: u32,
    ) -> (Self, TapHandle) {
        let shared = Arc::new(Shared {
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            frames_dropped: AtomicU64::new(0),
            max_concurrent_streams: AtomicU64::new(NO_VALUE),
            goaway_seen: AtomicBool::new(false),
            read_end: AtomicU8::new(READ_OPEN),
            evidence: Mutex::new(Evidence::default()),
        });
        let decoder = match mode {
            TapMode::CountOnly => None,
            TapMode::Http2 => Some(FrameDecoder::new(DecoderOptions {
                expect_client_preface: false,
                max_frame_size_bytes,
                ..DecoderOptions::default()
            })),
        };
        let handle = TapHandle(Arc::clone(&shared));
        (
            Tap {
                inner,
                decoder,
                shared,
            },
            handle,
        )
    }

    /// The wrapped stream (e.g. to read the TLS session or the socket's cookie).
    #[cfg(test)]
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl Shared {
    fn evidence(&self) -> MutexGuard<'_, Evidence> {
        // A panic elsewhere while holding the lock leaves the evidence consistent enough
        // to report: every update below is a single push or assignment.
        self.evidence.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn observe(&self, decoder: &mut Option<FrameDecoder>, bytes: &[u8]) {
        let Some(dec) = decoder else { return };
        if let Err(e) = dec.feed(bytes, |frame| self.on_frame(frame)) {
            tracing::warn!(cause = %e, offset_bytes = dec.bytes_seen(), "server sent bytes that are not HTTP/2 frames");
            self.evidence()
                .parse_error
                .get_or_insert_with(|| e.to_string());
            *decoder = None;
        }
    }

    fn on_frame(&self, frame: Frame<'_>) {
        let fact = match frame {
            Frame::Settings { ack: false, params } => {
                if let Some(max) = params.get(SettingId::SETTINGS_MAX_CONCURRENT_STREAMS) {
                    self.max_concurrent_streams
                        .store(u64::from(max), Ordering::Relaxed);
                }
                let settings = params
                    .iter()
                    .map(|(id, v)| (id.name().into_owned(), v))
                    .collect();
                FrameFacts::Settings { settings }
            }
            Frame::Ping { ack, .. } => FrameFacts::Ping { ack },
            Frame::RstStream { stream_id, code } => FrameFacts::RstStream {
                stream_id,
                code: code.name().into_owned(),
            },
            Frame::GoAway {
                last_stream_id,
                code,
                debug,
                debug_len,
            } => {
                tracing::debug!(code = %code, last_stream_id, debug_len, "GOAWAY from the server");
                FrameFacts::Goaway(GoAway {
                    code: code.name().into_owned(),
                    last_stream_id,
                    debug: String::from_utf8_lossy(debug).into_owned(),
                })
            }
            _ => return,
        };
        let mut ev = self.evidence();
        match (&fact, frame) {
            (FrameFacts::Goaway(goaway), _) => {
                // RFC 9113 section 6.8: a server may send a graceful GOAWAY (2^31-1) and
                // then the real one; the last one tells which streams were processed.
                ev.goaway = Some(goaway.clone());
                self.goaway_seen.store(true, Ordering::Release);
            }
            (_, Frame::RstStream { stream_id, code }) => {
                if ev.rst_codes.insert(stream_id, code).is_none() {
                    ev.rst_order.push_back(stream_id);
                }
                if ev.rst_order.len() > RST_CODES_KEPT
                    && let Some(oldest) = ev.rst_order.pop_front()
                {
                    ev.rst_codes.remove(&oldest);
                }
            }
            _ => {}
        }
        if ev.frames.len() == FRAMES_QUEUED_MAX {
            ev.frames.pop_front();
            self.frames_dropped.fetch_add(1, Ordering::Relaxed);
        }
        ev.frames.push_back(fact);
    }
}

impl TapHandle {
    /// How the server's side of the stream ended so far.
    pub fn read_end(&self) -> ReadEnd {
        match self.0.read_end.load(Ordering::Relaxed) {
            READ_EOF => ReadEnd::Eof,
            READ_RESET => ReadEnd::Reset,
            _ => ReadEnd::Open,
        }
    }

    /// Bytes read from the server so far.
    pub fn bytes_read(&self) -> u64 {
        self.0.bytes_read.load(Ordering::Relaxed)
    }

    /// Bytes written to the server so far.
    pub fn bytes_written(&self) -> u64 {
        self.0.bytes_written.load(Ordering::Relaxed)
    }

    /// The last GOAWAY the server sent.
    pub fn goaway(&self) -> Option<GoAway> {
        if !self.0.goaway_seen.load(Ordering::Acquire) {
            return None;
        }
        self.0.evidence().goaway.clone()
    }

    /// The code the server reset `stream_id` with, among the last [`RST_CODES_KEPT`] resets.
    #[cfg(test)]
    pub fn rst_code(&self, stream_id: u32) -> Option<ErrorCode> {
        self.0.evidence().rst_codes.get(&stream_id).copied()
    }

    /// SETTINGS_MAX_CONCURRENT_STREAMS from the server's last SETTINGS that carried it.
    #[cfg(test)]
    pub fn max_concurrent_streams(&self) -> Option<u32> {
        let max = self.0.max_concurrent_streams.load(Ordering::Relaxed);
        u32::try_from(max).ok()
    }

    /// GOAWAY, RST_STREAM, SETTINGS (not ACKs) and PING frames seen since the last call,
    /// in the order the server sent them.
    pub fn take_frames(&self) -> Vec<FrameFacts> {
        self.0.evidence().frames.drain(..).collect()
    }

    /// Frame facts dropped because [`Self::take_frames`] was not called often enough.
    #[cfg(test)]
    pub fn frames_dropped(&self) -> u64 {
        self.0.frames_dropped.load(Ordering::Relaxed)
    }

    /// Why the server's bytes stopped parsing as HTTP/2 frames, if they did.
    #[cfg(test)]
    pub fn parse_error(&self) -> Option<String> {
        self.0.evidence().parse_error.clone()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if new.is_empty() && buf.remaining() > 0 {
                    let _ = this.shared.read_end.compare_exchange(
                        READ_OPEN,
                        READ_EOF,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                this.shared
                    .bytes_read
                    .fetch_add(new.len() as u64, Ordering::Relaxed);
                this.shared.observe(&mut this.decoder, new);
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                this.shared.read_end.store(READ_RESET, Ordering::Relaxed);
            }
            _ => {}
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.count_written(&polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.count_written(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S> Tap<S> {
    fn count_written(&self, polled: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = polled {
            self.shared
                .bytes_written
                .fetch_add(*n as u64, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
