//! The join key end to end: the socket cookie loadgen stamps on each failed request is
//! the cookie the kernel's `tcp:tcp_receive_reset` event carries for that connection, as
//! the analyzer's probe records it. Needs root (loads eBPF).
use std::{collections::HashMap, time::Duration};

use analyzer::{
    ebpf::{probe::Probes, tracefs},
    event::KernelEvent,
};
use clap::Parser;
use loadgen::cli::{Cli, Command};
use serde_json::Value;
use testbed::{Config, Testbed};

/// Runs `loadgen attack ARGS --events FILE` in-process; returns the request events.
fn loadgen(rt: &tokio::runtime::Runtime, url: &str, extra: &[&str]) -> Vec<Value> {
    let events = std::env::temp_dir().join(format!(
        "cookie-join-{}-{}.ndjson",
        std::process::id(),
        url.len() + extra.len()
    ));
    let mut argv = vec![
        "loadgen",
        "attack",
        url,
        "--events",
        events.to_str().unwrap(),
    ];
    argv.extend_from_slice(extra);
    let Command::Attack(a) = Cli::try_parse_from(argv).unwrap().command else {
        unreachable!()
    };
    let cfg = loadgen::cli::to_config(&a).unwrap();
    rt.block_on(loadgen::run::run(cfg, Value::Null, false))
        .unwrap();
    std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "request")
        .collect()
}

#[test]
fn loadgen_cookies_match_the_kernel_reset_events() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tb = rt
        .block_on(Testbed::start(
            Config::with_specs(["refused", "rst"]).unwrap(),
        ))
        .unwrap();
    let mount = tracefs::ensure_mounted().expect("tracefs (run as root)");
    // Filtered on the two testbed ports: other traffic on the host cannot crowd the ring.
    let filter = analyzer::recording::FilterConfig {
        ports: vec![
            tb.addr("refused").unwrap().port(),
            tb.addr("rst").unwrap().port(),
        ],
        ..analyzer::recording::FilterConfig::default()
    };
    let mut probes =
        Probes::attach(mount.path(), &filter).expect("attach the probes (run as root)");
    let mut reader = probes.take_reader().unwrap();

    let refused = tb.addr("refused").unwrap();
    let rst = tb.addr("rst").unwrap();
    let mut reqs = loadgen(
        &rt,
        &format!("http://{refused}/"),
        &["--rate", "20", "--duration", "500ms"],
    );
    reqs.extend(loadgen(
        &rt,
        &format!("http://{rst}/"),
        &["--rate", "20", "--duration", "500ms"],
    ));
    assert_eq!(reqs.len(), 20);

    // Bounded wait for the ring buffer to hold every reset.
    let mut kernel: HashMap<u64, KernelEvent> = HashMap::new();
    for _ in 0..100 {
        let mut batch = Vec::new();
        reader.drain(&mut batch);
        for e in batch {
            if e.event == analyzer_common::EventKind::ReceiveReset {
                kernel.insert(e.sock_cookie, e);
            }
        }
        if reqs
            .iter()
            .all(|r| kernel.contains_key(&r["sock_cookie"].as_u64().unwrap()))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for r in &reqs {
        let cookie = r["sock_cookie"]
            .as_u64()
            .expect("every request carries a cookie");
        let k = kernel
            .get(&cookie)
            .unwrap_or_else(|| panic!("no kernel RST with cookie {cookie} for {r}"));
        let target = if r["class"] == "connect_refused" {
            refused
        } else {
            rst
        };
        assert_eq!(k.remote, Some(target), "{r}");
        if let Some(local) = r["local"].as_str() {
            assert_eq!(k.local.unwrap().to_string(), local, "{r}");
        }
    }
    let classes: Vec<&str> = reqs.iter().map(|r| r["class"].as_str().unwrap()).collect();
    assert_eq!(
        classes.iter().filter(|c| **c == "connect_refused").count(),
        10
    );
    assert_eq!(classes.iter().filter(|c| **c == "tcp_reset").count(), 10);
    assert_eq!(probes.stats().unwrap().reserve_failed, 0);
}
