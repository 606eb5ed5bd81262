//! Every testbed fault, driven through the real `loadgen` binary: each must come back
//! with the right class, phase, codes and connection facts in the events file, and the
//! right counts in the summary. Traffic stays on loopback.
mod support;

use serde_json::Value;
use support::{Bed, args, attack};

fn all_failed_as<'a>(run: &'a support::Run, class: &str, phase: &str) -> Vec<&'a Value> {
    let reqs = run.requests();
    assert!(!reqs.is_empty(), "no request events\n{}", run.debug());
    for r in &reqs {
        assert_eq!(r["class"], class, "request {r}\n{}", run.debug());
        assert_eq!(r["phase"], phase, "request {r}\n{}", run.debug());
    }
    reqs
}

fn class_count(summary: &Value, class: &str) -> u64 {
    summary["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == class)
        .map_or(0, |c| c["count"].as_u64().unwrap())
}

#[test]
fn ok_over_http1_h2_and_h2c_succeeds_with_connection_facts() {
    let bed = Bed::start(&["ok"]);
    for (mode, base) in [
        ("--http1", bed.https_args("ok")),
        ("--http2", bed.https_args("ok")),
        ("--h2c", vec![bed.http_url("ok")]),
    ] {
        let run = attack(&args(base, &["--rate", "50", "--duration", "1s", mode]));
        assert!(run.out.status.success(), "{mode}\n{}", run.debug());
        let reqs = run.requests();
        assert_eq!(reqs.len(), 50, "{mode}\n{}", run.debug());
        for r in &reqs {
            assert_eq!(r["code"], 200, "{mode}: {r}");
            assert!(r.get("class").is_none(), "{mode}: {r}");
            assert_eq!(r["bytes_in"], 2, "{mode}: {r}");
            assert!(r["sock_cookie"].as_u64().unwrap() > 0, "{mode}: {r}");
            assert_eq!(r["remote"], format!("127.0.0.1:{}", bed.port("ok")));
        }
        let opened = run.conns("opened");
        assert!(
            !opened.is_empty() && opened.len() < 50,
            "{mode}: connections are reused: {}",
            opened.len()
        );
        let ready = run.conns("ready");
        let want = match mode {
            "--http1" => "http1",
            "--http2" => "h2",
            _ => "h2c",
        };
        assert!(
            ready.iter().all(|c| c["proto"] == want),
            "{mode}: {ready:?}"
        );
        if mode != "--h2c" {
            let tls = run.conns("tls");
            assert_eq!(tls[0]["tls"]["sni"], bed.tb.server_name());
            assert_eq!(
                tls[0]["tls"]["alpn"],
                if mode == "--http2" { "h2" } else { "http/1.1" }
            );
        }
        let s = run.summary.as_ref().unwrap();
        assert_eq!(s["requests"]["success"], 50, "{mode}");
        assert!(
            run.stdout().contains("Success"),
            "{mode}: text report on stdout"
        );
    }
}

#[test]
fn status_503_is_http_status() {
    let bed = Bed::start(&["status:503"]);
    let run = attack(&args(
        bed.https_args("status:503"),
        &["--rate", "20", "--duration", "500ms"],
    ));
    let reqs = all_failed_as(&run, "http_status", "await_headers");
    assert!(reqs.iter().all(|r| r["code"] == 503));
    assert_eq!(
        class_count(run.summary.as_ref().unwrap(), "http_status"),
        reqs.len() as u64
    );
}

#[test]
fn wrong_cert_names_the_sni_and_the_default_certificate() {
    let bed = Bed::start(&["wrong-cert"]);
    let run = attack(&args(
        bed.https_args("wrong-cert"),
        &["--rate", "10", "--duration", "500ms"],
    ));
    let reqs = all_failed_as(&run, "tls_cert_name_mismatch", "tls");
    // The refused connection's cookie is still stamped: the analyzer joins on it.
    assert!(reqs.iter().all(|r| r["sock_cookie"].as_u64().unwrap() > 0));
    let tls = run.conns("tls");
    assert_eq!(tls.len(), reqs.len());
    let facts = &tls[0]["tls"];
    assert_eq!(facts["sni"], bed.tb.server_name());
    let cert = &facts["cert"];
    assert!(
        cert["subject"]
            .as_str()
            .unwrap()
            .contains("FAULTLINE TESTBED DEFAULT CERT"),
        "{cert}"
    );
    assert!(
        cert["names"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "default.invalid"),
        "{cert}"
    );
    assert_eq!(cert["sha256"].as_str().unwrap().len(), 64);
    assert!(
        facts["error"]
            .as_str()
            .unwrap()
            .contains("not valid for name"),
        "{facts}"
    );
}

#[test]
fn untrusted_and_expired_certs_have_their_own_classes() {
    let bed = Bed::start(&["untrusted-cert", "expired-cert"]);
    let run = attack(&args(
        bed.https_args("untrusted-cert"),
        &["--rate", "10", "--duration", "300ms"],
    ));
    all_failed_as(&run, "tls_cert_untrusted", "tls");
    let run = attack(&args(
        bed.https_args("expired-cert"),
        &["--rate", "10", "--duration", "300ms"],
    ));
    all_failed_as(&run, "tls_cert_expired", "tls");
    let cert = &run.conns("tls")[0]["tls"]["cert"];
    assert!(cert["not_after"].as_str().unwrap() < "2026", "{cert}");
}

#[test]
fn insecure_accepts_the_wrong_cert_but_still_records_it() {
    let bed = Bed::start(&["wrong-cert"]);
    let run = attack(&args(
        bed.https_args("wrong-cert"),
        &["--rate", "10", "--duration", "300ms", "--insecure"],
    ));
    assert!(run.failed().is_empty(), "{}", run.debug());
    let cert = &run.conns("tls")[0]["tls"]["cert"];
    assert!(
        cert["subject"].as_str().unwrap().contains("DEFAULT CERT"),
        "{cert}"
    );
}

#[test]
fn goaway_enhance_your_calm_reports_code_and_last_stream_id() {
    let spec = "goaway:enhance_your_calm:after=2";
    let bed = Bed::start(&[spec]);
    // Eight users keep streams in flight on one connection, so the GOAWAY after two
    // answered streams ends requests that were sent.
    let run = attack(&args(
        bed.https_args(spec),
        &[
            "--http2",
            "--users",
            "8",
            "--duration",
            "500ms",
            "--connections",
            "1",
        ],
    ));
    let failed = run.failed();
    assert!(!failed.is_empty(), "{}", run.debug());
    let goaways: Vec<&&Value> = failed
        .iter()
        .filter(|r| r["class"] == "h2_goaway")
        .collect();
    assert!(!goaways.is_empty(), "{}", run.debug());
    for r in &goaways {
        let g = &r["h2"]["goaway"];
        assert_eq!(g["code"], "ENHANCE_YOUR_CALM", "{r}");
        let last = g["last_stream_id"].as_u64().unwrap();
        // Two streams answered: the server processed stream 1 and 3 at least.
        assert!(last >= 3, "{r}");
        if let Some(id) = r["h2"]["stream_id"].as_u64() {
            assert_eq!(r["h2"]["above_last_stream_id"], id > last, "{r}");
        }
    }
    let frames = run.conns("frame");
    assert!(
        frames
            .iter()
            .any(|f| f["frame"]["frame"] == "goaway" && f["frame"]["code"] == "ENHANCE_YOUR_CALM"),
        "{frames:?}"
    );
    let closed = run.conns("closed");
    assert!(closed.iter().any(|c| c["how"] == "goaway"), "{closed:?}");
}

#[test]
fn goaway_on_concurrency_is_enhance_your_calm_with_streams_in_flight() {
    let spec = "goaway-on-concurrency:2";
    let bed = Bed::start(&[spec]);
    let run = attack(&args(
        bed.https_args(spec),
        &[
            "--http2",
            "--users",
            "5",
            "--duration",
            "500ms",
            "--connections",
            "1",
        ],
    ));
    let goaways: Vec<&Value> = run
        .failed()
        .into_iter()
        .filter(|r| r["class"] == "h2_goaway")
        .collect();
    assert!(!goaways.is_empty(), "{}", run.debug());
    assert!(
        goaways
            .iter()
            .all(|r| r["h2"]["goaway"]["code"] == "ENHANCE_YOUR_CALM")
    );
    assert!(
        goaways.iter().any(|r| r["inflight"].as_u64().unwrap() >= 2),
        "some failed stream had others in flight: {goaways:?}"
    );
}

#[test]
fn rst_stream_refused_stream_is_h2_rst_stream() {
    let spec = "rst-stream:refused_stream:after=1";
    let bed = Bed::start(&[spec]);
    let run = attack(&args(
        bed.https_args(spec),
        &[
            "--http2",
            "--rate",
            "20",
            "--duration",
            "500ms",
            "--connections",
            "1",
        ],
    ));
    let reqs = run.requests();
    let ok = reqs.iter().filter(|r| r.get("class").is_none()).count();
    assert_eq!(
        ok,
        1,
        "exactly the first stream is answered\n{}",
        run.debug()
    );
    let resets: Vec<_> = run.failed();
    assert_eq!(resets.len(), reqs.len() - 1);
    for r in resets {
        assert_eq!(r["class"], "h2_rst_stream", "{r}");
        assert_eq!(r["h2"]["rst_code"], "REFUSED_STREAM", "{r}");
        assert_eq!(r["phase"], "await_headers", "{r}");
    }
}

#[test]
fn retry_unprocessed_retries_refused_streams_once_and_counts_them_apart() {
    let spec = "rst-stream:refused_stream:after=1";
    let bed = Bed::start(&[spec]);
    let run = attack(&args(
        bed.https_args(spec),
        &[
            "--http2",
            "--rate",
            "10",
            "--duration",
            "500ms",
            "--connections",
            "1",
            "--retry-unprocessed",
        ],
    ));
    let reqs = run.requests();
    let originals: Vec<_> = reqs
        .iter()
        .filter(|r| r.get("retry_of").is_none())
        .collect();
    let retries: Vec<_> = reqs
        .iter()
        .filter(|r| r.get("retry_of").is_some())
        .collect();
    assert_eq!(originals.len(), 5, "{}", run.debug());
    // Every refused original is retried once; retries are never retried again.
    let refused = originals
        .iter()
        .filter(|r| r["class"] == "h2_rst_stream")
        .count();
    assert_eq!(retries.len(), refused, "{}", run.debug());
    let s = run.summary.as_ref().unwrap();
    assert_eq!(s["requests"]["retries"], retries.len() as u64, "{s}");
}

#[test]
fn rst_after_one_request_is_tcp_reset_on_the_second() {
    let spec = "rst:after=1";
    let bed = Bed::start(&[spec]);
    let run = attack(&args(
        vec![bed.http_url(spec)],
        &["--rate", "10", "--duration", "1s", "--connections", "1"],
    ));
    let failed = run.failed();
    assert!(!failed.is_empty(), "{}", run.debug());
    for r in &failed {
        assert_eq!(r["class"], "tcp_reset", "{r}");
        assert_eq!(r["phase"], "await_headers", "{r}");
        assert_eq!(
            r["conn_requests"], 1,
            "the reset came on the second request: {r}"
        );
    }
    let closed = run.conns("closed");
    assert!(closed.iter().any(|c| c["how"] == "peer_rst"), "{closed:?}");
}

#[test]
fn rst_mid_response_is_tcp_reset_in_body_and_fin_mid_response_is_peer_eof() {
    let bed = Bed::start(&["rst-mid-response", "fin-mid-response"]);
    let run = attack(&args(
        vec![bed.http_url("rst-mid-response")],
        &["--rate", "10", "--duration", "300ms"],
    ));
    let reqs = all_failed_as(&run, "tcp_reset", "body");
    assert!(
        reqs.iter()
            .all(|r| r["code"] == 200 && r["bytes_in"] == 512),
        "{reqs:?}"
    );
    let run = attack(&args(
        bed.https_args("fin-mid-response"),
        &["--rate", "10", "--duration", "300ms"],
    ));
    all_failed_as(&run, "peer_eof", "body");
    assert!(run.conns("closed").iter().all(|c| c["how"] == "peer_fin"));
    // Over HTTP/2 the h2 crate calls both a FIN and an RST under a stream a "broken
    // pipe"; the frame tap saw which one it was.
    for (fault, class) in [
        ("fin-mid-response", "peer_eof"),
        ("rst-mid-response", "tcp_reset"),
    ] {
        let run = attack(&args(
            vec![bed.http_url(fault), "--h2c".into()],
            &["--rate", "10", "--duration", "300ms"],
        ));
        all_failed_as(&run, class, "body");
    }
}

#[test]
fn stall_times_out_waiting_for_headers() {
    let bed = Bed::start(&["stall"]);
    let run = attack(&args(
        vec![bed.http_url("stall")],
        &["--rate", "4", "--duration", "500ms", "--timeout", "300ms"],
    ));
    let reqs = all_failed_as(&run, "timeout", "await_headers");
    assert!(
        reqs.iter()
            .all(|r| r["latency"].as_u64().unwrap() >= 300_000_000)
    );
}

#[test]
fn slow_succeeds_after_the_delay() {
    let bed = Bed::start(&["slow:300ms"]);
    let run = attack(&args(
        vec![bed.http_url("slow:300ms")],
        &["--rate", "4", "--duration", "500ms"],
    ));
    let reqs = run.requests();
    assert_eq!(reqs.len(), 2, "{}", run.debug());
    assert!(
        reqs.iter()
            .all(|r| r.get("class").is_none() && r["latency"].as_u64().unwrap() >= 300_000_000)
    );
}

#[test]
fn backlog_full_is_connect_timeout() {
    let bed = Bed::start(&["backlog-full"]);
    let run = attack(&args(
        vec![bed.http_url("backlog-full")],
        &[
            "--rate",
            "4",
            "--duration",
            "500ms",
            "--connect-timeout",
            "500ms",
        ],
    ));
    let reqs = all_failed_as(&run, "connect_timeout", "connect");
    assert!(reqs.iter().all(|r| r["sock_cookie"].as_u64().unwrap() > 0));
}

#[test]
fn refused_is_connect_refused_with_the_socket_cookie() {
    let bed = Bed::start(&["refused"]);
    let run = attack(&args(
        vec![bed.http_url("refused")],
        &["--rate", "10", "--duration", "300ms"],
    ));
    let reqs = all_failed_as(&run, "connect_refused", "connect");
    let mut cookies: Vec<u64> = reqs
        .iter()
        .map(|r| r["sock_cookie"].as_u64().unwrap())
        .collect();
    cookies.sort_unstable();
    cookies.dedup();
    assert_eq!(
        cookies.len(),
        reqs.len(),
        "one socket, one cookie per attempt"
    );
}

#[test]
fn close_idle_closes_with_fin_and_new_connections_carry_on() {
    let spec = "close-idle:150ms";
    let bed = Bed::start(&[spec]);
    // One request every 400 ms on one connection: each time, the server has closed it.
    let run = attack(&args(
        vec![bed.http_url(spec)],
        &[
            "--rate",
            "5/2s",
            "--duration",
            "1200ms",
            "--connections",
            "1",
        ],
    ));
    let closed = run.conns("closed");
    assert!(
        closed.iter().filter(|c| c["how"] == "peer_fin").count() >= 2,
        "{closed:?}\n{}",
        run.debug()
    );
    assert!(run.conns("opened").len() >= 3, "{}", run.debug());
}
