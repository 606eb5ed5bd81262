//! The validated configuration of a run: what `cli` turns the flags into and the engine
//! runs on.
use std::{net::IpAddr, path::PathBuf, time::Duration};

use crate::{
    rate::{Schedule, UserGroup},
    targets::Target,
    tls::TlsOptions,
};

/// Which protocol to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoChoice {
    /// HTTP/1.1 for `http://`; for `https://`, what ALPN picks (h2 preferred).
    Auto,
    /// HTTP/1.1 only (ALPN offers only `http/1.1`).
    Http1,
    /// HTTP/2 over TLS (ALPN offers only `h2`).
    H2,
    /// HTTP/2 over cleartext with prior knowledge.
    H2c,
}

/// Open or closed model.
#[derive(Debug)]
pub enum Load {
    /// Requests at intended times, whatever the server does.
    Open(Schedule),
    /// Virtual users: send, wait for the answer, think, repeat.
    Closed {
        groups: Vec<UserGroup>,
        duration: Option<Duration>,
    },
}

/// `--resolve host:port:addr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolve {
    pub host: String,
    pub port: u16,
    pub addr: IpAddr,
}

/// Everything a run needs, validated.
#[derive(Debug)]
pub struct RunConfig {
    pub attack: String,
    pub targets: Vec<Target>,
    pub load: Load,
    pub proto: ProtoChoice,
    /// Connections per origin.
    pub connections: usize,
    pub max_streams_per_conn: u32,
    pub keepalive: bool,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_lag: Duration,
    pub local_addrs: Vec<IpAddr>,
    pub resolve: Vec<Resolve>,
    pub sni: Option<String>,
    pub tls: TlsOptions,
    pub retry_unprocessed: bool,
    pub events: Option<PathBuf>,
}
