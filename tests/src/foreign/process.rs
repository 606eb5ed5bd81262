//! Running foreign programs: finding the binary, a private temporary directory, free
//! loopback ports, a server child killed and reaped on drop, readiness by connecting,
//! and clients run to completion under a wall-clock bound.

use std::fs;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::error::Error;

/// How long a server may take to accept connections after it starts.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often readiness and exit are polled.
const POLL: Duration = Duration::from_millis(20);
/// How much of a log an error quotes (its end).
const LOG_TAIL_BYTES: usize = 4000;

/// Where Debian puts daemons, searched after PATH (a non-root PATH often lacks them).
const SBIN_DIRS: &[&str] = &["/usr/sbin", "/usr/local/sbin", "/sbin"];

/// The path of `binary` (from Debian's `package`), or [`Error::Missing`].
pub(crate) fn find_binary(binary: &'static str, package: &'static str) -> Result<PathBuf, Error> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
        .ok_or(Error::Missing { binary, package })
}

/// A fresh private directory under the system temp dir, removed with its contents on
/// drop.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Result<TempDir, Error> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let base = std::env::temp_dir();
        // Bounded: each failed try is a name another process holds.
        for _ in 0..1000 {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = base.join(format!("faultline-{tag}-{}-{n}", std::process::id()));
            match fs::create_dir(&dir) {
                Ok(()) => return Ok(TempDir(dir)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(format!("create {}", dir.display()))(e)),
            }
        }
        Err(Error::io("find a free temporary directory name")(
            io::ErrorKind::AlreadyExists.into(),
        ))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `bytes` to `name` inside the directory and returns its path.
    pub(crate) fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, Error> {
        let path = self.0.join(name);
        fs::write(&path, bytes).map_err(Error::io(format!("write {}", path.display())))?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `n` distinct loopback ports free at the time of the call (bound to :0 together, then
/// released). Another process may take one before the server binds it: callers retry
/// a start that fails (see [`start_with_retries`]).
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>, Error> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()
        .map_err(Error::io("bind 127.0.0.1:0 to find a free port"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<io::Result<_>>()
        .map_err(Error::io("read a bound port"))
}

/// Runs `start` up to three times while it fails with the server exiting early (the
/// likely cause being a port taken between [`free_ports`] and the server's bind).
pub(crate) fn start_with_retries<T>(
    mut start: impl FnMut() -> Result<T, Error>,
) -> Result<T, Error> {
    let mut last = None;
    for _ in 0..3 {
        match start() {
            Err(e @ Error::Exited { .. }) => last = Some(e),
            other => return other,
        }
    }
    Err(last.expect("three tries were made"))
}

/// A server running as a child process in its own temporary directory; dropping it
/// kills the child, reaps it, then removes the directory.
#[derive(Debug)]
pub(crate) struct Server {
    binary: String,
    child: Child,
    /// Files whose ends are quoted when the server fails (its stderr, its own log).
    logs: Vec<PathBuf>,
    /// Held only to be removed, after `Drop::drop` has reaped the child.
    _dir: TempDir,
}

impl Server {
    /// Spawns `cmd` with stdin closed, stdout discarded unless the caller piped it, and
    /// stderr to `stderr.log` in `dir`. `logs` are more files to quote on failure.
    pub(crate) fn spawn(
        binary: &str,
        mut cmd: Command,
        dir: TempDir,
        logs: Vec<PathBuf>,
    ) -> Result<Server, Error> {
        let stderr_path = dir.path().join("stderr.log");
        let stderr = fs::File::create(&stderr_path)
            .map_err(Error::io(format!("create {}", stderr_path.display())))?;
        cmd.stdin(Stdio::null()).stderr(stderr);
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            binary: binary.to_owned(),
            source,
        })?;
        let mut all_logs = vec![stderr_path];
        all_logs.extend(logs);
        Ok(Server {
            binary: binary.to_owned(),
            child,
            logs: all_logs,
            _dir: dir,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The ends of the server's logs, for an error message.
    pub(crate) fn log_tail(&self) -> String {
        let mut out = String::new();
        for path in &self.logs {
            let Ok(bytes) = fs::read(path) else { continue };
            let tail = &bytes[bytes.len().saturating_sub(LOG_TAIL_BYTES)..];
            out.push_str(&format!("--- {}\n", path.display()));
            out.push_str(&String::from_utf8_lossy(tail));
        }
        out
    }

    /// [`Error::Exited`] if the child has ended.
    pub(crate) fn check_running(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(self.exited(status)),
            Ok(None) => Ok(()),
            Err(e) => Err(Error::io(format!("wait for {}", self.binary))(e)),
        }
    }

    pub(crate) fn exited(&self, status: ExitStatus) -> Error {
        Error::Exited {
            binary: self.binary.clone(),
            status,
            log: self.log_tail(),
        }
    }

    /// Waits until every address accepts a TCP connection, for at most
    /// [`READY_TIMEOUT`]; fails early if the child exits.
    pub(crate) fn await_ready(&mut self, addrs: &[SocketAddr]) -> Result<(), Error> {
        let deadline = Instant::now() + READY_TIMEOUT;
        for addr in addrs {
            loop {
                self.check_running()?;
                if TcpStream::connect_timeout(addr, POLL).is_ok() {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(Error::NotReady {
                        binary: self.binary.clone(),
                        addr: *addr,
                        timeout: READY_TIMEOUT,
                        log: self.log_tail(),
                    });
                }
                thread::sleep(POLL);
            }
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a foreign client did: its exit code (`None`: killed by a signal), what it
/// printed, and how long it ran.
#[derive(Debug, Clone)]
pub struct ClientRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl ClientRun {
    /// True if it exited 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The last non-empty line of stdout, parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, Error> {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        serde_json::from_str(line).map_err(|source| Error::Output {
            binary: "client".to_owned(),
            output: self.stdout.clone(),
            source,
        })
    }
}

/// Runs `cmd` (named `binary` in errors) to its end with stdin closed and stdout and
/// stderr captured; kills it and fails with [`Error::Timeout`] after `timeout`.
pub(crate) fn run_bounded(
    binary: &str,
    cmd: &mut Command,
    timeout: Duration,
) -> Result<ClientRun, Error> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            binary: binary.to_owned(),
            source,
        })?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < timeout => thread::sleep(POLL),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Timeout {
                    binary: binary.to_owned(),
                    timeout,
                });
            }
            Err(e) => return Err(Error::io(format!("wait for {binary}"))(e)),
        }
    };
    Ok(ClientRun {
        code: status.code(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        elapsed: start.elapsed(),
    })
}

/// Reads a pipe to its end on a thread (so a chatty child never blocks on a full pipe).
fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
