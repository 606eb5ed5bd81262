//! Tests of the report: one scenario with a failure of most kinds, through the analysis,
//! its JSON (checked against the schema), text and Markdown.
use std::{fs, path::PathBuf};

use events::model::{
    Class, CloseHow, ConnFacts, ConnStep, FrameFacts, GoAway, H2Facts, Phase, Proto, RequestEvent,
    TlsFacts,
};

use super::*;
use crate::{
    event::KernelEvent,
    join::tests::{conn_line, request_line, tmp_dir},
    rules::fixture::*,
};

/// A run with one failure of most kinds: kernel events (client sockets on ports
/// 40001..40004), the loadgen event file, the host evidence.
pub(crate) struct Scenario {
    pub kernel: Vec<KernelEvent>,
    pub loadgen: PathBuf,
    pub host: HostEvidence,
}

fn req(seq: u64, class: Option<Class>, phase: Phase, cookie: Option<u64>, ms: u64) -> RequestEvent {
    let mut r = request(class.unwrap_or(Class::Other), phase);
    r.class = class;
    r.error = class.map_or(String::new(), |c| c.to_string());
    r.seq = seq;
    r.timestamp = events::time::rfc3339_ns(at(ms));
    r.conn = ConnFacts {
        conn_id: seq,
        sock_cookie: cookie,
        local: Some(format!("127.0.0.1:{}", 40000 + seq).parse().unwrap()),
        remote: Some(SERVER.parse().unwrap()),
        ..ConnFacts::default()
    };
    r
}

pub(crate) fn scenario(test: &str) -> Scenario {
    let dir = tmp_dir(test);
    let mut kernel = on_port(refused(1, 7, 0), 1);
    kernel.extend(on_port(server_rst(1, 7, 100, 50), 2));
    kernel.extend(on_port(backlog_full(1, 7, 200, 3), 3));
    // The eBPF backend's TCP counters on one connection (it had an answer before the
    // reset), so the report carries them.
    kernel.extend(on_port(server_rst(1, 7, 300, 10), 4).into_iter().map(|e| {
        crate::event::KernelEvent {
            tcp: Some(crate::event::TcpCounts {
                bytes_received: 512,
                bytes_acked: 79,
                data_segs_in: 1,
                data_segs_out: 1,
                srtt_us: 30,
            }),
            ..e
        }
    }));
    kernel.sort_by_key(|e| e.ts_unix_ns);

    let mut lines = connect_lines();
    lines.extend(goaway_lines());
    lines.push(request_line(&req(
        8,
        Some(Class::Other),
        Phase::Body,
        Some(800),
        600,
    )));
    lines.push(request_line(&req(9, None, Phase::Body, Some(900), 700)));
    lines.extend(tls_lines());
    let loadgen = dir.join("events.ndjson");
    fs::write(
        &loadgen,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    Scenario {
        kernel,
        loadgen,
        host: HostEvidence {
            listen_overflows: Some(3),
            listen_drops: Some(3),
            port_range: Some((32768, 60999)),
            ..HostEvidence::default()
        },
    }
}

/// Requests that failed to connect, were reset, or got a 503.
fn connect_lines() -> Vec<String> {
    let mut refused_req = req(1, Some(Class::ConnectRefused), Phase::Connect, Some(107), 0);
    refused_req.conn.local = None;
    let mut timeout_req = req(
        3,
        Some(Class::ConnectTimeout),
        Phase::Connect,
        Some(307),
        200,
    );
    timeout_req.conn.local = None;
    timeout_req.latency = 3_500_000_000;
    let mut status = req(
        5,
        Some(Class::HttpStatus),
        Phase::AwaitHeaders,
        Some(500),
        400,
    );
    status.code = 503;
    vec![
        request_line(&refused_req),
        request_line(&req(
            2,
            Some(Class::TcpReset),
            Phase::AwaitHeaders,
            Some(207),
            120,
        )),
        request_line(&timeout_req),
        request_line(&status),
    ]
}

fn opened(cookie: u64, port: u16) -> ConnStep {
    ConnStep::Opened {
        sock_cookie: Some(cookie),
        local: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        remote: SERVER.parse().unwrap(),
        connect_us: 50,
    }
}

/// An HTTP/2 connection that a GOAWAY (ENHANCE_YOUR_CALM) ends with two requests above
/// its last stream id.
fn goaway_lines() -> Vec<String> {
    let goaway = GoAway {
        code: "ENHANCE_YOUR_CALM".into(),
        last_stream_id: 9,
        debug: "too many streams".into(),
    };
    let calm = |seq: u64, stream: u32| {
        let mut r = req(
            seq,
            Some(Class::H2Goaway),
            Phase::AwaitHeaders,
            Some(600),
            500,
        );
        r.conn.conn_id = 6;
        r.conn.local = Some("127.0.0.1:40006".parse().unwrap());
        r.conn.inflight = 5;
        r.h2 = Some(H2Facts {
            stream_id: Some(stream),
            goaway: Some(goaway.clone()),
            above_last_stream_id: Some(true),
            rst_code: None,
        });
        r
    };
    vec![
        conn_line(6, 480, opened(600, 40006)),
        conn_line(6, 481, ConnStep::Ready { proto: Proto::H2 }),
        conn_line(
            6,
            481,
            ConnStep::Frame {
                frame: FrameFacts::Settings {
                    settings: vec![("SETTINGS_MAX_CONCURRENT_STREAMS".into(), 4)],
                },
            },
        ),
        conn_line(
            6,
            501,
            ConnStep::Frame {
                frame: FrameFacts::Goaway(goaway.clone()),
            },
        ),
        request_line(&calm(6, 11)),
        request_line(&calm(7, 13)),
        conn_line(
            6,
            502,
            ConnStep::Closed {
                how: CloseHow::Goaway,
                error: String::new(),
                requests: 4,
                age_us: 22_000,
            },
        ),
    ]
}

/// A TLS connection whose certificate does not name the server.
fn tls_lines() -> Vec<String> {
    let tls = TlsFacts {
        sni: Some("testbed.faultline.test".into()),
        error: Some("certificate not valid for name".into()),
        cert: Some(events::model::CertFacts {
            subject: "CN=FAULTLINE TESTBED DEFAULT CERT".into(),
            issuer: "CN=faultline testbed CA".into(),
            names: vec!["FAULTLINE TESTBED DEFAULT CERT".into()],
            sha256: "cd".repeat(32),
            not_before: "2026-01-01T00:00:00Z".into(),
            not_after: "2027-01-01T00:00:00Z".into(),
        }),
        ..TlsFacts::default()
    };
    vec![
        conn_line(10, 800, opened(1000, 40010)),
        conn_line(
            10,
            801,
            ConnStep::Tls {
                tls,
                handshake_us: 900,
            },
        ),
        request_line(&req(
            10,
            Some(Class::TlsCertNameMismatch),
            Phase::Tls,
            Some(1000),
            800,
        )),
    ]
}

fn report_of(s: &Scenario, opts: AnalysisOptions) -> Report {
    let mut a = Analysis::new(opts);
    for e in &s.kernel {
        a.ingest_kernel(e);
    }
    a.finish(FinishInput {
        run: Run {
            kernel_release: "6.18.44".into(),
            lost_events: 0,
            ..Run::default()
        },
        loadgen: std::slice::from_ref(&s.loadgen),
        host_evidence: s.host.clone(),
        host: serde_json::json!({"netstat": {"ListenOverflows": 3}}),
        probe: None,
    })
    .unwrap()
}

fn ids(r: &Report) -> Vec<(String, u64)> {
    r.causes.iter().map(|c| (c.id.clone(), c.count)).collect()
}

#[test]
fn every_failure_is_attributed_once_and_causes_are_ranked() {
    let s = scenario("report-rank");
    let r = report_of(&s, AnalysisOptions::default());
    let t = &r.totals;
    assert_eq!(
        (
            t.requests,
            t.requests_ok,
            t.requests_failed,
            t.kernel_only_failures
        ),
        (9, 1, 8, 1)
    );
    assert_eq!(t.failures, 9);
    let expected = [
        ("h2_goaway_enhance_your_calm", 2),
        ("server_abort_mid_request", 2),
        ("connect_refused", 1),
        ("listen_overflow_or_syn_drop", 1),
        ("tls_cert_mismatch", 1),
        ("http_status", 1),
    ];
    let got = ids(&r);
    assert_eq!(
        got[..],
        expected
            .iter()
            .map(|(i, n)| (i.to_string(), *n))
            .collect::<Vec<_>>()[..],
        "{got:?}"
    );
    // The `Other` request with no kernel record: unattributed, never dropped.
    assert_eq!(
        (r.unattributed.count, r.unattributed.by_class.get("other")),
        (1, Some(&1))
    );
    assert_eq!(
        r.causes.iter().map(|c| c.count).sum::<u64>() + r.unattributed.count,
        t.failures
    );
    assert!((r.causes[0].share - 2.0 / 9.0).abs() < 1e-9);
    let abort = &r.causes[1];
    assert_eq!((abort.loadgen_failures, abort.kernel_only_failures), (1, 1));
    assert_eq!(abort.examples.len(), 2);
    assert_eq!(abort.examples[0].join, JoinKind::Cookie);
    assert!(
        abort.examples[0]
            .timeline
            .iter()
            .any(|e| e.event == analyzer_common::EventKind::ReceiveReset)
    );
    let calm = &r.causes[0];
    assert_eq!(
        calm.examples.len(),
        1,
        "two requests on one connection: one example"
    );
    let lo = r
        .causes
        .iter()
        .find(|c| c.id == "listen_overflow_or_syn_drop")
        .unwrap();
    assert_eq!(lo.confidence.level, crate::rules::Level::High);
    assert_eq!(r.run.loadgen_files[0].lines, 16);
    assert_eq!(r.run.analyzer_version, env!("CARGO_PKG_VERSION"));
}

#[test]
fn connections_are_the_failed_ones_unless_all() {
    let s = scenario("report-conns");
    let r = report_of(&s, AnalysisOptions::default());
    assert_eq!(r.connections.len(), 4);
    let by_port = |p: u16| {
        r.connections
            .iter()
            .find(|c| c.local.is_some_and(|l| l.port() == p))
            .unwrap()
    };
    assert_eq!(
        by_port(40002).cause.as_deref(),
        Some("server_abort_mid_request")
    );
    assert_eq!(
        (by_port(40002).join, by_port(40002).failed_requests),
        (JoinKind::Cookie, 1)
    );
    assert_eq!(
        (by_port(40004).join, by_port(40004).failed_requests),
        (JoinKind::KernelOnly, 0)
    );
    let mut extra = scenario("report-conns-all");
    extra.kernel.extend(on_port(peer_fin(1, 7, 900, 5), 20));
    assert_eq!(
        report_of(&extra, AnalysisOptions::default())
            .connections
            .len(),
        4
    );
    let all = report_of(&extra, AnalysisOptions::with_all(true));
    assert!(all.all_connections);
    assert_eq!(all.connections.len(), 5);
}

#[test]
fn examples_are_bounded_and_distinct() {
    let mut a = Analysis::new(AnalysisOptions::default());
    for n in 1..=8 {
        for e in on_port(refused(1, 7, u64::from(n) * 10), n) {
            a.ingest_kernel(&e);
        }
    }
    let r = a.finish(FinishInput::default()).unwrap();
    assert_eq!(ids(&r), [("connect_refused".to_owned(), 8)]);
    let ex = &r.causes[0].examples;
    assert_eq!(ex.len(), 5);
    let mut cookies: Vec<_> = ex.iter().map(|e| e.sock_cookie).collect();
    cookies.dedup();
    assert_eq!(cookies.len(), 5);
}

#[test]
fn the_report_validates_against_its_schema_and_round_trips() {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../schema/report.schema.json"))
            .expect("the schema is JSON");
    assert_eq!(
        schema["properties"]["schema_version"]["const"],
        REPORT_SCHEMA_VERSION
    );
    let validator = jsonschema::draft202012::new(&schema).expect("a valid 2020-12 schema");
    let s = scenario("report-schema");
    let empty = Analysis::new(AnalysisOptions::default())
        .finish(FinishInput::default())
        .unwrap();
    let full = report_of(&s, AnalysisOptions::with_all(true));
    assert!(
        full.to_json().contains("\"tcp_at_close\""),
        "the scenario carries TCP counters, so the schema checks them"
    );
    let mut probed = empty.clone();
    probed.probes = probe_records();
    probed.causes = full.causes.clone();
    probed.causes[0].examples[0]
        .evidence
        .push(crate::rules::Evidence::probe(1_767_225_600, "a probe's"));
    let mut with_wire = full.clone();
    if let Some(c) = with_wire.connections.first_mut()
        && let Some(fact) = probed.probes[0].wire_fact()
    {
        c.wire.push(fact);
        c.wire
            .push(crate::event::wire_fact::WireFact::TlsEncryptedAlert {
                from_server: false,
                len_bytes: 19,
                after_handshake: true,
            });
    }
    assert!(
        probed
            .to_text()
            .contains("certificate probe: 2 TLS handshakes")
    );
    assert!(
        probed
            .to_markdown()
            .contains("certificate probe: 2 TLS handshakes")
    );
    let mut raw = empty.clone();
    raw.run.capture = Some(crate::raw::source::CaptureReport {
        keylog: Some(crate::raw::tls::keylog::KeylogStats {
            path: "/tmp/keys.log".into(),
            connections_decrypted: 3,
            connections_no_key: 1,
            ..Default::default()
        }),
        ..Default::default()
    });
    assert!(
        raw.to_text().contains("1 with no key in it"),
        "{}",
        raw.to_text()
    );
    for report in [full, empty, probed, with_wire, raw] {
        let value: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "the report does not match the schema: {errors:#?}\n{value:#}"
        );
        let back: Report = serde_json::from_value(value.clone()).expect("the report reads back");
        assert_eq!(serde_json::to_value(&back).unwrap(), value, "round trip");
    }
}

/// Two probes: one that saw a certificate (and was then refused), one that timed out.
fn probe_records() -> Vec<crate::tls_probe::ProbeRecord> {
    use crate::tls_probe::{
        Judgment, LeafCert, Presented, ProbeError, ProbeOutcome, ProbeRecord, Stage, Trust,
        Validity, Verdict,
    };
    let presented = Presented {
        version: Some("TLS 1.3".into()),
        alpn: Some("h2".into()),
        chain_len: 1,
        leaf: LeafCert {
            subject: "CN=FAULTLINE TESTBED DEFAULT CERT".into(),
            names: vec!["default.invalid".into()],
            issuer: "CN=faultline testbed CA".into(),
            sha256: "ab".repeat(32),
            not_before_unix_s: 1_700_000_000,
            not_after_unix_s: 1_900_000_000,
            parse_error: None,
        },
        judgment: Judgment {
            name: "testbed.faultline.test".into(),
            at_unix_s: 1_767_225_600,
            matches_name: Some(false),
            validity: Some(Validity::Current),
            trust: Trust::Untrusted {
                why: "no chain to a trusted root".into(),
            },
            verdict: Verdict::Mismatch,
        },
    };
    let record = |port: u16, outcome| ProbeRecord {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        sni: Some("testbed.faultline.test".into()),
        alpn: vec!["h2".into(), "http/1.1".into()],
        connections: 2,
        conn_ids: vec![3, 4],
        outcome,
    };
    vec![
        record(
            8443,
            ProbeOutcome {
                presented: Some(presented),
                error: Some(ProbeError::Alert {
                    code: 42,
                    name: "bad_certificate".into(),
                }),
                roots: "system roots (146 certificates)".into(),
            },
        ),
        record(
            8444,
            ProbeOutcome {
                presented: None,
                error: Some(ProbeError::Timeout {
                    stage: Stage::Handshake,
                    timeout_ms: 2000,
                }),
                roots: "system roots (146 certificates)".into(),
            },
        ),
    ]
}

#[test]
fn text_puts_ranked_causes_with_evidence_and_hints_first() {
    let r = report_of(&scenario("report-text"), AnalysisOptions::default());
    let text = r.to_text();
    assert!(text.starts_with("faultline report: 8 of 9 requests failed (88.9%); 1 more failed connections seen only by the kernel\n"), "{text}");
    let first = text
        .find("1. h2_goaway_enhance_your_calm  2 (22.2%)  confidence high")
        .expect("cause 1");
    let second = text.find("2. server_abort_mid_request").expect("cause 2");
    let run = text.find("\nrun\n").expect("run facts");
    assert!(first < second && second < run, "{text}");
    assert!(text.contains("up to 6 streams in flight on the connection when the GOAWAY came; server SETTINGS_MAX_CONCURRENT_STREAMS 4"), "{text}");
    assert!(
        text.contains(
            "kernel: RST received in ESTABLISHED on 127.0.0.1:40002 → 127.0.0.1:8443 (cookie 207)"
        ),
        "{text}"
    );
    assert!(
        text.contains("hint: nothing listens on 127.0.0.1:8443"),
        "{text}"
    );
    assert!(text.contains("unattributed  1 (11.1%)"), "{text}");
    assert!(text.contains("lost events 0 (ring buffer full)"), "{text}");
}

#[test]
fn markdown_is_ticket_sized() {
    let r = report_of(&scenario("report-md"), AnalysisOptions::default());
    let md = r.to_markdown();
    assert!(
        md.contains("| # | cause | failures | share | confidence |"),
        "{md}"
    );
    assert!(md.contains("| 1 | `h2_goaway_enhance_your_calm`"), "{md}");
    assert_eq!(md.matches("\n#### ").count(), 3, "{md}");
    assert!(md.contains("**what to do:**"), "{md}");
    assert!(
        md.lines().count() < 45,
        "{} lines:\n{md}",
        md.lines().count()
    );
}
