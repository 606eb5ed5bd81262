//! A bounded, incremental HTTP/2 frame parser (RFC 9113): the one frame parser of faultline.
//!
//! It serves loadgen's passive frame tap, which sees what the `h2` crate hides
//! (GOAWAY debug data and last_stream_id), and the analyzer's h2c parser for captured
//! packets. It decodes the frame layout (section 4.1), the per-type framing rules
//! (section 6) and error codes (section 7); it keeps no HPACK or stream state. Memory is
//! bounded: payloads of DATA, HEADERS, CONTINUATION, PUSH_PROMISE and unknown frames are
//! skipped as they stream past, and only small control payloads are buffered. On request
//! ([`DecoderOptions::keep_header_blocks`]) it also assembles each header block (section
//! 4.3) from its HEADERS or PUSH_PROMISE frame and CONTINUATIONs, up to a cap, for the
//! caller's HPACK decoder: [`Frame::HeaderBlock`].
use std::{borrow::Cow, fmt, str::FromStr};

mod decoder;

pub use decoder::FrameDecoder;

/// The client connection preface (RFC 9113 section 3.4).
pub const CLIENT_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Length of the frame header (RFC 9113 section 4.1).
pub const FRAME_HEADER_LEN_BYTES: usize = 9;
/// The largest frame length the 24-bit length field allows (RFC 9113 section 4.2).
pub const MAX_FRAME_SIZE_CAP_BYTES: u32 = (1 << 24) - 1;
/// GOAWAY debug data kept per frame; the frame reports its full length.
pub const GOAWAY_DEBUG_KEPT_BYTES: usize = 1024;
/// SETTINGS parameters kept per frame; [`SettingsParams::len`] counts them all.
pub const SETTINGS_KEPT_PARAMS: usize = 256;
/// Upper bound of [`FrameDecoder::buffered_bytes`] when header blocks are not kept; see
/// [`DecoderOptions::max_buffered_bytes`].
pub const MAX_BUFFERED_BYTES: usize = FRAME_HEADER_LEN_BYTES + SETTINGS_KEPT_PARAMS * 6;
/// Default of [`DecoderOptions::max_header_block_bytes`]: 64 KiB, four times the 16 KiB
/// header list a server usually accepts (SETTINGS_MAX_HEADER_LIST_SIZE), compressed.
pub const DEFAULT_MAX_HEADER_BLOCK_BYTES: usize = 64 * 1024;

/// Looks a number up in a name table; unknown numbers print as `0x1f`.
fn table_name(names: &'static [&'static str], n: u32) -> Cow<'static, str> {
    match usize::try_from(n).ok().and_then(|i| names.get(i)) {
        Some(name) if !name.is_empty() => Cow::Borrowed(name),
        _ => Cow::Owned(format!("0x{n:x}")),
    }
}

/// Parses a name of `names` (any case) or a `0x` hex number.
fn table_parse(names: &'static [&'static str], s: &str) -> Option<u32> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u32::from_str_radix(hex, 16).ok();
    }
    let i = names
        .iter()
        .position(|n| !n.is_empty() && n.eq_ignore_ascii_case(s))?;
    u32::try_from(i).ok()
}

macro_rules! named_consts {
    ($ty:ident($inner:ty), $table:ident, [$($name:ident = $val:expr),* $(,)?]) => {
        impl $ty { $(#[doc = stringify!($name)] pub const $name: $ty = $ty($val);)* }
        const $table: &[&str] = &{
            let mut t = [""; named_consts!(@max 0, $($val),*) + 1];
            $(t[$val as usize] = stringify!($name);)*
            t
        };
    };
    (@max $acc:expr, ) => { $acc };
    (@max $acc:expr, $v:expr $(, $rest:expr)*) => {
        named_consts!(@max if $v as usize > $acc { $v as usize } else { $acc }, $($rest),*)
    };
}

/// An HTTP/2 error code (RFC 9113 section 7), as carried by RST_STREAM and GOAWAY.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(pub u32);

named_consts!(
    ErrorCode(u32),
    ERROR_NAMES,
    [
        NO_ERROR = 0x0,
        PROTOCOL_ERROR = 0x1,
        INTERNAL_ERROR = 0x2,
        FLOW_CONTROL_ERROR = 0x3,
        SETTINGS_TIMEOUT = 0x4,
        STREAM_CLOSED = 0x5,
        FRAME_SIZE_ERROR = 0x6,
        REFUSED_STREAM = 0x7,
        CANCEL = 0x8,
        COMPRESSION_ERROR = 0x9,
        CONNECT_ERROR = 0xa,
        ENHANCE_YOUR_CALM = 0xb,
        INADEQUATE_SECURITY = 0xc,
        HTTP_1_1_REQUIRED = 0xd,
    ]
);

impl ErrorCode {
    /// The RFC name (`ENHANCE_YOUR_CALM`), or `0x1f` for a code the RFC does not define.
    pub fn name(&self) -> Cow<'static, str> {
        table_name(ERROR_NAMES, self.0)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A string that names no HTTP/2 error code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown HTTP/2 error code {0:?} (expected a name such as REFUSED_STREAM, or 0x1f)")]
pub struct UnknownErrorCode(pub String);

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;

    /// Accepts the names of [`ErrorCode::name`] in any case, and `0x` hex numbers.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        table_parse(ERROR_NAMES, s)
            .map(ErrorCode)
            .ok_or_else(|| UnknownErrorCode(s.to_owned()))
    }
}

/// A frame type (RFC 9113 section 6; unknown types must be ignored, section 4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameKind(pub u8);

named_consts!(
    FrameKind(u8),
    KIND_NAMES,
    [
        DATA = 0x0,
        HEADERS = 0x1,
        PRIORITY = 0x2,
        RST_STREAM = 0x3,
        SETTINGS = 0x4,
        PUSH_PROMISE = 0x5,
        PING = 0x6,
        GOAWAY = 0x7,
        WINDOW_UPDATE = 0x8,
        CONTINUATION = 0x9,
    ]
);

impl FrameKind {
    /// The RFC name (`GOAWAY`), or `0xf0` for an extension type.
    pub fn name(&self) -> Cow<'static, str> {
        table_name(KIND_NAMES, u32::from(self.0))
    }
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A SETTINGS parameter identifier (RFC 9113 section 6.5.2; 0x8 is RFC 8441, 0x9 RFC 9218).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SettingId(pub u16);

named_consts!(
    SettingId(u16),
    SETTING_NAMES,
    [
        SETTINGS_HEADER_TABLE_SIZE = 0x1,
        SETTINGS_ENABLE_PUSH = 0x2,
        SETTINGS_MAX_CONCURRENT_STREAMS = 0x3,
        SETTINGS_INITIAL_WINDOW_SIZE = 0x4,
        SETTINGS_MAX_FRAME_SIZE = 0x5,
        SETTINGS_MAX_HEADER_LIST_SIZE = 0x6,
        SETTINGS_ENABLE_CONNECT_PROTOCOL = 0x8,
        SETTINGS_NO_RFC7540_PRIORITIES = 0x9,
    ]
);

impl SettingId {
    /// The RFC name (`SETTINGS_MAX_CONCURRENT_STREAMS`), or `0x2a` when unknown.
    pub fn name(&self) -> Cow<'static, str> {
        table_name(SETTING_NAMES, u32::from(self.0))
    }
}

impl fmt::Display for SettingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// The parameters of a SETTINGS frame, in the order sent, borrowed from the decoder.
///
/// Only the first [`SETTINGS_KEPT_PARAMS`] are kept; [`Self::len`] counts all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettingsParams<'a> {
    raw: &'a [u8],
    count: usize,
}

impl<'a> SettingsParams<'a> {
    /// The kept parameters, in the order sent.
    pub fn iter(&self) -> impl Iterator<Item = (SettingId, u32)> + 'a {
        self.raw.chunks_exact(6).map(|p| {
            let id = SettingId(u16::from_be_bytes([p[0], p[1]]));
            (id, u32::from_be_bytes([p[2], p[3], p[4], p[5]]))
        })
    }

    /// The value of the last occurrence of `id` among the kept parameters.
    pub fn get(&self, id: SettingId) -> Option<u32> {
        self.iter().filter(|(i, _)| *i == id).map(|(_, v)| v).last()
    }

    /// The number of parameters in the frame (kept or not).
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// True when the frame had more than [`SETTINGS_KEPT_PARAMS`] parameters.
    pub fn is_truncated(&self) -> bool {
        self.count > self.raw.len() / 6
    }
}

/// One decoded frame. Stream ids have the reserved bit masked (RFC 9113 section 4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// `len` is the payload length in bytes, padding included (section 6.1).
    Data {
        stream_id: u32,
        len: u32,
        end_stream: bool,
        padded: bool,
    },
    Headers {
        stream_id: u32,
        end_stream: bool,
        end_headers: bool,
    },
    Priority {
        stream_id: u32,
    },
    RstStream {
        stream_id: u32,
        code: ErrorCode,
    },
    Settings {
        ack: bool,
        params: SettingsParams<'a>,
    },
    PushPromise {
        stream_id: u32,
        promised_id: u32,
    },
    Ping {
        ack: bool,
        opaque: [u8; 8],
    },
    /// `debug` holds at most [`GOAWAY_DEBUG_KEPT_BYTES`]; `debug_len` is the full length.
    GoAway {
        last_stream_id: u32,
        code: ErrorCode,
        debug: &'a [u8],
        debug_len: u32,
    },
    /// `increment` is reported as sent, even 0 (a flow-control error for the endpoint).
    WindowUpdate {
        stream_id: u32,
        increment: u32,
    },
    Continuation {
        stream_id: u32,
        end_headers: bool,
    },
    /// A complete header block (RFC 9113 section 4.3), only with
    /// [`DecoderOptions::keep_header_blocks`]: delivered right after the frame that ended
    /// it (the HEADERS or PUSH_PROMISE itself, or its last CONTINUATION). Not a frame: it
    /// is not counted by [`FrameDecoder::frames_seen`].
    HeaderBlock {
        /// The stream of the HEADERS or PUSH_PROMISE frame that opened the block.
        stream_id: u32,
        /// For a PUSH_PROMISE's block, the stream it reserves; `None` for HEADERS.
        promised_id: Option<u32>,
        /// The opening HEADERS frame carried END_STREAM (trailers, or a bodiless message).
        end_stream: bool,
        /// The header block fragments in order, without padding and priority fields (HPACK,
        /// RFC 7541); `None` when `len_bytes` exceeded
        /// [`DecoderOptions::max_header_block_bytes`], which are skipped, not buffered.
        block: Option<&'a [u8]>,
        /// The length of the whole block, kept or not.
        len_bytes: u64,
    },
    /// An extension frame type, skipped (section 4.1: unknown types are ignored).
    Unknown {
        kind: FrameKind,
        flags: u8,
        stream_id: u32,
        len: u32,
    },
}

impl Frame<'_> {
    /// The frame's stream id (0 for connection-level frames).
    pub fn stream_id(&self) -> u32 {
        match *self {
            Frame::Data { stream_id, .. }
            | Frame::Headers { stream_id, .. }
            | Frame::Priority { stream_id }
            | Frame::RstStream { stream_id, .. }
            | Frame::PushPromise { stream_id, .. }
            | Frame::WindowUpdate { stream_id, .. }
            | Frame::Continuation { stream_id, .. }
            | Frame::HeaderBlock { stream_id, .. }
            | Frame::Unknown { stream_id, .. } => stream_id,
            Frame::Settings { .. } | Frame::Ping { .. } | Frame::GoAway { .. } => 0,
        }
    }
}

/// Bytes that are not a valid HTTP/2 frame sequence. The section cited is what was broken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("not the HTTP/2 client preface: byte {offset} differs (RFC 9113 section 3.4)")]
    BadPreface { offset: usize },
    #[error(
        "{kind} frame of {len_bytes} bytes exceeds the maximum frame size of {max_bytes} (RFC 9113 section 4.2)"
    )]
    TooLarge {
        kind: FrameKind,
        len_bytes: u32,
        max_bytes: u32,
    },
    #[error("{kind} frame has length {len_bytes}, {rule} (RFC 9113 section {section})")]
    BadLength {
        kind: FrameKind,
        len_bytes: u32,
        rule: &'static str,
        section: &'static str,
    },
    #[error("{kind} frame on stream 0, which it must not use (RFC 9113 section {section})")]
    StreamIdZero {
        kind: FrameKind,
        section: &'static str,
    },
    #[error(
        "{kind} frame on stream {stream_id}, but it must use stream 0 (RFC 9113 section {section})"
    )]
    StreamIdNonZero {
        kind: FrameKind,
        stream_id: u32,
        section: &'static str,
    },
    #[error(
        "{kind} frame on stream {stream_id} pads {pad_len_bytes} bytes, more than its {len_bytes}-byte payload holds (RFC 9113 section {section})"
    )]
    BadPadding {
        kind: FrameKind,
        stream_id: u32,
        pad_len_bytes: u8,
        len_bytes: u32,
        section: &'static str,
    },
    #[error(
        "{kind} frame on stream {stream_id} interrupts the header block of stream {open_stream_id} (RFC 9113 section 6.10)"
    )]
    HeaderBlockInterrupted {
        kind: FrameKind,
        stream_id: u32,
        open_stream_id: u32,
    },
    #[error(
        "CONTINUATION frame on stream {stream_id} without an open header block (RFC 9113 section 6.10)"
    )]
    UnexpectedContinuation { stream_id: u32 },
}

/// How a [`FrameDecoder`] reads its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderOptions {
    /// Expect the 24-byte client preface first: true for the client-to-server direction.
    pub expect_client_preface: bool,
    /// Frames longer than this are an error (RFC 9113 section 4.2); clamped to
    /// [`MAX_FRAME_SIZE_CAP_BYTES`]. Use the receiver's SETTINGS_MAX_FRAME_SIZE to be
    /// strict; the default accepts everything the length field can express.
    pub max_frame_size_bytes: u32,
    /// Assemble header blocks and deliver each as a [`Frame::HeaderBlock`]; off by
    /// default, when their bytes are skipped like DATA.
    pub keep_header_blocks: bool,
    /// The longest header block buffered (all its fragments together); a longer one is
    /// skipped and delivered as too large. Only read with `keep_header_blocks`.
    pub max_header_block_bytes: usize,
}

impl DecoderOptions {
    /// Upper bound of [`FrameDecoder::buffered_bytes`] with these options: the header
    /// and control payload bound, plus the header block cap when blocks are kept.
    pub fn max_buffered_bytes(&self) -> usize {
        let block = match self.keep_header_blocks {
            true => self.max_header_block_bytes,
            false => 0,
        };
        MAX_BUFFERED_BYTES.saturating_add(block)
    }
}

impl Default for DecoderOptions {
    fn default() -> Self {
        DecoderOptions {
            expect_client_preface: false,
            max_frame_size_bytes: MAX_FRAME_SIZE_CAP_BYTES,
            keep_header_blocks: false,
            max_header_block_bytes: DEFAULT_MAX_HEADER_BLOCK_BYTES,
        }
    }
}

/// Encodes one frame (RFC 9113 section 4.1): 24-bit length, type, flags, stream id, then
/// the payload as given. For tests and probes that need frames a conforming encoder would
/// refuse to write (wrong lengths, reserved bits, unknown types).
///
/// # Panics
/// When `payload` exceeds [`MAX_FRAME_SIZE_CAP_BYTES`]: the caller built an impossible frame.
pub fn encode_frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_FRAME_SIZE_CAP_BYTES)
        .expect("an HTTP/2 frame payload fits in 24 bits");
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream_id.to_be_bytes());
    out.extend(payload);
    out
}

// The tests live in h2frame/tests.rs to keep each file short (STYLE.md).
#[cfg(test)]
mod tests;
