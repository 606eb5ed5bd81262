//! faultline's kernel programs: tracepoint handlers that record TCP evidence into a ring
//! buffer for the analyzer. One file per hook under `probes/`; shared maps live here.
//!
//! It depends on `analyzer-common` (the record layouts) and aya-ebpf only, never on a
//! std crate: it runs in the kernel's verifier, built for `bpfel-unknown-none`.
#![no_std]
#![no_main]

mod probes;

use analyzer_common::{
    CALLS_IN_FLIGHT, CAPTURE_OWNERS, DROP_REASON_SLOTS, DataRecord, STAT_SLOTS, StatSlot,
    TRACKED_SOCKETS,
};
use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
};

/// Every event goes through this ring buffer (16 MiB: ~140k events of 112 bytes plus
/// an 8-byte header each before the consumer must drain).
#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 24, 0);

/// Sockets (by kernel address) that passed the filter once: their later events pass
/// whatever their tuple then says (a failed connect clears the ports before the socket
/// is destroyed), and drops naming them as receiving socket pass too. Removed at
/// `tcp_destroy_sock`. The value is `TRACKED_ANY`, or `TRACKED_CLIENT` once the socket
/// went through SYN_SENT (only client ends' reads and writes are captured).
#[map(name = "TRACKED")]
static TRACKED: HashMap<u64, u8> = HashMap::with_max_entries(TRACKED_SOCKETS, 0);

/// Processes (thread-group ids) that connected a tracked socket: only their read and
/// write calls are looked at. Least recently used ones are forgotten first.
#[map(name = "OWNERS")]
static OWNERS: LruHashMap<u32, u8> = LruHashMap::with_max_entries(CAPTURE_OWNERS, 0);

/// A read or write call on a tracked client socket, between its entry and its exit.
#[repr(C)]
#[derive(Clone, Copy)]
struct Call {
    skaddr: u64,
    /// The buffer argument (a plain buffer, an iovec array or a msghdr).
    buf: u64,
    fd: u32,
    /// A `BufKind` value.
    buf_kind: u32,
    /// A `DataDir` value.
    dir: u32,
    _pad: u32,
}

/// Calls in flight, by `pid_tgid` (a thread is in one system call at a time).
#[map(name = "CALLS")]
static CALLS: HashMap<u64, Call> = HashMap::with_max_entries(CALLS_IN_FLIGHT, 0);

/// Per-CPU room to assemble one captured call before it is copied to the ring (a
/// record of 4 KiB does not fit on the 512-byte BPF stack).
#[map(name = "SCRATCH")]
static SCRATCH: PerCpuArray<DataRecord> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU histogram of host-wide IP packet drops by `skb_drop_reason` value.
#[map(name = "DROP_REASONS")]
static DROP_REASONS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_REASON_SLOTS, 0);

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
