//! The TLS observer on real handshakes: rustls client and server over in-memory buffers,
//! with certificates made by rcgen, the bytes of each direction captured and replayed.
use std::{io::Write, sync::Arc};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};
use rustls::{
    ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
    SupportedProtocolVersion,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName},
};
use sha2::{Digest, Sha256};

use super::tests::{assert_split_invariant, observe};
use super::*;
use crate::raw::reasm::{ReasmConfig, StreamReassembler};

const SNI: &str = "api.example.test";
const CA_CN: &str = "faultline raw test CA";
const DEFAULT_CN: &str = "TRAEFIK DEFAULT CERT";

struct Pki {
    ca_der: CertificateDer<'static>,
    /// The good leaf (chain: leaf, CA) and a proxy-style default certificate.
    good: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    default: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
}

fn leaf(
    cn: &str,
    sans: &[&str],
    ca: &CertifiedIssuer<'_, KeyPair>,
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.not_before = date_time_ymd(2024, 1, 1);
    params.not_after = date_time_ymd(2034, 1, 1);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    let chain = vec![cert.der().clone(), ca.der().clone()];
    (
        chain,
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name.push(DnType::CommonName, CA_CN);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    Pki {
        ca_der: ca.der().clone(),
        good: leaf(SNI, &[SNI, "*.svc.example.test", "127.0.0.1"], &ca),
        default: leaf(DEFAULT_CN, &["0f3a.traefik.default"], &ca),
    }
}

/// The bytes each side put on the wire, and how each side's handshake ended.
struct Transcript {
    c2s: Vec<u8>,
    s2c: Vec<u8>,
    client_err: Option<rustls::Error>,
    server_err: Option<rustls::Error>,
}

struct Setup<'a> {
    versions: &'a [&'static SupportedProtocolVersion],
    trust_ca: bool,
    serve_default_cert: bool,
    client_alpn: &'a [&'a str],
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Moves everything `from` wants to write into `to`; returns the bytes moved.
fn transfer(
    from: &mut Connection,
    to: &mut Connection,
    to_err: &mut Option<rustls::Error>,
) -> Vec<u8> {
    let mut buf = Vec::new();
    while from.wants_write() {
        match from.write_tls(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let mut rd = &buf[..];
    while !rd.is_empty() && to_err.is_none() {
        match to.read_tls(&mut rd) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if let Err(e) = to.process_new_packets() {
            *to_err = Some(e);
        }
    }
    buf
}

fn run(pki: &Pki, s: Setup<'_>) -> Transcript {
    let (chain, key) = if s.serve_default_cert {
        &pki.default
    } else {
        &pki.good
    };
    let mut server_cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(s.versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key.clone_key())
        .unwrap();
    server_cfg.alpn_protocols = vec![b"h2".to_vec()];
    let mut roots = RootCertStore::empty();
    if s.trust_ca {
        roots.add(pki.ca_der.clone()).unwrap();
    }
    let mut client_cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(s.versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_cfg.alpn_protocols = s
        .client_alpn
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    let name = ServerName::try_from(SNI).unwrap().to_owned();
    let mut client = Connection::Client(ClientConnection::new(Arc::new(client_cfg), name).unwrap());
    let mut server = Connection::Server(ServerConnection::new(Arc::new(server_cfg)).unwrap());
    let mut t = Transcript {
        c2s: Vec::new(),
        s2c: Vec::new(),
        client_err: None,
        server_err: None,
    };
    let mut sent_data = false;
    for _ in 0..50 {
        let c = transfer(&mut client, &mut server, &mut t.server_err);
        let s = transfer(&mut server, &mut client, &mut t.client_err);
        t.c2s.extend_from_slice(&c);
        t.s2c.extend_from_slice(&s);
        let handshaken = !client.is_handshaking() && !server.is_handshaking();
        if handshaken && !sent_data && t.client_err.is_none() && t.server_err.is_none() {
            client
                .writer()
                .write_all(b"GET / HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
                .unwrap();
            server
                .writer()
                .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .unwrap();
            sent_data = true;
        } else if c.is_empty() && s.is_empty() {
            break;
        }
    }
    t
}

fn client_hello(facts: &[TlsFact]) -> &ClientHelloFact {
    facts
        .iter()
        .find_map(|f| match f {
            TlsFact::ClientHello(c) => Some(c),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ClientHello in {facts:?}"))
}

fn server_hello(facts: &[TlsFact]) -> &ServerHelloFact {
    facts
        .iter()
        .find_map(|f| match f {
            TlsFact::ServerHello(s) => Some(s),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ServerHello in {facts:?}"))
}

fn alerts(facts: &[TlsFact]) -> Vec<AlertFact> {
    facts
        .iter()
        .filter_map(|f| match f {
            TlsFact::Alert(a) => Some(*a),
            _ => None,
        })
        .collect()
}

fn chain(facts: &[TlsFact]) -> Option<&CertChainFact> {
    facts.iter().find_map(|f| match f {
        TlsFact::Certificates(c) => Some(c),
        _ => None,
    })
}

/// Replays `bytes` through a reassembler fed shuffled, duplicated segments.
fn through_reassembler(bytes: &[u8], seed: u64) -> Vec<TlsFact> {
    let mut segs: Vec<(usize, usize)> = Vec::new();
    let mut x = seed | 1;
    let mut rnd = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    let mut a = 0;
    while a < bytes.len() {
        let b = (a + 1 + rnd(700)).min(bytes.len());
        segs.push((a, b));
        a = b;
    }
    for i in (1..segs.len()).rev() {
        let j = rnd(i + 1);
        segs.swap(i, j);
        if rnd(4) == 0 {
            segs.push(segs[i]);
        }
    }
    let isn = u32::MAX - 500; // the stream wraps around the sequence space
    let mut r = StreamReassembler::after_syn(isn, ReasmConfig::default());
    let mut o = TlsObserver::new();
    let mut facts = Vec::new();
    for (a, b) in segs {
        let seq = isn.wrapping_add(1).wrapping_add(a as u32);
        r.push(seq, &bytes[a..b], |c| o.on_chunk(c, &mut facts));
    }
    assert_eq!(r.stats().delivered_bytes, bytes.len() as u64);
    facts
}

#[test]
fn tls12_handshake_shows_sni_alpn_and_certificates() {
    let pki = pki();
    let t = run(
        &pki,
        Setup {
            versions: &[&rustls::version::TLS12],
            trust_ca: true,
            serve_default_cert: false,
            client_alpn: &["h2", "http/1.1"],
        },
    );
    assert!(
        t.client_err.is_none() && t.server_err.is_none(),
        "{:?} {:?}",
        t.client_err,
        t.server_err
    );

    let (c2s, client_obs) = observe(&t.c2s);
    let ch = client_hello(&c2s);
    assert_eq!(ch.sni.as_deref(), Some(SNI));
    assert_eq!(ch.alpn, ["h2", "http/1.1"]);
    assert!(!ch.offers_tls13());
    assert!(ch.cipher_suites > 0);
    assert_eq!(c2s.len(), 1, "{c2s:?}");
    let st = client_obs.stats();
    assert_eq!(st.change_cipher_spec_records, 1);
    assert!(st.protected_records >= 1, "encrypted Finished: {st:?}");
    assert!(st.application_data_records >= 1);

    let (s2c, server_obs) = observe(&t.s2c);
    let sh = server_hello(&s2c);
    assert_eq!(
        (sh.selected_version, sh.alpn.as_deref()),
        (TLS12, Some("h2"))
    );
    assert!(
        sh.cipher_suite_name()
            .is_some_and(|n| n.starts_with("TLS_ECDHE_")),
        "{sh:?}"
    );
    assert!(
        !s2c.iter()
            .any(|f| matches!(f, TlsFact::EncryptedAfterServerHello { .. }))
    );
    let certs = chain(&s2c).expect("TLS 1.2 certificates are plaintext");
    assert_eq!(certs.chain_len, 2);
    let leaf = certs.leaf().unwrap();
    assert_eq!(leaf.subject_cn.as_deref(), Some(SNI));
    assert_eq!(leaf.issuer_cn.as_deref(), Some(CA_CN));
    assert!(leaf.issuer.contains(CA_CN), "{}", leaf.issuer);
    assert_eq!(leaf.san_dns, [SNI, "*.svc.example.test"]);
    assert_eq!(
        leaf.san_ips,
        ["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(
        (leaf.not_before_unix_s, leaf.not_after_unix_s),
        (1_704_067_200, 2_019_686_400)
    );
    let want: [u8; 32] = Sha256::digest(pki.good.0[0].as_ref()).into();
    assert_eq!(leaf.sha256, want);
    assert_eq!(leaf.parse_error, None);
    assert_eq!(certs.certs[1].subject_cn.as_deref(), Some(CA_CN));
    assert!(leaf.is_valid_for(ch.sni.as_deref().unwrap()));
    assert!(leaf.is_valid_for("x.svc.example.test"));
    assert!(leaf.is_valid_for("127.0.0.1"));
    assert!(!leaf.is_valid_for("other.example.test"));
    assert_eq!(
        events::time::rfc3339_s(leaf.not_before_unix_s),
        "2024-01-01T00:00:00Z"
    );
    assert_eq!(leaf.sha256_hex().len(), 64);
    assert!(server_obs.stats().application_data_records >= 1);

    for (bytes, facts) in [(&t.c2s, &c2s), (&t.s2c, &s2c)] {
        assert_split_invariant(bytes, facts);
        for seed in 1..6 {
            assert_eq!(&through_reassembler(bytes, seed), facts, "seed {seed}");
        }
    }
}

#[test]
fn tls13_handshake_hides_certificates() {
    let pki = pki();
    let t = run(
        &pki,
        Setup {
            versions: &[&rustls::version::TLS13],
            trust_ca: true,
            serve_default_cert: false,
            client_alpn: &["h2"],
        },
    );
    assert!(t.client_err.is_none() && t.server_err.is_none());
    let (c2s, client_obs) = observe(&t.c2s);
    let ch = client_hello(&c2s);
    assert!(ch.offers_tls13());
    assert_eq!(ch.sni.as_deref(), Some(SNI));
    assert_eq!(c2s.len(), 1, "{c2s:?}");
    assert!(client_obs.is_encrypted());

    let (s2c, server_obs) = observe(&t.s2c);
    let sh = server_hello(&s2c);
    assert_eq!(
        (sh.selected_version, sh.legacy_version, sh.alpn.as_deref()),
        (TLS13, TLS12, None)
    );
    assert!(!sh.hello_retry_request);
    assert_eq!(
        s2c.last(),
        Some(&TlsFact::EncryptedAfterServerHello { version: TLS13 })
    );
    assert!(chain(&s2c).is_none() && alerts(&s2c).is_empty());
    assert!(
        server_obs.stats().application_data_records >= 2,
        "{:?}",
        server_obs.stats()
    );

    for (bytes, facts) in [(&t.c2s, &c2s), (&t.s2c, &s2c)] {
        assert_split_invariant(bytes, facts);
        assert_eq!(&through_reassembler(bytes, 7), facts);
    }
}

#[test]
fn tls12_untrusted_certificate_draws_a_plaintext_unknown_ca_alert() {
    let pki = pki();
    let t = run(
        &pki,
        Setup {
            versions: &[&rustls::version::TLS12],
            trust_ca: false,
            serve_default_cert: false,
            client_alpn: &["h2"],
        },
    );
    assert!(
        matches!(t.client_err, Some(rustls::Error::InvalidCertificate(_))),
        "{:?}",
        t.client_err
    );
    let (c2s, client_obs) = observe(&t.c2s);
    // rustls verifies the chain on ServerHelloDone, before its ClientKeyExchange and
    // ChangeCipherSpec, so the alert goes out in plaintext.
    assert_eq!(
        alerts(&c2s),
        [AlertFact {
            level: 2,
            description: 48
        }]
    );
    assert_eq!(alerts(&c2s)[0].name(), "unknown_ca");
    assert_eq!(client_obs.stats().change_cipher_spec_records, 0);
    assert!(chain(&observe(&t.s2c).0).is_some());
}

#[test]
fn tls12_default_certificate_is_a_name_mismatch_seen_on_the_wire() {
    let pki = pki();
    let t = run(
        &pki,
        Setup {
            versions: &[&rustls::version::TLS12],
            trust_ca: true,
            serve_default_cert: true,
            client_alpn: &["h2"],
        },
    );
    assert!(
        matches!(t.client_err, Some(rustls::Error::InvalidCertificate(_))),
        "{:?}",
        t.client_err
    );
    let (c2s, _) = observe(&t.c2s);
    let (s2c, _) = observe(&t.s2c);
    let sni = client_hello(&c2s).sni.clone().unwrap();
    let leaf = chain(&s2c).and_then(CertChainFact::leaf).unwrap();
    assert!(!leaf.is_valid_for(&sni));
    assert_eq!(leaf.presented_name(), DEFAULT_CN);
    // rustls reports NotValidForName with the bad_certificate alert (RFC 8446 section 6.2).
    let a = alerts(&c2s);
    assert_eq!(a.len(), 1, "{c2s:?}");
    assert_eq!(a[0].name(), "bad_certificate");
}

#[test]
fn tls13_untrusted_certificate_alert_is_encrypted() {
    let pki = pki();
    let t = run(
        &pki,
        Setup {
            versions: &[&rustls::version::TLS13],
            trust_ca: false,
            serve_default_cert: false,
            client_alpn: &["h2"],
        },
    );
    assert!(matches!(
        t.client_err,
        Some(rustls::Error::InvalidCertificate(_))
    ));
    let (c2s, client_obs) = observe(&t.c2s);
    assert!(alerts(&c2s).is_empty(), "{c2s:?}");
    // The alert is an application_data record after the compatibility ChangeCipherSpec.
    assert!(
        client_obs.stats().application_data_records >= 1,
        "{:?}",
        client_obs.stats()
    );
    assert!(client_obs.is_encrypted());
}

/// What a TLS 1.3 handshake with the default certificate (`serve_default_cert`) or an
/// unknown CA (`!trust_ca`) put on the wire, each direction.
pub(crate) fn tls13_transcript(trust_ca: bool, serve_default_cert: bool) -> (Vec<u8>, Vec<u8>) {
    let t = run(
        &pki(),
        Setup {
            versions: &[&rustls::version::TLS13],
            trust_ca,
            serve_default_cert,
            client_alpn: &["h2"],
        },
    );
    (t.c2s, t.s2c)
}

/// rustls, rejecting the certificate in TLS 1.3, sends one alert encrypted under the
/// handshake keys after its compatibility ChangeCipherSpec: a 19-byte application_data
/// record (2 bytes of alert, the inner content type, the AES-GCM tag), and nothing more.
#[test]
fn tls13_certificate_rejections_end_in_one_encrypted_alert() {
    for (trust_ca, serve_default_cert) in [(false, false), (true, true)] {
        let (c2s, s2c) = tls13_transcript(trust_ca, serve_default_cert);
        let (mut facts, mut o) = observe(&c2s);
        o.finish(&mut facts);
        assert!(
            matches!(
                facts[..],
                [
                    TlsFact::ClientHello(_),
                    TlsFact::EncryptedAlert {
                        len_bytes: 19,
                        after_handshake: false
                    }
                ]
            ),
            "trust_ca {trust_ca}, default cert {serve_default_cert}: {facts:?}"
        );
        assert_eq!(o.stats().change_cipher_spec_records, 1);
        let (mut server_facts, mut server) = observe(&s2c);
        server.finish(&mut server_facts);
        assert!(
            !server_facts
                .iter()
                .any(|f| matches!(f, TlsFact::EncryptedAlert { .. })),
            "{server_facts:?}"
        );
    }
    // A handshake that completes: the client's first encrypted record is its Finished.
    let (c2s, _) = tls13_transcript(true, false);
    let (mut facts, mut o) = observe(&c2s);
    o.finish(&mut facts);
    assert_eq!(facts.len(), 1, "{facts:?}");
}

#[test]
fn no_common_alpn_alert_is_plaintext_in_tls12_only() {
    let pki = pki();
    let (tls12, tls13) = ([&rustls::version::TLS12], [&rustls::version::TLS13]);
    let setup = |versions| Setup {
        versions,
        trust_ca: true,
        serve_default_cert: false,
        client_alpn: &["http/1.1"],
    };
    // TLS 1.2: rustls negotiates ALPN while building its ServerHello, fails first, and
    // the no_application_protocol alert (RFC 7301 section 3.2) goes out in plaintext.
    let t = run(&pki, setup(&tls12));
    assert!(t.server_err.is_some());
    let (s2c, _) = observe(&t.s2c);
    let alert = TlsFact::Alert(AlertFact {
        level: 2,
        description: 120,
    });
    assert_eq!(s2c, vec![alert]);
    assert_split_invariant(&t.s2c, &s2c);
    // TLS 1.3: ALPN is decided for EncryptedExtensions, after ServerHello, so the same
    // failure is an encrypted alert: only the record is seen.
    let t = run(&pki, setup(&tls13));
    assert!(t.server_err.is_some());
    let (s2c, server_obs) = observe(&t.s2c);
    assert!(matches!(
        s2c[..],
        [
            TlsFact::ServerHello(_),
            TlsFact::EncryptedAfterServerHello { .. }
        ]
    ));
    assert!(server_obs.stats().application_data_records >= 1);
}
