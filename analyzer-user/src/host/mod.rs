//! Host-level evidence the analyzer samples at the start and the end of a run, for the
//! verdicts that name the load host itself rather than the network or the server:
//!
//! - [`counters`]: the kernel's TCP MIB counters from `/proc/net/netstat` and
//!   `/proc/net/snmp` ([`Snapshot`]), and the deltas of a curated list of counters that
//!   explain load-test failures ([`delta`], [`CounterDeltas`]): listen overflows, aborts,
//!   SYN retransmits, TIME_WAIT overflow, memory pressure, resets.
//! - [`ports`]: the ephemeral port range ([`PortRange`], with the reserved ports).
//! - [`sockets`]: a census of the TCP sockets of `/proc/net/tcp` and `/proc/net/tcp6` by
//!   state and by remote destination ([`SocketCensus`]), and the local port exhaustion
//!   verdict ([`port_pressure`]).
//!
//! Everything here reads the files of the network namespace the analyzer runs in: run it
//! in the load generator's namespace (the default: the host's).
//!
//! Parsers never panic on their input: a malformed file is a [`HostError::Malformed`]
//! naming the file and the 1-based line. The socket census is the one exception to "error
//! on the first bad line": it counts bad lines and keeps the first message (see
//! [`SocketCensus`]), so one odd line among 100,000 sockets does not lose the census.
use std::path::PathBuf;

pub mod counters;
pub mod ports;
pub mod sockets;

#[cfg(test)]
mod tests;

pub use counters::{CounterDeltas, Snapshot, delta};
pub use ports::PortRange;
pub use sockets::{CensusSummary, PortPressure, SocketCensus, worst_port_pressure};

/// What reading or parsing a host file can fail with.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The file could not be opened or read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file's content is not what the kernel writes there.
    #[error("{path}:{line}: {reason}")]
    Malformed {
        /// The file (for text handed to a `parse` function: the file it stands for).
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with that line.
        reason: String,
    },
}

impl HostError {
    pub(crate) fn malformed(path: &str, line: usize, reason: impl Into<String>) -> Self {
        Self::Malformed {
            path: PathBuf::from(path),
            line,
            reason: reason.into(),
        }
    }

    pub(crate) fn read(path: &str, source: std::io::Error) -> Self {
        Self::Read {
            path: PathBuf::from(path),
            source,
        }
    }
}
