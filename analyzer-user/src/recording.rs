//! What a recording session says about itself whichever backend ran it: the filter it
//! was asked for ([`FilterConfig`]), what it attached ([`AttachReport`]), and its loss
//! counters ([`ProbeStats`]). The report's run section and the kernel log header carry
//! them.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A tracepoint that could not be used, and why.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Missing {
    pub tracepoint: String,
    pub reason: String,
}

/// Which probes are attached and which are missing on this kernel.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AttachReport {
    pub attached: Vec<String>,
    pub missing: Vec<Missing>,
}

/// Counters summed over CPUs from the programs' `STATS` map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeStats {
    pub emitted: u64,
    /// Ring buffer full: events lost in the kernel.
    pub reserve_failed: u64,
    /// A tracepoint field could not be read.
    pub read_failed: u64,
    /// Discarded by the in-kernel filter.
    pub filtered: u64,
    /// The kernel's tracked-socket map was full (later events of those sockets may
    /// have been filtered out).
    pub track_full: u64,
    /// Reads and writes captured (plaintext capture; their losses are in
    /// `reserve_failed`).
    #[serde(default)]
    pub data_emitted: u64,
    /// Captured calls whose buffer could not be read (recorded with no bytes).
    #[serde(default)]
    pub data_read_failed: u64,
}

/// What the recording keeps: ports and addresses (either end of a connection, filtered
/// in the kernel), and the owner process (filtered in user space).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterConfig {
    /// Local or remote ports; empty means every port.
    pub ports: Vec<u16>,
    /// Local or remote addresses; empty means every address.
    pub addrs: Vec<IpAddr>,
    /// Also record packet drops that name no receiving socket (host-wide).
    pub all_drops: bool,
    /// Keep only sockets whose `connect()` ran in this process (learned from the
    /// transition to SYN_SENT, which runs in the caller's context). Sockets connected
    /// before the session, and server-side sockets, have no known pid and are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Do not read what client processes write to and read from the recorded sockets
    /// (the eBPF backend's plaintext capture): TCP evidence only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_plaintext: bool,
}
