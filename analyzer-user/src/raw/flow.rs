//! Payload inspection of one connection: the in-order bytes of both directions
//! (reassembled from segments by [`StreamReassembler`], or handed over by the syscall
//! capture) are read by a TLS, an h2c and an HTTP/1.1 observer at once, until each says
//! the stream is not its protocol. What they find becomes [`WireFact`]s about the
//! connection; when it ends, [`Inspector::finish`] sums its HTTP exchanges into one
//! [`HttpTally`].
use std::{collections::BTreeMap, sync::Arc};

use wire::packet::{Segment, TcpFlags};

use super::{
    h2c::{self, H2cDirection, H2cFact, H2cObserver},
    http1::{Http1Fact, Http1Observer, Http1Side},
    reasm::{Chunk, ReasmConfig, StreamReassembler},
    tls::{TlsFact, TlsObserver, decrypt::TlsDecryptor, keylog::KeyLog},
};
use crate::event::wire_fact::WireFact;

/// Inspection limits per connection.
#[derive(Clone, Debug)]
pub struct Inspect {
    pub reasm: ReasmConfig,
    /// TLS connections are decrypted with the secrets of this key log (`--keylog`), and
    /// their plaintext inspected like cleartext.
    pub keylog: Option<Arc<KeyLog>>,
}

impl Inspect {
    /// Decrypting with `keylog`: a connection is read to its end, 64 MiB per direction
    /// (a long HTTP/2 connection's frames are its answers), where cleartext inspection
    /// stops at 256 KiB. The cost is CPU only (the reassembler's memory is bounded
    /// apart): every byte is decrypted and parsed: 0.6 ms of one core per MB with AES-GCM,
    /// 1.3 ms with ChaCha20-Poly1305 (`measure_decrypt_cost_per_mb`, release build).
    pub fn with_keylog(keylog: Arc<KeyLog>) -> Self {
        let mut i = Self::default();
        i.reasm.max_delivered_bytes = 64 << 20;
        i.keylog = Some(keylog);
        i
    }
}

impl Default for Inspect {
    fn default() -> Self {
        Self {
            // A TLS 1.2 certificate chain and an h2c connection's first frames fit in this;
            // the rest of a long connection is not read.
            reasm: ReasmConfig {
                max_delivered_bytes: 256 * 1024,
                ..ReasmConfig::default()
            },
            keylog: None,
        }
    }
}

/// One direction of the connection.
#[derive(Debug)]
struct Side {
    reasm: Option<StreamReassembler>,
    obs: Observers,
    /// Sequence number just past this direction's FIN, once one was seen: bytes not
    /// delivered before it when the connection ends were lost by the capture.
    fin_seq: Option<u32>,
    /// The direction ended cleanly ([`Inspector::end_of_stream`]).
    eof: bool,
}

impl Side {
    fn new(dir: H2cDirection, midstream: bool) -> Self {
        let h1_side = match dir {
            H2cDirection::ClientToServer => Http1Side::Client,
            H2cDirection::ServerToClient => Http1Side::Server,
        };
        Self {
            reasm: None,
            obs: Observers {
                tls: Some(TlsObserver::new()),
                h2: Some(H2cObserver::new(dir)),
                // Mid-stream, requests and responses cannot be paired: no HTTP/1.1 tally.
                h1: (!midstream).then(|| Http1Observer::new(h1_side)),
                capped: false,
            },
            fin_seq: None,
            eof: false,
        }
    }
}

/// The observers still reading one direction.
#[derive(Debug)]
struct Observers {
    tls: Option<TlsObserver>,
    /// Kept once stopped by a broken frame stream, for its stream views (the tally);
    /// dropped when the direction is not h2c.
    h2: Option<H2cObserver>,
    h1: Option<Http1Observer>,
    /// A [`Chunk::Capped`] came: nothing after it was seen.
    capped: bool,
}

impl Observers {
    fn is_reading(&self) -> bool {
        self.tls.is_some() || self.h2.as_ref().is_some_and(|h| !h.is_stopped()) || self.h1.is_some()
    }

    /// Hands one chunk to the observers still reading.
    fn observe(&mut self, chunk: Chunk<'_>, found: &mut Found) {
        if let Chunk::Capped { .. } = chunk {
            self.capped = true;
        }
        if let Some(t) = self.tls.as_mut() {
            t.on_chunk(chunk, &mut found.tls);
        }
        if let Some(h) = self.h2.as_mut() {
            h.on_chunk(chunk, &mut found.h2);
        }
        if let Some(h) = self.h1.as_mut() {
            h.on_chunk(chunk, &mut found.h1);
        }
    }
}

/// What the observers found in the last bytes, not yet handed on.
#[derive(Debug, Default)]
struct Found {
    tls: Vec<TlsFact>,
    h2: Vec<H2cFact>,
    h1: Vec<Http1Fact>,
}

/// The HTTP/1.1 requests and responses so far. Responses answer requests in the order
/// they were sent (RFC 9112 section 9.3.2), so counting both pairs them.
#[derive(Debug, Default)]
struct H1Count {
    requests: u32,
    /// Final response heads.
    responses: u32,
    /// Responses read to the end of their body.
    answered: u32,
    statuses: BTreeMap<u16, u32>,
    /// Framing was lost in a direction: the counts may be short.
    incomplete: bool,
    /// The server switched protocols (101, a 2xx to CONNECT): its answers are all known.
    switched: bool,
    /// The server's bytes are not HTTP/1.x.
    server_not_http: Option<String>,
}

/// Inspects one connection's payload in both directions.
#[derive(Debug)]
pub struct Inspector {
    cfg: Inspect,
    /// 0: client to server, 1: server to client.
    sides: [Side; 2],
    sni: Option<String>,
    found: Found,
    h1: H1Count,
    /// The client's h2c connection preface was seen.
    h2c: bool,
    /// An h2c direction broke (or lost bytes) after its preface.
    h2c_broken: bool,
    /// TLS read through the key log ([`Inspect::keylog`]).
    decrypted: Option<Box<Decrypted>>,
    finished: bool,
}

/// A TLS connection read through its key log: the decryptor, and the inspection of the
/// plaintext inside (from the first plaintext on), whose facts and HTTP tally are the
/// connection's, as the eBPF backend's TLS library probes' are (`plaintext.rs`).
#[derive(Debug)]
struct Decrypted {
    dec: TlsDecryptor,
    inner: Option<Inspector>,
}

impl Decrypted {
    fn new(keylog: Arc<KeyLog>) -> Self {
        Self {
            dec: TlsDecryptor::new(keylog),
            inner: None,
        }
    }

    /// Whether the client's ClientHello was seen (else nothing is TLS to decrypt).
    fn saw_client_hello(&self) -> bool {
        self.dec.saw_client_hello()
    }

    /// Takes a chunk the outer observers just read; `tls`: what the TLS observer found
    /// so far (the hellos, needed before the records that follow them).
    fn take(
        &mut self,
        from_server: bool,
        chunk: Chunk<'_>,
        tls: &[TlsFact],
        emit: &mut dyn FnMut(WireFact),
    ) {
        for f in tls {
            match f {
                TlsFact::ClientHello(h) if !from_server => self.dec.client_hello(h.random),
                TlsFact::ServerHello(h) if from_server && !h.hello_retry_request => {
                    self.dec
                        .server_hello(h.random, h.selected_version, h.cipher_suite);
                }
                _ => {}
            }
        }
        let inner = &mut self.inner;
        self.dec.push(from_server, chunk, &mut |from_server, c| {
            feed(inner, from_server, c, emit)
        });
    }

    /// The connection ended (`eof`: which directions ended cleanly): the last records,
    /// then the inner inspection's facts, its HTTP/2 named `h2` (over TLS, not h2c).
    fn finish(&mut self, eof: [bool; 2], emit: &mut dyn FnMut(WireFact)) {
        let inner = &mut self.inner;
        self.dec
            .finish(&mut |from_server, c| feed(inner, from_server, c, emit));
        let Some(inner) = self.inner.as_mut() else {
            return;
        };
        for from_server in [false, true] {
            if eof[usize::from(from_server)] && !self.dec.is_stopped(from_server) {
                inner.end_of_stream(from_server);
            }
        }
        inner.finish_inside_tls(emit);
    }
}

/// Hands decrypted bytes to the inner inspection, begun with the first of them.
fn feed(
    inner: &mut Option<Inspector>,
    from_server: bool,
    c: Chunk<'_>,
    emit: &mut dyn FnMut(WireFact),
) {
    inner
        .get_or_insert_with(|| Inspector::new(Inspect::default(), false))
        .stream(from_server, c, emit);
}

impl Inspector {
    pub fn new(cfg: Inspect, midstream: bool) -> Self {
        // Mid-stream, no ClientHello comes to find the keys by.
        let decrypted = cfg
            .keylog
            .clone()
            .filter(|_| !midstream)
            .map(|k| Box::new(Decrypted::new(k)));
        Self {
            cfg,
            sides: [
                Side::new(H2cDirection::ClientToServer, midstream),
                Side::new(H2cDirection::ServerToClient, midstream),
            ],
            sni: None,
            found: Found::default(),
            h1: H1Count::default(),
            h2c: false,
            h2c_broken: false,
            decrypted,
            finished: false,
        }
    }

    /// Takes one segment of the connection (`from_server`: its direction) and reports
    /// what its payload showed.
    pub fn segment(
        &mut self,
        from_server: bool,
        seg: &Segment<'_>,
        emit: &mut dyn FnMut(WireFact),
    ) {
        let reasm_cfg = self.cfg.reasm;
        let side = &mut self.sides[usize::from(from_server)];
        if seg.has(TcpFlags::FIN) {
            let len = u32::try_from(seg.payload.len()).unwrap_or(0);
            side.fin_seq = Some(seg.seq.wrapping_add(len));
        }
        // The decryptor frames records on its own: it reads on after the TLS observer
        // stopped (a handshake message tls-parser refused says nothing of the records).
        if !side.obs.is_reading() && self.decrypted.is_none() {
            return;
        }
        if seg.has(TcpFlags::SYN) {
            side.reasm = Some(StreamReassembler::after_syn(seg.seq, reasm_cfg));
            return;
        }
        if seg.payload.is_empty() {
            return;
        }
        // No SYN seen in this direction: mid-stream, parsers may start inside a message.
        let reasm = side
            .reasm
            .get_or_insert_with(|| StreamReassembler::mid_stream(seg.seq, reasm_cfg));
        let (obs, found, plain) = (&mut side.obs, &mut self.found, &mut self.decrypted);
        reasm.push(seg.seq, seg.payload, |chunk: Chunk<'_>| {
            obs.observe(chunk, found);
            if let Some(p) = plain.as_deref_mut() {
                p.take(from_server, chunk, &found.tls, emit);
            }
        });
        self.settle(from_server, emit);
    }

    /// Takes the next in-order bytes of one direction (`from_server`), already
    /// reassembled: what the syscall capture reads from a socket's reads and writes
    /// (a [`Chunk::Gap`] where a call moved more bytes than were captured).
    pub fn stream(&mut self, from_server: bool, chunk: Chunk<'_>, emit: &mut dyn FnMut(WireFact)) {
        let side = &mut self.sides[usize::from(from_server)];
        // The decryptor frames records on its own: it reads on after the TLS observer
        // stopped (a handshake message tls-parser refused says nothing of the records).
        if !side.obs.is_reading() && self.decrypted.is_none() {
            return;
        }
        side.obs.observe(chunk, &mut self.found);
        if let Some(p) = self.decrypted.as_deref_mut() {
            p.take(from_server, chunk, &self.found.tls, emit);
        }
        self.settle(from_server, emit);
    }

    /// The direction `from_server` ended cleanly: its FIN was seen, or a read returned 0.
    /// A response delimited by the close is complete only then (RFC 9112 section 6.3,
    /// rule 8); without it [`Inspector::finish`] judges one still open cut short.
    pub fn end_of_stream(&mut self, from_server: bool) {
        self.sides[usize::from(from_server)].eof = true;
        if let Some(t) = self.sides[usize::from(!from_server)].obs.tls.as_mut() {
            t.peer_ended();
        }
    }

    /// Whether every observer of both directions has stopped (nothing more to learn).
    pub fn is_done(&self) -> bool {
        self.sides.iter().all(|s| !s.obs.is_reading()) && self.decrypted.is_none()
    }

    /// The connection ended (both directions done, or the socket destroyed): reports a
    /// client's handshake given up with an encrypted alert ([`WireFact::TlsEncryptedAlert`],
    /// known only once nothing followed it), judges the last response (complete, cut
    /// mid-answer, or never begun) and emits one [`WireFact::Http`] if any request was
    /// seen. Call it once; later calls, and bytes
    /// after it, are ignored.
    pub fn finish(&mut self, emit: &mut dyn FnMut(WireFact)) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        for from_server in [false, true] {
            self.flush(from_server, emit);
            let side = &mut self.sides[usize::from(from_server)];
            if let Some(t) = side.obs.tls.as_mut() {
                t.finish(&mut self.found.tls);
                self.settle(from_server, emit);
            }
        }
        let side = &mut self.sides[1];
        if let Some(h) = side.obs.h1.as_mut() {
            h.end(side.eof, &mut self.found.h1);
        }
        self.settle(true, emit);
        if let Some(t) = self.h1_tally(emit).or_else(|| self.h2c_tally()) {
            emit(WireFact::Http(t));
        }
        if let Some(mut p) = self.decrypted.take() {
            p.finish([self.sides[0].eof, self.sides[1].eof], emit);
        }
        for side in &mut self.sides {
            side.obs = Observers {
                tls: None,
                h2: None,
                h1: None,
                capped: side.obs.capped,
            };
            side.reasm = None;
        }
    }

    /// [`Self::finish`] for the inspection of the plaintext inside TLS (a TLS library's
    /// reads and writes, or records decrypted with a key log): its HTTP/2 is `h2`, not
    /// h2c.
    pub fn finish_inside_tls(&mut self, emit: &mut dyn FnMut(WireFact)) {
        self.finish(&mut |fact| {
            emit(match fact {
                WireFact::Http(mut t) if t.protocol == "h2c" => {
                    t.protocol = "h2".into();
                    WireFact::Http(t)
                }
                other => other,
            });
        });
    }

    /// At the end: holes that never filled are skipped, so what came after them is read,
    /// and bytes missing between the last delivered one and the FIN are a gap.
    fn flush(&mut self, from_server: bool, emit: &mut dyn FnMut(WireFact)) {
        let side = &mut self.sides[usize::from(from_server)];
        let Some(reasm) = side.reasm.as_mut() else {
            return;
        };
        let (obs, found, plain) = (&mut side.obs, &mut self.found, &mut self.decrypted);
        reasm.skip_holes(|chunk: Chunk<'_>| {
            obs.observe(chunk, found);
            if let Some(p) = plain.as_deref_mut() {
                p.take(from_server, chunk, &found.tls, emit);
            }
        });
        let missing = side.fin_seq.map_or(0, |f| f.wrapping_sub(reasm.next_seq()));
        // A FIN further ahead than a TCP window can reach is no FIN of this stream.
        if !reasm.is_capped() && missing > 0 && missing < 1 << 30 {
            let gap = Chunk::Gap {
                len_bytes: u64::from(missing),
            };
            side.obs.observe(gap, &mut self.found);
            if let Some(p) = self.decrypted.as_deref_mut() {
                p.take(from_server, gap, &self.found.tls, emit);
            }
        }
        self.settle(from_server, emit);
    }

    /// Drops the observers that stopped and hands on what they found.
    fn settle(&mut self, from_server: bool, emit: &mut dyn FnMut(WireFact)) {
        let obs = &mut self.sides[usize::from(from_server)].obs;
        if obs.tls.as_ref().is_some_and(TlsObserver::is_stopped) {
            obs.tls = None;
        }
        if obs.h1.as_ref().is_some_and(Http1Observer::is_stopped) {
            obs.h1 = None;
        }
        // The client's side is not TLS: nothing to decrypt.
        if self.sides[0].obs.tls.is_none()
            && self
                .decrypted
                .as_ref()
                .is_some_and(|p| !p.saw_client_hello())
        {
            self.decrypted = None;
        }
        let found = std::mem::take(&mut self.found);
        for f in found.tls {
            if let Some(w) = self.tls_fact(from_server, f) {
                emit(w);
            }
        }
        for f in found.h2 {
            if let Some(w) = self.h2_fact(from_server, f) {
                emit(w);
            }
        }
        for f in found.h1 {
            if let Some(w) = self.h1_fact(from_server, f) {
                emit(w);
            }
        }
    }

    fn tls_fact(&mut self, from_server: bool, f: TlsFact) -> Option<WireFact> {
        // A stream that is TLS is neither h2c (h2 over TLS is encrypted) nor HTTP/1.1 in
        // the clear: stop those parsers.
        if matches!(f, TlsFact::ClientHello(_) | TlsFact::ServerHello(_)) {
            let obs = &mut self.sides[usize::from(from_server)].obs;
            obs.h2 = None;
            obs.h1 = None;
        }
        Some(match f {
            TlsFact::ClientHello(h) => {
                self.sni.clone_from(&h.sni);
                WireFact::TlsClientHello {
                    sni: h.sni,
                    alpn: h.alpn,
                }
            }
            TlsFact::ServerHello(h) => WireFact::TlsServerHello {
                version: version_name(h.selected_version),
                alpn: h.alpn,
            },
            TlsFact::Certificates(chain) => {
                let leaf = chain.leaf()?;
                let mut names = leaf.san_dns.clone();
                names.extend(leaf.san_ips.iter().map(ToString::to_string));
                if names.is_empty()
                    && let Some(cn) = &leaf.subject_cn
                {
                    names.push(cn.clone());
                }
                WireFact::TlsCertificate {
                    subject: leaf.subject.clone(),
                    names,
                    issuer: leaf.issuer.clone(),
                    sha256: leaf.sha256.iter().map(|b| format!("{b:02x}")).collect(),
                    not_before_unix_s: leaf.not_before_unix_s,
                    not_after_unix_s: leaf.not_after_unix_s,
                    sni: self.sni.clone(),
                    matches_sni: self.sni.as_deref().map(|s| leaf.is_valid_for(s)),
                    probed_unix_s: None,
                    trusted: None,
                }
            }
            TlsFact::Alert(a) => WireFact::TlsAlert {
                from_server,
                fatal: a.is_fatal(),
                code: a.description,
                name: a.name().into_owned(),
            },
            TlsFact::EncryptedAfterServerHello { version } => WireFact::TlsEncrypted {
                version: version_name(version),
            },
            // The client's only: a server's encrypted records say nothing of the kind.
            TlsFact::EncryptedAlert {
                len_bytes,
                after_handshake,
            } if !from_server => WireFact::TlsEncryptedAlert {
                from_server,
                len_bytes: u32::try_from(len_bytes).unwrap_or(u32::MAX),
                after_handshake,
            },
            TlsFact::EncryptedAlert { .. } => return None,
            TlsFact::HandshakeAbandoned { .. } | TlsFact::NotTls { .. } => return None,
            TlsFact::Malformed { offset, what } => WireFact::Malformed {
                from_server,
                protocol: "tls".into(),
                offset,
                what: what.to_string(),
            },
        })
    }

    fn h2_fact(&mut self, from_server: bool, f: H2cFact) -> Option<WireFact> {
        match f {
            H2cFact::ClientPreface => {
                self.h2c = true;
                for side in &mut self.sides {
                    side.obs.tls = None;
                    side.obs.h1 = None;
                }
            }
            H2cFact::NotH2c { .. } => self.sides[usize::from(from_server)].obs.h2 = None,
            H2cFact::Malformed { .. } => self.h2c_broken = true,
            _ => {}
        }
        Some(match f {
            H2cFact::GoAway {
                last_stream_id,
                code,
                debug,
                ..
            } => {
                let in_flight = match (&self.sides[0].obs.h2, &self.sides[1].obs.h2) {
                    (Some(c), Some(s)) => h2c::in_flight(c, s),
                    _ => Vec::new(),
                };
                WireFact::H2Goaway {
                    from_server,
                    code: code.to_string(),
                    last_stream_id,
                    debug,
                    streams_in_flight: u32::try_from(in_flight.len()).unwrap_or(u32::MAX),
                    streams_unprocessed: u32::try_from(
                        in_flight.iter().filter(|s| **s > last_stream_id).count(),
                    )
                    .unwrap_or(u32::MAX),
                }
            }
            H2cFact::RstStream { stream_id, code } => WireFact::H2RstStream {
                from_server,
                stream_id,
                code: code.to_string(),
            },
            H2cFact::Settings {
                max_concurrent_streams: Some(n),
                ..
            } if from_server => WireFact::H2Settings {
                max_concurrent_streams: n,
            },
            H2cFact::Malformed { offset, what } => WireFact::Malformed {
                from_server,
                protocol: "h2c".into(),
                offset,
                what: what.to_string(),
            },
            _ => return None,
        })
    }

    fn h1_fact(&mut self, from_server: bool, f: Http1Fact) -> Option<WireFact> {
        let n = &mut self.h1;
        match f {
            Http1Fact::Request { kind } => {
                n.requests = n.requests.saturating_add(1);
                // A request line: the client speaks neither TLS nor h2c.
                let client = &mut self.sides[0].obs;
                client.tls = None;
                client.h2 = None;
                if let Some(server) = self.sides[1].obs.h1.as_mut() {
                    server.expect_response_to(kind);
                }
            }
            Http1Fact::Response { status } => {
                n.responses = n.responses.saturating_add(1);
                *n.statuses.entry(status).or_default() += 1;
                let server = &mut self.sides[1].obs;
                server.tls = None;
                server.h2 = None;
            }
            Http1Fact::Complete if from_server => n.answered = n.answered.saturating_add(1),
            Http1Fact::Switched if from_server => {
                n.switched = true;
                // What the client sends now is the new protocol.
                self.sides[0].obs.h1 = None;
            }
            Http1Fact::NotHttp1 { what } if from_server => {
                n.server_not_http = Some(what.to_string());
            }
            Http1Fact::Malformed { offset, what } => {
                n.incomplete = true;
                // Bytes the capture missed say nothing about the peers.
                if !what.is_capture_loss() {
                    return Some(WireFact::Malformed {
                        from_server,
                        protocol: "http/1.1".into(),
                        offset,
                        what: what.to_string(),
                    });
                }
            }
            Http1Fact::Interim { .. }
            | Http1Fact::Complete
            | Http1Fact::Switched
            | Http1Fact::NotHttp1 { .. } => {}
        }
        None
    }
}

/// `TLS 1.2` for 0x0303 and so on.
fn version_name(v: u16) -> String {
    match v {
        0x0300 => "SSL 3.0".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        other => format!("0x{other:04x}"),
    }
}

mod tally;

// The tests live in flow/tests.rs to keep each file short (STYLE.md).
#[cfg(test)]
mod tests;
