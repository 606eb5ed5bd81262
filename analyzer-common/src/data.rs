//! The plaintext capture's wire types: what a client process wrote to or read from one of
//! the tracked sockets, a bounded prefix of each call, recorded by the syscall
//! tracepoints (`write`, `read`, `sendto`, `recvfrom`, `writev`, `readv`, `sendmsg`,
//! `recvmsg` and their exits).
//!
//! A [`DataHeader`] shares the ring buffer with [`crate::Event`]s and is told apart by
//! its `kind` field, which sits where `Event::kind` sits and holds [`DATA_RECORD_KIND`],
//! a value no [`crate::EventKind`] has. The captured bytes follow the header; the record
//! is exactly `size_of::<DataHeader>() + captured` bytes long.

use core::mem::{offset_of, size_of};

/// How many bytes of one call are captured at most. Enough for an HTTP/1.1 request or
/// response head, a TLS ClientHello, and the frames of a typical HTTP/2 read.
pub const DATA_CAP: usize = 4096;

/// The `kind` value of a [`DataHeader`] (no [`crate::EventKind`] has it).
pub const DATA_RECORD_KIND: u32 = 0x100;

/// Which way the bytes went, from the calling process's side.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataDir {
    /// Written to the socket (`write`, `sendto`, `writev`, `sendmsg`).
    Sent = 0,
    /// Read from the socket (`read`, `recvfrom`, `readv`, `recvmsg`).
    Received = 1,
}

/// Where the plaintext was read.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// A read or write system call on the socket itself.
    Syscall = 0,
    /// OpenSSL's `SSL_write`/`SSL_read` (and `_ex`): TLS plaintext.
    OpenSsl = 1,
    /// Go's `crypto/tls.(*Conn).Write`/`Read`: TLS plaintext.
    GoTls = 2,
}

/// The fixed part of one captured call; `captured` bytes follow it in the record.
///
/// Layout invariant: 64 bytes, `kind` at the offset of [`crate::Event`]'s.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataHeader {
    /// `bpf_ktime_get_ns()` at the call's return.
    pub ts_ns: u64,
    /// `bpf_get_current_pid_tgid()`: thread-group id in the high half, thread id low.
    pub pid_tgid: u64,
    /// Kernel address of the `struct sock`, as the other events carry it.
    pub skaddr: u64,
    /// Bytes the call moved (its return value); more than `captured` when cut.
    pub total_len: u64,
    /// The call's file descriptor.
    pub fd: u32,
    pub _pad0: u32,
    /// [`DATA_RECORD_KIND`].
    pub kind: u32,
    /// A [`DataDir`] value.
    pub dir: u32,
    /// A [`DataSource`] value.
    pub source: u32,
    /// Bytes captured after the header (at most [`DATA_CAP`]).
    pub captured: u32,
    pub _pad1: [u32; 2],
}
const _: () = assert!(size_of::<DataHeader>() == 64);
const _: () = assert!(offset_of!(DataHeader, kind) == offset_of!(crate::Event, kind));

/// One captured call as the kernel writes it: the header and room for [`DATA_CAP`]
/// bytes (only `captured` of which are sent to the ring).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DataRecord {
    pub header: DataHeader,
    pub data: [u8; DATA_CAP],
}

impl core::fmt::Debug for DataRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DataRecord")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// Where the kernel finds a file descriptor's socket: the byte offsets, from this
/// kernel's BTF, of `task_struct.files`, `files_struct.fdt`, `fdtable.max_fds`,
/// `fdtable.fd`, `file.private_data` and `socket.sk`. `present` 0: no capture.
///
/// Layout invariant: 28 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLayout {
    pub present: u32,
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdt_max_fds: u32,
    pub fdt_fd: u32,
    pub file_private_data: u32,
    pub socket_sk: u32,
}
const _: () = assert!(size_of::<FdLayout>() == 28);

impl FdLayout {
    /// Nothing known: the syscall programs capture nothing.
    pub const ABSENT: Self = Self {
        present: 0,
        task_files: 0,
        files_fdt: 0,
        fdt_max_fds: 0,
        fdt_fd: 0,
        file_private_data: 0,
        socket_sk: 0,
    };
}

/// How a syscall passes its buffer (the first argument after the descriptor).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufKind {
    /// A plain buffer (`write`, `read`, `sendto`, `recvfrom`).
    Plain = 0,
    /// An array of `struct iovec` (`writev`, `readv`): the first one is captured.
    Iovec = 1,
    /// A `struct user_msghdr` (`sendmsg`, `recvmsg`): its first iovec is captured.
    Msghdr = 2,
}

/// Where a Go program keeps a TLS connection's descriptor: byte offsets from the
/// `*crypto/tls.Conn` receiver, through its `net.Conn` interface's data word (a
/// `*net.TCPConn`), to `net.netFD.pfd.Sysfd`. `present` 0: Go probes capture nothing.
///
/// Layout invariant: 20 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoConnLayout {
    pub present: u32,
    /// `Conn.conn` in `crypto/tls.Conn`, plus the interface's data-word offset.
    pub tls_conn_data: u32,
    /// `conn.fd` in `net.TCPConn`.
    pub tcp_conn_fd: u32,
    /// `pfd.Sysfd` in `net.netFD`.
    pub net_fd_sysfd: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<GoConnLayout>() == 20);

impl GoConnLayout {
    /// Nothing known.
    pub const ABSENT: Self = Self {
        present: 0,
        tls_conn_data: 0,
        tcp_conn_fd: 0,
        net_fd_sysfd: 0,
        _pad: 0,
    };
}

/// Name of the global holding the [`GoConnLayout`].
pub const GO_CONN_GLOBAL: &str = "GO_CONN";

/// Capacity of the maps of TLS library calls in flight (by thread for OpenSSL, by
/// goroutine for Go) and of the TLS objects whose socket is known.
pub const TLS_CALLS_IN_FLIGHT: u32 = 1 << 14;

/// The `kind` value of an [`ExecRecord`] (no [`crate::EventKind`] has it).
pub const EXEC_RECORD_KIND: u32 = 0x101;
/// Bytes of an executed file's path kept in an [`ExecRecord`].
pub const EXEC_PATH_CAP: usize = 256;

/// A program was executed (`sched:sched_process_exec`): the analyzer checks whether it
/// is a Go binary with crypto/tls and probes it.
///
/// Layout invariant: 48 bytes then the path; `kind` at the offset of
/// [`crate::Event`]'s.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecRecord {
    pub ts_ns: u64,
    pub pid: u32,
    pub _pad0: u32,
    pub _pad1: [u64; 3],
    /// [`EXEC_RECORD_KIND`].
    pub kind: u32,
    /// Bytes of `path` used (without the NUL).
    pub len: u32,
    pub path: [u8; EXEC_PATH_CAP],
}
const _: () = assert!(offset_of!(ExecRecord, kind) == offset_of!(crate::Event, kind));
const _: () = assert!(size_of::<ExecRecord>() == 48 + EXEC_PATH_CAP);

impl core::fmt::Debug for ExecRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ExecRecord")
            .field("pid", &self.pid)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Where `sched:sched_process_exec` keeps the executed file's `__data_loc` word, from
/// its tracefs format file; `present` 0: the program records nothing.
///
/// Layout invariant: 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecLayout {
    pub present: u32,
    pub filename_loc: u32,
}

/// Name of the global holding the [`ExecLayout`].
pub const EXEC_LAYOUT_GLOBAL: &str = "EXEC_LAYOUT";

/// Name of the global holding the [`FdLayout`].
pub const FD_LAYOUT_GLOBAL: &str = "FD_LAYOUT";

/// `TRACKED` map values: a socket that passed the filter, and one known to be a client
/// end (it went through SYN_SENT while tracked). Only client ends are captured.
pub const TRACKED_ANY: u8 = 1;
/// See [`TRACKED_ANY`].
pub const TRACKED_CLIENT: u8 = 2;

/// Capacity of the map of threads inside a captured call (between enter and exit).
pub const CALLS_IN_FLIGHT: u32 = 1 << 14;
/// Capacity of the map of processes that own a tracked client socket.
pub const CAPTURE_OWNERS: u32 = 1 << 12;
