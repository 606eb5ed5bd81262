//! The probe against real rustls servers on 127.0.0.1 (one std thread each, certificates
//! made by rcgen), the verdicts, the error outcomes, and the one-probe-per-(address, SNI)
//! plan. Every server thread accepts a bounded number of connections and every socket
//! read is bounded; no assertion depends on timing.
use std::{
    io::Read,
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};
use rustls::{
    RootCertStore, ServerConfig, ServerConnection, StreamOwned, SupportedProtocolVersion,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    server::WebPkiClientVerifier,
};

use super::*;
use crate::{
    event::wire_fact::{HttpTally, WireFact},
    table::{Closer, ConnRecord, Role},
};

const SNI: &str = "api.example.test";
const DEFAULT_CN: &str = "TRAEFIK DEFAULT CERT";
/// Generous: bounds a probe that should succeed, never asserted on.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Connections a test server accepts at most.
const MAX_ACCEPTS: usize = 16;

type Chain = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn ca(cn: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf for `sans`, valid from `from` to `until` (years, January 1st).
fn leaf(
    cn: &str,
    sans: &[&str],
    (from, until): (i32, i32),
    ca: &CertifiedIssuer<'_, KeyPair>,
) -> Chain {
    let mut params =
        CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.not_before = date_time_ymd(from, 1, 1);
    params.not_after = date_time_ymd(until, 1, 1);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (
        vec![cert.der().clone(), ca.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

const CURRENT: (i32, i32) = (2024, 2099);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(chain: &Chain, versions: &[&'static SupportedProtocolVersion]) -> ServerConfig {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain.0.clone(), chain.1.clone_key())
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg
}

enum Behaviour {
    Tls(Arc<ServerConfig>),
    CloseAtOnce,
}

/// A server on 127.0.0.1 that serves connections one at a time until [`Self::finish`].
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<usize>,
}

fn serve(behaviour: Behaviour) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut served = 0;
        for _ in 0..MAX_ACCEPTS {
            let Ok((sock, _)) = listener.accept() else {
                break;
            };
            if stopped.load(Ordering::SeqCst) {
                break;
            }
            served += 1;
            match &behaviour {
                Behaviour::Tls(cfg) => serve_tls(sock, cfg.clone()),
                Behaviour::CloseAtOnce => drop(sock),
            }
        }
        served
    });
    Server { addr, stop, thread }
}

/// Handshake, then read until the client's close_notify or EOF (or an error: the
/// handshake failures are the tests' business, seen from the client).
fn serve_tls(sock: TcpStream, cfg: Arc<ServerConfig>) {
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    let conn = ServerConnection::new(cfg).unwrap();
    let mut stream = StreamOwned::new(conn, sock);
    let _ = stream.read_to_end(&mut Vec::new());
}

impl Server {
    fn tls(chain: &Chain, versions: &[&'static SupportedProtocolVersion]) -> Self {
        serve(Behaviour::Tls(Arc::new(server_config(chain, versions))))
    }

    /// Stops the server; returns how many connections it served.
    fn finish(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept; the server is done with every earlier connection by then.
        let _ = TcpStream::connect(self.addr);
        self.thread.join().unwrap()
    }
}

fn roots_of(ca: &CertifiedIssuer<'_, KeyPair>) -> Roots {
    Roots::from_der(vec![ca.der().clone()], "test CA")
}

fn alpn() -> Vec<String> {
    vec!["h2".into(), "http/1.1".into()]
}

fn presented(out: &ProbeOutcome) -> &Presented {
    out.presented
        .as_ref()
        .unwrap_or_else(|| panic!("no certificate seen: {out:?}"))
}

fn probe_one(
    chain: &Chain,
    versions: &[&'static SupportedProtocolVersion],
    sni: Option<&str>,
    roots: &Roots,
) -> ProbeOutcome {
    let server = Server::tls(chain, versions);
    let out = probe(server.addr, sni, &alpn(), roots, TIMEOUT);
    assert_eq!(server.finish(), 1);
    out
}

#[test]
fn a_certificate_for_another_name_is_a_mismatch() {
    let ca = ca("probe test CA");
    let default = leaf(DEFAULT_CN, &["0f3a.traefik.default"], CURRENT, &ca);
    let out = probe_one(&default, rustls::ALL_VERSIONS, Some(SNI), &roots_of(&ca));
    assert_eq!(out.error, None, "{out:?}");
    let p = presented(&out);
    assert_eq!(p.judgment.verdict, Verdict::Mismatch);
    assert_eq!(p.judgment.verdict.cause(), Some("tls_cert_mismatch"));
    assert_eq!(p.judgment.matches_name, Some(false));
    assert_eq!(
        p.judgment.trust,
        Trust::Trusted,
        "judged apart from the name"
    );
    assert_eq!(p.judgment.name, SNI);
    assert_eq!(p.leaf.names, ["0f3a.traefik.default"]);
    assert!(p.leaf.subject.contains(DEFAULT_CN), "{}", p.leaf.subject);
    assert_eq!(p.chain_len, 2);
    assert_eq!(p.version.as_deref(), Some("TLS 1.3"));
    assert_eq!(p.alpn.as_deref(), Some("h2"));
    assert_eq!(p.leaf.sha256.len(), 64);
}

#[test]
fn an_expired_certificate_is_expired_and_still_trusted() {
    let ca = ca("probe test CA");
    let expired = leaf(SNI, &[SNI], (2020, 2021), &ca);
    let out = probe_one(&expired, rustls::ALL_VERSIONS, Some(SNI), &roots_of(&ca));
    let p = presented(&out);
    assert_eq!(p.judgment.verdict, Verdict::Expired);
    assert_eq!(p.judgment.validity, Some(Validity::Expired));
    assert_eq!(p.judgment.matches_name, Some(true));
    assert_eq!(
        p.judgment.trust,
        Trust::Trusted,
        "trust judged inside the leaf's dates"
    );
    assert_eq!(
        p.leaf.not_after_unix_s, 1_609_459_200,
        "2021-01-01T00:00:00Z"
    );
}

#[test]
fn a_certificate_from_an_unknown_ca_is_untrusted() {
    let (ours, theirs) = (ca("probe test CA"), ca("some private CA"));
    let foreign = leaf(SNI, &[SNI], CURRENT, &theirs);
    let out = probe_one(&foreign, rustls::ALL_VERSIONS, Some(SNI), &roots_of(&ours));
    let p = presented(&out);
    let Verdict::Untrusted { why } = &p.judgment.verdict else {
        panic!("{:?}", p.judgment);
    };
    assert!(
        why.contains("issuer unknown") && why.contains("test CA"),
        "{why}"
    );
    assert_eq!(p.judgment.verdict.cause(), Some("tls_cert_untrusted"));
    assert_eq!(p.judgment.matches_name, Some(true));
}

/// A PEM file under the temp dir, removed on drop.
struct TempPem(PathBuf);

impl TempPem {
    fn new(name: &str, pem: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "faultline-tls-probe-{}-{name}.pem",
            std::process::id()
        ));
        std::fs::write(&path, pem).unwrap();
        Self(path)
    }
}

impl Drop for TempPem {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_good_certificate_with_cacert_is_valid() {
    let ca = ca("probe test CA");
    let good = leaf(SNI, &[SNI, "127.0.0.1"], CURRENT, &ca);
    let pem = TempPem::new("good", &ca.pem());
    let opts = ProbeOptions {
        cacert: Some(pem.0.clone()),
        ..ProbeOptions::default()
    };
    let roots = Roots::load(opts.cacert.as_deref()).unwrap();
    assert!(
        roots.source().starts_with("--cacert "),
        "{}",
        roots.source()
    );
    let out = probe_one(&good, rustls::ALL_VERSIONS, Some(SNI), &roots);
    assert_eq!(presented(&out).judgment.verdict, Verdict::Valid);
    assert_eq!(presented(&out).judgment.verdict.cause(), None);
    // No SNI: the address dialled is judged, against the iPAddress SANs.
    let out = probe_one(&good, rustls::ALL_VERSIONS, None, &roots);
    assert_eq!(presented(&out).judgment.name, "127.0.0.1");
    assert_eq!(presented(&out).judgment.verdict, Verdict::Valid);
}

#[test]
fn a_bad_cacert_file_is_an_error_at_load() {
    let empty = TempPem::new("empty", "not a certificate\n");
    assert!(matches!(
        Roots::load(Some(&empty.0)),
        Err(RootsError::Empty { .. })
    ));
    let missing = std::env::temp_dir().join("faultline-tls-probe-no-such-file.pem");
    assert!(matches!(
        Roots::load(Some(&missing)),
        Err(RootsError::Read { .. })
    ));
}

#[test]
fn tls13_only_and_tls12_only_servers_are_both_judged() {
    let ca = ca("probe test CA");
    let good = leaf(SNI, &[SNI], CURRENT, &ca);
    let roots = roots_of(&ca);
    for (version, name) in [
        (&rustls::version::TLS13, "TLS 1.3"),
        (&rustls::version::TLS12, "TLS 1.2"),
    ] {
        let out = probe_one(&good, &[version], Some(SNI), &roots);
        assert_eq!(out.error, None, "{name}: {out:?}");
        let p = presented(&out);
        assert_eq!(p.version.as_deref(), Some(name));
        assert_eq!(p.judgment.verdict, Verdict::Valid, "{name}");
    }
}

#[test]
fn no_trust_anchors_leave_trust_unjudged() {
    let ca = ca("probe test CA");
    let good = leaf(SNI, &[SNI], CURRENT, &ca);
    let none = Roots::from_der(Vec::new(), "none");
    let out = probe_one(&good, rustls::ALL_VERSIONS, Some(SNI), &none);
    assert!(
        matches!(
            presented(&out).judgment.verdict,
            Verdict::TrustUnknown { .. }
        ),
        "{out:?}"
    );
}

#[test]
fn a_server_that_aborts_after_its_certificate_gives_both() {
    let ca = ca("probe test CA");
    let good = leaf(SNI, &[SNI], CURRENT, &ca);
    let mut client_roots = RootCertStore::empty();
    client_roots.add(ca.der().clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(client_roots), provider())
        .build()
        .unwrap();
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(good.0.clone(), good.1.clone_key())
        .unwrap();
    let server = serve(Behaviour::Tls(Arc::new(cfg)));
    let out = probe(server.addr, Some(SNI), &[], &roots_of(&ca), TIMEOUT);
    server.finish();
    assert_eq!(presented(&out).judgment.verdict, Verdict::Valid);
    // TLS 1.3: the client's Finished completes its side; the server's refusal comes
    // after, or the probe has already closed. Either way the certificate was judged.
    if let Some(e) = &out.error {
        assert!(
            matches!(
                e,
                ProbeError::Alert { .. } | ProbeError::Closed | ProbeError::Reset { .. }
            ),
            "{e:?}"
        );
    }
}

#[test]
fn a_server_that_closes_at_once_is_an_error_outcome() {
    let server = serve(Behaviour::CloseAtOnce);
    let roots = Roots::from_der(Vec::new(), "none");
    let out = probe(server.addr, Some(SNI), &alpn(), &roots, TIMEOUT);
    server.finish();
    assert_eq!(out.presented, None);
    assert!(
        matches!(
            out.error,
            Some(ProbeError::Closed | ProbeError::Reset { .. })
        ),
        "{out:?}"
    );
}

#[test]
fn a_port_with_nothing_listening_is_refused() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let roots = Roots::from_der(Vec::new(), "none");
    let out = probe(port, Some(SNI), &[], &roots, TIMEOUT);
    assert_eq!(out.error, Some(ProbeError::Refused), "{out:?}");
    assert_eq!(out.presented, None);
}

#[test]
fn a_server_that_never_answers_times_out() {
    // Listening, never accepting: the kernel completes the TCP handshake, nobody reads.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let roots = Roots::from_der(Vec::new(), "none");
    let timeout = Duration::from_millis(200);
    let out = probe(
        silent.local_addr().unwrap(),
        Some(SNI),
        &[],
        &roots,
        timeout,
    );
    assert_eq!(
        out.error,
        Some(ProbeError::Timeout {
            stage: Stage::Handshake,
            timeout_ms: 200
        })
    );
}

#[test]
fn an_sni_rustls_cannot_send_is_an_error_outcome() {
    let roots = Roots::from_der(Vec::new(), "none");
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let out = probe(addr, Some("not a name!"), &[], &roots, TIMEOUT);
    assert!(
        matches!(out.error, Some(ProbeError::BadSni { .. })),
        "{out:?}"
    );
}

#[test]
fn a_not_yet_valid_certificate_is_judged_so() {
    let ca = ca("probe test CA");
    let future = leaf(SNI, &[SNI], (2090, 2099), &ca);
    let (leaf, j) = judge(&future.0, &roots_of(&ca), SNI, 1_800_000_000).unwrap();
    assert_eq!(j.verdict, Verdict::NotYetValid);
    assert_eq!(j.at_unix_s, 1_800_000_000);
    assert_eq!(j.trust, Trust::Trusted);
    assert_eq!(leaf.names, [SNI]);
    assert!(judge(&[], &roots_of(&ca), SNI, 0).is_none());
    let garbage = [CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])];
    let (_, j) = judge(&garbage, &roots_of(&ca), SNI, 0).unwrap();
    assert!(matches!(j.verdict, Verdict::Untrusted { .. }), "{j:?}");
    assert_eq!(j.matches_name, None);
}

mod plan;
