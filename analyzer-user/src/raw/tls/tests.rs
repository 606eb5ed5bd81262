//! Tests of the TLS observer on hand-built records (RFC 8446 layouts) and hostile input.
use super::*;

pub(super) fn record(content_type: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![content_type, 3, 3];
    r.extend_from_slice(&(body.len() as u16).to_be_bytes());
    r.extend_from_slice(body);
    r
}

pub(super) fn handshake(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let len = (body.len() as u32).to_be_bytes();
    let mut m = vec![msg_type, len[1], len[2], len[3]];
    m.extend_from_slice(body);
    m
}

fn ext(ext_type: u16, data: &[u8]) -> Vec<u8> {
    let mut e = ext_type.to_be_bytes().to_vec();
    e.extend_from_slice(&(data.len() as u16).to_be_bytes());
    e.extend_from_slice(data);
    e
}

fn u16_prefixed(data: &[u8]) -> Vec<u8> {
    let mut v = (data.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(data);
    v
}

/// A ClientHello body (RFC 8446 section 4.1.2) offering `sni`, h2 and http/1.1, TLS 1.3
/// and 1.2 (after a GREASE version), and three cipher suites.
fn client_hello_body(sni: &str) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[7; 32]);
    b.push(0); // legacy_session_id
    b.extend_from_slice(&u16_prefixed(&[0x13, 0x01, 0x13, 0x02, 0xc0, 0x2f]));
    b.extend_from_slice(&[1, 0]); // legacy_compression_methods: null
    let mut server_name = vec![0];
    server_name.extend_from_slice(&u16_prefixed(sni.as_bytes()));
    let mut alpn = vec![2];
    alpn.extend_from_slice(b"h2");
    alpn.push(8);
    alpn.extend_from_slice(b"http/1.1");
    let mut exts = ext(0, &u16_prefixed(&server_name));
    exts.extend(ext(16, &u16_prefixed(&alpn)));
    exts.extend(ext(43, &[6, 0x0a, 0x0a, 0x03, 0x04, 0x03, 0x03]));
    b.extend_from_slice(&u16_prefixed(&exts));
    b
}

fn server_hello_body(random: [u8; 32], exts: &[u8]) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&random);
    b.push(0);
    b.extend_from_slice(&[0x13, 0x01, 0]);
    b.extend_from_slice(&u16_prefixed(exts));
    b
}

pub(super) fn observe_chunks<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<TlsFact>, TlsObserver) {
    let mut o = TlsObserver::new();
    let mut facts = Vec::new();
    for c in chunks {
        o.feed(c, &mut facts);
        assert!(o.buffered_bytes() <= MAX_BUFFERED_BYTES);
    }
    (facts, o)
}

pub(super) fn observe(bytes: &[u8]) -> (Vec<TlsFact>, TlsObserver) {
    observe_chunks([bytes])
}

/// Facts must not depend on how the stream was cut.
pub(super) fn assert_split_invariant(bytes: &[u8], whole: &[TlsFact]) {
    for at in 0..=bytes.len() {
        let (a, b) = bytes.split_at(at);
        assert_eq!(observe_chunks([a, b]).0, whole, "split at {at}");
    }
    assert_eq!(observe_chunks(bytes.chunks(1)).0, whole, "1-byte chunks");
}

#[test]
fn client_hello_facts_from_hand_built_bytes() {
    let bytes = record(
        HANDSHAKE,
        &handshake(CLIENT_HELLO, &client_hello_body("api.example.test")),
    );
    let (facts, o) = observe(&bytes);
    let want = ClientHelloFact {
        legacy_version: TLS12,
        supported_versions: vec![TLS13, TLS12],
        sni: Some("api.example.test".into()),
        alpn: vec!["h2".into(), "http/1.1".into()],
        cipher_suites: 3,
        random: [7; 32],
        extensions_malformed: false,
    };
    assert_eq!(facts, vec![TlsFact::ClientHello(want)]);
    assert_eq!(o.stats().handshake_messages, 1);
    assert_split_invariant(&bytes, &facts);
}

#[test]
fn handshake_message_fragmented_over_records_and_coalesced() {
    let msg = handshake(CLIENT_HELLO, &client_hello_body("a.example"));
    let done = handshake(14, &[]); // ServerHelloDone-style empty message
    let mut bytes = record(HANDSHAKE, &msg[..3]);
    bytes.extend(record(HANDSHAKE, &msg[3..40]));
    let mut tail = msg[40..].to_vec();
    tail.extend_from_slice(&done);
    tail.extend_from_slice(&msg);
    bytes.extend(record(HANDSHAKE, &tail));
    let (facts, o) = observe(&bytes);
    assert_eq!(facts.len(), 2, "{facts:?}");
    assert!(matches!(&facts[0], TlsFact::ClientHello(c) if c.sni.as_deref() == Some("a.example")));
    assert_eq!(facts[0], facts[1]);
    assert_eq!(o.stats().handshake_messages, 3);
    assert_eq!(o.stats().records, 3);
    assert_split_invariant(&bytes, &facts);
}

#[test]
fn plaintext_alerts_are_named() {
    for (code, name) in [
        (42, "bad_certificate"),
        (48, "unknown_ca"),
        (112, "unrecognized_name"),
        (40, "handshake_failure"),
        (120, "no_application_protocol"),
    ] {
        let (facts, _) = observe(&record(ALERT, &[2, code]));
        let TlsFact::Alert(a) = facts[0] else {
            panic!("{facts:?}");
        };
        assert_eq!((a.level, a.description, a.is_fatal()), (2, code, true));
        assert_eq!(a.name(), name);
    }
    assert_eq!(
        AlertFact {
            level: 1,
            description: 200
        }
        .name(),
        "200"
    );
}

#[test]
fn server_hello_tls13_reports_encryption_and_counts_the_rest() {
    let sh = server_hello_body([1; 32], &ext(43, &[3, 4]));
    let mut bytes = record(HANDSHAKE, &handshake(SERVER_HELLO, &sh));
    bytes.extend(record(CHANGE_CIPHER_SPEC, &[1]));
    bytes.extend(record(APPLICATION_DATA, &[0xaa; 300]));
    bytes.extend(record(ALERT, &[0xbb; 19])); // would be odd-length if it were plaintext
    let (facts, o) = observe(&bytes);
    let TlsFact::ServerHello(s) = &facts[0] else {
        panic!("{facts:?}");
    };
    assert_eq!(
        (s.selected_version, s.cipher_suite, s.alpn.clone()),
        (TLS13, 0x1301, None)
    );
    assert_eq!(s.cipher_suite_name(), Some("TLS_AES_128_GCM_SHA256"));
    assert_eq!(
        facts[1],
        TlsFact::EncryptedAfterServerHello { version: TLS13 }
    );
    assert_eq!(facts.len(), 2);
    let st = o.stats();
    assert_eq!(
        (st.change_cipher_spec_records, st.application_data_records),
        (1, 1)
    );
    assert_eq!((st.application_data_bytes, st.protected_records), (300, 1));
    assert_split_invariant(&bytes, &facts);
}

#[test]
fn hello_retry_request_stays_plaintext() {
    let hrr = server_hello_body(hello::HRR_RANDOM, &ext(43, &[3, 4]));
    let mut bytes = record(HANDSHAKE, &handshake(SERVER_HELLO, &hrr));
    bytes.extend(record(ALERT, &[2, 40]));
    let (facts, o) = observe(&bytes);
    assert!(matches!(&facts[0], TlsFact::ServerHello(s) if s.hello_retry_request));
    assert_eq!(
        facts[1],
        TlsFact::Alert(AlertFact {
            level: 2,
            description: 40
        })
    );
    assert!(!o.is_encrypted());
}

#[test]
fn two_byte_alert_after_change_cipher_spec_is_plaintext() {
    let mut bytes = record(HANDSHAKE, &handshake(16, &[0; 10]));
    bytes.extend(record(CHANGE_CIPHER_SPEC, &[1]));
    bytes.extend(record(HANDSHAKE, &[0x55; 40])); // encrypted Finished
    bytes.extend(record(ALERT, &[0x66; 26])); // encrypted alert
    bytes.extend(record(ALERT, &[1, 0])); // plaintext close_notify
    let (facts, o) = observe(&bytes);
    assert_eq!(
        facts,
        vec![TlsFact::Alert(AlertFact {
            level: 1,
            description: 0
        })]
    );
    assert_eq!(o.stats().protected_records, 2);
}

#[test]
fn http_is_not_tls() {
    let (facts, o) = observe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        facts,
        vec![TlsFact::NotTls {
            offset: 0,
            what: TlsWireError::ContentType { byte: b'G' }
        }]
    );
    assert!(o.is_stopped());
    let (facts, _) = observe(&[0x16, 0x05, 0x00, 0, 1, 1]);
    assert!(matches!(
        facts[..],
        [TlsFact::NotTls {
            what: TlsWireError::RecordVersion { version: 0x0500 },
            ..
        }]
    ));
    let (facts, _) = observe(&record(APPLICATION_DATA, b"x"));
    assert!(matches!(
        facts[..],
        [TlsFact::NotTls {
            what: TlsWireError::FirstRecord { content_type: 23 },
            ..
        }]
    ));
}

#[test]
fn huge_record_length_is_malformed_without_buffering() {
    let (facts, o) = observe(&[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3]);
    let what = TlsWireError::RecordTooLong {
        len_bytes: 0xffff,
        max_bytes: MAX_RECORD_LEN_BYTES,
    };
    assert_eq!(facts, vec![TlsFact::Malformed { offset: 0, what }]);
    assert_eq!(o.buffered_bytes(), 0);
}

#[test]
fn oversized_handshake_message_is_abandoned_and_parsing_resumes() {
    let len = MAX_HANDSHAKE_LEN_BYTES + 10;
    let mut stream = vec![CERTIFICATE, 0, 0, 0];
    stream[1..4].copy_from_slice(&(len as u32).to_be_bytes()[1..]);
    stream.extend(std::iter::repeat_n(0x42, len));
    stream.extend(handshake(CLIENT_HELLO, &client_hello_body("after.example")));
    let mut bytes = Vec::new();
    for piece in stream.chunks(16_384) {
        bytes.extend(record(HANDSHAKE, piece));
    }
    let (facts, o) = observe(&bytes);
    assert_eq!(
        facts[0],
        TlsFact::HandshakeAbandoned {
            offset: 5,
            msg_type: CERTIFICATE,
            len_bytes: len
        }
    );
    assert!(
        matches!(&facts[1], TlsFact::ClientHello(c) if c.sni.as_deref() == Some("after.example"))
    );
    assert!(o.buffered_bytes() < 1024);
    assert_eq!(observe_chunks(bytes.chunks(1000)).0, facts);
}

#[test]
fn framing_violations_are_malformed() {
    let msg = handshake(CLIENT_HELLO, &client_hello_body("x.example"));
    let mut interleaved = record(HANDSHAKE, &msg[..10]);
    interleaved.extend(record(ALERT, &[2, 10]));
    let cases: Vec<(Vec<u8>, TlsWireError)> = vec![
        (
            interleaved,
            TlsWireError::Interleaved {
                content_type: ALERT,
            },
        ),
        (
            [record(ALERT, &[1, 0]), record(HANDSHAKE, &[])].concat(),
            TlsWireError::EmptyRecord {
                content_type: HANDSHAKE,
            },
        ),
        (
            [record(ALERT, &[1, 0]), record(CHANGE_CIPHER_SPEC, &[1, 1])].concat(),
            TlsWireError::ChangeCipherSpec,
        ),
        (
            [record(ALERT, &[1, 0]), record(CHANGE_CIPHER_SPEC, &[2])].concat(),
            TlsWireError::ChangeCipherSpec,
        ),
        (
            record(ALERT, &[2, 40, 1]),
            TlsWireError::AlertLength { len_bytes: 3 },
        ),
    ];
    for (bytes, want) in cases {
        let (facts, o) = observe(&bytes);
        assert!(
            matches!(facts.last(), Some(TlsFact::Malformed { what, .. }) if *what == want),
            "{want}: {facts:?}"
        );
        assert!(o.is_stopped());
    }
}

#[test]
fn truncated_client_hello_does_not_parse() {
    let body = client_hello_body("x.example");
    let bytes = record(HANDSHAKE, &handshake(CLIENT_HELLO, &body[..20]));
    let (facts, _) = observe(&bytes);
    let [
        TlsFact::Malformed {
            offset: 5,
            what:
                TlsWireError::Handshake {
                    msg_type: 1,
                    detail,
                },
        },
    ] = &facts[..]
    else {
        panic!("{facts:?}");
    };
    assert!(!detail.is_empty());
}

#[test]
fn gaps_inside_opaque_records_are_stepped_over() {
    let mut o = TlsObserver::new();
    let mut facts = Vec::new();
    o.feed(&record(HANDSHAKE, &handshake(16, &[0; 4])), &mut facts);
    o.feed(&record(CHANGE_CIPHER_SPEC, &[1]), &mut facts);
    let app = record(APPLICATION_DATA, &[9; 1000]);
    o.feed(&app[..100], &mut facts);
    o.gap(500, &mut facts);
    o.feed(&app[600..], &mut facts);
    o.feed(&record(ALERT, &[1, 0]), &mut facts);
    assert_eq!(
        facts,
        vec![TlsFact::Alert(AlertFact {
            level: 1,
            description: 0
        })]
    );
    assert_eq!(o.stats().gap_bytes_skipped, 500);
    // A gap across a record boundary loses the framing.
    o.gap(10, &mut facts);
    assert!(matches!(
        facts.last(),
        Some(TlsFact::Malformed {
            what: TlsWireError::Gap { len_bytes: 10 },
            ..
        })
    ));
}

#[test]
fn facts_per_direction_are_capped() {
    let bytes: Vec<u8> = (0..1000).flat_map(|_| record(ALERT, &[1, 0])).collect();
    let (facts, o) = observe(&bytes);
    assert_eq!(facts.len(), MAX_FACTS);
    assert_eq!(o.stats().facts_dropped, 1000 - MAX_FACTS as u64);
}

#[test]
fn garbage_never_panics_and_stays_bounded() {
    let mut x = 0x1234_5678_9abc_def0_u64;
    for round in 0..300 {
        let n = 1 + (round * 97) % 5000;
        let mut bytes: Vec<u8> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        // Half the rounds start like a handshake record so the parsers go deeper.
        if round % 2 == 0 && bytes.len() > 9 {
            bytes[..6].copy_from_slice(&[HANDSHAKE, 3, 3, 0x10, 0x00, (round % 3) as u8 + 1]);
        }
        let (facts, o) = observe_chunks(bytes.chunks(1 + round % 13));
        assert!(facts.len() <= MAX_FACTS + 1);
        assert!(o.buffered_bytes() <= MAX_BUFFERED_BYTES);
    }
}

#[test]
fn cert_name_matching_follows_rfc6125() {
    let cert = CertFact {
        subject_cn: Some("TRAEFIK DEFAULT CERT".into()),
        san_dns: vec![
            "api.example.test".into(),
            "*.svc.example.test".into(),
            "*.com".into(),
            "f*.example.test".into(),
        ],
        san_ips: vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
        ..CertFact::default()
    };
    for (name, ok) in [
        ("api.example.test", true),
        ("API.Example.TEST", true),
        ("api.example.test.", true),
        ("a.svc.example.test", true),
        ("a.b.svc.example.test", false),
        ("svc.example.test", false),
        (".svc.example.test", false),
        ("example.com", false),
        ("foo.example.test", false),
        ("TRAEFIK DEFAULT CERT", false),
        ("10.0.0.1", true),
        ("10.0.0.2", false),
        ("[::1]", true),
        ("::1", true),
        ("", false),
        ("*.svc.example.test", false),
    ] {
        assert_eq!(cert.is_valid_for(name), ok, "{name}");
    }
    let dns_ip = CertFact {
        san_dns: vec!["127.0.0.1".into()],
        ..CertFact::default()
    };
    assert!(
        !dns_ip.is_valid_for("127.0.0.1"),
        "an IP never matches a dNSName"
    );
}

#[test]
fn unparsable_certificate_keeps_its_fingerprint() {
    let c = CertFact::from_der(b"not a certificate");
    assert!(c.parse_error.is_some());
    assert_eq!(c.der_len_bytes, 17);
    assert_eq!(c.sha256_hex().len(), 64);
    assert!(!c.is_valid_for("x.example"));
}

/// A TLS 1.3 client's bytes: its ClientHello, the compatibility ChangeCipherSpec (RFC 8446
/// appendix D.4), then application_data records of these lengths.
fn tls13_client(records: &[usize]) -> Vec<u8> {
    let hello = handshake(CLIENT_HELLO, &client_hello_body("api.example.test"));
    let mut bytes = record(HANDSHAKE, &hello);
    bytes.extend(record(CHANGE_CIPHER_SPEC, &[1]));
    for len in records {
        bytes.extend(record(APPLICATION_DATA, &vec![0xa5; *len]));
    }
    bytes
}

/// What the direction shows once it ended.
fn observe_to_the_end(bytes: &[u8]) -> Vec<TlsFact> {
    let (mut facts, mut o) = observe(bytes);
    o.finish(&mut facts);
    facts
}

/// `(len_bytes, after_handshake)` of each encrypted alert reported.
fn encrypted_alerts(facts: &[TlsFact]) -> Vec<(usize, bool)> {
    facts
        .iter()
        .filter_map(|f| match f {
            TlsFact::EncryptedAlert {
                len_bytes,
                after_handshake,
            } => Some((*len_bytes, *after_handshake)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_client_giving_up_with_an_encrypted_alert_is_told_by_its_record_size() {
    // 2 bytes of alert, the inner content type, a 16-byte tag.
    let bytes = tls13_client(&[19]);
    let (mut facts, mut o) = observe(&bytes);
    assert!(
        matches!(facts[..], [TlsFact::ClientHello(_)]),
        "known only once nothing longer followed: {facts:?}"
    );
    assert_split_invariant(&bytes, &facts);
    o.finish(&mut facts);
    let fact = TlsFact::EncryptedAlert {
        len_bytes: 19,
        after_handshake: false,
    };
    assert_eq!(facts.last(), Some(&fact));
    o.finish(&mut facts);
    assert_eq!(encrypted_alerts(&facts), [(19, false)], "reported once");
    // A second alert after the first (close_notify after the fatal one) changes nothing.
    let twice = observe_to_the_end(&tls13_client(&[19, 19]));
    assert_eq!(encrypted_alerts(&twice), [(19, false)]);
    // Without the compatibility ChangeCipherSpec.
    let hello = handshake(CLIENT_HELLO, &client_hello_body("api.example.test"));
    let mut bare = record(HANDSHAKE, &hello);
    bare.extend(record(APPLICATION_DATA, &[0; 19]));
    assert_eq!(encrypted_alerts(&observe_to_the_end(&bare)), [(19, false)]);
}

#[test]
fn a_client_closing_right_after_its_finished_is_told_apart() {
    // Its Finished (SHA-384: 69 bytes), then only an alert: no byte of application data.
    for finished in [53, 69] {
        let facts = observe_to_the_end(&tls13_client(&[finished, 19]));
        assert_eq!(encrypted_alerts(&facts), [(19, true)], "{finished}");
    }
    // After the server's FIN, the alert answers the server's close.
    let bytes = tls13_client(&[53, 19]);
    let (finished, alert) = bytes.split_at(bytes.len() - 24);
    let mut o = TlsObserver::new();
    let mut facts = Vec::new();
    o.feed(finished, &mut facts);
    o.peer_ended();
    o.feed(alert, &mut facts);
    o.finish(&mut facts);
    assert_eq!(encrypted_alerts(&facts), [], "{facts:?}");
}

#[test]
fn a_handshake_that_goes_on_is_no_encrypted_alert() {
    for (records, why) in [
        (
            &[53][..],
            "a Finished: 32 bytes of verify_data, its header, the type and the tag",
        ),
        (&[33], "longer than an alert"),
        (&[25, 53], "an empty Certificate, then the Finished"),
        (
            &[53, 40, 19],
            "a request after the Finished, then the alert",
        ),
        (&[70, 19], "a first record longer than a Finished"),
        (&[], "nothing encrypted at all"),
    ] {
        let facts = observe_to_the_end(&tls13_client(records));
        assert_eq!(encrypted_alerts(&facts), [], "{why}");
    }
}

#[test]
fn only_a_client_direction_reports_an_encrypted_alert() {
    // The server's EncryptedExtensions can be as short as an alert.
    let sh = server_hello_body([1; 32], &ext(43, &[3, 4]));
    let mut bytes = record(HANDSHAKE, &handshake(SERVER_HELLO, &sh));
    bytes.extend(record(CHANGE_CIPHER_SPEC, &[1]));
    bytes.extend(record(APPLICATION_DATA, &[0xaa; 23]));
    assert_eq!(encrypted_alerts(&observe_to_the_end(&bytes)), []);
}

#[test]
fn tls12_encrypted_alerts_count_before_any_application_data() {
    let hello = handshake(CLIENT_HELLO, &client_hello_body("api.example.test"));
    let mut flight = record(HANDSHAKE, &hello);
    flight.extend(record(HANDSHAKE, &handshake(16, &[0; 33]))); // ClientKeyExchange
    flight.extend(record(CHANGE_CIPHER_SPEC, &[1]));
    // An alert record after the ChangeCipherSpec, instead of the Finished.
    let gave_up = [flight.clone(), record(ALERT, &[0x66; 26])].concat();
    assert_eq!(
        encrypted_alerts(&observe_to_the_end(&gave_up)),
        [(26, false)]
    );
    // The Finished, then the alert and nothing else.
    let closed = [
        flight.clone(),
        record(HANDSHAKE, &[0x55; 40]),
        record(ALERT, &[0x66; 26]),
    ]
    .concat();
    assert_eq!(encrypted_alerts(&observe_to_the_end(&closed)), [(26, true)]);
    // The Finished first (an encrypted handshake record), then a short request and the
    // closing alert: a completed handshake.
    let done = [
        flight,
        record(HANDSHAKE, &[0x55; 40]),
        record(APPLICATION_DATA, &[0x77; 30]),
        record(ALERT, &[0x66; 26]),
    ]
    .concat();
    assert_eq!(encrypted_alerts(&observe_to_the_end(&done)), []);
}
