//! A census of the host's TCP sockets from `/proc/net/tcp` and `/proc/net/tcp6`: counts by
//! state, counts per remote destination, and the local port exhaustion verdict.
//!
//! Each line of those files is one socket:
//!
//! ```text
//!   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
//!  173: 0100007F:BFF0 0100007F:CC17 01 00000000:00000000 00:00000000 00000000     0        0 77523 2 ...
//! ```
//!
//! Addresses are hex in kernel byte order: the IPv4 address is one 32-bit word, the IPv6
//! address four, each printed as a native-endian integer (so `0100007F` is 127.0.0.1 on
//! little-endian machines); ports are plain hex. `st` is the kernel's `TCP_*` state code.
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, sockets of dual-stack listeners and
//! their peers) are counted as IPv4, so one destination is one key whichever file lists
//! it.
//!
//! The files are streamed (one reused line buffer), so 100,000 sockets cost one pass and
//! a hash map entry per destination. A line that does not parse (truncated, bad hex,
//! unknown state) is skipped and counted in [`SocketCensus::parse_errors`], with the first
//! one's message kept; only a missing or unexpected header line fails the whole file.
use std::{
    collections::{BTreeMap, HashMap},
    io::{BufRead, BufReader},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use serde::{Deserialize, Serialize};

use super::{HostError, ports::PortRange};
use crate::names::TcpState;

/// Where the kernel lists IPv4 TCP sockets.
pub const TCP_PATH: &str = "/proc/net/tcp";
/// Where the kernel lists IPv6 TCP sockets (absent when IPv6 is disabled).
pub const TCP6_PATH: &str = "/proc/net/tcp6";

/// The share of the usable ephemeral ports toward one destination above which the
/// verdict is local port exhaustion ([`PortPressure::near_exhaustion`]).
pub const NEAR_EXHAUSTION_SHARE: f64 = 0.8;

/// Socket counts per state; serialized as a map from every state name to its count
/// (zeros included, so the keys are stable).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "BTreeMap<TcpState, u64>", from = "BTreeMap<TcpState, u64>")]
pub struct StateCounts([u64; 13]);

impl StateCounts {
    /// The slot of `state`: its code minus one; `None` for a state without a code.
    fn slot(state: TcpState) -> Option<usize> {
        usize::from(state.code()?).checked_sub(1)
    }

    /// Sockets in `state`.
    pub fn get(&self, state: TcpState) -> u64 {
        Self::slot(state)
            .and_then(|i| self.0.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// All sockets counted.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Counts one more socket in `state`.
    pub fn add(&mut self, state: TcpState) {
        if let Some(n) = Self::slot(state).and_then(|i| self.0.get_mut(i)) {
            *n += 1;
        }
    }

    /// `(state, count)` for every state, in kernel order.
    pub fn iter(&self) -> impl Iterator<Item = (TcpState, u64)> + '_ {
        TcpState::KNOWN.iter().map(|&s| (s, self.get(s)))
    }
}

impl From<StateCounts> for BTreeMap<TcpState, u64> {
    fn from(c: StateCounts) -> Self {
        c.iter().collect()
    }
}

impl From<BTreeMap<TcpState, u64>> for StateCounts {
    fn from(m: BTreeMap<TcpState, u64>) -> Self {
        let mut c = Self::default();
        for (s, n) in m {
            if let Some(slot) = Self::slot(s).and_then(|i| c.0.get_mut(i)) {
                *slot = n;
            }
        }
        c
    }
}

/// One parsed line of `/proc/net/tcp{,6}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SocketLine {
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    pub(crate) state: TcpState,
}

/// Fields a complete line has, through `inode` (TIME_WAIT lines have 12, others 17).
const MIN_FIELDS: usize = 10;

/// Parses one socket line; the error says what is wrong with it.
pub(crate) fn parse_socket_line(line: &str) -> Result<SocketLine, String> {
    let mut fields = line.split_ascii_whitespace();
    let mut next = |what: &str| {
        fields
            .next()
            .ok_or_else(|| format!("line ends before the {what} column (truncated?)"))
    };
    let sl = next("sl")?;
    let slot = sl.strip_suffix(':').unwrap_or("");
    if slot.is_empty() || !slot.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{sl}` is not a slot number `N:`"));
    }
    let local = parse_endpoint(next("local_address")?)?;
    let remote = parse_endpoint(next("rem_address")?)?;
    let st = next("st")?;
    let code = hex_u32(st, 2).map_err(|e| format!("state `{st}`: {e}"))?;
    let state = u8::try_from(code)
        .ok()
        .and_then(TcpState::from_code)
        .ok_or_else(|| format!("unknown TCP state code 0x{st}"))?;
    let rest = fields.count();
    if 4 + rest < MIN_FIELDS {
        return Err(format!(
            "{} columns, expected at least {MIN_FIELDS} (truncated?)",
            4 + rest
        ));
    }
    Ok(SocketLine {
        local,
        remote,
        state,
    })
}

/// `ADDR:PORT` with ADDR 8 (IPv4) or 32 (IPv6) hex digits in kernel byte order.
fn parse_endpoint(s: &str) -> Result<SocketAddr, String> {
    let (addr, port) = s
        .split_once(':')
        .ok_or_else(|| format!("address `{s}` has no `:port`"))?;
    let port = hex_u32(port, 4).map_err(|e| format!("port of `{s}`: {e}"))?;
    let port = u16::try_from(port).map_err(|_| format!("port of `{s}` is out of range"))?;
    let ip = match addr.len() {
        8 => {
            let w = hex_u32(addr, 8).map_err(|e| format!("address `{s}`: {e}"))?;
            IpAddr::V4(Ipv4Addr::from(w.to_ne_bytes()))
        }
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                let w = hex_u32(&addr[i * 8..i * 8 + 8], 8)
                    .map_err(|e| format!("address `{s}`: {e}"))?;
                chunk.copy_from_slice(&w.to_ne_bytes());
            }
            let v6 = Ipv6Addr::from(bytes);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        n => {
            return Err(format!(
                "address `{s}` has {n} hex digits, expected 8 or 32"
            ));
        }
    };
    Ok(SocketAddr::new(ip, port))
}

/// Hex digits only (no sign, no prefix), at most `max_digits` of them.
fn hex_u32(s: &str, max_digits: usize) -> Result<u32, String> {
    if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("`{s}` is not 1-{max_digits} hex digits"));
    }
    u32::from_str_radix(s, 16).map_err(|e| e.to_string())
}

/// The sockets toward one remote address.
#[derive(Clone, Debug, Default)]
struct Destination {
    states: StateCounts,
    /// Local end and state of each socket, for [`port_pressure`].
    locals: Vec<(IpAddr, u16, TcpState)>,
}

/// Counts of the host's TCP sockets, by state and by remote destination.
///
/// Lines that do not parse are skipped and counted ([`parse_errors`](Self::parse_errors));
/// the first one's message, naming file and line, is kept
/// ([`first_parse_error`](Self::first_parse_error)).
#[derive(Clone, Debug, Default)]
pub struct SocketCensus {
    states: StateCounts,
    destinations: HashMap<SocketAddr, Destination>,
    parse_errors: u64,
    first_parse_error: Option<String>,
}

/// The sockets toward one remote `ip:port`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationSummary {
    /// The remote address (`127.0.0.1:8443`, `[::1]:8443`).
    pub destination: SocketAddr,
    /// Sockets toward it, in any state; each holds one local port.
    pub sockets: u64,
    /// Those of them in TIME_WAIT.
    pub time_wait: u64,
    /// All of them by state.
    pub states: StateCounts,
}

/// What a census says, in a form to embed in a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CensusSummary {
    /// All sockets counted (listeners included).
    pub sockets: u64,
    /// All sockets by state.
    pub states: StateCounts,
    /// Destinations with the most TIME_WAIT sockets, most first.
    pub top_time_wait: Vec<DestinationSummary>,
    /// Destinations with the most sockets (local ports) toward them, most first.
    pub top_sockets: Vec<DestinationSummary>,
    /// Lines skipped because they did not parse.
    pub parse_errors: u64,
    /// The first of them: file, line and what was wrong.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub first_parse_error: Option<String>,
}

impl SocketCensus {
    /// An empty census.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts the sockets of [`TCP_PATH`] and, when present, [`TCP6_PATH`].
    pub fn read() -> Result<Self, HostError> {
        let mut census = Self::new();
        let tcp = std::fs::File::open(TCP_PATH).map_err(|e| HostError::read(TCP_PATH, e))?;
        census.add_reader(TCP_PATH, BufReader::with_capacity(1 << 16, tcp))?;
        match std::fs::File::open(TCP6_PATH) {
            Ok(f) => census.add_reader(TCP6_PATH, BufReader::with_capacity(1 << 16, f))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(HostError::read(TCP6_PATH, e)),
        }
        Ok(census)
    }

    /// Counts the sockets of one `/proc/net/tcp`-format stream; `path` labels errors.
    /// Fails on an I/O error and on a missing or unexpected header line; bad socket lines
    /// are counted, not fatal.
    pub fn add_reader(&mut self, path: &str, mut reader: impl BufRead) -> Result<(), HostError> {
        let mut buf = Vec::with_capacity(256);
        let mut line_no = 0usize;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| HostError::read(path, e))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let line = std::str::from_utf8(&buf);
            if line_no == 1 {
                let header = line.unwrap_or("").trim_start();
                if !(header.starts_with("sl") && header.contains("local_address")) {
                    return Err(HostError::malformed(
                        path,
                        1,
                        "expected the header `sl  local_address rem_address st ...`",
                    ));
                }
                continue;
            }
            let parsed = match line {
                Ok(l) if l.trim().is_empty() => continue,
                Ok(l) => parse_socket_line(l),
                Err(_) => Err("not UTF-8".to_owned()),
            };
            match parsed {
                Ok(s) => self.add(s),
                Err(reason) => {
                    self.parse_errors += 1;
                    self.first_parse_error
                        .get_or_insert_with(|| format!("{path}:{line_no}: {reason}"));
                }
            }
        }
        if line_no == 0 {
            return Err(HostError::malformed(
                path,
                1,
                "empty file, expected the header `sl  local_address ...`",
            ));
        }
        Ok(())
    }

    fn add(&mut self, s: SocketLine) {
        self.states.add(s.state);
        // Listeners and unconnected sockets have no remote end.
        if s.remote.port() == 0 {
            return;
        }
        let d = self.destinations.entry(s.remote).or_default();
        d.states.add(s.state);
        d.locals.push((s.local.ip(), s.local.port(), s.state));
    }

    /// All sockets counted, listeners included.
    pub fn total(&self) -> u64 {
        self.states.total()
    }

    /// All sockets by state.
    #[cfg(test)]
    pub fn states(&self) -> &StateCounts {
        &self.states
    }

    /// Lines skipped because they did not parse.
    #[cfg(test)]
    pub fn parse_errors(&self) -> u64 {
        self.parse_errors
    }

    /// The first skipped line: `file:line: reason`.
    #[cfg(test)]
    pub fn first_parse_error(&self) -> Option<&str> {
        self.first_parse_error.as_deref()
    }

    /// Number of distinct remote destinations.
    #[cfg(test)]
    pub fn destination_count(&self) -> usize {
        self.destinations.len()
    }

    /// The sockets toward `dest` (an IPv4-mapped IPv6 address is looked up as IPv4).
    #[cfg(test)]
    pub fn destination(&self, dest: SocketAddr) -> Option<DestinationSummary> {
        let dest = canonical(dest);
        self.destinations.get(&dest).map(|d| summary(dest, d))
    }

    /// Up to `n` destinations with TIME_WAIT sockets, most TIME_WAIT first (ties by
    /// address).
    pub fn top_by_time_wait(&self, n: usize) -> Vec<DestinationSummary> {
        self.top(n, |d| d.states.get(TcpState::TimeWait))
    }

    /// Up to `n` destinations with the most sockets (so local ports) toward them.
    pub fn top_by_sockets(&self, n: usize) -> Vec<DestinationSummary> {
        self.top(n, |d| d.states.total())
    }

    fn top(&self, n: usize, key: impl Fn(&Destination) -> u64) -> Vec<DestinationSummary> {
        let mut v: Vec<(u64, &SocketAddr, &Destination)> = self
            .destinations
            .iter()
            .map(|(a, d)| (key(d), a, d))
            .filter(|(k, _, _)| *k > 0)
            .collect();
        v.sort_unstable_by(|x, y| y.0.cmp(&x.0).then_with(|| x.1.cmp(y.1)));
        v.into_iter()
            .take(n)
            .map(|(_, a, d)| summary(*a, d))
            .collect()
    }

    /// The census for a report, with the top `n` destinations of each kind.
    pub fn summary(&self, n: usize) -> CensusSummary {
        CensusSummary {
            sockets: self.total(),
            states: self.states,
            top_time_wait: self.top_by_time_wait(n),
            top_sockets: self.top_by_sockets(n),
            parse_errors: self.parse_errors,
            first_parse_error: self.first_parse_error.clone(),
        }
    }
}

fn summary(dest: SocketAddr, d: &Destination) -> DestinationSummary {
    DestinationSummary {
        destination: dest,
        sockets: d.states.total(),
        time_wait: d.states.get(TcpState::TimeWait),
        states: d.states,
    }
}

#[cfg(test)]
fn canonical(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

/// How close the sockets toward one destination come to exhausting the ephemeral ports.
///
/// The kernel needs a distinct local port per (local address, destination) for every
/// connection it auto-binds, so the limit applies per local address: `used` counts the
/// sockets from the busiest local address toward `destination` whose local port is a
/// usable ephemeral port, in any state (ESTABLISHED, SYN_SENT, TIME_WAIT, FIN_WAIT*,
/// CLOSE_WAIT, LAST_ACK, ... all hold their port). TIME_WAIT ports can be reused for new
/// connections when `net.ipv4.tcp_tw_reuse` allows it (the default, 2, allows it on
/// loopback only), so `time_wait` is given apart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortPressure {
    /// The remote `ip:port`.
    pub destination: SocketAddr,
    /// The local address with the most sockets toward it (`null` when there are none).
    pub source: Option<IpAddr>,
    /// Ephemeral ports in use from `source` toward `destination`.
    pub used: u64,
    /// Of `used`, the sockets in TIME_WAIT.
    pub time_wait: u64,
    /// Usable ephemeral ports ([`PortRange::available`]).
    pub available: u64,
    /// `used / available` (1.0 when no port is available at all).
    pub share: f64,
    /// `share > NEAR_EXHAUSTION_SHARE`: the local port exhaustion verdict.
    pub near_exhaustion: bool,
}

/// The ephemeral port pressure toward `dest` (an IPv4-mapped address counts as IPv4).
#[cfg(test)]
pub fn port_pressure(range: &PortRange, census: &SocketCensus, dest: SocketAddr) -> PortPressure {
    let dest = canonical(dest);
    match census.destinations.get(&dest) {
        Some(d) => pressure_of(range, dest, d),
        None => pressure(range, dest, None, 0, 0),
    }
}

/// The destination under the highest ephemeral port pressure, if any socket has a remote
/// end (ties by address).
pub fn worst_port_pressure(range: &PortRange, census: &SocketCensus) -> Option<PortPressure> {
    census
        .destinations
        .iter()
        .map(|(a, d)| pressure_of(range, *a, d))
        .max_by(|x, y| {
            x.used
                .cmp(&y.used)
                .then_with(|| y.destination.cmp(&x.destination))
        })
}

fn pressure_of(range: &PortRange, dest: SocketAddr, d: &Destination) -> PortPressure {
    // (local address, used, time_wait); almost always one or two local addresses.
    let mut per_source: Vec<(IpAddr, u64, u64)> = Vec::new();
    for &(ip, port, state) in &d.locals {
        if !range.contains(port) {
            continue;
        }
        let tw = u64::from(state == TcpState::TimeWait);
        match per_source.iter_mut().find(|e| e.0 == ip) {
            Some(e) => {
                e.1 += 1;
                e.2 += tw;
            }
            None => per_source.push((ip, 1, tw)),
        }
    }
    let busiest = per_source
        .into_iter()
        .max_by(|x, y| x.1.cmp(&y.1).then_with(|| y.0.cmp(&x.0)));
    match busiest {
        Some((ip, used, tw)) => pressure(range, dest, Some(ip), used, tw),
        None => pressure(range, dest, None, 0, 0),
    }
}

fn pressure(
    range: &PortRange,
    destination: SocketAddr,
    source: Option<IpAddr>,
    used: u64,
    time_wait: u64,
) -> PortPressure {
    let available = u64::from(range.available());
    // Both are far below 2^53: the conversions are exact.
    let share = if available == 0 {
        1.0
    } else {
        used as f64 / available as f64
    };
    PortPressure {
        destination,
        source,
        used,
        time_wait,
        available,
        share,
        near_exhaustion: share > NEAR_EXHAUSTION_SHARE,
    }
}
