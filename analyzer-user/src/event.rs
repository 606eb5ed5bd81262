//! The evidence both backends hand a session, as owned, serialisable values: kernel
//! events ([`KernelEvent`], decoded from the eBPF ring buffer or played by the raw
//! backend's tracker), facts only the wire shows ([`wire_fact`]), and the clock that puts
//! both on wall-clock time. These are the lines of `--raw-events kernel.ndjson` and the
//! input of correlation; neither backend owns them.
use std::net::SocketAddr;

use analyzer_common::EventKind;
use serde::{Deserialize, Serialize};

use crate::names::TcpState;

pub mod wire_fact;

use wire_fact::WireEvent;

/// One decoded kernel event. Fields the tracepoint does not have are absent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelEvent {
    /// Which tracepoint: `receive_reset`, `send_reset`, `state_change`, `retransmit`,
    /// `destroy_sock`, `error_report`, `drop`.
    pub event: EventKind,
    /// CLOCK_MONOTONIC nanoseconds at the tracepoint.
    pub ts_ns: u64,
    /// The same instant as nanoseconds since the Unix epoch (see [`Clock`]).
    pub ts_unix_ns: u64,
    /// `SO_COOKIE` of the socket where the tracepoint carries it (the join key).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sock_cookie: u64,
    /// Kernel address of the socket (`rx_sk` for drops); 0 when there is none (an RST
    /// sent in answer to a segment for no socket).
    #[serde(default)]
    pub skaddr: u64,
    #[serde(default)]
    pub cpu: u32,
    /// Thread-group id current at the tracepoint (meaningful in process context:
    /// the transition to SYN_SENT happens in the `connect()` caller).
    #[serde(default)]
    pub pid: u32,
    /// This host's end of the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<SocketAddr>,
    /// The peer's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<SocketAddr>,
    /// TCP state at a reset sent or a retransmit; the old state of a state change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TcpState>,
    /// The new state of a state change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_state: Option<TcpState>,
    /// The kernel's reason for a reset sent (`sk_rst_reason`) or a drop
    /// (`skb_drop_reason`), by this kernel's name for it (e.g. `TCP_LISTEN_OVERFLOW`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The errno delivered to the socket (`error_report`), e.g. 104.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    /// For drops: the kernel code address that dropped the packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<u64>,
    /// The socket's TCP counters at the event (eBPF backend: state changes, resets
    /// received, destroy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCounts>,
}

/// A socket's cumulative TCP counters, read from its `struct tcp_sock` (the RFC 4898
/// ones behind `TCP_INFO`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpCounts {
    /// Sequence space received in order: the payload, plus one for the peer's FIN once
    /// it arrived (`tcpi_bytes_received`).
    pub bytes_received: u64,
    /// Sequence space the peer acknowledged: the payload plus one for the SYN (and one
    /// for the FIN once acknowledged), as Linux counts `tcpi_bytes_acked`.
    pub bytes_acked: u64,
    /// Segments with payload received.
    pub data_segs_in: u32,
    /// Segments with payload sent.
    pub data_segs_out: u32,
    /// Smoothed round-trip time, microseconds.
    pub srtt_us: u32,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl KernelEvent {
    /// The socket cookie the event carries (0 when none).
    pub fn sock_cookie(&self) -> u64 {
        self.sock_cookie
    }
}

/// What a backend hands the session: a kernel event (from the ring buffer, or played by
/// the raw backend's tracker) or a fact only the wire shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    Kernel(KernelEvent),
    Wire(WireEvent),
}

/// Converts the kernel's monotonic timestamps to wall-clock time, from one paired
/// reading of both clocks taken when the clock is created.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    offset_ns: i128,
}

impl Clock {
    /// Reads CLOCK_REALTIME and CLOCK_MONOTONIC now.
    pub fn now() -> Self {
        let read = |id| {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `ts` is a valid out-pointer; both clock ids always exist on Linux.
            unsafe { libc::clock_gettime(id, &mut ts) };
            i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
        };
        let mono = read(libc::CLOCK_MONOTONIC);
        let real = read(libc::CLOCK_REALTIME);
        Self {
            offset_ns: real - mono,
        }
    }

    /// A clock with a fixed offset (tests, offline replays).
    pub fn with_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// Wall-clock nanoseconds since the Unix epoch for a monotonic timestamp.
    pub fn to_unix_ns(self, mono_ns: u64) -> u64 {
        u64::try_from(i128::from(mono_ns) + self.offset_ns).unwrap_or(0)
    }
}
