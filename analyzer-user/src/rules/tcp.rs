//! Rules for established connections that ended under a request: resets either way,
//! FINs, the idle race, timeouts with and without retransmits.
use events::model::{Class, Phase};

use super::{
    Case, Confidence, Evidence, Level, Verdict, conn_label, ms, reset_reason_words, reset_words,
};
use crate::{
    names::TcpState,
    table::{ConnRecord, Role},
};

/// The request was in flight in this phase (written, or being written).
fn in_flight(phase: Option<Phase>) -> bool {
    matches!(
        phase,
        Some(Phase::Write | Phase::AwaitHeaders | Phase::Body)
    )
}

/// `"12.5 ms after"` / `"3.0 ms before"`, `t` relative to `reference`.
fn relative(t: u64, reference: u64, what: &str) -> String {
    if t >= reference {
        format!("{} after {what}", ms(t - reference))
    } else {
        format!("{} before {what}", ms(reference - t))
    }
}

/// The peer's FIN, then an RST received in CLOSE_WAIT: data was sent after the peer
/// closed (a client socket's record, its FIN and RST times).
pub(super) fn fin_then_rst(k: Option<&ConnRecord>) -> Option<(&ConnRecord, u64, u64)> {
    let k = k.filter(|k| k.role != Role::Server)?;
    let f = &k.facts;
    if f.rst_state != Some(TcpState::CloseWait) {
        return None;
    }
    Some((k, f.peer_fin_unix_ns?, f.rst_received_unix_ns?))
}

/// The request was sent into a connection the server was closing. loadgen: `tcp_reset`
/// / `peer_eof` in write or await_headers on a reused connection, where the server's FIN
/// or RST provably came before the write (earlier than the write by more than the clock
/// skew, or the kernel's RST in CLOSE_WAIT answering data sent after a FIN that came
/// while the connection was idle), or where the connection sat idle past the threshold.
/// A close that came after the write on a busy connection is not a race: the server
/// reacted to the request (`server_abort_mid_request`, `peer_fin_outstanding`). Kernel
/// alone: the peer's FIN, then an RST in CLOSE_WAIT (data was sent after the server
/// closed).
pub fn idle_race(case: &Case<'_>) -> Option<Verdict> {
    let opts = case.opts;
    let k = case.kernel;
    let mut evidence: Vec<Evidence> = case.request_evidence().into_iter().collect();
    let confidence = match case.request {
        Some(r)
            if matches!(r.class, Some(Class::TcpReset | Class::PeerEof))
                && matches!(r.phase, Some(Phase::Write | Phase::AwaitHeaders))
                && r.conn.conn_requests >= 1 =>
        {
            let sent = case.sent_unix_ns();
            let idle_ns = r.conn.idle_us.saturating_mul(1000);
            let idle_start = sent.saturating_sub(idle_ns);
            let closed = k.and_then(|k| {
                k.facts
                    .peer_fin_unix_ns
                    .map(|t| (t, "peer FIN"))
                    .or(k.facts.rst_received_unix_ns.map(|t| (t, "RST")))
            });
            let raced = race_proof(case.kernel, closed, idle_start, sent, opts.clock_skew_ns);
            if raced.is_none() && idle_ns < opts.idle_threshold_ns {
                return None;
            }
            evidence.push(Evidence::loadgen(
                case.intended_unix_ns,
                format!(
                    "the connection sat idle {} before the request; {} requests completed on it",
                    ms(idle_ns),
                    r.conn.conn_requests
                ),
            ));
            if let (Some((t, what)), Some(k)) = (closed, k) {
                evidence.push(Evidence::kernel(
                    t,
                    format!(
                        "{what} received on {}, {}",
                        conn_label(k),
                        relative(t, sent, "the request was written")
                    ),
                ));
            }
            match raced {
                Some(why) => Confidence::new(Level::High, why),
                None => Confidence::new(
                    Level::Medium,
                    format!(
                        "the connection had been idle {} (threshold {}); no kernel record of when the server closed it",
                        ms(idle_ns),
                        ms(opts.idle_threshold_ns)
                    ),
                ),
            }
        }
        _ if case.kernel_decides() => {
            let (k, fin, rst) = fin_then_rst(k)?;
            let lived = fin.saturating_sub(k.facts.established_unix_ns.unwrap_or(k.first_unix_ns));
            // A connection younger than the threshold cannot have sat idle that long.
            if lived < opts.idle_threshold_ns {
                return None;
            }
            evidence.push(Evidence::kernel(
                fin,
                format!(
                    "peer FIN on {} after {} established",
                    conn_label(k),
                    ms(lived)
                ),
            ));
            evidence.push(Evidence::kernel(
                rst,
                format!(
                    "RST received in CLOSE_WAIT {}: data was sent after the server closed",
                    relative(rst, fin, "the FIN")
                ),
            ));
            Confidence::new(
                Level::Medium,
                "a FIN on a long-lived connection, then an RST answering data sent into it; idle time is not visible to the kernel",
            )
        }
        _ => return None,
    };
    Some(Verdict {
        cause: "idle_race",
        detail: None,
        title: "idle race: request sent on a keep-alive connection the server was closing".into(),
        confidence,
        evidence,
        hint: IDLE_RACE_HINT.into(),
    })
}

pub(super) const IDLE_RACE_HINT: &str = "the server's keep-alive idle timeout is shorter than the client's: make the client's idle timeout shorter than the server's (or the server's longer), or retry idempotent requests that fail on reused connections";

/// Why the server's close provably came before the request's write, if it did: the
/// `closed` event (time, what) fell in the idle gap earlier than the write by more than
/// `skew_ns`, or the kernel saw the peer's FIN during the idle gap and then an RST in
/// CLOSE_WAIT, which answers data sent after the FIN (the request: nothing else was in
/// flight on an idle connection). The kernel's order needs no clock.
fn race_proof(
    kernel: Option<&ConnRecord>,
    closed: Option<(u64, &str)>,
    idle_start: u64,
    sent: u64,
    skew_ns: u64,
) -> Option<String> {
    if let Some((_, fin, _)) = fin_then_rst(kernel).filter(|(_, fin, _)| *fin >= idle_start) {
        return Some(format!(
            "the kernel saw the server's FIN while the connection was idle ({}), then an RST in CLOSE_WAIT answering the request written after it",
            relative(fin, sent, "the request was written")
        ));
    }
    let (t, what) = closed?;
    (t >= idle_start && t.saturating_add(skew_ns) <= sent).then(|| {
        format!(
            "the kernel saw the server's {what} arrive {}, while the connection was idle",
            relative(t, sent, "the request was written")
        )
    })
}

/// This host reset the connection first (a client socket's `send_reset`), with the state
/// and the kernel's reason.
pub fn rst_sent_by_this_host(case: &Case<'_>) -> Option<Verdict> {
    if !case.kernel_decides() && case.class() != Some(Class::TcpReset) {
        return None;
    }
    let k = case.kernel.filter(|k| k.role != Role::Server)?;
    let first = k.facts.rst_sent_first.as_ref()?;
    if k.facts
        .rst_received_unix_ns
        .is_some_and(|r| r < first.ts_unix_ns)
    {
        return None;
    }
    let in_time_wait = first.state == Some(TcpState::TimeWait);
    let reason = first
        .reason
        .clone()
        .filter(|r| r != "NOT_SPECIFIED" && !r.starts_with("reason "));
    let detail = match (reason.as_deref(), in_time_wait) {
        (Some("TCP_TIMEWAIT_SOCKET"), _) | (None, true) => "TIME_WAIT".to_owned(),
        (Some(r), _) => r.to_owned(),
        (None, false) => "NOT_SPECIFIED".to_owned(),
    };
    let why = match detail.as_str() {
        "TIME_WAIT" => "a segment hit a TIME_WAIT socket: the 4-tuple was reused too early",
        "NOT_SPECIFIED" => "the kernel gave no reason",
        r => reset_reason_words(r).unwrap_or("the kernel's reset reason"),
    };
    let hint = match detail.as_str() {
        "TIME_WAIT" => {
            "connections are opened and closed too fast on the same ports: reuse connections (keep-alive), or spread over more source ports or addresses"
        }
        "TCP_ABORT_ON_CLOSE" => {
            "the client closed before reading the whole response (a timeout or a cancelled request?): read or drain responses before closing"
        }
        "TCP_STATE" => {
            "the client aborts connections (SO_LINGER 0): close normally unless the abort is intended"
        }
        "TCP_ABORT_ON_LINGER" => {
            "the peer never finished closing: look at the server's close handling; tcp_fin_timeout bounds it"
        }
        "TCP_ABORT_ON_DATA" => {
            "the server kept sending after the client closed: the client gave up early (timeout?) or closed mid-response"
        }
        "TCP_ABORT_ON_MEMORY" => {
            "raise net.ipv4.tcp_mem or tcp_max_orphans, or close fewer connections at once"
        }
        "TCP_KEEPALIVE_TIMEOUT" => {
            "the peer or a middlebox dropped the idle connection silently: shorten idle times or keepalive intervals"
        }
        _ => "see the kernel's reason, the state the socket was in and the timeline",
    };
    let mut evidence: Vec<Evidence> = case.request_evidence().into_iter().collect();
    let mut what = format!(
        "RST sent by this host on {}{}",
        conn_label(k),
        reset_words(first)
    );
    if reason.as_deref().and_then(reset_reason_words).is_none() {
        what.push_str(&format!(": {why}"));
    }
    evidence.push(Evidence::kernel(first.ts_unix_ns, what));
    let level = if reason.is_some() || in_time_wait {
        Level::High
    } else {
        Level::Medium
    };
    Some(Verdict {
        cause: "rst_sent_by_this_host",
        title: format!("RST sent by this host ({detail})"),
        detail: Some(detail),
        confidence: Confidence::new(
            level,
            format!("the kernel recorded this host's RST first: {why}"),
        ),
        evidence,
        hint: hint.into(),
    })
}

/// The peer's RST received in ESTABLISHED while a request was in flight: loadgen
/// `tcp_reset` in write/await_headers/body; for a foreign client, an RST in ESTABLISHED
/// without a FIN before it (whether data was in flight is not visible to the probes).
pub fn server_abort_mid_request(case: &Case<'_>) -> Option<Verdict> {
    let k = case.kernel.filter(|k| k.role != Role::Server);
    let rst = k.and_then(|k| Some((k, k.facts.rst_received_unix_ns?, k.facts.rst_state)));
    let mut evidence: Vec<Evidence> = case.request_evidence().into_iter().collect();
    let confidence = match case.request {
        Some(r) if r.class == Some(Class::TcpReset) && in_flight(r.phase) => match rst {
            Some((_, _, Some(TcpState::Established))) => Confidence::new(
                Level::High,
                "the kernel saw the peer's RST in ESTABLISHED while the request was in flight",
            ),
            Some(_) => Confidence::new(
                Level::Medium,
                "the kernel saw the peer's RST, not in ESTABLISHED",
            ),
            None if k.is_some() => Confidence::new(
                Level::Low,
                "loadgen saw the connection reset, but the kernel recorded no RST received on it",
            ),
            None => Confidence::new(
                Level::Medium,
                "loadgen saw ECONNRESET; no kernel record of the connection",
            ),
        },
        _ if case.kernel_decides() => match rst {
            Some((k, _, Some(TcpState::Established))) if k.facts.peer_fin_unix_ns.is_none() => {
                Confidence::new(
                    Level::Medium,
                    "RST received in ESTABLISHED; whether a request was in flight is not visible to the kernel probes",
                )
            }
            _ => return None,
        },
        _ => return None,
    };
    if let Some((k, t, state)) = rst {
        let state = state.map_or("?", TcpState::as_str);
        let when = if case.request.is_some() {
            format!(
                ", {}",
                relative(t, case.sent_unix_ns(), "the request was written")
            )
        } else {
            String::new()
        };
        evidence.push(Evidence::kernel(
            t,
            format!("RST received in {state} on {}{when}", conn_label(k)),
        ));
    }
    if let Some(r) = case.peer.and_then(|p| p.facts.rst_sent_first.as_ref()) {
        evidence.push(Evidence::kernel(
            r.ts_unix_ns,
            format!("the server's socket sent the RST{}", reset_words(r)),
        ));
    }
    Some(Verdict {
        cause: "server_abort_mid_request",
        detail: None,
        title: "server aborted the connection mid-request (RST in ESTABLISHED)".into(),
        confidence,
        evidence,
        hint: "the server or a proxy in between reset the connection while a request was in flight: look for crashes, restarts, limits (request size, header size, concurrency), SO_LINGER 0 closes and timeouts on the server side at these times".into(),
    })
}

/// The peer's FIN (ESTABLISHED→CLOSE_WAIT) with a request outstanding: loadgen
/// `peer_eof` with the request written or being answered.
pub fn peer_fin_outstanding(case: &Case<'_>) -> Option<Verdict> {
    let Some(r) = case
        .request
        .filter(|r| r.class == Some(Class::PeerEof) && in_flight(r.phase))
    else {
        return peer_fin_then_rst(case);
    };
    let mut evidence: Vec<Evidence> = case.request_evidence().into_iter().collect();
    evidence.push(Evidence::loadgen(
        case.intended_unix_ns,
        format!(
            "{} requests completed on the connection before; idle {} before this one",
            r.conn.conn_requests,
            ms(r.conn.idle_us.saturating_mul(1000))
        ),
    ));
    let fin = case
        .kernel
        .and_then(|k| Some((k, k.facts.peer_fin_unix_ns?)));
    let confidence = if let Some((k, t)) = fin {
        evidence.push(Evidence::kernel(
            t,
            format!(
                "peer FIN (ESTABLISHED→CLOSE_WAIT) on {}, {}",
                conn_label(k),
                relative(t, case.sent_unix_ns(), "the request was written")
            ),
        ));
        Confidence::new(
            Level::High,
            "the kernel saw the peer's FIN while the request was outstanding",
        )
    } else {
        Confidence::new(
            Level::Medium,
            "loadgen read EOF with the request outstanding; no kernel record of the FIN",
        )
    };
    Some(Verdict {
        cause: "peer_fin_outstanding",
        detail: None,
        title: "the server closed the connection (FIN) with a request outstanding".into(),
        confidence,
        evidence,
        hint: PEER_FIN_HINT.into(),
    })
}

/// Kernel alone: the peer's FIN, then an RST answering data sent after it, on a
/// connection too young for an idle race: a request was still going when the server
/// closed.
fn peer_fin_then_rst(case: &Case<'_>) -> Option<Verdict> {
    if !case.kernel_decides() {
        return None;
    }
    let (k, fin, rst) = fin_then_rst(case.kernel)?;
    let mut evidence: Vec<Evidence> = case.request_evidence().into_iter().collect();
    evidence.push(Evidence::kernel(
        fin,
        format!("peer FIN (ESTABLISHED→CLOSE_WAIT) on {}", conn_label(k)),
    ));
    evidence.push(Evidence::kernel(
        rst,
        format!(
            "RST received in CLOSE_WAIT {}: data was still being sent",
            relative(rst, fin, "the FIN")
        ),
    ));
    Some(Verdict {
        cause: "peer_fin_outstanding",
        detail: None,
        title: "the server closed the connection (FIN) with a request outstanding".into(),
        confidence: Confidence::new(
            Level::Medium,
            "the peer's FIN, then an RST answering data sent after it; requests are not visible to the kernel",
        ),
        evidence,
        hint: PEER_FIN_HINT.into(),
    })
}

pub(super) const PEER_FIN_HINT: &str = "the server closed while a request was outstanding: a server or proxy timeout shorter than the response time, a max-requests-per-connection limit without `Connection: close`, or a crash; compare the time to the FIN with the server's timeouts";

fn lost_segments(k: &ConnRecord) -> (u32, u32) {
    (k.facts.retransmits, k.facts.drops.values().sum())
}

/// A deadline passed after the connection was made (loadgen `timeout`): with
/// retransmits or drops on the connection, loss on the path (`timeout_with_retransmits`);
/// without, a slow server (`timeout_slow_server`). Kernel alone: ETIMEDOUT delivered to
/// an established connection after retransmits.
pub fn timeout(case: &Case<'_>) -> Option<Verdict> {
    let mut evidence: Vec<Evidence> = case.request_evidence().into_iter().collect();
    let k = case.kernel.filter(|k| k.role != Role::Server);
    let (lossy, confidence) = match case.class() {
        Some(Class::Timeout) => match k.map(|k| (k, lost_segments(k))) {
            Some((k, (re, dr))) if re + dr > 0 => {
                let t = k.facts.last_retransmit_unix_ns.unwrap_or(k.last_unix_ns);
                evidence.push(Evidence::kernel(
                    t,
                    format!("{re} retransmits and {dr} drops on {}", conn_label(k)),
                ));
                (
                    true,
                    Confidence::new(Level::High, "the kernel retransmitted on this connection"),
                )
            }
            Some((k, _)) => {
                evidence.push(Evidence::kernel(
                    k.last_unix_ns,
                    format!("no retransmits on {}", conn_label(k)),
                ));
                (
                    false,
                    Confidence::new(
                        Level::High,
                        "the kernel saw no retransmits or drops on this connection",
                    ),
                )
            }
            None if case.kernel_seen => (
                false,
                Confidence::new(
                    Level::Medium,
                    "nothing abnormal recorded on this connection by the kernel (no retransmits)",
                ),
            ),
            None => (
                false,
                Confidence::new(Level::Low, "no kernel record: retransmits unknown"),
            ),
        },
        _ if case.kernel_decides() => {
            let k = k.filter(|k| {
                k.facts.errno == Some(libc::ETIMEDOUT) && k.facts.established_unix_ns.is_some()
            })?;
            let (re, dr) = lost_segments(k);
            evidence.push(Evidence::kernel(
                k.facts.errno_unix_ns.unwrap_or(k.last_unix_ns),
                format!(
                    "ETIMEDOUT delivered to {} after {re} retransmits, {dr} drops",
                    conn_label(k)
                ),
            ));
            (
                true,
                Confidence::new(Level::High, "the kernel gave up retransmitting (ETIMEDOUT)"),
            )
        }
        _ => return None,
    };
    if let Some(n) = case.host.tcp_timeouts.filter(|n| *n > 0) {
        evidence.push(Evidence::host(format!("TCPTimeouts +{n} over the run")));
    }
    Some(if lossy {
        Verdict {
            cause: "timeout_with_retransmits",
            detail: None,
            title: "timeout with retransmits: packets lost on the path".into(),
            confidence,
            evidence,
            hint: "segments were lost (or the server stopped reading): look at packet loss, MTU, firewalls and conntrack tables on the path, and the server's receive queue".into(),
        }
    } else {
        Verdict {
            cause: "timeout_slow_server",
            detail: None,
            title: "timeout without retransmits: the server was slow to answer".into(),
            confidence,
            evidence,
            hint: "the network delivered and the server did not answer in time: look at server latency, its upstream calls and queueing; raise the client timeout only if that latency is expected".into(),
        }
    })
}

#[cfg(test)]
#[path = "tcp_tests.rs"]
mod tests;
