//! Rules from the HTTP exchanges a foreign client's plaintext showed (the raw capture
//! on cleartext, or the eBPF backend's syscall capture): requests the connection's end
//! left without their answer, told apart by who ended it.
use super::{
    Case, Confidence, Evidence, Level, Verdict,
    answer::{EMPTY_REPLY_HINT, NO_ANSWER_HINT},
    conn_label, ms,
    tcp::{IDLE_RACE_HINT, PEER_FIN_HINT},
};
use crate::{
    event::wire_fact::HttpTally,
    table::{Closer, ConnRecord},
};

/// What the tally says was left undone, in words.
fn outstanding(t: &HttpTally) -> String {
    let mut parts = Vec::new();
    if t.cut_mid_answer > 0 {
        parts.push(format!(
            "{} answer{} cut before the body its framing announced was complete",
            t.cut_mid_answer,
            if t.cut_mid_answer == 1 { "" } else { "s" }
        ));
    }
    if t.unanswered > 0 {
        parts.push(format!(
            "{} request{} without a byte of answer",
            t.unanswered,
            if t.unanswered == 1 { "" } else { "s" }
        ));
    }
    if t.client_cancelled > 0 {
        parts.push(format!(
            "{} cancelled by the client before its answer ended",
            t.client_cancelled
        ));
    }
    format!(
        "of {} {} requests on {{conn}}, {} answered; {}",
        t.requests,
        t.protocol,
        t.answered,
        parts.join(", ")
    )
}

/// The server ended a connection while the client's plaintext shows requests left
/// unanswered or answers cut short: its FIN (`peer_fin_outstanding`) or its RST
/// (`server_abort_mid_request`) came first. When not one byte of answer came back at all
/// it is `empty_reply` (the server's FIN) or `no_answer_client_gave_up` (this host closed
/// first); where the kernel's TCP counters say so too, `request_unanswered` judges those
/// with the counters' evidence. When this host closed with some answers begun, the
/// client gave up mid-answer: other rules judge that.
pub fn http_answer_cut(case: &Case<'_>) -> Option<Verdict> {
    if !case.kernel_decides() || case.status.is_some() {
        return None;
    }
    let k: &ConnRecord = case.kernel?;
    let t = k.complete_http()?;
    let left = t.cut_mid_answer + t.unanswered + t.client_cancelled;
    if left == 0 || k.request_unanswered().is_some() {
        return None;
    }
    let f = &k.facts;
    let skew = case.opts.clock_skew_ns;
    // The last request went out after the server's FIN, by the kernel's one clock:
    // written into a connection the server had already closed.
    if let (Some(fin), Some(sent)) = (f.peer_fin_unix_ns, t.last_request_unix_ns)
        && t.unanswered > 0
        && t.answered > 0
        && sent > fin + skew
    {
        return Some(idle_race(k, t, fin, sent));
    }
    let what = outstanding(t).replace("{conn}", &conn_label(k));
    let nothing_back = t.answered == 0 && t.cut_mid_answer == 0;
    // A TLS client that sent a close_notify or an alert before the server closed was
    // ending the connection itself, whoever's FIN came first.
    let closer = match (f.closed_first?, t.client_tls_close_unix_ns) {
        (Closer::Peer, Some(tc)) if f.peer_fin_unix_ns.is_some_and(|fin| tc < fin) => Closer::Local,
        (c, _) => c,
    };
    let (cause, title, ts, end) = match (closer, nothing_back) {
        _ if t.client_cancelled > 0 && t.unanswered == 0 && t.cut_mid_answer == 0 => (
            "no_answer_client_gave_up",
            "the client gave up waiting: it cancelled requests the server had not answered",
            k.last_unix_ns,
            "the client reset those streams (RST_STREAM), as clients do at their timeout",
        ),
        (Closer::Peer, true) => (
            "empty_reply",
            "the server closed the connection without answering (empty reply)",
            f.peer_fin_unix_ns?,
            "then the server's FIN, with not one byte of answer",
        ),
        (Closer::Peer, false) => (
            "peer_fin_outstanding",
            "the server closed the connection (FIN) with a request outstanding",
            f.peer_fin_unix_ns?,
            "then the server's FIN (ESTABLISHED→CLOSE_WAIT)",
        ),
        (Closer::PeerReset, _) => (
            "server_abort_mid_request",
            "the server reset the connection (RST) with a request in flight",
            f.rst_received_unix_ns?,
            "then the server's RST",
        ),
        (Closer::Local | Closer::LocalReset, true) => (
            "no_answer_client_gave_up",
            "the client gave up waiting: the server never answered the request",
            t.client_tls_close_unix_ns
                .or(f.local_fin_unix_ns)
                .or_else(|| f.rst_sent_first.as_ref().map(|r| r.ts_unix_ns))?,
            "then this host closed, with not one byte of answer",
        ),
        (Closer::Local | Closer::LocalReset, false) => return None,
    };
    Some(Verdict {
        cause,
        detail: None,
        title: title.into(),
        confidence: Confidence::new(
            if cause == "no_answer_client_gave_up" {
                Level::Medium
            } else {
                Level::High
            },
            "the client's own reads and writes show the requests left unanswered when the connection ended",
        ),
        evidence: vec![Evidence::wire(k.last_unix_ns, what), Evidence::kernel(ts, end)],
        hint: match cause {
            "peer_fin_outstanding" => PEER_FIN_HINT.into(),
            "empty_reply" => EMPTY_REPLY_HINT.into(),
            "no_answer_client_gave_up" => NO_ANSWER_HINT.into(),
            _ => "the server (or a proxy) aborted the connection mid-request: see its logs for a crash, an upstream failure or a limit that resets connections".into(),
        },
    })
}

/// The client's last request was written `sent - fin` after the server's FIN arrived.
fn idle_race(k: &ConnRecord, t: &HttpTally, fin: u64, sent: u64) -> Verdict {
    let answered_before = t.answered;
    Verdict {
        cause: "idle_race",
        detail: None,
        title: "idle race: request sent on a keep-alive connection the server was closing".into(),
        confidence: Confidence::new(
            Level::High,
            "the client wrote its request after the server's FIN had arrived (one clock: the kernel's)",
        ),
        evidence: vec![
            Evidence::kernel(
                fin,
                format!(
                    "the server's FIN on {} after {answered_before} answered request(s)",
                    conn_label(k)
                ),
            ),
            Evidence::wire(
                sent,
                format!(
                    "the client wrote its next request {} later, into the closed connection",
                    ms(sent - fin)
                ),
            ),
        ],
        hint: IDLE_RACE_HINT.into(),
    }
}
