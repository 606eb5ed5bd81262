//! Rules for TLS handshake failures. TLS 1.3 hides certificates and alerts from the wire,
//! so loadgen (through rustls) is the source of truth here; the kernel adds how the
//! connection ended.
use events::model::{CertFacts, Class, Phase, TlsFacts};

use super::{Case, Confidence, Evidence, Level, Verdict, kernel_summary};

/// The certificate as evidence text.
fn cert_words(c: &CertFacts) -> String {
    let fp: String = c.sha256.chars().take(16).collect();
    format!(
        "certificate presented: subject {:?}, names [{}], issuer {:?}, valid {} to {}, sha256 {fp}…",
        c.subject,
        c.names.join(", "),
        c.issuer,
        c.not_before,
        c.not_after
    )
}

fn tls_evidence(case: &Case<'_>, tls: Option<&TlsFacts>) -> Vec<Evidence> {
    let mut out: Vec<Evidence> = case.request_evidence().into_iter().collect();
    let ts = case
        .conn
        .map_or(case.intended_unix_ns, |c| c.opened_unix_ns);
    if let Some(t) = tls {
        if let Some(sni) = &t.sni {
            out.push(Evidence::loadgen(ts, format!("SNI sent: {sni}")));
        }
        if let Some(c) = &t.cert {
            out.push(Evidence::loadgen(ts, cert_words(c)));
        }
        if let Some(e) = &t.error {
            out.push(Evidence::loadgen(ts, format!("handshake error: {e}")));
        }
    }
    out
}

/// loadgen `tls_cert_name_mismatch`: the certificate is not valid for the SNI sent (a
/// proxy serving its default certificate).
pub fn tls_cert_mismatch(case: &Case<'_>) -> Option<Verdict> {
    if case.class() != Some(Class::TlsCertNameMismatch) {
        return None;
    }
    let tls = case.conn.and_then(|c| c.tls.as_ref());
    let cert = tls.and_then(|t| t.cert.as_ref());
    let sni = tls
        .and_then(|t| t.sni.clone())
        .unwrap_or_else(|| "the name requested".into());
    let confidence = if cert.is_some() {
        Confidence::new(
            Level::High,
            "loadgen compared the SNI sent with the names in the certificate presented",
        )
    } else {
        Confidence::new(
            Level::Medium,
            "the TLS verifier rejected the name; the certificate presented was not recorded",
        )
    };
    let names = cert.map_or(String::new(), |c| {
        format!(" (it names {})", c.names.join(", "))
    });
    Some(Verdict {
        cause: "tls_cert_mismatch",
        detail: None,
        title: "TLS certificate not valid for the name requested (SNI)".into(),
        confidence,
        evidence: tls_evidence(case, tls),
        hint: format!(
            "the server presented a certificate not valid for {sni}{names}: usually a reverse proxy's default certificate, served because no router/host rule matched {sni} or its certificate is missing or failed to load"
        ),
    })
}

/// The other TLS failures: untrusted or expired certificate, an alert, the connection
/// closed or reset during the handshake.
pub fn tls_other(case: &Case<'_>) -> Option<Verdict> {
    let (cause, title, hint) = match (case.class()?, case.phase()) {
        (Class::TlsCertUntrusted, _) => (
            "tls_cert_untrusted",
            "TLS certificate from an untrusted issuer",
            "the certificate chains to no CA loadgen trusts: pass the right CA (--cacert), or fix the server's chain (intermediates missing?)",
        ),
        (Class::TlsCertExpired, _) => (
            "tls_cert_expired",
            "TLS certificate expired or not yet valid",
            "renew the certificate (check its not_after), or the clock of the server or of the load host",
        ),
        (Class::TlsAlert, _) => (
            "tls_alert",
            "the server ended the TLS handshake with an alert",
            "the server refused the handshake: check protocol versions, cipher suites, SNI and ALPN it accepts, and whether it requires a client certificate",
        ),
        (Class::TlsHandshakeEof, _) => (
            "tls_handshake_eof",
            "the connection closed during the TLS handshake",
            "the server (or a proxy in front) closed without a TLS answer: is the port really TLS, is the handshake timing out, is the server overloaded?",
        ),
        (Class::TcpReset, Some(Phase::Tls)) => (
            "tls_handshake_reset",
            "the connection was reset during the TLS handshake",
            "the server (or a proxy in front) reset the connection before answering TLS: is the port really TLS, does it reject this SNI?",
        ),
        _ => return None,
    };
    let tls = case.conn.and_then(|c| c.tls.as_ref());
    let mut evidence = tls_evidence(case, tls);
    if let Some(k) = case.kernel {
        evidence.extend(kernel_summary(k));
    }
    let confidence = if tls.is_some() || case.kernel.is_some() {
        Confidence::new(
            Level::High,
            "loadgen's TLS client reported it, with the handshake facts",
        )
    } else {
        Confidence::new(
            Level::Medium,
            "loadgen's TLS client reported it; no handshake facts recorded",
        )
    };
    Some(Verdict {
        cause,
        detail: None,
        title: title.into(),
        confidence,
        evidence,
        hint: hint.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{join::LoadgenConn, rules::fixture::*};

    fn default_cert() -> TlsFacts {
        TlsFacts {
            sni: Some("testbed.faultline.test".into()),
            cert: Some(CertFacts {
                subject: "CN=FAULTLINE TESTBED DEFAULT CERT".into(),
                issuer: "CN=faultline testbed CA".into(),
                names: vec!["FAULTLINE TESTBED DEFAULT CERT".into()],
                sha256: "ab".repeat(32),
                not_before: "2026-01-01T00:00:00Z".into(),
                not_after: "2027-01-01T00:00:00Z".into(),
            }),
            error: Some("certificate not valid for name \"testbed.faultline.test\"".into()),
            ..TlsFacts::default()
        }
    }

    #[test]
    fn mismatch_names_sni_presented_names_and_issuer() {
        let mut fx = Fx::loadgen(Class::TlsCertNameMismatch, Phase::Tls);
        fx.conn = Some(LoadgenConn {
            conn_id: 1,
            tls: Some(default_cert()),
            ..LoadgenConn::default()
        });
        let v = tls_cert_mismatch(&fx.case()).unwrap();
        assert_eq!(v.confidence.level, Level::High);
        assert!(
            v.evidence
                .iter()
                .any(|e| e.what == "SNI sent: testbed.faultline.test")
        );
        let cert = v
            .evidence
            .iter()
            .find(|e| e.what.starts_with("certificate presented"))
            .unwrap();
        assert!(
            cert.what.contains("FAULTLINE TESTBED DEFAULT CERT")
                && cert.what.contains("faultline testbed CA"),
            "{}",
            cert.what
        );
        assert!(
            v.hint.contains("testbed.faultline.test") && v.hint.contains("default certificate")
        );
    }

    #[test]
    fn mismatch_without_facts_is_medium_and_other_classes_do_not_match() {
        let fx = Fx::loadgen(Class::TlsCertNameMismatch, Phase::Tls);
        assert_eq!(
            tls_cert_mismatch(&fx.case()).unwrap().confidence.level,
            Level::Medium
        );
        assert!(
            tls_cert_mismatch(&Fx::loadgen(Class::TlsCertUntrusted, Phase::Tls).case()).is_none()
        );
        assert!(tls_cert_mismatch(&Fx::kernel(&server_rst(1, 7, 0, 5)).case()).is_none());
    }

    #[test]
    fn other_tls_failures_have_their_own_ids() {
        for (class, phase, id) in [
            (Class::TlsCertUntrusted, Phase::Tls, "tls_cert_untrusted"),
            (Class::TlsCertExpired, Phase::Tls, "tls_cert_expired"),
            (Class::TlsAlert, Phase::Tls, "tls_alert"),
            (Class::TlsHandshakeEof, Phase::Tls, "tls_handshake_eof"),
            (Class::TcpReset, Phase::Tls, "tls_handshake_reset"),
        ] {
            assert_eq!(
                tls_other(&Fx::loadgen(class, phase).case()).unwrap().cause,
                id
            );
        }
    }

    #[test]
    fn other_tls_does_not_take_resets_after_the_handshake() {
        assert!(tls_other(&Fx::loadgen(Class::TcpReset, Phase::AwaitHeaders).case()).is_none());
        assert!(tls_other(&Fx::loadgen(Class::TlsCertNameMismatch, Phase::Tls).case()).is_none());
        assert!(tls_other(&Fx::kernel(&server_rst(1, 7, 0, 5)).case()).is_none());
    }
}
