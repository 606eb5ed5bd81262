//! A live analyzer session on its own thread, as `analyzer attach` runs it (the library
//! path the binary uses), for the end-to-end tests of its verdicts, and the report
//! helpers they share.
#![allow(dead_code, reason = "each test file uses part of it")]
use std::{process::Command, sync::mpsc, time::Duration};

use analyzer::{
    attach::{AttachOptions, AttachOutcome, Backend},
    recording::FilterConfig,
    report::Report,
    session::{self, SessionOptions},
    tls_probe::ProbeOptions,
};
use serde_json::Value;

/// An analyzer session on its own thread.
pub struct Session {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<anyhow::Result<(AttachOutcome, Report)>>,
}

impl Session {
    /// Starts a session recording `port` with `backend`, every connection listed;
    /// returns once it is attached.
    pub fn on_port(port: u16, backend: Backend) -> Self {
        Self::on_port_with_probe(port, backend, ProbeOptions::default())
    }

    /// Starts a session recording every port of `ports` (at most 16) with `backend`,
    /// also probing the Go binaries `tls_exes` (`--tls-exe`), with these certificate
    /// probe options; returns once it is attached.
    pub fn on_ports(
        ports: Vec<u16>,
        backend: Backend,
        tls_exes: Vec<std::path::PathBuf>,
        probe: ProbeOptions,
    ) -> Self {
        Self::start(SessionOptions {
            attach: AttachOptions {
                filter: FilterConfig {
                    ports,
                    ..FilterConfig::default()
                },
                backend,
                tls_exes,
                ..AttachOptions::default()
            },
            all: true,
            probe,
            ..SessionOptions::default()
        })
    }

    /// [`Self::on_port`] with these certificate probe options (`--no-probe`, `--cacert`,
    /// `--probe-timeout`).
    pub fn on_port_with_probe(port: u16, backend: Backend, probe: ProbeOptions) -> Self {
        Self::on_ports(vec![port], backend, vec![], probe)
    }

    /// Starts the session and returns once it is attached.
    pub fn start(mut opts: SessionOptions) -> Self {
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        opts.attach.ready = Some(ready_tx);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(session::run(&opts, async {
                let _ = stop_rx.await;
            }))
        });
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the analyzer attached");
        Self { stop, thread }
    }

    /// Stops it at once and returns what it saw and its report, unchecked.
    pub fn stop(self) -> (AttachOutcome, Report) {
        self.stop.send(()).unwrap();
        self.thread.join().unwrap().expect("analyzer session")
    }

    /// Waits for the last events (FIN/RST exchanges, destroys) to reach the ring, stops,
    /// checks the ring lost none, and returns what it saw and its report.
    pub fn stop_drained(self) -> (AttachOutcome, Report) {
        std::thread::sleep(Duration::from_millis(300));
        let (outcome, report) = self.stop();
        assert_eq!(outcome.stats.reserve_failed, 0, "events lost: {outcome:?}");
        (outcome, report)
    }

    /// [`Self::stop_drained`], also checking every event was read and decoded; returns
    /// the outcome and the report as JSON.
    pub fn finish(self) -> (AttachOutcome, Value) {
        let (outcome, report) = self.stop_drained();
        assert_eq!(outcome.stats.read_failed, 0, "{outcome:?}");
        assert_eq!(outcome.decode_errors, 0, "{outcome:?}");
        (outcome, serde_json::to_value(&report).unwrap())
    }
}

/// The causes of a report.
pub fn causes(r: &Value) -> &Vec<Value> {
    r["causes"].as_array().expect("causes")
}

/// The top cause, which must be there.
pub fn top(r: &Value) -> &Value {
    let c = causes(r);
    assert!(!c.is_empty(), "no causes: {r:#}");
    &c[0]
}

/// The top cause, which must be `id`.
pub fn assert_top<'a>(r: &'a Value, id: &str) -> &'a Value {
    let t = top(r);
    assert_eq!(t["id"], id, "top cause; report: {r:#}");
    t
}

/// `curl -s -o /dev/null --max-time 5 ARGS`: its exit code.
pub fn curl(args: &[&str]) -> Option<i32> {
    Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "5"])
        .args(args)
        .status()
        .expect("curl runs")
        .code()
}

/// Everything a value says, as one string to search.
pub fn text(v: &Value) -> String {
    v.to_string()
}
