//! The open model's promises: requests go out at their intended times (achieved rate
//! within 1% of the target), and latency is measured from the intended time, so a server
//! that stalls shows latency growing with wall time instead of a flat line (no
//! coordinated omission). Traffic stays on loopback.
mod support;

use support::{Bed, args, attack};

fn ns(v: &serde_json::Value) -> f64 {
    v.as_u64().unwrap() as f64
}

fn unix_ns(ts: &str) -> f64 {
    let t = humantime::parse_rfc3339(ts).unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as f64
}

#[test]
fn achieved_rate_is_within_one_percent_of_target() {
    let bed = Bed::start(&["ok"]);
    let run = attack(&args(
        vec![bed.http_url("ok")],
        &["--rate", "400", "--duration", "3s"],
    ));
    assert!(run.out.status.success(), "{}", run.debug());
    let reqs = run.requests();
    assert_eq!(reqs.len(), 1200, "exactly rate x duration requests");
    assert!(run.failed().is_empty(), "{}", run.debug());
    // Actual send time = intended time + lag.
    let mut sent: Vec<f64> = reqs
        .iter()
        .map(|r| unix_ns(r["timestamp"].as_str().unwrap()) + ns(&r["lag"]))
        .collect();
    sent.sort_by(f64::total_cmp);
    let span_s = (sent[sent.len() - 1] - sent[0]) / 1e9;
    let achieved = (sent.len() - 1) as f64 / span_s;
    assert!(
        (achieved - 400.0).abs() / 400.0 < 0.01,
        "achieved {achieved:.2} req/s over {span_s:.3} s, target 400"
    );
    let s = run.summary.as_ref().unwrap();
    assert!(
        s["lag_ms"]["p99"].as_f64().is_some(),
        "lag is reported: {}",
        s["lag_ms"]
    );
    assert!(run.stdout().contains("Lag"), "{}", run.stdout());
}

#[test]
fn stalled_server_latency_grows_with_wall_time() {
    let bed = Bed::start(&["stall"]);
    // Two connections, each blocked for the 500 ms timeout per request, against ten
    // requests a second: requests queue, and each waits longer than the one before.
    let run = attack(&args(
        vec![bed.http_url("stall")],
        &[
            "--rate",
            "10",
            "--duration",
            "1s",
            "--connections",
            "2",
            "--timeout",
            "500ms",
            "--max-lag",
            "30s",
        ],
    ));
    let mut reqs = run.requests();
    assert_eq!(reqs.len(), 10, "{}", run.debug());
    reqs.sort_by_key(|r| r["seq"].as_u64().unwrap());
    let lat: Vec<f64> = reqs.iter().map(|r| ns(&r["latency"]) / 1e6).collect();
    let service: Vec<f64> = reqs
        .iter()
        .map(|r| ns(&r["service_latency"]) / 1e6)
        .collect();
    let first = lat[..3].iter().sum::<f64>() / 3.0;
    let last = lat[7..].iter().sum::<f64>() / 3.0;
    assert!(
        last > first + 800.0,
        "latency from the intended time grows: first {first:.0} ms, last {last:.0} ms: {lat:?}"
    );
    // Service time stays flat (the timeout): a tool measuring only from the actual send
    // would have shown this flat line and hidden the queueing.
    for s in &service {
        assert!(
            (450.0..1500.0).contains(s),
            "service {s:.0} ms: {service:?}"
        );
    }
    assert!(reqs.iter().all(|r| r["class"] == "timeout"));
}

#[test]
fn requests_that_cannot_get_a_connection_in_time_are_client_overload() {
    let bed = Bed::start(&["stall"]);
    let run = attack(&args(
        vec![bed.http_url("stall")],
        &[
            "--rate",
            "20",
            "--duration",
            "1s",
            "--connections",
            "1",
            "--timeout",
            "400ms",
            "--max-lag",
            "200ms",
        ],
    ));
    let over: Vec<_> = run
        .failed()
        .into_iter()
        .filter(|r| r["class"] == "client_overload")
        .collect();
    assert!(!over.is_empty(), "{}", run.debug());
    assert!(
        over.iter()
            .all(|r| r["phase"] == "queue" && r["bytes_out"] == 0)
    );
    let s = run.summary.as_ref().unwrap();
    assert_eq!(
        s["overload"]["skipped"],
        over.len() as u64,
        "{}",
        s["overload"]
    );
    assert_eq!(
        run.requests().len(),
        20,
        "skipped requests are recorded, not silently dropped"
    );
}
