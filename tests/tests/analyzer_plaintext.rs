//! Privileged end-to-end tests of the eBPF backend's plaintext capture: foreign clients
//! (curl, over HTTP/1.1 and h2c) against testbed faults, with no loadgen events. What
//! the client wrote and read on its socket, captured by the syscall tracepoints, names
//! the cause per request: statuses, GOAWAY and RST_STREAM codes, answers cut short; a
//! clean run has no cause at all. Needs root.
mod analyzer_support;

use analyzer::attach::Backend;
use analyzer_support::{Session, assert_top, causes, curl, text};
use serde_json::Value;
use testbed::{Config, Testbed};

/// Starts the testbed with `fault`, records its port with the eBPF backend while `run`
/// drives a client at its address, and returns the report.
fn with_fault(fault: &str, run: impl FnOnce(std::net::SocketAddr)) -> Value {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tb = rt
        .block_on(Testbed::start(Config::with_specs([fault]).unwrap()))
        .unwrap();
    let addr = tb.addr(fault).unwrap();
    let session = Session::on_port(addr.port(), Backend::Ebpf);
    run(addr);
    let (outcome, report) = session.finish();
    rt.block_on(tb.shutdown());
    let p = outcome.plaintext.expect("the eBPF backend reads plaintext");
    assert!(p.calls > 0, "no call captured: {outcome:?}");
    report
}

/// Three requests on one HTTP/1.1 connection, all answered 503: three failures, one
/// cause, from the client's plaintext alone.
#[test]
fn http1_statuses_are_counted_per_request() {
    let r = with_fault("status:503", |addr| {
        let url = format!("http://{addr}/");
        assert_eq!(curl(&[&url, &url, &url]), Some(0));
    });
    let t = assert_top(&r, "http_status");
    assert_eq!(t["detail"], "503", "{t:#}");
    assert_eq!(t["count"], 3, "{t:#}");
    assert_eq!(r["totals"]["plaintext_requests"], 3, "{:#}", r["totals"]);
    assert!(text(t).contains("answered 503"), "{t:#}");
}

/// A clean run: every request answered 200: no cause, no failure.
#[test]
fn a_clean_http1_run_has_no_cause() {
    let r = with_fault("ok", |addr| {
        let url = format!("http://{addr}/");
        for _ in 0..2 {
            assert_eq!(curl(&[&url, &url]), Some(0));
        }
    });
    assert!(causes(&r).is_empty(), "{r:#}");
    assert_eq!(r["totals"]["failures"], 0, "{:#}", r["totals"]);
    assert_eq!(r["totals"]["plaintext_requests"], 4, "{:#}", r["totals"]);
}

/// h2load (nghttp2) over h2c opens ten streams on one connection; the server answers
/// more than two in flight with GOAWAY ENHANCE_YOUR_CALM. Read from h2load's socket:
/// the GOAWAY with its code, and ten requests it left unanswered, each a failure.
#[test]
fn h2c_goaway_is_named_and_counted_per_stream_from_the_clients_plaintext() {
    let r = with_fault("goaway-on-concurrency:2", |addr| {
        let out = std::process::Command::new("h2load")
            .args(["-n", "10", "-c", "1", "-m", "10"])
            .arg(format!("http://{addr}/"))
            .output()
            .expect("h2load runs (nghttp2-client, installed by cargo xtask setup)");
        let so = String::from_utf8_lossy(&out.stdout);
        assert!(so.contains("0 succeeded"), "{so}");
    });
    let t = assert_top(&r, "h2_goaway_enhance_your_calm");
    assert_eq!(t["count"], 10, "{t:#}");
    assert!(text(t).contains("10 client streams in flight"), "{t:#}");
    assert_eq!(r["totals"]["plaintext_requests"], 10, "{:#}", r["totals"]);
}

/// h2c: RST_STREAM on every stream: the stream's code, once per request.
#[test]
fn h2c_rst_stream_is_counted_per_stream() {
    let r = with_fault("rst-stream:INTERNAL_ERROR", |addr| {
        let url = format!("http://{addr}/");
        for _ in 0..2 {
            assert_ne!(curl(&["--http2-prior-knowledge", &url]), Some(0));
        }
    });
    let t = assert_top(&r, "h2_rst_stream");
    assert_eq!(t["detail"], "INTERNAL_ERROR", "{t:#}");
    assert_eq!(t["count"], 2, "{t:#}");
}

/// HTTP/1.1: the server sends the head and part of the body, then FIN: the answer was
/// cut, and the plaintext says so.
#[test]
fn http1_answer_cut_by_the_servers_fin() {
    let r = with_fault("fin-mid-response", |addr| {
        let url = format!("http://{addr}/");
        for _ in 0..2 {
            assert_ne!(curl(&[&url]), Some(0));
        }
    });
    let t = assert_top(&r, "peer_fin_outstanding");
    assert_eq!(t["count"], 2, "{t:#}");
    assert!(text(t).contains("1 answer cut"), "{t:#}");
}
