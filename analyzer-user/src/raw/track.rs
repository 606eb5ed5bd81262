//! The raw backend's TCP tracker: captured segments in, the same
//! [`KernelEvent`](crate::event::KernelEvent)s the eBPF programs would have produced
//! out, so correlation and rules are one code path.
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
//! What the wire shows and tracepoints do not is reported as
//! [`WireFact`](crate::event::wire_fact::WireFact)s: RSTs whose TTL or IP ID do not fit
//! the sender's other packets (possibly injected by a middlebox), zero windows, and
//! (from [`super::flow`]) TLS and h2c facts, and when a connection ends (closed, reset,
//! evicted, expired, or the capture stopped) the HTTP tally of its payload.
//!
//! Memory is bounded: at most `max_flows` connections are followed (the oldest quiet one
//! is dropped and counted beyond that), and a closed connection is forgotten.
use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, SocketAddr},
};

use analyzer_common::EventKind;
use serde::{Deserialize, Serialize};
use wire::packet::{Segment, TcpFlags};

mod conn;
mod icmp;
mod step;

use super::flow::{Inspect, Inspector};
use crate::{
    event::{Observed, wire_fact::WireEvent},
    names::TcpState,
};
use conn::{Ctx, Dir, End, Flow, event, flow_key_skaddr};
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
    /// What connections forgotten by [`Tracker::expire`] left to say, handed on with the
    /// next call that takes an `out`.
    ended: Vec<Observed>,
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
            ended: Vec::new(),
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
        out.append(&mut self.ended);
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
                if let Some(mut old) = self.flows.remove(&fwd) {
                    old.finish(ts_unix_ns, out);
                }
                self.start(seg, false, ts_unix_ns, out)
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
            self.start(seg, !syn_only, ts_unix_ns, out)
        };
        let Some(mut flow) = self.flows.remove(&key) else {
            return;
        };
        flow.last_seen = ts_unix_ns;
        let d = usize::from(seg.src != flow.client);
        let ctx = Ctx { ts_ns, ts_unix_ns };
        let mark = out.len();
        let closed = step(&mut flow, d, seg, ctx, out);
        if let Some(ins) = flow.inspector.as_mut().filter(|i| !i.is_done()) {
            if seg.has(TcpFlags::FIN) {
                ins.end_of_stream(d == 1);
            }
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
        finish_before_destroy(&mut flow, mark, ts_unix_ns, out);
        if closed {
            flow.finish(ts_unix_ns, out);
        } else {
            self.flows.insert(key, flow);
        }
    }

    fn start(
        &mut self,
        seg: &Segment<'_>,
        midstream: bool,
        ts_unix_ns: u64,
        out: &mut Vec<Observed>,
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
            self.evict_one(ts_unix_ns, out);
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

    fn evict_one(&mut self, ts_unix_ns: u64, out: &mut Vec<Observed>) {
        while let Some(k) = self.order.pop_front() {
            if let Some(mut flow) = self.flows.remove(&k) {
                self.stats.flows_evicted += 1;
                flow.finish(ts_unix_ns, out);
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

    /// Forgets connections quiet for longer than `idle_ns` (call now and then). What
    /// they leave to say comes out of the next [`Tracker::segment`],
    /// [`Tracker::unreachable`] or [`Tracker::finish_all`].
    pub fn expire(&mut self, now_unix_ns: u64, idle_ns: u64) {
        let ended = &mut self.ended;
        self.flows.retain(|_, f| {
            let keep = now_unix_ns.saturating_sub(f.last_seen) < idle_ns;
            if !keep {
                f.finish(now_unix_ns, ended);
            }
            keep
        });
        let flows = &self.flows;
        self.order.retain(|k| flows.contains_key(k));
    }

    /// Ends every connection still followed (the capture stops): what their payload
    /// inspection leaves to say (their HTTP tallies) goes to `out`, oldest first.
    pub fn finish_all(&mut self, now_unix_ns: u64, out: &mut Vec<Observed>) {
        out.append(&mut self.ended);
        while let Some(k) = self.order.pop_front() {
            if let Some(mut flow) = self.flows.remove(&k) {
                flow.finish(now_unix_ns, out);
            }
        }
        for (_, mut flow) in self.flows.drain() {
            flow.finish(now_unix_ns, out);
        }
    }
}

#[cfg(test)]
mod tests;

/// When this segment destroyed one of the flow's local ends (its events from `mark` on
/// hold a `destroy_sock`), the payload inspection ends first and its facts go before
/// that destroy: the connection's record is still live to take them.
fn finish_before_destroy(flow: &mut Flow, mark: usize, ts_unix_ns: u64, out: &mut Vec<Observed>) {
    let Some(at) = out
        .iter()
        .skip(mark)
        .position(|o| matches!(o, Observed::Kernel(ev) if ev.event == EventKind::DestroySock))
    else {
        return;
    };
    let mut facts = Vec::new();
    flow.finish(ts_unix_ns, &mut facts);
    let at = mark + at;
    out.splice(at..at, facts);
}
