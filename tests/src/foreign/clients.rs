//! Foreign clients as thin wrappers: curl, nghttp and h2load (nghttp2), and Python's
//! `http.client` over `ssl`. Each run has a timeout of its own (passed to the client)
//! and a wall-clock bound (the process is killed after it).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::error::Error;
use super::process::{self, ClientRun};

/// The timeout each client is told to keep.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long past [`CLIENT_TIMEOUT`] a client may run before it is killed.
const KILL_AFTER: Duration = Duration::from_secs(20);

fn run(binary: &'static str, package: &'static str, args: &[&str]) -> Result<ClientRun, Error> {
    let path = process::find_binary(binary, package)?;
    process::run_bounded(
        binary,
        Command::new(path).args(args),
        CLIENT_TIMEOUT + KILL_AFTER,
    )
}

/// `curl -sS --max-time 10 ARGS...`. Exit codes worth knowing: 52 empty reply (the
/// server closed without answering), 18 partial body, 56 receive failure (a reset),
/// 60 certificate verification failed, 92 an HTTP/2 stream error. Over https curl
/// offers h2 by ALPN unless given `--http1.1`.
pub fn curl(args: &[&str]) -> Result<ClientRun, Error> {
    let timeout = CLIENT_TIMEOUT.as_secs().to_string();
    let mut all = vec!["-sS", "--max-time", &timeout];
    all.extend_from_slice(args);
    run("curl", "curl", &all)
}

/// `nghttp --timeout=10 ARGS...` (HTTP/2 only; `-v` prints every frame).
pub fn nghttp(args: &[&str]) -> Result<ClientRun, Error> {
    let timeout = format!("--timeout={}", CLIENT_TIMEOUT.as_secs());
    let mut all = vec![timeout.as_str()];
    all.extend_from_slice(args);
    run("nghttp", "nghttp2-client", &all)
}

/// `h2load --connection-inactivity-timeout=10 ARGS...`. It does not reconnect after a
/// GOAWAY: requests meant for a connection the server ended count as failed.
pub fn h2load(args: &[&str]) -> Result<ClientRun, Error> {
    let timeout = format!(
        "--connection-inactivity-timeout={}",
        CLIENT_TIMEOUT.as_secs()
    );
    let mut all = vec![timeout.as_str()];
    all.extend_from_slice(args);
    run("h2load", "nghttp2-client", &all)
}

/// One GET with Python's `http.client` (over `ssl` for https): prints one JSON line,
/// `{"status": 200, "version": 11, "body_bytes": 3}` or `{"error": "RemoteDisconnected",
/// "message": "..."}`, and exits 0 either way.
const PYTHON_GET: &str = r#"
import http.client, json, socket, ssl, sys, urllib.parse
url, cafile, sni, insecure, timeout = sys.argv[1:6]
u = urllib.parse.urlsplit(url)
port = u.port or (443 if u.scheme == "https" else 80)
try:
    sock = socket.create_connection((u.hostname, port), timeout=float(timeout))
    if u.scheme == "https":
        ctx = ssl.create_default_context(cafile=cafile or None)
        if insecure == "1":
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(sock, server_hostname=sni or u.hostname)
    conn = http.client.HTTPConnection(u.hostname, port, timeout=float(timeout))
    conn.sock = sock
    conn.request("GET", u.path or "/", headers={"Host": sni or u.netloc})
    resp = conn.getresponse()
    body = resp.read()
    out = {"status": resp.status, "version": resp.version, "body_bytes": len(body)}
except Exception as e:
    out = {"error": type(e).__name__, "message": str(e)}
print(json.dumps(out))
"#;

/// A GET with Python's `http.client` and `ssl` (HTTP/1.1 only), built with
/// [`PythonGet::new`] and the setters, run with [`PythonGet::run`].
#[derive(Debug, Clone)]
pub struct PythonGet {
    url: String,
    cacert: Option<PathBuf>,
    server_name: Option<String>,
    insecure: bool,
}

impl PythonGet {
    /// A GET of `url` trusting the system's CAs.
    pub fn new(url: impl Into<String>) -> PythonGet {
        PythonGet {
            url: url.into(),
            cacert: None,
            server_name: None,
            insecure: false,
        }
    }

    /// Trust the CA in this PEM file.
    pub fn cacert(mut self, path: impl Into<PathBuf>) -> Self {
        self.cacert = Some(path.into());
        self
    }

    /// The SNI and verified name (also sent as `Host`), instead of the URL's host.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Skip certificate verification.
    pub fn insecure(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// Runs `python3 -c SCRIPT`; [`ClientRun::json`] reads what it printed.
    pub fn run(&self) -> Result<ClientRun, Error> {
        let cacert = self
            .cacert
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let timeout = CLIENT_TIMEOUT.as_secs().to_string();
        run(
            "python3",
            "python3",
            &[
                "-c",
                PYTHON_GET,
                &self.url,
                &cacert,
                self.server_name.as_deref().unwrap_or(""),
                if self.insecure { "1" } else { "0" },
                &timeout,
            ],
        )
    }
}
