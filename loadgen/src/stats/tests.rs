//! Tests of the run statistics.
use super::*;
use events::model::{ConnTag, TlsFacts};

/// 2024-01-01T00:00:00Z: a whole second, so test seconds are easy to read.
pub(crate) const T0_NS: u64 = 1_704_067_200 * NS_PER_S;
const MS: u64 = 1_000_000;

/// A request intended `at_ms` after [`T0_NS`], taking `latency_ms`.
pub(crate) fn req(
    at_ms: u64,
    latency_ms: u64,
    code: u16,
    class: Option<Class>,
    phase: Option<Phase>,
    error: &str,
) -> (RequestEvent, u64) {
    let intended_ns = T0_NS + at_ms * MS;
    let ev = RequestEvent {
        attack: "t".into(),
        code,
        timestamp: events::time::rfc3339_ns(intended_ns),
        latency: latency_ms * MS,
        bytes_in: if class.is_none() { 100 } else { 0 },
        bytes_out: 10,
        error: error.into(),
        service_latency: Some(latency_ms * MS / 2),
        class,
        phase,
        ..RequestEvent::default()
    };
    (ev, intended_ns)
}

pub(crate) fn ok(at_ms: u64, latency_ms: u64) -> (RequestEvent, u64) {
    req(at_ms, latency_ms, 200, None, None, "")
}

pub(crate) fn meta() -> RunMeta {
    RunMeta {
        attack: "t".into(),
        config: serde_json::json!({"rate": 10}),
        started_unix_ns: T0_NS,
        wall_ns: 10 * NS_PER_S,
        target_rate_per_sec: Some(10.0),
        interrupted: false,
    }
}

/// Per-second histograms keep 2 significant figures: within 1%.
fn near_2sf(got: f64, want: f64) -> bool {
    (got - want).abs() <= want * 0.01
}

fn stats_of(events: &[(RequestEvent, u64)]) -> Stats {
    let mut s = Stats::new();
    for (ev, t) in events {
        s.record(ev, *t);
    }
    s
}

fn conn(step: ConnStep) -> ConnEvent {
    ConnEvent {
        kind: ConnTag::Conn,
        attack: "t".into(),
        conn_id: 1,
        timestamp: events::time::rfc3339_ns(T0_NS),
        step,
    }
}

fn closed(how: CloseHow) -> ConnEvent {
    conn(ConnStep::Closed {
        how,
        error: String::new(),
        requests: 0,
        age_us: 5,
    })
}

/// A mixed run: 6 successes, 3 tcp_reset (2 await_headers, 1 write), a bare 503 and an
/// unclassified error.
fn mixed() -> Vec<(RequestEvent, u64)> {
    let mut v: Vec<_> = (0..6).map(|i| ok(i * 100, 10 + i)).collect();
    let reset = "connection reset by peer";
    v.push(req(
        600,
        5,
        0,
        Some(Class::TcpReset),
        Some(Phase::AwaitHeaders),
        reset,
    ));
    v.push(req(
        700,
        5,
        0,
        Some(Class::TcpReset),
        Some(Phase::AwaitHeaders),
        reset,
    ));
    v.push(req(
        800,
        5,
        0,
        Some(Class::TcpReset),
        Some(Phase::Write),
        "broken pipe",
    ));
    v.push(req(900, 7, 503, None, None, ""));
    v.push(req(1_000, 7, 0, None, None, "weird"));
    v
}

#[test]
fn successes_and_failures_are_counted_per_class_and_phase() {
    let s = stats_of(&mixed()).summary(meta());
    assert_eq!(
        (s.requests.total, s.requests.success, s.requests.failed),
        (11, 6, 5),
        "{:?}",
        s.requests
    );
    assert!(
        (s.requests.success_ratio - 6.0 / 11.0).abs() < 1e-12,
        "{}",
        s.requests.success_ratio
    );
    let names: Vec<_> = s.classes.iter().map(|c| (c.class, c.count)).collect();
    assert_eq!(
        names,
        [
            (Class::TcpReset, 3),
            (Class::HttpStatus, 1),
            (Class::Other, 1)
        ],
        "classes sorted by count, then taxonomy order"
    );
    let reset = &s.classes[0];
    assert!(
        (reset.share_of_failures - 0.6).abs() < 1e-12,
        "{}",
        reset.share_of_failures
    );
    assert!(
        (reset.share_of_requests - 3.0 / 11.0).abs() < 1e-12,
        "{}",
        reset.share_of_requests
    );
    assert_eq!(
        reset.phases.get("await_headers"),
        Some(&2),
        "{:?}",
        reset.phases
    );
    assert_eq!(reset.phases.get("write"), Some(&1), "{:?}", reset.phases);
    assert_eq!(
        reset.errors[0],
        ErrorCount {
            text: "connection reset by peer".into(),
            count: 2
        }
    );
    assert_eq!(
        reset.errors[1],
        ErrorCount {
            text: "broken pipe".into(),
            count: 1
        }
    );
    assert_eq!(
        s.classes[1].errors[0].text, "status 503",
        "a bare status gets a text"
    );
    assert_eq!(
        s.classes[1].phases.get("unspecified"),
        Some(&1),
        "{:?}",
        s.classes[1].phases
    );
    assert_eq!(s.status_codes.get("200"), Some(&6), "{:?}", s.status_codes);
    assert_eq!(s.status_codes.get("0"), Some(&4), "{:?}", s.status_codes);
    assert_eq!(s.status_codes.get("503"), Some(&1), "{:?}", s.status_codes);
    assert_eq!(
        (s.bytes.in_total, s.bytes.out_total),
        (800, 110),
        "{:?}",
        s.bytes
    );
    assert_eq!(s.schema_version, SCHEMA_VERSION);
    assert_eq!(s.started, "2024-01-01T00:00:00.000000000Z");
    // 11 requests over 1 s of intended times, 6 successes over 10 s of wall time.
    assert!(
        (s.rate.achieved_per_sec - 11.0).abs() < 1e-9,
        "{:?}",
        s.rate
    );
    assert!(
        (s.rate.throughput_per_sec - 0.6).abs() < 1e-9,
        "{:?}",
        s.rate
    );
}

#[test]
fn percentiles_match_known_inputs() {
    let events: Vec<_> = (1..=1_000).map(|i| ok(i, i)).collect();
    let l = stats_of(&events).summary(meta()).latency_ms;
    let near = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
    assert_eq!(l.count, 1_000);
    assert_eq!(
        (l.min, l.max),
        (1.0, 1_000.0),
        "min and max are exact: {l:?}"
    );
    assert!((l.mean - 500.5).abs() < 1e-9, "mean is exact: {l:?}");
    for (got, want) in [
        (l.p50, 500.0),
        (l.p90, 900.0),
        (l.p95, 950.0),
        (l.p99, 990.0),
    ] {
        assert!(
            near(got, want),
            "percentile {got} is not within 0.1% of {want}: {l:?}"
        );
    }
    let service = stats_of(&events).summary(meta()).service_latency_ms;
    assert!(near(service.p50, 250.0), "service latency p50: {service:?}");
}

#[test]
fn per_second_series_takes_out_of_order_and_late_events() {
    let mut s = Stats::new();
    // Seconds 0, 2, 1 out of order; second 1 has one failure.
    for (ev, t) in [
        ok(100, 10),
        ok(2_100, 30),
        ok(1_100, 20),
        req(1_200, 40, 0, Some(Class::Timeout), None, ""),
    ] {
        s.record(&ev, t);
    }
    // A newer second far ahead finalizes 0..=2; then a late event for second 1 arrives.
    let (ev, t) = ok(100_000, 5);
    s.record(&ev, t);
    let (ev, t) = req(1_300, 60_000, 0, Some(Class::Timeout), None, "deadline");
    s.record(&ev, t);
    assert_eq!(
        s.series_size().missed_percentiles,
        1,
        "{:?}",
        s.series_size()
    );
    let rows = s.summary(meta()).per_second;
    let brief: Vec<_> = rows
        .iter()
        .map(|r| (r.second, r.requests, r.success, r.failed))
        .collect();
    assert_eq!(
        brief,
        [(0, 1, 1, 0), (1, 3, 1, 2), (2, 1, 1, 0), (100, 1, 1, 0)],
        "{rows:?}"
    );
    let one = &rows[1];
    assert!(
        one.p50_ms.is_some_and(|p| near_2sf(p, 20.0)),
        "the late event does not move the p50: {one:?}"
    );
    assert!(
        one.p99_ms.is_some_and(|p| near_2sf(p, 40.0)),
        "nor the p99: {one:?}"
    );
}

#[test]
fn memory_stays_flat_over_2000_seconds() {
    let mut s = Stats::new();
    for sec in 0..2_000u64 {
        for i in 0..3 {
            let (ev, t) = ok(sec * 1_000 + i * 300, 1 + i);
            s.record(&ev, t);
        }
    }
    let size = s.series_size();
    assert!(
        size.open <= WINDOW_S as usize,
        "open window is bounded: {size:?}"
    );
    assert_eq!(size.open + size.finalized, 2_000, "{size:?}");
    assert!(
        size.finalized_entry_bytes <= 48,
        "finalized seconds are plain numbers: {size:?}"
    );
    assert_eq!(size.missed_percentiles, 0, "{size:?}");
    let summary = s.summary(meta());
    assert_eq!(summary.per_second.len(), 2_000);
    assert_eq!(summary.requests.total, 6_000);
    let row = &summary.per_second[10];
    assert_eq!((row.second, row.requests), (10, 3), "{row:?}");
    assert!(row.p50_ms.is_some_and(|p| near_2sf(p, 2.0)), "{row:?}");
    assert!(row.p99_ms.is_some_and(|p| near_2sf(p, 3.0)), "{row:?}");
}

#[test]
fn merge_equals_recording_everything_into_one() {
    let events = mixed();
    let conns = [
        conn(ConnStep::Ready {
            proto: events::model::Proto::H2,
        }),
        closed(CloseHow::PeerRst),
    ];
    let mut all = stats_of(&events);
    let (mut a, mut b) = (Stats::new(), Stats::new());
    for (i, (ev, t)) in events.iter().enumerate() {
        if i % 2 == 0 {
            a.record(ev, *t)
        } else {
            b.record(ev, *t)
        }
    }
    for c in &conns {
        all.record_conn(c);
        b.record_conn(c);
    }
    a.merge(&b);
    assert_eq!(
        a.summary(meta()),
        all.summary(meta()),
        "merged and single summaries differ"
    );
}

#[test]
fn merge_of_long_runs_keeps_per_second_counts() {
    let (mut a, mut b, mut all) = (Stats::new(), Stats::new(), Stats::new());
    for sec in 0..300u64 {
        let (ev, t) = ok(sec * 1_000, 2);
        a.record(&ev, t);
        all.record(&ev, t);
        let (ev, t) = req(sec * 1_000 + 500, 4, 0, Some(Class::PeerEof), None, "eof");
        b.record(&ev, t);
        all.record(&ev, t);
    }
    a.merge(&b);
    let (merged, single) = (a.summary(meta()), all.summary(meta()));
    assert_eq!(merged.requests, single.requests);
    assert_eq!(merged.latency_ms, single.latency_ms);
    let counts = |s: &Summary| {
        s.per_second
            .iter()
            .map(|r| (r.second, r.requests, r.failed))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        counts(&merged),
        counts(&single),
        "per-second counts are exact after a merge"
    );
    assert!(
        merged
            .per_second
            .iter()
            .all(|r| r.p99_ms.is_some_and(|p| near_2sf(p, 4.0))),
        "finalized p99s combine as the max"
    );
}

#[test]
fn error_texts_are_bounded_per_class() {
    let mut s = Stats::new();
    for i in 0..25 {
        let (ev, t) = req(
            i,
            1,
            0,
            Some(Class::H2Goaway),
            None,
            &format!("GOAWAY debug {i}"),
        );
        s.record(&ev, t);
    }
    let long = "x".repeat(1_000);
    for _ in 0..3 {
        let (ev, t) = req(30, 1, 0, Some(Class::H2Goaway), None, "GOAWAY debug 0");
        s.record(&ev, t);
        let (ev, t) = req(30, 1, 0, Some(Class::ProtocolError), None, &long);
        s.record(&ev, t);
    }
    let sum = s.summary(meta());
    let goaway = &sum.classes[0];
    assert_eq!(
        goaway.errors.len(),
        MAX_ERROR_TEXTS + 1,
        "{:?}",
        goaway.errors
    );
    assert_eq!(
        goaway.errors[0],
        ErrorCount {
            text: "GOAWAY debug 0".into(),
            count: 4
        }
    );
    assert_eq!(
        goaway.errors.last(),
        Some(&ErrorCount {
            text: OTHER_MESSAGES.into(),
            count: 5
        })
    );
    assert_eq!(
        goaway.errors.iter().map(|e| e.count).sum::<u64>(),
        goaway.count,
        "every failure has a text"
    );
    let protocol = &sum.classes[1];
    assert_eq!(
        protocol.errors.len(),
        1,
        "long texts are cut the same way each time"
    );
    assert!(
        protocol.errors[0].text.len() <= MAX_ERROR_TEXT_BYTES + 3,
        "{}",
        protocol.errors[0].text.len()
    );
}

#[test]
fn connections_retries_late_and_skipped_are_counted() {
    let mut s = Stats::new();
    let opened = ConnStep::Opened {
        sock_cookie: Some(1),
        local: None,
        remote: "127.0.0.1:1".parse().unwrap(),
        connect_us: 3,
    };
    s.record_conn(&conn(opened));
    s.record_conn(&conn(opened_clone()));
    let failed_tls = TlsFacts {
        error: Some("UnknownIssuer".into()),
        ..TlsFacts::default()
    };
    s.record_conn(&conn(ConnStep::Tls {
        tls: failed_tls,
        handshake_us: 9,
    }));
    s.record_conn(&closed(CloseHow::Failed));
    s.record_conn(&closed(CloseHow::Goaway));
    let (mut late, t) = ok(0, 10);
    late.lag = 5 * MS;
    late.retry_of = Some(3);
    s.record(&late, t);
    let (mut skipped, t) = req(
        10,
        0,
        0,
        Some(Class::ClientOverload),
        Some(Phase::Queue),
        "behind schedule",
    );
    skipped.lag = 50 * MS;
    s.record(&skipped, t);
    let (on_time, t) = ok(20, 10);
    s.record(&on_time, t);
    let sum = s.summary(meta());
    let c = &sum.connections;
    assert_eq!((c.opened, c.failed, c.tls_failed), (2, 1, 1), "{c:?}");
    assert_eq!(c.closed.get("failed"), Some(&1), "{c:?}");
    assert_eq!(c.closed.get("goaway"), Some(&1), "{c:?}");
    assert_eq!(
        (sum.overload.late, sum.overload.skipped),
        (1, 1),
        "{:?}",
        sum.overload
    );
    assert_eq!(sum.requests.retries, 1);
    assert_eq!(sum.lag_ms.max, 50.0, "{:?}", sum.lag_ms);
}

fn opened_clone() -> ConnStep {
    ConnStep::Opened {
        sock_cookie: None,
        local: None,
        remote: "127.0.0.1:2".parse().unwrap(),
        connect_us: 4,
    }
}

#[test]
fn snapshot_has_top_classes_and_recent_percentiles() {
    let mut events = mixed();
    events.push(req(1_100, 5, 0, Some(Class::PeerEof), None, "eof"));
    events.push(req(1_200, 5, 0, Some(Class::PeerEof), None, "eof"));
    let live = stats_of(&events).snapshot();
    assert_eq!(
        (live.requests, live.successes, live.failures),
        (13, 6, 7),
        "{live:?}"
    );
    assert_eq!(
        live.top_classes,
        [
            (Class::TcpReset, 3),
            (Class::PeerEof, 2),
            (Class::HttpStatus, 1)
        ]
    );
    assert!(live.p50_ms.is_some() && live.p99_ms.is_some(), "{live:?}");
    assert!(live.rate_per_sec >= 0.0, "{live:?}");
    assert_eq!(
        Stats::new().snapshot().p50_ms,
        None,
        "no data, no percentile"
    );
}
