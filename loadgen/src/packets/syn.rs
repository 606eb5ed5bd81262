//! `loadgen packets syn`: raw SYNs at an exact rate, each answer matched to its probe,
//! one verdict per target.
//!
//! Pacing is the open model of [`crate::rate::Schedule`]: probe `n` is due at a time
//! computed from `n`, and is sent then (or at once, if late) whatever came before, so a
//! slow loop shows up as schedule lag, not as a lower rate. Answers come from an
//! AF_PACKET capture per interface and are matched by (target, source port, ACK = ISN+1).
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    ops::RangeInclusive,
    sync::mpsc::RecvTimeoutError,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;

use super::{
    PacketsError,
    classify::{self, Answer, HostCheck, LocalEvidence, ProbeKey, Tally},
    evidence,
    firewall::{Firewall, PROBE_MARK},
    net::{Capture, RawSender, Route, route_to},
    report::{FirewallReport, LagReport, Percentiles, RttReport, SynReport, TargetReport},
};
use crate::rate::{Rate, Schedule};
use wire::packet::{self, Packet, SegmentSpec, TcpFlags};

/// A validated `packets syn` configuration.
#[derive(Clone, Debug)]
pub struct SynConfig {
    pub targets: Vec<SocketAddr>,
    pub rate: Rate,
    pub duration: Duration,
    /// At most this many probes (the schedule may end sooner).
    pub count: Option<u64>,
    pub timeout: Duration,
    pub source_ports: RangeInclusive<u16>,
    /// Probe this port too when a target stays silent, to tell "filtered" from "down".
    pub alive_port: Option<u16>,
}

/// How long before a due send the loop stops sleeping and spins.
const SPIN: Duration = Duration::from_micros(300);

/// Probes sent to the alive port of a silent target.
const HOST_CHECK_PROBES: u32 = 3;

/// One SYN sent. Times: `intended` is when the schedule wanted it sent (offset from the
/// start), `sent_at` when it left; the RTT runs from `sent_at` to the capture of the
/// answer (capture thread wake-up included, a few µs).
#[derive(Debug)]
struct Probe {
    key: ProbeKey,
    /// Index into the targets, or `None` for a host-check probe.
    target: Option<usize>,
    sent_at: Instant,
    answer: Option<(Answer, Duration)>,
    late: bool,
}

/// Per-target state.
struct TargetState {
    addr: SocketAddr,
    route: Route,
    tally: Tally,
    late_answers: u64,
    rtt_syn_ack: Histogram<u64>,
    rtt_rst: Histogram<u64>,
    host_check: Option<HostCheck>,
}

fn histogram() -> Histogram<u64> {
    // 1 ns to 1 hour, 3 significant digits; these bounds are valid, so this cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

struct Prober {
    cfg: SynConfig,
    targets: Vec<TargetState>,
    captures: Vec<Capture>,
    v4: Option<RawSender>,
    v6: Option<RawSender>,
    probes: Vec<Probe>,
    /// Probe indices per (source port, target), for matching.
    by_port: HashMap<(u16, SocketAddr), Vec<usize>>,
    next_port: u32,
}

impl Prober {
    fn sender(&self, ip: IpAddr) -> Option<&RawSender> {
        match ip {
            IpAddr::V4(_) => self.v4.as_ref(),
            IpAddr::V6(_) => self.v6.as_ref(),
        }
    }

    fn next_source_port(&mut self) -> u16 {
        let (lo, hi) = (
            u32::from(*self.cfg.source_ports.start()),
            u32::from(*self.cfg.source_ports.end()),
        );
        let port = lo + self.next_port % (hi - lo + 1);
        self.next_port = self.next_port.wrapping_add(1);
        u16::try_from(port).unwrap_or(u16::MAX)
    }

    /// Sends one SYN from `route.source` to `target`.
    fn send_syn(
        &mut self,
        target: SocketAddr,
        source: IpAddr,
        index: Option<usize>,
    ) -> Result<Instant, PacketsError> {
        let port = self.next_source_port();
        let key = ProbeKey {
            source: SocketAddr::new(source, port),
            target,
            isn: fastrand::u32(..),
        };
        let packet = packet::build(&SegmentSpec::syn(
            key.source,
            target,
            key.isn,
            fastrand::u16(..),
        ))?;
        let Some(sender) = self.sender(target.ip()) else {
            unreachable!("a sender exists for every target family");
        };
        // Taken before the send: on loopback the answer can be made inside sendto.
        let sent_at = Instant::now();
        sender.send(&packet, target.ip())?;
        let id = self.probes.len();
        let timeout = self.cfg.timeout;
        let slot = self.by_port.entry((port, target)).or_default();
        // Probes past their timeout can no longer be answered: forget them here.
        slot.retain(|&i| self.probes[i].sent_at + timeout * 2 > sent_at);
        slot.push(id);
        self.probes.push(Probe {
            key,
            target: index,
            sent_at,
            answer: None,
            late: false,
        });
        tracing::trace!(%target, port, isn = key.isn, "SYN sent");
        Ok(sent_at)
    }

    /// Reads captured frames until `until` (or the stop token, if `stop` is given).
    fn pump(
        &mut self,
        until: Instant,
        stop: Option<&CancellationToken>,
    ) -> Result<(), PacketsError> {
        loop {
            let now = Instant::now();
            if now >= until || stop.is_some_and(CancellationToken::is_cancelled) {
                return Ok(());
            }
            // The last stretch before a send is spun, not slept: a sleeping thread wakes
            // 100-200 µs late on a busy host, and that would be schedule lag.
            if until - now < SPIN {
                self.poll_now()?;
                std::hint::spin_loop();
                continue;
            }
            // Every capture is polled; the wait is split between them.
            let slice = (until - now - SPIN).min(Duration::from_millis(5));
            let mut got = Vec::new();
            for c in &self.captures {
                match c.rx.recv_timeout(slice / self.captures.len().max(1) as u32) {
                    Ok(f) => got.push((c.link, f)),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        return Err(PacketsError::Io {
                            what: "the capture thread stopped".into(),
                            source: std::io::Error::other("capture ended"),
                        });
                    }
                }
                while let Ok(f) = c.rx.try_recv() {
                    got.push((c.link, f));
                }
            }
            for (link, f) in got {
                self.on_frame(link, &f.bytes, f.at)?;
            }
        }
    }

    /// Handles the frames already captured, without waiting.
    fn poll_now(&mut self) -> Result<(), PacketsError> {
        let mut got = Vec::new();
        for c in &self.captures {
            while let Ok(f) = c.rx.try_recv() {
                got.push((c.link, f));
            }
        }
        for (link, f) in got {
            self.on_frame(link, &f.bytes, f.at)?;
        }
        Ok(())
    }

    fn on_frame(
        &mut self,
        link: packet::LinkType,
        bytes: &[u8],
        at: Instant,
    ) -> Result<(), PacketsError> {
        let Ok(packet) = packet::parse_frame(link, bytes) else {
            return Ok(());
        };
        let (port, target) = match &packet {
            Packet::Tcp(seg) => (seg.dst.port(), seg.src),
            Packet::Unreachable(u) => (u.src.port(), u.dst),
        };
        let Some(ids) = self.by_port.get(&(port, target)) else {
            return Ok(());
        };
        let found = ids.iter().copied().find_map(|i| {
            let key = &self.probes[i].key;
            match &packet {
                Packet::Tcp(seg) => classify::answer_of(seg, key).map(|a| (i, a)),
                Packet::Unreachable(u) => {
                    classify::icmp_answers(u, key).then_some((i, Answer::IcmpUnreachable))
                }
            }
        });
        let Some((i, answer)) = found else {
            return Ok(());
        };
        let probe = &mut self.probes[i];
        if probe.answer.is_some() || probe.late {
            // A retransmitted SYN-ACK, or the same frame seen twice on loopback.
            return Ok(());
        }
        let rtt = at.saturating_duration_since(probe.sent_at);
        let key = probe.key;
        if rtt > self.cfg.timeout {
            probe.late = true;
            if let Some(t) = probe.target {
                self.targets[t].late_answers += 1;
            }
            if answer == Answer::SynAck {
                self.tear_down(&key)?;
            }
            return Ok(());
        }
        probe.answer = Some((answer, rtt));
        if let Some(t) = probe.target {
            let st = &mut self.targets[t];
            let ns = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX).max(1);
            match answer {
                Answer::SynAck => st.rtt_syn_ack.saturating_record(ns),
                Answer::Rst => st.rtt_rst.saturating_record(ns),
                _ => {}
            }
        }
        tracing::trace!(target = %key.target, port = key.source.port(), answer = answer.name(), rtt_ns = rtt.as_nanos() as u64, "answer");
        if answer == Answer::SynAck {
            self.tear_down(&key)?;
        }
        Ok(())
    }

    /// Tears the server's half-open connection down ourselves, so that it neither holds
    /// a SYN-queue slot nor answers a later probe from the same port with the old ISN:
    /// RST with SEQ = ISN + 1, in its window (RFC 9293 section 3.10.7.4; tcp_check_req
    /// drops the request sock). Marked, so the nft rule lets it through. Best effort:
    /// another firewall may drop it (sendto then fails with EPERM).
    fn tear_down(&self, key: &ProbeKey) -> Result<(), PacketsError> {
        let mut rst = SegmentSpec::rst(key.source, key.target, key.isn.wrapping_add(1), 0);
        rst.flags = TcpFlags::RST;
        rst.ip_id = fastrand::u16(..);
        let packet = packet::build(&rst)?;
        if let Some(sender) = self.sender(key.target.ip())
            && let Err(e) = sender.send(&packet, key.target.ip())
        {
            tracing::warn!(target = %key.target, port = key.source.port(), cause = %e, "could not send the RST that ends a half-open connection");
        }
        Ok(())
    }

    /// Waits until every probe is answered or past its timeout.
    fn drain(&mut self) -> Result<(), PacketsError> {
        let Some(last) = self.probes.iter().map(|p| p.sent_at).max() else {
            return Ok(());
        };
        let deadline = last + self.cfg.timeout;
        while Instant::now() < deadline {
            if self.probes.iter().all(|p| p.answer.is_some()) {
                return Ok(());
            }
            self.pump(
                (Instant::now() + Duration::from_millis(20)).min(deadline),
                None,
            )?;
        }
        Ok(())
    }
}

/// Runs the probe. `installed` is called once the nft table is in place (the CLI prints
/// it); `stop` ends the schedule early (Ctrl-C, SIGTERM).
pub fn run(
    cfg: SynConfig,
    stop: &CancellationToken,
    installed: impl FnOnce(&Firewall),
) -> Result<SynReport, PacketsError> {
    let started_unix_ns = events::time::now_unix_ns();
    let targets = route_targets(&cfg)?;
    let ips: Vec<IpAddr> = cfg.targets.iter().map(|t| t.ip()).collect();
    let mut firewall = Firewall::install(&ips, &cfg.source_ports)?;
    installed(&firewall);
    let sender = |want_v4: bool| -> Result<Option<RawSender>, PacketsError> {
        match ips.iter().find(|ip| ip.is_ipv4() == want_v4) {
            Some(ip) => RawSender::new(*ip, Some(PROBE_MARK)).map(Some),
            None => Ok(None),
        }
    };
    let (v4, v6) = (sender(true)?, sender(false)?);
    let captures = start_captures(&cfg, &targets, &ips)?;
    let counters_before = evidence::read_counters();

    let mut prober = Prober {
        cfg: cfg.clone(),
        targets,
        captures,
        v4,
        v6,
        probes: Vec::new(),
        by_port: HashMap::new(),
        // A random start in the range: consecutive runs then rarely reuse a 4-tuple
        // whose half-open connection a lost RST left on the server.
        next_port: fastrand::u32(..),
    };
    let sent = send_schedule(&mut prober, stop)?;
    let start = sent.start;
    let schedule_ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    prober.drain()?;
    host_checks(&mut prober)?;
    let counters_after = evidence::read_counters();
    drop(std::mem::take(&mut prober.captures));
    let kernel_rsts_dropped = firewall.dropped();
    firewall.remove()?;

    for p in &prober.probes {
        if let Some(t) = p.target {
            prober.targets[t]
                .tally
                .add(p.answer.map_or(Answer::NoAnswer, |a| a.0));
        }
    }
    let counters_delta = counters_before
        .zip(counters_after)
        .map(|(b, a)| a.since(&b));
    Ok(SynReport {
        command: "packets syn",
        started_unix_ns,
        wall_ns: u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX),
        schedule_ns,
        rate_per_sec: cfg.rate.per_sec(),
        timeout_ns: u64::try_from(cfg.timeout.as_nanos()).unwrap_or(u64::MAX),
        source_ports: format!("{}-{}", cfg.source_ports.start(), cfg.source_ports.end()),
        interrupted: sent.interrupted,
        probes_sent: prober.targets.iter().map(|t| t.tally.sent).sum(),
        schedule_lag: LagReport {
            p50_ns: sent.lag.value_at_quantile(0.5),
            p99_ns: sent.lag.value_at_quantile(0.99),
            max_ns: sent.lag.max(),
            late_over_1ms: sent.late_over_1ms,
        },
        firewall: FirewallReport {
            table: firewall.table().to_owned(),
            rules: firewall.rules.clone(),
            kernel_rsts_dropped,
            removed: true,
        },
        targets: target_reports(&prober.targets, counters_delta),
    })
}

/// Each target with its route (source address, interface) and empty tallies.
fn route_targets(cfg: &SynConfig) -> Result<Vec<TargetState>, PacketsError> {
    let mut targets = Vec::new();
    for &addr in &cfg.targets {
        let route = route_to(addr.ip())?;
        tracing::debug!(%addr, source = %route.source, iface = route.iface.name, local = route.target_is_local, "route");
        targets.push(TargetState {
            addr,
            route,
            tally: Tally::default(),
            late_answers: 0,
            rtt_syn_ack: histogram(),
            rtt_rst: histogram(),
            host_check: None,
        });
    }
    Ok(targets)
}

/// One capture per interface the targets route through, keeping only answers to our
/// source ports from the targets.
fn start_captures(
    cfg: &SynConfig,
    targets: &[TargetState],
    ips: &[IpAddr],
) -> Result<Vec<Capture>, PacketsError> {
    let mut captures = Vec::new();
    let mut seen_ifaces: Vec<String> = Vec::new();
    for t in targets {
        if seen_ifaces.contains(&t.route.iface.name) {
            continue;
        }
        seen_ifaces.push(t.route.iface.name.clone());
        let (ports, ips) = (cfg.source_ports.clone(), ips.to_vec());
        // The kernel filter keeps the targets' ports and the alive port (answers come
        // from them).
        let mut target_ports: Vec<u16> = targets.iter().map(|t| t.addr.port()).collect();
        target_ports.extend(cfg.alive_port);
        target_ports.sort_unstable();
        target_ports.dedup();
        captures.push(Capture::start(
            &t.route.iface,
            t.route.link,
            &target_ports,
            move |p| match p {
                Packet::Tcp(s) => ports.contains(&s.dst.port()) && ips.contains(&s.src.ip()),
                Packet::Unreachable(u) => ports.contains(&u.src.port()),
            },
        )?);
    }
    Ok(captures)
}

/// How the schedule went: when it started, its lag, and whether a signal cut it short.
struct Sent {
    start: Instant,
    lag: Histogram<u64>,
    late_over_1ms: u64,
    interrupted: bool,
}

/// Sends the SYNs at their due times, round robin over the targets, reading answers
/// in between, until the schedule or `--count` ends or `stop` is cancelled.
fn send_schedule(prober: &mut Prober, stop: &CancellationToken) -> Result<Sent, PacketsError> {
    let cfg = prober.cfg.clone();
    let schedule = Schedule::constant(cfg.rate, Some(cfg.duration));
    // Fields in this order: the clock starts once everything else is ready.
    let mut sent = Sent {
        lag: histogram(),
        late_over_1ms: 0,
        interrupted: false,
        start: Instant::now(),
    };
    let start = sent.start;
    for (n, offset) in schedule.enumerate() {
        if cfg.count.is_some_and(|c| n as u64 >= c) {
            break;
        }
        let due = start + offset;
        prober.pump(due, Some(stop))?;
        if stop.is_cancelled() {
            sent.interrupted = true;
            break;
        }
        let t = n % prober.targets.len();
        let (addr, source) = (prober.targets[t].addr, prober.targets[t].route.source);
        let sent_at = prober.send_syn(addr, source, Some(t))?;
        prober.targets[t].tally.sent += 1;
        let late = sent_at.saturating_duration_since(due);
        sent.lag
            .saturating_record(u64::try_from(late.as_nanos()).unwrap_or(u64::MAX).max(1));
        if late > Duration::from_millis(1) {
            sent.late_over_1ms += 1;
        }
    }
    Ok(sent)
}

/// One report per target, with its verdict from the answers and the local evidence.
fn target_reports(
    targets: &[TargetState],
    counters_delta: Option<evidence::ListenCounters>,
) -> Vec<TargetReport> {
    targets
        .iter()
        .map(|t| {
            let local = LocalEvidence {
                target_is_local: t.route.target_is_local,
                listeners: if t.route.target_is_local {
                    evidence::read_listeners(t.addr)
                } else {
                    Vec::new()
                },
                counters_delta: counters_delta.filter(|_| t.route.target_is_local),
            };
            let j = classify::judge(&t.tally, &local, t.host_check.as_ref());
            TargetReport {
                target: t.addr,
                source: t.route.source,
                interface: t.route.iface.name.clone(),
                answers: t.tally,
                lost: t.tally.no_answer,
                late_answers: t.late_answers,
                rtt: RttReport {
                    syn_ack: Percentiles::of(&t.rtt_syn_ack),
                    rst: Percentiles::of(&t.rtt_rst),
                },
                verdict: j.verdict,
                reason: j.reason,
                evidence: j.evidence,
                local,
                host_check: t.host_check,
            }
        })
        .collect()
}

/// For each target that answered nothing, a few SYNs to the alive port: any answer
/// there shows the host is up and only the probed port is silent.
fn host_checks(prober: &mut Prober) -> Result<(), PacketsError> {
    let Some(port) = prober.cfg.alive_port else {
        return Ok(());
    };
    let silent: Vec<usize> = (0..prober.targets.len())
        .filter(|&t| {
            let addr = prober.targets[t].addr;
            addr.port() != port
                && prober
                    .probes
                    .iter()
                    .filter(|p| p.target == Some(t))
                    .all(|p| p.answer.is_none())
                && prober.probes.iter().any(|p| p.target == Some(t))
        })
        .collect();
    for t in silent {
        let (addr, source) = (prober.targets[t].addr, prober.targets[t].route.source);
        let target = SocketAddr::new(addr.ip(), port);
        let first = prober.probes.len();
        for _ in 0..HOST_CHECK_PROBES {
            let sent_at = prober.send_syn(target, source, None)?;
            prober.pump(sent_at + Duration::from_millis(50), None)?;
        }
        let deadline = Instant::now() + prober.cfg.timeout;
        while Instant::now() < deadline && prober.probes[first..].iter().all(|p| p.answer.is_none())
        {
            prober.pump(
                (Instant::now() + Duration::from_millis(20)).min(deadline),
                None,
            )?;
        }
        let answer = prober.probes[first..]
            .iter()
            .find_map(|p| p.answer.map(|a| a.0))
            .unwrap_or(Answer::NoAnswer);
        prober.targets[t].host_check = Some(HostCheck { port, answer });
    }
    Ok(())
}
