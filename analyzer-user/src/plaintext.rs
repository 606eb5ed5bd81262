//! The eBPF backend's plaintext capture, read: every captured read and write of a client
//! socket goes, in order, through the same payload inspection the raw backend runs on
//! reassembled TCP streams ([`Inspector`]: TLS handshakes, h2c frames, HTTP/1.1
//! exchanges), and what it finds becomes wire facts about the connection, keyed by the
//! socket's kernel address like every other event of it. The plaintext the TLS library
//! probes read inside a TLS connection goes through a second inspection of its own
//! (HTTP/1.1 or h2 inside, the TLS handshake outside).
//!
//! A call that moved more bytes than were captured continues as a gap of the rest. When
//! the socket is destroyed (or the session stops) the inspection is finished and its
//! summary (the HTTP tally) is handed on before the destroy event itself, so the
//! connection's record has every fact when it closes.
use std::{collections::HashMap, net::SocketAddr};

use crate::{
    ebpf::decode::Captured,
    event::{
        KernelEvent, Observed,
        wire_fact::{WireEvent, WireFact},
    },
    raw::{
        flow::{Inspect, Inspector},
        reasm::Chunk,
    },
};
use analyzer_common::{DataSource, EventKind};

use crate::names::TcpState;

/// Connections inspected at once; beyond it new ones are counted, not inspected.
pub const MAX_CONNS: usize = 1 << 16;

/// What the reader saw, for the session's outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlaintextStats {
    /// Captured calls read.
    pub calls: u64,
    /// Bytes the calls moved, and of which captured.
    pub bytes: u64,
    pub bytes_captured: u64,
    /// Calls on a socket whose addresses were not known (no state change seen).
    pub calls_unknown_socket: u64,
    /// Connections not inspected because [`MAX_CONNS`] were already.
    pub conns_over_limit: u64,
}

struct Conn {
    client: SocketAddr,
    server: SocketAddr,
    /// The bytes on the socket (what goes on the wire: TLS records for HTTPS).
    inspector: Inspector,
    /// The plaintext inside TLS, from the TLS library probes.
    inner: Option<Inspector>,
    last_unix_ns: u64,
    /// When the client last wrote on the socket, and last wrote plaintext inside TLS.
    last_write_unix_ns: Option<u64>,
    last_plain_write_unix_ns: Option<u64>,
    /// What the client's reads on the socket returned, in all.
    bytes_read: u64,
    /// When the TLS library's read first returned end of stream (OpenSSL's SSL_read 0:
    /// the server's close_notify or FIN).
    server_tls_end_unix_ns: Option<u64>,
}

/// Reads the captured calls of every tracked client socket.
#[derive(Default)]
pub struct Plaintext {
    /// The addresses of sockets, learned from their state changes.
    tuples: HashMap<u64, (SocketAddr, SocketAddr)>,
    conns: HashMap<u64, Conn>,
    stats: PlaintextStats,
}

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plaintext")
            .field("conns", &self.conns.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Plaintext {
    pub fn stats(&self) -> PlaintextStats {
        self.stats
    }

    /// Learns from a kernel event, before it is handed on: a socket's addresses from its
    /// state changes; at its destroy, the end of its inspection (facts go to `out`).
    pub fn kernel(&mut self, ev: &KernelEvent, out: &mut Vec<Observed>) {
        match ev.event {
            EventKind::StateChange => {
                // A new connection at this address: the old one's destroy was not seen.
                if ev.new_state == Some(TcpState::SynSent)
                    && let Some(c) = self.conns.remove(&ev.skaddr)
                {
                    let ts = c.last_unix_ns;
                    finish(ev.skaddr, c, ts, out);
                }
                // The peer's FIN: a response delimited by the close is complete (the
                // reads of the bytes before it may still be on their way).
                if matches!(
                    ev.new_state,
                    Some(TcpState::CloseWait | TcpState::Closing | TcpState::TimeWait)
                ) && let Some(c) = self.conns.get_mut(&ev.skaddr)
                {
                    c.inspector.end_of_stream(true);
                    if let Some(i) = &mut c.inner {
                        i.end_of_stream(true);
                    }
                }
                if let (Some(l), Some(r)) = (ev.local, ev.remote)
                    && ev.skaddr != 0
                    && l.port() != 0
                    && (self.tuples.len() < MAX_CONNS || self.tuples.contains_key(&ev.skaddr))
                {
                    self.tuples.insert(ev.skaddr, (l, r));
                }
            }
            EventKind::DestroySock => {
                self.tuples.remove(&ev.skaddr);
                if let Some(c) = self.conns.remove(&ev.skaddr) {
                    finish(ev.skaddr, c, ev.ts_unix_ns, out);
                }
            }
            _ => {}
        }
    }

    /// Inspects one captured call.
    pub fn data(&mut self, d: &Captured, out: &mut Vec<Observed>) {
        tracing::trace!(
            skaddr = d.skaddr,
            sent = d.sent,
            total = d.total_len,
            captured = d.data.len(),
            head = ?&d.data[..d.data.len().min(24)],
            "captured call"
        );
        self.stats.calls += 1;
        self.stats.bytes += d.total_len;
        self.stats.bytes_captured += d.data.len() as u64;
        if !self.conns.contains_key(&d.skaddr) {
            let Some(&(client, server)) = self.tuples.get(&d.skaddr) else {
                self.stats.calls_unknown_socket += 1;
                return;
            };
            if self.conns.len() >= MAX_CONNS {
                self.stats.conns_over_limit += 1;
                return;
            }
            self.conns.insert(
                d.skaddr,
                Conn {
                    client,
                    server,
                    inspector: Inspector::new(Inspect::default(), false),
                    inner: None,
                    last_unix_ns: d.ts_unix_ns,
                    last_write_unix_ns: None,
                    last_plain_write_unix_ns: None,
                    bytes_read: 0,
                    server_tls_end_unix_ns: None,
                },
            );
        }
        let Some(c) = self.conns.get_mut(&d.skaddr) else {
            return;
        };
        c.last_unix_ns = d.ts_unix_ns;
        match (d.sent, d.source) {
            (true, DataSource::Syscall) => c.last_write_unix_ns = Some(d.ts_unix_ns),
            (true, DataSource::OpenSsl | DataSource::GoTls) => {
                c.last_plain_write_unix_ns = Some(d.ts_unix_ns);
            }
            (false, DataSource::Syscall) => c.bytes_read += d.total_len,
            (false, _) if d.total_len == 0 => {
                // The TLS library read the end of the server's stream.
                c.server_tls_end_unix_ns.get_or_insert(d.ts_unix_ns);
                if let Some(i) = &mut c.inner {
                    i.end_of_stream(true);
                }
                return;
            }
            (false, _) => {}
        }
        let (skaddr, client, server, ts) = (d.skaddr, c.client, c.server, d.ts_unix_ns);
        let mut emit = |fact: WireFact| {
            out.push(Observed::Wire(WireEvent {
                ts_unix_ns: ts,
                skaddr,
                client,
                server,
                fact,
            }));
        };
        let from_server = !d.sent;
        let inspector = match d.source {
            DataSource::Syscall => &mut c.inspector,
            DataSource::OpenSsl | DataSource::GoTls => c
                .inner
                .get_or_insert_with(|| Inspector::new(Inspect::default(), false)),
        };
        if !d.data.is_empty() {
            inspector.stream(from_server, Chunk::Data(&d.data), &mut emit);
        }
        let rest = d.total_len - d.data.len() as u64;
        if rest > 0 {
            inspector.stream(from_server, Chunk::Gap { len_bytes: rest }, &mut emit);
        }
    }

    /// Ends every inspection still open (the session stops); facts go to `out`.
    pub fn finish_all(&mut self, out: &mut Vec<Observed>) {
        let mut conns: Vec<(u64, Conn)> = self.conns.drain().collect();
        conns.sort_by_key(|(_, c)| c.last_unix_ns);
        for (skaddr, c) in conns {
            let ts = c.last_unix_ns;
            finish(skaddr, c, ts, out);
        }
    }
}

fn finish(skaddr: u64, mut c: Conn, ts_unix_ns: u64, out: &mut Vec<Observed>) {
    let (client, server) = (c.client, c.server);
    let tls = c.inner.is_some();
    let (last_write, last_plain) = (c.last_write_unix_ns, c.last_plain_write_unix_ns);
    let bytes_read = c.bytes_read;
    let server_tls_end = c.server_tls_end_unix_ns;
    let mut emit = |fact| {
        // When the client last wrote a request, and whether it then wrote a TLS record
        // of no plaintext (a close_notify or an alert: it was closing).
        let fact = match fact {
            WireFact::Http(mut t) => {
                t.last_request_unix_ns = if tls { last_plain } else { last_write };
                t.client_tls_close_unix_ns = match (last_plain, last_write) {
                    (Some(p), Some(w)) if tls && w > p => Some(w),
                    _ => None,
                };
                t.bytes_read = Some(bytes_read);
                t.server_tls_end_unix_ns = server_tls_end;
                WireFact::Http(t)
            }
            other => other,
        };
        out.push(Observed::Wire(WireEvent {
            ts_unix_ns,
            skaddr,
            client,
            server,
            fact,
        }));
    };
    c.inspector.finish(&mut emit);
    if let Some(mut inner) = c.inner {
        inner.finish_inside_tls(&mut emit);
    }
}
