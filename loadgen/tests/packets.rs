//! Privileged end-to-end tests of `loadgen packets` (root: raw sockets, AF_PACKET,
//! nftables, network namespaces). The real binary runs against listeners on loopback
//! and in a namespace the test makes; nothing leaves the host. Tests take a lock so that
//! they run one at a time whatever the harness's thread count.
use std::{
    io::{ErrorKind, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

static LOCK: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    pid: u32,
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn loadgen")
}

/// Waits for `child` at most `limit`, killing it and failing the test past that.
fn finish(mut child: Child, limit: Duration) -> Ran {
    let pid = child.id();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "loadgen {pid} still running after {limit:?}; stderr: {}",
                err_t.join().unwrap()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    Ran {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
        pid,
    }
}

fn run(args: &[&str]) -> Ran {
    finish(spawn(args), Duration::from_secs(30))
}

fn nft_tables() -> String {
    let out = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft is installed (cargo xtask setup installs nftables)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_table_gone(pid: u32) {
    let tables = nft_tables();
    assert!(
        !tables
            .lines()
            .any(|l| l.trim() == format!("table inet faultline_syn_{pid}")),
        "loadgen {pid} left its nft table behind: {tables}"
    );
}

/// `packets syn` at 100/s for 50 probes against `targets`, as JSON; checks the exit
/// code, the "installed" line and that the nft table is gone.
fn syn(targets: &[SocketAddr], ports: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "packets",
        "syn",
        "--rate",
        "100",
        "--count",
        "50",
        "--timeout",
        "500ms",
    ];
    let t: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
    for t in &t {
        args.extend(["--target", t.as_str()]);
    }
    args.extend(["--source-ports", ports, "--format", "json"]);
    args.extend_from_slice(extra);
    let r = run(&args);
    assert!(r.status.success(), "exit {:?}: {}", r.status, r.stderr);
    assert!(
        r.stderr
            .contains("nft: installed table inet faultline_syn_"),
        "{}",
        r.stderr
    );
    assert_table_gone(r.pid);
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    assert_eq!(v["firewall"]["removed"], true);
    v
}

fn target(v: &Value, i: usize) -> &Value {
    &v["targets"][i]
}

#[test]
fn open_port_answers_syn_ack() {
    let _g = serial();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let v = syn(&[l.local_addr().unwrap()], "61000-61099", &[]);
    let t = target(&v, 0);
    assert_eq!(t["verdict"], "open", "{t:#}");
    assert_eq!(t["answers"]["sent"], 50);
    assert_eq!(t["answers"]["syn_ack"], 50, "{t:#}");
    assert_eq!(t["lost"], 0);
    assert_eq!(t["rtt"]["syn_ack"]["count"], 50);
    assert!(t["rtt"]["rst"].is_null());
    assert_eq!(v["probes_sent"], 50);
    assert!(v["schedule_lag"]["max_ns"].as_u64().is_some());
    // Our RSTs tore the half-open connections down: no SYN_RECV request socket (state
    // 03 in /proc/net/tcp) is left for the port; the kernel's would linger ~60 s.
    let port = format!(":{:04X} ", l.local_addr().unwrap().port());
    let half_open = std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(port.trim_end()) && f[3] == "03"
        })
        .count();
    assert_eq!(half_open, 0, "half-open connections left on {port}");
}

#[test]
fn closed_port_answers_rst() {
    let _g = serial();
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let v = syn(&[addr], "61100-61199", &[]);
    let t = target(&v, 0);
    assert_eq!(t["verdict"], "closed", "{t:#}");
    assert_eq!(t["answers"]["rst"], 50, "{t:#}");
    assert_eq!(t["rtt"]["rst"]["count"], 50);
}

#[test]
fn ipv6_open_and_closed_on_loopback() {
    let _g = serial();
    let open = TcpListener::bind("[::1]:0").unwrap();
    let closed = TcpListener::bind("[::1]:0").unwrap().local_addr().unwrap();
    let v = syn(&[open.local_addr().unwrap(), closed], "61200-61299", &[]);
    assert_eq!(target(&v, 0)["verdict"], "open", "{v:#}");
    assert_eq!(target(&v, 0)["answers"]["syn_ack"], 25);
    assert_eq!(target(&v, 1)["verdict"], "closed", "{v:#}");
    assert_eq!(target(&v, 1)["answers"]["rst"], 25);
}

#[test]
fn full_accept_queue_is_listen_queue_full() {
    let _g = serial();
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .unwrap();
    // Backlog 1 holds two connections (sk_acceptq_is_full is `>`); never accepted.
    s.listen(1).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    let mut fill = Vec::new();
    for _ in 0..3 {
        if let Ok(c) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            fill.push(c);
        }
    }
    assert!(
        fill.len() >= 2,
        "the backlog took {} connections",
        fill.len()
    );
    let v = syn(&[addr], "61300-61399", &[]);
    let t = target(&v, 0);
    assert_eq!(t["verdict"], "listen_queue_full", "{t:#}");
    assert_eq!(t["answers"]["no_answer"], 50, "{t:#}");
    let evidence = t["evidence"].to_string();
    assert!(evidence.contains("above its backlog 1"), "{evidence}");
    assert!(evidence.contains("ListenOverflows +"), "{evidence}");
    assert_eq!(t["local"]["listeners"][0]["backlog"], 1);
    drop(s);
}

/// A network namespace with a veth pair to it, removed on drop.
struct Netns {
    name: String,
    veth: String,
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// `10.200.<x>.1/30` here, `.2` there.
    fn new(x: u8) -> Self {
        let pid = std::process::id();
        let ns = Self {
            name: format!("faultline-pkt-{pid}"),
            veth: format!("flp{pid}a"),
        };
        let peer = format!("flp{pid}b");
        sh(&["ip", "netns", "add", &ns.name]);
        sh(&[
            "ip", "link", "add", &ns.veth, "type", "veth", "peer", "name", &peer,
        ]);
        sh(&["ip", "link", "set", &peer, "netns", &ns.name]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("10.200.{x}.1/30"),
            "dev",
            &ns.veth,
        ]);
        sh(&["ip", "link", "set", &ns.veth, "up"]);
        let inside = |args: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", ns.name.as_str()];
            v.extend_from_slice(args);
            sh(&v);
        };
        inside(&[
            "ip",
            "addr",
            "add",
            &format!("10.200.{x}.2/30"),
            "dev",
            &peer,
        ]);
        inside(&["ip", "link", "set", &peer, "up"]);
        inside(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn exec(&self, args: &[&str]) {
        let mut v = vec!["ip", "netns", "exec", self.name.as_str()];
        v.extend_from_slice(args);
        sh(&v);
    }

    /// A listener bound inside the namespace (setns on a helper thread).
    fn listen(&self, port: u16) -> TcpListener {
        let path = format!("/var/run/netns/{}", self.name);
        thread::spawn(move || {
            let f = std::fs::File::open(&path).unwrap();
            // SAFETY: setns on a valid namespace fd changes only this thread's netns.
            let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            TcpListener::bind(("0.0.0.0", port)).unwrap()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
    }
}

#[test]
fn firewalled_port_in_a_namespace_is_filtered() {
    let _g = serial();
    let x = (std::process::id() % 250) as u8 + 1;
    let ns = Netns::new(x);
    let _listener = ns.listen(8080);
    ns.exec(&["nft", "add", "table", "inet", "t"]);
    ns.exec(&[
        "nft",
        "add chain inet t input { type filter hook input priority 0; }",
    ]);
    ns.exec(&["nft", "add rule inet t input tcp dport 8080 drop"]);
    let addr: SocketAddr = format!("10.200.{x}.2:8080").parse().unwrap();
    let v = syn(&[addr], "61400-61499", &[]);
    let t = target(&v, 0);
    assert_eq!(t["verdict"], "filtered", "{t:#}");
    assert_eq!(t["answers"]["no_answer"], 50, "{t:#}");
    assert_eq!(t["interface"], ns.veth.as_str());
    assert_eq!(t["local"]["target_is_local"], false);
    // Port 9 in the namespace has no listener and no rule: the host answers RST.
    assert_eq!(t["host_check"]["answer"], "rst", "{t:#}");
    let evidence = t["evidence"].to_string();
    assert!(evidence.contains("host is up"), "{evidence}");
}

#[test]
fn sigint_mid_run_reports_and_removes_the_table() {
    let _g = serial();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = l.local_addr().unwrap().to_string();
    let child = spawn(&[
        "packets",
        "syn",
        "--target",
        &target,
        "--rate",
        "20",
        "--duration",
        "30s",
        "--source-ports",
        "61500-61599",
    ]);
    let pid = child.id();
    let table = format!("table inet faultline_syn_{pid}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nft_tables().lines().any(|l| l.trim() == table) {
        assert!(Instant::now() < deadline, "the table never appeared");
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGINT) }, 0);
    let r = finish(child, Duration::from_secs(10));
    assert!(r.status.success(), "exit {:?}: {}", r.status, r.stderr);
    assert!(r.stdout.contains("Interrupted"), "{}", r.stdout);
    assert!(r.stdout.contains("open"), "{}", r.stdout);
    assert!(r.stderr.contains("interrupted"), "{}", r.stderr);
    assert_table_gone(pid);
}

#[test]
fn nft_missing_is_a_clear_error() {
    let _g = serial();
    let child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "packets",
            "syn",
            "--target",
            "127.0.0.1:9",
            "--rate",
            "10",
            "--count",
            "1",
        ])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&child.stderr);
    assert_eq!(child.status.code(), Some(1), "{err}");
    assert!(err.contains("apt-get install nftables"), "{err}");
}

/// A loopback connection; the server trickles a byte every 50 ms while `trickle`.
fn connection(trickle: bool) -> (TcpStream, SocketAddr, SocketAddr, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = l.local_addr().unwrap();
    let client = TcpStream::connect(server).unwrap();
    let (mut accepted, _) = l.accept().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
            if trickle && accepted.write_all(b".").is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    let local = client.local_addr().unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (client, local, server, stop)
}

/// Injects `kind` toward the client, then reads until the connection ends.
fn inject(kind: &str, trickle: bool) -> std::io::Result<usize> {
    let (mut client, local, server, stop) = connection(trickle);
    let m = format!("{local}-{server}");
    let child = spawn(&[
        "packets",
        "inject",
        kind,
        "--match",
        &m,
        "--direction",
        "to-client",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 64];
    let end = loop {
        assert!(Instant::now() < deadline, "the connection never ended");
        match client.read(&mut buf) {
            Ok(0) => break Ok(0),
            Ok(_) => continue,
            Err(e) => break Err(e),
        }
    };
    stop.store(true, Ordering::Relaxed);
    let r = finish(child, Duration::from_secs(10));
    assert!(r.status.success(), "exit {:?}: {}", r.status, r.stderr);
    let flags = if kind == "--rst" {
        "RST|ACK"
    } else {
        "FIN|ACK"
    };
    assert!(
        r.stdout
            .contains(&format!("sent {flags} {server} -> {local}")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("ttl=128"), "{}", r.stdout);
    end
}

#[test]
fn injected_rst_resets_the_client() {
    let _g = serial();
    for trickle in [false, true] {
        let e = inject("--rst", trickle).expect_err("the read should fail");
        assert_eq!(
            e.kind(),
            ErrorKind::ConnectionReset,
            "trickle {trickle}: {e}"
        );
    }
}

#[test]
fn injected_fin_ends_the_clients_stream() {
    let _g = serial();
    for trickle in [false, true] {
        let n = inject("--fin", trickle).unwrap_or_else(|e| panic!("trickle {trickle}: {e}"));
        assert_eq!(n, 0);
    }
}

#[test]
fn inject_refuses_foreign_targets() {
    let _g = serial();
    for (m, dir) in [
        ("127.0.0.1:40000-192.0.2.1:80", "to-server"),
        ("192.0.2.1:40000-127.0.0.1:80", "to-client"),
    ] {
        let r = run(&[
            "packets",
            "inject",
            "--rst",
            "--match",
            m,
            "--direction",
            dir,
        ]);
        assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
        assert!(
            r.stderr.contains("refusing to inject into 192.0.2.1"),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr.contains("--allow-target 192.0.2.1"),
            "{}",
            r.stderr
        );
    }
}
