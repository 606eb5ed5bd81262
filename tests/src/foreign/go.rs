//! The Go programs of `tests/go/` as a server and a client: Go's net/http and
//! crypto/tls on both sides, the stack of Go services and of vegeta and k6.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::Deserialize;

use super::certs;
use super::error::Error;
use super::gobuild::{self, GoProgram};
use super::process::{self, READY_TIMEOUT, Server, TempDir};

/// `tests/go/server` running as a child; dropping it kills it and removes its
/// directory. Both listeners serve the same handlers:
/// - `/ok`: 200 `ok\n`;
/// - `/panic`: the handler panics; net/http closes an HTTP/1.1 connection without a
///   response and resets an HTTP/2 stream with INTERNAL_ERROR;
/// - `/cut`: declares `Content-Length: 1000`, writes 10 bytes and returns; HTTP/1.1:
///   the server closes the connection mid-body; HTTP/2: the server ends the stream
///   short (END_STREAM), and the client's HTTP/2 library rejects it (curl and nghttp
///   reset it with PROTOCOL_ERROR, Go reports `unexpected EOF`);
/// - `/503`: 503.
#[derive(Debug)]
pub struct GoServer {
    tls: SocketAddr,
    plain: SocketAddr,
    ca: PathBuf,
    server: Server,
}

#[derive(Deserialize)]
struct Listening {
    tls: SocketAddr,
    plain: SocketAddr,
}

impl GoServer {
    /// Builds the server if needed, writes its certificate, starts it (the kernel picks
    /// the ports, the server prints them) and returns once both listeners accept.
    pub fn start() -> Result<GoServer, Error> {
        let binary = gobuild::binary(GoProgram::Server)?;
        let dir = TempDir::new("goserver")?;
        let certs = certs::write(&dir)?;
        let mut cmd = Command::new(&binary);
        cmd.arg("-cert")
            .arg(&certs.leaf)
            .arg("-key")
            .arg(&certs.leaf_key)
            .stdout(Stdio::piped());
        let mut server = Server::spawn("go server", cmd, dir, vec![])?;
        let stdout = server.child_mut().stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let Ok(line) = rx.recv_timeout(READY_TIMEOUT) else {
            server.check_running()?;
            return Err(Error::NotReady {
                binary: "go server".to_owned(),
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                timeout: READY_TIMEOUT,
                log: server.log_tail(),
            });
        };
        let listening: Listening = match serde_json::from_str(&line) {
            Ok(l) => l,
            Err(source) => {
                server.check_running()?;
                return Err(Error::Output {
                    binary: "go server".to_owned(),
                    output: line,
                    source,
                });
            }
        };
        server.await_ready(&[listening.tls, listening.plain])?;
        Ok(GoServer {
            tls: listening.tls,
            plain: listening.plain,
            ca: certs.ca,
            server,
        })
    }

    /// HTTPS, HTTP/2 or HTTP/1.1 by ALPN; certificate for [`certs::SERVER_NAME`],
    /// `localhost` and `127.0.0.1`.
    pub fn tls_addr(&self) -> SocketAddr {
        self.tls
    }

    /// Plain HTTP/1.1 (no h2c).
    pub fn plain_addr(&self) -> SocketAddr {
        self.plain
    }

    /// The CA certificate (PEM) that signs the server's certificate.
    pub fn ca_path(&self) -> &Path {
        &self.ca
    }

    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// The end of the server's stderr (net/http logs each recovered panic there).
    pub fn log_tail(&self) -> String {
        self.server.log_tail()
    }
}

/// `tests/go/client`: `requests` GETs of one URL from `concurrency` workers through
/// net/http's Transport, stripped as release builds of vegeta and k6 are. Built with
/// [`GoClient::new`] and the setters, run with [`GoClient::run`].
#[derive(Debug, Clone)]
pub struct GoClient {
    url: String,
    requests: u32,
    concurrency: u32,
    insecure: bool,
    cacert: Option<PathBuf>,
    server_name: Option<String>,
    h2: bool,
    timeout: Duration,
}

/// What the Go client printed: one JSON line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GoSummary {
    /// Requests made.
    pub requests: u64,
    /// 2xx answers read to their end.
    pub ok: u64,
    /// Answers of any status read to their end.
    pub responses: u64,
    /// Failed requests by error text (URL left out, stream IDs written `N`), e.g.
    /// `stream error: stream ID N; INTERNAL_ERROR; received from peer`, `EOF`,
    /// `read body: unexpected EOF`.
    pub errors: BTreeMap<String, u64>,
    /// Answers by status code.
    pub status: BTreeMap<String, u64>,
    /// Answers by protocol (`HTTP/1.1`, `HTTP/2.0`).
    pub protos: BTreeMap<String, u64>,
    /// httptrace GotConn with `Reused` false: connections dialled for a request
    /// (counted again for each request a retry sends on a new connection).
    pub conns_new: u64,
    /// httptrace GotConn with `Reused` true.
    pub conns_reused: u64,
    /// Distinct client addresses seen in GotConn: the connections used.
    pub local_addrs: u64,
}

impl GoSummary {
    /// Failed requests whose error text contains `needle`.
    pub fn errors_containing(&self, needle: &str) -> u64 {
        self.errors
            .iter()
            .filter(|(e, _)| e.contains(needle))
            .map(|(_, n)| n)
            .sum()
    }
}

impl GoClient {
    /// One request to `url`, one worker, the system's CAs, HTTP/1.1, 10 s timeout.
    pub fn new(url: impl Into<String>) -> GoClient {
        GoClient {
            url: url.into(),
            requests: 1,
            concurrency: 1,
            insecure: false,
            cacert: None,
            server_name: None,
            h2: false,
            timeout: Duration::from_secs(10),
        }
    }

    pub fn requests(mut self, n: u32) -> Self {
        self.requests = n;
        self
    }

    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = workers.max(1);
        self
    }

    /// Skip certificate verification (`InsecureSkipVerify`).
    pub fn insecure(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// Trust only the CA in this PEM file.
    pub fn cacert(mut self, path: impl Into<PathBuf>) -> Self {
        self.cacert = Some(path.into());
        self
    }

    /// The TLS server name (SNI and the name verified), instead of the URL's host.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Offer HTTP/2 by ALPN (`ForceAttemptHTTP2`); without it the client speaks
    /// HTTP/1.1, as any net/http Transport with its own TLS configuration does.
    pub fn h2(mut self) -> Self {
        self.h2 = true;
        self
    }

    /// Per-request timeout (`http.Client.Timeout`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The client's binary (built if needed), e.g. to attach uprobes to.
    pub fn binary() -> Result<PathBuf, Error> {
        gobuild::binary(GoProgram::Client)
    }

    /// Runs the client to its end (killed if it outlives every request's timeout by
    /// 30 s) and parses its summary.
    pub fn run(&self) -> Result<GoSummary, Error> {
        let binary = Self::binary()?;
        let mut cmd = Command::new(binary);
        cmd.arg(format!("-url={}", self.url))
            .arg(format!("-n={}", self.requests))
            .arg(format!("-c={}", self.concurrency))
            .arg(format!("-timeout={}ms", self.timeout.as_millis()));
        if self.insecure {
            cmd.arg("-insecure");
        }
        if let Some(ca) = &self.cacert {
            cmd.arg("-cacert").arg(ca);
        }
        if let Some(name) = &self.server_name {
            cmd.arg(format!("-servername={name}"));
        }
        if self.h2 {
            cmd.arg("-h2");
        }
        let rounds = self.requests.div_ceil(self.concurrency);
        let bound = self.timeout * rounds + Duration::from_secs(30);
        let run = process::run_bounded("go client", &mut cmd, bound)?;
        serde_json::from_str(run.stdout.trim()).map_err(|source| Error::Output {
            binary: "go client".to_owned(),
            output: format!("{}{}", run.stdout, run.stderr),
            source,
        })
    }
}
