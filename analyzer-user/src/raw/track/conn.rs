//! The tracker's state of one connection: its two ends (the sockets it plays), the two
//! directions' sequence and IP bookkeeping, and the events an end's changes make.
use std::net::SocketAddr;

use analyzer_common::EventKind;

use crate::{
    event::{
        KernelEvent, Observed,
        wire_fact::{WireEvent, WireFact},
    },
    names::TcpState,
    raw::flow::Inspector,
};

#[derive(Clone, Copy, Debug)]
pub(super) struct End {
    /// This host's socket (its address is local).
    pub(super) local: bool,
    pub(super) skaddr: u64,
    pub(super) state: TcpState,
    /// Sequence number of this end's FIN, once sent.
    pub(super) fin_seq: Option<u32>,
}

#[derive(Debug, Default)]
pub(super) struct Dir {
    pub(super) isn: Option<u32>,
    /// Highest sequence number sent so far plus one (RFC 9293 SND.NXT as seen).
    pub(super) next_seq: Option<u32>,
    pub(super) ttl: Option<u8>,
    pub(super) ttl_varies: bool,
    pub(super) last_ip_id: Option<u16>,
    pub(super) zero_windows: u32,
}

#[derive(Debug)]
pub(super) struct Flow {
    pub(super) client: SocketAddr,
    pub(super) server: SocketAddr,
    pub(super) ends: [End; 2],
    pub(super) dirs: [Dir; 2],
    pub(super) last_seen: u64,
    pub(super) inspector: Option<Inspector>,
}

impl Flow {
    /// Ends the payload inspection, once: the connection's HTTP tally, if it carried a
    /// request, goes to `out`.
    pub(super) fn finish(&mut self, ts_unix_ns: u64, out: &mut Vec<Observed>) {
        let Some(mut ins) = self.inspector.take() else {
            return;
        };
        let ctx = Ctx {
            ts_ns: 0,
            ts_unix_ns,
        };
        ins.finish(&mut |fact| out.push(wire(self, ctx, fact)));
    }
}

/// `a` comes strictly before `b` in sequence space (RFC 9293 section 3.4).
pub(super) fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

pub(super) fn flow_key_skaddr(ends: &[End; 2]) -> u64 {
    if ends[0].local {
        ends[0].skaddr
    } else {
        ends[1].skaddr
    }
}

#[derive(Clone, Copy)]
pub(super) struct Ctx {
    pub(super) ts_ns: u64,
    pub(super) ts_unix_ns: u64,
}

pub(super) fn event(
    kind: EventKind,
    ctx: Ctx,
    skaddr: u64,
    local: SocketAddr,
    remote: SocketAddr,
    state: Option<TcpState>,
) -> KernelEvent {
    KernelEvent {
        event: kind,
        ts_ns: ctx.ts_ns,
        ts_unix_ns: ctx.ts_unix_ns,
        sock_cookie: 0,
        skaddr,
        cpu: 0,
        pid: 0,
        local: Some(local),
        remote: Some(remote),
        state,
        new_state: None,
        reason: None,
        errno: None,
        location: None,
        tcp: None,
    }
}

/// One end of a flow, with the addresses seen from it.
pub(super) struct EndRef<'a> {
    pub(super) end: &'a mut End,
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
}

impl EndRef<'_> {
    pub(super) fn set(&mut self, to: TcpState, ctx: Ctx, out: &mut Vec<Observed>) {
        let from = self.end.state;
        if from == to {
            return;
        }
        self.end.state = to;
        if self.end.local {
            let mut ev = event(
                EventKind::StateChange,
                ctx,
                self.end.skaddr,
                self.local,
                self.remote,
                Some(from),
            );
            ev.new_state = Some(to);
            out.push(Observed::Kernel(ev));
        }
    }

    pub(super) fn emit(&self, kind: EventKind, ctx: Ctx, out: &mut Vec<Observed>) -> Option<usize> {
        if !self.end.local {
            return None;
        }
        out.push(Observed::Kernel(event(
            kind,
            ctx,
            self.end.skaddr,
            self.local,
            self.remote,
            Some(self.end.state),
        )));
        Some(out.len() - 1)
    }

    /// To CLOSE and destroyed, as the kernel ends a socket.
    pub(super) fn close(&mut self, ctx: Ctx, out: &mut Vec<Observed>) {
        self.set(TcpState::Close, ctx, out);
        if self.end.local {
            out.push(Observed::Kernel(event(
                EventKind::DestroySock,
                ctx,
                self.end.skaddr,
                self.local,
                self.remote,
                None,
            )));
        }
    }
}

pub(super) fn ends_mut(
    ends: &mut [End; 2],
    client: SocketAddr,
    server: SocketAddr,
    d: usize,
) -> (EndRef<'_>, EndRef<'_>) {
    let [c, s] = ends;
    let c = EndRef {
        end: c,
        local: client,
        remote: server,
    };
    let s = EndRef {
        end: s,
        local: server,
        remote: client,
    };
    if d == 0 { (c, s) } else { (s, c) }
}

pub(super) fn had_state(s: TcpState) -> bool {
    !matches!(s, TcpState::Close | TcpState::Listen | TcpState::NewSynRecv)
}

pub(super) fn wire(flow: &Flow, ctx: Ctx, fact: WireFact) -> Observed {
    Observed::Wire(WireEvent {
        ts_unix_ns: ctx.ts_unix_ns,
        skaddr: flow_key_skaddr(&flow.ends),
        client: flow.client,
        server: flow.server,
        fact,
    })
}
