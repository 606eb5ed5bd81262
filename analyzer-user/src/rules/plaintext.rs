//! Rules from the HTTP exchanges a foreign client's plaintext showed (the raw capture
//! on cleartext, or the eBPF backend's syscall capture): requests the connection's end
//! left without their answer, told apart by who ended it.
use super::{
    Case, Confidence, Evidence, Level, Verdict,
    answer::{EMPTY_REPLY_HINT, NO_ANSWER_HINT},
    conn_label,
    tcp::PEER_FIN_HINT,
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
    if (t.cut_mid_answer == 0 && t.unanswered == 0) || k.request_unanswered().is_some() {
        return None;
    }
    let f = &k.facts;
    let what = outstanding(t).replace("{conn}", &conn_label(k));
    let nothing_back = t.answered == 0 && t.cut_mid_answer == 0;
    let (cause, title, ts, end) = match (f.closed_first?, nothing_back) {
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
            f.local_fin_unix_ns
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
