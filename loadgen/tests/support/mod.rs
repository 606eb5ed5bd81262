//! Shared by loadgen's end-to-end tests: a testbed on loopback (in-process) and the real
//! `loadgen` binary run against it, with its events file and summary parsed.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::{
    path::PathBuf,
    process::{Command, Output},
    time::Duration,
};

use serde_json::Value;
use testbed::{Config, Testbed};

/// A testbed with the given fault specs, on its own runtime (it keeps serving while
/// the test blocks on the loadgen child process).
pub struct Bed {
    pub tb: Testbed,
    _rt: tokio::runtime::Runtime,
}

impl Bed {
    pub fn start(specs: &[&str]) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let tb = rt
            .block_on(Testbed::start(
                Config::with_specs(specs.iter().copied()).unwrap(),
            ))
            .expect("start the testbed");
        Self { tb, _rt: rt }
    }

    pub fn port(&self, spec: &str) -> u16 {
        self.tb
            .addr(spec)
            .unwrap_or_else(|| panic!("no listener for {spec}"))
            .port()
    }

    /// `https://NAME:PORT/` with the flags that make it resolve to loopback and trust
    /// the testbed's CA.
    pub fn https_args(&self, spec: &str) -> Vec<String> {
        let name = self.tb.server_name();
        let port = self.port(spec);
        vec![
            format!("https://{name}:{port}/"),
            "--resolve".into(),
            format!("{name}:{port}:127.0.0.1"),
            "--cacert".into(),
            self.tb.ca_path().display().to_string(),
        ]
    }

    pub fn http_url(&self, spec: &str) -> String {
        format!("http://127.0.0.1:{}/", self.port(spec))
    }
}

/// The outcome of one loadgen run.
pub struct Run {
    pub out: Output,
    pub events: Vec<Value>,
    pub summary: Option<Value>,
    pub dir: PathBuf,
}

impl Run {
    pub fn requests(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["type"] == "request")
            .collect()
    }

    pub fn conns(&self, event: &str) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["type"] == "conn" && e["event"] == event)
            .collect()
    }

    pub fn failed(&self) -> Vec<&Value> {
        self.requests()
            .into_iter()
            .filter(|e| e.get("class").is_some())
            .collect()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    pub fn debug(&self) -> String {
        format!(
            "status {}\nstdout:\n{}\nstderr:\n{}\nfirst events: {:#?}",
            self.out.status,
            self.stdout(),
            String::from_utf8_lossy(&self.out.stderr),
            self.events.iter().take(6).collect::<Vec<_>>()
        )
    }
}

fn scratch_dir() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("loadgen-e2e-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `loadgen attack ARGS --events --output --quiet` (bounded by a 60 s kill).
pub fn attack(args: &[String]) -> Run {
    let dir = scratch_dir();
    let events = dir.join("events.ndjson");
    let summary = dir.join("summary.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loadgen"));
    cmd.arg("attack")
        .args(args)
        .arg("--events")
        .arg(&events)
        .arg("--output")
        .arg(&summary)
        .arg("--quiet");
    let out = run_bounded(&mut cmd, Duration::from_secs(60));
    let events = std::fs::read_to_string(&events)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l}: {e}")))
        .collect();
    let summary = std::fs::read_to_string(&summary)
        .ok()
        .map(|s| serde_json::from_str(&s).expect("summary is JSON"));
    Run {
        out,
        events,
        summary,
        dir,
    }
}

/// Runs a command, killing it if it outlives `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if rx.recv_timeout(limit).is_err() {
            // SAFETY: kill on a pid we spawned; harmless if it already exited.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let out = child.wait_with_output().expect("wait");
    let _ = tx.send(());
    out
}

/// `["a", "b"]` as owned strings, appended to `base`.
pub fn args(base: Vec<String>, more: &[&str]) -> Vec<String> {
    let mut v = base;
    v.extend(more.iter().map(|s| (*s).to_owned()));
    v
}
