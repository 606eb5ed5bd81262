//! HTTP/1.1 observer for one direction of a connection's in-order bytes: request heads
//! on the client side, responses on the server side, and just enough of the body
//! framing (RFC 9112 section 6) to find where the next message starts, so the analyzer
//! can pair requests with responses and say which were answered, cut short or never
//! answered.
//!
//! Heads are parsed by `httparse` once their empty line has come, and are held at most
//! [`MAX_HEAD_BYTES`]; bodies are never buffered, only counted through. A direction
//! whose first bytes are not an HTTP/1.x request line (client) or status line (server)
//! stops at once with [`Http1Fact::NotHttp1`], so TLS and h2c streams cost nothing here.
use std::collections::VecDeque;

use httparse::{EMPTY_HEADER, Header, ParserConfig, Status};

use super::reasm::Chunk;

/// Longest message head (start line, header fields, empty line) held; a longer one
/// stops the direction ([`Http1Error::HeadTooLong`]).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Header fields parsed per head.
pub const MAX_HEADERS: usize = 128;
/// Longest trailer section (RFC 9112 section 7.1.2) skipped.
pub const MAX_TRAILER_BYTES: usize = MAX_HEAD_BYTES;
/// Requests whose method the server side remembers while their responses are awaited
/// (pipelining, RFC 9112 section 9.3.2); beyond it a response is framed as if to a GET.
pub const MAX_PENDING_REQUESTS: usize = 1024;
/// A head is checked for a valid start while shorter than this, so a stream that is
/// not HTTP/1 is named within its first bytes rather than at its first empty line.
const EARLY_CHECK_BYTES: usize = 256;
/// Head buffers grown past this are freed after use (the common head is far shorter).
const KEPT_HEAD_CAPACITY: usize = 4096;

/// Which end's bytes the observer reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Http1Side {
    /// Client to server: requests.
    Client,
    /// Server to client: responses.
    Server,
}

/// What a request's method means for the framing of its response (RFC 9112 section 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// HEAD: the response has no body whatever its header fields say.
    Head,
    /// CONNECT: a 2xx response turns the connection into a tunnel.
    Connect,
    Other,
}

/// What one direction of an HTTP/1.x connection showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Http1Fact {
    /// A request head (client side).
    Request { kind: RequestKind },
    /// An interim 1xx response other than 101 (server side); the final one follows.
    Interim { status: u16 },
    /// A final response head (server side), the answer to the oldest request not yet
    /// answered. 101 Switching Protocols counts as final: it is the last HTTP/1.1
    /// message of the connection.
    Response { status: u16 },
    /// The message whose head came last is complete: its whole body was read.
    Complete,
    /// The connection left HTTP/1.1 (101 Switching Protocols, a 2xx answer to CONNECT,
    /// or bytes that are not HTTP/1 after a request that asked for either); nothing
    /// more is parsed.
    Switched,
    /// The direction does not start like HTTP/1.x; nothing more is parsed.
    NotHttp1 { what: Http1Error },
    /// Framing was lost at `offset` (a broken message, or bytes missing from the
    /// capture where a head or chunk line would be); nothing more is parsed.
    Malformed { offset: u64, what: Http1Error },
}

/// Why a direction is not HTTP/1, or where its framing was lost.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Http1Error {
    #[error("bad message head: {0}")]
    Head(httparse::Error),
    #[error("message head longer than {limit_bytes} bytes")]
    HeadTooLong { limit_bytes: usize },
    #[error("invalid or conflicting Content-Length (RFC 9112 section 6.3)")]
    BadContentLength,
    #[error("request Transfer-Encoding does not end in chunked (RFC 9112 section 6.3)")]
    RequestNotChunked,
    #[error("bad chunked framing: {what}")]
    BadChunk { what: &'static str },
    #[error("{len_bytes} bytes are missing from the capture where framing was needed")]
    Gap { len_bytes: u64 },
    #[error("the capture stopped delivering bytes")]
    Capped,
}

impl Http1Error {
    /// The capture lost bytes; the peer did nothing wrong.
    pub fn is_capture_loss(&self) -> bool {
        matches!(self, Self::Gap { .. } | Self::Capped)
    }
}

/// How a message's body ends (RFC 9112 section 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    ToClose,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading a head into `head`.
    Head,
    /// Content-Length bytes still to come.
    Body {
        left: u64,
    },
    Chunked(ChunkState),
    ToClose,
}

/// Where a chunked body is (RFC 9112 section 7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    Size {
        size: u64,
        digits: u8,
    },
    /// Chunk extensions (or white space) after the size, up to the line's end.
    Ext {
        size: u64,
    },
    /// CR seen after the size line.
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    /// The CRLF after a chunk's data (`cr`: the CR was seen).
    DataEnd {
        cr: bool,
    },
    /// At the start of a trailer line (`bytes`: trailer bytes so far).
    TrailerStart {
        bytes: usize,
    },
    TrailerLine {
        bytes: usize,
    },
    /// CR seen on the empty line that ends the trailer section.
    TrailerEnd,
}

/// Observes one direction of one HTTP/1.x connection.
#[derive(Clone, Debug)]
pub struct Http1Observer {
    side: Http1Side,
    /// Bytes seen (skipped ones included).
    offset: u64,
    state: State,
    head: Vec<u8>,
    /// Offset of the head's first byte.
    head_at: u64,
    /// Non-CR bytes on the current head line.
    line_bytes: usize,
    /// Lines of the head ended so far.
    head_lines: u32,
    /// The head's start line is whole and parsed well.
    start_line_ok: bool,
    /// Heads parsed.
    messages: u64,
    /// Server side: an interim response came for the request now answered.
    interim: bool,
    /// Server side: the methods of the requests not yet answered, oldest first.
    pending: VecDeque<RequestKind>,
    /// Client side: the last request asked to switch protocols (Upgrade, CONNECT).
    switch_asked: bool,
    stopped: bool,
}

impl Http1Observer {
    pub fn new(side: Http1Side) -> Self {
        Self {
            side,
            offset: 0,
            state: State::Head,
            head: Vec::new(),
            head_at: 0,
            line_bytes: 0,
            head_lines: 0,
            start_line_ok: false,
            messages: 0,
            interim: false,
            pending: VecDeque::new(),
            switch_asked: false,
            stopped: false,
        }
    }

    pub fn side(&self) -> Http1Side {
        self.side
    }

    /// True after a `Switched`, `NotHttp1` or `Malformed` fact.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Bytes seen so far, skipped ones included.
    pub fn bytes_seen(&self) -> u64 {
        self.offset
    }

    /// Bytes held between calls, at most [`MAX_HEAD_BYTES`].
    pub fn buffered_bytes(&self) -> usize {
        self.head.len()
    }

    /// Bytes of a message came and it is not complete: a head begun, an interim
    /// response without its final one, or a body not read to its end.
    pub fn mid_message(&self) -> bool {
        match self.state {
            State::Head => !self.head.is_empty() || self.interim,
            State::Body { .. } | State::Chunked(_) | State::ToClose => true,
        }
    }

    /// Server side: the client sent a request of this kind; responses are paired with
    /// requests in order (RFC 9112 section 9.3.2), and a response without a known
    /// request is framed as if it answered a GET.
    pub fn expect_response_to(&mut self, kind: RequestKind) {
        if self.pending.len() < MAX_PENDING_REQUESTS {
            self.pending.push_back(kind);
        }
    }

    /// Takes what a [`super::reasm::StreamReassembler`] (or the syscall capture) delivers.
    pub fn on_chunk(&mut self, chunk: Chunk<'_>, out: &mut Vec<Http1Fact>) {
        if self.stopped {
            return;
        }
        match chunk {
            Chunk::Data(d) => self.feed(d, out),
            Chunk::Gap { len_bytes } => self.gap(len_bytes, out),
            Chunk::Capped { .. } => self.fail(self.offset, Http1Error::Capped, out),
        }
    }

    /// The direction ended (`clean`: with a FIN, or a read that returned 0): a body
    /// delimited by the close is complete then (RFC 9112 section 6.3, rule 8). After an
    /// unclean end it is not known to be complete, and stays open.
    pub fn end(&mut self, clean: bool, out: &mut Vec<Http1Fact>) {
        if !self.stopped && clean && self.state == State::ToClose {
            self.complete(out);
        }
    }

    /// Parses the next bytes of the direction and appends the facts they complete.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Http1Fact>) {
        let mut rest = bytes;
        while !rest.is_empty() && !self.stopped {
            let used = match self.state {
                State::Head => self.head_bytes(rest, out),
                State::Body { left } => {
                    let n = take(left, rest.len());
                    self.body_done(left - n as u64, out);
                    n
                }
                State::Chunked(c) => self.chunk_bytes(c, rest, out),
                State::ToClose => rest.len(),
            };
            self.offset += used as u64;
            rest = rest.get(used..).unwrap_or_default();
        }
    }

    /// Bytes missing from the capture: harmless inside a body of known length or a
    /// close-delimited one, fatal where a head or chunk line would be.
    fn gap(&mut self, len_bytes: u64, out: &mut Vec<Http1Fact>) {
        match self.state {
            State::Body { left } if len_bytes <= left => self.body_done(left - len_bytes, out),
            State::Chunked(ChunkState::Data { left }) if len_bytes <= left => {
                self.state = State::Chunked(data_left(left - len_bytes));
            }
            State::ToClose => {}
            _ => self.fail(self.offset, Http1Error::Gap { len_bytes }, out),
        }
        self.offset = self.offset.saturating_add(len_bytes);
    }

    fn body_done(&mut self, left: u64, out: &mut Vec<Http1Fact>) {
        if left == 0 {
            self.complete(out);
        } else {
            self.state = State::Body { left };
        }
    }

    fn complete(&mut self, out: &mut Vec<Http1Fact>) {
        self.state = State::Head;
        out.push(Http1Fact::Complete);
    }

    /// Appends head bytes up to the empty line that ends the head; returns how many of
    /// `rest` it took.
    fn head_bytes(&mut self, rest: &[u8], out: &mut Vec<Http1Fact>) -> usize {
        for (i, &b) in rest.iter().enumerate() {
            // RFC 9112 section 2.2: empty lines before a message are ignored.
            if self.head.is_empty() {
                if matches!(b, b'\r' | b'\n') {
                    continue;
                }
                self.head_at = self.offset + i as u64;
            }
            if self.head.len() >= MAX_HEAD_BYTES {
                let what = Http1Error::HeadTooLong {
                    limit_bytes: MAX_HEAD_BYTES,
                };
                self.bad_head(what, out);
                return i;
            }
            self.head.push(b);
            match b {
                b'\n' if self.line_bytes == 0 => {
                    self.head_done(out);
                    return i + 1;
                }
                b'\n' => {
                    self.line_bytes = 0;
                    self.head_lines = self.head_lines.saturating_add(1);
                    if self.head_lines == 1 {
                        self.check_start(out);
                        if self.stopped {
                            return i + 1;
                        }
                    }
                }
                b'\r' => {}
                _ => self.line_bytes += 1,
            }
        }
        // While the start line is short and not whole, check it after every chunk, so
        // a stream that is not HTTP/1 stops within its first bytes.
        if self.head_lines == 0 && !self.head.is_empty() && self.head.len() <= EARLY_CHECK_BYTES {
            self.check_start(out);
        }
        rest.len()
    }

    /// Whether the head so far may start a message (httparse finds it partial, not
    /// wrong); once its start line is whole, that line is known good.
    fn check_start(&mut self, out: &mut Vec<Http1Fact>) {
        let mut headers = [EMPTY_HEADER; MAX_HEADERS];
        let checked = match self.side {
            Http1Side::Client => {
                config().parse_request(&mut httparse::Request::new(&mut headers), &self.head)
            }
            Http1Side::Server => {
                config().parse_response(&mut httparse::Response::new(&mut headers), &self.head)
            }
        };
        match checked {
            // Too many header fields is the full parse's to say.
            Err(e) if e != httparse::Error::TooManyHeaders => {
                self.bad_head(Http1Error::Head(e), out);
            }
            _ => self.start_line_ok = self.head_lines > 0,
        }
    }

    /// The head's empty line came: parse it and start its body.
    fn head_done(&mut self, out: &mut Vec<Http1Fact>) {
        let parsed = match self.side {
            Http1Side::Client => parse_request(&self.head).map(|r| {
                self.switch_asked = r.switch;
                out.push(Http1Fact::Request { kind: r.kind });
                Some(r.framing)
            }),
            Http1Side::Server => parse_response(&self.head).and_then(|r| self.response(r, out)),
        };
        self.head.clear();
        if self.head.capacity() > KEPT_HEAD_CAPACITY {
            self.head = Vec::new();
        }
        self.line_bytes = 0;
        self.head_lines = 0;
        self.start_line_ok = false;
        match parsed {
            Ok(framing) => {
                self.messages += 1;
                if let Some(f) = framing {
                    self.begin_body(f, out);
                }
            }
            Err(what) => self.bad_head(what, out),
        }
    }

    /// A response head: what it answers, and how its body is framed (`None`: an interim
    /// response, whose final one follows).
    fn response(
        &mut self,
        r: ResponseHead,
        out: &mut Vec<Http1Fact>,
    ) -> Result<Option<Framing>, Http1Error> {
        let status = r.status;
        // RFC 9110 section 15.2: a 1xx response is interim; the final one follows.
        if (100..200).contains(&status) && status != 101 {
            self.interim = true;
            out.push(Http1Fact::Interim { status });
            return Ok(None);
        }
        self.interim = false;
        let kind = self.pending.pop_front().unwrap_or(RequestKind::Other);
        out.push(Http1Fact::Response { status });
        // RFC 9112 section 6.3, rule 2: a 2xx to CONNECT makes a tunnel; RFC 9110
        // section 15.2.2: after 101 the connection speaks the protocol switched to.
        if status == 101 || kind == RequestKind::Connect && (200..300).contains(&status) {
            out.push(Http1Fact::Complete);
            out.push(Http1Fact::Switched);
            self.stop();
            return Ok(None);
        }
        // RFC 9112 section 6.3, rule 1: no body after HEAD, 204 or 304.
        if kind == RequestKind::Head || status == 204 || status == 304 {
            return Ok(Some(Framing::Length(0)));
        }
        r.framing.map(Some)
    }

    fn begin_body(&mut self, framing: Framing, out: &mut Vec<Http1Fact>) {
        match framing {
            Framing::Length(0) => self.complete(out),
            Framing::Length(left) => self.state = State::Body { left },
            Framing::Chunked => {
                self.state = State::Chunked(ChunkState::Size { size: 0, digits: 0 })
            }
            Framing::ToClose => self.state = State::ToClose,
        }
    }

    /// Steps through chunk-size lines, chunk data and trailers; returns how many bytes
    /// of `rest` it took.
    fn chunk_bytes(&mut self, c: ChunkState, rest: &[u8], out: &mut Vec<Http1Fact>) -> usize {
        if let ChunkState::Data { left } = c {
            let n = take(left, rest.len());
            self.state = State::Chunked(data_left(left - n as u64));
            return n;
        }
        let mut c = c;
        for (i, &b) in rest.iter().enumerate() {
            match chunk_step(c, b) {
                Ok(Some(next @ ChunkState::Data { .. })) => {
                    self.state = State::Chunked(next);
                    return i + 1;
                }
                Ok(Some(next)) => c = next,
                Ok(None) => {
                    self.complete(out);
                    return i + 1;
                }
                Err(what) => {
                    self.fail(self.offset + i as u64, Http1Error::BadChunk { what }, out);
                    return i + 1;
                }
            }
        }
        self.state = State::Chunked(c);
        rest.len()
    }

    /// A head that does not parse. After a request that asked to switch protocols it
    /// is the new protocol; the first head of a direction whose start line is not
    /// HTTP/1.x says the direction is not HTTP/1; anything else broke the framing.
    fn bad_head(&mut self, what: Http1Error, out: &mut Vec<Http1Fact>) {
        let start_line = match what {
            Http1Error::Head(e) => matches!(
                e,
                httparse::Error::Token | httparse::Error::Version | httparse::Error::Status
            ),
            // 16 KiB without one whole, well-formed start line.
            Http1Error::HeadTooLong { .. } => !self.start_line_ok,
            _ => false,
        };
        if self.switch_asked {
            out.push(Http1Fact::Switched);
            self.stop();
        } else if self.messages == 0 && start_line {
            out.push(Http1Fact::NotHttp1 { what });
            self.stop();
        } else {
            self.fail(self.head_at, what, out);
        }
    }

    fn fail(&mut self, offset: u64, what: Http1Error, out: &mut Vec<Http1Fact>) {
        out.push(Http1Fact::Malformed { offset, what });
        self.stop();
    }

    fn stop(&mut self) {
        self.stopped = true;
        self.head = Vec::new();
        self.pending = VecDeque::new();
    }
}

/// Where a chunk's data leaves the chunked body once `left` bytes remain.
fn data_left(left: u64) -> ChunkState {
    if left == 0 {
        ChunkState::DataEnd { cr: false }
    } else {
        ChunkState::Data { left }
    }
}

/// The first state after a chunk-size line: its data, or the trailer section after
/// the last chunk (size 0).
fn after_size(size: u64) -> ChunkState {
    if size == 0 {
        ChunkState::TrailerStart { bytes: 0 }
    } else {
        ChunkState::Data { left: size }
    }
}

/// One byte of chunked framing outside chunk data (RFC 9112 section 7.1): the next
/// state, or `None` when the body ended. A lone LF is taken as a line end (RFC 9112
/// section 2.2 lets a recipient do so).
fn chunk_step(c: ChunkState, b: u8) -> Result<Option<ChunkState>, &'static str> {
    use ChunkState as C;
    Ok(Some(match c {
        C::Size { size, digits } => match char::from(b).to_digit(16) {
            Some(d) if digits < 16 => C::Size {
                size: size << 4 | u64::from(d),
                digits: digits + 1,
            },
            Some(_) => return Err("chunk size over 16 hex digits"),
            None if digits == 0 => return Err("no chunk size"),
            None => match b {
                b';' | b' ' | b'\t' => C::Ext { size },
                b'\r' => C::SizeLf { size },
                b'\n' => after_size(size),
                _ => return Err("bad byte after the chunk size"),
            },
        },
        C::Ext { size } if b == b'\n' => after_size(size),
        C::Ext { size } => C::Ext { size },
        C::SizeLf { size } if b == b'\n' => after_size(size),
        C::SizeLf { .. } => return Err("CR without LF after the chunk size"),
        C::Data { left } => C::Data { left },
        C::DataEnd { cr: false } if b == b'\r' => C::DataEnd { cr: true },
        C::DataEnd { .. } if b == b'\n' => C::Size { size: 0, digits: 0 },
        C::DataEnd { .. } => return Err("chunk data not followed by CRLF"),
        C::TrailerStart { .. } if b == b'\r' => C::TrailerEnd,
        C::TrailerStart { .. } if b == b'\n' => return Ok(None),
        C::TrailerStart { bytes } | C::TrailerLine { bytes } if bytes >= MAX_TRAILER_BYTES => {
            return Err("trailer section too long");
        }
        C::TrailerStart { bytes } | C::TrailerLine { bytes } if b == b'\n' => {
            C::TrailerStart { bytes: bytes + 1 }
        }
        C::TrailerStart { bytes } | C::TrailerLine { bytes } => C::TrailerLine { bytes: bytes + 1 },
        C::TrailerEnd if b == b'\n' => return Ok(None),
        C::TrailerEnd => return Err("CR without LF ending the trailer section"),
    }))
}

/// `min(left, len)` as a length.
fn take(left: u64, len: usize) -> usize {
    usize::try_from(left).map_or(len, |l| l.min(len))
}

/// Lenient where browsers are (this observes, it does not enforce).
fn config() -> ParserConfig {
    let mut c = ParserConfig::default();
    c.allow_multiple_spaces_in_request_line_delimiters(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .ignore_invalid_headers_in_responses(true);
    c
}

/// What a request head says.
struct RequestHead {
    kind: RequestKind,
    /// It asked to switch protocols: an Upgrade field, or CONNECT.
    switch: bool,
    framing: Framing,
}

struct ResponseHead {
    status: u16,
    /// Per the header fields alone (the request's method and the status come after).
    framing: Result<Framing, Http1Error>,
}

fn parse_request(buf: &[u8]) -> Result<RequestHead, Http1Error> {
    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    complete(config().parse_request(&mut req, buf))?;
    let kind = match req.method {
        Some("HEAD") => RequestKind::Head,
        Some("CONNECT") => RequestKind::Connect,
        _ => RequestKind::Other,
    };
    let upgrade = req
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("upgrade"));
    Ok(RequestHead {
        kind,
        switch: upgrade || kind == RequestKind::Connect,
        framing: framing(req.headers, true)?,
    })
}

fn parse_response(buf: &[u8]) -> Result<ResponseHead, Http1Error> {
    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    complete(config().parse_response(&mut resp, buf))?;
    Ok(ResponseHead {
        status: resp.code.unwrap_or_default(),
        framing: framing(resp.headers, false),
    })
}

/// A head ends at its empty line, so httparse must find it complete.
fn complete(r: httparse::Result<usize>) -> Result<(), Http1Error> {
    match r {
        Ok(Status::Complete(_)) => Ok(()),
        Ok(Status::Partial) => Err(Http1Error::Head(httparse::Error::NewLine)),
        Err(e) => Err(Http1Error::Head(e)),
    }
}

/// The body framing the header fields announce (RFC 9112 section 6.3, rules 3 to 8).
fn framing(headers: &[Header<'_>], request: bool) -> Result<Framing, Http1Error> {
    let values = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| h.value.split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|v| !v.is_empty())
    };
    // Rule 3 and 4: Transfer-Encoding overrides Content-Length; chunked must be last.
    if let Some(last) = values("transfer-encoding").next_back() {
        return match (last.eq_ignore_ascii_case(b"chunked"), request) {
            (true, _) => Ok(Framing::Chunked),
            (false, true) => Err(Http1Error::RequestNotChunked),
            (false, false) => Ok(Framing::ToClose),
        };
    }
    // Rule 5: every Content-Length value must be the same decimal number.
    let mut length = None;
    for v in values("content-length") {
        let n = std::str::from_utf8(v)
            .ok()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(Http1Error::BadContentLength)?;
        if length.is_some_and(|l| l != n) {
            return Err(Http1Error::BadContentLength);
        }
        length = Some(n);
    }
    // Rules 6 to 8: a request without either has no body; a response runs to the close.
    Ok(match (length, request) {
        (Some(n), _) => Framing::Length(n),
        (None, true) => Framing::Length(0),
        (None, false) => Framing::ToClose,
    })
}

// The tests live in http1/tests.rs to keep each file short (STYLE.md).
#[cfg(test)]
mod tests;
