//! The testbed's error type.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A fault spec that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad fault spec {spec:?}: expected {expected}")]
pub struct SpecError {
    /// The spec as given.
    pub spec: String,
    /// What the parser expected instead.
    pub expected: String,
}

/// Everything that can stop the testbed from starting or writing its files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("generate the {what} certificate")]
    Certificate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("build the TLS server configuration")]
    Tls {
        #[source]
        source: rustls::Error,
    },
    #[error("bind {addr} for {spec}")]
    Bind {
        addr: SocketAddr,
        spec: String,
        #[source]
        source: io::Error,
    },
    #[error("fill the accept queue of the backlog-full listener at {addr}")]
    BacklogFill {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
