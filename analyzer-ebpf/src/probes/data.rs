//! Writing one captured buffer to the ring: the plaintext capture's one way out, for the
//! syscall programs and the TLS library probes alike.
use analyzer_common::{
    DATA_CAP, DATA_RECORD_KIND, DataHeader, DataRecord, DataSource, FdLayout, RING_WAKEUP_BYTES,
    StatSlot,
};
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel, generated},
};

use crate::{EVENTS, SCRATCH, count};

/// Where a descriptor's socket is, on this kernel (from BTF); written by userspace before
/// loading.
#[unsafe(no_mangle)]
static FD_LAYOUT: FdLayout = FdLayout::ABSENT;

/// What to capture: `total` bytes moved at `ptr` (of which at most `limit` are readable
/// there), on socket `skaddr`.
#[derive(Clone, Copy)]
pub struct Emit {
    pub pid_tgid: u64,
    pub skaddr: u64,
    pub ptr: u64,
    pub total: u64,
    pub limit: u64,
    pub dir: u32,
    pub source: DataSource,
    pub fd: u32,
}

#[inline(always)]
fn kread<T>(addr: u64) -> Result<T, i32> {
    // SAFETY: bpf_probe_read_kernel checks the address and fails rather than faults.
    unsafe { bpf_probe_read_kernel(addr as *const T) }
}

/// The layout of the path from a task to a descriptor's socket (present 0: none).
#[inline(always)]
pub fn fd_layout() -> FdLayout {
    // SAFETY: a plain read of a static patched at load time (see `filter_u32`).
    unsafe { core::ptr::read_volatile(&FD_LAYOUT) }
}

/// The `struct sock` behind descriptor `fd` of the current task, or an error when a
/// pointer on the way is unreadable or the descriptor is out of range. Whatever the
/// file is, the result is only used when it is a tracked socket's address.
#[inline(always)]
pub fn fd_sock(l: &FdLayout, fd: u64) -> Result<u64, i32> {
    // SAFETY: a BPF helper without preconditions.
    let task = unsafe { generated::bpf_get_current_task() };
    let files: u64 = kread(task + u64::from(l.task_files))?;
    let fdt: u64 = kread(files + u64::from(l.files_fdt))?;
    let max_fds: u32 = kread(fdt + u64::from(l.fdt_max_fds))?;
    if fd >= u64::from(max_fds) {
        return Err(-1);
    }
    let fds: u64 = kread(fdt + u64::from(l.fdt_fd))?;
    let file: u64 = kread(fds + fd * 8)?;
    if file == 0 {
        return Err(-1);
    }
    let socket: u64 = kread(file + u64::from(l.file_private_data))?;
    if socket == 0 {
        return Err(-1);
    }
    kread(socket + u64::from(l.socket_sk))
}

/// Copies the first bytes of `e` into this CPU's scratch record and from there to the
/// ring, trimmed to what was captured. A buffer that cannot be read is sent with no
/// bytes (its length still tells the reader how much it missed).
#[inline(always)]
pub fn emit(e: &Emit) {
    let Some(rec) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot of a per-CPU array, which no other program on this CPU
    // touches while this one runs (these programs do not nest on a CPU).
    let rec: &mut DataRecord = unsafe { &mut *rec };
    let mut n = if e.total < e.limit { e.total } else { e.limit };
    if n > DATA_CAP as u64 {
        n = DATA_CAP as u64;
    }
    // SAFETY: `n` is at most DATA_CAP, the size of `rec.data`; the helper checks the
    // user address and fails rather than faults.
    let r = unsafe {
        generated::bpf_probe_read_user(rec.data.as_mut_ptr().cast(), n as u32, e.ptr as *const _)
    };
    if r != 0 {
        n = 0;
        count(StatSlot::DataReadFailed);
    }
    rec.header = DataHeader {
        // SAFETY: a BPF helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid_tgid: e.pid_tgid,
        skaddr: e.skaddr,
        total_len: e.total,
        fd: e.fd,
        _pad0: 0,
        kind: DATA_RECORD_KIND,
        dir: e.dir,
        source: e.source as u32,
        captured: n as u32,
        _pad1: [0; 2],
    };
    let size = core::mem::size_of::<DataHeader>() + n as usize;
    // SAFETY: `size` is at most the size of `*rec` (header plus DATA_CAP bytes).
    let bytes =
        unsafe { core::slice::from_raw_parts((rec as *const DataRecord).cast::<u8>(), size) };
    let flags = if EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) >= RING_WAKEUP_BYTES {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    };
    match EVENTS.output::<[u8]>(bytes, flags) {
        Ok(()) => count(StatSlot::DataEmitted),
        Err(_) => count(StatSlot::ReserveFailed),
    }
}
