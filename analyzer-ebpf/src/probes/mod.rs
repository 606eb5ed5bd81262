//! The tracepoint programs. Every program is one line: it names its [`EventKind`] and
//! hands the raw record to [`record`], which reads the fields at the offsets userspace
//! found in this kernel's tracefs `format` file ([`LAYOUTS`]), applies the [`FILTER`] and
//! writes one [`Event`] to the ring buffer.
use analyzer_common::{
    AF_INET, DROP_REASON_SLOTS, ETH_P_IP, ETH_P_IPV6, Event, EventKind, FIELD_ABSENT, FILTER_ADDRS,
    FILTER_PORTS, Filter, IPPROTO_TCP, Layouts, RING_WAKEUP_BYTES, StatSlot, TCP_ESTABLISHED,
    TRACKED_ANY, TRACKED_CLIENT, TcpCounters, TcpSockLayout, TpLayout, Tuple,
};
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::{DROP_REASONS, EVENTS, OWNERS, TRACKED, count};

mod data;
mod exec;
mod syscalls;
mod tls;

/// `TCP_SYN_SENT`: a socket entering it is the client end of its connection.
const TCP_SYN_SENT: i32 = 2;

/// Field offsets of every tracepoint on this kernel, indexed by [`EventKind`] value;
/// written by userspace from the tracefs format files before loading.
#[unsafe(no_mangle)]
static LAYOUTS: Layouts = Layouts::ABSENT;

/// Which ports and addresses to record; written by userspace before loading.
#[unsafe(no_mangle)]
static FILTER: Filter = Filter::ALL;

/// Where the counters sit in `struct tcp_sock` on this kernel (from BTF); written by
/// userspace before loading.
#[unsafe(no_mangle)]
static TCP_SOCK: TcpSockLayout = TcpSockLayout::ABSENT;

#[tracepoint]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    record(&ctx, EventKind::ReceiveReset)
}

#[tracepoint]
pub fn tcp_send_reset(ctx: TracePointContext) -> u32 {
    record(&ctx, EventKind::SendReset)
}

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    record(&ctx, EventKind::StateChange)
}

#[tracepoint]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    record(&ctx, EventKind::Retransmit)
}

#[tracepoint]
pub fn tcp_destroy_sock(ctx: TracePointContext) -> u32 {
    record(&ctx, EventKind::DestroySock)
}

#[tracepoint]
pub fn inet_sk_error_report(ctx: TracePointContext) -> u32 {
    record(&ctx, EventKind::ErrorReport)
}

#[tracepoint]
pub fn kfree_skb(ctx: TracePointContext) -> u32 {
    record(&ctx, EventKind::Drop)
}

#[inline(always)]
fn record(ctx: &TracePointContext, kind: EventKind) -> u32 {
    if try_record(ctx, kind).is_err() {
        count(StatSlot::ReadFailed);
    }
    0
}

#[inline(always)]
fn read<T: Default>(ctx: &TracePointContext, off: u32) -> Result<T, i32> {
    if off == FIELD_ABSENT {
        return Ok(T::default());
    }
    // SAFETY: `off` comes from this tracepoint's tracefs format file, so it addresses a
    // field of type T inside the record; the helper bounds-checks the read.
    unsafe { ctx.read_at::<T>(off as usize) }
}

/// Reads the tuple from separate port/family/address fields.
#[inline(always)]
fn read_tuple_fields(ctx: &TracePointContext, l: &TpLayout) -> Result<Tuple, i32> {
    let family: u16 = read(ctx, l.family)?;
    let mut t = Tuple {
        sport: read(ctx, l.sport)?,
        dport: read(ctx, l.dport)?,
        family,
        ..Tuple::default()
    };
    if family == AF_INET {
        let s: [u8; 4] = read(ctx, l.saddr)?;
        let d: [u8; 4] = read(ctx, l.daddr)?;
        t.saddr[..4].copy_from_slice(&s);
        t.daddr[..4].copy_from_slice(&d);
    } else {
        t.saddr = read(ctx, l.saddr_v6)?;
        t.daddr = read(ctx, l.daddr_v6)?;
    }
    Ok(t)
}

/// Reads one whole `struct sockaddr_in`/`sockaddr_in6` stored in the record: family
/// (host order) at +0, port (network order) at +2, IPv4 address at +4 or IPv6 at +8.
#[inline(always)]
fn read_sockaddr(ctx: &TracePointContext, off: u32) -> Result<(u16, u16, [u8; 16]), i32> {
    let family: u16 = read(ctx, off)?;
    let port: u16 = u16::from_be(read(ctx, off + 2)?);
    let mut addr = [0u8; 16];
    if family == AF_INET {
        let a: [u8; 4] = read(ctx, off + 4)?;
        addr[..4].copy_from_slice(&a);
    } else {
        addr = read(ctx, off + 8)?;
    }
    Ok((family, port, addr))
}

#[inline(always)]
fn read_tuple_sockaddrs(ctx: &TracePointContext, l: &TpLayout) -> Result<Tuple, i32> {
    let (family, sport, saddr) = read_sockaddr(ctx, l.sockaddr_src)?;
    let (_, dport, daddr) = read_sockaddr(ctx, l.sockaddr_dst)?;
    Ok(Tuple {
        saddr,
        daddr,
        sport,
        dport,
        family,
        _pad: 0,
    })
}

#[inline(always)]
fn filter_u32(field: &u32) -> u32 {
    // SAFETY: a plain read of a field of a static of a Copy type. Volatile: the global
    // lives in .rodata and is patched at load time; without it the compiler would fold
    // the compile-time defaults into the code.
    unsafe { core::ptr::read_volatile(field) }
}

#[inline(always)]
fn passes(t: &Tuple) -> bool {
    let nports = filter_u32(&FILTER.nports);
    if nports != 0 {
        let mut hit = false;
        for i in 0..FILTER_PORTS {
            if i as u32 >= nports {
                break;
            }
            // SAFETY: as in `filter_u32`.
            let p = unsafe { core::ptr::read_volatile(&FILTER.ports[i]) };
            if p == t.sport || p == t.dport {
                hit = true;
                break;
            }
        }
        if !hit {
            return false;
        }
    }
    let naddrs = filter_u32(&FILTER.naddrs);
    if naddrs == 0 {
        return true;
    }
    for i in 0..FILTER_ADDRS {
        if i as u32 >= naddrs {
            break;
        }
        // SAFETY: as in `filter_u32`.
        let (fam, a) = unsafe {
            (
                core::ptr::read_volatile(&FILTER.addr_families[i]),
                core::ptr::read_volatile(&FILTER.addrs[i]),
            )
        };
        if fam != t.family {
            continue;
        }
        let len = if fam == AF_INET { 4 } else { 16 };
        if a[..len] == t.saddr[..len] || a[..len] == t.daddr[..len] {
            return true;
        }
    }
    false
}

/// One field of the `struct tcp_sock` at `skaddr`, `off` bytes in (0 when absent).
#[inline(always)]
fn sock_field<T: Default>(skaddr: u64, off: u32) -> Result<T, i32> {
    if off == FIELD_ABSENT {
        return Ok(T::default());
    }
    // SAFETY: bpf_probe_read_kernel checks the address and fails rather than faults;
    // `off` is the field's offset in this kernel's BTF for `struct tcp_sock`.
    unsafe { bpf_probe_read_kernel((skaddr + u64::from(off)) as *const T) }
}

/// The counters of the full TCP socket at `skaddr`, where userspace uses them: when the
/// connection leaves ESTABLISHED (the first FIN, either way), when an RST arrives, and at
/// destroy. Only events whose socket is a `struct tcp_sock`: a reset sent may come from a
/// time-wait or request socket, whose memory has another shape. Reading at every state
/// change doubled the programs' run time under churn for nothing (BENCHMARKS.md).
#[inline(always)]
fn tcp_counters(kind: EventKind, skaddr: u64, old_state: i32) -> Result<TcpCounters, i32> {
    // SAFETY: as in `filter_u32`.
    let l: TcpSockLayout = unsafe { core::ptr::read_volatile(&TCP_SOCK) };
    let wanted = match kind {
        EventKind::StateChange => old_state == TCP_ESTABLISHED,
        EventKind::ReceiveReset | EventKind::DestroySock => true,
        _ => false,
    };
    if l.present == 0 || skaddr == 0 || !wanted {
        return Ok(TcpCounters::default());
    }
    Ok(TcpCounters {
        bytes_received: sock_field(skaddr, l.bytes_received)?,
        bytes_acked: sock_field(skaddr, l.bytes_acked)?,
        data_segs_in: sock_field(skaddr, l.data_segs_in)?,
        data_segs_out: sock_field(skaddr, l.data_segs_out)?,
        srtt_us_x8: sock_field(skaddr, l.srtt_us)?,
        present: 1,
    })
}

/// A tracked socket entering SYN_SENT is a client end, and the process calling
/// `connect()` (the current task: the change happens in the call) owns it: from now on
/// that process's reads and writes on it are captured.
#[inline(always)]
fn mark_client(skaddr: u64) {
    if skaddr == 0 {
        return;
    }
    let _ = TRACKED.insert(skaddr, TRACKED_CLIENT, 0);
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let _ = OWNERS.insert(tgid, 1, 0);
}

#[inline(always)]
fn is_tracked(skaddr: u64) -> bool {
    // SAFETY: the value is a plain u8 and only its presence is used.
    skaddr != 0 && unsafe { TRACKED.get(skaddr) }.is_some()
}

#[inline(always)]
fn try_record(ctx: &TracePointContext, kind: EventKind) -> Result<(), i32> {
    // SAFETY: as in `filter_u32`; `kind` is a constant below LAYOUT_SLOTS.
    let l: TpLayout = unsafe { core::ptr::read_volatile(&LAYOUTS.tp[kind as usize]) };
    if l.present == 0 {
        // Userspace found no format file for this tracepoint: record nothing.
        return Ok(());
    }
    let protocol: u16 = read(ctx, l.protocol)?;
    let mut tuple = Tuple::default();
    let skaddr: u64;
    if matches!(kind, EventKind::Drop) {
        if protocol != ETH_P_IP && protocol != ETH_P_IPV6 {
            return Ok(());
        }
        let reason: u32 = read(ctx, l.reason)?;
        let slot = if reason < DROP_REASON_SLOTS {
            reason
        } else {
            DROP_REASON_SLOTS - 1
        };
        if let Some(p) = DROP_REASONS.get_ptr_mut(slot) {
            // SAFETY: this CPU's slot of a per-CPU array; no migration mid-program.
            unsafe { *p += 1 };
        }
        skaddr = read(ctx, l.rx_sk)?;
        if !is_tracked(skaddr) && filter_u32(&FILTER.all_drops) == 0 {
            count(StatSlot::Filtered);
            return Ok(());
        }
    } else {
        if protocol != 0 && protocol != IPPROTO_TCP && l.protocol != FIELD_ABSENT {
            // inet_sock_set_state and inet_sk_error_report also fire for SCTP/MPTCP.
            return Ok(());
        }
        tuple = if l.sockaddr_src != FIELD_ABSENT {
            read_tuple_sockaddrs(ctx, &l)?
        } else {
            read_tuple_fields(ctx, &l)?
        };
        skaddr = read(ctx, l.skaddr)?;
        if matches!(kind, EventKind::DestroySock) {
            if is_tracked(skaddr) {
                // The socket's last event: forget it (the address will be reused).
                let _ = TRACKED.remove(skaddr);
            } else if !passes(&tuple) {
                count(StatSlot::Filtered);
                return Ok(());
            }
        } else if !is_tracked(skaddr) {
            if !passes(&tuple) {
                count(StatSlot::Filtered);
                return Ok(());
            }
            // Only a full socket is tracked: it ends in tcp_destroy_sock, which forgets
            // it. A reset sent may come from a time-wait or request socket, whose memory
            // is freed without that event: tracking it would let a later socket at the
            // same address pass whatever its ports.
            if skaddr != 0
                && !matches!(kind, EventKind::SendReset)
                && TRACKED.insert(skaddr, TRACKED_ANY, 0).is_err()
            {
                count(StatSlot::TrackFull);
            }
        }
    }
    let state: i32 = read(ctx, l.state)?;
    let new_state: i32 = read(ctx, l.new_state)?;
    if matches!(kind, EventKind::StateChange) && new_state == TCP_SYN_SENT {
        mark_client(skaddr);
    }
    let ev = Event {
        // SAFETY: BPF helpers without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        sock_cookie: read(ctx, l.sock_cookie)?,
        skaddr,
        skbaddr: read(ctx, l.skbaddr)?,
        location: read(ctx, l.location)?,
        kind: kind as u32,
        // SAFETY: as above.
        cpu: unsafe { bpf_get_smp_processor_id() },
        pid: (bpf_get_current_pid_tgid() >> 32) as u32,
        state,
        new_state,
        reason: read(ctx, l.reason)?,
        error: read(ctx, l.error)?,
        protocol,
        _pad: 0,
        tuple,
        tcp: tcp_counters(kind, skaddr, state)?,
    };
    match EVENTS.reserve::<Event>(0) {
        Some(mut entry) => {
            entry.write(ev);
            // Defer the reader's wakeup to its drain timer unless the ring is filling
            // (see RING_WAKEUP_BYTES): one irq_work per event was the main churn cost.
            let flags = if EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) >= RING_WAKEUP_BYTES {
                u64::from(BPF_RB_FORCE_WAKEUP)
            } else {
                u64::from(BPF_RB_NO_WAKEUP)
            };
            entry.submit(flags);
            count(StatSlot::Emitted);
        }
        None => count(StatSlot::ReserveFailed),
    }
    Ok(())
}
