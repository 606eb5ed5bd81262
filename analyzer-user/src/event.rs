//! Kernel event records decoded from the ring buffer into owned, serialisable values.
//!
//! The ring buffer hands out raw bytes; this module checks the length and the kind before
//! reading a record, so a short or unknown record is an error value, never a panic.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use analyzer_common::{AF_INET, AF_INET6, EventInfo, EventKind, ResetEvent, Tuple};
use serde::{Deserialize, Serialize};

/// A decoded kernel event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum KernelEvent {
    /// This host received an RST (`tcp:tcp_receive_reset`).
    ReceiveReset(SocketEvent),
}

impl KernelEvent {
    /// The socket cookie the event carries.
    pub fn sock_cookie(&self) -> u64 {
        match self {
            Self::ReceiveReset(e) => e.sock_cookie,
        }
    }
}

/// Facts every socket-level event carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketEvent {
    /// CLOCK_MONOTONIC nanoseconds at the tracepoint.
    pub ts_ns: u64,
    /// The same instant as nanoseconds since the Unix epoch (see [`Clock`]).
    pub ts_unix_ns: u64,
    /// `SO_COOKIE` of the socket: the join key with loadgen.
    pub sock_cookie: u64,
    /// Kernel address of the socket (hex in logs; stable for the socket's life).
    pub skaddr: u64,
    pub cpu: u32,
    /// This host's end of the connection.
    pub local: SocketAddr,
    /// The peer's end.
    pub remote: SocketAddr,
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
pub fn decode(bytes: &[u8], clock: Clock) -> Result<KernelEvent, DecodeError> {
    let info: EventInfo = read_record(bytes)?;
    match EventKind::try_from(info.kind).map_err(DecodeError::UnknownKind)? {
        EventKind::ReceiveReset => {
            let ev: ResetEvent = read_record(bytes)?;
            Ok(KernelEvent::ReceiveReset(socket_event(
                &ev.info, &ev.tuple, clock,
            )?))
        }
    }
}

fn socket_event(info: &EventInfo, t: &Tuple, clock: Clock) -> Result<SocketEvent, DecodeError> {
    let (local, remote) = tuple_addrs(t)?;
    Ok(SocketEvent {
        ts_ns: info.ts_ns,
        ts_unix_ns: clock.to_unix_ns(info.ts_ns),
        sock_cookie: info.sock_cookie,
        skaddr: info.skaddr,
        cpu: info.cpu,
        local,
        remote,
    })
}

/// The (local, remote) socket addresses of a kernel tuple.
pub fn tuple_addrs(t: &Tuple) -> Result<(SocketAddr, SocketAddr), DecodeError> {
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
    use super::*;

    fn as_bytes<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: T is a Pod wire type without implicit padding.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    fn reset(family: u16) -> ResetEvent {
        let mut t = Tuple {
            sport: 40000,
            dport: 443,
            family,
            ..Tuple::default()
        };
        t.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        t.daddr[..4].copy_from_slice(&[127, 0, 0, 2]);
        ResetEvent {
            info: EventInfo {
                ts_ns: 5,
                sock_cookie: 77,
                skaddr: 0xffff,
                kind: EventKind::ReceiveReset as u32,
                cpu: 1,
            },
            tuple: t,
        }
    }

    #[test]
    fn decodes_a_v4_reset() {
        let clock = Clock { offset_ns: 1_000 };
        let ev = decode(&as_bytes(&reset(AF_INET)), clock).unwrap();
        let KernelEvent::ReceiveReset(e) = ev;
        assert_eq!(e.sock_cookie, 77);
        assert_eq!(e.ts_unix_ns, 1_005);
        assert_eq!(e.local, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(e.remote, "127.0.0.2:443".parse().unwrap());
    }

    #[test]
    fn short_unknown_and_bad_family_records_are_errors() {
        let clock = Clock::now();
        let bytes = as_bytes(&reset(AF_INET));
        assert_eq!(
            decode(&bytes[..40], clock),
            Err(DecodeError::Short {
                len_bytes: 40,
                need_bytes: 72
            })
        );
        assert!(matches!(
            decode(&bytes[..3], clock),
            Err(DecodeError::Short { .. })
        ));
        let mut r = reset(AF_INET);
        r.info.kind = 99;
        assert_eq!(
            decode(&as_bytes(&r), clock),
            Err(DecodeError::UnknownKind(99))
        );
        assert_eq!(
            decode(&as_bytes(&reset(7)), clock),
            Err(DecodeError::UnknownFamily(7))
        );
    }

    #[test]
    fn v6_addresses_use_all_sixteen_bytes() {
        let mut r = reset(AF_INET6);
        r.tuple.saddr = Ipv6Addr::LOCALHOST.octets();
        let KernelEvent::ReceiveReset(e) = decode(&as_bytes(&r), Clock::now()).unwrap();
        assert_eq!(e.local.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
    }
}
