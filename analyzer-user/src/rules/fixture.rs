//! Synthetic inputs for tests: the kernel sequences a loopback client socket really
//! produces, run through the real connection table; loadgen requests; a [`Case`] builder.
use std::collections::BTreeMap;

use analyzer_common::EventKind;
use events::model::{Class, ConnFacts, Phase, RequestEvent};

use super::{Case, HostEvidence, RuleOptions};
use crate::{
    event::KernelEvent,
    join::LoadgenConn,
    names::TcpState,
    table::{ConnRecord, ConnTable, Connections, ListenerRecord, TableConfig},
};

pub const CLIENT: &str = "127.0.0.1:40000";
pub const SERVER: &str = "127.0.0.1:8443";
/// A wall-clock origin for synthetic times.
pub const T0: u64 = 1_767_225_600_000_000_000;

/// `T0` plus `n` milliseconds.
pub fn at(n: u64) -> u64 {
    T0 + n * 1_000_000
}

/// A kernel event on the client socket `sk`, `ms` after `T0`.
pub fn kev(event: EventKind, ms: u64, sk: u64) -> KernelEvent {
    KernelEvent {
        event,
        ts_ns: ms * 1_000_000,
        ts_unix_ns: at(ms),
        sock_cookie: 0,
        skaddr: sk,
        cpu: 0,
        pid: 0,
        local: Some(CLIENT.parse().unwrap()),
        remote: Some(SERVER.parse().unwrap()),
        state: None,
        new_state: None,
        reason: None,
        errno: None,
        location: None,
        tcp: None,
    }
}

pub fn state(ms: u64, sk: u64, old: TcpState, new: TcpState) -> KernelEvent {
    KernelEvent {
        state: Some(old),
        new_state: Some(new),
        pid: 4242,
        ..kev(EventKind::StateChange, ms, sk)
    }
}

pub fn rst_in(ms: u64, sk: u64, cookie: u64) -> KernelEvent {
    KernelEvent {
        sock_cookie: cookie,
        ..kev(EventKind::ReceiveReset, ms, sk)
    }
}

pub fn destroy(ms: u64, sk: u64, cookie: u64) -> KernelEvent {
    KernelEvent {
        sock_cookie: cookie,
        ..kev(EventKind::DestroySock, ms, sk)
    }
}

pub fn retrans(ms: u64, sk: u64, st: TcpState) -> KernelEvent {
    KernelEvent {
        state: Some(st),
        ..kev(EventKind::Retransmit, ms, sk)
    }
}

pub fn rst_out(ms: u64, sk: u64, st: TcpState, reason: &str) -> KernelEvent {
    KernelEvent {
        state: Some(st),
        reason: Some(reason.into()),
        ..kev(EventKind::SendReset, ms, sk)
    }
}

/// `inet_sk_error_report`: no socket address, only the tuple.
pub fn error_report(ms: u64, errno: i32) -> KernelEvent {
    KernelEvent {
        errno: Some(errno),
        ..kev(EventKind::ErrorReport, ms, 0)
    }
}

/// The same event seen from the other end (the server's socket on loopback).
pub fn reversed(mut ev: KernelEvent) -> KernelEvent {
    std::mem::swap(&mut ev.local, &mut ev.remote);
    ev
}

use TcpState::{Close, CloseWait, Established, LastAck, SynSent};

/// `connect()` to a closed port: CLOSE→SYN_SENT (local port still 0, as in
/// `tcp_v4_connect`), this host's stack answering for no socket (send_reset NO_SOCKET,
/// skaddr 0, tuple of the server side), receive_reset, errno 111, SYN_SENT→CLOSE, destroy.
pub fn refused(sk: u64, cookie: u64, t: u64) -> Vec<KernelEvent> {
    let mut syn = state(t, sk, Close, SynSent);
    syn.local = Some("127.0.0.1:0".parse().unwrap());
    vec![
        syn,
        reversed(rst_out(t, 0, TcpState::Unknown, "NO_SOCKET")),
        rst_in(t, sk, cookie),
        error_report(t, libc::ECONNREFUSED),
        state(t, sk, SynSent, Close),
        destroy(t + 1, sk, cookie),
    ]
}

/// Connected, then the server aborts: RST received in ESTABLISHED.
pub fn server_rst(sk: u64, cookie: u64, t: u64, rst_after: u64) -> Vec<KernelEvent> {
    vec![
        state(t, sk, Close, SynSent),
        state(t, sk, SynSent, Established),
        rst_in(t + rst_after, sk, cookie),
        error_report(t + rst_after, libc::ECONNRESET),
        state(t + rst_after, sk, Established, Close),
        destroy(t + rst_after + 1, sk, cookie),
    ]
}

/// SYNs never answered: `n` SYN retransmits, then the client gives up.
pub fn backlog_full(sk: u64, cookie: u64, t: u64, n: u64) -> Vec<KernelEvent> {
    let mut v = vec![state(t, sk, Close, SynSent)];
    for i in 1..=n {
        v.push(retrans(t + 1000 * i, sk, SynSent));
    }
    let end = t + 1000 * n + 500;
    v.push(state(end, sk, SynSent, Close));
    v.push(destroy(end, sk, cookie));
    v
}

/// Connected; the peer's FIN arrives `fin_after` ms later; then the close completes.
pub fn peer_fin(sk: u64, cookie: u64, t: u64, fin_after: u64) -> Vec<KernelEvent> {
    let f = t + fin_after;
    vec![
        state(t, sk, Close, SynSent),
        state(t, sk, SynSent, Established),
        state(f, sk, Established, CloseWait),
        state(f + 1, sk, CloseWait, LastAck),
        state(f + 2, sk, LastAck, Close),
        destroy(f + 2, sk, cookie),
    ]
}

/// `events` moved to connection `n`: socket addresses and cookies shifted by `n * 100`,
/// the client port is `40000 + n`; several connections can then share one table.
pub fn on_port(events: Vec<KernelEvent>, n: u16) -> Vec<KernelEvent> {
    events
        .into_iter()
        .map(|mut e| {
            if e.skaddr != 0 {
                e.skaddr += u64::from(n) * 100;
            }
            if e.sock_cookie != 0 {
                e.sock_cookie += u64::from(n) * 100;
            }
            for a in [&mut e.local, &mut e.remote].into_iter().flatten() {
                if a.port() == 40000 {
                    a.set_port(40000 + n);
                }
            }
            e
        })
        .collect()
}

/// Runs events through a table (keeping every record) and finishes it.
pub fn connections(events: &[KernelEvent]) -> Connections {
    let mut t = ConnTable::new(TableConfig {
        keep_all: true,
        ..TableConfig::default()
    });
    for e in events {
        t.ingest(e);
    }
    t.finish()
}

/// The record of socket `sk` after `events` (the last one with that address).
pub fn record(events: &[KernelEvent]) -> ConnRecord {
    let sk = events
        .iter()
        .map(|e| e.skaddr)
        .find(|s| *s != 0)
        .expect("a socket");
    connections(events)
        .records()
        .filter(|r| r.skaddr == sk)
        .last()
        .cloned()
        .expect("the socket has a record")
}

/// A failed request on the client connection, intended at `T0`.
pub fn request(class: Class, phase: Phase) -> RequestEvent {
    RequestEvent {
        seq: 1,
        timestamp: events::time::rfc3339_ns(T0),
        method: "GET".into(),
        url: "https://testbed.faultline.test:8443/".into(),
        error: format!("{class}"),
        class: Some(class),
        phase: Some(phase),
        conn: ConnFacts {
            conn_id: 1,
            sock_cookie: Some(7),
            local: Some(CLIENT.parse().unwrap()),
            remote: Some(SERVER.parse().unwrap()),
            ..ConnFacts::default()
        },
        ..RequestEvent::default()
    }
}

/// Everything a [`Case`] borrows, owned.
#[derive(Debug, Default)]
pub struct Fx {
    pub request: Option<RequestEvent>,
    pub intended: u64,
    pub conn: Option<LoadgenConn>,
    pub kernel: Option<ConnRecord>,
    pub peer: Option<ConnRecord>,
    pub listener: Option<ListenerRecord>,
    pub kernel_seen: bool,
    pub drops: BTreeMap<String, u64>,
    pub host: HostEvidence,
    pub opts: RuleOptions,
}

impl Fx {
    /// A loadgen failure of `class` in `phase`, no kernel record.
    pub fn loadgen(class: Class, phase: Phase) -> Self {
        Self {
            request: Some(request(class, phase)),
            intended: T0,
            ..Self::default()
        }
    }

    /// A kernel-only failure: the record of `events`.
    pub fn kernel(events: &[KernelEvent]) -> Self {
        Self {
            kernel: Some(record(events)),
            ..Self::default()
        }
    }

    /// Adds the kernel record of `events`.
    pub fn with_kernel(mut self, events: &[KernelEvent]) -> Self {
        self.kernel = Some(record(events));
        self
    }

    pub fn case(&self) -> Case<'_> {
        Case {
            request: self.request.as_ref(),
            intended_unix_ns: self.intended,
            conn: self.conn.as_ref(),
            kernel: self.kernel.as_ref(),
            peer: self.peer.as_ref(),
            listener: self.listener.as_ref(),
            kernel_seen: self.kernel_seen,
            drop_reasons: &self.drops,
            host: &self.host,
            opts: &self.opts,
            status: None,
        }
    }
}
