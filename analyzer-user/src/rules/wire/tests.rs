//! The TLS rules on wire facts: a handshake the client gave up with an encrypted alert,
//! judged by the certificate probe's fact when there is one, and without.
use super::*;
use crate::rules::{RULES, Source, attribute, fixture::*};

const SNI: &str = "api.example.test";
/// 2026-01-01T00:00:00Z, the probe's handshake.
const PROBED: i64 = 1_767_225_600;

/// A client connection (connected, then closed) whose ClientHello the server answered
/// (TLS 1.3) and which the client gave up with an encrypted alert.
fn abandoned() -> Fx {
    let mut fx = Fx::kernel(&peer_fin(1, 7, 0, 5));
    let k = fx.kernel.as_mut().unwrap();
    k.wire = vec![
        WireFact::TlsClientHello {
            sni: Some(SNI.into()),
            alpn: vec!["h2".into()],
        },
        WireFact::TlsServerHello {
            version: "TLS 1.3".into(),
            alpn: None,
        },
        WireFact::TlsEncrypted {
            version: "TLS 1.3".into(),
        },
        WireFact::TlsEncryptedAlert {
            from_server: false,
            len_bytes: 19,
            after_handshake: false,
        },
    ];
    fx
}

/// [`abandoned`], but the client completed the handshake before its alert.
fn closed_after_handshake() -> Fx {
    let mut fx = abandoned();
    let k = fx.kernel.as_mut().unwrap();
    for f in &mut k.wire {
        if let WireFact::TlsEncryptedAlert {
            after_handshake, ..
        } = f
        {
            *after_handshake = true;
        }
    }
    fx
}

/// The probe's fact: a certificate for `names`, valid `from` to `until` (Unix seconds).
fn probe_fact(names: &[&str], (from, until): (i64, i64), trusted: Option<bool>) -> WireFact {
    WireFact::TlsCertificate {
        subject: "CN=FAULTLINE TESTBED DEFAULT CERT".into(),
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        issuer: "CN=faultline testbed CA".into(),
        sha256: "ab".repeat(32),
        not_before_unix_s: from,
        not_after_unix_s: until,
        sni: Some(SNI.into()),
        matches_sni: Some(names.contains(&SNI)),
        probed_unix_s: Some(PROBED),
        trusted,
    }
}

const CURRENT: (i64, i64) = (PROBED - 86_400, PROBED + 86_400);

fn probed(fact: WireFact) -> Fx {
    let mut fx = abandoned();
    fx.kernel.as_mut().unwrap().wire.push(fact);
    fx
}

/// The verdict the whole rule list gives, which must be `tls_from_wire`'s.
fn verdict(fx: &Fx) -> Verdict {
    let (i, v) = attribute(&fx.case());
    assert_eq!(RULES[i].0, "tls_from_wire", "{v:?}");
    v
}

fn said(v: &Verdict, source: Source, what: &str) -> bool {
    v.evidence
        .iter()
        .any(|e| e.source == source && e.what.contains(what))
}

#[test]
fn a_handshake_given_up_is_a_failure_kept_and_nothing_else_is() {
    let fx = abandoned();
    let k = fx.kernel.as_ref().unwrap();
    assert!(k.tls_handshake_abandoned() && k.is_failed() && k.is_notable());
    let clean = Fx::kernel(&peer_fin(1, 7, 0, 5)).kernel.unwrap();
    assert!(!clean.is_failed(), "{clean:?}");
    let mut asked = abandoned().kernel.unwrap();
    asked.http = Some(crate::event::wire_fact::HttpTally {
        protocol: "h2".into(),
        requests: 1,
        answered: 1,
        ..Default::default()
    });
    assert!(!asked.tls_handshake_abandoned(), "a request went out");
    let mut unanswered = abandoned().kernel.unwrap();
    unanswered.wire.retain(|f| {
        !matches!(
            f,
            WireFact::TlsServerHello { .. } | WireFact::TlsEncrypted { .. }
        )
    });
    assert!(
        !unanswered.tls_handshake_abandoned(),
        "the server never answered"
    );
}

#[test]
fn without_a_probe_the_client_rejected_the_handshake() {
    let v = verdict(&abandoned());
    assert_eq!(v.cause, "tls_handshake_rejected_by_client");
    assert_eq!(v.confidence.level, Level::Medium);
    assert!(
        said(
            &v,
            Source::Wire,
            "ClientHello SNI api.example.test; the client sent an encrypted alert (19-byte record) right after the server's first flight and closed"
        ),
        "{v:#?}"
    );
    assert!(!v.evidence.iter().any(|e| e.source == Source::Probe));
    assert!(v.hint.contains("--no-probe"), "{}", v.hint);
}

#[test]
fn a_probed_certificate_for_another_name_is_a_mismatch_of_medium_confidence() {
    let v = verdict(&probed(probe_fact(
        &["default.invalid"],
        CURRENT,
        Some(false),
    )));
    assert_eq!(v.cause, "tls_cert_mismatch", "mismatch before untrusted");
    assert_eq!(v.confidence.level, Level::Medium);
    assert!(v.confidence.why.contains("analyzer's own handshake"));
    assert!(said(&v, Source::Wire, "ClientHello SNI api.example.test"));
    let probe = v
        .evidence
        .iter()
        .find(|e| e.source == Source::Probe)
        .expect("the probe's evidence");
    assert!(
        probe.what.starts_with(&format!(
            "the analyzer's own handshake to {SERVER} with SNI {SNI} was presented a certificate for [default.invalid]"
        )) && probe.what.contains("issued by \"CN=faultline testbed CA\"")
            && probe.what.contains("sha256 abababababababab…")
            && probe.what.ends_with(&format!("not valid for {SNI}")),
        "{}",
        probe.what
    );
    assert_eq!(probe.ts_unix_ns, Some(1_767_225_600_000_000_000));
    assert!(
        v.hint.contains("default.invalid") && v.hint.contains(SNI),
        "{}",
        v.hint
    );
}

#[test]
fn expired_and_untrusted_probed_certificates_get_their_causes() {
    for (dates, trusted, cause) in [
        ((PROBED - 100, PROBED - 1), Some(true), "tls_cert_expired"),
        ((PROBED + 1, PROBED + 100), Some(true), "tls_cert_expired"),
        ((PROBED - 100, PROBED - 1), Some(false), "tls_cert_expired"),
        (CURRENT, Some(false), "tls_cert_untrusted"),
    ] {
        let v = verdict(&probed(probe_fact(&[SNI], dates, trusted)));
        assert_eq!(v.cause, cause, "{dates:?} {trusted:?}");
        assert_eq!(v.confidence.level, Level::Medium);
        assert!(said(&v, Source::Probe, "the analyzer's own handshake"));
    }
}

#[test]
fn a_probed_certificate_that_is_fine_leaves_the_refusal_unexplained() {
    let v = verdict(&probed(probe_fact(&[SNI], CURRENT, Some(true))));
    assert_eq!(v.cause, "tls_handshake_rejected_by_client");
    assert!(said(&v, Source::Probe, "trusted by the analyzer"), "{v:#?}");
    assert!(v.hint.contains("trust store or pinning"), "{}", v.hint);
    let v = verdict(&probed(probe_fact(&[SNI], CURRENT, None)));
    assert_eq!(v.cause, "tls_handshake_rejected_by_client");
    assert!(v.hint.contains("trust was not judged"), "{}", v.hint);
}

/// `fx` with a plaintext fatal alert from the client in place of its encrypted one (what
/// OpenSSL sends before its keys change).
fn with_plaintext_alert(mut fx: Fx, code: u8, name: &str) -> Fx {
    let k = fx.kernel.as_mut().unwrap();
    k.wire
        .retain(|f| !matches!(f, WireFact::TlsEncryptedAlert { .. }));
    k.wire.push(WireFact::TlsAlert {
        from_server: false,
        fatal: true,
        code,
        name: name.into(),
    });
    fx
}

/// An alert right after a completed handshake is how a client also closes a pooled
/// connection it never used: alone it is no failure (kept for the probe); with the
/// probe's finding of a certificate no client accepts, it is that finding.
#[test]
fn a_close_right_after_the_handshake_is_no_failure_without_the_probes_finding() {
    let fx = closed_after_handshake();
    let k = fx.kernel.as_ref().unwrap();
    assert!(!k.is_failed() && k.tls_handshake_maybe_abandoned() && k.is_notable());
    let mut untrusted = closed_after_handshake();
    untrusted
        .kernel
        .as_mut()
        .unwrap()
        .wire
        .push(probe_fact(&[SNI], CURRENT, Some(false)));
    assert!(
        !untrusted.kernel.as_ref().unwrap().is_failed(),
        "a name that matches, in date: the client's close proves nothing"
    );
    let mut probed = closed_after_handshake();
    probed.kernel.as_mut().unwrap().wire.push(probe_fact(
        &["default.invalid"],
        CURRENT,
        Some(false),
    ));
    let v = verdict(&probed);
    assert_eq!(
        (v.cause, v.confidence.level),
        ("tls_cert_mismatch", Level::Medium)
    );
    // A request went out: no refusal.
    let mut asked = closed_after_handshake().kernel.unwrap();
    asked.http = Some(crate::event::wire_fact::HttpTally {
        protocol: "http/1.1".into(),
        requests: 1,
        answered: 1,
        ..Default::default()
    });
    assert!(
        !asked.tls_handshake_abandoned() && !asked.is_failed(),
        "{asked:?}"
    );
}

#[test]
fn a_plaintext_alert_and_a_plaintext_certificate_keep_their_rules() {
    // A fatal plaintext alert from the client with the probe's verdict: the probe's
    // cause, the alert in the evidence.
    let untrusted = probe_fact(&[SNI], CURRENT, Some(false));
    let v = verdict(&with_plaintext_alert(probed(untrusted), 48, "unknown_ca"));
    assert_eq!(
        (v.cause, v.confidence.level),
        ("tls_cert_untrusted", Level::Medium)
    );
    assert!(
        said(
            &v,
            Source::Wire,
            &format!(
                "ClientHello SNI {SNI}; fatal TLS alert unknown_ca (48) sent by the client, after the server's first flight"
            )
        ),
        "{v:#?}"
    );
    // With a certificate the probe finds fine, the alert names itself.
    let fine = probe_fact(&[SNI], CURRENT, Some(true));
    let v = verdict(&with_plaintext_alert(probed(fine), 42, "bad_certificate"));
    assert_eq!(
        (v.cause, v.detail.as_deref()),
        ("tls_alert", Some("bad_certificate"))
    );
    assert_eq!(v.confidence.level, Level::High);
    assert!(said(&v, Source::Probe, "trusted by the analyzer"));
    // A certificate read on the wire (TLS 1.2) is judged as such: high confidence.
    let mut fx = abandoned();
    let mut wire_cert = probe_fact(&["default.invalid"], CURRENT, None);
    if let WireFact::TlsCertificate {
        probed_unix_s,
        trusted,
        ..
    } = &mut wire_cert
    {
        (*probed_unix_s, *trusted) = (None, None);
    }
    fx.kernel.as_mut().unwrap().wire.push(wire_cert);
    let v = verdict(&fx);
    assert_eq!(v.cause, "tls_cert_mismatch");
    assert_eq!(v.confidence.level, Level::High);
}

#[test]
fn a_probe_fact_alone_is_no_failure_and_no_verdict() {
    let mut fx = Fx::kernel(&peer_fin(1, 7, 0, 5));
    fx.kernel
        .as_mut()
        .unwrap()
        .wire
        .push(probe_fact(&["default.invalid"], CURRENT, Some(false)));
    assert!(!fx.kernel.as_ref().unwrap().is_failed());
    assert_eq!(tls_from_wire(&fx.case()), None);
}

/// An HTTP/2 connection with no request on it is no failure (a pooled connection never
/// used), unless the server refused it: curl writing its request into the server's
/// GOAWAY ENHANCE_YOUR_CALM and close fails on the write, so no stream ever shows.
#[test]
fn a_connection_refused_by_goaway_before_any_stream_is_a_failure() {
    let no_request = || {
        let mut fx = Fx::kernel(&peer_fin(1, 7, 0, 5));
        let k = fx.kernel.as_mut().unwrap();
        k.http = Some(crate::event::wire_fact::HttpTally {
            protocol: "h2c".into(),
            ..Default::default()
        });
        fx
    };
    let goaway = |code: &str| {
        let mut fx = no_request();
        fx.kernel.as_mut().unwrap().wire.push(WireFact::H2Goaway {
            from_server: true,
            code: code.into(),
            last_stream_id: 0,
            debug: String::new(),
            streams_in_flight: 0,
            streams_unprocessed: 0,
        });
        fx
    };
    let unused = no_request();
    assert!(!unused.kernel.as_ref().unwrap().is_failed());
    let drained = goaway("NO_ERROR");
    assert!(!drained.kernel.as_ref().unwrap().is_failed());
    let refused = goaway("ENHANCE_YOUR_CALM");
    let k = refused.kernel.as_ref().unwrap();
    assert!(k.complete_http().is_none() && k.is_failed(), "{k:?}");
    let (i, v) = attribute(&refused.case());
    assert_eq!(
        (RULES[i].0, v.cause),
        ("h2_from_wire", "h2_goaway_enhance_your_calm"),
        "{v:?}"
    );
}
