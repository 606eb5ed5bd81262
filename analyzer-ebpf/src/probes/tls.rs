//! TLS plaintext from the libraries that encrypt it: OpenSSL's `SSL_write`/`SSL_read`
//! (and `_ex`) by uprobe and uretprobe, and Go's `crypto/tls.(*Conn).Write`/`Read` by
//! uprobes at the entry and at every return instruction (Go moves goroutine stacks, which
//! a uretprobe's rewritten return address does not survive).
//!
//! Which socket a call is for:
//! - OpenSSL: the read or write system call it makes on its socket, on the same thread
//!   between entry and return (the syscall program calls [`note_socket`]); remembered per
//!   `SSL *` for calls served from OpenSSL's buffer without a system call.
//! - Go: from the receiver, `Conn.conn` → `*net.TCPConn` → `netFD.pfd.Sysfd` (offsets in
//!   [`GO_CONN`]), then the descriptor's socket as the syscall programs find it. Calls are
//!   keyed by goroutine (`R14` holds `g` in Go's register ABI), which may change threads
//!   between entry and return.
//!
//! Only processes that connected a tracked socket ([`OWNERS`]) and tracked client sockets
//! are captured, as for the syscall programs.
use analyzer_common::{DataDir, DataSource, GoConnLayout, TLS_CALLS_IN_FLIGHT, TRACKED_CLIENT};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{map, uprobe, uretprobe},
    maps::{HashMap, LruHashMap},
    programs::{ProbeContext, RetProbeContext},
};

use super::data::{Emit, emit, fd_layout, fd_sock};
use crate::{OWNERS, TRACKED};

/// Where a Go program keeps a TLS connection's descriptor; written by userspace before
/// loading.
#[unsafe(no_mangle)]
static GO_CONN: GoConnLayout = GoConnLayout::ABSENT;

/// A TLS library call between its entry and its return.
#[repr(C)]
#[derive(Clone, Copy)]
struct TlsCall {
    /// The socket, once known (0 until then).
    skaddr: u64,
    /// The library's connection object (`SSL *`, `*tls.Conn`).
    conn: u64,
    buf: u64,
    /// The buffer's length.
    len: u64,
    /// `SSL_*_ex`: where the library writes the byte count (0 otherwise).
    count_ptr: u64,
    /// A `DataDir` value.
    dir: u32,
    _pad: u32,
}

/// OpenSSL calls in flight, by `pid_tgid`.
#[map(name = "SSL_CALLS")]
static SSL_CALLS: HashMap<u64, TlsCall> = HashMap::with_max_entries(TLS_CALLS_IN_FLIGHT, 0);

/// The socket of each `SSL *` seen with one, by `(tgid, SSL *)`.
#[map(name = "SSL_SOCKS")]
static SSL_SOCKS: LruHashMap<[u64; 2], u64> = LruHashMap::with_max_entries(TLS_CALLS_IN_FLIGHT, 0);

/// Go calls in flight, by `(tgid, g)`.
#[map(name = "GO_CALLS")]
static GO_CALLS: HashMap<[u64; 2], TlsCall> = HashMap::with_max_entries(TLS_CALLS_IN_FLIGHT, 0);

#[inline(always)]
fn owner(pid_tgid: u64) -> bool {
    // SAFETY: the value is a plain u8 and only its presence is used.
    unsafe { OWNERS.get((pid_tgid >> 32) as u32) }.is_some()
}

#[inline(always)]
fn tracked_client(skaddr: u64) -> bool {
    // SAFETY: as above.
    skaddr != 0 && unsafe { TRACKED.get(skaddr) }.copied() == Some(TRACKED_CLIENT)
}

/// Called by the syscall programs for a call on a tracked client socket: if the thread
/// is inside an OpenSSL call, that call is for this socket.
#[inline(always)]
pub fn note_socket(pid_tgid: u64, skaddr: u64) {
    if let Some(c) = SSL_CALLS.get_ptr_mut(pid_tgid) {
        // SAFETY: a pointer into the map's value for this thread, which only this thread
        // writes (a thread runs one program at a time).
        unsafe { (*c).skaddr = skaddr };
    }
}

#[inline(always)]
fn ssl_enter(ctx: &ProbeContext, dir: DataDir, ex: bool) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !owner(pid_tgid) {
        return 0;
    }
    let (Some(ssl), Some(buf), Some(len)) =
        (ctx.arg::<u64>(0), ctx.arg::<u64>(1), ctx.arg::<u64>(2))
    else {
        return 0;
    };
    let count_ptr = if ex {
        ctx.arg::<u64>(3).unwrap_or(0)
    } else {
        0
    };
    let call = TlsCall {
        skaddr: 0,
        conn: ssl,
        buf,
        len: if ex { len } else { len & 0xffff_ffff },
        count_ptr,
        dir: dir as u32,
        _pad: 0,
    };
    let _ = SSL_CALLS.insert(pid_tgid, call, 0);
    0
}

#[uprobe]
pub fn ssl_write(ctx: ProbeContext) -> u32 {
    ssl_enter(&ctx, DataDir::Sent, false)
}

#[uprobe]
pub fn ssl_read(ctx: ProbeContext) -> u32 {
    ssl_enter(&ctx, DataDir::Received, false)
}

#[uprobe]
pub fn ssl_write_ex(ctx: ProbeContext) -> u32 {
    ssl_enter(&ctx, DataDir::Sent, true)
}

#[uprobe]
pub fn ssl_read_ex(ctx: ProbeContext) -> u32 {
    ssl_enter(&ctx, DataDir::Received, true)
}

/// The return of any of the four: how many bytes moved, and whose socket.
#[uretprobe]
pub fn ssl_return(ctx: RetProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: TlsCall is Copy; the entry is read once and removed.
    let Some(call) = (unsafe { SSL_CALLS.get(pid_tgid) }).copied() else {
        return 0;
    };
    let _ = SSL_CALLS.remove(pid_tgid);
    let ret: i64 = i64::from(ctx.ret::<i32>());
    let n = if call.count_ptr != 0 {
        if ret != 1 {
            return 0;
        }
        // SAFETY: the helper checks the user address and fails rather than faults.
        match unsafe { bpf_probe_read_user(call.count_ptr as *const u64) } {
            Ok(n) => n,
            Err(_) => return 0,
        }
    } else if ret > 0 {
        ret as u64
    } else if ret == 0 && call.dir == DataDir::Received as u32 {
        // SSL_read returned 0: the TLS stream ended (the server's close_notify, or its
        // FIN), sent on as a read of no bytes. (SSL_read_ex's 0 is any failure, a
        // non-blocking WANT_READ too: it says nothing.)
        0
    } else {
        return 0;
    };
    let key = [pid_tgid >> 32, call.conn];
    let skaddr = if call.skaddr != 0 {
        let _ = SSL_SOCKS.insert(key, call.skaddr, 0);
        call.skaddr
    } else {
        // SAFETY: a plain u64 value.
        unsafe { SSL_SOCKS.get(key) }.copied().unwrap_or(0)
    };
    if (n == 0 && call.count_ptr != 0) || !tracked_client(skaddr) {
        return 0;
    }
    emit(&Emit {
        pid_tgid,
        skaddr,
        ptr: call.buf,
        total: n,
        limit: call.len,
        dir: call.dir,
        source: DataSource::OpenSsl,
        fd: 0,
    });
    0
}

#[inline(always)]
fn uread<T>(addr: u64) -> Result<T, i32> {
    // SAFETY: the helper checks the user address and fails rather than faults.
    unsafe { bpf_probe_read_user(addr as *const T) }
}

/// The socket of the `*tls.Conn` at `conn`, through the layout userspace wrote.
#[inline(always)]
fn go_conn_sock(conn: u64) -> Result<u64, i32> {
    // SAFETY: a plain read of a static patched at load time (see `filter_u32`).
    let g: GoConnLayout = unsafe { core::ptr::read_volatile(&GO_CONN) };
    let l = fd_layout();
    if g.present == 0 || l.present == 0 {
        return Err(-1);
    }
    let tcp_conn: u64 = uread(conn + u64::from(g.tls_conn_data))?;
    let net_fd: u64 = uread(tcp_conn + u64::from(g.tcp_conn_fd))?;
    let sysfd: i64 = uread(net_fd + u64::from(g.net_fd_sysfd))?;
    if sysfd < 0 {
        return Err(-1);
    }
    fd_sock(&l, sysfd as u64)
}

#[inline(always)]
fn go_enter(ctx: &ProbeContext, dir: DataDir) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !owner(pid_tgid) {
        return 0;
    }
    // SAFETY: the probe context's registers, as the kernel saved them at the probe.
    let r = unsafe { &*ctx.regs };
    // Go's register ABI: the receiver in RAX, the slice's pointer and length in RBX and
    // RCX; the goroutine in R14.
    let (conn, buf, len, g) = (r.rax, r.rbx, r.rcx, r.r14);
    let Ok(skaddr) = go_conn_sock(conn) else {
        return 0;
    };
    if !tracked_client(skaddr) {
        return 0;
    }
    let call = TlsCall {
        skaddr,
        conn,
        buf,
        len,
        count_ptr: 0,
        dir: dir as u32,
        _pad: 0,
    };
    let _ = GO_CALLS.insert([pid_tgid >> 32, g], call, 0);
    0
}

#[uprobe]
pub fn go_tls_write(ctx: ProbeContext) -> u32 {
    go_enter(&ctx, DataDir::Sent)
}

#[uprobe]
pub fn go_tls_read(ctx: ProbeContext) -> u32 {
    go_enter(&ctx, DataDir::Received)
}

/// At a return instruction of either: RAX holds the byte count.
#[uprobe]
pub fn go_tls_return(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: as in `go_enter`.
    let r = unsafe { &*ctx.regs };
    let key = [pid_tgid >> 32, r.r14];
    // SAFETY: TlsCall is Copy; the entry is read once and removed.
    let Some(call) = (unsafe { GO_CALLS.get(key) }).copied() else {
        return 0;
    };
    let _ = GO_CALLS.remove(key);
    let n = r.rax as i64;
    if n <= 0 || !tracked_client(call.skaddr) {
        return 0;
    }
    emit(&Emit {
        pid_tgid,
        skaddr: call.skaddr,
        ptr: call.buf,
        total: n as u64,
        limit: call.len,
        dir: call.dir,
        source: DataSource::GoTls,
        fd: 0,
    });
    0
}
