//! `cargo xtask demo`: the main job on an embedded default. Starts the fault-injecting
//! testbed on loopback and the analyzer beside it, sends one request at each fault with
//! curl (a foreign client: the analyzer must see TCP evidence without its help), then
//! joins what curl said with what the kernel saw, per connection, into a report.
//!
//! loadgen replaces curl here once it lands (issue 3); the analyzer's ranked report
//! replaces the table (issue 4).
use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{ebpf, setup, sh};

/// The faults the demo drives, with the curl protocol flag that shows each best.
const FAULTS: &[(&str, &str)] = &[
    ("ok", "--http2"),
    ("status:503", "--http1.1"),
    ("wrong-cert", "--http2"),
    ("untrusted-cert", "--http2"),
    ("expired-cert", "--http2"),
    ("goaway:enhance_your_calm", "--http2"),
    ("rst-stream:refused_stream", "--http2"),
    ("rst", "--http1.1"),
    ("rst-mid-response", "--http1.1"),
    ("fin-mid-response", "--http1.1"),
    ("stall", "--http1.1"),
    ("backlog-full", "--http1.1"),
    ("refused", "--http1.1"),
];

/// A client's per-request deadline: bounds `stall` and `backlog-full`.
const CURL_MAX_TIME_S: &str = "2";

struct Row {
    fault: &'static str,
    port: u16,
    curl_exit: i32,
    curl_says: String,
    http_code: String,
    local_port: Option<u16>,
}

pub fn run() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo attaches eBPF programs: run it as root (sudo -E cargo xtask demo)");
    }
    setup::run()?;
    ebpf::build(true)?;
    let root = sh::workspace_root();
    sh::run(
        sh::cargo()
            .args([
                "build",
                "--release",
                "--bin",
                "analyzer",
                "--bin",
                "testbed",
            ])
            .current_dir(&root),
    )?;
    let bin = root.join("target/release");
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

    let mut analyzer = Guard(
        Command::new(bin.join("analyzer"))
            .args(["attach", "--duration", "5m", "--raw-events"])
            .arg(&kernel_path)
            .stderr(Stdio::piped())
            .spawn()
            .context("start the analyzer")?,
    );
    let analyzer_log = wait_for_attach(&mut analyzer.0)?;

    let name = manifest["name"]
        .as_str()
        .context("manifest: name")?
        .to_owned();
    let ca = manifest["ca_pem_path"]
        .as_str()
        .context("manifest: ca_pem_path")?
        .to_owned();
    let mut rows = Vec::new();
    for (fault, proto) in FAULTS {
        let port = listener_port(&manifest, fault)?;
        rows.push(curl(fault, proto, port, &name, &ca)?);
    }

    // SIGTERM: the analyzer drains its ring buffer and flushes the event file.
    // SAFETY: kill on a child pid we own.
    unsafe { libc::kill(analyzer.0.id() as i32, libc::SIGTERM) };
    let status = analyzer.0.wait().context("wait for the analyzer")?;
    let summary = analyzer_log
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_default();
    if !status.success() {
        bail!("the analyzer failed ({status}): {summary}");
    }
    drop(testbed);

    let resets = resets_by_port(&kernel_path)?;
    print_report(&rows, &resets, &summary, &out);
    Ok(())
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
        .find(|l| l["spec"] == fault)
        .with_context(|| format!("manifest has no listener for {fault}"))?;
    let addr: std::net::SocketAddr = l["addr"].as_str().context("addr")?.parse()?;
    Ok(addr.port())
}

fn curl(fault: &'static str, proto: &str, port: u16, name: &str, ca: &str) -> Result<Row> {
    let url = format!("https://{name}:{port}/");
    let o = sh::output(
        Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "--max-time",
                CURL_MAX_TIME_S,
                proto,
            ])
            .args(["--cacert", ca, "--resolve"])
            .arg(format!("{name}:{port}:127.0.0.1"))
            .args(["-w", "%{http_code} %{local_port}"])
            .arg(&url),
    )?;
    let w = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut it = w.split_whitespace();
    let http_code = it.next().unwrap_or("000").to_owned();
    let local_port = it.next().and_then(|p| p.parse().ok()).filter(|&p| p != 0);
    let curl_says = String::from_utf8_lossy(&o.stderr)
        .lines()
        .last()
        .unwrap_or("")
        .trim_start_matches("curl: ")
        .to_owned();
    Ok(Row {
        fault,
        port,
        curl_exit: o.status.code().unwrap_or(-1),
        curl_says,
        http_code,
        local_port,
    })
}

/// RSTs received by this host, keyed by the remote (testbed) port, each with the local
/// port and socket cookie of the connection that got it.
fn resets_by_port(path: &PathBuf) -> Result<BTreeMap<u16, Vec<(u16, u64)>>> {
    let text = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut map: BTreeMap<u16, Vec<(u16, u64)>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        if v["event"] != "receive_reset" {
            continue;
        }
        let port = |k: &str| -> Option<u16> {
            v[k].as_str()?
                .parse::<std::net::SocketAddr>()
                .ok()
                .map(|a| a.port())
        };
        if let (Some(remote), Some(local)) = (port("remote"), port("local")) {
            let cookie = v["sock_cookie"].as_u64().unwrap_or(0);
            map.entry(remote).or_default().push((local, cookie));
        }
    }
    Ok(map)
}

fn print_report(rows: &[Row], resets: &BTreeMap<u16, Vec<(u16, u64)>>, summary: &str, out: &Path) {
    println!();
    println!("faultline demo: one curl request per testbed fault, analyzer attached");
    println!(
        "{:<27} {:<5} {:<62} kernel evidence",
        "fault", "http", "what the client said"
    );
    println!("{}", "-".repeat(130));
    for r in rows {
        let said = if r.curl_exit == 0 {
            "ok".to_owned()
        } else {
            format!("curl {}: {}", r.curl_exit, truncate(&r.curl_says, 52))
        };
        let ours: Vec<&(u16, u64)> = resets
            .get(&r.port)
            .map(|v| {
                v.iter()
                    .filter(|(lp, _)| Some(*lp) == r.local_port || r.local_port.is_none())
                    .collect()
            })
            .unwrap_or_default();
        let evidence = match ours.as_slice() {
            [] => "no RST received".to_owned(),
            [(lp, cookie)] => format!("RST received on :{lp} (cookie {cookie})"),
            many => format!("{} RSTs received", many.len()),
        };
        println!(
            "{:<27} {:<5} {:<62} {}",
            r.fault, r.http_code, said, evidence
        );
    }
    println!();
    println!("analyzer: {summary}");
    println!("kernel events: {}", out.join("kernel.ndjson").display());
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}...", s.chars().take(n).collect::<String>())
    }
}
