//! Privileged end-to-end tests of the TLS library probes: foreign clients over HTTPS,
//! whose bytes on the wire are encrypted, named per request from the plaintext their TLS
//! library handled: curl and Python through OpenSSL's `SSL_write`/`SSL_read`, and a
//! stripped Go client (`-ldflags '-s -w'`, net/http over TLS with HTTP/2: the stack of
//! vegeta and k6) through `crypto/tls.(*Conn).Write`/`Read`, found via `.gopclntab`.
//! Also the clean run that used to be reported as failures: a Go client against nginx
//! ending its connections with GOAWAY after its keep-alive limit. Needs root.
mod analyzer_support;

use std::path::PathBuf;

use analyzer::{
    attach::{AttachOptions, Backend},
    recording::FilterConfig,
    session::SessionOptions,
};
use analyzer_support::{Session, assert_top, text};
use serde_json::Value;
use testbed::{
    Config, Testbed,
    foreign::{GoClient, Nginx, PythonGet, SERVER_NAME, curl},
};

/// A session on `port` that also probes the Go binaries `exes`.
fn session(port: u16, exes: Vec<PathBuf>) -> Session {
    Session::start(SessionOptions {
        attach: AttachOptions {
            filter: FilterConfig {
                ports: vec![port],
                ..FilterConfig::default()
            },
            backend: Backend::Ebpf,
            tls_exes: exes,
            ..AttachOptions::default()
        },
        all: true,
        ..SessionOptions::default()
    })
}

/// The testbed with `fault`; `run` gets the https URL's parts: (name, port, addr, CA).
fn with_fault(fault: &str, exes: Vec<PathBuf>, run: impl FnOnce(&Testbed)) -> Value {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tb = rt
        .block_on(Testbed::start(Config::with_specs([fault]).unwrap()))
        .unwrap();
    let addr = tb.addr(fault).unwrap();
    let s = session(addr.port(), exes);
    run(&tb);
    let (outcome, report) = s.finish();
    rt.block_on(tb.shutdown());
    assert!(
        outcome.plaintext.is_some_and(|p| p.calls > 0),
        "nothing captured: {outcome:?}"
    );
    report
}

/// curl's flags for the testbed over TLS: `--resolve`, `--cacert`, and the URL.
fn curl_tls(tb: &Testbed, fault: &str, extra: &[&str], urls: usize) -> Vec<String> {
    let addr = tb.addr(fault).unwrap();
    let name = tb.server_name();
    let mut args: Vec<String> = vec![
        "-s".into(),
        "-o".into(),
        "/dev/null".into(),
        "--resolve".into(),
        format!("{name}:{}:{}", addr.port(), addr.ip()),
        "--cacert".into(),
        tb.ca_path().to_str().unwrap().into(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    for _ in 0..urls {
        args.push(format!("https://{name}:{}/", addr.port()));
    }
    args
}

fn go_client_for(tb: &Testbed, fault: &str) -> GoClient {
    let addr = tb.addr(fault).unwrap();
    GoClient::new(format!("https://{addr}/"))
        .cacert(tb.ca_path())
        .server_name(tb.server_name())
        .h2()
}

/// curl over HTTPS negotiates h2: the server's RST_STREAM, read by the OpenSSL probes,
/// once per request. (INTERNAL_ERROR: curl retries a REFUSED_STREAM on its own, and
/// each retried stream would count.)
#[test]
fn curl_h2_over_tls_rst_stream_read_through_openssl() {
    let fault = "rst-stream:INTERNAL_ERROR";
    let r = with_fault(fault, vec![], |tb| {
        for _ in 0..2 {
            let args = curl_tls(tb, fault, &[], 1);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            assert!(!curl(&args).unwrap().success(), "the stream was reset");
        }
    });
    let t = assert_top(&r, "h2_rst_stream");
    assert_eq!(t["detail"], "INTERNAL_ERROR", "{t:#}");
    assert_eq!(t["count"], 2, "{t:#}");
    let http: Vec<&Value> = r["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.get("http"))
        .collect();
    assert!(http.iter().all(|h| h["protocol"] == "h2"), "{http:#?}");
}

/// curl over HTTPS with HTTP/1.1: two requests on one connection, both 503, read from
/// OpenSSL's plaintext: two failures.
#[test]
fn curl_http1_over_tls_statuses_read_through_openssl() {
    let fault = "status:503";
    let r = with_fault(fault, vec![], |tb| {
        let args = curl_tls(tb, fault, &["--http1.1"], 2);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert!(curl(&args).unwrap().success());
    });
    let t = assert_top(&r, "http_status");
    assert_eq!(t["detail"], "503", "{t:#}");
    assert_eq!(t["count"], 2, "{t:#}");
}

/// Python's http.client over ssl (OpenSSL): a 503, read through the OpenSSL probes.
#[test]
fn python_https_status_read_through_openssl() {
    let fault = "status:503";
    let r = with_fault(fault, vec![], |tb| {
        let addr = tb.addr(fault).unwrap();
        let run = PythonGet::new(format!("https://{addr}/"))
            .cacert(tb.ca_path())
            .server_name(tb.server_name())
            .run()
            .unwrap();
        assert!(run.stdout.contains("503"), "{run:?}");
    });
    let t = assert_top(&r, "http_status");
    assert_eq!(t["detail"], "503", "{t:#}");
    assert_eq!(t["count"], 1, "{t:#}");
}

/// A stripped Go client (net/http, HTTP/2 over TLS) against RST_STREAM INTERNAL_ERROR:
/// each of its three requests is named, from crypto/tls's plaintext.
#[test]
fn stripped_go_client_h2_rst_stream_read_through_go_tls() {
    let fault = "rst-stream:INTERNAL_ERROR";
    let exe = GoClient::binary().expect("the Go client builds (golang-go)");
    let r = with_fault(fault, vec![exe.clone()], |tb| {
        let s = go_client_for(tb, fault).requests(3).run().unwrap();
        assert_eq!(s.errors_containing("INTERNAL_ERROR"), 3, "{s:?}");
    });
    let attached = text(&r["run"]["probes"]["attached"]);
    assert!(attached.contains("crypto/tls.(*Conn).Write"), "{attached}");
    let t = assert_top(&r, "h2_rst_stream");
    assert_eq!(t["detail"], "INTERNAL_ERROR", "{t:#}");
    assert_eq!(t["count"], 3, "{t:#}");
}

/// The clean run: a Go client makes 40 requests over HTTP/2 to nginx, which ends each
/// connection with GOAWAY NO_ERROR after 10 requests. Go may also dial a spare
/// connection and drop it unused, right after its ClientHello or after the handshake:
/// neither is a failure. Every request succeeds; Go closes
/// drained connections with control frames unread, which the kernel answers with RSTs.
/// The plaintext shows every request answered: no failure, no cause.
#[test]
fn go_client_against_nginx_keepalive_limit_is_a_clean_run() {
    let nginx = Nginx::start().expect("nginx (nginx-light)");
    let exe = GoClient::binary().expect("the Go client builds (golang-go)");
    let addr = nginx.h2_addr();
    let s = session(addr.port(), vec![exe]);
    let sum = GoClient::new(format!("https://{addr}/ok"))
        .cacert(nginx.ca_path())
        .server_name(SERVER_NAME)
        .h2()
        .requests(40)
        .concurrency(1)
        .run()
        .unwrap();
    assert_eq!(sum.ok, 40, "{sum:?}");
    assert!(sum.conns_new >= 4, "nginx ended connections: {sum:?}");
    let (_, r) = s.finish();
    // Every connection that carried requests is clean, however Go ended it (drained
    // pooled connections are reset with nginx's GOAWAY unread).
    let conns = r["connections"].as_array().unwrap();
    let carried: Vec<&Value> = conns
        .iter()
        .filter(|c| c["http"]["requests"].as_u64().unwrap_or(0) > 0)
        .collect();
    assert!(carried.len() >= 4, "{r:#}");
    for c in &carried {
        assert!(c.get("cause").is_none(), "{c:#}");
    }
    // Nor is a connection Go dialled and dropped unused.
    assert_eq!(r["totals"]["failures"], 0, "{r:#}");
    assert!(r["causes"].as_array().unwrap().is_empty(), "{r:#}");
    // Requests read whole (a connection whose tally missed bytes is left out).
    assert!(
        r["totals"]["plaintext_requests"].as_u64().unwrap() >= 20,
        "{:#}",
        r["totals"]
    );
}
/// curl over HTTPS with HTTP/2: two requests on one connection, both 503. The status is
/// HPACK-coded (the second one from the dynamic table): read per request.
#[test]
fn curl_h2_over_tls_statuses_read_through_hpack() {
    let fault = "status:503";
    let r = with_fault(fault, vec![], |tb| {
        let args = curl_tls(tb, fault, &[], 2);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert!(curl(&args).unwrap().success());
    });
    let t = assert_top(&r, "http_status");
    assert_eq!(t["detail"], "503", "{t:#}");
    assert_eq!(t["count"], 2, "{t:#}");
}

/// The stripped Go client over HTTP/2 with TLS against 503: three failures, one per
/// request, from crypto/tls's plaintext and HPACK.
#[test]
fn stripped_go_client_h2_statuses_read_through_go_tls() {
    let fault = "status:503";
    let exe = GoClient::binary().expect("the Go client builds (golang-go)");
    let r = with_fault(fault, vec![exe], |tb| {
        let s = go_client_for(tb, fault).requests(3).run().unwrap();
        assert_eq!(s.status.get("503"), Some(&3), "{s:?}");
    });
    let t = assert_top(&r, "http_status");
    assert_eq!(t["detail"], "503", "{t:#}");
    assert_eq!(t["count"], 3, "{t:#}");
}
