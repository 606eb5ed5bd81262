//! loadgen as a CI step and a post-mortem tool: thresholds set the exit code, `loadgen
//! report` rebuilds (and merges) reports from event files, bad input is named precisely,
//! and Ctrl-C still writes everything. Traffic stays on loopback.
mod support;

use std::{process::Command, time::Duration};

use support::{Bed, args, attack, run_bounded};

fn loadgen(a: &[&str]) -> std::process::Output {
    run_bounded(
        Command::new(env!("CARGO_BIN_EXE_loadgen")).args(a),
        Duration::from_secs(60),
    )
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn thresholds_fail_the_run_with_exit_code_3_and_say_why() {
    let bed = Bed::start(&["status:503", "ok"]);
    let run = attack(&args(
        vec![bed.http_url("status:503")],
        &[
            "--rate",
            "10",
            "--duration",
            "300ms",
            "--fail-under",
            "success=99%",
        ],
    ));
    assert_eq!(run.out.status.code(), Some(3), "{}", run.debug());
    let err = String::from_utf8_lossy(&run.out.stderr);
    assert!(
        err.contains("threshold violated") && err.contains("99"),
        "{err}"
    );
    assert!(
        run.summary.is_some(),
        "the summary is written before the verdict"
    );

    let run = attack(&args(
        vec![bed.http_url("ok")],
        &[
            "--rate",
            "10",
            "--duration",
            "300ms",
            "--fail-under",
            "success=99%",
            "--max-latency",
            "p95=5s",
        ],
    ));
    assert_eq!(run.out.status.code(), Some(0), "{}", run.debug());
    let run = attack(&args(
        vec![bed.http_url("ok")],
        &[
            "--rate",
            "10",
            "--duration",
            "300ms",
            "--max-latency",
            "p50=1us",
        ],
    ));
    assert_eq!(run.out.status.code(), Some(3), "{}", run.debug());
}

#[test]
fn report_rebuilds_and_merges_event_files() {
    let bed = Bed::start(&["ok", "rst"]);
    let a = attack(&args(
        vec![bed.http_url("ok")],
        &["--rate", "20", "--duration", "500ms"],
    ));
    let b = attack(&args(
        vec![bed.http_url("rst")],
        &["--rate", "20", "--duration", "500ms"],
    ));
    let fa = a.dir.join("events.ndjson");
    let fb = b.dir.join("events.ndjson");
    let out = loadgen(&[
        "report",
        "--format",
        "json",
        fa.to_str().unwrap(),
        fb.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["requests"]["total"], 20);
    assert_eq!(s["requests"]["success"], 10);
    let reset = s["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == "tcp_reset")
        .unwrap();
    assert_eq!(reset["count"], 10);
    // The text report of one file matches the live run's totals.
    let out = loadgen(&["report", fa.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("100.00%"), "{text}");
}

#[test]
fn report_names_the_bad_line_and_tolerates_a_truncated_tail() {
    let dir = std::env::temp_dir().join(format!("loadgen-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bed = Bed::start(&["ok"]);
    let run = attack(&args(
        vec![bed.http_url("ok")],
        &["--rate", "10", "--duration", "300ms"],
    ));
    let good = std::fs::read_to_string(run.dir.join("events.ndjson")).unwrap();
    let bad = dir.join("bad.ndjson");
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(2, "{not json");
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
    let out = loadgen(&["report", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("bad.ndjson:3"), "{}", stderr(&out));

    let cut = dir.join("cut.ndjson");
    std::fs::write(&cut, &good[..good.len() - 20]).unwrap();
    let out = loadgen(&["report", cut.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn malformed_targets_file_is_named_with_its_line() {
    let dir = std::env::temp_dir().join(format!("loadgen-targets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("targets.txt");
    std::fs::write(&f, "GET http://127.0.0.1:1/\n\nGET /relative\n").unwrap();
    let out = loadgen(&[
        "attack",
        "--targets",
        f.to_str().unwrap(),
        "--rate",
        "1",
        "--duration",
        "1s",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("targets.txt:3"), "{err}");
}

#[test]
fn unresolvable_host_and_bad_flags_are_clear_errors() {
    let out = loadgen(&[
        "attack",
        "http://no-such-host.invalid/",
        "--rate",
        "1",
        "--duration",
        "1s",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot resolve no-such-host.invalid:80"),
        "{}",
        stderr(&out)
    );
    let out = loadgen(&[
        "attack",
        "http://127.0.0.1/",
        "--rate",
        "fast",
        "--duration",
        "1s",
    ]);
    assert_eq!(out.status.code(), Some(2), "a bad rate is a usage error");
    assert!(stderr(&out).contains("fast"), "{}", stderr(&out));
    // A latency limit given to --fail-under (and the reverse) is refused, not guessed.
    for (flag, value) in [("--fail-under", "p95=1s"), ("--max-latency", "success=99%")] {
        let out = loadgen(&[
            "attack",
            "http://127.0.0.1/",
            "--rate",
            "1",
            "--duration",
            "1s",
            flag,
            value,
        ]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{flag} {value}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains(flag), "{}", stderr(&out));
    }
    let out = loadgen(&[
        "attack",
        "http://127.0.0.1/",
        "--rate",
        "1",
        "--duration",
        "soon",
    ]);
    assert_eq!(out.status.code(), Some(2), "clap usage error");
}

#[test]
fn interrupt_stops_gracefully_and_writes_everything() {
    let bed = Bed::start(&["ok"]);
    let dir = std::env::temp_dir().join(format!("loadgen-int-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let events = dir.join("e.ndjson");
    let summary = dir.join("s.json");
    let child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "attack",
            &bed.http_url("ok"),
            "--rate",
            "50",
            "--duration",
            "60s",
            "--quiet",
        ])
        .arg("--events")
        .arg(&events)
        .arg("--output")
        .arg(&summary)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signalling a child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!(s["interrupted"], true);
    let n = s["requests"]["total"].as_u64().unwrap();
    assert!((40..=100).contains(&n), "about 1.5 s at 50/s: {n}");
    let lines = std::fs::read_to_string(&events).unwrap();
    let reqs = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("every line is whole JSON"))
        .filter(|v| v["type"] == "request")
        .count() as u64;
    assert_eq!(reqs, n, "the events file holds every counted request");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Requests"));
}

#[test]
fn closed_model_users_stop_at_the_deadline_even_mid_think_or_ramp() {
    let bed = Bed::start(&["ok"]);
    let url = bed.http_url("ok");
    // Think 60 s and ramp 60 s against a 500 ms run: the users must not wait them out.
    // Killed (no exit code) if still running after 30 s.
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_loadgen")).args([
            "attack",
            &url,
            "--group",
            "g:users=4:think=60s:ramp=60s",
            "--duration",
            "500ms",
            "--quiet",
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Requests"),
        "the report is printed"
    );
}
