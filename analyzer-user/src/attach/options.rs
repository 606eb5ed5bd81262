//! How a session runs ([`AttachOptions`], [`Backend`]), and what it tells its user while
//! it runs ([`Status`], through a [`StatusSink`] the binary prints from).
use std::{fmt, path::PathBuf, sync::Arc, time::Duration};

use serde::Serialize;

use super::tally::Counters;
use crate::recording::{AttachReport, FilterConfig};

/// How a session runs.
#[derive(Clone, Debug, Default)]
pub struct AttachOptions {
    /// What to record: ports and addresses (in the kernel), the owner pid.
    pub filter: FilterConfig,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Write every kept event as one JSON line here, after a header line.
    pub raw_events: Option<PathBuf>,
    /// Live counters ([`Status::Progress`]) once a second.
    pub progress: bool,
    /// Told once the probes are attached (tests and drivers start their load then).
    pub ready: Option<std::sync::mpsc::SyncSender<()>>,
    /// Which backend records: eBPF tracepoints, raw-socket capture, or eBPF with the
    /// capture as fallback.
    pub backend: Backend,
    /// Interfaces the raw backend captures on (default `lo`).
    pub ifaces: Vec<String>,
    /// Where the session's status goes (the binary prints it; by default nowhere).
    pub status: StatusSink,
    /// Go binaries whose TLS plaintext to read (`--tls-exe`); the system's libssl is
    /// probed whenever the plaintext capture is on.
    pub tls_exes: Vec<PathBuf>,
    /// An NSS key log (`--keylog`) the raw backend decrypts TLS connections with.
    pub keylog: Option<PathBuf>,
}

/// Which backend records the evidence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// eBPF; the raw-socket capture when eBPF cannot load (with a notice saying why).
    #[default]
    Auto,
    /// Kernel tracepoints (needs CAP_BPF and CAP_PERFMON, or root, and tracefs).
    Ebpf,
    /// AF_PACKET capture (needs CAP_NET_RAW): TCP from the wire, plus TLS and h2c facts.
    Raw,
}

/// What a session tells its user as it runs.
#[derive(Clone, Copy, Debug)]
pub enum Status<'a> {
    /// `auto` could not load eBPF and falls back to the raw backend, for this reason.
    Fallback { notice: &'a str },
    /// Recording started with these probes (or capture interfaces).
    Attached(&'a AttachReport),
    /// The live counters, once a second when [`AttachOptions::progress`] is set.
    Progress(&'a Progress),
    /// A Go client was executed while recording and its crypto/tls is now probed.
    Probed { what: &'a str },
    /// A Go client was executed and could not be probed, with why.
    ProbeFailed { why: &'a str },
    /// Recording stopped.
    Stopped,
}

/// The live counters of a running session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub elapsed: Duration,
    /// Events in the last second.
    pub rate_per_s: u64,
    /// Sockets seen open and not yet closed.
    pub open_sockets: usize,
    pub counters: Counters,
    /// Events lost in the kernel so far (ring buffer full).
    pub lost: u64,
}

/// A callback taking every [`Status`].
type OnStatus = dyn Fn(Status<'_>) + Send + Sync;

/// Where [`Status`] goes: a callback, or nowhere (the default).
#[derive(Clone, Default)]
pub struct StatusSink(Option<Arc<OnStatus>>);

impl StatusSink {
    /// Hands every status to `f`.
    pub fn new(f: impl Fn(Status<'_>) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    pub(crate) fn send(&self, status: Status<'_>) {
        if let Some(f) = &self.0 {
            f(status);
        }
    }
}

impl fmt::Debug for StatusSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "StatusSink(callback)"
        } else {
            "StatusSink(none)"
        })
    }
}
