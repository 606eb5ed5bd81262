//! Evidence in words: connections, resets, errnos and durations as a ticket quotes them.
use std::net::SocketAddr;

use super::Evidence;
use crate::table::ConnRecord;

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
