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
//!     when the server's FIN or RST ended the connection.
//!     Then `empty_reply` / `no_answer_client_gave_up` — from the kernel's TCP counters
//!     (eBPF backend): the client's request was acknowledged and not one byte came back
//!     before the server's FIN, or before the client closed.
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
use serde::{Deserialize, Serialize, Serializer};

use crate::{
    join::LoadgenConn,
    table::{ConnRecord, ListenerRecord},
};

mod answer;
mod connect;
mod h2;
mod injected;
mod plaintext;
mod tcp;
mod tls;
mod wire;

#[cfg(test)]
pub(crate) mod fixture;

pub use answer::request_unanswered;
pub use connect::{
    connect_refused, generator_overload, listen_overflow_or_syn_drop, local_fd_exhaustion,
    local_port_exhaustion,
};
pub use h2::{h2_goaway, h2_rst_stream, http_status, protocol_error};
pub use injected::rst_possibly_injected;
pub use plaintext::http_answer_cut;
pub use tcp::{
    idle_race, peer_fin_outstanding, rst_sent_by_this_host, server_abort_mid_request, timeout,
};
pub use tls::{tls_cert_mismatch, tls_other};
pub use wire::{connect_unreachable, h2_from_wire, tls_from_wire};

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

/// How sure a verdict is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    High,
    Medium,
    Low,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        }
    }
}

/// A confidence level and why, in one line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confidence {
    pub level: Level,
    pub why: String,
}

impl Confidence {
    pub fn new(level: Level, why: impl Into<String>) -> Self {
        Self {
            level,
            why: why.into(),
        }
    }
}

/// Where a piece of evidence comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Kernel,
    Loadgen,
    Host,
    /// The raw backend's capture.
    Wire,
    /// The analyzer's own TLS handshake after the run (`tls_probe`): what the server
    /// presented to it, not necessarily to the client.
    Probe,
}

/// One fact a verdict used. Serialized with a wall-clock `at` when it has a time.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Evidence {
    pub source: Source,
    #[serde(default)]
    pub ts_unix_ns: Option<u64>,
    pub what: String,
}

impl Serialize for Evidence {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            source: Source,
            #[serde(skip_serializing_if = "Option::is_none")]
            ts_unix_ns: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            at: Option<String>,
            what: &'a str,
        }
        View {
            source: self.source,
            ts_unix_ns: self.ts_unix_ns,
            at: self.ts_unix_ns.map(events::time::rfc3339_ns),
            what: &self.what,
        }
        .serialize(s)
    }
}

impl Evidence {
    pub fn kernel(ts_unix_ns: u64, what: impl Into<String>) -> Self {
        Self {
            source: Source::Kernel,
            ts_unix_ns: Some(ts_unix_ns),
            what: what.into(),
        }
    }

    pub fn loadgen(ts_unix_ns: u64, what: impl Into<String>) -> Self {
        Self {
            source: Source::Loadgen,
            ts_unix_ns: (ts_unix_ns != 0).then_some(ts_unix_ns),
            what: what.into(),
        }
    }

    pub fn wire(ts_unix_ns: u64, what: impl Into<String>) -> Self {
        Self {
            source: Source::Wire,
            ts_unix_ns: Some(ts_unix_ns),
            what: what.into(),
        }
    }

    /// The certificate probe's, at its handshake (Unix seconds).
    pub fn probe(unix_s: i64, what: impl Into<String>) -> Self {
        Self {
            source: Source::Probe,
            ts_unix_ns: u64::try_from(unix_s)
                .ok()
                .map(|s| s.saturating_mul(1_000_000_000)),
            what: what.into(),
        }
    }

    pub fn host(what: impl Into<String>) -> Self {
        Self {
            source: Source::Host,
            ts_unix_ns: None,
            what: what.into(),
        }
    }
}

/// A rule's conclusion about one failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Stable snake_case cause id.
    pub cause: &'static str,
    /// Splits a cause in the report (a code, a status, a reason).
    pub detail: Option<String>,
    /// One line, the same for every failure of the cause and detail.
    pub title: String,
    pub confidence: Confidence,
    pub evidence: Vec<Evidence>,
    /// What to look at or change.
    pub hint: String,
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

/// The connection as `local → remote (cookie N)`.
pub fn conn_label(k: &ConnRecord) -> String {
    let addr = |a: Option<SocketAddr>| a.map_or("?".to_owned(), |a| a.to_string());
    let cookie = k
        .sock_cookie
        .map_or(String::new(), |c| format!(" (cookie {c})"));
    format!("{} → {}{cookie}", addr(k.local), addr(k.remote))
}

/// The notable kernel facts of a record, as evidence.
pub fn kernel_summary(k: &ConnRecord) -> Vec<Evidence> {
    let f = &k.facts;
    let mut out = Vec::new();
    if let Some(ts) = f.rst_received_unix_ns {
        let state = f.rst_state.map_or("?", |s| s.as_str());
        out.push(Evidence::kernel(
            ts,
            format!("RST received in {state} on {}", conn_label(k)),
        ));
    }
    if let Some(r) = &f.rst_sent_first {
        out.push(Evidence::kernel(
            r.ts_unix_ns,
            format!("RST sent by this host{}", reset_words(r)),
        ));
    }
    if let (Some(e), Some(ts)) = (f.errno, f.errno_unix_ns) {
        out.push(Evidence::kernel(
            ts,
            format!("errno {e} ({}) delivered to the socket", errno_name(e)),
        ));
    }
    if let Some(ts) = f.peer_fin_unix_ns {
        out.push(Evidence::kernel(ts, "peer FIN: ESTABLISHED→CLOSE_WAIT"));
    }
    if f.retransmits + f.syn_retransmits > 0 {
        out.push(Evidence::kernel(
            f.last_retransmit_unix_ns.unwrap_or(k.last_unix_ns),
            format!(
                "{} retransmits ({} of them SYN)",
                f.retransmits + f.syn_retransmits,
                f.syn_retransmits
            ),
        ));
    }
    for (reason, n) in &f.drops {
        out.push(Evidence::kernel(
            k.last_unix_ns,
            format!("{n} packets dropped ({reason})"),
        ));
    }
    out
}

/// ` in STATE, kernel reason REASON (what it means)` for an RST sent.
pub fn reset_words(r: &crate::table::ResetSent) -> String {
    let state = r
        .state
        .filter(|s| *s != crate::names::TcpState::Unknown)
        .map_or(String::new(), |s| format!(" in {s}"));
    let reason = r
        .reason
        .as_deref()
        .map_or(String::new(), |x| match reset_reason_words(x) {
            Some(words) => format!(", kernel reason {x} ({words})"),
            None => format!(", kernel reason {x}"),
        });
    format!("{state}{reason}")
}

/// What a kernel reset reason (`enum sk_rst_reason`, include/net/rstreason.h) means.
pub fn reset_reason_words(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "NO_SOCKET" => {
            "no socket for the segment: nothing listens on the port, or the connection is gone"
        }
        "TCP_ABORT_ON_CLOSE" => "the application closed the socket with unread data",
        "TCP_ABORT_ON_LINGER" => "the FIN_WAIT2 linger time ran out",
        "TCP_ABORT_ON_DATA" => "data arrived after the application had closed its side",
        "TCP_ABORT_ON_MEMORY" => "out of socket memory or too many orphaned sockets",
        "TCP_STATE" => "the application aborted the connection: SO_LINGER 0 close or disconnect",
        "TCP_TIMEWAIT_SOCKET" => "a segment hit a TIME_WAIT socket",
        "TCP_KEEPALIVE_TIMEOUT" => "keepalive probes went unanswered",
        "TCP_DISCONNECT_WITH_DATA" => "disconnected with data not yet read or sent",
        "INVALID_SYN" => "an unexpected SYN on an existing connection",
        _ => return None,
    })
}

/// The usual name of a socket errno.
pub fn errno_name(e: i32) -> &'static str {
    match e {
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EPIPE => "EPIPE",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EPROTO => "EPROTO",
        _ => "errno",
    }
}

/// Milliseconds for evidence text (`12.5 ms`).
pub fn ms(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
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
