//! Payload inspection of one connection for the raw backend: both directions are
//! reassembled ([`StreamReassembler`]) and read by a TLS observer and an h2c observer at
//! once, until each says the stream is not its protocol. What they find becomes
//! [`WireFact`]s about the connection.
use wire::packet::{Segment, TcpFlags};

use super::{
    h2c::{self, H2cDirection, H2cFact, H2cObserver},
    reasm::{Chunk, ReasmConfig, StreamReassembler},
    tls::{TlsFact, TlsObserver},
};
use crate::event::wire_fact::WireFact;

/// Inspection limits per connection.
#[derive(Clone, Debug)]
pub struct Inspect {
    pub reasm: ReasmConfig,
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
        }
    }
}

#[derive(Debug)]
struct Side {
    reasm: Option<StreamReassembler>,
    tls: Option<TlsObserver>,
    h2: Option<H2cObserver>,
}

/// Inspects one connection's payload in both directions.
#[derive(Debug)]
pub struct Inspector {
    cfg: Inspect,
    midstream: bool,
    /// 0: client to server, 1: server to client.
    sides: [Side; 2],
    sni: Option<String>,
    tls_facts: Vec<TlsFact>,
    h2_facts: Vec<H2cFact>,
}

impl Inspector {
    pub fn new(cfg: Inspect, midstream: bool) -> Self {
        let side = |dir| Side {
            reasm: None,
            tls: Some(TlsObserver::new()),
            h2: Some(H2cObserver::new(dir)),
        };
        Self {
            cfg,
            midstream,
            sides: [
                side(H2cDirection::ClientToServer),
                side(H2cDirection::ServerToClient),
            ],
            sni: None,
            tls_facts: Vec::new(),
            h2_facts: Vec::new(),
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
        let d = usize::from(from_server);
        let side = &mut self.sides[d];
        if side.tls.is_none() && side.h2.is_none() {
            return;
        }
        if seg.has(TcpFlags::SYN) {
            side.reasm = Some(StreamReassembler::after_syn(seg.seq, self.cfg.reasm));
            return;
        }
        if seg.payload.is_empty() {
            return;
        }
        let reasm = side.reasm.get_or_insert_with(|| {
            // No SYN seen in this direction: mid-stream, parsers may start inside a message.
            let _ = self.midstream;
            StreamReassembler::mid_stream(seg.seq, self.cfg.reasm)
        });
        let (tls_out, h2_out) = (&mut self.tls_facts, &mut self.h2_facts);
        let (tls, h2) = (&mut side.tls, &mut side.h2);
        reasm.push(seg.seq, seg.payload, |chunk: Chunk<'_>| {
            observe(tls, h2, tls_out, h2_out, chunk);
        });
        self.settle(from_server, emit);
    }

    /// Takes the next in-order bytes of one direction (`from_server`), already
    /// reassembled: what the syscall capture reads from a socket's reads and writes
    /// (a [`Chunk::Gap`] where a call moved more bytes than were captured).
    pub fn stream(&mut self, from_server: bool, chunk: Chunk<'_>, emit: &mut dyn FnMut(WireFact)) {
        let side = &mut self.sides[usize::from(from_server)];
        if side.tls.is_none() && side.h2.is_none() {
            return;
        }
        observe(
            &mut side.tls,
            &mut side.h2,
            &mut self.tls_facts,
            &mut self.h2_facts,
            chunk,
        );
        self.settle(from_server, emit);
    }

    /// Whether every observer of both directions has stopped (nothing more to learn).
    pub fn is_done(&self) -> bool {
        self.sides.iter().all(|s| s.tls.is_none() && s.h2.is_none())
    }

    /// Drops the observers that stopped and hands on what they found.
    fn settle(&mut self, from_server: bool, emit: &mut dyn FnMut(WireFact)) {
        let side = &mut self.sides[usize::from(from_server)];
        if side.tls.as_ref().is_some_and(TlsObserver::is_stopped) {
            side.tls = None;
        }
        if side.h2.as_ref().is_some_and(H2cObserver::is_stopped) {
            side.h2 = None;
        }
        let tls_facts = std::mem::take(&mut self.tls_facts);
        for f in tls_facts {
            if let Some(w) = self.tls_fact(from_server, f) {
                emit(w);
            }
        }
        let h2_facts = std::mem::take(&mut self.h2_facts);
        for f in h2_facts {
            if let Some(w) = self.h2_fact(from_server, f) {
                emit(w);
            }
        }
    }

    fn tls_fact(&mut self, from_server: bool, f: TlsFact) -> Option<WireFact> {
        // A stream that is TLS is not h2c (h2 over TLS is encrypted): stop that parser.
        if matches!(f, TlsFact::ClientHello(_) | TlsFact::ServerHello(_)) {
            self.sides[usize::from(from_server)].h2 = None;
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
        if matches!(f, H2cFact::ClientPreface) {
            self.sides[0].tls = None;
            self.sides[1].tls = None;
        }
        Some(match f {
            H2cFact::GoAway {
                last_stream_id,
                code,
                debug,
                ..
            } => {
                let in_flight = match (&self.sides[0].h2, &self.sides[1].h2) {
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
}

/// Hands one chunk to the observers still reading.
fn observe(
    tls: &mut Option<TlsObserver>,
    h2: &mut Option<H2cObserver>,
    tls_out: &mut Vec<TlsFact>,
    h2_out: &mut Vec<H2cFact>,
    chunk: Chunk<'_>,
) {
    if let Some(t) = tls.as_mut() {
        t.on_chunk(chunk, tls_out);
    }
    if let Some(h) = h2.as_mut() {
        h.on_chunk(chunk, h2_out);
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
