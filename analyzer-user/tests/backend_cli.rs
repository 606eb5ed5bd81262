//! `--backend auto` falls back to the raw-socket capture where eBPF cannot load, saying
//! why, and still attributes failures; `--backend ebpf` refuses there. Runs the real
//! binary as root with every capability but CAP_NET_RAW dropped (setpriv, util-linux),
//! so it needs root: CI and developers' machines are.
use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant},
};
use testbed::nft::{Hook, NftTable};

fn net_raw_only(args: &[&str]) -> Command {
    assert_eq!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() },
        0,
        "these tests run as root"
    );
    let mut c = Command::new("setpriv");
    c.args([
        "--inh-caps=-all",
        "--ambient-caps=-all",
        "--bounding-set=-all,+net_raw",
        "--",
    ])
    .arg(env!("CARGO_BIN_EXE_analyzer"))
    .args(args);
    c
}

/// A loopback port nothing listens on (bound to a listener that is then closed).
fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[test]
fn auto_falls_back_to_raw_with_a_notice_and_still_judges() {
    let target = closed_port();
    let port = target.port().to_string();
    let mut child = net_raw_only(&[
        "attach",
        "--backend",
        "auto",
        "--port",
        &port,
        "--duration",
        "3s",
        "--quiet",
        "--format",
        "json",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("run setpriv (util-linux)");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains("attached:") {
        assert!(Instant::now() < deadline, "never attached: {seen}");
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("the analyzer exited: {seen}");
        }
        seen += &line;
    }
    assert!(seen.contains("notice: eBPF unavailable"), "{seen}");
    assert!(seen.contains("attached: raw:lo"), "{seen}");
    for _ in 0..2 {
        let e = TcpStream::connect_timeout(&target, Duration::from_secs(2)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{seen}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["run"]["backend"], "raw", "{r:#}");
    assert!(
        r["run"]["backend_notice"]
            .as_str()
            .is_some_and(|n| n.contains("eBPF unavailable")),
        "{r:#}"
    );
    assert_eq!(r["causes"][0]["id"], "connect_refused", "{r:#}");
    assert_eq!(r["causes"][0]["count"], 2, "{r:#}");
}

#[test]
fn ebpf_backend_refuses_without_the_capabilities() {
    let o = net_raw_only(&["attach", "--backend", "ebpf", "--duration", "1s", "--quiet"])
        .output()
        .expect("run setpriv (util-linux)");
    let t = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("analyzer: error:"), "{t}");
    assert!(!t.contains("attached:"), "{t}");
}

/// Runs `analyzer attach` (as root, every capability) until it prints `attached:`, then
/// `during`, then waits for it to stop on its own `--duration`; returns the JSON report.
fn attach_json(args: &[&str], during: impl FnOnce()) -> serde_json::Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_analyzer"))
        .arg("attach")
        .args(args)
        .args(["--quiet", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains("attached:") {
        assert!(Instant::now() < deadline, "never attached: {seen}");
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "exited: {seen}");
        seen += &line;
    }
    during();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{seen}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn raw_backend_keeps_only_the_remote_addresses_asked_for() {
    let port = closed_port().port();
    let p = port.to_string();
    let r = attach_json(
        &[
            "--backend",
            "raw",
            "--port",
            &p,
            "--remote",
            "127.0.0.2",
            "--duration",
            "2s",
        ],
        || {
            for ip in ["127.0.0.1", "127.0.0.2"] {
                let a: SocketAddr = format!("{ip}:{port}").parse().unwrap();
                let e = TcpStream::connect_timeout(&a, Duration::from_secs(2)).unwrap_err();
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
            }
        },
    );
    assert_eq!(r["causes"][0]["id"], "connect_refused", "{r:#}");
    assert_eq!(r["causes"][0]["count"], 1, "only 127.0.0.2's: {r:#}");
    let example = r["causes"][0]["examples"][0].to_string();
    assert!(example.contains("127.0.0.2"), "{example}");
}

#[test]
fn raw_backend_refuses_pid_filtering() {
    let o = Command::new(env!("CARGO_BIN_EXE_analyzer"))
        .args([
            "attach",
            "--backend",
            "raw",
            "--pid",
            "1",
            "--duration",
            "1s",
            "--quiet",
        ])
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("--pid needs the eBPF backend"), "{t}");
}

#[test]
fn raw_backend_names_an_icmp_reject() {
    let port = closed_port().port();
    // On the input hook: the capture has already seen the SYN, as it would on the wire.
    let _fw = NftTable::new(
        Hook::Input,
        &format!("ip daddr 127.0.0.1 tcp dport {port} reject with icmp type admin-prohibited"),
    );
    let p = port.to_string();
    let r = attach_json(
        &["--backend", "raw", "--port", &p, "--duration", "2s"],
        || {
            let a: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let e = TcpStream::connect_timeout(&a, Duration::from_secs(2)).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EHOSTUNREACH), "{e}");
        },
    );
    let top = &r["causes"][0];
    assert_eq!(top["id"], "connect_unreachable", "{r:#}");
    assert!(top.to_string().contains("code 13"), "{top:#}");
}
