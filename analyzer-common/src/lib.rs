//! Wire types shared by the kernel programs (`analyzer-ebpf`) and the analyzer.
//!
//! Everything here crosses the kernel/user boundary through ring buffers or globals, so
//! every struct is `#[repr(C)]`, `Copy`, built from fixed-width integers only (no `bool`,
//! `usize` or data-carrying enums), with explicit padding and a compile-time size check.
//! Kinds are `#[repr(u32)]` enums decoded with `TryFrom<u32>`, never `transmute`.
#![no_std]

use core::mem::size_of;

/// Address family values as the kernel reports them (`AF_INET`, `AF_INET6`).
pub const AF_INET: u16 = 2;
/// See [`AF_INET`].
pub const AF_INET6: u16 = 10;

/// What an event record describes. The value is the first field of every record.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "user", serde(rename_all = "snake_case"))]
pub enum EventKind {
    /// `tcp:tcp_receive_reset`: this host received an RST on a socket.
    ReceiveReset = 1,
}

impl TryFrom<u32> for EventKind {
    type Error = u32;
    fn try_from(v: u32) -> Result<Self, u32> {
        match v {
            1 => Ok(Self::ReceiveReset),
            other => Err(other),
        }
    }
}

/// The envelope every kernel event starts with.
///
/// Layout invariant: 32 bytes, 8-byte aligned, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventInfo {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// The socket cookie (`SO_COOKIE`): the join key with loadgen's records.
    pub sock_cookie: u64,
    /// The kernel address of the `struct sock`; distinguishes sockets before a cookie is known.
    pub skaddr: u64,
    /// An [`EventKind`] value.
    pub kind: u32,
    /// The CPU the event was recorded on.
    pub cpu: u32,
}
const _: () = assert!(size_of::<EventInfo>() == 32);

/// A TCP 4-tuple as the kernel saw it at the tracepoint: `s*` is the local side of the
/// socket, `d*` the remote. IPv4 addresses sit in the first four bytes of the arrays.
///
/// Layout invariant: 40 bytes, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tuple {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// Host byte order (the tracepoints store `ntohs(inet_sport)`).
    pub sport: u16,
    pub dport: u16,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    pub _pad: u16,
}
const _: () = assert!(size_of::<Tuple>() == 40);

/// `tcp:tcp_receive_reset`: an RST arrived on one of this host's sockets.
///
/// Layout invariant: 72 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResetEvent {
    pub info: EventInfo,
    pub tuple: Tuple,
}
const _: () = assert!(size_of::<ResetEvent>() == 72);

/// Where the fields of `tcp:tcp_receive_reset` sit in the tracepoint record on the
/// running kernel. Userspace fills it from
/// `/sys/kernel/tracing/events/tcp/tcp_receive_reset/format` and hands it to the program
/// as a global; offsets differ between kernel versions and are never hard-coded.
///
/// Every field is a byte offset into the raw tracepoint record; [`FIELD_ABSENT`] marks a
/// field this kernel's record does not have.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiveResetOffsets {
    pub skaddr: u32,
    pub sport: u32,
    pub dport: u32,
    pub family: u32,
    pub saddr: u32,
    pub daddr: u32,
    pub saddr_v6: u32,
    pub daddr_v6: u32,
    pub sock_cookie: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<ReceiveResetOffsets>() == 40);

/// Marks a tracepoint field that the running kernel does not provide.
pub const FIELD_ABSENT: u32 = u32::MAX;

impl ReceiveResetOffsets {
    /// All fields absent: the program records nothing until userspace fills it in.
    pub const ABSENT: Self = Self {
        skaddr: FIELD_ABSENT,
        sport: FIELD_ABSENT,
        dport: FIELD_ABSENT,
        family: FIELD_ABSENT,
        saddr: FIELD_ABSENT,
        daddr: FIELD_ABSENT,
        saddr_v6: FIELD_ABSENT,
        daddr_v6: FIELD_ABSENT,
        sock_cookie: FIELD_ABSENT,
        _pad: 0,
    };
}

/// Counter slots of the per-CPU `STATS` array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatSlot {
    /// Events written to the ring buffer.
    Emitted = 0,
    /// `bpf_ringbuf_reserve` failed: the event was lost. Reported, never hidden.
    ReserveFailed = 1,
    /// A field read from the tracepoint record failed.
    ReadFailed = 2,
}
/// Number of [`StatSlot`]s.
pub const STAT_SLOTS: u32 = 3;

/// Name of the ring buffer map in the object file.
pub const EVENTS_MAP: &str = "EVENTS";
/// Name of the per-CPU statistics array in the object file.
pub const STATS_MAP: &str = "STATS";
/// Name of the global holding [`ReceiveResetOffsets`].
pub const RECEIVE_RESET_OFFSETS_GLOBAL: &str = "RECEIVE_RESET_OFFSETS";
/// Name of the `tcp:tcp_receive_reset` program in the object file.
pub const PROG_RECEIVE_RESET: &str = "tcp_receive_reset";

#[cfg(feature = "user")]
mod user {
    // SAFETY: each type is #[repr(C)], Copy, built only from integers and integer
    // arrays, with explicit padding fields and no implicit padding (see the size asserts),
    // so every bit pattern is a valid value.
    unsafe impl aya::Pod for super::EventInfo {}
    unsafe impl aya::Pod for super::Tuple {}
    unsafe impl aya::Pod for super::ResetEvent {}
    unsafe impl aya::Pod for super::ReceiveResetOffsets {}
}
