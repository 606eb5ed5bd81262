//! The ephemeral port range: the local ports `connect()` picks from when the socket was
//! not bound, from `/proc/sys/net/ipv4/ip_local_port_range` (two integers, e.g.
//! `32768\t60999`) minus `/proc/sys/net/ipv4/ip_local_reserved_ports` (e.g.
//! `8080,9000-9100`; the kernel never picks those).
use serde::{Deserialize, Serialize};

use super::HostError;

/// Where the kernel keeps the ephemeral port range.
pub const PORT_RANGE_PATH: &str = "/proc/sys/net/ipv4/ip_local_port_range";
/// Where the kernel keeps the ports excluded from the ephemeral range.
pub const RESERVED_PORTS_PATH: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";

/// An inclusive span of ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortSpan {
    /// First port of the span.
    pub first: u16,
    /// Last port of the span (inclusive).
    pub last: u16,
}

/// The ephemeral port range and the reserved ports inside it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    /// Lowest ephemeral port.
    pub low: u16,
    /// Highest ephemeral port (inclusive).
    pub high: u16,
    /// Reserved ports (all of them, inside the range or not), sorted and merged.
    #[serde(default)]
    pub reserved: Vec<PortSpan>,
}

impl PortRange {
    /// Reads [`PORT_RANGE_PATH`] and, when present, [`RESERVED_PORTS_PATH`].
    pub fn read() -> Result<Self, HostError> {
        let text = std::fs::read_to_string(PORT_RANGE_PATH)
            .map_err(|e| HostError::read(PORT_RANGE_PATH, e))?;
        let mut range = Self::parse(&text)?;
        match std::fs::read_to_string(RESERVED_PORTS_PATH) {
            Ok(text) => range.reserved = Self::parse_reserved(&text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(HostError::read(RESERVED_PORTS_PATH, e)),
        }
        Ok(range)
    }

    /// Parses the content of `ip_local_port_range` (no reserved ports).
    pub fn parse(text: &str) -> Result<Self, HostError> {
        let err = |reason: String| HostError::malformed(PORT_RANGE_PATH, 1, reason);
        let fields: Vec<&str> = text.split_ascii_whitespace().collect();
        let [low, high] = fields[..] else {
            return Err(err(format!(
                "expected two ports separated by whitespace, found {:?}",
                text.trim_end()
            )));
        };
        let port = |s: &str| match s.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(err(format!("`{s}` is not a port (1-65535)"))),
        };
        let (low, high) = (port(low)?, port(high)?);
        if low > high {
            return Err(err(format!(
                "the range starts at {low}, above its end {high}"
            )));
        }
        Ok(Self {
            low,
            high,
            reserved: Vec::new(),
        })
    }

    /// Parses the content of `ip_local_reserved_ports`: comma-separated ports and
    /// `first-last` spans, possibly empty. The result is sorted and merged.
    pub fn parse_reserved(text: &str) -> Result<Vec<PortSpan>, HostError> {
        let err = |reason: String| HostError::malformed(RESERVED_PORTS_PATH, 1, reason);
        let port = |s: &str| {
            s.trim()
                .parse::<u16>()
                .map_err(|_| err(format!("`{}` is not a port", s.trim())))
        };
        let mut spans = Vec::new();
        for item in text.trim().split(',').filter(|s| !s.trim().is_empty()) {
            let span = match item.split_once('-') {
                Some((a, b)) => PortSpan {
                    first: port(a)?,
                    last: port(b)?,
                },
                None => {
                    let p = port(item)?;
                    PortSpan { first: p, last: p }
                }
            };
            if span.first > span.last {
                return Err(err(format!("span `{}` is reversed", item.trim())));
            }
            spans.push(span);
        }
        spans.sort_unstable();
        let mut merged: Vec<PortSpan> = Vec::with_capacity(spans.len());
        for s in spans {
            match merged.last_mut() {
                Some(m) if u32::from(s.first) <= u32::from(m.last) + 1 => {
                    m.last = m.last.max(s.last);
                }
                _ => merged.push(s),
            }
        }
        Ok(merged)
    }

    /// Ports in `low..=high`, reserved ones included.
    pub fn size(&self) -> u32 {
        u32::from(self.high) - u32::from(self.low) + 1
    }

    /// Ports the kernel can actually hand out: [`size`](Self::size) minus the reserved
    /// ports inside the range.
    pub fn available(&self) -> u32 {
        let reserved: u32 = self
            .reserved
            .iter()
            .map(|s| {
                let (a, b) = (s.first.max(self.low), s.last.min(self.high));
                if a <= b {
                    u32::from(b) - u32::from(a) + 1
                } else {
                    0
                }
            })
            .sum();
        self.size().saturating_sub(reserved)
    }

    /// True when the kernel may pick `port` as an ephemeral port (in range, not reserved).
    pub fn contains(&self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
            && !self
                .reserved
                .iter()
                .any(|s| (s.first..=s.last).contains(&port))
    }
}
