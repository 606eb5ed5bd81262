//! `tcp:tcp_receive_reset`: this host received an RST on one of its sockets (the peer,
//! or something on the path, reset the connection; or our SYN was answered by an RST).
use analyzer_common::{
    AF_INET, EventInfo, EventKind, FIELD_ABSENT, ReceiveResetOffsets, ResetEvent, StatSlot, Tuple,
};
use aya_ebpf::{
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::{EVENTS, count};

/// Field offsets of this kernel's `tcp_receive_reset` record, written by userspace from
/// the tracefs `format` file before the program is loaded.
#[unsafe(no_mangle)]
static RECEIVE_RESET_OFFSETS: ReceiveResetOffsets = ReceiveResetOffsets::ABSENT;

#[tracepoint]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    match try_tcp_receive_reset(&ctx) {
        Ok(()) => 0,
        Err(_) => {
            count(StatSlot::ReadFailed);
            0
        }
    }
}

#[inline(always)]
fn read<T: Default>(ctx: &TracePointContext, off: u32) -> Result<T, i32> {
    if off == FIELD_ABSENT {
        return Ok(T::default());
    }
    // SAFETY: `off` comes from the tracefs format file of this very tracepoint, so it
    // addresses a field of type T inside the record; the helper bounds-checks the read.
    unsafe { ctx.read_at::<T>(off as usize) }
}

fn try_tcp_receive_reset(ctx: &TracePointContext) -> Result<(), i32> {
    // Volatile: the global lives in .rodata and is patched at load time; without it the
    // compiler would fold the compile-time ABSENT values into the code.
    // SAFETY: a plain read of a static of a Copy type.
    let off: ReceiveResetOffsets = unsafe { core::ptr::read_volatile(&RECEIVE_RESET_OFFSETS) };
    if off.sock_cookie == FIELD_ABSENT && off.skaddr == FIELD_ABSENT {
        // Not configured: userspace did not find the format file. Record nothing.
        return Ok(());
    }
    let family: u16 = read(ctx, off.family)?;
    let mut tuple = Tuple {
        sport: read(ctx, off.sport)?,
        dport: read(ctx, off.dport)?,
        family,
        ..Tuple::default()
    };
    if family == AF_INET {
        let s: [u8; 4] = read(ctx, off.saddr)?;
        let d: [u8; 4] = read(ctx, off.daddr)?;
        tuple.saddr[..4].copy_from_slice(&s);
        tuple.daddr[..4].copy_from_slice(&d);
    } else {
        tuple.saddr = read(ctx, off.saddr_v6)?;
        tuple.daddr = read(ctx, off.daddr_v6)?;
    }
    let info = EventInfo {
        // SAFETY: BPF helpers without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        sock_cookie: read(ctx, off.sock_cookie)?,
        skaddr: read(ctx, off.skaddr)?,
        kind: EventKind::ReceiveReset as u32,
        // SAFETY: as above.
        cpu: unsafe { bpf_get_smp_processor_id() },
    };
    match EVENTS.reserve::<ResetEvent>(0) {
        Some(mut entry) => {
            entry.write(ResetEvent { info, tuple });
            entry.submit(0);
            count(StatSlot::Emitted);
        }
        None => count(StatSlot::ReserveFailed),
    }
    Ok(())
}
