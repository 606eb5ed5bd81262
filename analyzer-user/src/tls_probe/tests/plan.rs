//! Candidates and the one-probe-per-(address, SNI) plan, on synthetic records, and once
//! end to end against a real server.
use clap::Parser;

use super::*;

fn client(id: u64, server: SocketAddr, sni: &str) -> ConnRecord {
    let local: SocketAddr = format!("127.0.0.1:{}", 40_000 + id).parse().unwrap();
    let mut rec = ConnRecord::synthetic(id, local, server, Role::Client);
    rec.wire = vec![
        WireFact::TlsClientHello {
            sni: Some(sni.into()),
            alpn: alpn(),
        },
        WireFact::TlsServerHello {
            version: "TLS 1.3".into(),
            alpn: Some("h2".into()),
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
    rec.facts.closed_first = Some(Closer::Local);
    rec
}

/// `rec` without its encrypted alert: the client did not give up.
fn without_alert(mut rec: ConnRecord) -> ConnRecord {
    rec.wire
        .retain(|f| !matches!(f, WireFact::TlsEncryptedAlert { .. }));
    rec
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn a_client_that_gives_up_with_an_encrypted_alert_is_a_candidate() {
    let rec = client(1, addr(443), SNI);
    assert!(rec.tls_handshake_abandoned());
    let c = candidate(&rec).unwrap();
    assert_eq!(c.reason, ProbeReason::ClientEncryptedAlert);
    assert_eq!((c.addr, c.sni.as_deref()), (addr(443), Some(SNI)));
    assert_eq!(c.alpn, alpn());

    // However the connection ended: the alert says the client gave up.
    let mut reset = client(2, addr(443), SNI);
    reset.facts.closed_first = Some(Closer::PeerReset);
    assert!(candidate(&reset).is_some());

    // The handshake completed, then the alert and the client closing: curl's way.
    let mut closed = client(3, addr(443), SNI);
    for f in &mut closed.wire {
        if let WireFact::TlsEncryptedAlert {
            after_handshake, ..
        } = f
        {
            *after_handshake = true;
        }
    }
    assert_eq!(
        candidate(&closed).unwrap().reason,
        ProbeReason::ClientClosedAfterHandshake
    );
}

#[test]
fn what_is_not_a_candidate() {
    let closed = without_alert(client(1, addr(443), SNI));
    assert_eq!(candidate(&closed), None, "closed without an alert");

    let mut not_about_the_cert = without_alert(client(2, addr(443), SNI));
    not_about_the_cert.wire.push(WireFact::TlsAlert {
        from_server: false,
        fatal: true,
        code: 70,
        name: "protocol_version".into(),
    });
    assert!(not_about_the_cert.tls_handshake_abandoned());
    assert_eq!(
        candidate(&not_about_the_cert),
        None,
        "a plaintext alert before any certificate"
    );

    let mut server_role = client(3, addr(443), SNI);
    server_role.role = Role::Server;
    assert_eq!(candidate(&server_role), None);

    let mut requested = client(4, addr(443), SNI);
    requested.wire.push(WireFact::Http(HttpTally {
        protocol: "h2".into(),
        requests: 1,
        ..HttpTally::default()
    }));
    assert_eq!(candidate(&requested), None, "application data went out");
    let mut tallied = client(41, addr(443), SNI);
    tallied.http = Some(HttpTally {
        protocol: "h2".into(),
        requests: 1,
        ..HttpTally::default()
    });
    assert_eq!(candidate(&tallied), None, "a request went out");

    let mut plaintext_cert = client(5, addr(443), SNI);
    plaintext_cert.wire.push(WireFact::TlsCertificate {
        subject: "CN=x".into(),
        names: vec!["x".into()],
        issuer: "CN=x".into(),
        sha256: "00".repeat(32),
        not_before_unix_s: 0,
        not_after_unix_s: 0,
        sni: Some(SNI.into()),
        matches_sni: Some(false),
        probed_unix_s: None,
        trusted: None,
    });
    assert_eq!(
        candidate(&plaintext_cert),
        None,
        "judged on the wire already"
    );

    let mut no_hello = client(6, addr(443), SNI);
    no_hello.wire.retain(|f| {
        !matches!(
            f,
            WireFact::TlsServerHello { .. } | WireFact::TlsEncrypted { .. }
        )
    });
    assert_eq!(candidate(&no_hello), None, "the server never answered");

    let mut no_tls = client(7, addr(443), SNI);
    no_tls.wire.clear();
    assert_eq!(candidate(&no_tls), None);
}

#[test]
fn a_client_alert_about_the_certificate_is_a_candidate() {
    let mut rec = client(1, addr(443), SNI);
    rec.wire.retain(|f| {
        matches!(
            f,
            WireFact::TlsClientHello { .. } | WireFact::TlsServerHello { .. }
        )
    });
    rec.facts.closed_first = Some(Closer::Peer);
    rec.wire.push(WireFact::TlsAlert {
        from_server: false,
        fatal: true,
        code: 48,
        name: "unknown_ca".into(),
    });
    assert_eq!(
        candidate(&rec).unwrap().reason,
        ProbeReason::ClientCertificateAlert
    );
}

#[test]
fn five_failed_connections_to_one_address_and_sni_make_one_probe() {
    let mut records: Vec<ConnRecord> = (1..=5).map(|id| client(id, addr(443), SNI)).collect();
    records[4].wire[0] = WireFact::TlsClientHello {
        sni: Some("API.Example.Test.".into()),
        alpn: Vec::new(),
    };
    records.push(client(6, addr(443), "other.example.test"));
    records.push(client(7, addr(8443), SNI));
    records.push(without_alert(client(8, addr(443), SNI)));

    let plan = ProbePlan::from_records(&records);
    assert_eq!(plan.len(), 3);
    let mut calls = Vec::new();
    let out = plan.run(|a, sni, _| {
        calls.push((a, sni.map(str::to_owned)));
        ProbeOutcome::default()
    });
    assert_eq!(calls.len(), 3);
    let first = out
        .iter()
        .find(|r| r.addr == addr(443) && r.sni.as_deref() == Some(SNI))
        .unwrap();
    assert_eq!(first.connections, 5);
    assert_eq!(first.conn_ids, [1, 2, 3, 4, 5]);
    assert_eq!(first.alpn, alpn(), "the first candidate's offer");
}

#[test]
fn probes_beyond_the_limit_are_recorded_not_made() {
    let records: Vec<ConnRecord> = (0..=MAX_PROBES as u64)
        .map(|i| client(i, addr(1000 + u16::try_from(i).unwrap()), SNI))
        .collect();
    let plan = ProbePlan::from_records(&records);
    let mut calls = 0;
    let out = plan.run(|_, _, _| {
        calls += 1;
        ProbeOutcome::default()
    });
    assert_eq!(calls, MAX_PROBES);
    assert!(matches!(
        out.last().unwrap().outcome.error,
        Some(ProbeError::NotProbed { .. })
    ));
}

#[test]
fn probe_failed_handshakes_makes_one_real_handshake_for_five_records() {
    let ca = ca("probe test CA");
    let default = leaf(DEFAULT_CN, &["0f3a.traefik.default"], CURRENT, &ca);
    let server = Server::tls(&default, rustls::ALL_VERSIONS);
    let mut records: Vec<ConnRecord> = (1..=5).map(|id| client(id, server.addr, SNI)).collect();
    let pem = TempPem::new("dedup", &ca.pem());
    let opts = ProbeOptions {
        cacert: Some(pem.0.clone()),
        timeout: TIMEOUT,
        ..ProbeOptions::default()
    };
    records.push(without_alert(client(6, server.addr, SNI)));
    let out = probe_failed_handshakes(&mut records, &opts);
    assert_eq!(server.finish(), 1, "one handshake");
    assert_eq!(out.len(), 1);
    let rec = &out[0];
    assert_eq!(rec.connections, 5);
    assert_eq!(rec.outcome.verdict(), Some(&Verdict::Mismatch));
    let Some(WireFact::TlsCertificate {
        names,
        sni,
        matches_sni,
        ..
    }) = rec.wire_fact()
    else {
        panic!("{rec:?}");
    };
    assert_eq!(names, ["0f3a.traefik.default"]);
    assert_eq!((sni.as_deref(), matches_sni), (Some(SNI), Some(false)));
    // Every candidate got the probe's fact, told apart from the wire's; the rest did not.
    let fact = rec.wire_fact().unwrap();
    let WireFact::TlsCertificate {
        probed_unix_s,
        trusted,
        ..
    } = &fact
    else {
        unreachable!()
    };
    assert!(probed_unix_s.is_some());
    assert_eq!(*trusted, Some(true), "issued by the --cacert CA");
    assert!(
        !fact.means_failure(),
        "the probe's evidence is no failure by itself"
    );
    for r in &records[..5] {
        assert_eq!(r.wire.last(), Some(&fact), "{r:?}");
        assert_eq!(candidate(r), None, "probed already");
    }
    assert!(!records[5].wire.contains(&fact));
    assert!(
        probe_failed_handshakes(&mut records, &opts).is_empty(),
        "nothing left to probe"
    );

    let off = ProbeOptions {
        enabled: false,
        ..ProbeOptions::default()
    };
    assert!(probe_failed_handshakes(&mut records, &off).is_empty());
}

#[derive(Debug, Parser)]
struct Cmd {
    #[command(flatten)]
    probe: ProbeOptions,
}

#[test]
fn options_parse_from_the_command_line() {
    let defaults = Cmd::try_parse_from(["attach"]).unwrap().probe;
    assert_eq!(defaults, ProbeOptions::default());
    let set = Cmd::try_parse_from([
        "attach",
        "--no-probe",
        "--cacert",
        "/etc/ca.pem",
        "--probe-timeout",
        "500ms",
    ])
    .unwrap()
    .probe;
    assert!(!set.enabled);
    assert_eq!(
        set.cacert.as_deref(),
        Some(std::path::Path::new("/etc/ca.pem"))
    );
    assert_eq!(set.timeout, Duration::from_millis(500));
}
