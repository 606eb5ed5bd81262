//! The plaintext capture: the read and write system calls of processes that own a
//! tracked client socket. At a call's entry the descriptor is resolved to its socket
//! (`task->files->fdt->fd[fd]->private_data->sk`, offsets from BTF in [`FD_LAYOUT`]);
//! a call on a tracked client socket is remembered per thread, and at its exit, when it
//! moved bytes, a bounded prefix of them ([`DATA_CAP`]) goes to the ring buffer as one
//! [`DataRecord`] trimmed to what was captured.
//!
//! The cost for every other call on the host is one hash lookup (the caller's process is
//! not in [`OWNERS`]) at entry and one (no call remembered) at exit.
use analyzer_common::{
    BufKind, DATA_CAP, DATA_RECORD_KIND, DataDir, DataHeader, DataRecord, DataSource, FdLayout,
    RING_WAKEUP_BYTES, StatSlot, TRACKED_CLIENT,
};
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_user,
        generated,
    },
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::{CALLS, Call, EVENTS, OWNERS, SCRATCH, TRACKED, count};

/// Where a descriptor's socket is, on this kernel (from BTF); written by userspace before
/// loading.
#[unsafe(no_mangle)]
static FD_LAYOUT: FdLayout = FdLayout::ABSENT;

/// Offsets in a `syscalls:sys_enter_*` record: the first two arguments (every syscall
/// record lays its arguments out as 8-byte slots after the 8-byte common header and the
/// syscall number; userspace checks this kernel's format files say so before attaching).
const ARG0: usize = 16;
const ARG1: usize = 24;
/// Offset of `ret` in a `syscalls:sys_exit_*` record.
const RET: usize = 16;

macro_rules! enter {
    ($name:ident, $kind:expr, $dir:expr) => {
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            enter(&ctx, $kind, $dir)
        }
    };
}

macro_rules! exit {
    ($name:ident) => {
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            exit(&ctx)
        }
    };
}

enter!(sys_enter_write, BufKind::Plain, DataDir::Sent);
enter!(sys_enter_sendto, BufKind::Plain, DataDir::Sent);
enter!(sys_enter_writev, BufKind::Iovec, DataDir::Sent);
enter!(sys_enter_sendmsg, BufKind::Msghdr, DataDir::Sent);
enter!(sys_enter_read, BufKind::Plain, DataDir::Received);
enter!(sys_enter_recvfrom, BufKind::Plain, DataDir::Received);
enter!(sys_enter_readv, BufKind::Iovec, DataDir::Received);
enter!(sys_enter_recvmsg, BufKind::Msghdr, DataDir::Received);
exit!(sys_exit_write);
exit!(sys_exit_sendto);
exit!(sys_exit_writev);
exit!(sys_exit_sendmsg);
exit!(sys_exit_read);
exit!(sys_exit_recvfrom);
exit!(sys_exit_readv);
exit!(sys_exit_recvmsg);

#[inline(always)]
fn kread<T>(addr: u64) -> Result<T, i32> {
    // SAFETY: bpf_probe_read_kernel checks the address and fails rather than faults.
    unsafe { bpf_probe_read_kernel(addr as *const T) }
}

#[inline(always)]
fn uread<T>(addr: u64) -> Result<T, i32> {
    // SAFETY: bpf_probe_read_user checks the address and fails rather than faults.
    unsafe { bpf_probe_read_user(addr as *const T) }
}

/// The `struct sock` behind descriptor `fd` of the current task, or an error when a
/// pointer on the way is unreadable or the descriptor is out of range. Whatever the
/// file is, the result is only used when it is a tracked socket's address.
#[inline(always)]
fn fd_sock(l: &FdLayout, fd: u64) -> Result<u64, i32> {
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

#[inline(always)]
fn enter(ctx: &TracePointContext, buf: BufKind, dir: DataDir) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the value is a plain u8 and only its presence is used.
    if unsafe { OWNERS.get((pid_tgid >> 32) as u32) }.is_none() {
        return 0;
    }
    // SAFETY: a plain read of a static patched at load time (see `filter_u32`).
    let l: FdLayout = unsafe { core::ptr::read_volatile(&FD_LAYOUT) };
    if l.present == 0 {
        return 0;
    }
    // SAFETY: ARG0 and ARG1 are argument slots of every sys_enter record (checked by
    // userspace against the format files); the helper bounds-checks the read.
    let (Ok(fd), Ok(ptr)) = (unsafe { ctx.read_at::<u64>(ARG0) }, unsafe {
        ctx.read_at::<u64>(ARG1)
    }) else {
        return 0;
    };
    let Ok(skaddr) = fd_sock(&l, fd) else {
        return 0;
    };
    // SAFETY: as above.
    if skaddr == 0 || unsafe { TRACKED.get(skaddr) }.copied() != Some(TRACKED_CLIENT) {
        return 0;
    }
    let call = Call {
        skaddr,
        buf: ptr,
        fd: fd as u32,
        buf_kind: buf as u32,
        dir: dir as u32,
        _pad: 0,
    };
    let _ = CALLS.insert(pid_tgid, call, 0);
    0
}

/// The user address and length of the first buffer of a call.
#[inline(always)]
fn first_buffer(call: &Call) -> Result<(u64, u64), i32> {
    if call.buf_kind == BufKind::Plain as u32 {
        return Ok((call.buf, u64::MAX));
    }
    let iov = if call.buf_kind == BufKind::Msghdr as u32 {
        // struct user_msghdr: msg_name (8), msg_namelen (4, padded to 8), msg_iov.
        uread::<u64>(call.buf + 16)?
    } else {
        call.buf
    };
    // struct iovec: iov_base, iov_len.
    let base: u64 = uread(iov)?;
    let len: u64 = uread(iov + 8)?;
    Ok((base, len))
}

#[inline(always)]
fn exit(ctx: &TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: Call is Copy; the entry is read once and removed.
    let Some(call) = (unsafe { CALLS.get(pid_tgid) }).copied() else {
        return 0;
    };
    let _ = CALLS.remove(pid_tgid);
    // SAFETY: RET is the return value's slot of every sys_exit record.
    let Ok(ret) = (unsafe { ctx.read_at::<i64>(RET) }) else {
        return 0;
    };
    if ret <= 0 {
        return 0;
    }
    let Some(rec) = SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot of a per-CPU array, which no other program on this CPU
    // touches while this one runs (tracepoint programs do not nest on a CPU).
    let rec: &mut DataRecord = unsafe { &mut *rec };
    let total = ret as u64;
    let mut n = 0u64;
    if let Ok((ptr, len)) = first_buffer(&call) {
        n = if total < len { total } else { len };
        if n > DATA_CAP as u64 {
            n = DATA_CAP as u64;
        }
        // SAFETY: `n` is at most DATA_CAP, the size of `rec.data`; the helper checks the
        // user address and fails rather than faults.
        let r = unsafe {
            generated::bpf_probe_read_user(rec.data.as_mut_ptr().cast(), n as u32, ptr as *const _)
        };
        if r != 0 {
            n = 0;
            count(StatSlot::DataReadFailed);
        }
    } else {
        count(StatSlot::DataReadFailed);
    }
    rec.header = DataHeader {
        // SAFETY: a BPF helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid_tgid,
        skaddr: call.skaddr,
        total_len: total,
        fd: call.fd,
        _pad0: 0,
        kind: DATA_RECORD_KIND,
        dir: call.dir,
        source: DataSource::Syscall as u32,
        captured: n as u32,
        _pad1: [0; 2],
    };
    let size = core::mem::size_of::<DataHeader>() + n as usize;
    // SAFETY: `size` is at most the size of `*rec` (header plus DATA_CAP bytes).
    let bytes = unsafe { core::slice::from_raw_parts((rec as *const DataRecord).cast::<u8>(), size) };
    let flags = if EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) >= RING_WAKEUP_BYTES {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    };
    match EVENTS.output::<[u8]>(bytes, flags) {
        Ok(()) => count(StatSlot::DataEmitted),
        Err(_) => count(StatSlot::ReserveFailed),
    }
    0
}
