//! Decoding the kernel programs' ring-buffer records into [`KernelEvent`]s.
//!
//! The ring buffer hands out raw bytes; this module checks the length and the kind before
//! reading a record, so a short or unknown record is an error value, never a panic.
//! Numbers the kernel may renumber (TCP states, reset and drop reasons) are named here
//! through [`KernelNames`], read from this kernel at load time.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::unix::ffi::OsStrExt,
};

use analyzer_common::{
    AF_INET, AF_INET6, DATA_CAP, DATA_RECORD_KIND, DataDir, DataHeader, DataSource,
    EXEC_RECORD_KIND, Event, EventKind, ExecRecord,
};

use super::kernel_names::KernelNames;
use crate::event::{Clock, KernelEvent, TcpCounts};

/// One ring-buffer record: a kernel event, a captured read or write, or a program
/// executed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Kernel(KernelEvent),
    Data(Captured),
    Exec { pid: u32, path: std::path::PathBuf },
}

/// A read or write a client process made on a tracked socket: the first bytes of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    pub ts_unix_ns: u64,
    pub skaddr: u64,
    /// Thread-group id and thread id of the caller.
    pub pid: u32,
    pub tid: u32,
    pub fd: u32,
    /// `Sent`: the process wrote; `Received`: it read.
    pub sent: bool,
    /// Where the bytes were read: the socket's system calls (what goes on the wire), or
    /// a TLS library (the plaintext inside).
    pub source: DataSource,
    /// Bytes the call moved; `data` holds the first of them.
    pub total_len: u64,
    pub data: Vec<u8>,
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
    #[error("unknown capture source {0}")]
    UnknownSource(u32),
    #[error("captured call says {captured} bytes, {len_bytes} follow its header")]
    BadCapture { captured: u32, len_bytes: usize },
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

/// Decodes one ring-buffer record of either kind (told apart by the `kind` field both
/// lay out at the same offset).
pub fn decode_record(
    bytes: &[u8],
    clock: Clock,
    names: &KernelNames,
) -> Result<Record, DecodeError> {
    let kind_at = std::mem::offset_of!(DataHeader, kind);
    let kind = bytes
        .get(kind_at..kind_at + 4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    if kind == Some(DATA_RECORD_KIND) {
        decode_data(bytes, clock).map(Record::Data)
    } else if kind == Some(EXEC_RECORD_KIND) {
        let r: ExecRecord = read_record(bytes)?;
        let len = (r.len as usize).min(r.path.len());
        let path = std::ffi::OsStr::from_bytes(&r.path[..len]);
        Ok(Record::Exec {
            pid: r.pid,
            path: path.into(),
        })
    } else {
        decode(bytes, clock, names).map(Record::Kernel)
    }
}

/// Decodes a captured call: its header, then exactly `captured` bytes.
fn decode_data(bytes: &[u8], clock: Clock) -> Result<Captured, DecodeError> {
    let h: DataHeader = read_record(bytes)?;
    let body = &bytes[size_of::<DataHeader>()..];
    let captured = h.captured as usize;
    if captured > DATA_CAP || body.len() < captured {
        return Err(DecodeError::BadCapture {
            captured: h.captured,
            len_bytes: body.len(),
        });
    }
    Ok(Captured {
        ts_unix_ns: clock.to_unix_ns(h.ts_ns),
        skaddr: h.skaddr,
        pid: (h.pid_tgid >> 32) as u32,
        tid: h.pid_tgid as u32,
        fd: h.fd,
        sent: h.dir == DataDir::Sent as u32,
        source: match h.source {
            0 => DataSource::Syscall,
            1 => DataSource::OpenSsl,
            2 => DataSource::GoTls,
            other => return Err(DecodeError::UnknownSource(other)),
        },
        total_len: h.total_len.max(captured as u64),
        data: body[..captured].to_vec(),
    })
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
        tcp: (ev.tcp.present != 0).then_some(TcpCounts {
            bytes_received: ev.tcp.bytes_received,
            bytes_acked: ev.tcp.bytes_acked,
            data_segs_in: ev.tcp.data_segs_in,
            data_segs_out: ev.tcp.data_segs_out,
            // The kernel keeps srtt_us << 3 (tcp_rtt_estimator).
            srtt_us: ev.tcp.srtt_us_x8 >> 3,
        }),
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
    use crate::names::TcpState;

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
    fn tcp_counters_come_through_when_read_with_srtt_unscaled() {
        let mut r = event(EventKind::StateChange, AF_INET);
        let names = KernelNames::builtin();
        let plain = decode(&as_bytes(&r), Clock::with_offset(0), &names).unwrap();
        assert_eq!(plain.tcp, None, "not read: absent");
        r.tcp = analyzer_common::TcpCounters {
            bytes_received: 1271,
            bytes_acked: 79,
            data_segs_in: 2,
            data_segs_out: 1,
            srtt_us_x8: 320,
            present: 1,
        };
        let e = decode(&as_bytes(&r), Clock::with_offset(0), &names).unwrap();
        assert_eq!(
            e.tcp,
            Some(TcpCounts {
                bytes_received: 1271,
                bytes_acked: 79,
                data_segs_in: 2,
                data_segs_out: 1,
                srtt_us: 40,
            })
        );
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
                need_bytes: 144
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
    fn data_records_are_told_from_events_and_checked() {
        let h = DataHeader {
            ts_ns: 10,
            pid_tgid: (7 << 32) | 8,
            skaddr: 0xabc,
            total_len: 5000,
            fd: 3,
            kind: DATA_RECORD_KIND,
            dir: DataDir::Received as u32,
            captured: 4,
            ..DataHeader::default()
        };
        let mut bytes = as_bytes(&h);
        bytes.extend_from_slice(b"HTTP");
        let names = KernelNames::builtin();
        let Record::Data(c) = decode_record(&bytes, Clock::with_offset(0), &names).unwrap() else {
            panic!("a data record");
        };
        assert_eq!((c.pid, c.tid, c.fd, c.sent), (7, 8, 3, false));
        assert_eq!((c.total_len, c.data.as_slice()), (5000, &b"HTTP"[..]));
        // Fewer bytes than the header announces: an error, not a panic.
        assert_eq!(
            decode_record(&bytes[..66], Clock::now(), &names),
            Err(DecodeError::BadCapture {
                captured: 4,
                len_bytes: 2
            })
        );
        let ev = as_bytes(&event(EventKind::ReceiveReset, AF_INET));
        assert!(matches!(
            decode_record(&ev, Clock::now(), &names),
            Ok(Record::Kernel(_))
        ));
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
