//! The kernel's TCP/IP MIB counters from `/proc/net/netstat` and `/proc/net/snmp`.
//!
//! Both files are pairs of lines, a header and its values:
//!
//! ```text
//! TcpExt: SyncookiesSent SyncookiesRecv ... ListenOverflows ListenDrops ...
//! TcpExt: 0 0 ... 142 142 ...
//! ```
//!
//! [`Snapshot`] keys every value `Prefix.Name` (`TcpExt.ListenOverflows`,
//! `Tcp.RetransSegs`). Counters are unsigned; the few negative values (`Tcp.MaxConn` is
//! `-1`, "no limit") are settings, not counters, and are kept apart in
//! [`Snapshot::signed`] so that nothing is lost and [`Snapshot::counters`] stays `u64`.
//!
//! [`delta`] compares two snapshots over [`CURATED_COUNTERS`], the counters that explain
//! load-test failures, each with its one-line meaning.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::HostError;

/// Where the kernel's extended TCP/IP counters live.
pub const NETSTAT_PATH: &str = "/proc/net/netstat";
/// Where the kernel's RFC 1213 SNMP counters live.
pub const SNMP_PATH: &str = "/proc/net/snmp";

/// The counters load-test verdicts look at, with what an increase means.
pub const CURATED_COUNTERS: &[(&str, &str)] = &[
    (
        "TcpExt.ListenOverflows",
        "a SYN or handshake ACK hit a listener whose accept queue was full and was dropped (application accepts too slowly, or backlog too small)",
    ),
    (
        "TcpExt.ListenDrops",
        "SYNs or handshake ACKs dropped at a listener for any reason (includes every ListenOverflows)",
    ),
    (
        "TcpExt.TCPAbortOnData",
        "RST sent: data arrived after the application closed the socket, or it closed with SO_LINGER 0",
    ),
    (
        "TcpExt.TCPAbortOnClose",
        "RST sent: the application closed a socket that still had unread received data",
    ),
    (
        "TcpExt.TCPAbortOnMemory",
        "connection killed for lack of memory: TCP memory pressure (tcp_mem) or too many orphans (tcp_max_orphans)",
    ),
    (
        "TcpExt.TCPAbortOnTimeout",
        "connection aborted after its retransmission, keepalive or zero-window probe retries ran out",
    ),
    (
        "TcpExt.TCPAbortOnLinger",
        "orphaned connection aborted in FIN_WAIT2 because of its linger2 / tcp_fin_timeout",
    ),
    (
        "TcpExt.TCPAbortFailed",
        "the kernel wanted to reset a connection but could not send the RST",
    ),
    (
        "TcpExt.TCPTimeouts",
        "retransmission timeouts fired: data or SYNs went unacknowledged for a whole RTO",
    ),
    (
        "TcpExt.TCPSynRetrans",
        "SYN and SYN-ACK retransmissions: handshakes not answered in time",
    ),
    (
        "TcpExt.TCPRetransFail",
        "retransmissions the local stack failed to send (qdisc or device refused them)",
    ),
    (
        "TcpExt.TCPBacklogDrop",
        "segments dropped because a socket's backlog was full while the application held the socket",
    ),
    (
        "TcpExt.TCPReqQFullDrop",
        "SYNs dropped because a listener's SYN queue was full and syncookies were not used",
    ),
    (
        "TcpExt.TCPReqQFullDoCookies",
        "a listener's SYN queue was full: it answered with syncookies instead",
    ),
    (
        "TcpExt.SyncookiesSent",
        "SYN cookies sent (SYN flood, or SYN queue full)",
    ),
    (
        "TcpExt.TW",
        "sockets that completed TIME_WAIT and were recycled (this host closed those connections first)",
    ),
    (
        "TcpExt.TCPTimeWaitOverflow",
        "TIME_WAIT sockets not created because tcp_max_tw_buckets was reached",
    ),
    (
        "TcpExt.TCPMemoryPressures",
        "times TCP entered memory pressure (tcp_mem pressure threshold crossed)",
    ),
    (
        "TcpExt.PruneCalled",
        "receive queues pruned because a socket overran its receive buffer",
    ),
    (
        "TcpExt.TCPRcvQDrop",
        "received segments dropped because the receive queue could not take them (rcvbuf or memory limits)",
    ),
    (
        "TcpExt.TCPZeroWindowDrop",
        "received segments dropped because the receive window was zero (the application does not read)",
    ),
    (
        "Tcp.AttemptFails",
        "connection attempts that failed: SYN_SENT or SYN_RECV went to CLOSED (refused, reset, timed out)",
    ),
    (
        "Tcp.EstabResets",
        "ESTABLISHED or CLOSE_WAIT connections that went straight to CLOSED (mostly resets)",
    ),
    ("Tcp.OutRsts", "segments sent with the RST flag"),
    (
        "Tcp.InErrs",
        "segments received in error (bad checksum, bad header)",
    ),
    ("Tcp.RetransSegs", "segments retransmitted"),
    (
        "Tcp.ActiveOpens",
        "connections opened from this host (connect(): CLOSED to SYN_SENT)",
    ),
    (
        "Tcp.PassiveOpens",
        "connections accepted by listeners on this host (LISTEN to SYN_RECV)",
    ),
];

/// One reading of `/proc/net/netstat` and `/proc/net/snmp`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Every non-negative value, keyed `Prefix.Name` (`TcpExt.ListenOverflows`).
    pub counters: BTreeMap<String, u64>,
    /// The negative values (`Tcp.MaxConn` = -1, "no limit"): settings, not counters.
    pub signed: BTreeMap<String, i64>,
}

impl Snapshot {
    /// Reads [`NETSTAT_PATH`] and [`SNMP_PATH`].
    pub fn read() -> Result<Self, HostError> {
        let netstat =
            std::fs::read_to_string(NETSTAT_PATH).map_err(|e| HostError::read(NETSTAT_PATH, e))?;
        let snmp = std::fs::read_to_string(SNMP_PATH).map_err(|e| HostError::read(SNMP_PATH, e))?;
        Self::parse(&netstat, &snmp)
    }

    /// Parses the contents of `/proc/net/netstat` and `/proc/net/snmp` (errors name those
    /// files).
    pub fn parse(netstat: &str, snmp: &str) -> Result<Self, HostError> {
        let mut s = Self::default();
        s.add(NETSTAT_PATH, netstat)?;
        s.add(SNMP_PATH, snmp)?;
        Ok(s)
    }

    /// The counter `Prefix.Name`, if this kernel has it (never a negative setting).
    pub fn get(&self, name: &str) -> Option<u64> {
        self.counters.get(name).copied()
    }

    /// Adds the header/value line pairs of one file; `path` only labels errors. Blank lines
    /// are ignored; a key seen twice keeps its last value.
    fn add(&mut self, path: &str, text: &str) -> Result<(), HostError> {
        // (line number, prefix, names) of a header still waiting for its values line.
        let mut header: Option<(usize, &str, &str)> = None;
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let Some((prefix, rest)) = raw.split_once(':') else {
                return Err(HostError::malformed(
                    path,
                    line,
                    "expected `Prefix: ...`, found no `:`",
                ));
            };
            if prefix.is_empty() || prefix.contains(char::is_whitespace) {
                return Err(HostError::malformed(
                    path,
                    line,
                    format!("`{prefix}` is not a counter group name"),
                ));
            }
            match header.take() {
                None => header = Some((line, prefix, rest)),
                Some((hline, hprefix, names)) => {
                    self.add_pair(path, (hline, hprefix, names), (line, prefix, rest))?;
                }
            }
        }
        match header {
            Some((hline, hprefix, _)) => Err(HostError::malformed(
                path,
                hline,
                format!(
                    "header line of `{hprefix}` has no values line after it (odd number of lines)"
                ),
            )),
            None => Ok(()),
        }
    }

    fn add_pair(
        &mut self,
        path: &str,
        (hline, hprefix, names): (usize, &str, &str),
        (line, prefix, values): (usize, &str, &str),
    ) -> Result<(), HostError> {
        if prefix != hprefix {
            return Err(HostError::malformed(
                path,
                line,
                format!(
                    "values line of `{prefix}` follows the header of `{hprefix}` (line {hline})"
                ),
            ));
        }
        let names: Vec<&str> = names.split_ascii_whitespace().collect();
        let values: Vec<&str> = values.split_ascii_whitespace().collect();
        if names.len() != values.len() {
            return Err(HostError::malformed(
                path,
                line,
                format!(
                    "`{prefix}` has {} names on line {hline} but {} values",
                    names.len(),
                    values.len()
                ),
            ));
        }
        for (name, value) in names.into_iter().zip(values) {
            if name.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
                return Err(HostError::malformed(
                    path,
                    hline,
                    format!(
                        "header of `{prefix}` has `{name}` where a counter name is expected (missing header line?)"
                    ),
                ));
            }
            let key = format!("{prefix}.{name}");
            if let Ok(v) = value.parse::<u64>() {
                self.signed.remove(&key);
                self.counters.insert(key, v);
            } else if let Ok(v) = value.parse::<i64>() {
                self.counters.remove(&key);
                self.signed.insert(key, v);
            } else {
                return Err(HostError::malformed(
                    path,
                    line,
                    format!("value `{value}` of `{key}` is not an integer"),
                ));
            }
        }
        Ok(())
    }
}

/// How a counter changed between two snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeltaStatus {
    /// It grew: the event happened during the run.
    Increased,
    /// Same value at both ends.
    Unchanged,
    /// The end value is lower than the start value (a namespace or module was recreated,
    /// or the counter wrapped); `delta` is 0, `before` and `after` say by how much.
    WentBackwards,
    /// This kernel does not have the counter (in at least one of the snapshots; `before`
    /// and `after` say which); not the same as zero.
    Absent,
}

/// One counter's change over a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterDelta {
    /// `Prefix.Name`, e.g. `TcpExt.ListenOverflows`.
    pub name: String,
    /// Value at the start; `null` when absent.
    pub before: Option<u64>,
    /// Value at the end; `null` when absent.
    pub after: Option<u64>,
    /// `after - before`, saturating at 0 when the counter went backwards; `null` when
    /// absent in either snapshot.
    pub delta: Option<u64>,
    /// Increased, unchanged, went backwards, or absent.
    pub status: DeltaStatus,
    /// True when the counter increased (the event happened during the run).
    pub nonzero: bool,
    /// What an increase means, in one line.
    pub meaning: String,
}

impl CounterDelta {
    /// The change of counter `name` from `before` to `after`, labelled with `meaning`.
    pub fn between(before: &Snapshot, after: &Snapshot, name: &str, meaning: &str) -> Self {
        let (b, a) = (before.get(name), after.get(name));
        let (delta, status) = match (b, a) {
            (Some(b), Some(a)) if a > b => (Some(a - b), DeltaStatus::Increased),
            (Some(b), Some(a)) if a == b => (Some(0), DeltaStatus::Unchanged),
            (Some(_), Some(_)) => (Some(0), DeltaStatus::WentBackwards),
            _ => (None, DeltaStatus::Absent),
        };
        Self {
            name: name.to_owned(),
            before: b,
            after: a,
            delta,
            status,
            nonzero: status == DeltaStatus::Increased,
            meaning: meaning.to_owned(),
        }
    }
}

/// The changes of [`CURATED_COUNTERS`] over a run, in that order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterDeltas {
    /// One entry per curated counter, absent ones included.
    pub counters: Vec<CounterDelta>,
}

impl CounterDeltas {
    /// The entry of counter `name`.
    pub fn get(&self, name: &str) -> Option<&CounterDelta> {
        self.counters.iter().find(|c| c.name == name)
    }

    /// The counters that increased during the run.
    pub fn nonzero(&self) -> impl Iterator<Item = &CounterDelta> {
        self.counters.iter().filter(|c| c.nonzero)
    }

    /// The counters this kernel lacks.
    pub fn absent(&self) -> impl Iterator<Item = &CounterDelta> {
        self.counters
            .iter()
            .filter(|c| c.status == DeltaStatus::Absent)
    }

    /// The counters whose end value is below their start value.
    pub fn went_backwards(&self) -> impl Iterator<Item = &CounterDelta> {
        self.counters
            .iter()
            .filter(|c| c.status == DeltaStatus::WentBackwards)
    }
}

/// The changes of [`CURATED_COUNTERS`] from `before` (start of run) to `after` (end).
pub fn delta(before: &Snapshot, after: &Snapshot) -> CounterDeltas {
    CounterDeltas {
        counters: CURATED_COUNTERS
            .iter()
            .map(|(name, meaning)| CounterDelta::between(before, after, name, meaning))
            .collect(),
    }
}
