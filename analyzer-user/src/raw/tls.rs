//! TLS observer for one direction of a reassembled TCP stream: reassembles records and
//! handshake messages (bounded), lets tls-parser decode them, and reports the plaintext
//! facts the analyzer can use (hellos, TLS 1.2 certificates, plaintext alerts).
//!
//! TLS 1.3 encrypts everything after ServerHello (RFC 8446 section 2), so certificates and
//! most alerts of a TLS 1.3 handshake are invisible here; [`TlsFact::EncryptedAfterServerHello`]
//! says so instead of staying silent, and a client's handshake given up with an encrypted
//! alert is told by its record's size ([`TlsFact::EncryptedAlert`]). Feed it from the
//! stream's first byte (a capture that starts mid-connection cannot find record
//! boundaries), and call [`TlsObserver::finish`] when the direction ends.
use tls_parser::{TlsMessage, TlsMessageHandshake};
use wire::cert::CertFact;

use super::reasm::Chunk;

pub mod decrypt;
mod facts;
mod hello;
pub mod keylog;

pub use facts::{AlertFact, CertChainFact, TlsFact, TlsStats, TlsWireError, alert_name};
pub use hello::{ClientHelloFact, MAX_LISTED, ServerHelloFact, TLS12, TLS13, version_name};

/// Longest record accepted: TLSCiphertext.length may not exceed 2^14 + 2048
/// (RFC 5246 section 6.2.3; RFC 8446 section 5.2 lowers it to 2^14 + 256).
pub const MAX_RECORD_LEN_BYTES: usize = (1 << 14) + 2048;
/// Longest handshake message reassembled; longer ones are skipped and reported.
pub const MAX_HANDSHAKE_LEN_BYTES: usize = 64 * 1024;
/// Certificates of a chain described; [`CertChainFact::chain_len`] counts them all.
pub const MAX_CHAIN_CERTS: usize = 16;
/// Facts reported per direction before further ones are only counted (the terminal
/// `NotTls`/`Malformed` fact is always reported).
pub const MAX_FACTS: usize = 64;
/// Upper bound of [`TlsObserver::buffered_bytes`].
pub const MAX_BUFFERED_BYTES: usize =
    RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN + MAX_HANDSHAKE_LEN_BYTES + 1;
/// Longest application_data record taken for an encrypted alert
/// ([`TlsFact::EncryptedAlert`]): 19 bytes with a 16-byte AEAD tag, and room for some
/// padding (RFC 8446 section 5.4); the client's Finished is at least 53.
pub const MAX_ENCRYPTED_ALERT_LEN_BYTES: usize = 32;
/// A TLS 1.3 client's Finished as a record: its 4-byte header, verify_data of the suite's
/// hash length (32 or 48 bytes), the inner content type and a 16-byte tag (RFC 8446
/// sections 4.4.4 and 5.2).
pub const FINISHED_RECORD_LEN_BYTES: std::ops::RangeInclusive<usize> = 53..=69;

const RECORD_HEADER_LEN: usize = 5;
const HANDSHAKE_HEADER_LEN: usize = 4;

// ContentType (RFC 8446 section 5.1; heartbeat is RFC 6520).
const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
const HEARTBEAT: u8 = 24;

// HandshakeType (RFC 8446 section 4).
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const CERTIFICATE: u8 = 11;

#[derive(Clone, Copy, Debug)]
struct Record {
    content_type: u8,
    left: usize,
    /// Opaque: application data, heartbeat, or anything after the keys changed.
    opaque: bool,
}

/// The client's first encrypted records, as far as they tell a handshake given up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ClientEnd {
    #[default]
    NotYet,
    /// Its Finished went first (see [`ClientEnd::Alert::after_handshake`]), nothing
    /// since. `tls12`: an encrypted handshake record, after which alerts have their own
    /// content type.
    Finished { tls12: bool },
    /// Alert-sized records, nothing longer since.
    Alert {
        len_bytes: usize,
        /// Its Finished went before: a TLS 1.3 first record of a Finished's size, or a
        /// TLS 1.2 encrypted handshake record.
        after_handshake: bool,
    },
    /// Reported, or the connection went on.
    Settled,
}

/// Observes one direction of one TLS connection.
#[derive(Clone, Debug, Default)]
pub struct TlsObserver {
    /// Stream offset of the next byte.
    offset: u64,
    stopped: bool,
    hdr: [u8; RECORD_HEADER_LEN],
    hdr_len: usize,
    record: Option<Record>,
    /// A handshake message being reassembled (header included), and where it began.
    hs: Vec<u8>,
    hs_start: u64,
    /// Bytes left of an abandoned, oversized handshake message.
    hs_skip_left: usize,
    alert_byte: Option<u8>,
    /// This direction's records are encrypted from now on.
    protected: bool,
    /// This direction sent a ClientHello: it is the client's.
    client: bool,
    client_end: ClientEnd,
    /// The other direction ended ([`Self::peer_ended`]).
    peer_ended: bool,
    facts: usize,
    stats: TlsStats,
}

impl TlsObserver {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> &TlsStats {
        &self.stats
    }

    /// True after a `NotTls` or `Malformed` fact.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// True once this direction's records are encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.protected
    }

    /// Bytes held between calls, at most [`MAX_BUFFERED_BYTES`].
    pub fn buffered_bytes(&self) -> usize {
        self.hdr_len + self.hs.len() + usize::from(self.alert_byte.is_some())
    }

    /// Takes what a [`super::reasm::StreamReassembler`] delivers.
    pub fn on_chunk(&mut self, chunk: Chunk<'_>, out: &mut Vec<TlsFact>) {
        match chunk {
            Chunk::Data(d) => self.feed(d, out),
            Chunk::Gap { len_bytes } => self.gap(len_bytes, out),
            Chunk::Capped { .. } => {}
        }
    }

    /// Bytes missing from the capture. Inside an unparsed record body they are stepped
    /// over; anywhere else the record framing is lost, and parsing stops.
    pub fn gap(&mut self, len_bytes: u64, out: &mut Vec<TlsFact>) {
        if self.stopped {
            return;
        }
        if let Some(rec) = &mut self.record
            && rec.opaque
            && len_bytes <= rec.left as u64
        {
            rec.left -= len_usize(len_bytes);
            self.offset += len_bytes;
            self.stats.gap_bytes_skipped += len_bytes;
            if rec.left == 0 {
                self.record = None;
            }
            return;
        }
        self.fail(out, self.offset, TlsWireError::Gap { len_bytes });
    }

    /// Parses the next bytes of the direction and appends the facts they complete.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<TlsFact>) {
        let mut rest = bytes;
        while !rest.is_empty() && !self.stopped {
            let n = match self.record {
                None => {
                    let n = rest.len().min(RECORD_HEADER_LEN - self.hdr_len);
                    if let (Some(dst), Some(src)) = (
                        self.hdr.get_mut(self.hdr_len..self.hdr_len + n),
                        rest.get(..n),
                    ) {
                        dst.copy_from_slice(src);
                    }
                    self.hdr_len += n;
                    self.advance(n);
                    if self.hdr_len == RECORD_HEADER_LEN {
                        self.hdr_len = 0;
                        self.start_record(out);
                    }
                    n
                }
                Some(rec) => {
                    let n = rest.len().min(rec.left);
                    let body = rest.get(..n).unwrap_or_default();
                    let at = self.offset;
                    self.advance(n);
                    self.record_body(rec, body, at, out);
                    if let Some(r) = &mut self.record {
                        r.left -= n;
                        if r.left == 0 {
                            self.end_record();
                        }
                    }
                    n
                }
            };
            rest = rest.get(n..).unwrap_or_default();
        }
    }

    fn advance(&mut self, n: usize) {
        self.offset += n as u64;
        self.stats.bytes_seen += n as u64;
    }

    fn emit(&mut self, out: &mut Vec<TlsFact>, fact: TlsFact) {
        if self.facts < MAX_FACTS {
            self.facts += 1;
            out.push(fact);
        } else {
            self.stats.facts_dropped += 1;
        }
    }

    /// Reports `what` and stops: as `NotTls` before the first record is accepted.
    fn fail(&mut self, out: &mut Vec<TlsFact>, offset: u64, what: TlsWireError) {
        out.push(match self.stats.records {
            0 => TlsFact::NotTls { offset, what },
            _ => TlsFact::Malformed { offset, what },
        });
        self.stopped = true;
        self.record = None;
        self.hs = Vec::new();
        self.alert_byte = None;
    }

    /// Checks a complete record header (RFC 8446 section 5.1) and opens the record.
    fn start_record(&mut self, out: &mut Vec<TlsFact>) {
        let [content_type, v0, v1, l0, l1] = self.hdr;
        let version = u16::from_be_bytes([v0, v1]);
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let at = self.offset - RECORD_HEADER_LEN as u64;
        let first = self.stats.records == 0;
        if !(CHANGE_CIPHER_SPEC..=HEARTBEAT).contains(&content_type) {
            return self.fail(out, at, TlsWireError::ContentType { byte: content_type });
        }
        if v0 != 3 || v1 > 4 {
            return self.fail(out, at, TlsWireError::RecordVersion { version });
        }
        if first && content_type != HANDSHAKE && content_type != ALERT {
            return self.fail(out, at, TlsWireError::FirstRecord { content_type });
        }
        if len > MAX_RECORD_LEN_BYTES {
            self.stats.records += 1;
            let e = TlsWireError::RecordTooLong {
                len_bytes: len,
                max_bytes: MAX_RECORD_LEN_BYTES,
            };
            return self.fail(out, at, e);
        }
        // An encrypted alert cannot be 2 bytes long (every cipher adds a MAC or tag), so
        // a 2-byte alert record is plaintext even after the keys changed.
        let opaque = match content_type {
            APPLICATION_DATA | HEARTBEAT => true,
            CHANGE_CIPHER_SPEC => false,
            ALERT => self.protected && len != 2,
            _ => self.protected,
        };
        self.stats.records += 1;
        if opaque {
            self.encrypted_record(content_type, len);
        } else {
            let fragmented = !self.hs.is_empty() || self.hs_skip_left > 0;
            let bad = if fragmented && content_type != HANDSHAKE {
                Some(TlsWireError::Interleaved { content_type })
            } else if len == 0 {
                Some(TlsWireError::EmptyRecord { content_type })
            } else if content_type == CHANGE_CIPHER_SPEC && len != 1 {
                Some(TlsWireError::ChangeCipherSpec)
            } else if content_type == ALERT && len % 2 != 0 {
                Some(TlsWireError::AlertLength { len_bytes: len })
            } else {
                None
            };
            if let Some(e) = bad {
                return self.fail(out, at, e);
            }
        }
        match content_type {
            APPLICATION_DATA => {
                self.stats.application_data_records += 1;
                self.stats.application_data_bytes += len as u64;
            }
            HEARTBEAT => self.stats.heartbeat_records += 1,
            CHANGE_CIPHER_SPEC => self.stats.change_cipher_spec_records += 1,
            _ if opaque => self.stats.protected_records += 1,
            _ => {}
        }
        self.record = Some(Record {
            content_type,
            left: len,
            opaque,
        });
        if len == 0 {
            self.end_record();
        }
    }

    /// Follows the client's first encrypted records (see [`TlsFact::EncryptedAlert`]):
    /// alert-sized ones first, or after its Finished, and nothing longer after them. A
    /// longer one (a Finished after an empty Certificate of 25 bytes, a request) says
    /// the connection went on.
    fn encrypted_record(&mut self, content_type: u8, len: usize) {
        if !self.client {
            return;
        }
        // TLS 1.2 alerts keep their content type when encrypted (RFC 5246 section 6.2);
        // TLS 1.3 hides it inside an application_data record (RFC 8446 section 5.2).
        let tls12 = matches!(self.client_end, ClientEnd::Finished { tls12: true });
        let (alert, finished) = match content_type {
            APPLICATION_DATA => (
                !tls12 && len <= MAX_ENCRYPTED_ALERT_LEN_BYTES,
                FINISHED_RECORD_LEN_BYTES.contains(&len),
            ),
            // Opaque only when encrypted (see `start_record`).
            ALERT => (true, false),
            // An encrypted handshake record: TLS 1.2's Finished.
            HANDSHAKE => (false, true),
            _ => (false, false),
        };
        self.client_end = match (self.client_end, alert, finished) {
            (ClientEnd::NotYet, true, _) => ClientEnd::Alert {
                len_bytes: len,
                after_handshake: false,
            },
            (ClientEnd::NotYet, _, true) => ClientEnd::Finished {
                tls12: content_type == HANDSHAKE,
            },
            // After the server's FIN it is an answer to the server's close.
            (ClientEnd::Finished { .. }, true, _) if !self.peer_ended => ClientEnd::Alert {
                len_bytes: len,
                after_handshake: true,
            },
            (end @ ClientEnd::Alert { .. }, true, _) => end,
            _ => ClientEnd::Settled,
        };
    }

    /// The other direction ended (its FIN came): an alert this one sends after its
    /// Finished from now on answers the peer's close, and gives nothing up.
    pub fn peer_ended(&mut self) {
        self.peer_ended = true;
    }

    /// The direction ended: reports what only its end tells (an encrypted alert that
    /// nothing followed). Later calls report nothing.
    pub fn finish(&mut self, out: &mut Vec<TlsFact>) {
        if self.stopped {
            return;
        }
        if let ClientEnd::Alert {
            len_bytes,
            after_handshake,
        } = self.client_end
        {
            let fact = TlsFact::EncryptedAlert {
                len_bytes,
                after_handshake,
            };
            self.emit(out, fact);
        }
        self.client_end = ClientEnd::Settled;
    }

    fn record_body(&mut self, rec: Record, body: &[u8], at: u64, out: &mut Vec<TlsFact>) {
        if rec.opaque {
            return;
        }
        match rec.content_type {
            HANDSHAKE => self.handshake_bytes(body, at, out),
            ALERT => {
                for (i, &b) in body.iter().enumerate() {
                    match self.alert_byte.take() {
                        None => self.alert_byte = Some(b),
                        Some(level) => self.alert(level, b, at + i as u64 - 1, out),
                    }
                }
            }
            // RFC 5246 section 7.1: the message is the single byte 0x01.
            CHANGE_CIPHER_SPEC if tls_parser::parse_tls_message_changecipherspec(body).is_err() => {
                self.fail(out, at, TlsWireError::ChangeCipherSpec);
            }
            _ => {}
        }
    }

    fn end_record(&mut self) {
        if let Some(rec) = self.record.take()
            && rec.content_type == CHANGE_CIPHER_SPEC
        {
            // RFC 5246 section 7.1: the sender's next records use the new keys. TLS 1.3
            // compatibility mode (RFC 8446 appendix D.4) sends it just before encrypting.
            self.protected = true;
        }
    }

    fn alert(&mut self, level: u8, description: u8, at: u64, out: &mut Vec<TlsFact>) {
        match tls_parser::parse_tls_message_alert(&[level, description]) {
            Ok((_, TlsMessage::Alert(a))) => {
                let fact = AlertFact {
                    level: a.severity.0,
                    description: a.code.0,
                };
                self.emit(out, TlsFact::Alert(fact));
            }
            _ => {
                let detail = "alert does not parse".to_owned();
                self.fail(
                    out,
                    at,
                    TlsWireError::Handshake {
                        msg_type: 0,
                        detail,
                    },
                );
            }
        }
    }

    /// Reassembles handshake messages (RFC 8446 section 5.1: they may be fragmented over
    /// records and coalesced in one); `at` is the stream offset of `body`.
    fn handshake_bytes(&mut self, body: &[u8], mut at: u64, out: &mut Vec<TlsFact>) {
        let mut rest = body;
        while !rest.is_empty() && !self.stopped {
            if self.hs_skip_left > 0 {
                let n = rest.len().min(self.hs_skip_left);
                self.hs_skip_left -= n;
                rest = rest.get(n..).unwrap_or_default();
                at += n as u64;
                continue;
            }
            if self.hs.is_empty() {
                self.hs_start = at;
                // A whole message in this chunk is parsed in place, without copying.
                if let Some(len) = message_len(rest)
                    && len <= MAX_HANDSHAKE_LEN_BYTES
                    && let Some((msg, tail)) = rest.split_at_checked(HANDSHAKE_HEADER_LEN + len)
                {
                    self.handshake_message(msg, at, out);
                    rest = tail;
                    at += msg.len() as u64;
                    continue;
                }
            }
            let want = match message_len(&self.hs) {
                Some(len) => HANDSHAKE_HEADER_LEN + len,
                None => HANDSHAKE_HEADER_LEN,
            };
            let n = rest.len().min(want - self.hs.len());
            self.hs.extend_from_slice(rest.get(..n).unwrap_or_default());
            rest = rest.get(n..).unwrap_or_default();
            at += n as u64;
            match message_len(&self.hs) {
                Some(len) if len > MAX_HANDSHAKE_LEN_BYTES => {
                    let msg_type = self.hs.first().copied().unwrap_or_default();
                    let offset = self.hs_start;
                    self.hs.clear();
                    self.hs_skip_left = len;
                    let fact = TlsFact::HandshakeAbandoned {
                        offset,
                        msg_type,
                        len_bytes: len,
                    };
                    self.emit(out, fact);
                }
                Some(len) if self.hs.len() == HANDSHAKE_HEADER_LEN + len => {
                    let msg = std::mem::take(&mut self.hs);
                    self.handshake_message(&msg, self.hs_start, out);
                    // Keep a small buffer for the next message; free a large one.
                    if msg.capacity() <= 16 * 1024 && !self.stopped {
                        self.hs = msg;
                        self.hs.clear();
                    }
                }
                _ => {}
            }
        }
    }

    /// One complete handshake message (header included), starting at stream offset `at`.
    fn handshake_message(&mut self, msg: &[u8], at: u64, out: &mut Vec<TlsFact>) {
        self.stats.handshake_messages += 1;
        let msg_type = msg.first().copied().unwrap_or_default();
        if ![CLIENT_HELLO, SERVER_HELLO, CERTIFICATE].contains(&msg_type) {
            // Other messages carry nothing the analyzer reports; they are not decoded.
            return;
        }
        let parsed = match tls_parser::parse_tls_message_handshake(msg) {
            Ok((_, TlsMessage::Handshake(m))) => m,
            Ok(_) => return,
            Err(e) => {
                let detail = nom_detail(msg, &e);
                return self.fail(out, at, TlsWireError::Handshake { msg_type, detail });
            }
        };
        match parsed {
            TlsMessageHandshake::ClientHello(ch) => {
                self.client = true;
                self.emit(out, TlsFact::ClientHello(hello::client_hello(&ch)));
            }
            TlsMessageHandshake::ServerHello(sh) => {
                self.server_hello(hello::server_hello(&sh), out)
            }
            TlsMessageHandshake::ServerHelloV13Draft18(sh) => {
                self.server_hello(hello::server_hello_draft(sh.version.0, sh.cipher.0), out);
            }
            TlsMessageHandshake::Certificate(c) => {
                let certs = c
                    .cert_chain
                    .iter()
                    .take(MAX_CHAIN_CERTS)
                    .map(|raw| CertFact::from_der(raw.data))
                    .collect();
                let chain = CertChainFact {
                    certs,
                    chain_len: c.cert_chain.len(),
                };
                self.emit(out, TlsFact::Certificates(chain));
            }
            _ => {}
        }
    }

    fn server_hello(&mut self, sh: ServerHelloFact, out: &mut Vec<TlsFact>) {
        let encrypts = sh.encrypts_handshake();
        let version = sh.selected_version;
        self.emit(out, TlsFact::ServerHello(sh));
        if encrypts {
            // RFC 8446 section 2: everything the server sends after ServerHello is
            // encrypted under the handshake keys.
            self.protected = true;
            self.emit(out, TlsFact::EncryptedAfterServerHello { version });
        }
    }
}

/// The body length of the handshake message whose header starts `b` (RFC 8446 section 4).
fn message_len(b: &[u8]) -> Option<usize> {
    match b {
        [_, l0, l1, l2, ..] => {
            Some(usize::from(*l0) << 16 | usize::from(*l1) << 8 | usize::from(*l2))
        }
        _ => None,
    }
}

/// A short description of a tls-parser (nom) error, with its byte offset in the message.
fn nom_detail(
    msg: &[u8],
    e: &tls_parser::nom::Err<tls_parser::nom::error::Error<&[u8]>>,
) -> String {
    match e {
        tls_parser::nom::Err::Incomplete(_) => "truncated".to_owned(),
        tls_parser::nom::Err::Error(e) | tls_parser::nom::Err::Failure(e) => {
            let at = (e.input.as_ptr() as usize)
                .checked_sub(msg.as_ptr() as usize)
                .filter(|&o| o <= msg.len());
            match at {
                Some(at) => format!("{:?} at byte {at}", e.code),
                None => format!("{:?}", e.code),
            }
        }
    }
}

fn len_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

// Tests: hand-built and hostile inputs in tls/tests.rs; real rustls handshakes in
// tls/rustls_tests.rs.
#[cfg(test)]
pub(crate) mod rustls_tests;
#[cfg(test)]
mod tests;
