//! The reports of the packet tools: JSON shapes (the contract) and their text rendering.
use std::{
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::classify::{HostCheck, LocalEvidence, Tally, Verdict};
use crate::report::format_ms;

/// Everything `packets syn` measured.
#[derive(Clone, Debug, Serialize)]
pub struct SynReport {
    pub command: &'static str,
    pub started_unix_ns: u64,
    /// From the first intended send to the end of the report.
    pub wall_ns: u64,
    /// From the first intended send to the last probe sent.
    pub schedule_ns: u64,
    pub rate_per_sec: f64,
    pub timeout_ns: u64,
    pub source_ports: String,
    /// Ctrl-C or SIGTERM stopped the schedule; the numbers cover what was sent.
    pub interrupted: bool,
    pub probes_sent: u64,
    /// How late probes left against their intended send time.
    pub schedule_lag: LagReport,
    pub firewall: FirewallReport,
    pub targets: Vec<TargetReport>,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct LagReport {
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    /// Probes sent more than 1 ms after their intended time.
    pub late_over_1ms: u64,
}

/// The nft table that was in place during the run.
#[derive(Clone, Debug, Serialize)]
pub struct FirewallReport {
    /// `inet` family table name.
    pub table: String,
    pub rules: Vec<String>,
    /// RSTs of the host's own stack the rules dropped (their counters at the end).
    pub kernel_rsts_dropped: Option<u64>,
    pub removed: bool,
}

/// One target's answers and verdict.
#[derive(Clone, Debug, Serialize)]
pub struct TargetReport {
    pub target: SocketAddr,
    pub source: IpAddr,
    pub interface: String,
    /// `sent` and a count per answer class.
    pub answers: Tally,
    /// Probes with no answer within the timeout (`answers.no_answer`).
    pub lost: u64,
    /// Answers that came after the timeout (their probes count as no_answer).
    pub late_answers: u64,
    pub rtt: RttReport,
    pub verdict: Verdict,
    pub reason: String,
    pub evidence: Vec<String>,
    pub local: LocalEvidence,
    pub host_check: Option<HostCheck>,
}

/// Handshake round-trip times by answer class, from the SYN's send to the answer's capture.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct RttReport {
    pub syn_ack: Option<Percentiles>,
    pub rst: Option<Percentiles>,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub min_ns: u64,
    pub mean_ns: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

impl Percentiles {
    /// `None` for an empty histogram.
    pub fn of(h: &Histogram<u64>) -> Option<Self> {
        (!h.is_empty()).then(|| Self {
            count: h.len(),
            min_ns: h.min(),
            mean_ns: h.mean() as u64,
            p50_ns: h.value_at_quantile(0.5),
            p90_ns: h.value_at_quantile(0.9),
            p99_ns: h.value_at_quantile(0.99),
            max_ns: h.max(),
        })
    }
}

fn ms(ns: u64) -> String {
    format_ms(ns as f64 / 1e6)
}

/// JSON for `--format json` and `--out`.
pub fn json<T: Serialize>(report: &T) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// The text report.
pub fn text(r: &SynReport) -> String {
    let mut out = String::new();
    if r.interrupted {
        out.push_str("Interrupted: the run was stopped early; these numbers cover what ran.\n");
    }
    let _ = writeln!(
        out,
        "loadgen packets syn: {} probes at {}/s over {} (timeout {}, source ports {})",
        r.probes_sent,
        r.rate_per_sec,
        ms(r.schedule_ns),
        ms(r.timeout_ns),
        r.source_ports
    );
    let _ = writeln!(
        out,
        "schedule lag [50, 99, max] {}, {}, {}; {} sent more than 1ms late",
        ms(r.schedule_lag.p50_ns),
        ms(r.schedule_lag.p99_ns),
        ms(r.schedule_lag.max_ns),
        r.schedule_lag.late_over_1ms
    );
    let _ = writeln!(
        out,
        "nft table inet {}: dropped {} RSTs of this host's stack, {}",
        r.firewall.table,
        r.firewall
            .kernel_rsts_dropped
            .map_or("an unknown number of".into(), |n| n.to_string()),
        if r.firewall.removed {
            "removed"
        } else {
            "NOT removed"
        }
    );
    for t in &r.targets {
        let a = &t.answers;
        let _ = writeln!(
            out,
            "\n{}  via {} from {}: sent {}, syn_ack {}, rst {}, icmp_unreachable {}, no_answer {} (lost {}{})",
            t.target,
            t.interface,
            t.source,
            a.sent,
            a.syn_ack,
            a.rst,
            a.icmp_unreachable,
            a.no_answer,
            t.lost,
            if t.late_answers > 0 {
                format!(", {} answered after the timeout", t.late_answers)
            } else {
                String::new()
            }
        );
        for (name, p) in [("syn_ack", t.rtt.syn_ack), ("rst", t.rtt.rst)] {
            if let Some(p) = p {
                let _ = writeln!(
                    out,
                    "  rtt {name:<7} [min, mean, 50, 90, 99, max] {}, {}, {}, {}, {}, {}",
                    ms(p.min_ns),
                    ms(p.mean_ns),
                    ms(p.p50_ns),
                    ms(p.p90_ns),
                    ms(p.p99_ns),
                    ms(p.max_ns)
                );
            }
        }
        let _ = writeln!(
            out,
            "  verdict {} {}: {}",
            t.target,
            t.verdict.name(),
            t.reason
        );
        for e in &t.evidence {
            let _ = writeln!(out, "    evidence: {e}");
        }
    }
    out
}
