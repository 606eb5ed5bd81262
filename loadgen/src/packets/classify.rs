//! What a SYN probe's answer means, and one verdict per target from all of them: pure
//! functions over parsed segments and gathered evidence, with no I/O.
use std::net::SocketAddr;

use serde::Serialize;

use super::evidence::{ListenCounters, Listener};
use wire::packet::{Segment, TcpFlags, Unreachable};

/// The answer to one SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// SYN+ACK acknowledging our ISN: something listens (RFC 9293 section 3.5).
    SynAck,
    /// RST acknowledging our ISN: nothing listens (RFC 9293 section 3.10.7.1).
    Rst,
    /// An ICMP/ICMPv6 destination unreachable quoting the SYN (a router or a rejecting
    /// firewall).
    IcmpUnreachable,
    /// Nothing within `--timeout`.
    #[expect(
        clippy::enum_variant_names,
        reason = "`no_answer` is the report's word for it (JSON and text)"
    )]
    NoAnswer,
}

impl Answer {
    pub fn name(self) -> &'static str {
        match self {
            Self::SynAck => "syn_ack",
            Self::Rst => "rst",
            Self::IcmpUnreachable => "icmp_unreachable",
            Self::NoAnswer => "no_answer",
        }
    }
}

/// The probe a segment or ICMP error may answer: where it went, from which port, with
/// which initial sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeKey {
    pub source: SocketAddr,
    pub target: SocketAddr,
    pub isn: u32,
}

/// Whether `seg` answers the probe: it must come from the target to our source port and
/// acknowledge exactly our ISN + 1 (RFC 9293 section 3.10.7.1: an RST to a SYN carries
/// ACK = SEG.SEQ + SEG.LEN; section 3.5: a SYN-ACK acknowledges the SYN). Our own SYNs
/// and unrelated traffic on the port range give `None`.
pub fn answer_of(seg: &Segment<'_>, probe: &ProbeKey) -> Option<Answer> {
    if seg.src != probe.target || seg.dst.port() != probe.source.port() {
        return None;
    }
    if !seg.has(TcpFlags::ACK) || seg.ack != probe.isn.wrapping_add(1) {
        return None;
    }
    if seg.has(TcpFlags::RST) {
        Some(Answer::Rst)
    } else if seg.has(TcpFlags::SYN) {
        Some(Answer::SynAck)
    } else {
        None
    }
}

/// Whether an ICMP error quotes this probe (same ports and addresses, sequence = ISN).
pub fn icmp_answers(icmp: &Unreachable, probe: &ProbeKey) -> bool {
    icmp.src.port() == probe.source.port() && icmp.dst == probe.target && icmp.seq == probe.isn
}

/// Counts of answers to a target's probes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub sent: u64,
    pub syn_ack: u64,
    pub rst: u64,
    pub icmp_unreachable: u64,
    pub no_answer: u64,
}

impl Tally {
    pub fn add(&mut self, a: Answer) {
        match a {
            Answer::SynAck => self.syn_ack += 1,
            Answer::Rst => self.rst += 1,
            Answer::IcmpUnreachable => self.icmp_unreachable += 1,
            Answer::NoAnswer => self.no_answer += 1,
        }
    }
}

/// What the host side could see when the target is one of its own addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LocalEvidence {
    /// The target is an address of this network namespace (or loopback): the checks
    /// below mean something.
    pub target_is_local: bool,
    /// LISTEN sockets serving the target's port, at the end of the run.
    pub listeners: Vec<Listener>,
    /// Growth of the namespace's TcpExt counters over the run.
    pub counters_delta: Option<ListenCounters>,
}

/// A probe to another port of the same host, to tell "filtered" from "host down".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HostCheck {
    pub port: u16,
    pub answer: Answer,
}

/// The verdict for one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A listener answered with SYN-ACK.
    Open,
    /// RST: nothing listens there.
    Closed,
    /// A local listener with its accept queue above its backlog dropped the SYNs.
    ListenQueueFull,
    /// No answer (or an ICMP unreachable) and no local listener to blame.
    Filtered,
    /// Nothing was sent (interrupted before the first probe).
    NotProbed,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
            Self::ListenQueueFull => "listen_queue_full",
            Self::Filtered => "filtered",
            Self::NotProbed => "not_probed",
        }
    }
}

/// A verdict with the reasons for it, in words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Judgement {
    pub verdict: Verdict,
    /// One line: the verdict's reason.
    pub reason: String,
    /// Each piece of evidence used.
    pub evidence: Vec<String>,
}

/// Evidence that a local listener's accept queue is what dropped the SYNs: its queue
/// above the backlog, or the overflow counter rising while the probes went unanswered.
fn queue_evidence(ev: &LocalEvidence) -> Vec<String> {
    if !ev.target_is_local || ev.listeners.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut full = false;
    for l in &ev.listeners {
        match (l.backlog, l.queue_full()) {
            (Some(b), Some(true)) => {
                full = true;
                out.push(format!(
                    "LISTEN socket {} has {} connections in its accept queue, above its backlog {} \
                     (/proc/net/tcp rx_queue, ss Send-Q): the kernel drops new SYNs \
                     (tcp_conn_request, sk_acceptq_is_full)",
                    l.local, l.accept_queue, b
                ));
            }
            (Some(b), _) => out.push(format!(
                "LISTEN socket {} has {} of {} accept-queue places used (not full at the end)",
                l.local, l.accept_queue, b
            )),
            (None, _) => out.push(format!(
                "LISTEN socket {} has {} connections in its accept queue (backlog unknown: ss \
                 did not run)",
                l.local, l.accept_queue
            )),
        }
    }
    let overflowed = ev.counters_delta.is_some_and(|d| d.listen_overflows > 0);
    if let Some(d) = ev.counters_delta {
        out.push(format!(
            "TcpExt ListenOverflows +{} and ListenDrops +{} in /proc/net/netstat during the run",
            d.listen_overflows, d.listen_drops
        ));
    }
    if full || overflowed { out } else { Vec::new() }
}

/// One target's verdict from its answers and the local evidence.
pub fn judge(t: &Tally, ev: &LocalEvidence, host: Option<&HostCheck>) -> Judgement {
    let answered = t.sent - t.no_answer.min(t.sent);
    let of = |n: u64, what: &str| format!("{n} of {} SYNs answered with {what}", t.sent);
    if t.sent == 0 {
        return Judgement {
            verdict: Verdict::NotProbed,
            reason: "no probe was sent".into(),
            evidence: Vec::new(),
        };
    }
    let queue = queue_evidence(ev);
    if t.syn_ack > 0 {
        if t.no_answer > 0 && !queue.is_empty() {
            return Judgement {
                verdict: Verdict::ListenQueueFull,
                reason: format!(
                    "{}, {} unanswered while the local listener's accept queue overflowed",
                    of(t.syn_ack, "SYN-ACK"),
                    t.no_answer
                ),
                evidence: queue,
            };
        }
        let mut reason = of(t.syn_ack, "SYN-ACK");
        if t.no_answer > 0 {
            reason.push_str(&format!(", {} unanswered", t.no_answer));
        }
        return Judgement {
            verdict: Verdict::Open,
            reason,
            evidence: Vec::new(),
        };
    }
    if t.rst > 0 {
        return Judgement {
            verdict: Verdict::Closed,
            reason: of(t.rst, "RST"),
            evidence: Vec::new(),
        };
    }
    if t.icmp_unreachable > 0 {
        return Judgement {
            verdict: Verdict::Filtered,
            reason: of(t.icmp_unreachable, "ICMP destination unreachable"),
            evidence: vec!["a router or a rejecting firewall answered for the port".into()],
        };
    }
    debug_assert_eq!(answered, 0);
    if !queue.is_empty() {
        return Judgement {
            verdict: Verdict::ListenQueueFull,
            reason: format!(
                "no answer to {} SYNs, and the local listener's accept queue is full",
                t.sent
            ),
            evidence: queue,
        };
    }
    let mut evidence = Vec::new();
    if ev.target_is_local {
        if ev.listeners.is_empty() {
            evidence.push("no LISTEN socket on the port in /proc/net/tcp{,6}".into());
        } else {
            evidence.push(
                "a LISTEN socket is on the port but its accept queue was not full and \
                 ListenOverflows did not rise"
                    .into(),
            );
        }
    } else {
        evidence.push(
            "the target is not an address of this host: a full listen queue there cannot be \
             ruled out"
                .into(),
        );
    }
    match host {
        Some(h) if h.answer != Answer::NoAnswer => evidence.push(format!(
            "the host is up: port {} answered with {}",
            h.port,
            h.answer.name()
        )),
        Some(h) => evidence.push(format!(
            "port {} did not answer either: the host may be down or fully filtered",
            h.port
        )),
        None => {}
    }
    Judgement {
        verdict: Verdict::Filtered,
        reason: format!("no answer to {} SYNs within the timeout", t.sent),
        evidence,
    }
}

#[cfg(test)]
mod tests;
