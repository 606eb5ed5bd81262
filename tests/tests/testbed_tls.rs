//! TLS on the testbed: ALPN routing, SNI-based certificate choice, and the three
//! certificate faults as a rustls client (and curl) sees them.

mod testbed_support;

use rustls::CertificateError;
use testbed_support::*;

const NAME: &str = testbed::DEFAULT_SERVER_NAME;

fn is_not_valid_for_name(err: &rustls::Error) -> bool {
    matches!(
        err,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    )
}

#[tokio::test]
async fn tls_alpn_h2_serves_http2() {
    let testbed = start(&["ok"]).await;
    let addr = testbed.addr("ok").unwrap();
    let (connector, presented) = tls_client(&testbed, &[b"h2", b"http/1.1"]);
    let tls = tls_connect(&connector, addr, NAME)
        .await
        .expect("TLS to ok");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    let (cn, sans) = names(&presented.lock().unwrap()[0]);
    assert_eq!(cn, NAME);
    assert!(sans.iter().any(|s| s == NAME), "{sans:?}");

    let (mut send, _conn) = h2_client(tls).await;
    let (status, body) = h2_get(&mut send).await.expect("h2 GET");
    assert_eq!(status, http::StatusCode::OK);
    assert_eq!(body, b"ok");
}

#[tokio::test]
async fn tls_alpn_http11_and_no_alpn_serve_http1() {
    let testbed = start(&["ok:size=3000"]).await;
    let addr = testbed.addr("ok:size=3000").unwrap();
    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let (connector, _) = tls_client(&testbed, alpn);
        let mut tls = tls_connect(&connector, addr, NAME).await.expect("TLS");
        let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        assert_eq!(negotiated, alpn.first().map(|p| p.to_vec()));
        let mut buf = Vec::new();
        for _ in 0..2 {
            let (head, body) = get(&mut tls, &mut buf).await.expect("GET over TLS");
            assert_eq!(head.status, 200);
            assert_eq!(body.len(), 3000);
            assert!(body.starts_with(b"okok"));
        }
    }
}

#[tokio::test]
async fn tls_by_ip_without_sni_gets_good_leaf() {
    let testbed = start(&["ok"]).await;
    let addr = testbed.addr("ok").unwrap();
    let (connector, presented) = tls_client(&testbed, &[b"http/1.1"]);
    // An IP server name sends no SNI (RFC 6066 section 3); the leaf's IP SAN matches.
    let mut tls = tls_connect(&connector, addr, "127.0.0.1")
        .await
        .expect("TLS by IP");
    assert_eq!(names(&presented.lock().unwrap()[0]).0, NAME);
    let (head, _) = get(&mut tls, &mut Vec::new()).await.expect("GET");
    assert_eq!(head.status, 200);
}

#[tokio::test]
async fn unknown_sni_gets_default_cert_like_traefik() {
    let testbed = start(&["ok"]).await;
    let addr = testbed.addr("ok").unwrap();
    let (connector, presented) = tls_client(&testbed, &[b"h2"]);
    let err = tls_connect(&connector, addr, "api.example.test")
        .await
        .expect_err("the default cert is not valid for another name");
    assert!(is_not_valid_for_name(rustls_error(&err)), "{err:?}");
    let (cn, sans) = names(&presented.lock().unwrap()[0]);
    assert_eq!(cn, "FAULTLINE TESTBED DEFAULT CERT");
    assert_eq!(sans, ["default.invalid"]);
}

#[tokio::test]
async fn wrong_cert_fails_only_on_the_name() {
    let testbed = start(&["wrong-cert"]).await;
    let addr = testbed.addr("wrong-cert").unwrap();
    let (connector, presented) = tls_client(&testbed, &[b"h2"]);
    let err = tls_connect(&connector, addr, NAME)
        .await
        .expect_err("wrong-cert must fail");
    let tls_err = rustls_error(&err);
    assert!(is_not_valid_for_name(tls_err), "{tls_err:?}");
    let presented = presented.lock().unwrap();
    assert_eq!(presented.len(), 1);
    let (cn, sans) = names(&presented[0]);
    assert_eq!(cn, "FAULTLINE TESTBED DEFAULT CERT");
    assert_eq!(sans, ["default.invalid"]);
}

#[tokio::test]
async fn untrusted_cert_is_unknown_issuer() {
    let testbed = start(&["untrusted-cert"]).await;
    let addr = testbed.addr("untrusted-cert").unwrap();
    let (connector, presented) = tls_client(&testbed, &[b"h2"]);
    let err = tls_connect(&connector, addr, NAME)
        .await
        .expect_err("untrusted-cert must fail");
    assert!(
        matches!(
            rustls_error(&err),
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
        ),
        "{err:?}"
    );
    assert_eq!(names(&presented.lock().unwrap()[0]).0, NAME);
}

#[tokio::test]
async fn expired_cert_is_expired() {
    let testbed = start(&["expired-cert"]).await;
    let addr = testbed.addr("expired-cert").unwrap();
    let (connector, presented) = tls_client(&testbed, &[b"h2"]);
    let err = tls_connect(&connector, addr, NAME)
        .await
        .expect_err("expired-cert must fail");
    assert!(
        matches!(
            rustls_error(&err),
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            )
        ),
        "{err:?}"
    );
    assert_eq!(names(&presented.lock().unwrap()[0]).0, NAME);
}

#[tokio::test]
async fn cert_faults_serve_plaintext_normally() {
    let testbed = start(&["wrong-cert", "untrusted-cert", "expired-cert"]).await;
    for listener in testbed.listeners() {
        let mut tcp = connect(listener.addr).await;
        let (head, body) = get(&mut tcp, &mut Vec::new()).await.expect("plaintext GET");
        assert_eq!(head.status, 200, "{}", listener.spec);
        assert_eq!(body, b"ok");
    }
}

/// curl (OpenSSL + nghttp2) as an independent client: ALPN h2 with the written CA file,
/// and the name-mismatch failure on wrong-cert.
#[tokio::test]
async fn curl_speaks_h2_and_rejects_wrong_cert() {
    let curl = std::path::Path::new("/usr/bin/curl");
    if !curl.exists() {
        eprintln!("skipping: /usr/bin/curl is not installed");
        return;
    }
    let testbed = start(&["ok", "wrong-cert"]).await;
    let run = |addr: std::net::SocketAddr| {
        let mut cmd = tokio::process::Command::new(curl);
        cmd.args(["-sS", "--max-time", "5", "--http2", "--cacert"])
            .arg(testbed.ca_path())
            .arg("--resolve")
            .arg(format!("{NAME}:{}:127.0.0.1", addr.port()))
            .args(["-w", "\n%{http_version} %{http_code}"])
            .arg(format!("https://{NAME}:{}/", addr.port()));
        cmd.output()
    };
    let ok = bounded("curl", run(testbed.addr("ok").unwrap()))
        .await
        .expect("run curl");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(stdout, "ok\n2 200");

    let wrong = bounded("curl", run(testbed.addr("wrong-cert").unwrap()))
        .await
        .expect("run curl");
    // curl exit 60: peer certificate cannot be authenticated with known CA certificates.
    assert_eq!(wrong.status.code(), Some(60), "{wrong:?}");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains(NAME), "{stderr}");
}
