//! `cargo xtask demo`: the main job on an embedded default. Starts the fault-injecting
//! testbed on loopback and `analyzer attach` beside it (filtered on the testbed's ports,
//! told where loadgen's event files will be), runs loadgen at each fault, stops the
//! analyzer with SIGTERM and prints a one-line summary per fault followed by the
//! analyzer's ranked root-cause report; the JSON report lands beside it.
use std::{
    collections::HashMap,
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{ebpf, setup, sh};

/// The faults the demo drives, each with the loadgen flags that show it best.
const FAULTS: &[(&str, &[&str])] = &[
    ("ok", &["--http2"]),
    ("status:503", &["--http1"]),
    ("wrong-cert", &["--http2"]),
    ("untrusted-cert", &["--http2"]),
    ("expired-cert", &["--http2"]),
    (
        "goaway:enhance_your_calm:after=2",
        &["--http2", "--users", "8", "--connections", "1"],
    ),
    (
        "goaway-on-concurrency:2",
        &["--http2", "--users", "5", "--connections", "1"],
    ),
    (
        "rst-stream:refused_stream:after=1",
        &["--http2", "--connections", "1"],
    ),
    ("rst:after=1", &["--http1", "--connections", "1"]),
    ("rst-mid-response", &["--http1"]),
    ("fin-mid-response", &["--http1"]),
    (
        "close-idle:100ms",
        &["--http1", "--connections", "1", "--rate", "4"],
    ),
    ("stall", &["--http1", "--timeout", "500ms"]),
    // Past the first SYN retransmission (1 s initial RTO), so the kernel shows it.
    ("backlog-full", &["--http1", "--connect-timeout", "1500ms"]),
    ("refused", &["--http1"]),
];

/// Load per fault: enough requests to rank, short enough for a demo.
const RATE: &str = "20";
const DURATION: &str = "1s";

pub fn run() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo attaches eBPF programs: run it as root (sudo -E cargo xtask demo)");
    }
    let root = sh::workspace_root();
    let bin = build_binaries(&root)?;
    let out = root.join("out/demo");
    fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let manifest_path = out.join("testbed.json");
    let kernel_path = out.join("kernel.ndjson");
    let _ = fs::remove_file(&manifest_path);

    let mut testbed = Guard(
        Command::new(bin.join("testbed"))
            .args(FAULTS.iter().map(|(f, _)| *f))
            .arg("--manifest")
            .arg(&manifest_path)
            .arg("--ca-out")
            .arg(out.join("ca.pem"))
            .stdout(Stdio::null())
            .spawn()
            .context("start the testbed")?,
    );
    let manifest = wait_for_manifest(&manifest_path, &mut testbed.0)?;

    let name = manifest["name"]
        .as_str()
        .context("manifest: name")?
        .to_owned();
    let ca = manifest["ca_pem_path"]
        .as_str()
        .context("manifest: ca_pem_path")?
        .to_owned();
    let mut ports = Vec::new();
    let mut planned = Vec::new();
    for (fault, flags) in FAULTS {
        let port = listener_port(&manifest, fault)?;
        ports.push(port.to_string());
        let events = out.join(format!("{}.events.ndjson", stem(fault)));
        let _ = fs::remove_file(&events);
        planned.push((*fault, *flags, port, events));
    }
    let report_path = out.join("report.json");
    let events: Vec<&Path> = planned.iter().map(|(_, _, _, e)| e.as_path()).collect();
    let mut analyzer = start_analyzer(&bin, &ports, &kernel_path, &report_path, &events)?;
    let analyzer_log = wait_for_attach(&mut analyzer.0)?;
    let mut analyzer_stdout = analyzer.0.stdout.take().context("analyzer stdout")?;
    let report_text = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut analyzer_stdout, &mut s);
        s
    });

    let mut runs = Vec::new();
    for (fault, flags, port, events) in &planned {
        runs.push(loadgen(&bin, fault, flags, *port, &name, &ca, events)?);
    }

    // SIGTERM: the analyzer drains its ring buffer and flushes the event file.
    // SAFETY: kill on a child pid we own.
    unsafe { libc::kill(analyzer.0.id() as i32, libc::SIGTERM) };
    let status = analyzer.0.wait().context("wait for the analyzer")?;
    let summary = analyzer_log
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_default();
    let report = report_text.join().unwrap_or_default();
    if !status.success() {
        bail!("the analyzer failed ({status}): {summary}");
    }
    drop(testbed);

    print_runs(&runs)?;
    println!();
    print!("{report}");
    println!();
    println!("analyzer: {summary}");
    println!(
        "files: {} (report.json, kernel.ndjson, loadgen events and summaries)",
        out.display()
    );
    Ok(())
}

/// Builds the kernel programs and the three release binaries; returns their folder.
fn build_binaries(root: &Path) -> Result<PathBuf> {
    setup::run()?;
    ebpf::build(true)?;
    sh::run(
        sh::cargo()
            .args([
                "build",
                "--release",
                "--bin",
                "analyzer",
                "--bin",
                "testbed",
                "--bin",
                "loadgen",
            ])
            .current_dir(root),
    )?;
    Ok(root.join("target/release"))
}

/// Starts `analyzer attach` on the testbed's ports, told where loadgen's event files
/// will be, with stdout and stderr piped.
fn start_analyzer(
    bin: &Path,
    ports: &[String],
    kernel_path: &Path,
    report_path: &Path,
    loadgen_events: &[&Path],
) -> Result<Guard> {
    let mut cmd = Command::new(bin.join("analyzer"));
    cmd.args(["attach", "--quiet", "--duration", "10m", "--port"])
        .arg(ports.join(","))
        .arg("--raw-events")
        .arg(kernel_path)
        .arg("--out")
        .arg(report_path);
    for events in loadgen_events {
        cmd.arg("--loadgen-events").arg(events);
    }
    Ok(Guard(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("start the analyzer")?,
    ))
}

/// Kills the child when dropped, so an early error never leaves servers behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_manifest(path: &Path, child: &mut Child) -> Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            bail!("the testbed exited early ({status})");
        }
        if let Ok(text) = fs::read_to_string(path) {
            return serde_json::from_str(&text)
                .with_context(|| format!("parse {}", path.display()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "the testbed wrote no manifest at {} within 30 s",
        path.display()
    )
}

/// Waits for the analyzer's "attached:" line; returns a channel that yields its final
/// summary line.
fn wait_for_attach(child: &mut Child) -> Result<mpsc::Receiver<String>> {
    let stderr = child.stderr.take().context("analyzer stderr")?;
    let (attached_tx, attached_rx) = mpsc::channel();
    let (summary_tx, summary_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("analyzer: {line}");
            if line.starts_with("attached:") {
                let _ = attached_tx.send(());
            }
            if line.starts_with("events:") {
                let _ = summary_tx.send(line);
            }
        }
    });
    attached_rx
        .recv_timeout(Duration::from_secs(30))
        .context("the analyzer did not attach within 30 s")?;
    Ok(summary_rx)
}

fn listener_port(manifest: &serde_json::Value, fault: &str) -> Result<u16> {
    let listeners = manifest["listeners"]
        .as_array()
        .context("manifest: listeners")?;
    let l = listeners
        .iter()
        // The testbed prints specs in canonical form (defaults spelled out), so
        // `goaway-on-concurrency:2` is listed as `goaway-on-concurrency:2:hold=50ms`.
        .find(|l| {
            l["spec"]
                .as_str()
                .is_some_and(|s| s == fault || s.starts_with(&format!("{fault}:")))
        })
        .with_context(|| format!("manifest has no listener for {fault}"))?;
    let addr: std::net::SocketAddr = l["addr"].as_str().context("addr")?.parse()?;
    Ok(addr.port())
}

/// One loadgen run at one fault.
struct FaultRun {
    fault: &'static str,
    events: PathBuf,
}

fn loadgen(
    bin: &Path,
    fault: &'static str,
    flags: &[&str],
    port: u16,
    name: &str,
    ca: &str,
    events: &Path,
) -> Result<FaultRun> {
    let mut cmd = Command::new(bin.join("loadgen"));
    cmd.args(["attack", &format!("https://{name}:{port}/"), "--resolve"])
        .arg(format!("{name}:{port}:127.0.0.1"))
        .args([
            "--cacert",
            ca,
            "--quiet",
            "--name",
            fault,
            "--duration",
            DURATION,
        ])
        .arg("--events")
        .arg(events)
        .arg("--output")
        .arg(events.with_extension("").with_extension("summary.json"));
    // A fault's own load model (users, or its own rate) wins over the default rate.
    if !flags.iter().any(|f| *f == "--users" || *f == "--rate") {
        cmd.args(["--rate", RATE]);
    }
    cmd.args(flags);
    let o = sh::output(cmd.stdout(Stdio::null()))?;
    // Exit 0 or 3 (thresholds) are runs; anything else is a broken demo.
    if !matches!(o.status.code(), Some(0 | 3)) {
        bail!(
            "loadgen at {fault} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(FaultRun {
        fault,
        events: events.to_owned(),
    })
}

/// A file-name-safe form of a fault spec.
fn stem(fault: &str) -> String {
    fault
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn print_runs(runs: &[FaultRun]) -> Result<()> {
    println!();
    println!(
        "faultline demo: loadgen at every testbed fault ({RATE} req/s, {DURATION}), analyzer attached"
    );
    println!(
        "{:<34} {:>5} {:>6}  top class (phase: count)",
        "fault", "reqs", "failed"
    );
    println!("{}", "-".repeat(90));
    for r in runs {
        let text = fs::read_to_string(&r.events)
            .with_context(|| format!("read {}", r.events.display()))?;
        let mut reqs = 0u64;
        let mut failed = 0u64;
        let mut by_class: HashMap<String, u64> = HashMap::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            if v["type"] != "request" {
                continue;
            }
            reqs += 1;
            let Some(class) = v["class"].as_str() else {
                continue;
            };
            failed += 1;
            let phase = v["phase"].as_str().unwrap_or("?");
            *by_class.entry(format!("{class} ({phase}")).or_default() += 1;
        }
        let top = by_class
            .iter()
            .max_by_key(|(_, n)| **n)
            .map_or_else(|| "-".to_owned(), |(k, n)| format!("{k}: {n})"));
        println!("{:<34} {reqs:>5} {failed:>6}  {top}", r.fault);
    }
    Ok(())
}
