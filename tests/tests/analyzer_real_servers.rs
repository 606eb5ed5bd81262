//! Privileged end-to-end tests against real third-party servers (Debian's nginx and
//! HAProxy, a Go net/http server) with foreign clients, one test per case of issue 12:
//! the analyzer must name each failure without the client's cooperation, on the eBPF
//! backend (the raw backend too where it can see the evidence). Needs root, and the
//! packages `cargo xtask setup` installs.
mod analyzer_support;

use std::path::PathBuf;

use analyzer::{
    attach::{AttachOptions, Backend},
    recording::FilterConfig,
    session::SessionOptions,
};
use analyzer_support::{Session, assert_top, text};
use serde_json::Value;
use testbed::foreign::{GoClient, GoServer, Haproxy, Nginx, curl};

fn session(port: u16, backend: Backend, exes: Vec<PathBuf>) -> Session {
    Session::start(SessionOptions {
        attach: AttachOptions {
            filter: FilterConfig {
                ports: vec![port],
                ..FilterConfig::default()
            },
            backend,
            tls_exes: exes,
            ..AttachOptions::default()
        },
        all: true,
        ..SessionOptions::default()
    })
}

/// curl `url` `times` times (one connection each); each must fail.
fn failing_curl(url: &str, times: usize) {
    for _ in 0..times {
        let run = curl(&["-o", "/dev/null", url]).unwrap();
        assert!(!run.success(), "curl {url} must fail: {run:?}");
    }
}

fn recorded(port: u16, backend: Backend, run: impl FnOnce()) -> Value {
    let s = session(port, backend, vec![]);
    run();
    s.finish().1
}

/// nginx `return 444`: it closes without a byte of answer. The eBPF backend says so
/// from the kernel's TCP counters and curl's plaintext; the raw backend from the bytes
/// on the wire.
#[test]
fn nginx_444_is_an_empty_reply_on_both_backends() {
    let nginx = Nginx::start().expect("nginx (nginx-light)");
    let addr = nginx.http_addr();
    let url = format!("http://{addr}/444");
    for backend in [Backend::Ebpf, Backend::Raw] {
        let r = recorded(addr.port(), backend, || failing_curl(&url, 3));
        let t = assert_top(&r, "empty_reply");
        assert_eq!(t["count"], 3, "{backend:?}: {t:#}");
    }
}

/// HAProxy `http-request reject`: the same, from another proxy.
#[test]
fn haproxy_reject_is_an_empty_reply() {
    let hap = Haproxy::start().expect("haproxy");
    let addr = hap.addr();
    let url = format!("http://{addr}/reject");
    let r = recorded(addr.port(), Backend::Ebpf, || failing_curl(&url, 2));
    let t = assert_top(&r, "empty_reply");
    assert_eq!(t["count"], 2, "{t:#}");
}

/// A Go handler that panics, over HTTP/1.1: net/http closes the connection with no
/// response.
#[test]
fn go_server_panic_over_http1_is_an_empty_reply() {
    let go = GoServer::start().expect("the Go server builds (golang-go)");
    let addr = go.plain_addr();
    let url = format!("http://{addr}/panic");
    let r = recorded(addr.port(), Backend::Ebpf, || failing_curl(&url, 2));
    let t = assert_top(&r, "empty_reply");
    assert_eq!(t["count"], 2, "{t:#}");
}

/// A Go handler that announces 1000 bytes and writes 10, over HTTP/1.1: the answer is
/// cut by the server's close, and curl's plaintext shows the framing unfinished.
#[test]
fn go_server_answer_cut_over_http1_is_a_peer_close_mid_answer() {
    let go = GoServer::start().expect("the Go server builds (golang-go)");
    let addr = go.plain_addr();
    let url = format!("http://{addr}/cut");
    let r = recorded(addr.port(), Backend::Ebpf, || failing_curl(&url, 2));
    let t = assert_top(&r, "peer_fin_outstanding");
    assert_eq!(t["count"], 2, "{t:#}");
    assert!(text(t).contains("1 answer cut"), "{t:#}");
}

/// A Go handler that panics, over HTTP/2 with TLS, under a stripped Go client (the stack
/// of vegeta and k6): the server resets the stream with INTERNAL_ERROR, read from the
/// client's crypto/tls plaintext, once per request.
#[test]
fn go_server_panic_over_h2_is_rst_stream_internal_error_for_a_go_client() {
    let go = GoServer::start().expect("the Go server builds (golang-go)");
    let exe = GoClient::binary().expect("the Go client builds (golang-go)");
    let addr = go.tls_addr();
    let s = session(addr.port(), Backend::Ebpf, vec![exe]);
    let sum = GoClient::new(format!("https://{addr}/panic"))
        .cacert(go.ca_path())
        .server_name(testbed::foreign::SERVER_NAME)
        .h2()
        .requests(2)
        .run()
        .unwrap();
    assert_eq!(sum.errors_containing("INTERNAL_ERROR"), 2, "{sum:?}");
    let (_, r) = s.finish();
    let t = assert_top(&r, "h2_rst_stream");
    assert_eq!(t["detail"], "INTERNAL_ERROR", "{t:#}");
    assert_eq!(t["count"], 2, "{t:#}");
}
