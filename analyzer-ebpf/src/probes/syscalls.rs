//! The plaintext capture: the read and write system calls of processes that own a
//! tracked client socket. At a call's entry the descriptor is resolved to its socket
//! (`task->files->fdt->fd[fd]->private_data->sk`, offsets from BTF in `FD_LAYOUT`);
//! a call on a tracked client socket is remembered per thread, and at its exit, when it
//! moved bytes, a bounded prefix of them (`DATA_CAP`) goes to the ring buffer as one
//! `DataRecord` trimmed to what was captured (see `data::emit`).
//!
//! The cost for every other call on the host is one hash lookup (the caller's process is
//! not in [`OWNERS`]) at entry and one (no call remembered) at exit.
use analyzer_common::{BufKind, DataDir, DataSource, StatSlot, TRACKED_CLIENT};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};

use super::{
    data::{Emit, emit, fd_layout, fd_sock},
    tls::note_socket,
};
use crate::{CALLS, Call, OWNERS, TRACKED, count};

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
fn uread<T>(addr: u64) -> Result<T, i32> {
    // SAFETY: bpf_probe_read_user checks the address and fails rather than faults.
    unsafe { bpf_probe_read_user(addr as *const T) }
}

#[inline(always)]
fn enter(ctx: &TracePointContext, buf: BufKind, dir: DataDir) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the value is a plain u8 and only its presence is used.
    if unsafe { OWNERS.get((pid_tgid >> 32) as u32) }.is_none() {
        return 0;
    }
    let l = fd_layout();
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
    // Inside a TLS library call: this is its socket.
    note_socket(pid_tgid, skaddr);
    0
}

/// The buffers of a vectored call read (`iovec`s): a TLS library writes a record's
/// header and body, or an alert after its ChangeCipherSpec, as separate buffers of one
/// call. Past these, the call's remaining bytes go with the last one as uncaptured.
const MAX_IOVECS: usize = 4;

/// Where a call's `iovec` array is (`None`: a plain buffer).
#[inline(always)]
fn iovecs(call: &Call) -> Result<Option<u64>, i32> {
    if call.buf_kind == BufKind::Plain as u32 {
        return Ok(None);
    }
    if call.buf_kind == BufKind::Msghdr as u32 {
        // struct user_msghdr: msg_name (8), msg_namelen (4, padded to 8), msg_iov.
        return Ok(Some(uread::<u64>(call.buf + 16)?));
    }
    Ok(Some(call.buf))
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
    let e = Emit {
        pid_tgid,
        skaddr: call.skaddr,
        ptr: call.buf,
        total: ret as u64,
        limit: u64::MAX,
        dir: call.dir,
        source: DataSource::Syscall,
        fd: call.fd,
    };
    let iov = match iovecs(&call) {
        Ok(Some(iov)) => iov,
        Ok(None) => {
            emit(&e);
            return 0;
        }
        Err(_) => {
            count(StatSlot::DataReadFailed);
            return 0;
        }
    };
    // The call moved `ret` bytes through its buffers in order: one record per buffer,
    // so the reader sees them back to back; the array holds at least that many bytes,
    // so no entry past its end is read.
    let mut left = ret as u64;
    for i in 0..MAX_IOVECS {
        if left == 0 {
            break;
        }
        // struct iovec: iov_base, iov_len.
        let at = iov + (i as u64) * 16;
        let (Ok(base), Ok(len)) = (uread::<u64>(at), uread::<u64>(at + 8)) else {
            count(StatSlot::DataReadFailed);
            return 0;
        };
        let moved = if len < left { len } else { left };
        if moved == 0 {
            continue;
        }
        // The last buffer read carries what the call moved past it, uncaptured.
        let total = if i + 1 == MAX_IOVECS { left } else { moved };
        emit(&Emit {
            ptr: base,
            total,
            limit: len,
            ..e
        });
        left -= total;
    }
    0
}
