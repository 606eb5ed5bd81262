//! Verdicts from a connection's TCP counters (eBPF backend, read from `struct tcp_sock`
//! when the first FIN or RST closed it): the client sent a request the server's TCP
//! acknowledged, and not one byte came back. They serve any client, without its
//! cooperation: curl, Python, Go, browsers.
use super::{Case, Confidence, Evidence, Level, Verdict, conn_label, ms};
use crate::table::{Closer, ConnRecord};

pub(super) const EMPTY_REPLY_HINT: &str = "the server (or a proxy in front of it) closed instead of answering: a deliberate close (nginx `return 444`, haproxy `http-request reject` or `silent-drop`), a worker that crashed or hit a limit before responding; look at its logs and limits at these times";

pub(super) const NO_ANSWER_HINT: &str = "the server accepted the connection but sent nothing back within the client's timeout: a stalled worker, requests queued behind a full pool, a slow upstream (or, with retransmits, loss on the path); compare with the server's timing for these requests";

/// What the client sent, as evidence text. The counters are read as the first FIN
/// leaves or arrives, before any FIN is acknowledged, so `bytes_acked` is the payload
/// plus the SYN's one.
fn sent_words(k: &ConnRecord) -> String {
    let c = k.facts.tcp_at_close.unwrap_or_default();
    format!(
        "{} segments of payload sent, {} bytes of it acknowledged by the server; nothing received",
        c.data_segs_out,
        c.bytes_acked.saturating_sub(1)
    )
}

/// The request went unanswered: the server closed (FIN) without a byte of answer (an
/// "empty reply"), or the client gave up and closed with nothing received. Kernel
/// evidence only, so only where loadgen's class does not already decide.
pub fn request_unanswered(case: &Case<'_>) -> Option<Verdict> {
    if !case.kernel_decides() {
        return None;
    }
    let k = case.kernel?;
    let (closer, _) = k.request_unanswered()?;
    let opened = k.facts.established_unix_ns.unwrap_or(k.first_unix_ns);
    let mut evidence: Vec<Evidence> = case.request_evidence().into_iter().collect();
    match closer {
        Closer::Peer => {
            let t = k.facts.peer_fin_unix_ns?;
            evidence.push(Evidence::kernel(
                t,
                format!(
                    "peer FIN on {} {} after it was established: {}",
                    conn_label(k),
                    ms(t.saturating_sub(opened)),
                    sent_words(k)
                ),
            ));
            Some(Verdict {
                cause: "empty_reply",
                detail: None,
                title: "the server closed the connection without answering (empty reply)".into(),
                confidence: Confidence::new(
                    Level::High,
                    "the kernel's counters show the request sent and not one byte back before the server's FIN",
                ),
                evidence,
                hint: EMPTY_REPLY_HINT.into(),
            })
        }
        Closer::Local | Closer::LocalReset => {
            let t = k
                .facts
                .local_fin_unix_ns
                .or_else(|| k.facts.rst_sent_first.as_ref().map(|r| r.ts_unix_ns))?;
            let waited = t.saturating_sub(opened);
            let lost = k.facts.retransmits;
            evidence.push(Evidence::kernel(
                t,
                format!(
                    "this host closed {} {} after it was established: {}{}",
                    conn_label(k),
                    ms(waited),
                    sent_words(k),
                    if lost > 0 {
                        format!("; {lost} retransmits")
                    } else {
                        String::new()
                    }
                ),
            ));
            Some(Verdict {
                cause: "no_answer_client_gave_up",
                detail: None,
                title: "the client gave up waiting: the server never answered the request".into(),
                confidence: Confidence::new(
                    Level::Medium,
                    format!(
                        "the kernel's counters show the request sent and nothing received when the client closed, {} after connecting; the client's own timeout is not visible",
                        ms(waited)
                    ),
                ),
                evidence,
                hint: NO_ANSWER_HINT.into(),
            })
        }
        Closer::PeerReset => None,
    }
}

#[cfg(test)]
mod tests {
    use events::model::{Class, Phase};

    use super::*;
    use crate::{
        event::{KernelEvent, TcpCounts},
        names::TcpState::{Close, CloseWait, Established, FinWait1, FinWait2, LastAck, SynSent},
        rules::{attribute, fixture::*},
    };

    /// `ev` with the counters of a client that sent one 79-byte request and received
    /// `segs_in` segments of payload.
    fn counted(ev: KernelEvent, segs_in: u32) -> KernelEvent {
        KernelEvent {
            tcp: Some(TcpCounts {
                bytes_received: u64::from(segs_in) * 100,
                // 79 bytes of request and the SYN.
                bytes_acked: 80,
                data_segs_in: segs_in,
                data_segs_out: 1,
                srtt_us: 40,
            }),
            ..ev
        }
    }

    /// The server's FIN at `fin` ms with `segs_in` segments of answer received.
    fn server_closes(fin: u64, segs_in: u32) -> Vec<KernelEvent> {
        vec![
            state(0, 1, Close, SynSent),
            state(0, 1, SynSent, Established),
            counted(state(fin, 1, Established, CloseWait), segs_in),
            state(fin + 1, 1, CloseWait, LastAck),
            state(fin + 2, 1, LastAck, Close),
            destroy(fin + 2, 1, 7),
        ]
    }

    /// The client's FIN at `fin` ms, nothing received.
    fn client_closes(fin: u64) -> Vec<KernelEvent> {
        vec![
            state(0, 1, Close, SynSent),
            state(0, 1, SynSent, Established),
            counted(state(fin, 1, Established, FinWait1), 0),
            state(fin + 1, 1, FinWait1, FinWait2),
            state(fin + 2, 1, FinWait2, Close),
            destroy(fin + 2, 1, 7),
        ]
    }

    #[test]
    fn a_fin_after_the_request_with_nothing_back_is_an_empty_reply() {
        let fx = Fx::kernel(&server_closes(30, 0));
        assert!(fx.kernel.as_ref().unwrap().is_failed());
        let (_, v) = attribute(&fx.case());
        assert_eq!(v.cause, "empty_reply", "{v:?}");
        assert_eq!(v.confidence.level, Level::High);
        assert!(
            v.evidence.iter().any(|e| e.what.contains(
                "30.0 ms after it was established: 1 segments of payload sent, 79 bytes of it acknowledged by the server; nothing received"
            )),
            "{:?}",
            v.evidence
        );
    }

    #[test]
    fn the_client_closing_with_nothing_back_gave_up_waiting() {
        let fx = Fx::kernel(&client_closes(2_000));
        let (_, v) = attribute(&fx.case());
        assert_eq!(v.cause, "no_answer_client_gave_up", "{v:?}");
        assert!(
            v.confidence.why.contains("2000 ms after connecting"),
            "{v:?}"
        );
    }

    /// A TLS dial the client dropped right after its ClientHello (Go's spare dial) is
    /// no failure; the same ClientHello left unanswered until a timeout is one.
    #[test]
    fn a_dial_dropped_at_its_hello_is_no_failure_but_a_wait_given_up_is() {
        let hello = || crate::event::wire_fact::WireFact::TlsClientHello {
            sni: Some("api.example.test".into()),
            alpn: vec!["h2".into()],
        };
        let mut dropped = Fx::kernel(&client_closes(3));
        dropped.kernel.as_mut().unwrap().wire.push(hello());
        let k = dropped.kernel.as_ref().unwrap();
        assert!(k.dial_dropped_at_hello() && !k.is_failed(), "{k:?}");
        assert!(request_unanswered(&dropped.case()).is_none());
        let mut waited = Fx::kernel(&client_closes(2_000));
        waited.kernel.as_mut().unwrap().wire.push(hello());
        assert!(!waited.kernel.as_ref().unwrap().dial_dropped_at_hello());
        let (_, v) = attribute(&waited.case());
        assert_eq!(v.cause, "no_answer_client_gave_up", "{v:?}");
        // Without the ClientHello on record (a cleartext request), a quick close is
        // still a request given up: nothing says it was only a dial.
        let quick = Fx::kernel(&client_closes(3));
        assert!(quick.kernel.as_ref().unwrap().is_failed());
    }

    #[test]
    fn answered_connections_loadgen_verdicts_and_missing_counters_are_left_alone() {
        // An answer came back: a clean close, not a failure.
        let answered = Fx::kernel(&server_closes(30, 1));
        assert!(!answered.kernel.as_ref().unwrap().is_failed());
        assert!(request_unanswered(&answered.case()).is_none());
        // loadgen's class decides for its own requests.
        let fx =
            Fx::loadgen(Class::PeerEof, Phase::AwaitHeaders).with_kernel(&server_closes(30, 0));
        assert!(request_unanswered(&fx.case()).is_none());
        // No counters (the raw backend): nothing claimed, not even a failure.
        let mut events = server_closes(30, 0);
        events[2].tcp = None;
        let bare = Fx::kernel(&events);
        assert!(!bare.kernel.as_ref().unwrap().is_failed());
        assert!(request_unanswered(&bare.case()).is_none());
    }
}
