//! Where TLS hides what would decide: the kernel alone sees the server's FIN and then an
//! RST answering bytes the client sent after it, but those bytes are encrypted and no
//! plaintext was read. They may be a request (the server closed under it) or only the
//! client's own close (a TLS close_notify, an HTTP/2 GOAWAY), which a server's kernel
//! also answers with an RST. Neither `idle_race` nor `peer_fin_outstanding` can be
//! claimed: the case is left undecided, saying what would tell.
use super::{Case, Confidence, Evidence, Level, UNATTRIBUTED, Verdict, conn_label, tcp};
use crate::event::wire_fact::WireFact;

pub fn encrypted_after_fin(case: &Case<'_>) -> Option<Verdict> {
    if !case.kernel_decides() {
        return None;
    }
    let (k, fin, rst) = tcp::fin_then_rst(case.kernel)?;
    let tls = k
        .wire
        .iter()
        .any(|w| matches!(w, WireFact::TlsClientHello { .. }));
    if !tls || k.http.is_some() {
        return None;
    }
    Some(Verdict {
        cause: UNATTRIBUTED,
        detail: None,
        title: "the server closed; what the client sent after its FIN is encrypted and unread".into(),
        confidence: Confidence::new(
            Level::Low,
            "the bytes the server's RST answered may be a request or only the client's own close (a TLS close_notify): without the plaintext neither an idle race nor a request cut short can be told",
        ),
        evidence: vec![
            Evidence::kernel(
                fin,
                format!("peer FIN (ESTABLISHED→CLOSE_WAIT) on {}", conn_label(k)),
            ),
            Evidence::kernel(
                rst,
                "RST received in CLOSE_WAIT: the client sent TLS records after the FIN",
            ),
        ],
        hint: "to read the plaintext: the eBPF backend's TLS probes (OpenSSL 3 is found by itself; name Go clients with `--tls-exe`), or `--backend raw` with the client's key log (`--keylog`)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::wire_fact::HttpTally,
        names::TcpState::{Close, CloseWait, Established, SynSent},
        rules::{RULES, attribute, fixture::*},
    };

    /// Connected at 0, the server's FIN at `fin` ms, an RST in CLOSE_WAIT at `rst` ms.
    fn fin_rst(fin: u64, rst: u64) -> Fx {
        Fx::kernel(&[
            state(0, 1, Close, SynSent),
            state(0, 1, SynSent, Established),
            state(fin, 1, Established, CloseWait),
            rst_in(rst, 1, 7),
            state(rst, 1, CloseWait, Close),
            destroy(rst + 1, 1, 7),
        ])
    }

    fn with_hello(mut fx: Fx) -> Fx {
        fx.kernel
            .as_mut()
            .unwrap()
            .wire
            .push(WireFact::TlsClientHello {
                sni: Some("api.example.test".into()),
                alpn: vec!["h2".into()],
            });
        fx
    }

    #[test]
    fn an_rst_after_the_fin_on_tls_without_plaintext_is_undecided() {
        for (fin, rst) in [(20, 30), (9_000, 9_500)] {
            let fx = with_hello(fin_rst(fin, rst));
            let (i, v) = attribute(&fx.case());
            assert_eq!(
                (RULES[i].0, v.cause),
                ("encrypted_after_fin", UNATTRIBUTED),
                "{v:?}"
            );
            assert!(v.hint.contains("--keylog"), "{}", v.hint);
        }
        // Cleartext: the kernel's reading stands (idle race or a request cut short).
        let (_, v) = attribute(&fin_rst(20, 30).case());
        assert_eq!(v.cause, "peer_fin_outstanding", "{v:?}");
        // With the plaintext read, the tally's rules decide, not this one.
        let mut read = with_hello(fin_rst(20, 30));
        read.kernel.as_mut().unwrap().http = Some(HttpTally {
            protocol: "h2".into(),
            ..HttpTally::default()
        });
        assert!(encrypted_after_fin(&read.case()).is_none());
    }
}
