//! faultline's kernel programs: tracepoint handlers that record TCP evidence into a ring
//! buffer for the analyzer. One file per hook under `probes/`; shared maps live here.
#![no_std]
#![no_main]

mod probes;

use analyzer_common::{STAT_SLOTS, StatSlot};
use aya_ebpf::{
    macros::map,
    maps::{PerCpuArray, RingBuf},
};

/// Every event goes through this ring buffer (4 MiB: ~58k reset events of 72 bytes
/// before the consumer must drain).
#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Per-CPU counters indexed by [`StatSlot`]: emitted events, reserve failures, read
/// failures. Lost evidence is counted, never silent.
#[map(name = "STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_SLOTS, 0);

#[inline(always)]
fn count(slot: StatSlot) {
    if let Some(p) = STATS.get_ptr_mut(slot as u32) {
        // SAFETY: the pointer is this CPU's slot of a per-CPU array; programs do not
        // migrate CPUs mid-run, so the plain increment cannot race.
        unsafe { *p += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
