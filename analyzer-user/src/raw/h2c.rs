//! h2c (HTTP/2 over cleartext TCP) observer for one direction of a reassembled stream:
//! reports GOAWAY, RST_STREAM and SETTINGS, and tracks which streams were opened and
//! ended, so the analyzer can say which requests were in flight when a GOAWAY came. In
//! the server's direction it also reads each response's `:status` from the HPACK-coded
//! header blocks ([`status`]), as long as it has seen every block before.
//!
//! Frames are decoded by the one HTTP/2 frame parser of the project,
//! [`wire::h2frame::FrameDecoder`]. Only prior-knowledge h2c (RFC 9113 section 3.3)
//! is recognised: the client direction must open with the connection preface. The
//! HTTP/1.1 `Upgrade: h2c` path (RFC 7540 section 3.2, deprecated by RFC 9113 section
//! 3.1) is out of scope; such a stream is reported as [`H2cFact::NotH2c`].
use std::collections::BTreeMap;

use wire::h2frame::{
    CLIENT_PREFACE, DEFAULT_MAX_HEADER_BLOCK_BYTES, DecoderOptions, ErrorCode, Frame, FrameDecoder,
    FrameError, FrameKind, GOAWAY_DEBUG_KEPT_BYTES, SettingId, SettingsParams,
};

use super::reasm::Chunk;
use status::{BlockStatus, StatusReader};

mod status;

pub use status::{HpackLoss, MAX_TABLE_BYTES};

/// Streams tracked per direction; beyond it the lowest stream id is forgotten (counted).
pub const MAX_TRACKED_STREAMS: usize = 1024;
/// Facts reported per direction before further ones are only counted (the terminal
/// `NotH2c`/`Malformed` fact is always reported).
pub const MAX_FACTS: usize = 256;
/// The longest response header block kept for HPACK decoding; a longer one ends the
/// reading of statuses in its direction ([`HpackLoss::TooLarge`]).
pub const MAX_HEADER_BLOCK_BYTES: usize = DEFAULT_MAX_HEADER_BLOCK_BYTES;
/// Upper bound of [`H2cObserver::buffered_bytes`]: the frame decoder's bound, with the
/// header block it assembles in the server's direction.
pub const MAX_BUFFERED_BYTES: usize = wire::h2frame::MAX_BUFFERED_BYTES + MAX_HEADER_BLOCK_BYTES;

const PREFACE_LEN: u64 = CLIENT_PREFACE.len() as u64;
/// Offset of the type byte in a frame header (RFC 9113 section 4.1).
const KIND_OFFSET: u64 = 3;

/// Which way the bytes flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum H2cDirection {
    ClientToServer,
    ServerToClient,
}

/// What one direction of an h2c connection showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum H2cFact {
    /// The client connection preface was verified (RFC 9113 section 3.4).
    ClientPreface,
    /// A SETTINGS frame (not an ACK); `params` holds at most
    /// [`wire::h2frame::SETTINGS_KEPT_PARAMS`] of `param_count`.
    Settings {
        params: Vec<(SettingId, u32)>,
        param_count: usize,
        max_concurrent_streams: Option<u32>,
    },
    /// GOAWAY (RFC 9113 section 6.8): streams above `last_stream_id` were not processed.
    /// `debug` is the lossy UTF-8 of at most [`GOAWAY_DEBUG_KEPT_BYTES`] of the
    /// `debug_len_bytes` sent.
    GoAway {
        last_stream_id: u32,
        code: ErrorCode,
        debug: String,
        debug_len_bytes: u32,
    },
    /// RST_STREAM (RFC 9113 section 6.4).
    RstStream { stream_id: u32, code: ErrorCode },
    /// The direction does not start like HTTP/2; nothing more is parsed.
    NotH2c { offset: u64, what: H2cError },
    /// The frame stream broke; `offset` is where the decoder noticed. Nothing more is parsed.
    Malformed { offset: u64, what: H2cError },
}

/// Why a direction is not h2c, or where it broke.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum H2cError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the first frame is {kind}, not SETTINGS (RFC 9113 section 3.4)")]
    FirstFrameNotSettings { kind: FrameKind },
    #[error("{len_bytes} bytes are missing from the capture; frame boundaries are lost")]
    Gap { len_bytes: u64 },
}

/// What one direction did on one stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamView {
    pub stream_id: u32,
    /// HEADERS frames sent on it (request or response headers, then trailers).
    pub headers_frames: u32,
    /// This direction ended the stream (END_STREAM on HEADERS or DATA).
    pub end_stream: bool,
    /// This direction reset the stream.
    pub reset: Option<ErrorCode>,
    /// Server direction: the `:status` of the first final (200 and up) response header
    /// block on the stream; interim 1xx blocks and trailers leave it alone (RFC 9113
    /// section 8.1).
    pub status: Option<u16>,
    /// Server direction: a header block on the stream came while no status was known,
    /// and could not be decoded (the HPACK state was lost, [`H2cObserver::hpack_lost`]).
    pub status_lost: bool,
}

/// Counters of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct H2cStats {
    pub bytes_seen: u64,
    pub frames: u64,
    /// Requests started (client direction) or responses and trailers (server direction).
    pub headers_frames: u64,
    pub data_frames: u64,
    pub data_bytes: u64,
    pub settings_frames: u64,
    pub settings_acks: u64,
    pub ping_frames: u64,
    pub goaway_frames: u64,
    pub rst_stream_frames: u64,
    pub window_update_frames: u64,
    pub push_promise_frames: u64,
    pub other_frames: u64,
    /// Server direction: header blocks decoded by HPACK (responses, trailers, promises).
    pub header_blocks_decoded: u64,
    /// Server direction: header blocks not decoded, from the one where the HPACK state
    /// was lost on (including one cut by a capture gap).
    pub header_blocks_lost: u64,
    pub streams_evicted: u64,
    pub facts_dropped: u64,
}

/// Observes one direction of one h2c connection.
#[derive(Debug)]
pub struct H2cObserver {
    dir: H2cDirection,
    decoder: FrameDecoder,
    offset: u64,
    preface_done: bool,
    first_kind_checked: bool,
    stopped: bool,
    state: State,
}

/// The part of the observer the frame callback updates.
#[derive(Debug, Default)]
struct State {
    streams: BTreeMap<u32, StreamView>,
    facts: usize,
    stats: H2cStats,
    /// Server direction: the HPACK decoder reading statuses.
    statuses: Option<StatusReader>,
    /// The last_stream_id of the first graceful GOAWAY (NO_ERROR) this direction sent.
    graceful_goaway: Option<u32>,
}

impl H2cObserver {
    /// The last_stream_id of the first GOAWAY NO_ERROR this direction sent: streams
    /// above it were never processed and a client retries them elsewhere.
    pub fn graceful_goaway(&self) -> Option<u32> {
        self.state.graceful_goaway
    }

    pub fn new(dir: H2cDirection) -> Self {
        let client = dir == H2cDirection::ClientToServer;
        // The largest frame size the length field allows: the peer may have raised
        // SETTINGS_MAX_FRAME_SIZE in the other direction, which this observer cannot see.
        // Requests' header blocks are not decoded: only the server's are kept.
        let opts = DecoderOptions {
            expect_client_preface: client,
            keep_header_blocks: !client,
            max_header_block_bytes: MAX_HEADER_BLOCK_BYTES,
            ..DecoderOptions::default()
        };
        H2cObserver {
            dir,
            decoder: FrameDecoder::new(opts),
            offset: 0,
            preface_done: !client,
            first_kind_checked: false,
            stopped: false,
            state: State {
                statuses: (!client).then(|| StatusReader::new(MAX_HEADER_BLOCK_BYTES)),
                ..State::default()
            },
        }
    }

    pub fn direction(&self) -> H2cDirection {
        self.dir
    }

    pub fn stats(&self) -> &H2cStats {
        &self.state.stats
    }

    /// True after a `NotH2c` or `Malformed` fact.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Server direction: why response statuses stopped being read, if they did. Streams
    /// whose status came after it have none ([`StreamView::status_lost`]).
    pub fn hpack_lost(&self) -> Option<&HpackLoss> {
        self.state.statuses.as_ref().and_then(StatusReader::lost)
    }

    /// Bytes held between calls, at most [`MAX_BUFFERED_BYTES`].
    pub fn buffered_bytes(&self) -> usize {
        self.decoder.buffered_bytes()
    }

    /// The streams this direction sent HEADERS, DATA or RST_STREAM on, by id (at most
    /// [`MAX_TRACKED_STREAMS`], the most recent ids).
    pub fn streams(&self) -> impl Iterator<Item = &StreamView> {
        self.state.streams.values()
    }

    /// One stream's view, if tracked.
    pub fn stream(&self, stream_id: u32) -> Option<&StreamView> {
        self.state.streams.get(&stream_id)
    }

    /// Takes what a [`super::reasm::StreamReassembler`] delivers.
    pub fn on_chunk(&mut self, chunk: Chunk<'_>, out: &mut Vec<H2cFact>) {
        match chunk {
            Chunk::Data(d) => self.feed(d, out),
            Chunk::Gap { len_bytes } => self.gap(len_bytes, out),
            Chunk::Capped { .. } => {}
        }
    }

    /// Bytes missing from the capture: frame boundaries are lost, parsing stops. If they
    /// fell inside a header block, its stream's status is lost too.
    pub fn gap(&mut self, len_bytes: u64, out: &mut Vec<H2cFact>) {
        if !self.stopped {
            if let Some(stream_id) = self.decoder.open_header_block() {
                self.state.block_cut(stream_id);
            }
            self.fail(out, self.offset, H2cError::Gap { len_bytes });
        }
    }

    /// Decodes the next bytes of the direction and appends the facts they complete.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<H2cFact>) {
        let preface_len = if self.dir == H2cDirection::ClientToServer {
            PREFACE_LEN
        } else {
            0
        };
        let kind_at = preface_len + KIND_OFFSET;
        let mut rest = bytes;
        while !rest.is_empty() && !self.stopped {
            // Cut the input where the preface ends and where the first frame's type byte
            // lies, so the preface fact comes before the first frame's facts and a peer
            // that is not HTTP/2 is named before the decoder waits out a bogus length.
            let limit = if !self.preface_done {
                PREFACE_LEN - self.offset
            } else if !self.first_kind_checked {
                if self.offset == kind_at {
                    self.first_kind_checked = true;
                    let kind = FrameKind(rest.first().copied().unwrap_or_default());
                    // RFC 9113 section 3.4: each side's preface ends with (server: is) a
                    // SETTINGS frame, which MUST be the first frame it sends.
                    if kind != FrameKind::SETTINGS {
                        let what = H2cError::FirstFrameNotSettings { kind };
                        out.push(H2cFact::NotH2c {
                            offset: self.offset,
                            what,
                        });
                        self.stopped = true;
                        return;
                    }
                }
                kind_at.saturating_sub(self.offset).max(1)
            } else {
                u64::MAX
            };
            let cut = usize::try_from(limit).map_or(rest.len(), |l| l.min(rest.len()));
            let (now, later) = rest.split_at_checked(cut).unwrap_or((rest, &[]));
            self.decode(now, out);
            rest = later;
            if !self.preface_done && self.offset == PREFACE_LEN && !self.stopped {
                self.preface_done = true;
                self.state.emit(out, H2cFact::ClientPreface);
            }
        }
    }

    fn decode(&mut self, bytes: &[u8], out: &mut Vec<H2cFact>) {
        let state = &mut self.state;
        let result = self.decoder.feed(bytes, |f| state.frame(f, out));
        self.offset = self.decoder.bytes_seen();
        self.state.stats.bytes_seen = self.offset;
        if let Err(e) = result {
            self.fail(out, self.offset, H2cError::Frame(e));
        }
    }

    /// Reports `what` and stops: a framing error before any frame was decoded says the
    /// peer does not speak HTTP/2 (`NotH2c`); a capture gap says nothing about the peer.
    fn fail(&mut self, out: &mut Vec<H2cFact>, offset: u64, what: H2cError) {
        let not_h2 = match &what {
            H2cError::Frame(FrameError::BadPreface { .. }) => true,
            H2cError::Frame(_) | H2cError::FirstFrameNotSettings { .. } => {
                self.decoder.frames_seen() == 0
            }
            H2cError::Gap { .. } => false,
        };
        out.push(match not_h2 {
            true => H2cFact::NotH2c { offset, what },
            false => H2cFact::Malformed { offset, what },
        });
        self.stopped = true;
    }
}

impl State {
    fn emit(&mut self, out: &mut Vec<H2cFact>, fact: H2cFact) {
        if self.facts < MAX_FACTS {
            self.facts += 1;
            out.push(fact);
        } else {
            self.stats.facts_dropped += 1;
        }
    }

    fn stream(&mut self, stream_id: u32) -> &mut StreamView {
        if !self.streams.contains_key(&stream_id) && self.streams.len() >= MAX_TRACKED_STREAMS {
            self.streams.pop_first();
            self.stats.streams_evicted += 1;
        }
        self.streams.entry(stream_id).or_insert(StreamView {
            stream_id,
            ..StreamView::default()
        })
    }

    fn frame(&mut self, f: Frame<'_>, out: &mut Vec<H2cFact>) {
        if let Frame::HeaderBlock {
            stream_id,
            promised_id,
            block,
            len_bytes,
            ..
        } = f
        {
            // Not a frame: the block the frames before it carried.
            return self.header_block(stream_id, promised_id, block, len_bytes);
        }
        let s = &mut self.stats;
        s.frames += 1;
        match f {
            Frame::Data {
                stream_id,
                len,
                end_stream,
                ..
            } => {
                s.data_frames += 1;
                s.data_bytes += u64::from(len);
                if end_stream {
                    self.stream(stream_id).end_stream = true;
                }
            }
            Frame::Headers {
                stream_id,
                end_stream,
                ..
            } => {
                s.headers_frames += 1;
                let v = self.stream(stream_id);
                v.headers_frames = v.headers_frames.saturating_add(1);
                v.end_stream |= end_stream;
            }
            Frame::RstStream { stream_id, code } => {
                s.rst_stream_frames += 1;
                self.stream(stream_id).reset = Some(code);
                self.emit(out, H2cFact::RstStream { stream_id, code });
            }
            Frame::Settings { ack: true, .. } => s.settings_acks += 1,
            Frame::Settings { ack: false, params } => {
                s.settings_frames += 1;
                self.emit(out, settings_fact(&params));
            }
            Frame::GoAway {
                last_stream_id,
                code,
                debug,
                debug_len,
            } => {
                s.goaway_frames += 1;
                if code == ErrorCode::NO_ERROR {
                    self.graceful_goaway.get_or_insert(last_stream_id);
                }
                let debug = debug.get(..GOAWAY_DEBUG_KEPT_BYTES).unwrap_or(debug);
                let fact = H2cFact::GoAway {
                    last_stream_id,
                    code,
                    debug: String::from_utf8_lossy(debug).into_owned(),
                    debug_len_bytes: debug_len,
                };
                self.emit(out, fact);
            }
            Frame::Ping { .. } => s.ping_frames += 1,
            Frame::WindowUpdate { .. } => s.window_update_frames += 1,
            Frame::PushPromise { .. } => s.push_promise_frames += 1,
            Frame::Priority { .. } | Frame::Continuation { .. } | Frame::Unknown { .. } => {
                s.other_frames += 1;
            }
            Frame::HeaderBlock { .. } => {}
        }
    }

    /// A complete header block of the server's direction: each goes through the HPACK
    /// decoder, in order, and a response's first final status is kept on its stream.
    fn header_block(
        &mut self,
        stream_id: u32,
        promised_id: Option<u32>,
        block: Option<&[u8]>,
        len_bytes: u64,
    ) {
        let Some(reader) = self.statuses.as_mut() else {
            return;
        };
        let read = reader.read(stream_id, block, len_bytes);
        match read {
            BlockStatus::Lost => self.stats.header_blocks_lost += 1,
            BlockStatus::Status(_) | BlockStatus::NoStatus => {
                self.stats.header_blocks_decoded += 1;
            }
        }
        // A PUSH_PROMISE's block is the request the server made up (RFC 9113 section
        // 8.4): read only for what it adds to the dynamic table.
        if promised_id.is_some() {
            return;
        }
        let v = self.stream(stream_id);
        match read {
            // RFC 9113 section 8.1: interim (1xx) blocks may precede the final one, and
            // trailers (no `:status`) follow it.
            BlockStatus::Status(status) if status >= 200 && v.status.is_none() => {
                v.status = Some(status);
            }
            BlockStatus::Lost if v.status.is_none() => v.status_lost = true,
            BlockStatus::Status(_) | BlockStatus::NoStatus | BlockStatus::Lost => {}
        }
    }

    /// Bytes of the header block on `stream_id` were not captured: the HPACK state
    /// is lost from this block on.
    fn block_cut(&mut self, stream_id: u32) {
        let Some(reader) = self.statuses.as_mut() else {
            return;
        };
        reader.lose(HpackLoss::Gap { stream_id });
        self.stats.header_blocks_lost += 1;
        // Only a stream already seen: one whose first HEADERS frame is cut got no answer
        // this observer can vouch for.
        if let Some(v) = self.streams.get_mut(&stream_id) {
            v.status_lost |= v.status.is_none();
        }
    }
}

fn settings_fact(params: &SettingsParams<'_>) -> H2cFact {
    H2cFact::Settings {
        params: params.iter().collect(),
        param_count: params.len(),
        max_concurrent_streams: params.get(SettingId::SETTINGS_MAX_CONCURRENT_STREAMS),
    }
}

/// The client-initiated streams that were in flight: opened by the client's HEADERS,
/// neither ended by the server nor reset by either side. Call it when the server's
/// GOAWAY fact appears (with both directions fed up to that point); those above the
/// GOAWAY's last_stream_id were never processed and are safe to retry (RFC 9113 section
/// 6.8).
pub fn in_flight(client: &H2cObserver, server: &H2cObserver) -> Vec<u32> {
    client
        .streams()
        // RFC 9113 section 5.1.1: client-initiated streams have odd ids.
        .filter(|c| c.stream_id % 2 == 1 && c.headers_frames > 0 && c.reset.is_none())
        .filter(|c| {
            server
                .stream(c.stream_id)
                .is_none_or(|s| !s.end_stream && s.reset.is_none())
        })
        .map(|c| c.stream_id)
        .collect()
}

// The tests live in h2c/tests.rs to keep each file short (STYLE.md).
#[cfg(test)]
mod tests;
