//! Rules from the HTTP exchanges a foreign client's plaintext showed (the raw capture
//! on cleartext, or the eBPF backend's syscall capture): requests the connection's end
//! left without their answer, told apart by who ended it.
use super::{
    Case, Confidence, Evidence, Level, UNATTRIBUTED, Verdict,
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
    // And one whose TLS library read the server's end of stream (its close_notify)
    // before closing was answering the server's close.
    let server_ended_first = t
        .server_tls_end_unix_ns
        .is_some_and(|se| t.client_tls_close_unix_ns.is_none_or(|tc| se <= tc));
    let closer = match (f.closed_first?, t.client_tls_close_unix_ns) {
        (Closer::Local, _) if server_ended_first => Closer::Peer,
        (Closer::Peer, Some(tc))
            if !server_ended_first && f.peer_fin_unix_ns.is_some_and(|fin| tc < fin) =>
        {
            Closer::Local
        }
        (c, _) => c,
    };
    // The server closed with requests unanswered after sending bytes the client never
    // read: they may be the answer or the reason (an HTTP/2 GOAWAY, an error status).
    // Undecided, rather than a server close it may not be. (A client that closed first
    // leaves the server's answering close_notify unread: that says nothing.)
    if closer == Closer::Peer
        && t.unanswered > 0
        && let Some(unread) = k.unread_by_client()
    {
        return Some(unread_undecided(k, t, unread, what));
    }
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
            f.peer_fin_unix_ns.or(t.server_tls_end_unix_ns)?,
            if f.peer_fin_unix_ns.is_some() {
                "then the server's FIN (ESTABLISHED→CLOSE_WAIT)"
            } else {
                "then the server ended its TLS stream (the client's TLS library read its close_notify or FIN before the client closed)"
            },
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

/// Requests unanswered, the server's FIN, and bytes of the server's the client never
/// read: no cause can be named from this host's reads (see [`http_answer_cut`]).
fn unread_undecided(k: &ConnRecord, t: &HttpTally, unread: u64, what: String) -> Verdict {
    let f = &k.facts;
    let read = t.bytes_read.unwrap_or(0);
    Verdict {
        cause: UNATTRIBUTED,
        detail: None,
        title: "the server closed with requests unanswered, after bytes the client never read".into(),
        confidence: Confidence::new(
            Level::Low,
            "what the server sent last was never read by the client, so this host never saw it: it may be the answer, or the reason for the close (an HTTP/2 GOAWAY, an error status)",
        ),
        evidence: vec![
            Evidence::wire(k.last_unix_ns, what),
            Evidence::kernel(
                f.peer_fin_unix_ns.unwrap_or(k.last_unix_ns),
                format!(
                    "the server's FIN; {unread} bytes it sent were never read by the client (its reads returned {read} bytes, the kernel received {})",
                    read + unread
                ),
            ),
        ],
        hint: "to read those bytes, run the analyzer with `--backend raw` (it sees them on the wire; for TLS, give it the client's key log with `--keylog`) or capture the server's side".into(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::TcpCounts,
        rules::{attribute, fixture::*},
    };

    /// An h2 client's one request unanswered when the server's FIN came, with
    /// `received` bytes from the server in the kernel and `read` of them read.
    fn closed_unanswered(received: u64, read: u64) -> Fx {
        let mut events = peer_fin(1, 7, 0, 30);
        events[2].tcp = Some(TcpCounts {
            bytes_received: received,
            bytes_acked: 120,
            data_segs_in: 2,
            data_segs_out: 2,
            srtt_us: 40,
        });
        let mut fx = Fx::kernel(&events);
        fx.kernel.as_mut().unwrap().http = Some(HttpTally {
            protocol: "h2c".into(),
            requests: 1,
            unanswered: 1,
            bytes_read: Some(read),
            ..HttpTally::default()
        });
        fx
    }

    /// curl writes its request into the server's GOAWAY and close and never reads the
    /// GOAWAY: what the server sent is unread, so no cause is named, and the report
    /// says why and what would tell.
    #[test]
    fn unread_bytes_before_the_servers_fin_leave_the_cause_undecided() {
        let fx = closed_unanswered(46, 0);
        assert_eq!(fx.kernel.as_ref().unwrap().unread_by_client(), Some(46));
        let (i, v) = attribute(&fx.case());
        assert_eq!(
            (rule_name(i), v.cause),
            ("http_answer_cut", UNATTRIBUTED),
            "{v:?}"
        );
        assert!(
            v.evidence.iter().any(|e| e
                .what
                .contains("46 bytes it sent were never read by the client")),
            "{v:?}"
        );
        assert!(v.hint.contains("--backend raw"), "{}", v.hint);
        // Everything read (the server's SETTINGS, nothing of an answer): the server
        // closed instead of answering.
        let read_all = closed_unanswered(46, 46);
        assert_eq!(read_all.kernel.as_ref().unwrap().unread_by_client(), None);
        let (_, v) = attribute(&read_all.case());
        assert_eq!(v.cause, "empty_reply", "{v:?}");
    }

    /// A TLS client that gave up (its close_notify before the server's FIN) leaves the
    /// server's answering close_notify unread: that is no reason to doubt it gave up.
    #[test]
    fn unread_bytes_after_the_clients_own_close_say_nothing() {
        let mut fx = closed_unanswered(46, 0);
        let t = fx.kernel.as_mut().unwrap().http.as_mut().unwrap();
        t.protocol = "http/1.1".into();
        t.client_tls_close_unix_ns = Some(at(29));
        let (_, v) = attribute(&fx.case());
        assert_eq!(v.cause, "no_answer_client_gave_up", "{v:?}");
    }

    /// curl over TLS, an HTTP/1.1 answer cut: the server's close_notify ends the answer
    /// before its FIN, curl reads it (SSL_read returns 0), sends its own close_notify
    /// and FIN first. The server ended the connection: `peer_fin_outstanding`, not a
    /// client that gave up (nor unattributed).
    #[test]
    fn a_tls_end_read_before_the_clients_close_makes_the_server_the_closer() {
        use crate::names::TcpState::{Close, Established, FinWait1, FinWait2, SynSent, TimeWait};
        let cut = |server_end: Option<u64>| {
            let mut fx = Fx::kernel(&[
                state(0, 1, Close, SynSent),
                state(0, 1, SynSent, Established),
                state(30, 1, Established, FinWait1),
                state(31, 1, FinWait1, FinWait2),
                state(32, 1, FinWait2, TimeWait),
                destroy(32, 1, 7),
            ]);
            fx.kernel.as_mut().unwrap().http = Some(HttpTally {
                protocol: "http/1.1".into(),
                requests: 1,
                cut_mid_answer: 1,
                client_tls_close_unix_ns: Some(at(29)),
                server_tls_end_unix_ns: server_end,
                ..HttpTally::default()
            });
            fx
        };
        let k = cut(Some(at(28)));
        assert_eq!(
            k.kernel.as_ref().unwrap().facts.closed_first,
            Some(Closer::Local)
        );
        let (_, v) = attribute(&k.case());
        assert_eq!(v.cause, "peer_fin_outstanding", "{v:?}");
        // Without the end of stream read, the client closed first, mid-answer: no claim.
        assert!(http_answer_cut(&cut(None).case()).is_none());
    }

    fn rule_name(i: usize) -> &'static str {
        crate::rules::RULES[i].0
    }
}
