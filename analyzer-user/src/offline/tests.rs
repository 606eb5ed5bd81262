//! Tests of `offline`: recorded files in, the same report out (the scenario is the
//! report tests').
use std::{fs, path::Path};

use super::*;
use crate::{
    event::KernelEvent,
    join::tests::tmp_dir,
    kernel_log::{KernelLogHeader, KernelLogTrailer},
    names::NameSources,
    recording::{AttachReport, FilterConfig, Missing},
    report::tests::scenario,
    rules::fixture::*,
};

fn header() -> KernelLogHeader {
    KernelLogHeader::new(
        "ebpf",
        "6.18.44".into(),
        T0 - 1_000_000_000,
        AttachReport {
            attached: vec![
                "tcp:tcp_receive_reset".into(),
                "sock:inet_sock_set_state".into(),
            ],
            missing: vec![Missing {
                tracepoint: "skb:kfree_skb".into(),
                reason: "not on this kernel".into(),
            }],
        },
        FilterConfig {
            ports: vec![8443],
            ..FilterConfig::default()
        },
        NameSources {
            tcp_states: "btf".into(),
            rst_reasons: "tracefs".into(),
            drop_reasons: "tracefs".into(),
        },
    )
}

fn write_kernel(
    path: &Path,
    head: Option<&KernelLogHeader>,
    events: &[KernelEvent],
    tail: Option<&KernelLogTrailer>,
) {
    let mut s = head.map(KernelLogHeader::to_line).unwrap_or_default();
    for e in events {
        s.push_str(&serde_json::to_string(e).unwrap());
        s.push('\n');
    }
    s.push_str(&tail.map(KernelLogTrailer::to_line).unwrap_or_default());
    fs::write(path, s).unwrap();
}

#[test]
fn offline_report_uses_header_trailer_and_loadgen_files() {
    let s = scenario("offline-e2e");
    let dir = tmp_dir("offline-e2e-kernel");
    let kernel = dir.join("kernel.ndjson");
    let trailer = KernelLogTrailer {
        end: KernelLogEnd {
            ended_unix_ns: at(10_000),
            lost_events: 2,
            host_evidence: Some(s.host.clone()),
            host: Some(serde_json::json!({"ListenOverflows": 3})),
            ..KernelLogEnd::default()
        },
    };
    // Nearly ordered, as the ring buffer hands events out across CPUs.
    let mut events = s.kernel.clone();
    events.swap(1, 2);
    write_kernel(&kernel, Some(&header()), &events, Some(&trailer));
    let out = report_offline(
        std::slice::from_ref(&kernel),
        std::slice::from_ref(&s.loadgen),
        Format::Json,
        false,
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["run"]["kernel_release"], "6.18.44");
    assert_eq!(v["run"]["lost_events"], 2);
    assert_eq!(
        v["run"]["probes"]["missing"][0]["tracepoint"],
        "skb:kfree_skb"
    );
    assert_eq!(v["run"]["filters"]["ports"][0], 8443);
    assert_eq!(v["run"]["kernel_files"][0]["lines"], events.len() + 2);
    assert_eq!(v["run"]["duration_ns"], 11_000_000_000u64);
    assert_eq!(v["host"]["ListenOverflows"], 3);
    assert_eq!(v["causes"][0]["id"], "h2_goaway_enhance_your_calm");
    let lo = v["causes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "listen_overflow_or_syn_drop")
        .unwrap();
    assert_eq!(
        lo["confidence"]["level"], "high",
        "host evidence from the trailer"
    );

    let text = report_offline(
        std::slice::from_ref(&kernel),
        std::slice::from_ref(&s.loadgen),
        Format::Text,
        false,
    )
    .unwrap();
    assert!(
        text.contains("probes: 2 attached, 1 missing: skb:kfree_skb (not on this kernel)"),
        "{text}"
    );
    let md = report_offline(&[kernel], &[s.loadgen], Format::Markdown, true).unwrap();
    assert!(md.starts_with("### faultline: why requests failed"), "{md}");
}

#[test]
fn kernel_only_files_without_header_and_out_of_order_lines() {
    let dir = tmp_dir("offline-order");
    let kernel = dir.join("kernel.ndjson");
    let mut events = refused(1, 7, 0);
    for (i, e) in events.iter_mut().enumerate() {
        e.ts_unix_ns += i as u64;
    }
    events.reverse();
    write_kernel(&kernel, None, &events, None);
    let r = analyze_files(&[kernel], &[], AnalysisOptions::default()).unwrap();
    assert_eq!(r.causes.len(), 1);
    assert_eq!(
        (r.causes[0].id.as_str(), r.causes[0].count),
        ("connect_refused", 1)
    );
    assert_eq!(
        r.connections[0].facts.rst_state,
        Some(crate::names::TcpState::SynSent)
    );
    assert_eq!(r.run.kernel_release, "");
}

#[test]
fn a_bad_kernel_line_is_an_error_naming_file_and_line() {
    let dir = tmp_dir("offline-bad");
    let kernel = dir.join("kernel.ndjson");
    let good = serde_json::to_string(&refused(1, 7, 0)[0]).unwrap();
    fs::write(
        &kernel,
        format!(
            "{}{good}\n{{\"event\":\"nope\",\"ts_ns\":1}}\n{good}\n",
            header().to_line()
        ),
    )
    .unwrap();
    let err = report_offline(std::slice::from_ref(&kernel), &[], Format::Text, false).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.starts_with(&format!(
            "{}:3: not a valid kernel event line",
            kernel.display()
        )),
        "{text}"
    );
}

#[test]
fn a_truncated_last_kernel_line_is_skipped_and_reported() {
    let dir = tmp_dir("offline-cut");
    let kernel = dir.join("kernel.ndjson");
    let lines: Vec<String> = refused(1, 7, 0)
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    let last = &lines[lines.len() - 1];
    fs::write(
        &kernel,
        format!(
            "{}\n{}",
            lines[..lines.len() - 1].join("\n"),
            &last[..last.len() / 2]
        ),
    )
    .unwrap();
    let r = analyze_files(&[kernel], &[], AnalysisOptions::default()).unwrap();
    assert!(r.run.kernel_files[0].truncated);
    assert_eq!(r.run.kernel_files[0].lines, lines.len() as u64 - 1);
    assert!(
        r.run
            .warnings
            .iter()
            .any(|w| w.contains("last line is truncated")),
        "{:?}",
        r.run.warnings
    );
    assert_eq!(r.causes[0].id, "connect_refused");
}
