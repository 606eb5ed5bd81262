//! The foreign servers and clients of `testbed::foreign` checked against each other:
//! each server starts and answers its healthy path, and each fault path fails the way
//! the real software fails, as real clients see it. The last test runs the analyzer's
//! eBPF session beside curl against nginx (needs root).
mod analyzer_support;

use std::net::SocketAddr;
use std::time::Duration;

use analyzer::attach::Backend;
use analyzer_support::{Session, assert_top};
use testbed::foreign::{
    ClientRun, DEFAULT_CERT_NAME, GoClient, GoServer, Haproxy, NGINX_KEEPALIVE_REQUESTS, Nginx,
    PythonGet, SERVER_NAME, curl, h2load, nghttp,
};

fn url(scheme: &str, addr: SocketAddr, path: &str) -> String {
    format!("{scheme}://{addr}{path}")
}

/// `https://api.test:PORT/PATH` and the `--resolve` that sends it to `addr`.
fn named_url(addr: SocketAddr, path: &str) -> (String, String) {
    (
        format!("https://{SERVER_NAME}:{}{path}", addr.port()),
        format!("{SERVER_NAME}:{}:{}", addr.port(), addr.ip()),
    )
}

/// curl printing only `-w FORMAT` (body discarded).
fn curl_w(format: &str, args: &[&str]) -> ClientRun {
    let mut all = vec!["-o", "/dev/null", "-w", format];
    all.extend_from_slice(args);
    curl(&all).expect("curl runs")
}

fn assert_code(run: &ClientRun, code: i32, what: &str) {
    assert_eq!(run.code, Some(code), "{what}: {run:?}");
}

#[test]
fn nginx_plain_paths_answer_as_configured() {
    let nginx = Nginx::start().expect("nginx starts");
    let a = nginx.http_addr();
    let ok = curl_w("%{http_code}", &[&url("http", a, "/ok")]);
    assert_code(&ok, 0, "curl /ok");
    assert_eq!(ok.stdout, "200");
    assert_eq!(
        curl_w("%{http_code}", &[&url("http", a, "/503")]).stdout,
        "503"
    );
    let empty = curl(&[&url("http", a, "/444")]).unwrap();
    assert_code(&empty, 52, "curl /444: empty reply");
    assert!(empty.stderr.contains("Empty reply"), "{empty:?}");

    let go = GoClient::new(url("http", a, "/444"))
        .requests(2)
        .run()
        .unwrap();
    assert_eq!(go.errors_containing("EOF"), 2, "{go:?}");
    let py = PythonGet::new(url("http", a, "/444")).run().unwrap();
    assert_eq!(py.json().unwrap()["error"], "RemoteDisconnected", "{py:?}");
    let py = PythonGet::new(url("http", a, "/ok")).run().unwrap();
    assert_eq!(py.json().unwrap()["status"], 200, "{py:?}");
}

#[test]
fn nginx_h2_server_answers_over_http2() {
    let nginx = Nginx::start().expect("nginx starts");
    let a = nginx.h2_addr();
    let insecure = curl_w(
        "%{http_version}",
        &["--http2", "-k", &url("https", a, "/ok")],
    );
    assert_code(&insecure, 0, "curl --http2 -k");
    assert_eq!(insecure.stdout, "2");
    // Verified against the CA, by name.
    let (u, resolve) = named_url(a, "/ok");
    let ca = nginx.ca_path().to_str().unwrap();
    let verified = curl_w(
        "%{http_version} %{http_code}",
        &["--http2", "--cacert", ca, "--resolve", &resolve, &u],
    );
    assert_eq!(verified.stdout, "2 200", "{verified:?}");
    let nghttp = nghttp(&[&url("https", a, "/ok")]).unwrap();
    assert_code(&nghttp, 0, "nghttp");
    assert_eq!(nghttp.stdout, "ok\n");
    let py = PythonGet::new(url("https", a, "/ok"))
        .cacert(nginx.ca_path())
        .server_name(SERVER_NAME)
        .run()
        .unwrap();
    assert_eq!(py.json().unwrap()["status"], 200, "{py:?}");
}

#[test]
fn nginx_default_cert_fails_verification_for_the_name_asked() {
    let nginx = Nginx::start().expect("nginx starts");
    let a = nginx.default_cert_addr();
    let ca = nginx.ca_path();
    let (u, resolve) = named_url(a, "/ok");
    let run = curl(&["--cacert", ca.to_str().unwrap(), "--resolve", &resolve, &u]).unwrap();
    assert_code(&run, 60, "curl: certificate verification failed");
    assert!(run.stderr.contains(SERVER_NAME), "{run:?}");
    // Nothing else is wrong: without verification it answers.
    let k = curl_w("%{http_code}", &["-k", "--resolve", &resolve, &u]);
    assert_eq!(k.stdout, "200", "{k:?}");

    let go = GoClient::new(url("https", a, "/ok"))
        .cacert(ca)
        .server_name(SERVER_NAME)
        .h2()
        .requests(2)
        .run()
        .unwrap();
    let want = format!("certificate is valid for {DEFAULT_CERT_NAME}, not {SERVER_NAME}");
    assert_eq!(go.errors_containing(&want), 2, "{go:?}");
    let py = PythonGet::new(url("https", a, "/ok"))
        .cacert(ca)
        .server_name(SERVER_NAME)
        .run()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(py["error"], "SSLCertVerificationError", "{py}");
    assert!(
        py["message"]
            .as_str()
            .unwrap()
            .contains("Hostname mismatch"),
        "{py}"
    );
}

/// nginx ends an HTTP/2 connection with GOAWAY NO_ERROR after `keepalive_requests`;
/// Go's transport moves to a new connection and no request fails.
#[test]
fn nginx_goaway_after_keepalive_requests_costs_the_go_client_nothing() {
    let nginx = Nginx::start().expect("nginx starts");
    let go = GoClient::new(url("https", nginx.h2_addr(), "/ok"))
        .cacert(nginx.ca_path())
        .h2()
        .requests(50)
        .run()
        .unwrap();
    eprintln!("go client, 50 sequential h2 requests: {go:?}");
    assert_eq!(go.ok, 50, "{go:?}");
    assert_eq!(go.protos.get("HTTP/2.0"), Some(&50), "{go:?}");
    let at_least = u64::from(50 / NGINX_KEEPALIVE_REQUESTS);
    assert!(go.local_addrs >= at_least, "{go:?}");
    assert!(go.conns_new >= at_least, "{go:?}");
}

/// h2load, unlike Go, does not open a new connection after the GOAWAY: the requests
/// left for that connection fail.
#[test]
fn h2load_stops_a_connection_at_nginx_goaway() {
    let nginx = Nginx::start().expect("nginx starts");
    let run = h2load(&["-n", "30", "-c", "1", &url("https", nginx.h2_addr(), "/ok")]).unwrap();
    eprintln!("{}", run.stdout);
    let want = format!("{NGINX_KEEPALIVE_REQUESTS} succeeded");
    assert!(run.stdout.contains(&want), "{run:?}");
}

/// nginx's 444 over HTTP/2 is RST_STREAM PROTOCOL_ERROR; Go's HTTP/2 transport takes it
/// for a retryable refusal (golang/go#47635) and sends the GET again on new connections
/// until the client's timeout: one request, many connections.
#[test]
fn go_client_retries_nginx_h2_444_on_new_connections_until_its_timeout() {
    let nginx = Nginx::start().expect("nginx starts");
    let go = GoClient::new(url("https", nginx.h2_addr(), "/444"))
        .cacert(nginx.ca_path())
        .h2()
        .timeout(Duration::from_millis(500))
        .run()
        .unwrap();
    eprintln!("go client, one h2 GET of nginx /444: {go:?}");
    assert_eq!(go.errors_containing("Client.Timeout exceeded"), 1, "{go:?}");
    assert!(go.conns_new > 1, "{go:?}");
    let nghttp = nghttp(&["-v", &url("https", nginx.h2_addr(), "/444")]).unwrap();
    assert!(
        nghttp.stdout.contains("recv RST_STREAM") && nghttp.stdout.contains("PROTOCOL_ERROR"),
        "{nghttp:?}"
    );
}

#[test]
fn haproxy_reject_is_an_empty_reply_and_other_paths_answer() {
    let haproxy = Haproxy::start().expect("haproxy starts");
    let a = haproxy.addr();
    assert_eq!(
        curl_w("%{http_code}", &[&url("http", a, "/ok")]).stdout,
        "200"
    );
    assert_eq!(
        curl_w("%{http_code}", &[&url("http", a, "/503")]).stdout,
        "503"
    );
    let rejected = curl(&[&url("http", a, "/reject")]).unwrap();
    assert_code(&rejected, 52, "curl /reject: empty reply");
    let go = GoClient::new(url("http", a, "/reject")).run().unwrap();
    assert_eq!(go.errors_containing("EOF"), 1, "{go:?}");
    let go = GoClient::new(url("http", a, "/ok")).run().unwrap();
    assert_eq!(go.ok, 1, "{go:?}");
}

#[test]
fn go_server_paths_over_http1() {
    let server = GoServer::start().expect("go server starts");
    let plain = server.plain_addr();
    assert_eq!(
        curl_w("%{http_code}", &[&url("http", plain, "/ok")]).stdout,
        "200"
    );
    assert_eq!(
        curl_w("%{http_code}", &[&url("http", plain, "/503")]).stdout,
        "503"
    );
    assert_code(
        &curl(&[&url("http", plain, "/panic")]).unwrap(),
        52,
        "/panic",
    );
    assert_code(&curl(&[&url("http", plain, "/cut")]).unwrap(), 18, "/cut");

    let tls = server.tls_addr();
    let ca = server.ca_path().to_str().unwrap();
    let h1 = curl_w(
        "%{http_version}",
        &["--http1.1", "--cacert", ca, &url("https", tls, "/ok")],
    );
    assert_eq!(h1.stdout, "1.1", "{h1:?}");
    let go = |path: &str| {
        GoClient::new(url("https", tls, path))
            .cacert(ca)
            .requests(2)
            .run()
            .unwrap()
    };
    let ok = go("/ok");
    assert_eq!((ok.ok, ok.protos.get("HTTP/1.1")), (2, Some(&2)), "{ok:?}");
    assert_eq!(go("/panic").errors_containing("EOF"), 2);
    assert_eq!(go("/cut").errors_containing("read body: unexpected EOF"), 2);
}

#[test]
fn go_server_paths_over_h2() {
    let server = GoServer::start().expect("go server starts");
    let tls = server.tls_addr();
    let ca = server.ca_path().to_str().unwrap();
    let h2 = curl_w(
        "%{http_version}",
        &["--http2", "--cacert", ca, &url("https", tls, "/ok")],
    );
    assert_eq!(h2.stdout, "2", "{h2:?}");
    let panic = curl(&["--http2", "--cacert", ca, &url("https", tls, "/panic")]).unwrap();
    assert_code(&panic, 92, "curl: HTTP/2 stream error");
    assert!(panic.stderr.contains("INTERNAL_ERROR"), "{panic:?}");
    let go = |path: &str| {
        GoClient::new(url("https", tls, path))
            .cacert(ca)
            .h2()
            .requests(3)
            .run()
            .unwrap()
    };
    let ok = go("/ok");
    assert_eq!((ok.ok, ok.protos.get("HTTP/2.0")), (3, Some(&3)), "{ok:?}");
    let panic = go("/panic");
    assert_eq!(panic.errors_containing("stream error"), 3, "{panic:?}");
    assert_eq!(panic.errors_containing("INTERNAL_ERROR"), 3, "{panic:?}");
    assert_eq!(go("/cut").errors_containing("unexpected EOF"), 3);
    let unavailable = go("/503");
    assert_eq!(unavailable.status.get("503"), Some(&3), "{unavailable:?}");
}

/// The client is stripped like release builds of vegeta and k6: no symbol table, only
/// Go's own pclntab to find functions by.
#[test]
fn go_client_binary_is_stripped() {
    let bytes = std::fs::read(GoClient::binary().expect("go client builds")).unwrap();
    let has = |name: &[u8]| bytes.windows(name.len()).any(|w| w == name);
    assert!(!has(b".symtab\0"), "the client has a symbol table");
    assert!(has(b".gopclntab\0"));
}

/// curl gets nginx's `return 444` (a close with no reply) three times; the analyzer,
/// from the kernel's TCP counters alone, names it an empty reply. Needs root.
#[test]
fn analyzer_names_nginx_444_an_empty_reply_for_curl() {
    let nginx = Nginx::start().expect("nginx starts");
    let a = nginx.http_addr();
    let session = Session::on_port(a.port(), Backend::Ebpf);
    for _ in 0..3 {
        let run = curl(&[&url("http", a, "/444")]).unwrap();
        assert_code(&run, 52, "curl /444");
    }
    let (_, report) = session.stop_drained();
    let r = serde_json::to_value(&report).unwrap();
    let t = assert_top(&r, "empty_reply");
    assert_eq!(t["count"], 3, "{t:#}");
}
