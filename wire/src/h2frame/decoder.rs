//! The incremental decoder behind [`super::FrameDecoder`]: frame layout and framing rules,
//! and the header blocks it assembles on request.
use super::{
    CLIENT_PREFACE, DecoderOptions, ErrorCode, FRAME_HEADER_LEN_BYTES, Frame, FrameError,
    FrameKind, GOAWAY_DEBUG_KEPT_BYTES, MAX_FRAME_SIZE_CAP_BYTES, SETTINGS_KEPT_PARAMS,
    SettingsParams,
};

const STREAM_ID_MASK: u32 = 0x7fff_ffff;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

#[derive(Clone, Copy, Debug)]
struct Header {
    len: u32,
    kind: FrameKind,
    flags: u8,
    stream_id: u32,
}

impl Header {
    fn flag(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

#[derive(Clone, Debug)]
enum State {
    Preface {
        matched: usize,
    },
    Header,
    /// Buffering the first `keep` payload bytes, then reading `rest_left` more: header
    /// block fragment bytes go to the [`Block`] when blocks are kept, the rest is skipped.
    Payload {
        head: Header,
        keep: usize,
        rest_left: u32,
    },
    Failed(FrameError),
}

/// Capacity the block buffer keeps between blocks; a larger one is given back.
const BLOCK_CAPACITY_KEPT_BYTES: usize = 4096;

/// The header block being assembled (RFC 9113 section 4.3), with
/// [`DecoderOptions::keep_header_blocks`].
#[derive(Clone, Debug, Default)]
struct Block {
    /// From the opening HEADERS or PUSH_PROMISE frame.
    stream_id: u32,
    promised_id: Option<u32>,
    end_stream: bool,
    bytes: Vec<u8>,
    /// Fragment bytes so far, kept or not.
    len_bytes: u64,
    /// Over the cap: `bytes` was dropped and the rest of the block is skipped.
    too_large: bool,
}

impl Block {
    fn open(&mut self, h: &Header) {
        self.stream_id = h.stream_id;
        self.promised_id = None;
        self.end_stream = h.kind == FrameKind::HEADERS && h.flag(FLAG_END_STREAM);
        self.bytes.clear();
        self.len_bytes = 0;
        self.too_large = false;
    }

    fn take(&mut self, fragment: &[u8], max_bytes: usize) {
        self.len_bytes += fragment.len() as u64;
        if self.too_large {
            return;
        }
        if self.bytes.len() + fragment.len() > max_bytes {
            self.too_large = true;
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(fragment);
        }
    }

    fn frame(&self) -> Frame<'_> {
        Frame::HeaderBlock {
            stream_id: self.stream_id,
            promised_id: self.promised_id,
            end_stream: self.end_stream,
            block: (!self.too_large).then_some(&self.bytes[..]),
            len_bytes: self.len_bytes,
        }
    }

    /// After delivery: the bytes are no longer needed, nor a large buffer.
    fn close(&mut self) {
        self.bytes.clear();
        self.bytes.shrink_to(BLOCK_CAPACITY_KEPT_BYTES);
    }
}

/// An incremental HTTP/2 frame decoder: feed it bytes in chunks of any size.
///
/// Its memory is bounded by [`DecoderOptions::max_buffered_bytes`] whatever the input. After
/// an error it stays failed: every later [`Self::feed`] returns the same error and reads
/// nothing.
#[derive(Clone, Debug)]
pub struct FrameDecoder {
    opts: DecoderOptions,
    state: State,
    head: [u8; FRAME_HEADER_LEN_BYTES],
    head_len: usize,
    kept: Vec<u8>,
    /// The stream whose header block awaits CONTINUATION frames (section 6.10).
    open_block: Option<u32>,
    block: Block,
    bytes_seen: u64,
    frames_seen: u64,
}

impl FrameDecoder {
    /// A decoder at the start of a stream (or of its client preface).
    pub fn new(opts: DecoderOptions) -> Self {
        let opts = DecoderOptions {
            max_frame_size_bytes: opts.max_frame_size_bytes.min(MAX_FRAME_SIZE_CAP_BYTES),
            ..opts
        };
        let state = if opts.expect_client_preface {
            State::Preface { matched: 0 }
        } else {
            State::Header
        };
        FrameDecoder {
            opts,
            state,
            head: [0; FRAME_HEADER_LEN_BYTES],
            head_len: 0,
            kept: Vec::new(),
            open_block: None,
            block: Block::default(),
            bytes_seen: 0,
            frames_seen: 0,
        }
    }

    /// Bytes consumed so far (up to and including the byte that revealed an error).
    pub fn bytes_seen(&self) -> u64 {
        self.bytes_seen
    }

    /// Complete frames decoded so far.
    pub fn frames_seen(&self) -> u64 {
        self.frames_seen
    }

    /// Bytes held between calls: a partial header and control payload, and the header
    /// block being assembled; never DATA.
    pub fn buffered_bytes(&self) -> usize {
        self.head_len + self.kept.len() + self.block.bytes.len()
    }

    /// The stream whose header block (RFC 9113 section 4.3) is under way: from the
    /// header of its HEADERS or PUSH_PROMISE frame to the end of the frame carrying
    /// END_HEADERS. Bytes lost now would be bytes of the block.
    pub fn open_header_block(&self) -> Option<u32> {
        match &self.state {
            State::Payload { head, .. }
                if matches!(
                    head.kind,
                    FrameKind::HEADERS | FrameKind::PUSH_PROMISE | FrameKind::CONTINUATION
                ) =>
            {
                Some(head.stream_id)
            }
            State::Failed(_) => None,
            _ => self.open_block,
        }
    }

    /// The error the decoder failed with, if it did.
    pub fn error(&self) -> Option<&FrameError> {
        match &self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Decodes `bytes`, calling `on_frame` for each frame completed by them, in order.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        mut on_frame: impl FnMut(Frame<'_>),
    ) -> Result<(), FrameError> {
        match self.run(bytes, &mut on_frame) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.state = State::Failed(e.clone());
                self.head_len = 0;
                self.kept = Vec::new();
                self.block = Block::default();
                Err(e)
            }
        }
    }

    fn run(
        &mut self,
        mut bytes: &[u8],
        on_frame: &mut impl FnMut(Frame<'_>),
    ) -> Result<(), FrameError> {
        loop {
            match self.state.clone() {
                State::Failed(e) => return Err(e),
                State::Preface { matched } => {
                    let n = bytes.len().min(CLIENT_PREFACE.len() - matched);
                    let want = &CLIENT_PREFACE[matched..matched + n];
                    if let Some(i) = bytes[..n].iter().zip(want).position(|(a, b)| a != b) {
                        self.bytes_seen += i as u64 + 1;
                        return Err(FrameError::BadPreface {
                            offset: matched + i,
                        });
                    }
                    self.consume(&mut bytes, n);
                    self.state = if matched + n == CLIENT_PREFACE.len() {
                        State::Header
                    } else {
                        State::Preface {
                            matched: matched + n,
                        }
                    };
                    if bytes.is_empty() {
                        return Ok(());
                    }
                }
                State::Header => {
                    let n = bytes.len().min(FRAME_HEADER_LEN_BYTES - self.head_len);
                    self.head[self.head_len..self.head_len + n].copy_from_slice(&bytes[..n]);
                    self.head_len += n;
                    self.consume(&mut bytes, n);
                    if self.head_len < FRAME_HEADER_LEN_BYTES {
                        return Ok(());
                    }
                    self.head_len = 0;
                    let h = &self.head;
                    let head = Header {
                        len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
                        kind: FrameKind(h[3]),
                        flags: h[4],
                        // RFC 9113 section 4.1: the reserved bit MUST be ignored on receipt.
                        stream_id: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & STREAM_ID_MASK,
                    };
                    let keep = self.check_header(&head)?;
                    self.kept.clear();
                    self.state = State::Payload {
                        head,
                        keep,
                        rest_left: head.len - keep as u32,
                    };
                }
                State::Payload {
                    head,
                    keep,
                    mut rest_left,
                } => {
                    let n = bytes.len().min(keep - self.kept.len());
                    self.kept.extend_from_slice(&bytes[..n]);
                    self.consume(&mut bytes, n);
                    if self.kept.len() == keep {
                        let take = bytes.len().min(self.fragment_left(&head, rest_left));
                        self.block
                            .take(&bytes[..take], self.opts.max_header_block_bytes);
                        let skip = bytes.len().min(rest_left as usize);
                        self.consume(&mut bytes, skip);
                        rest_left -= skip as u32;
                    }
                    if self.kept.len() < keep || rest_left > 0 {
                        self.state = State::Payload {
                            head,
                            keep,
                            rest_left,
                        };
                        return Ok(());
                    }
                    let frame = decode(&head, &self.kept)?;
                    if let Frame::PushPromise { promised_id, .. } = frame {
                        self.block.promised_id = Some(promised_id);
                    }
                    on_frame(frame);
                    self.frames_seen += 1;
                    if self.keeps_block(&head) && head.flag(FLAG_END_HEADERS) {
                        on_frame(self.block.frame());
                        self.block.close();
                    }
                    self.kept.clear();
                    self.state = State::Header;
                    if bytes.is_empty() {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn consume(&mut self, bytes: &mut &[u8], n: usize) {
        *bytes = &bytes[n..];
        self.bytes_seen += n as u64;
    }

    /// Whether the frame's payload holds a header block fragment to assemble.
    fn keeps_block(&self, h: &Header) -> bool {
        self.opts.keep_header_blocks
            && matches!(
                h.kind,
                FrameKind::HEADERS | FrameKind::PUSH_PROMISE | FrameKind::CONTINUATION
            )
    }

    /// How many of the `rest_left` payload bytes after the kept prefix still to come
    /// are header block fragment (0 when the block is not kept). RFC 9113 sections 6.2,
    /// 6.6: the fragment lies between the fixed fields (kept) and the padding, whose
    /// length is the first byte. Padding longer than the payload leaves no fragment, and
    /// `decode` rejects the frame at its end, as it does when blocks are not kept.
    fn fragment_left(&self, h: &Header, rest_left: u32) -> usize {
        if !self.keeps_block(h) {
            return 0;
        }
        let pad_len = match h.flag(FLAG_PADDED) && h.kind != FrameKind::CONTINUATION {
            true => self.kept.first().copied().map_or(0, u32::from),
            false => 0,
        };
        rest_left.saturating_sub(pad_len) as usize
    }

    /// Checks what the header alone allows and returns how many payload bytes to keep.
    fn check_header(&mut self, h: &Header) -> Result<usize, FrameError> {
        let (kind, len) = (h.kind, h.len);
        // RFC 9113 section 4.2: a frame larger than SETTINGS_MAX_FRAME_SIZE is an error.
        if len > self.opts.max_frame_size_bytes {
            return Err(FrameError::TooLarge {
                kind,
                len_bytes: len,
                max_bytes: self.opts.max_frame_size_bytes,
            });
        }
        self.check_block_order(h)?;
        let keep = payload_to_keep(h)?;
        match kind {
            FrameKind::HEADERS | FrameKind::PUSH_PROMISE | FrameKind::CONTINUATION => {
                self.open_block = (!h.flag(FLAG_END_HEADERS)).then_some(h.stream_id);
            }
            _ => {}
        }
        if self.keeps_block(h) && kind != FrameKind::CONTINUATION {
            self.block.open(h);
        }
        Ok(keep)
    }

    /// RFC 9113 section 6.10: a header block is a HEADERS or PUSH_PROMISE frame followed
    /// only by CONTINUATION frames on the same stream until one carries END_HEADERS.
    fn check_block_order(&self, h: &Header) -> Result<(), FrameError> {
        let kind = h.kind;
        match (self.open_block, kind) {
            (Some(open), FrameKind::CONTINUATION) if open == h.stream_id => Ok(()),
            (Some(open_stream_id), _) => Err(FrameError::HeaderBlockInterrupted {
                kind,
                stream_id: h.stream_id,
                open_stream_id,
            }),
            (None, FrameKind::CONTINUATION) => Err(FrameError::UnexpectedContinuation {
                stream_id: h.stream_id,
            }),
            (None, _) => Ok(()),
        }
    }
}

/// The per-type rules of RFC 9113 section 6 that the header alone decides (stream id
/// zero or not, payload length), and how many payload bytes the decoder keeps.
fn payload_to_keep(h: &Header) -> Result<usize, FrameError> {
    let (kind, len) = (h.kind, h.len);
    let on_stream = |section| match h.stream_id {
        0 => Err(FrameError::StreamIdZero { kind, section }),
        _ => Ok(()),
    };
    let on_conn = |section| match h.stream_id {
        0 => Ok(()),
        stream_id => Err(FrameError::StreamIdNonZero {
            kind,
            stream_id,
            section,
        }),
    };
    // RFC 9113 section 4.2: FRAME_SIZE_ERROR when a frame exceeds a limit of its type or
    // is too small to contain mandatory frame data.
    let need = |ok: bool, rule, section| match ok {
        true => Ok(()),
        false => Err(FrameError::BadLength {
            kind,
            len_bytes: len,
            rule,
            section,
        }),
    };
    let padded = usize::from(h.flag(FLAG_PADDED));
    let keep = match kind {
        FrameKind::DATA => {
            on_stream("6.1")?;
            need(
                len as usize >= padded,
                "too short for the Pad Length field",
                "6.1",
            )?;
            padded
        }
        FrameKind::HEADERS => {
            on_stream("6.2")?;
            let prefix = padded + if h.flag(FLAG_PRIORITY) { 5 } else { 0 };
            need(
                len as usize >= prefix,
                "too short for the Pad Length and priority fields",
                "6.2",
            )?;
            prefix
        }
        FrameKind::PRIORITY => {
            on_stream("6.3")?;
            need(len == 5, "not 5", "6.3")?;
            0
        }
        FrameKind::RST_STREAM => {
            on_stream("6.4")?;
            need(len == 4, "not 4", "6.4")?;
            4
        }
        FrameKind::SETTINGS => {
            on_conn("6.5")?;
            need(
                !h.flag(FLAG_ACK) || len == 0,
                "but an ACK must be empty",
                "6.5",
            )?;
            need(len % 6 == 0, "not a multiple of 6", "6.5")?;
            (len as usize).min(SETTINGS_KEPT_PARAMS * 6)
        }
        FrameKind::PUSH_PROMISE => {
            on_stream("6.6")?;
            need(
                len as usize >= padded + 4,
                "too short for the Promised Stream ID",
                "6.6",
            )?;
            padded + 4
        }
        FrameKind::PING => {
            on_conn("6.7")?;
            need(len == 8, "not 8", "6.7")?;
            8
        }
        FrameKind::GOAWAY => {
            on_conn("6.8")?;
            need(len >= 8, "shorter than its 8 fixed bytes", "6.8")?;
            (len as usize).min(8 + GOAWAY_DEBUG_KEPT_BYTES)
        }
        FrameKind::WINDOW_UPDATE => {
            need(len == 4, "not 4", "6.9")?;
            4
        }
        FrameKind::CONTINUATION => {
            on_stream("6.10")?;
            0
        }
        _ => 0,
    };
    Ok(keep)
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Builds the frame from its header and kept payload prefix (sized by `check_header`).
fn decode<'a>(h: &Header, kept: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    let stream_id = h.stream_id;
    // RFC 9113 sections 6.1, 6.2, 6.6: padding that does not fit in the payload after the
    // fixed fields is a PROTOCOL_ERROR. `fixed` is the Pad Length byte plus those fields.
    let check_padding = |fixed: usize, section| {
        if !h.flag(FLAG_PADDED) {
            return Ok(());
        }
        let pad_len_bytes = kept[0];
        match fixed + usize::from(pad_len_bytes) > h.len as usize {
            true => Err(FrameError::BadPadding {
                kind: h.kind,
                stream_id,
                pad_len_bytes,
                len_bytes: h.len,
                section,
            }),
            false => Ok(()),
        }
    };
    Ok(match h.kind {
        FrameKind::DATA => {
            check_padding(1, "6.1")?;
            let (end_stream, padded) = (h.flag(FLAG_END_STREAM), h.flag(FLAG_PADDED));
            Frame::Data {
                stream_id,
                len: h.len,
                end_stream,
                padded,
            }
        }
        FrameKind::HEADERS => {
            check_padding(kept.len(), "6.2")?;
            Frame::Headers {
                stream_id,
                end_stream: h.flag(FLAG_END_STREAM),
                end_headers: h.flag(FLAG_END_HEADERS),
            }
        }
        FrameKind::PRIORITY => Frame::Priority { stream_id },
        FrameKind::RST_STREAM => Frame::RstStream {
            stream_id,
            code: ErrorCode(be_u32(kept)),
        },
        FrameKind::SETTINGS => Frame::Settings {
            ack: h.flag(FLAG_ACK),
            params: SettingsParams {
                raw: kept,
                count: h.len as usize / 6,
            },
        },
        FrameKind::PUSH_PROMISE => {
            check_padding(kept.len(), "6.6")?;
            let promised_id = be_u32(&kept[kept.len() - 4..]) & STREAM_ID_MASK;
            Frame::PushPromise {
                stream_id,
                promised_id,
            }
        }
        FrameKind::PING => {
            let mut opaque = [0; 8];
            opaque.copy_from_slice(kept);
            Frame::Ping {
                ack: h.flag(FLAG_ACK),
                opaque,
            }
        }
        FrameKind::GOAWAY => Frame::GoAway {
            last_stream_id: be_u32(kept) & STREAM_ID_MASK,
            code: ErrorCode(be_u32(&kept[4..])),
            debug: &kept[8..],
            debug_len: h.len - 8,
        },
        FrameKind::WINDOW_UPDATE => Frame::WindowUpdate {
            stream_id,
            increment: be_u32(kept) & STREAM_ID_MASK,
        },
        FrameKind::CONTINUATION => Frame::Continuation {
            stream_id,
            end_headers: h.flag(FLAG_END_HEADERS),
        },
        kind => Frame::Unknown {
            kind,
            flags: h.flags,
            stream_id,
            len: h.len,
        },
    })
}
