//! Root-cause rules: each failure (a failed loadgen request, or a failed kernel
//! connection no loadgen event explains) is attributed to exactly one cause, by the first
//! rule in [`RULES`] that matches it.
//!
//! Each rule is a small named function from a [`Case`] (everything known about one
//! failure) to an optional [`Verdict`]: a stable snake_case cause id (with an optional
//! detail such as the GOAWAY code or the HTTP status, which splits the cause in the
//! report), a title, the evidence used (kernel and loadgen events with their times, host
//! counters), a confidence with a one-line why, and a remediation hint.
//!
//! Precedence (first match wins), from the most specific and certain to the least:
//!
//! 1. `generator_overload` — loadgen `client_overload`: the request was never sent on time.
//! 2. `local_port_exhaustion` — loadgen `local_port_exhausted` (EADDRNOTAVAIL).
//! 3. `local_fd_exhaustion` — loadgen `fd_exhausted` (EMFILE/ENFILE).
//! 4. `connect_refused` — RST answered the SYN (RST received in SYN_SENT / `connect_refused`).
//!    Then `connect_unreachable` — an ICMP error ended the connect (raw backend).
//! 5. `listen_overflow_or_syn_drop` — SYN unanswered (SYN retransmits / `connect_timeout`).
//! 6. `tls_cert_mismatch` — certificate not valid for the SNI sent.
//! 7. `tls_cert_untrusted`, `tls_cert_expired`, `tls_alert`, `tls_handshake_eof`,
//!    `tls_handshake_reset` — the other TLS failures.
//! 8. `h2_goaway_enhance_your_calm`, `h2_goaway_no_error`, `h2_goaway` (other codes).
//! 9. `h2_rst_stream` (detail: the code).
//! 10. `http_status` (detail: the status).
//!     Also from the raw backend's capture (`tls_from_wire`, `h2_from_wire`), for
//!     failures no loadgen event explains: the same cause ids, wire evidence. A TLS
//!     handshake the client gave up (an alert in place of its Finished, or right after
//!     it) takes the certificate probe's verdict (`tls_cert_mismatch`,
//!     `tls_cert_expired`, `tls_cert_untrusted`, medium: the probe's handshake, not the
//!     client's), else its plaintext alert's `tls_alert`, else
//!     `tls_handshake_rejected_by_client`.
//!     Then `rst_possibly_injected` — an RST whose TTL or IP ID does not fit its sender's
//!     other packets (raw backend), or, from the eBPF backend, an RST from a server on
//!     this host that none of this host's sockets sent; before the rules that take RSTs
//!     at face value.
//!     Then `peer_fin_outstanding` / `server_abort_mid_request` from a foreign client's
//!     plaintext (`http_answer_cut`): its requests left unanswered or answers cut short
//!     when the server's FIN or RST ended the connection; left unattributed, saying why,
//!     when the server sent bytes the client never read before its FIN.
//!     Then `empty_reply` / `no_answer_client_gave_up` — from the kernel's TCP counters
//!     (eBPF backend): the client's request was acknowledged and not one byte came back
//!     before the server's FIN, or before the client closed.
//!     Then, left unattributed saying why (`encrypted_after_fin`): the kernel alone saw
//!     the server's FIN and an RST answering TLS records the client sent after it, no
//!     plaintext read: a request or only the client's close, which 11 and 14 would
//!     otherwise guess.
//! 11. `idle_race` — the request was written into a connection the server had already
//!     closed (its FIN or RST provably came first: by the clocks, or by the kernel's
//!     RST in CLOSE_WAIT), or one idle past the threshold. Before 13 and 14, which it
//!     refines; an RST that follows the write on a busy connection is 13.
//! 12. `rst_sent_by_this_host` — this host reset the connection first (detail: reason).
//! 13. `server_abort_mid_request` — RST received in ESTABLISHED with a request in flight.
//! 14. `peer_fin_outstanding` — peer FIN with a request outstanding.
//! 15. `timeout_with_retransmits` / `timeout_slow_server`.
//! 16. `protocol_error` — loadgen `protocol_error`.
//! 17. `unattributed` — everything else, counted and shown, never dropped.
use std::{collections::BTreeMap, net::SocketAddr};

use events::model::{Class, Phase, RequestEvent};
use serde::{Deserialize, Serialize};

use crate::{
    join::LoadgenConn,
    table::{ConnRecord, ListenerRecord},
};

mod answer;
mod connect;
mod encrypted;
mod h2;
mod injected;
mod plaintext;
mod tcp;
mod tls;
mod verdict;
mod wire;
mod words;

#[cfg(test)]
pub(crate) mod fixture;

pub use answer::request_unanswered;
pub use connect::{
    connect_refused, generator_overload, listen_overflow_or_syn_drop, local_fd_exhaustion,
    local_port_exhaustion,
};
pub use encrypted::encrypted_after_fin;
pub use h2::{h2_goaway, h2_rst_stream, http_status, protocol_error};
pub use injected::rst_possibly_injected;
pub use plaintext::http_answer_cut;
pub use tcp::{
    idle_race, peer_fin_outstanding, rst_sent_by_this_host, server_abort_mid_request, timeout,
};
pub use tls::{tls_cert_mismatch, tls_other};
pub use verdict::{Confidence, Evidence, Level, Source, Verdict};
pub use wire::{connect_unreachable, h2_from_wire, tls_from_wire};
pub use words::{conn_label, kernel_summary, ms, reset_reason_words, reset_words};

/// Host-level evidence over the run (counter deltas from /proc/net/netstat and
/// /proc/net/snmp, the ephemeral port range, port use per destination). Filled by the
/// caller; `None` where unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEvidence {
    /// `TcpExt:ListenOverflows` delta: SYNs or ACKs dropped because an accept queue was full.
    pub listen_overflows: Option<u64>,
    /// `TcpExt:ListenDrops` delta.
    pub listen_drops: Option<u64>,
    /// `TcpExt:TCPSynRetrans` delta.
    pub syn_retrans: Option<u64>,
    /// `TcpExt:TCPTimeouts` delta.
    pub tcp_timeouts: Option<u64>,
    /// `net.ipv4.ip_local_port_range`.
    pub port_range: Option<(u16, u16)>,
    /// Destinations using the most local ports, most first.
    pub busiest_destinations: Vec<DestPorts>,
}

/// Local ports in use towards one destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestPorts {
    pub dest: SocketAddr,
    /// Local ports bound to connections to `dest` (established, TIME_WAIT, ...).
    pub local_ports_in_use: u64,
    /// Of which in TIME_WAIT.
    pub time_wait: u64,
}

/// Thresholds of the rules.
#[derive(Clone, Debug)]
pub struct RuleOptions {
    /// A connection idle at least this long before a request is "idle" for `idle_race`.
    pub idle_threshold_ns: u64,
    /// How far apart loadgen's and the kernel's wall-clock readings of one instant can
    /// be: both map CLOCK_MONOTONIC to wall time through an offset read once at their
    /// start, so they differ by the microseconds between two clock reads (more only if
    /// the wall clock was stepped between the two starts). A close counts as before the
    /// request's write only when it precedes it by more than this.
    pub clock_skew_ns: u64,
    /// Every RST this host's sockets sent was recorded: the eBPF backend (tcp_send_reset
    /// fires for full, time-wait and socketless resets alike), no `--pid` filter (it
    /// leaves server sockets out), no event lost. Only then is an RST that no socket of
    /// this host sent evidence of a forged one. Set by the analysis from the run.
    pub local_resets_recorded: bool,
}

impl Default for RuleOptions {
    fn default() -> Self {
        Self {
            idle_threshold_ns: 1_000_000_000,
            clock_skew_ns: 200_000,
            local_resets_recorded: false,
        }
    }
}

/// Everything known about one failure.
#[derive(Clone, Copy, Debug)]
pub struct Case<'a> {
    /// The failed loadgen request; `None` for a kernel-only failure.
    pub request: Option<&'a RequestEvent>,
    /// The request's intended send time (0 without a request).
    pub intended_unix_ns: u64,
    /// loadgen's facts about the connection (TLS, HTTP/2 frames), when notable.
    pub conn: Option<&'a LoadgenConn>,
    /// The kernel's record of the connection.
    pub kernel: Option<&'a ConnRecord>,
    /// This host's socket at the other end (loopback).
    pub peer: Option<&'a ConnRecord>,
    /// This host's listener the connection went to (loopback, or a local server).
    pub listener: Option<&'a ListenerRecord>,
    /// The kernel side was recording (some event was seen): a connection without a
    /// record then had nothing abnormal (clean connections are counted, not kept).
    pub kernel_seen: bool,
    /// Packet drops over the run by reason, host-wide as recorded.
    pub drop_reasons: &'a BTreeMap<String, u64>,
    pub host: &'a HostEvidence,
    pub opts: &'a RuleOptions,
    /// For a kernel-only connection whose plaintext showed its HTTP exchanges: the
    /// status of the responses judged (those with it), or `None` for the requests its
    /// transport failed.
    pub status: Option<u16>,
}

impl Case<'_> {
    /// loadgen's class for the failure.
    pub fn class(&self) -> Option<Class> {
        self.request.and_then(|r| r.class)
    }

    pub fn phase(&self) -> Option<Phase> {
        self.request.and_then(|r| r.phase)
    }

    /// True when the rule may judge from kernel facts alone: no request (a foreign
    /// client), or a request loadgen could not classify.
    pub fn kernel_decides(&self) -> bool {
        match self.request {
            None => true,
            Some(r) => matches!(r.class, None | Some(Class::Other)),
        }
    }

    /// When the request was actually written (intended time plus schedule lag).
    pub fn sent_unix_ns(&self) -> u64 {
        self.intended_unix_ns + self.request.map_or(0, |r| r.lag)
    }

    /// The request as loadgen recorded it, as evidence.
    pub fn request_evidence(&self) -> Option<Evidence> {
        let r = self.request?;
        let class = r.class.map_or("unclassified", Class::as_str);
        let phase = r.phase.map_or(String::new(), |p| format!(" in {p}"));
        let error = if r.error.is_empty() {
            String::new()
        } else {
            format!(": {}", r.error)
        };
        Some(Evidence::loadgen(
            self.intended_unix_ns,
            format!(
                "request #{} {} {} failed{phase} as {class}{error}",
                r.seq, r.method, r.url
            ),
        ))
    }
}

/// A rule: a failure in, a verdict out when the rule explains it.
pub type Rule = fn(&Case<'_>) -> Option<Verdict>;

/// The rules in precedence order (see the module documentation).
pub const RULES: &[(&str, Rule)] = &[
    ("generator_overload", generator_overload),
    ("local_port_exhaustion", local_port_exhaustion),
    ("local_fd_exhaustion", local_fd_exhaustion),
    ("connect_refused", connect_refused),
    ("connect_unreachable", connect_unreachable),
    ("listen_overflow_or_syn_drop", listen_overflow_or_syn_drop),
    ("tls_cert_mismatch", tls_cert_mismatch),
    ("tls_other", tls_other),
    ("tls_from_wire", tls_from_wire),
    ("h2_goaway", h2_goaway),
    ("h2_rst_stream", h2_rst_stream),
    ("h2_from_wire", h2_from_wire),
    ("http_status", http_status),
    ("rst_possibly_injected", rst_possibly_injected),
    ("http_answer_cut", http_answer_cut),
    ("request_unanswered", request_unanswered),
    ("encrypted_after_fin", encrypted_after_fin),
    ("idle_race", idle_race),
    ("rst_sent_by_this_host", rst_sent_by_this_host),
    ("server_abort_mid_request", server_abort_mid_request),
    ("peer_fin_outstanding", peer_fin_outstanding),
    ("timeout", timeout),
    ("protocol_error", protocol_error),
];

/// The index of the rule named `name` in [`RULES`] (the end of the list when there is
/// none).
pub fn precedence_of(name: &str) -> usize {
    RULES
        .iter()
        .position(|(n, _)| *n == name)
        .unwrap_or(RULES.len())
}

/// The cause id of failures no rule explains.
pub const UNATTRIBUTED: &str = "unattributed";

/// Attributes a failure: the first matching rule's verdict and its index in [`RULES`],
/// or the `unattributed` verdict (index `RULES.len()`) with whatever evidence exists.
pub fn attribute(case: &Case<'_>) -> (usize, Verdict) {
    for (i, (_, rule)) in RULES.iter().enumerate() {
        if let Some(v) = rule(case) {
            return (i, v);
        }
    }
    (RULES.len(), unattributed(case))
}

fn unattributed(case: &Case<'_>) -> Verdict {
    let mut evidence: Vec<Evidence> = case.request_evidence().into_iter().collect();
    if let Some(k) = case.kernel {
        evidence.extend(kernel_summary(k));
    }
    Verdict {
        cause: UNATTRIBUTED,
        detail: None,
        title: "no rule explains these failures".into(),
        confidence: Confidence::new(Level::Low, "no rule matched; see the evidence"),
        evidence,
        hint: "look at the examples' evidence and timelines; report the pattern so a rule can be added".into(),
    }
}

#[cfg(test)]
mod tests {
    use events::model::{Class, Phase};

    use super::{fixture::*, *};

    #[test]
    fn rule_names_are_unique_snake_case() {
        let mut names: Vec<&str> = RULES.iter().map(|(n, _)| *n).collect();
        assert!(names.iter().all(|n| {
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        }));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RULES.len());
    }

    #[test]
    fn unexplained_failures_are_unattributed_with_what_is_known() {
        let (i, v) = attribute(&Fx::loadgen(Class::Other, Phase::Body).case());
        assert_eq!((i, v.cause), (RULES.len(), UNATTRIBUTED));
        assert!(
            v.evidence[0].what.contains("failed in body as other"),
            "{:?}",
            v.evidence
        );
        let mut stray = vec![
            state(
                0,
                1,
                crate::names::TcpState::Close,
                crate::names::TcpState::SynSent,
            ),
            state(
                0,
                1,
                crate::names::TcpState::SynSent,
                crate::names::TcpState::Established,
            ),
        ];
        stray.push(error_report(5, libc::EHOSTUNREACH));
        let (_, v) = attribute(&Fx::kernel(&stray).case());
        assert_eq!(v.cause, UNATTRIBUTED);
        assert!(
            v.evidence
                .iter()
                .any(|e| e.what.contains("errno 113 (EHOSTUNREACH)")),
            "{:?}",
            v.evidence
        );
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let mut fx =
            Fx::loadgen(Class::TcpReset, Phase::Write).with_kernel(&server_rst(1, 7, 0, 50));
        let (abort, _) = attribute(&fx.case());
        assert_eq!(RULES[abort].0, "server_abort_mid_request");
        let r = fx.request.as_mut().unwrap();
        r.conn.conn_requests = 2;
        r.conn.idle_us = 5_000_000;
        let (idle, v) = attribute(&fx.case());
        assert_eq!(v.cause, "idle_race");
        assert!(idle < abort, "idle_race refines server_abort_mid_request");
        assert_eq!(
            attribute(&Fx::kernel(&refused(1, 7, 0)).case()).1.cause,
            "connect_refused"
        );
        // loadgen's class decides over kernel facts that would match another rule.
        let fx = Fx::loadgen(Class::HttpStatus, Phase::AwaitHeaders).with_kernel(&refused(1, 7, 0));
        assert_eq!(attribute(&fx.case()).1.cause, "http_status");
    }
}
