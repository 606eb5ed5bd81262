//! Tests of the reports: the text, the JSON against its schema, reading event files.
use std::{fs, path::PathBuf};

use super::*;
use crate::stats::{
    Stats,
    tests::{T0_NS, meta, ok, req},
};
use crate::summary::*;
use events::model::{
    Class, CloseHow, ConnEvent, ConnStep, ConnTag, EventLine, Phase, RequestEvent, SCHEMA_VERSION,
};
use events::ndjson::ReadError;

/// 20 requests: 10 successes, 6 tcp_reset, 3 h2_goaway, 1 http_status.
fn run() -> Vec<(RequestEvent, u64)> {
    let mut v: Vec<_> = (0..10).map(|i| ok(i * 50, 20 + i)).collect();
    for i in 0..6 {
        let phase = if i < 4 {
            Phase::AwaitHeaders
        } else {
            Phase::Write
        };
        v.push(req(
            500 + i * 50,
            3,
            0,
            Some(Class::TcpReset),
            Some(phase),
            "connection reset by peer",
        ));
    }
    let goaway = "http2: server sent GOAWAY ENHANCE_YOUR_CALM last_stream_id=7 debug=\"calm down\"";
    for i in 0..3 {
        v.push(req(
            800 + i * 50,
            9,
            0,
            Some(Class::H2Goaway),
            Some(Phase::AwaitHeaders),
            goaway,
        ));
    }
    v.push(req(
        950,
        9,
        503,
        Some(Class::HttpStatus),
        Some(Phase::AwaitHeaders),
        "",
    ));
    v
}

fn conn_line(conn_id: u64, step: ConnStep) -> ConnEvent {
    ConnEvent {
        kind: ConnTag::Conn,
        attack: "t".into(),
        conn_id,
        timestamp: events::time::rfc3339_ns(T0_NS),
        step,
    }
}

fn closed(how: CloseHow) -> ConnStep {
    ConnStep::Closed {
        how,
        error: String::new(),
        requests: 2,
        age_us: 100,
    }
}

fn summary_of(events: &[(RequestEvent, u64)]) -> Summary {
    let mut s = Stats::new();
    for (ev, t) in events {
        s.record(ev, *t);
    }
    s.record_conn(&conn_line(1, closed(CloseHow::PeerRst)));
    s.summary(meta())
}

#[test]
fn text_report_has_vegeta_lines_and_the_class_table() {
    let out = text(&summary_of(&run()));
    for head in [
        "Requests      [total, rate, throughput]",
        "Duration      [total, attack, wait]",
        "Latencies     [min, mean, 50, 90, 95, 99, max]",
        "Bytes In      [total, mean]",
        "Bytes Out     [total, mean]",
        "Success       [ratio]",
        "Status Codes  [code:count]",
        "Overload      [late >1ms, skipped]",
        "Lag           [50, 99, max]",
    ] {
        assert!(out.contains(head), "missing {head:?} in:\n{out}");
    }
    let line = |start: &str| {
        out.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line {start:?} in:\n{out}"))
    };
    assert!(line("Success").ends_with("50.00%"), "{out}");
    assert!(
        line("Status Codes").ends_with("0:9, 200:10, 503:1"),
        "{out}"
    );
    assert!(
        out.contains("Failures by class (10 of 20 requests failed, 50.00%)"),
        "{out}"
    );
    let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        words(line("  tcp_reset")),
        [
            "tcp_reset",
            "6",
            "60.00%",
            "30.00%",
            "await_headers:4",
            "write:2"
        ]
    );
    assert_eq!(
        words(line("  h2_goaway")),
        ["h2_goaway", "3", "30.00%", "15.00%", "await_headers:3"]
    );
    assert_eq!(
        words(line("  http_status")),
        ["http_status", "1", "10.00%", "5.00%", "await_headers:1"]
    );
    let reset_at = out.find("  tcp_reset").expect("tcp_reset row");
    let goaway_at = out.find("  h2_goaway").expect("h2_goaway row");
    assert!(reset_at < goaway_at, "classes are sorted by count:\n{out}");
    assert!(
        out.contains("      6  connection reset by peer\n"),
        "error texts with counts:\n{out}"
    );
    assert!(out.contains("      1  status 503\n"), "{out}");
    for l in out.lines() {
        assert!(l.chars().count() <= 100, "line over 100 columns: {l:?}");
    }
}

#[test]
fn text_report_cuts_long_texts_and_says_how_many_more() {
    let mut events = run();
    for i in 0..8 {
        let text = format!("{i} {}", "very long error text ".repeat(10));
        events.push(req(990, 1, 0, Some(Class::ProtocolError), None, &text));
    }
    let out = text(&summary_of(&events));
    assert!(
        out.contains("… 3 more texts, 3 requests (all in the JSON report)"),
        "{out}"
    );
    for l in out.lines() {
        assert!(l.chars().count() <= 100, "line over 100 columns: {l:?}");
    }
    let empty = summary_of(&[]);
    assert!(
        text(&empty).contains("Failures by class: none"),
        "{}",
        text(&empty)
    );
}

#[test]
fn format_ms_reads_like_a_duration() {
    for (ms, want) in [
        (0.85, "850µs"),
        (2.5, "2.5ms"),
        (612.34, "612.3ms"),
        (500.0, "500ms"),
        (1_500.0, "1.5s"),
    ] {
        assert_eq!(format_ms(ms), want, "format_ms({ms})");
    }
}

#[test]
fn summary_json_validates_against_the_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../schema/summary.schema.json"))
            .expect("the schema is JSON");
    assert_eq!(
        schema["properties"]["schema_version"]["const"], SCHEMA_VERSION,
        "the schema's schema_version const must be model::SCHEMA_VERSION"
    );
    let validator =
        jsonschema::draft202012::new(&schema).expect("the schema is a valid 2020-12 schema");
    let mut events = run();
    events.push(req(990, 1, 0, None, None, "unclassified"));
    events.push(req(
        995,
        0,
        0,
        Some(Class::ClientOverload),
        Some(Phase::Queue),
        "behind",
    ));
    for summary in [summary_of(&events), summary_of(&[])] {
        let value =
            serde_json::from_str::<serde_json::Value>(&json(&summary)).expect("json() is JSON");
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "summary does not match the schema: {errors:#?}\n{value:#}"
        );
        let back: Summary = serde_json::from_value(value).expect("the summary reads back");
        assert_eq!(back, summary, "the summary round-trips through JSON");
    }
}

/// A fresh directory for one test's files.
fn tmp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-report-{}-{test}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

fn request_line(ev: &RequestEvent) -> String {
    serde_json::to_string(&EventLine::Request(Box::new(ev.clone())))
        .expect("serialize a request line")
}

fn write(path: &PathBuf, content: &str) {
    fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

#[test]
fn read_events_merges_files_in_time_order() {
    let dir = tmp_dir("merge");
    let events = run();
    let (mut a, mut b) = (String::new(), String::new());
    let opened = ConnStep::Opened {
        sock_cookie: Some(7),
        local: None,
        remote: "127.0.0.1:443".parse().unwrap(),
        connect_us: 80,
    };
    a.push_str(&serde_json::to_string(&conn_line(1, opened)).expect("conn line"));
    a.push('\n');
    for (i, (ev, _)) in events.iter().enumerate() {
        let file = if i % 3 == 0 { &mut b } else { &mut a };
        file.push_str(&request_line(ev));
        file.push('\n');
    }
    b.push_str(
        &serde_json::to_string(&conn_line(1, closed(CloseHow::PeerRst))).expect("conn line"),
    );
    b.push_str("\n\n");
    let paths = [dir.join("a.ndjson"), dir.join("b.ndjson")];
    write(&paths[0], &a);
    write(&paths[1], &b);
    let (stats, info) = read_events(&paths).expect("read both files");
    assert_eq!(
        (info.files, info.requests, info.conn_events, info.lines),
        (2, 20, 2, 22),
        "{info:?}"
    );
    assert!(info.warnings.is_empty() && !info.truncated, "{info:?}");
    assert_eq!(info.attacks, ["t"]);
    assert_eq!(info.started_unix_ns, Some(T0_NS));
    let mut rebuilt = stats.summary(meta());
    let mut direct = summary_of(&events);
    direct.connections.opened = 1;
    assert_eq!(rebuilt.requests, direct.requests);
    assert_eq!(rebuilt.classes, direct.classes);
    assert_eq!(rebuilt.per_second, direct.per_second);
    rebuilt.connections.closed.clear();
    direct.connections.closed.clear();
    assert_eq!(rebuilt.connections, direct.connections);
    assert_eq!(info.run_meta(serde_json::Value::Null).attack, "t");
}

#[test]
fn malformed_middle_line_is_an_error_naming_file_and_line() {
    let dir = tmp_dir("malformed");
    let path = dir.join("events.ndjson");
    let good = request_line(&run()[0].0);
    write(
        &path,
        &format!("{good}\n{{\"type\":\"request\",\"seq\":\n{good}\n"),
    );
    let err =
        read_events(std::slice::from_ref(&path)).expect_err("a malformed middle line is an error");
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("{}:2: ", path.display())),
        "{shown}"
    );
    assert!(matches!(err, ReadError::Parse { line: 2, .. }), "{err:?}");

    write(
        &path,
        &format!("{good}\n{{\"type\":\"request\",\"seq\":\"seven\"}}\n{good}\n"),
    );
    let err = read_events(std::slice::from_ref(&path)).expect_err("a wrong field is an error");
    let source = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        source.contains("invalid type"),
        "the cause names the problem, not 'untagged enum': {source}"
    );

    write(
        &path,
        &format!("{}\n{good}\n", good.replace("2024-01-01T", "yesterday ")),
    );
    let err = read_events(std::slice::from_ref(&path)).expect_err("a bad timestamp is an error");
    assert!(
        matches!(err, ReadError::Timestamp { line: 1, .. }),
        "{err:?}"
    );

    let missing = dir.join("missing.ndjson");
    let err = read_events(&[missing]).expect_err("a missing file is an error");
    assert!(matches!(err, ReadError::Open { .. }), "{err:?}");
    assert!(matches!(read_events(&[]), Err(ReadError::NoFiles)));
}

#[test]
fn truncated_last_line_is_a_warning_and_the_rest_counts() {
    let dir = tmp_dir("truncated");
    let path = dir.join("events.ndjson");
    let events = run();
    let lines: Vec<String> = events
        .iter()
        .take(3)
        .map(|(ev, _)| request_line(ev))
        .collect();
    let cut = &lines[2][..lines[2].len() / 2];
    write(&path, &format!("{}\n{}\n{cut}", lines[0], lines[1]));
    let (stats, info) =
        read_events(std::slice::from_ref(&path)).expect("a truncated last line is not an error");
    assert_eq!(info.requests, 2, "{info:?}");
    assert_eq!(stats.requests(), 2);
    assert!(
        info.truncated && info.run_meta(serde_json::Value::Null).interrupted,
        "{info:?}"
    );
    assert_eq!(info.warnings.len(), 1, "{info:?}");
    assert!(
        info.warnings[0].starts_with(&format!("{}:3: last line is truncated", path.display())),
        "{info:?}"
    );
}
