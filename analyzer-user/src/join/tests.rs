//! Tests of the join: loadgen event files against kernel records, by cookie and by
//! tuple and time.
use std::{fs, path::Path};

use events::model::{ConnFacts, ConnTag, Phase};

use super::*;
use crate::{
    names::TcpState,
    rules::fixture::{self, *},
};

/// A fresh directory for one test's files.
pub(crate) fn tmp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("analyzer-{}-{test}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

pub(crate) fn conn_line(conn_id: u64, ms: u64, step: ConnStep) -> String {
    serde_json::to_string(&EventLine::Conn(Box::new(ConnEvent {
        kind: ConnTag::Conn,
        attack: "t".into(),
        conn_id,
        timestamp: events::time::rfc3339_ns(at(ms)),
        step,
    })))
    .unwrap()
}

pub(crate) fn request_line(r: &RequestEvent) -> String {
    serde_json::to_string(&EventLine::Request(Box::new(r.clone()))).unwrap()
}

fn write(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let p = dir.join(name);
    fs::write(
        &p,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    p
}

/// A failure as the join handed it over: request seq, kernel record, join, TLS facts.
type Seen = (u64, Option<u64>, JoinKind, bool);

/// Runs the join, returning what each failure was joined to.
fn run(paths: &[PathBuf], conns: &mut Connections) -> (LoadgenSummary, Vec<Seen>) {
    let mut seen = Vec::new();
    let s = join_loadgen(paths, conns, 1_000_000_000, |_, f| {
        seen.push((
            f.request.seq,
            f.kernel,
            f.join,
            f.conn.is_some_and(|c| c.tls.is_some()),
        ));
    })
    .unwrap();
    (s, seen)
}

fn opened(cookie: Option<u64>, local: Option<&str>) -> ConnStep {
    ConnStep::Opened {
        sock_cookie: cookie,
        local: local.map(|l| l.parse().unwrap()),
        remote: SERVER.parse().unwrap(),
        connect_us: 10,
    }
}

#[test]
fn joins_by_cookie_and_marks_the_kernel_record() {
    let dir = tmp_dir("join-cookie");
    let mut conns = connections(&refused(1, 7, 0));
    let mut req = request(Class::ConnectRefused, Phase::Connect);
    req.conn.local = None;
    let ok = RequestEvent {
        seq: 2,
        class: None,
        error: String::new(),
        ..req.clone()
    };
    let f = write(
        &dir,
        "ev.ndjson",
        &[
            conn_line(1, 0, opened(Some(7), None)),
            request_line(&req),
            request_line(&ok),
        ],
    );
    let (s, seen) = run(&[f], &mut conns);
    assert_eq!((s.requests, s.requests_ok, s.requests_failed), (2, 1, 1));
    assert_eq!(
        (
            s.connections,
            s.connections_joined_cookie,
            s.failures_joined_cookie
        ),
        (1, 1, 1)
    );
    let id = conns.records().next().unwrap().id;
    assert_eq!(seen, [(1, Some(id), JoinKind::Cookie, false)]);
    let r = conns.get(id).unwrap();
    assert_eq!((r.join, r.loadgen_conn_id), (JoinKind::Cookie, Some(1)));
    assert_eq!(s.files[0].lines, 3);
}

/// A client socket still in SYN_SENT at the end: no cookie was ever seen.
fn cookieless() -> Vec<crate::event::KernelEvent> {
    vec![
        state(0, 1, TcpState::Close, TcpState::SynSent),
        retrans(1000, 1, TcpState::SynSent),
    ]
}

#[test]
fn joins_by_tuple_and_time_only_when_times_overlap() {
    let dir = tmp_dir("join-tuple");
    let mut conns = connections(&cookieless());
    let mut near = request(Class::ConnectTimeout, Phase::Connect);
    near.conn.sock_cookie = None;
    let far = RequestEvent {
        seq: 2,
        timestamp: events::time::rfc3339_ns(at(60_000)),
        ..near.clone()
    };
    let other_cookie = RequestEvent {
        seq: 3,
        conn: ConnFacts {
            sock_cookie: Some(99),
            ..near.conn.clone()
        },
        ..near.clone()
    };
    let f = write(
        &dir,
        "ev.ndjson",
        &[
            request_line(&near),
            request_line(&far),
            request_line(&other_cookie),
        ],
    );
    let (s, seen) = run(&[f], &mut conns);
    let id = conns.records().next().unwrap().id;
    assert_eq!(seen[0], (1, Some(id), JoinKind::TupleTime, false));
    assert_eq!(
        seen[1],
        (2, None, JoinKind::LoadgenOnly, false),
        "same tuple, a minute later: no join"
    );
    // No record has cookie 99; the record's cookie is unknown, so the tuple and time decide.
    assert_eq!(seen[2].2, JoinKind::TupleTime);
    assert_eq!(
        (s.failures_joined_tuple_time, s.failures_loadgen_only),
        (2, 1)
    );
    assert_eq!(conns.get(id).unwrap().join, JoinKind::TupleTime);
}

#[test]
fn a_known_different_cookie_is_never_joined_by_tuple() {
    let dir = tmp_dir("join-other-cookie");
    let mut conns = connections(&server_rst(1, 7, 0, 50));
    let mut req = request(Class::TcpReset, Phase::AwaitHeaders);
    req.conn.sock_cookie = Some(99);
    let f = write(&dir, "ev.ndjson", &[request_line(&req)]);
    let (_, seen) = run(&[f], &mut conns);
    assert_eq!(seen[0].2, JoinKind::LoadgenOnly);
    assert_eq!(conns.records().next().unwrap().join, JoinKind::KernelOnly);
}

#[test]
fn tls_facts_from_connection_lines_reach_the_failure() {
    let dir = tmp_dir("join-tls");
    let mut conns = Connections::default();
    let tls = TlsFacts {
        sni: Some("testbed.faultline.test".into()),
        error: Some("name mismatch".into()),
        ..TlsFacts::default()
    };
    let req = request(Class::TlsCertNameMismatch, Phase::Tls);
    let lines = [
        conn_line(1, 0, opened(Some(7), Some(CLIENT))),
        conn_line(
            1,
            1,
            ConnStep::Tls {
                tls,
                handshake_us: 5,
            },
        ),
        conn_line(
            1,
            2,
            ConnStep::Closed {
                how: CloseHow::Failed,
                error: "x".into(),
                requests: 0,
                age_us: 9,
            },
        ),
        request_line(&req),
    ];
    let f = write(&dir, "ev.ndjson", &lines);
    let (s, seen) = run(&[f], &mut conns);
    assert_eq!(seen, [(1, None, JoinKind::LoadgenOnly, true)]);
    assert_eq!(s.failed_by_class.get("tls_cert_name_mismatch"), Some(&1));
}

#[test]
fn bad_lines_name_file_and_line_and_a_truncated_last_line_is_skipped() {
    let dir = tmp_dir("join-bad");
    let good = request_line(&request(Class::Timeout, Phase::Body));
    let f = write(
        &dir,
        "bad.ndjson",
        &[
            good.clone(),
            String::new(),
            "{\"type\":\"request\",\"seq\":\"x\"}".into(),
        ],
    );
    let err = join_loadgen(
        std::slice::from_ref(&f),
        &mut Connections::default(),
        0,
        |_, _| {},
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "{}:3: not a valid loadgen event line",
            f.display()
        )),
        "{text}"
    );

    let t = dir.join("cut.ndjson");
    fs::write(&t, format!("{good}\n{}", &good[..good.len() / 2])).unwrap();
    let mut n = 0;
    let s = join_loadgen(&[t], &mut Connections::default(), 0, |_, _| n += 1).unwrap();
    assert_eq!(n, 1);
    assert!(
        s.files[0].truncated && s.files[0].lines == 1,
        "{:?}",
        s.files
    );
    assert!(
        s.warnings[0].contains(":2: last line is truncated"),
        "{:?}",
        s.warnings
    );
}

#[test]
fn missing_files_and_bad_timestamps_are_errors() {
    let dir = tmp_dir("join-missing");
    let err = join_loadgen(
        &[dir.join("nope")],
        &mut Connections::default(),
        0,
        |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(err, ReadError::Open { .. }));
    let mut r = fixture::request(Class::Timeout, Phase::Body);
    r.timestamp = "yesterday".into();
    let f = write(&dir, "ts.ndjson", &[request_line(&r)]);
    let err = join_loadgen(&[f], &mut Connections::default(), 0, |_, _| {}).unwrap_err();
    assert!(
        err.to_string().contains(":1: timestamp \"yesterday\""),
        "{err}"
    );
}
