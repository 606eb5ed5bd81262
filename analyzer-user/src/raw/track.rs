//! The raw backend's TCP tracker: captured segments in, the same [`KernelEvent`]s the
//! eBPF programs would have produced out, so correlation and rules are one code path.
//!
//! The tracker follows each connection from the wire and plays the part of this host's
//! kernel for every end whose address is local (both ends on loopback): a SYN sent is
//! `CLOSE→SYN_SENT`, a SYN sent again a retransmit in SYN_SENT, the SYN-ACK received
//! `SYN_SENT→ESTABLISHED`, the handshake's last ACK `CLOSE→SYN_RECV→ESTABLISHED` for the
//! server end (the kernel creates the child socket then), FINs drive the close states
//! (RFC 9293 section 3.6), an RST received is `receive_reset` + the errno the kernel
//! would deliver (`tcp_reset()`: ECONNREFUSED in SYN_SENT, EPIPE in CLOSE_WAIT,
//! ECONNRESET otherwise) + `→CLOSE` + destroy, an RST sent is `send_reset` + `→CLOSE`.
//! Sockets have no kernel address on the wire: each end gets a synthetic one, unique in
//! the run, and no cookie (loadgen's events join by 4-tuple and time instead).
//!
//! What the wire shows and tracepoints do not is reported as [`WireFact`]s: RSTs whose
//! TTL or IP ID do not fit the sender's other packets (possibly injected by a middlebox),
//! zero windows, and (from [`super::flow`]) TLS and h2c facts.
//!
//! Memory is bounded: at most `max_flows` connections are followed (the oldest quiet one
//! is dropped and counted beyond that), and a closed connection is forgotten.
use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, SocketAddr},
};

use analyzer_common::EventKind;
use serde::{Deserialize, Serialize};
use wire::packet::{Segment, TcpFlags, Unreachable};

use super::flow::{Inspect, Inspector};
use crate::{
    event::{
        KernelEvent, Observed,
        wire_fact::{WireEvent, WireFact},
    },
    names::TcpState,
};

/// ECONNREFUSED, ECONNRESET and EPIPE (asm-generic/errno.h), as `tcp_reset()` picks them.
const ECONNREFUSED: i32 = 111;
const ECONNRESET: i32 = 104;
const EPIPE: i32 = 32;

/// Synthetic kernel addresses of raw-backend sockets start here (far from real ones,
/// which are kernel pointers, so a mixed log never confuses the two).
const SKADDR_BASE: u64 = 0x7a00_0000_0000_0000;

/// Tracker limits.
#[derive(Clone, Debug)]
pub struct TrackConfig {
    /// Connections followed at once.
    pub max_flows: usize,
    /// Payload inspection (TLS, h2c) per connection; `None` turns it off.
    pub inspect: Option<Inspect>,
}

impl Default for TrackConfig {
    fn default() -> Self {
        Self {
            max_flows: 1 << 16,
            inspect: Some(Inspect::default()),
        }
    }
}

/// Tracker counters for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackStats {
    pub segments: u64,
    pub flows: u64,
    /// Connections first seen mid-stream (opened before the capture).
    pub midstream_flows: u64,
    /// Followed connections dropped because `max_flows` were open.
    pub flows_evicted: u64,
    /// Segments of no followed connection that could not start one (an RST or a stray
    /// ACK for a connection never seen).
    pub stray_segments: u64,
}

#[derive(Clone, Copy, Debug)]
struct End {
    /// This host's socket (its address is local).
    local: bool,
    skaddr: u64,
    state: TcpState,
    /// Sequence number of this end's FIN, once sent.
    fin_seq: Option<u32>,
}

#[derive(Debug, Default)]
struct Dir {
    isn: Option<u32>,
    /// Highest sequence number sent so far plus one (RFC 9293 SND.NXT as seen).
    next_seq: Option<u32>,
    ttl: Option<u8>,
    ttl_varies: bool,
    last_ip_id: Option<u16>,
    zero_windows: u32,
}

#[derive(Debug)]
struct Flow {
    client: SocketAddr,
    server: SocketAddr,
    ends: [End; 2],
    dirs: [Dir; 2],
    last_seen: u64,
    inspector: Option<Inspector>,
}

/// Follows connections through their segments.
#[derive(Debug)]
pub struct Tracker {
    cfg: TrackConfig,
    local_ips: Vec<IpAddr>,
    /// Keyed by (client, server).
    flows: HashMap<(SocketAddr, SocketAddr), Flow>,
    order: VecDeque<(SocketAddr, SocketAddr)>,
    next_skaddr: u64,
    stats: TrackStats,
}

/// `a` comes strictly before `b` in sequence space (RFC 9293 section 3.4).
fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl Tracker {
    /// `local_ips`: this host's addresses (loopback is always local).
    pub fn new(cfg: TrackConfig, local_ips: Vec<IpAddr>) -> Self {
        Self {
            cfg,
            local_ips,
            flows: HashMap::new(),
            order: VecDeque::new(),
            next_skaddr: SKADDR_BASE,
            stats: TrackStats::default(),
        }
    }

    pub fn stats(&self) -> &TrackStats {
        &self.stats
    }

    fn is_local(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || self.local_ips.contains(&ip)
    }

    fn new_end(&mut self, addr: SocketAddr, state: TcpState) -> End {
        self.next_skaddr += 1;
        End {
            local: self.is_local(addr.ip()),
            skaddr: self.next_skaddr,
            state,
            fin_seq: None,
        }
    }

    /// Takes one segment seen at `ts_unix_ns` (`ts_ns`: CLOCK_MONOTONIC) and appends what
    /// it means to `out`.
    pub fn segment(
        &mut self,
        seg: &Segment<'_>,
        ts_ns: u64,
        ts_unix_ns: u64,
        out: &mut Vec<Observed>,
    ) {
        self.stats.segments += 1;
        let fwd = (seg.src, seg.dst);
        let rev = (seg.dst, seg.src);
        let syn_only = seg.has(TcpFlags::SYN) && !seg.has(TcpFlags::ACK);
        let key = if self.flows.contains_key(&fwd) {
            // A new SYN on the tuple of a connection we still follow: a new connection.
            if syn_only
                && self
                    .flows
                    .get(&fwd)
                    .is_some_and(|f| f.dirs[0].isn != Some(seg.seq))
            {
                self.flows.remove(&fwd);
                self.start(seg, false, ts_unix_ns)
            } else {
                fwd
            }
        } else if self.flows.contains_key(&rev) {
            rev
        } else if seg.has(TcpFlags::RST) {
            // An RST for a connection never seen (e.g. to a SYN sent before the capture).
            self.stray(seg, ts_ns, ts_unix_ns, out);
            return;
        } else {
            self.start(seg, !syn_only, ts_unix_ns)
        };
        let Some(mut flow) = self.flows.remove(&key) else {
            return;
        };
        flow.last_seen = ts_unix_ns;
        let d = usize::from(seg.src != flow.client);
        let ctx = Ctx { ts_ns, ts_unix_ns };
        let closed = step(&mut flow, d, seg, ctx, out);
        if let Some(ins) = flow.inspector.as_mut() {
            ins.segment(d == 1, seg, &mut |fact| {
                out.push(Observed::Wire(WireEvent {
                    ts_unix_ns,
                    skaddr: flow_key_skaddr(&flow.ends),
                    client: flow.client,
                    server: flow.server,
                    fact,
                }));
            });
        }
        if !closed {
            self.flows.insert(key, flow);
        }
    }

    fn start(
        &mut self,
        seg: &Segment<'_>,
        midstream: bool,
        ts_unix_ns: u64,
    ) -> (SocketAddr, SocketAddr) {
        // Mid-stream, the client is the end whose port is not the lower (well-known) one.
        let (client, server) = if midstream && seg.src.port() < seg.dst.port() {
            (seg.dst, seg.src)
        } else {
            (seg.src, seg.dst)
        };
        let state = if midstream {
            TcpState::Established
        } else {
            TcpState::Close
        };
        let c = self.new_end(client, state);
        let s = self.new_end(
            server,
            if midstream {
                TcpState::Established
            } else {
                TcpState::Listen
            },
        );
        if self.flows.len() >= self.cfg.max_flows {
            self.evict_one();
        }
        self.stats.flows += 1;
        if midstream {
            self.stats.midstream_flows += 1;
        }
        let mut dirs = [Dir::default(), Dir::default()];
        if midstream {
            let d = usize::from(seg.src != client);
            dirs[d].next_seq = Some(seg.seq);
        }
        let inspector = self
            .cfg
            .inspect
            .as_ref()
            .map(|i| Inspector::new(i.clone(), midstream));
        self.flows.insert(
            (client, server),
            Flow {
                client,
                server,
                ends: [c, s],
                dirs,
                last_seen: ts_unix_ns,
                inspector,
            },
        );
        self.order.push_back((client, server));
        (client, server)
    }

    fn evict_one(&mut self) {
        while let Some(k) = self.order.pop_front() {
            if self.flows.remove(&k).is_some() {
                self.stats.flows_evicted += 1;
                return;
            }
        }
    }

    /// An RST for no followed connection: this host's stack answering a segment for no
    /// socket (the sender is local) is what the kernel reports as `send_reset` without a
    /// socket; an RST received by a local socket we never saw open is reported as received.
    fn stray(&mut self, seg: &Segment<'_>, ts_ns: u64, ts_unix_ns: u64, out: &mut Vec<Observed>) {
        self.stats.stray_segments += 1;
        if self.is_local(seg.src.ip()) {
            out.push(Observed::Kernel(event(
                EventKind::SendReset,
                Ctx { ts_ns, ts_unix_ns },
                0,
                seg.src,
                seg.dst,
                None,
            )));
        }
    }

    /// Takes an ICMP/ICMPv6 destination unreachable: for a connection of ours in
    /// SYN_SENT, the kernel delivers the error and ends the connect (`tcp_v4_err`); in
    /// other states it is a soft error, kept as a fact only.
    pub fn unreachable(
        &mut self,
        u: &Unreachable,
        ts_ns: u64,
        ts_unix_ns: u64,
        out: &mut Vec<Observed>,
    ) {
        let key = (u.src, u.dst);
        let Some(flow) = self.flows.get_mut(&key) else {
            self.stats.stray_segments += 1;
            return;
        };
        let errno = icmp_errno(u.from.is_ipv4(), u.code);
        let ctx = Ctx { ts_ns, ts_unix_ns };
        out.push(wire(
            flow,
            ctx,
            WireFact::IcmpUnreachable {
                from: u.from,
                icmp_type: u.icmp_type,
                code: u.code,
                errno,
            },
        ));
        let (mut client, _) = ends_mut(&mut flow.ends, flow.client, flow.server, 0);
        if client.end.state != TcpState::SynSent {
            return;
        }
        if client.end.local {
            let mut ev = event(
                EventKind::ErrorReport,
                ctx,
                client.end.skaddr,
                client.local,
                client.remote,
                None,
            );
            ev.errno = Some(errno);
            out.push(Observed::Kernel(ev));
        }
        client.close(ctx, out);
        self.flows.remove(&key);
    }

    /// Forgets connections quiet for longer than `idle_ns` (call now and then).
    pub fn expire(&mut self, now_unix_ns: u64, idle_ns: u64) {
        self.flows
            .retain(|_, f| now_unix_ns.saturating_sub(f.last_seen) < idle_ns);
        let flows = &self.flows;
        self.order.retain(|k| flows.contains_key(k));
    }
}

fn flow_key_skaddr(ends: &[End; 2]) -> u64 {
    if ends[0].local {
        ends[0].skaddr
    } else {
        ends[1].skaddr
    }
}

#[derive(Clone, Copy)]
struct Ctx {
    ts_ns: u64,
    ts_unix_ns: u64,
}

fn event(
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
    }
}

/// One end of a flow, with the addresses seen from it.
struct EndRef<'a> {
    end: &'a mut End,
    local: SocketAddr,
    remote: SocketAddr,
}

impl EndRef<'_> {
    fn set(&mut self, to: TcpState, ctx: Ctx, out: &mut Vec<Observed>) {
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

    fn emit(&self, kind: EventKind, ctx: Ctx, out: &mut Vec<Observed>) -> Option<usize> {
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
    fn close(&mut self, ctx: Ctx, out: &mut Vec<Observed>) {
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

fn ends_mut(
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

/// Applies one segment from direction `d` (0: client to server). Returns true when the
/// connection is over (both ends closed).
fn step(flow: &mut Flow, d: usize, seg: &Segment<'_>, ctx: Ctx, out: &mut Vec<Observed>) -> bool {
    let syn = seg.has(TcpFlags::SYN);
    let ack = seg.has(TcpFlags::ACK);
    let rst = seg.has(TcpFlags::RST);
    let fin = seg.has(TcpFlags::FIN);
    let from_server = d == 1;
    let suspect = if rst {
        rst_suspect(&flow.dirs[d], seg, from_server)
    } else {
        None
    };
    note_ip(&mut flow.dirs[d], seg, rst);
    if !rst && !syn && seg.window == 0 {
        flow.dirs[d].zero_windows += 1;
        let count = flow.dirs[d].zero_windows;
        if count == 1 {
            out.push(wire(flow, ctx, WireFact::ZeroWindow { from_server, count }));
        }
    }
    // Sequence bookkeeping: a segment wholly below what was sent is a retransmission.
    let end_seq = seg.seq.wrapping_add(seg.seq_len());
    let retransmit = seg.seq_len() > 0
        && !rst
        && flow.dirs[d]
            .next_seq
            .is_some_and(|n| !(seq_lt(n, end_seq) || syn && flow.dirs[d].isn.is_none()));
    if flow.dirs[d].next_seq.is_none_or(|n| seq_lt(n, end_seq)) {
        flow.dirs[d].next_seq = Some(end_seq);
    }
    let peer_fin_acked = |flow: &Flow| {
        let other = &flow.ends[1 - d];
        ack && other
            .fin_seq
            .is_some_and(|f| !seq_lt(seg.ack, f.wrapping_add(1)))
    };
    let fin_acked = peer_fin_acked(flow);
    let server_isn = flow.dirs[1].isn;
    let (mut me, mut peer) = ends_mut(&mut flow.ends, flow.client, flow.server, d);

    if rst {
        if let Some(fact) = suspect {
            out.push(Observed::Wire(WireEvent {
                ts_unix_ns: ctx.ts_unix_ns,
                skaddr: 0,
                client: if from_server { peer.local } else { me.local },
                server: if from_server { me.local } else { peer.local },
                fact,
            }));
        }
        // The sender's reset: a socket that existed, or the stack for no socket.
        if me.end.local {
            let had_socket = !matches!(me.end.state, TcpState::Listen | TcpState::Close);
            let mut ev = event(
                EventKind::SendReset,
                ctx,
                if had_socket { me.end.skaddr } else { 0 },
                me.local,
                me.remote,
                had_socket.then_some(me.end.state),
            );
            if !had_socket {
                ev.reason = Some("NO_SOCKET".into());
            }
            out.push(Observed::Kernel(ev));
        }
        if had_state(me.end.state) {
            me.close(ctx, out);
        } else {
            me.end.state = TcpState::Close;
        }
        // The receiver's side: reset in its state, the errno tcp_reset() delivers.
        if had_state(peer.end.state) {
            let state = peer.end.state;
            peer.emit(EventKind::ReceiveReset, ctx, out);
            let errno = match state {
                TcpState::SynSent => ECONNREFUSED,
                TcpState::CloseWait => EPIPE,
                _ => ECONNRESET,
            };
            if peer.end.local
                && !matches!(
                    state,
                    TcpState::TimeWait | TcpState::LastAck | TcpState::Closing
                )
            {
                let mut ev = event(
                    EventKind::ErrorReport,
                    ctx,
                    peer.end.skaddr,
                    peer.local,
                    peer.remote,
                    None,
                );
                ev.errno = Some(errno);
                out.push(Observed::Kernel(ev));
            }
            peer.close(ctx, out);
        }
        return true;
    }

    if syn && !ack {
        if retransmit || me.end.state == TcpState::SynSent {
            me.emit(EventKind::Retransmit, ctx, out);
        } else {
            me.set(TcpState::SynSent, ctx, out);
        }
        flow.dirs[d].isn = Some(seg.seq);
        return false;
    }
    if syn && ack {
        // SYN-ACK: the client is established when it arrives.
        if peer.end.state == TcpState::SynSent {
            peer.set(TcpState::Established, ctx, out);
        }
        if me.end.state == TcpState::Listen {
            me.end.state = TcpState::NewSynRecv;
        }
        flow.dirs[d].isn = Some(seg.seq);
        return false;
    }
    // The handshake's last ACK: the server's child socket is created and established.
    if d == 0
        && peer.end.state == TcpState::NewSynRecv
        && server_isn.is_some_and(|i| seg.ack == i.wrapping_add(1))
    {
        // The child is cloned from the listener: the kernel reports LISTEN→SYN_RECV.
        peer.end.state = TcpState::Listen;
        peer.set(TcpState::SynRecv, ctx, out);
        peer.set(TcpState::Established, ctx, out);
    }
    if retransmit && !fin {
        me.emit(EventKind::Retransmit, ctx, out);
    }
    // Our FIN acknowledged by the peer.
    if fin_acked {
        match peer.end.state {
            TcpState::FinWait1 => peer.set(TcpState::FinWait2, ctx, out),
            TcpState::LastAck | TcpState::Closing => peer.close(ctx, out),
            _ => {}
        }
    }
    if fin && me.end.fin_seq.is_none() {
        me.end.fin_seq = Some(
            seg.seq
                .wrapping_add(u32::try_from(seg.payload.len()).unwrap_or(0)),
        );
        match me.end.state {
            TcpState::Established | TcpState::SynRecv => me.set(TcpState::FinWait1, ctx, out),
            TcpState::CloseWait => me.set(TcpState::LastAck, ctx, out),
            _ => {}
        }
        match peer.end.state {
            TcpState::Established => peer.set(TcpState::CloseWait, ctx, out),
            TcpState::FinWait1 => peer.set(TcpState::Closing, ctx, out),
            // FIN_WAIT2 + FIN: TIME_WAIT, where the kernel closes the full socket.
            TcpState::FinWait2 => peer.close(ctx, out),
            _ => {}
        }
    } else if fin && retransmit {
        me.emit(EventKind::Retransmit, ctx, out);
    }
    let over = |s: TcpState| matches!(s, TcpState::Close | TcpState::Listen);
    over(flow.ends[0].state) && over(flow.ends[1].state)
}

/// The errno the kernel makes of an ICMP destination unreachable code
/// (`icmp_err_convert` in net/ipv4/icmp.c, `icmpv6_err_convert` in net/ipv6/icmp.c).
fn icmp_errno(v4: bool, code: u8) -> i32 {
    if v4 {
        match code {
            0 | 6 | 9 | 11 => libc::ENETUNREACH,
            2 => libc::ENOPROTOOPT,
            3 => libc::ECONNREFUSED,
            4 => libc::EMSGSIZE,
            5 => libc::EOPNOTSUPP,
            7 => libc::EHOSTDOWN,
            8 => libc::ENONET,
            _ => libc::EHOSTUNREACH,
        }
    } else {
        match code {
            0 => libc::ENETUNREACH,
            1 | 5 | 6 => libc::EACCES,
            4 => libc::ECONNREFUSED,
            _ => libc::EHOSTUNREACH,
        }
    }
}

fn had_state(s: TcpState) -> bool {
    !matches!(s, TcpState::Close | TcpState::Listen | TcpState::NewSynRecv)
}

fn wire(flow: &Flow, ctx: Ctx, fact: WireFact) -> Observed {
    Observed::Wire(WireEvent {
        ts_unix_ns: ctx.ts_unix_ns,
        skaddr: flow_key_skaddr(&flow.ends),
        client: flow.client,
        server: flow.server,
        fact,
    })
}

/// Remembers the sender's TTL and IP ID (not for RSTs, which are what is judged).
fn note_ip(dir: &mut Dir, seg: &Segment<'_>, rst: bool) {
    if rst {
        return;
    }
    match dir.ttl {
        None => dir.ttl = Some(seg.ttl),
        Some(t) if t != seg.ttl => dir.ttl_varies = true,
        Some(_) => {}
    }
    if seg.ip_id.is_some_and(|id| id != 0) {
        dir.last_ip_id = seg.ip_id;
    }
}

/// IP IDs further than this from the sender's last one do not come from its counter.
const IP_ID_JUMP: u16 = 4096;

/// Judges an RST against its sender's earlier packets on the connection.
fn rst_suspect(dir: &Dir, seg: &Segment<'_>, from_server: bool) -> Option<WireFact> {
    let expected_ttl = dir.ttl?;
    let mut why = Vec::new();
    if !dir.ttl_varies && seg.ttl != expected_ttl {
        why.push(format!(
            "TTL {} where every earlier packet from that end had {expected_ttl} (a different number of hops away)",
            seg.ttl
        ));
    }
    if let (Some(id), Some(last)) = (seg.ip_id, dir.last_ip_id)
        && id != 0
        && id.wrapping_sub(last) > IP_ID_JUMP
        && last.wrapping_sub(id) > IP_ID_JUMP
    {
        why.push(format!(
            "IP ID {id} far from that end's last {last} (not its counter)"
        ));
    }
    if why.is_empty() {
        return None;
    }
    Some(WireFact::RstSuspect {
        from_server,
        ttl: seg.ttl,
        expected_ttl,
        ip_id: seg.ip_id,
        last_ip_id: dir.last_ip_id,
        window: seg.window,
        why: why.join("; "),
    })
}

#[cfg(test)]
mod tests;
