//! The faultline testbed: a loopback server that produces every network failure class on
//! demand (TLS certificate faults, GOAWAY, RST_STREAM, TCP RST and FIN at chosen moments,
//! idle closes, stalls, slow answers, full accept queues, refused ports).
//!
//! Every serving listener speaks TLS and plaintext on the same port (told apart by the
//! first byte), and HTTP/1.1 or HTTP/2 (ALPN after TLS, the prior-knowledge preface for
//! h2c). Start it in-process with [`Testbed::start`] or run the `testbed` binary.
//!
//! The testbed depends on no faultline crate (it must stay a neutral server the tools
//! are judged against); the end-to-end tests under `tests/` drive `loadgen` and the
//! analyzer through their libraries. [`flagdoc`] renders their clap commands for the
//! README's flag reference.
//!
//! ```no_run
//! # async fn demo() -> Result<(), testbed::Error> {
//! let config = testbed::Config::with_specs(["ok", "rst:after=1"])?;
//! let testbed = testbed::Testbed::start(config).await?;
//! let addr = testbed.addr("rst:after=1").unwrap();
//! # let _ = addr;
//! testbed.shutdown().await;
//! # Ok(()) }
//! ```

mod certs;
mod error;
mod faults;
pub mod flagdoc;
pub mod foreign;
mod http1;
mod http2;
mod listener;
pub mod nft;
mod spec;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use error::{Error, SpecError};
pub use spec::{Fault, ListenerSpec, default_specs};

/// The name the good leaf certificate is issued for unless configured otherwise.
pub const DEFAULT_SERVER_NAME: &str = "testbed.faultline.test";

/// What to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address every listener binds to.
    pub bind: IpAddr,
    /// The expected server name: the good, untrusted and expired leaves are issued for it.
    pub server_name: String,
    /// Where to write the CA certificate (PEM); `None`: a fresh temporary directory,
    /// removed when the testbed stops.
    pub ca_out: Option<PathBuf>,
    /// One listener per entry.
    pub listeners: Vec<ListenerSpec>,
}

impl Default for Config {
    /// Loopback, the default name, a temporary CA file, one listener per fault.
    fn default() -> Self {
        Config {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            server_name: DEFAULT_SERVER_NAME.to_owned(),
            ca_out: None,
            listeners: default_specs(),
        }
    }
}

impl Config {
    /// The default configuration with the given listener specs (`SPEC[@PORT]`).
    pub fn with_specs<I, S>(specs: I) -> Result<Self, SpecError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let listeners = specs
            .into_iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<_, _>>()?;
        Ok(Config {
            listeners,
            ..Config::default()
        })
    }
}

/// One running listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerInfo {
    pub spec: ListenerSpec,
    pub addr: SocketAddr,
    pub description: String,
}

/// The JSON file the binary writes with `--manifest`, for other processes to find the
/// listeners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub ca_pem_path: PathBuf,
    pub listeners: Vec<ManifestListener>,
}

/// One listener in the [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestListener {
    pub spec: String,
    pub addr: SocketAddr,
    pub description: String,
}

/// A running testbed. Dropping it stops every listener; [`Testbed::shutdown`] also waits
/// for them.
#[derive(Debug)]
pub struct Testbed {
    server_name: String,
    ca_pem: String,
    ca_path: PathBuf,
    /// The temporary directory holding the CA file, removed on drop.
    temp_dir: Option<PathBuf>,
    listeners: Vec<ListenerInfo>,
    bound: Vec<listener::Bound>,
    stop: watch::Sender<bool>,
}

impl Testbed {
    /// Generates the certificates, writes the CA file and binds every listener, on the
    /// caller's tokio runtime. Returns once all listeners accept connections.
    pub async fn start(config: Config) -> Result<Testbed, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = Arc::new(certs::CertSet::generate(&config.server_name, &provider)?);

        let (ca_path, temp_dir) = match &config.ca_out {
            Some(path) => (path.clone(), None),
            None => {
                let dir = make_temp_dir()?;
                (dir.join("ca.pem"), Some(dir))
            }
        };
        let (stop, stop_rx) = watch::channel(false);
        let mut testbed = Testbed {
            server_name: config.server_name.clone(),
            ca_pem: certs.ca_pem.clone(),
            ca_path,
            temp_dir,
            listeners: Vec::new(),
            bound: Vec::new(),
            stop,
        };
        write_file(&testbed.ca_path, testbed.ca_pem.as_bytes())?;

        for spec in &config.listeners {
            let tls = certs.server_config(&spec.fault, &provider)?;
            let shutdown = faults::Shutdown(stop_rx.clone());
            // On error, dropping `testbed` stops the listeners already started.
            let bound = listener::bind(spec, config.bind, tls, shutdown).await?;
            let mut description = spec.fault.describe();
            if let Some(queued) = bound.self_queued() {
                description.push_str(&format!(" ({queued} self-connection(s) fill the queue)"));
            }
            testbed.listeners.push(ListenerInfo {
                spec: spec.clone(),
                addr: bound.addr,
                description,
            });
            testbed.bound.push(bound);
        }
        Ok(testbed)
    }

    /// The address of the first listener whose fault is `spec` (any spelling that parses
    /// to the same fault; a `@PORT` suffix is ignored).
    pub fn addr(&self, spec: &str) -> Option<SocketAddr> {
        let wanted: ListenerSpec = spec.parse().ok()?;
        self.listeners
            .iter()
            .find(|l| l.spec.fault == wanted.fault)
            .map(|l| l.addr)
    }

    /// Every listener, in the order of the configuration.
    pub fn listeners(&self) -> &[ListenerInfo] {
        &self.listeners
    }

    /// The CA certificate that signs the good leaf, in PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Where the CA certificate was written.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// The expected server name (SNI) of the good leaf.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// The manifest describing this testbed.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            name: self.server_name.clone(),
            ca_pem_path: self.ca_path.clone(),
            listeners: self
                .listeners
                .iter()
                .map(|l| ManifestListener {
                    spec: l.spec.to_string(),
                    addr: l.addr,
                    description: l.description.clone(),
                })
                .collect(),
        }
    }

    /// Writes the manifest as JSON to `path` atomically (temporary file, then rename), so
    /// a reader polling for the file never sees it half written.
    pub fn write_manifest(&self, path: &Path) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(&self.manifest()).expect("manifest serializes");
        let file_name = path
            .file_name()
            .map_or_else(|| "manifest".into(), |n| n.to_string_lossy().into_owned());
        let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
        write_file(&tmp, &json)?;
        std::fs::rename(&tmp, path).map_err(|source| Error::Write {
            path: path.to_owned(),
            source,
        })
    }

    /// Stops every listener and waits until their tasks have ended (open connections get
    /// a short grace period, then are closed).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for bound in self.bound.drain(..) {
            if let listener::Kind::Serving(task) = bound.kind {
                let _ = task.await;
            }
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(dir) = &self.temp_dir {
            let _ = std::fs::remove_file(&self.ca_path);
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(path, bytes).map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })
}

/// A new private directory under the system temp dir.
fn make_temp_dir() -> Result<PathBuf, Error> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::env::temp_dir();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("faultline-testbed-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(Error::Write { path: dir, source }),
        }
    }
}
