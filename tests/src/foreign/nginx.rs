//! Debian's nginx (1.22, nginx-light) in the foreground as a child: a plain HTTP/1.1
//! server, an HTTPS server whose only (default) server presents a certificate for
//! another name, and an HTTPS + HTTP/2 server that ends connections after
//! [`NGINX_KEEPALIVE_REQUESTS`] requests.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::certs::{self, CertFiles};
use super::error::Error;
use super::process::{self, Server, TempDir};

/// Requests nginx serves on one connection of [`Nginx::h2_addr`] before it sends GOAWAY
/// (NO_ERROR) and closes. nginx 1.22 reads `keepalive_requests` for HTTP/2 too; the
/// older `http2_max_requests` is obsolete since 1.19.7 (1.22 warns and ignores it).
pub const NGINX_KEEPALIVE_REQUESTS: u32 = 10;

/// The locations every nginx server here has: `/ok` answers 200 `ok\n`, `/503` answers
/// 503, `/444` closes the connection without a reply (nginx's non-standard 444; over
/// HTTP/2 nginx resets the stream with PROTOCOL_ERROR instead).
const LOCATIONS: &str = r#"
        location = /ok  { return 200 "ok\n"; }
        location = /503 { return 503; }
        location = /444 { return 444; }
"#;

/// A running nginx; dropping it kills it and removes its directory.
#[derive(Debug)]
pub struct Nginx {
    http: SocketAddr,
    default_cert: SocketAddr,
    h2: SocketAddr,
    ca: PathBuf,
    server: Server,
}

impl Nginx {
    /// Writes the configuration and certificates to a fresh temporary directory, starts
    /// nginx on three free loopback ports and returns once all three accept connections.
    pub fn start() -> Result<Nginx, Error> {
        let binary = process::find_binary("nginx", "nginx-light")?;
        process::start_with_retries(|| Nginx::try_start(&binary))
    }

    fn try_start(binary: &Path) -> Result<Nginx, Error> {
        let dir = TempDir::new("nginx")?;
        let certs = certs::write(&dir)?;
        let ports = process::free_ports(3)?;
        let addr = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let (http, default_cert, h2) = (addr(ports[0]), addr(ports[1]), addr(ports[2]));
        let conf = config(dir.path(), &certs, [http, default_cert, h2]);
        let conf_path = dir.write("nginx.conf", conf.as_bytes())?;
        let error_log = dir.path().join("error.log");
        let mut cmd = Command::new(binary);
        cmd.arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            // Where nginx logs before it has read error_log from the configuration.
            .arg("-e")
            .arg(&error_log)
            .stdout(Stdio::null());
        let mut server = Server::spawn("nginx", cmd, dir, vec![error_log])?;
        server.await_ready(&[http, default_cert, h2])?;
        Ok(Nginx {
            http,
            default_cert,
            h2,
            ca: certs.ca,
            server,
        })
    }

    /// Plain HTTP/1.1: `/ok`, `/503`, `/444`.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// HTTPS (TLS 1.2 and 1.3, `h2` and `http/1.1` by ALPN) where the only server is the
    /// default one, presenting a certificate for [`certs::DEFAULT_CERT_NAME`] whatever
    /// the SNI: a client asking for [`certs::SERVER_NAME`] fails verification on the
    /// name. Same locations as [`Nginx::http_addr`].
    pub fn default_cert_addr(&self) -> SocketAddr {
        self.default_cert
    }

    /// HTTPS with HTTP/2, certificate for [`certs::SERVER_NAME`], `localhost` and
    /// `127.0.0.1`, `keepalive_requests` [`NGINX_KEEPALIVE_REQUESTS`]: after that many
    /// requests on a connection nginx sends GOAWAY NO_ERROR and closes it.
    pub fn h2_addr(&self) -> SocketAddr {
        self.h2
    }

    /// The CA certificate (PEM) that signs both nginx certificates.
    pub fn ca_path(&self) -> &Path {
        &self.ca
    }

    /// nginx's process id (a single process: `master_process off`).
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// The ends of nginx's stderr and error log (info level: it logs each TLS failure).
    pub fn log_tail(&self) -> String {
        self.server.log_tail()
    }
}

/// The whole nginx.conf: one process in the foreground, every path inside `dir`.
fn config(dir: &Path, certs: &CertFiles, [http, default_cert, h2]: [SocketAddr; 3]) -> String {
    let d = dir.display();
    // `user` only means something when nginx starts as root; elsewhere it warns.
    // SAFETY: geteuid has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;"
    } else {
        ""
    };
    let tls = "ssl_protocols TLSv1.2 TLSv1.3;";
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
{user}
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 512; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    default_type text/plain;
    server {{
        listen {http};
        {LOCATIONS}
    }}
    server {{
        listen {default_cert} ssl http2 default_server;
        server_name {default_name};
        ssl_certificate {default_pem};
        ssl_certificate_key {default_key};
        {tls}
        {LOCATIONS}
    }}
    server {{
        listen {h2} ssl http2;
        server_name {name} localhost;
        ssl_certificate {leaf_pem};
        ssl_certificate_key {leaf_key};
        {tls}
        keepalive_requests {NGINX_KEEPALIVE_REQUESTS};
        {LOCATIONS}
    }}
}}
"#,
        default_name = certs::DEFAULT_CERT_NAME,
        default_pem = certs.default.display(),
        default_key = certs.default_key.display(),
        name = certs::SERVER_NAME,
        leaf_pem = certs.leaf.display(),
        leaf_key = certs.leaf_key.display(),
    )
}
