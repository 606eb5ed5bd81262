//! The error type of the foreign servers and clients: each variant names the program.

use std::io;
use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::Duration;

/// Why a foreign server or client could not start, get ready or finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(
        "{binary} not found on PATH nor in /usr/sbin: install Debian's {package} \
         (`cargo xtask setup` does)"
    )]
    Missing {
        binary: &'static str,
        package: &'static str,
    },
    #[error("start {binary}")]
    Spawn {
        binary: String,
        #[source]
        source: io::Error,
    },
    #[error("{binary} exited before it was ready ({status}); its log:\n{log}")]
    Exited {
        binary: String,
        status: ExitStatus,
        log: String,
    },
    #[error("{binary} did not accept connections on {addr} within {timeout:?}; its log:\n{log}")]
    NotReady {
        binary: String,
        addr: SocketAddr,
        timeout: Duration,
        log: String,
    },
    #[error("{binary} was still running after {timeout:?} and was killed")]
    Timeout { binary: String, timeout: Duration },
    #[error("`go build` of {program} failed:\n{output}")]
    GoBuild { program: String, output: String },
    #[error("{binary} printed no summary we understand: {output:?}")]
    Output {
        binary: String,
        output: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("generate the {what} certificate")]
    Certificate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// An [`Error::Io`] saying what was being done.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}
