//! Kernel event records decoded from the ring buffer into owned, serialisable values:
//! the lines of `--raw-events kernel.ndjson`, and the input of correlation.
//!
//! The ring buffer hands out raw bytes; this module checks the length and the kind before
//! reading a record, so a short or unknown record is an error value, never a panic.
//! Numbers the kernel may renumber (TCP states, reset and drop reasons) are named here
//! through [`KernelNames`], read from this kernel at load time.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use analyzer_common::{AF_INET, AF_INET6, Event, EventKind};
use serde::{Deserialize, Serialize};

use crate::names::{KernelNames, TcpState};

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
    Wire(crate::raw::track::WireEvent),
}

/// Why a record could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {len_bytes} bytes is shorter than its {need_bytes}-byte type")]
    Short { len_bytes: usize, need_bytes: usize },
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("unknown address family {0}")]
    UnknownFamily(u16),
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

fn read_record<T: Copy>(bytes: &[u8]) -> Result<T, DecodeError> {
    let need_bytes = size_of::<T>();
    if bytes.len() < need_bytes {
        return Err(DecodeError::Short {
            len_bytes: bytes.len(),
            need_bytes,
        });
    }
    // SAFETY: the length was checked above, and T is one of analyzer-common's Pod wire
    // types (integers only, every bit pattern valid); read_unaligned copes with any
    // alignment of the ring-buffer slice.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8], clock: Clock, names: &KernelNames) -> Result<KernelEvent, DecodeError> {
    let ev: Event = read_record(bytes)?;
    let kind = EventKind::try_from(ev.kind).map_err(DecodeError::UnknownKind)?;
    let (local, remote) = if ev.tuple.family == 0 {
        (None, None)
    } else {
        let (l, r) = tuple_addrs(&ev.tuple)?;
        (Some(l), Some(r))
    };
    let has_state = matches!(
        kind,
        EventKind::SendReset | EventKind::Retransmit | EventKind::StateChange
    );
    let reason = match kind {
        EventKind::SendReset => Some(names.rst_reason(ev.reason)),
        EventKind::Drop => Some(names.drop_reason(ev.reason)),
        _ => None,
    };
    Ok(KernelEvent {
        event: kind,
        ts_ns: ev.ts_ns,
        ts_unix_ns: clock.to_unix_ns(ev.ts_ns),
        sock_cookie: ev.sock_cookie,
        skaddr: ev.skaddr,
        cpu: ev.cpu,
        pid: ev.pid,
        local,
        remote,
        state: has_state.then(|| names.tcp_state(ev.state)),
        new_state: (kind == EventKind::StateChange).then(|| names.tcp_state(ev.new_state)),
        reason,
        errno: match kind {
            EventKind::ErrorReport => Some(ev.error),
            EventKind::Retransmit if ev.error != 0 => Some(-ev.error),
            _ => None,
        },
        location: (kind == EventKind::Drop).then_some(ev.location),
    })
}

/// The (local, remote) socket addresses of a kernel tuple.
pub fn tuple_addrs(t: &analyzer_common::Tuple) -> Result<(SocketAddr, SocketAddr), DecodeError> {
    let ip = |a: &[u8; 16]| -> Result<IpAddr, DecodeError> {
        match t.family {
            AF_INET => Ok(Ipv4Addr::new(a[0], a[1], a[2], a[3]).into()),
            AF_INET6 => Ok(Ipv6Addr::from(*a).into()),
            f => Err(DecodeError::UnknownFamily(f)),
        }
    };
    Ok((
        SocketAddr::new(ip(&t.saddr)?, t.sport),
        SocketAddr::new(ip(&t.daddr)?, t.dport),
    ))
}

#[cfg(test)]
mod tests {
    use analyzer_common::Tuple;

    use super::*;

    fn as_bytes<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: T is a Pod wire type without implicit padding.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    fn event(kind: EventKind, family: u16) -> Event {
        let mut t = Tuple {
            sport: 40000,
            dport: 443,
            family,
            ..Tuple::default()
        };
        t.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        t.daddr[..4].copy_from_slice(&[127, 0, 0, 2]);
        Event {
            ts_ns: 5,
            sock_cookie: 77,
            skaddr: 0xffff,
            kind: kind as u32,
            cpu: 1,
            tuple: t,
            ..Event::default()
        }
    }

    #[test]
    fn decodes_a_v4_reset() {
        let clock = Clock::with_offset(1_000);
        let e = decode(
            &as_bytes(&event(EventKind::ReceiveReset, AF_INET)),
            clock,
            &KernelNames::builtin(),
        )
        .unwrap();
        assert_eq!(e.event, EventKind::ReceiveReset);
        assert_eq!(e.sock_cookie, 77);
        assert_eq!(e.ts_unix_ns, 1_005);
        assert_eq!(e.local, Some("127.0.0.1:40000".parse().unwrap()));
        assert_eq!(e.remote, Some("127.0.0.2:443".parse().unwrap()));
        assert_eq!(e.state, None);
    }

    #[test]
    fn names_states_and_reasons() {
        let names = KernelNames::builtin();
        let mut r = event(EventKind::StateChange, AF_INET);
        r.state = 2;
        r.new_state = 7;
        let e = decode(&as_bytes(&r), Clock::now(), &names).unwrap();
        assert_eq!(e.state, Some(TcpState::SynSent));
        assert_eq!(e.new_state, Some(TcpState::Close));
        let mut d = event(EventKind::Drop, 0);
        d.reason = 9999;
        let e = decode(&as_bytes(&d), Clock::now(), &names).unwrap();
        assert_eq!(e.local, None);
        assert_eq!(e.reason.as_deref(), Some("reason 9999"));
    }

    #[test]
    fn short_unknown_and_bad_family_records_are_errors() {
        let clock = Clock::now();
        let names = KernelNames::builtin();
        let bytes = as_bytes(&event(EventKind::ReceiveReset, AF_INET));
        assert_eq!(
            decode(&bytes[..40], clock, &names),
            Err(DecodeError::Short {
                len_bytes: 40,
                need_bytes: 112
            })
        );
        let mut r = event(EventKind::ReceiveReset, AF_INET);
        r.kind = 99;
        assert_eq!(
            decode(&as_bytes(&r), clock, &names),
            Err(DecodeError::UnknownKind(99))
        );
        assert_eq!(
            decode(&as_bytes(&event(EventKind::ReceiveReset, 7)), clock, &names),
            Err(DecodeError::UnknownFamily(7))
        );
    }

    #[test]
    fn v6_addresses_use_all_sixteen_bytes() {
        let mut r = event(EventKind::ReceiveReset, AF_INET6);
        r.tuple.saddr = Ipv6Addr::LOCALHOST.octets();
        let e = decode(&as_bytes(&r), Clock::now(), &KernelNames::builtin()).unwrap();
        assert_eq!(e.local.unwrap().ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn json_lines_round_trip() {
        let e = decode(
            &as_bytes(&event(EventKind::SendReset, AF_INET)),
            Clock::now(),
            &KernelNames::builtin(),
        )
        .unwrap();
        let line = serde_json::to_string(&e).unwrap();
        assert!(line.contains("\"event\":\"send_reset\""), "{line}");
        let back: KernelEvent = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
    }
}
