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

mod conn;
mod step;

use super::flow::{Inspect, Inspector};
use crate::{
    event::{
        Observed,
        wire_fact::{WireEvent, WireFact},
    },
    names::TcpState,
};
use conn::{Ctx, Dir, End, Flow, ends_mut, event, flow_key_skaddr, wire};
use step::step;

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

#[cfg(test)]
mod tests;
