//! The `testbed` binary: listener lines, the manifest, a request, a clean stop on SIGTERM,
//! and usage errors naming the bad spec.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use testbed::Manifest;

const BIN: &str = env!("CARGO_BIN_EXE_testbed");
const WAIT: Duration = Duration::from_secs(20);

/// Kills the child if a test panics before it is reaped.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn wait_for_manifest(path: &Path, child: &mut Child) -> Manifest {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(bytes) = std::fs::read(path) {
            // Written by rename: a file that exists is complete.
            return serde_json::from_slice(&bytes).expect("manifest is complete JSON");
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("testbed exited before writing the manifest: {status}");
        }
        assert!(Instant::now() < deadline, "no manifest within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "testbed did not exit within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn http_get(addr: std::net::SocketAddr) -> String {
    let mut tcp = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: testbed\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).expect("read until close");
    response
}

#[test]
fn binary_serves_until_sigterm_and_exits_zero() {
    let dir = std::env::temp_dir().join(format!("testbed-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest_path = dir.join("manifest.json");
    let ca_path = dir.join("ca.pem");
    let _ = std::fs::remove_file(&manifest_path);

    let child = Command::new(BIN)
        .args(["--name", "api.faultline.test", "--ca-out"])
        .arg(&ca_path)
        .arg("--manifest")
        .arg(&manifest_path)
        .args(["ok", "status:503", "refused"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn testbed");
    let mut child = Reaper(child);
    let manifest = wait_for_manifest(&manifest_path, &mut child.0);

    assert_eq!(manifest.name, "api.faultline.test");
    assert_eq!(manifest.ca_pem_path, ca_path);
    assert!(
        std::fs::read_to_string(&ca_path)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    let specs: Vec<&str> = manifest.listeners.iter().map(|l| l.spec.as_str()).collect();
    assert_eq!(specs, ["ok", "status:503", "refused"]);
    assert!(manifest.listeners.iter().all(|l| l.addr.ip().is_loopback()));

    // stdout: one line per listener (address, spec, description), then the CA path.
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    for listener in &manifest.listeners {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let fields: Vec<&str> = line.trim_end().split('\t').collect();
        assert_eq!(fields[0], listener.addr.to_string(), "{line}");
        assert_eq!(fields[1], listener.spec);
        assert_eq!(fields[2], listener.description);
    }
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim_end(),
        format!("CA certificate: {}", ca_path.display())
    );

    assert!(http_get(manifest.listeners[0].addr).starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(http_get(manifest.listeners[1].addr).starts_with("HTTP/1.1 503 "));

    let pid = i32::try_from(child.0.id()).unwrap();
    // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = wait_for_exit(&mut child.0);
    assert_eq!(status.code(), Some(0), "{status}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_spec_is_a_usage_error_naming_it() {
    let output = Command::new(BIN)
        .arg("goaway:calm_down")
        .output()
        .expect("run testbed");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("goaway:calm_down"), "{stderr}");
    assert!(stderr.contains("HTTP/2 error code"), "{stderr}");
}
