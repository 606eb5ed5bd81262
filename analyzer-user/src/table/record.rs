//! One socket's record: its identity, timeline and the facts derived from its events.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
};

use analyzer_common::EventKind;
use serde::{Deserialize, Serialize, Serializer};

use super::{TableConfig, Tuple};

mod failure;
use crate::{
    event::{
        KernelEvent, TcpCounts,
        wire_fact::{HttpTally, WireFact},
    },
    names::TcpState,
};

/// How a failure or a kernel record was joined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinKind {
    /// By socket cookie (exact).
    Cookie,
    /// By 4-tuple and overlapping time (no cookie match).
    TupleTime,
    /// A kernel record with no loadgen counterpart (a foreign client, or no loadgen).
    #[default]
    KernelOnly,
    /// A loadgen failure with no kernel record (nothing abnormal seen, or not recorded).
    LoadgenOnly,
}

impl JoinKind {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cookie => "cookie",
            Self::TupleTime => "tuple_time",
            Self::KernelOnly => "kernel_only",
            Self::LoadgenOnly => "loadgen_only",
        }
    }
}

/// Which end of the connection this host's socket is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// It went through SYN_SENT (this host connected), or its ports say so.
    Client,
    /// It went through SYN_RECV, or its local port listens on this host.
    Server,
    #[default]
    Unknown,
}

/// How the record ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[expect(
    clippy::enum_variant_names,
    reason = "LiveAtEnd is the report's live_at_end, a documented JSON value"
)]
pub enum End {
    /// `tcp_destroy_sock` was seen.
    Destroyed,
    /// Still alive when recording stopped.
    #[default]
    LiveAtEnd,
    /// A new socket started at the same kernel address without a destroy being seen.
    Replaced,
    /// Summarised early: the live table was full and this socket was quiet longest.
    Stale,
}

/// Who began closing the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Closer {
    /// This host sent FIN first (ESTABLISHED→FIN_WAIT1).
    Local,
    /// The peer sent FIN first (ESTABLISHED→CLOSE_WAIT).
    Peer,
    /// This host sent an RST first.
    LocalReset,
    /// The peer's RST came first.
    PeerReset,
}

/// An RST this host sent, with the kernel's reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetSent {
    pub ts_unix_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TcpState>,
    /// `sk_rst_reason` name (e.g. `TCP_ABORT_ON_CLOSE`, `NO_SOCKET`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Facts derived from a socket's events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelFacts {
    /// States visited, in order of first visit.
    pub states: Vec<TcpState>,
    /// The last state known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TcpState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syn_sent_unix_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub established_unix_ns: Option<u64>,
    /// RSTs received.
    #[serde(default)]
    pub rst_received: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rst_received_unix_ns: Option<u64>,
    /// The state the first RST hit: the old state of the change to CLOSE it caused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rst_state: Option<TcpState>,
    /// RSTs this socket sent.
    #[serde(default)]
    pub rst_sent: u32,
    /// The first RST this socket sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rst_sent_first: Option<ResetSent>,
    /// The first RST sent by this host's other end of a loopback connection (or by
    /// this host's stack for no socket, e.g. `NO_SOCKET` for a closed port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_rst_sent: Option<ResetSent>,
    /// When the first RST arrived, this host's socket at the other end was open and
    /// traced (a server on this host): an RST it sent would have been recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rst_peer_traced: bool,
    /// Retransmits in SYN_SENT.
    #[serde(default)]
    pub syn_retransmits: u32,
    /// Retransmits in any other state.
    #[serde(default)]
    pub retransmits: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_retransmit_unix_ns: Option<u64>,
    /// The peer's FIN: ESTABLISHED→CLOSE_WAIT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_fin_unix_ns: Option<u64>,
    /// This host's FIN: ESTABLISHED→FIN_WAIT1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_fin_unix_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_first: Option<Closer>,
    /// The socket's TCP counters when the first FIN or RST closed it (either end), from
    /// `struct tcp_sock` (eBPF backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_at_close: Option<TcpCounts>,
    /// The socket's TCP counters at its last event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_last: Option<TcpCounts>,
    /// The first errno delivered to the socket (`inet_sk_error_report`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_unix_ns: Option<u64>,
    /// Packets dropped for this socket, by the kernel's drop reason.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub drops: BTreeMap<String, u32>,
}

/// One event of a connection's timeline. Serialized with a wall-clock `at` (RFC 3339).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TimelineEntry {
    pub ts_unix_ns: u64,
    pub event: EventKind,
    #[serde(default)]
    pub state: Option<TcpState>,
    #[serde(default)]
    pub new_state: Option<TcpState>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub errno: Option<i32>,
    /// The event is not this socket's own: it belongs to this host's socket at the other
    /// end of a loopback connection, or to no socket (an RST for a closed port).
    #[serde(default)]
    pub peer: bool,
}

impl Serialize for TimelineEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            ts_unix_ns: u64,
            at: String,
            event: EventKind,
            #[serde(skip_serializing_if = "Option::is_none")]
            state: Option<TcpState>,
            #[serde(skip_serializing_if = "Option::is_none")]
            new_state: Option<TcpState>,
            #[serde(skip_serializing_if = "Option::is_none")]
            reason: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            errno: Option<i32>,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            peer: bool,
        }
        View {
            ts_unix_ns: self.ts_unix_ns,
            at: events::time::rfc3339_ns(self.ts_unix_ns),
            event: self.event,
            state: self.state,
            new_state: self.new_state,
            reason: self.reason.as_deref(),
            errno: self.errno,
            peer: self.peer,
        }
        .serialize(s)
    }
}

/// A listening socket and the packets dropped on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerRecord {
    pub local: SocketAddr,
    pub since_unix_ns: u64,
    /// Drops with this listener as the receiving socket, by reason (e.g.
    /// `TCP_LISTEN_OVERFLOW`).
    pub drops: BTreeMap<String, u64>,
}

/// One socket's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnRecord {
    /// The analyzer's id for the record (unique within a run).
    pub id: u64,
    /// Kernel address of the socket, hex.
    #[serde(with = "hex_u64")]
    pub skaddr: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sock_cookie: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<SocketAddr>,
    pub role: Role,
    /// The process that called `connect()` (from the SYN_SENT transition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub first_unix_ns: u64,
    pub last_unix_ns: u64,
    pub end: End,
    pub facts: KernelFacts,
    /// The first and last events (see `timeline_dropped` for what is in between).
    pub timeline: Vec<TimelineEntry>,
    /// Timeline entries not kept (the middle of a long timeline).
    #[serde(default)]
    pub timeline_dropped: u64,
    /// How loadgen's records were joined to this socket.
    pub join: JoinKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loadgen_conn_id: Option<u64>,
    /// loadgen requests that failed on this connection.
    #[serde(default)]
    pub failed_requests: u64,
    /// What the wire showed (raw backend): TLS and h2c facts, suspect RSTs, zero
    /// windows; at most [`MAX_WIRE_FACTS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wire: Vec<WireFact>,
    /// The HTTP exchanges its plaintext showed (raw backend, or the eBPF backend's
    /// syscall capture), summed when it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpTally>,
    /// The cause its (first) failure was attributed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// An RST was received and the change to CLOSE it causes is still to come.
    #[serde(skip)]
    rst_pending: bool,
}

/// Wire facts kept per connection.
pub const MAX_WIRE_FACTS: usize = 16;

impl ConnRecord {
    /// Keeps a wire fact (the first [`MAX_WIRE_FACTS`]).
    ///
    /// Once full, a fact that decides a verdict (one that [`WireFact::means_failure`], or
    /// a GOAWAY) takes the place of the latest one that does not (a stream the client
    /// reset itself, a SETTINGS, a zero window): a client that resets a thousand streams
    /// must not hide the server's GOAWAY that followed.
    pub fn add_wire(&mut self, w: &crate::event::wire_fact::WireEvent) {
        if let WireFact::Http(t) = &w.fact {
            self.http = Some(t.clone());
            return;
        }
        if self.wire.len() < MAX_WIRE_FACTS {
            self.wire.push(w.fact.clone());
            return;
        }
        let decides = |f: &WireFact| f.means_failure() || matches!(f, WireFact::H2Goaway { .. });
        if decides(&w.fact)
            && let Some(i) = self.wire.iter().rposition(|f| !decides(f))
        {
            self.wire[i] = w.fact.clone();
        }
    }

    pub(super) fn new(id: u64, skaddr: u64, ts_unix_ns: u64) -> Self {
        Self {
            id,
            skaddr,
            sock_cookie: None,
            local: None,
            remote: None,
            role: Role::Unknown,
            pid: None,
            first_unix_ns: ts_unix_ns,
            last_unix_ns: ts_unix_ns,
            end: End::LiveAtEnd,
            facts: KernelFacts::default(),
            timeline: Vec::new(),
            timeline_dropped: 0,
            join: JoinKind::KernelOnly,
            loadgen_conn_id: None,
            failed_requests: 0,
            wire: Vec::new(),
            http: None,
            cause: None,
            rst_pending: false,
        }
    }

    /// A record for tests and synthetic inputs.
    pub fn synthetic(id: u64, local: SocketAddr, remote: SocketAddr, role: Role) -> Self {
        Self {
            local: Some(local),
            remote: Some(remote),
            role,
            ..Self::new(id, id, 0)
        }
    }

    /// `(local, remote)` when both are known.
    pub fn tuple(&self) -> Option<Tuple> {
        self.local.zip(self.remote)
    }

    /// Settles an unknown role from ports (a socket that started before recording):
    /// a local port that listens on this host (or served a connection) makes a server, a
    /// remote one a client; else an ephemeral port facing a non-ephemeral one is the
    /// client's end.
    pub(super) fn resolve_role(&mut self, cfg: &TableConfig, server_ports: &BTreeSet<u16>) {
        if self.role != Role::Unknown {
            return;
        }
        let Some((local, remote)) = self.tuple() else {
            return;
        };
        let serves = |port: u16| cfg.listen_ports.contains(&port) || server_ports.contains(&port);
        let (lo, hi) = cfg.ephemeral_ports;
        let ephemeral = |port: u16| (lo..=hi).contains(&port);
        self.role = if serves(local.port()) {
            Role::Server
        } else if serves(remote.port()) || (ephemeral(local.port()) && !ephemeral(remote.port())) {
            Role::Client
        } else if ephemeral(remote.port()) && !ephemeral(local.port()) {
            Role::Server
        } else {
            Role::Unknown
        };
    }

    /// Folds one event in. `peer`: the event is this host's other end's (see
    /// [`TimelineEntry::peer`]); it goes to the timeline and `peer_rst_sent` only.
    pub(super) fn apply(&mut self, ev: &KernelEvent, peer: bool, max_timeline: usize) {
        self.first_unix_ns = self.first_unix_ns.min(ev.ts_unix_ns);
        self.last_unix_ns = self.last_unix_ns.max(ev.ts_unix_ns);
        self.push_timeline(ev, peer, max_timeline);
        if peer {
            if ev.event == EventKind::SendReset && self.facts.peer_rst_sent.is_none() {
                self.facts.peer_rst_sent = Some(reset_sent(ev));
            }
            return;
        }
        if ev.sock_cookie != 0 {
            self.sock_cookie = Some(ev.sock_cookie);
        }
        // A socket being connected has local port 0 (SYN_SENT is entered before the port
        // is chosen); a closed one may report remote port 0 at destroy: a tuple with a
        // zero port only fills in for none.
        if let (Some(l), Some(r)) = (ev.local, ev.remote)
            && ((l.port() != 0 && r.port() != 0) || self.local.is_none())
        {
            self.local = Some(l);
            self.remote = Some(r);
        }
        if let Some(c) = ev.tcp {
            self.facts.tcp_last = Some(c);
        }
        if ev.event == EventKind::StateChange {
            self.on_state_change(ev);
            return;
        }
        let ts = Some(ev.ts_unix_ns);
        let f = &mut self.facts;
        match ev.event {
            EventKind::StateChange | EventKind::DestroySock => {}
            EventKind::ReceiveReset => {
                f.rst_received += 1;
                if f.rst_received == 1 {
                    f.rst_received_unix_ns = ts;
                    f.rst_state = f.state;
                    self.rst_pending = true;
                }
                if f.closed_first.is_none() {
                    f.tcp_at_close = ev.tcp;
                }
                f.closed_first.get_or_insert(Closer::PeerReset);
            }
            EventKind::SendReset => {
                f.rst_sent += 1;
                if f.rst_sent_first.is_none() {
                    f.rst_sent_first = Some(reset_sent(ev));
                }
                f.closed_first.get_or_insert(Closer::LocalReset);
            }
            EventKind::Retransmit => {
                if ev.state == Some(TcpState::SynSent) {
                    f.syn_retransmits += 1;
                } else {
                    f.retransmits += 1;
                }
                f.last_retransmit_unix_ns = ts;
            }
            EventKind::ErrorReport => {
                if f.errno.is_none() {
                    f.errno = ev.errno;
                    f.errno_unix_ns = ts;
                }
            }
            EventKind::Drop => {
                let reason = ev.reason.clone().unwrap_or_else(|| "unknown".into());
                *f.drops.entry(reason).or_default() += 1;
            }
        }
    }

    fn on_state_change(&mut self, ev: &KernelEvent) {
        use TcpState::{CloseWait, Established, FinWait1, Listen, NewSynRecv, SynRecv, SynSent};
        let f = &mut self.facts;
        let ts = Some(ev.ts_unix_ns);
        for s in [ev.state, ev.new_state].into_iter().flatten() {
            if !f.states.contains(&s) {
                f.states.push(s);
            }
        }
        f.state = ev.new_state;
        match (ev.state, ev.new_state) {
            (_, Some(SynSent)) => {
                f.syn_sent_unix_ns.get_or_insert(ev.ts_unix_ns);
                self.role = Role::Client;
                if ev.pid != 0 {
                    self.pid = Some(ev.pid);
                }
            }
            (Some(SynRecv | NewSynRecv | Listen), _) | (_, Some(SynRecv | NewSynRecv)) => {
                self.role = Role::Server;
            }
            _ => {}
        }
        match (ev.state, ev.new_state) {
            (_, Some(Established)) => {
                f.established_unix_ns.get_or_insert(ev.ts_unix_ns);
            }
            (Some(Established), Some(CloseWait)) => {
                f.peer_fin_unix_ns = ts;
                if f.closed_first.is_none() {
                    f.tcp_at_close = ev.tcp;
                }
                f.closed_first.get_or_insert(Closer::Peer);
            }
            (Some(Established | SynRecv), Some(FinWait1)) => {
                f.local_fin_unix_ns = ts;
                if f.closed_first.is_none() {
                    f.tcp_at_close = ev.tcp;
                }
                f.closed_first.get_or_insert(Closer::Local);
            }
            (old, Some(TcpState::Close)) if self.rst_pending => {
                // The RST's effect: the state it hit is the one the socket leaves now.
                f.rst_state = old;
                self.rst_pending = false;
            }
            _ => {}
        }
    }

    fn push_timeline(&mut self, ev: &KernelEvent, peer: bool, max: usize) {
        let entry = TimelineEntry {
            ts_unix_ns: ev.ts_unix_ns,
            event: ev.event,
            state: ev.state,
            new_state: ev.new_state,
            reason: ev.reason.clone(),
            errno: ev.errno,
            peer,
        };
        if self.timeline.len() >= max.max(2) {
            // Keep the first half as it was and slide the second half.
            self.timeline.remove(max / 2);
            self.timeline_dropped += 1;
        }
        self.timeline.push(entry);
    }
}

fn reset_sent(ev: &KernelEvent) -> ResetSent {
    ResetSent {
        ts_unix_ns: ev.ts_unix_ns,
        state: ev.state,
        reason: ev.reason.clone(),
    }
}

/// `u64` as `"0xffff..."`: kernel addresses are beyond JSON's safe integers.
mod hex_u64 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:#x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        u64::from_str_radix(s.trim_start_matches("0x"), 16).map_err(D::Error::custom)
    }
}
