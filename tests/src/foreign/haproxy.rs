//! Debian's HAProxy (2.6) in the foreground as a child, one HTTP/1.1 frontend that
//! answers by itself (no backend): `/reject` is refused with `http-request reject`
//! (HAProxy 2.6 closes the connection without a response), `/503` answers 503 and
//! every other path 200 `ok\n`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};

use super::error::Error;
use super::process::{self, Server, TempDir};

/// A running HAProxy; dropping it kills it and removes its directory.
#[derive(Debug)]
pub struct Haproxy {
    addr: SocketAddr,
    server: Server,
}

impl Haproxy {
    /// Writes the configuration to a fresh temporary directory, starts HAProxy on a
    /// free loopback port and returns once it accepts connections.
    pub fn start() -> Result<Haproxy, Error> {
        let binary = process::find_binary("haproxy", "haproxy")?;
        process::start_with_retries(|| Haproxy::try_start(&binary))
    }

    fn try_start(binary: &Path) -> Result<Haproxy, Error> {
        let dir = TempDir::new("haproxy")?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, process::free_ports(1)?[0]));
        let conf = dir.write("haproxy.cfg", config(addr).as_bytes())?;
        let mut cmd = Command::new(binary);
        // -db: stay in the foreground, no daemon, no master process.
        cmd.arg("-db").arg("-f").arg(&conf).stdout(Stdio::null());
        let mut server = Server::spawn("haproxy", cmd, dir, vec![])?;
        server.await_ready(&[addr])?;
        Ok(Haproxy { addr, server })
    }

    /// The frontend: `/reject`, `/503`, anything else 200.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// HAProxy's process id.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// The end of HAProxy's stderr (its log goes there).
    pub fn log_tail(&self) -> String {
        self.server.log_tail()
    }
}

fn config(addr: SocketAddr) -> String {
    format!(
        r#"global
    log stderr format raw local0 info
defaults
    mode http
    log global
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend main
    bind {addr}
    http-request reject if {{ path /reject }}
    http-request return status 503 content-type text/plain string "unavailable\n" if {{ path /503 }}
    http-request return status 200 content-type text/plain string "ok\n"
"#
    )
}
