//! Wire types shared by the kernel programs (`analyzer-ebpf`) and the analyzer.
//!
//! Everything here crosses the kernel/user boundary through ring buffers or globals, so
//! every struct is `#[repr(C)]`, `Copy`, built from fixed-width integers only (no `bool`,
//! `usize` or data-carrying enums), with explicit padding and a compile-time size check.
//! Kinds are `#[repr(u32)]` enums decoded with `TryFrom<u32>`, never `transmute`.
//!
//! One record type, [`Event`], serves every tracepoint: each program fills the fields its
//! tracepoint has and leaves the rest zero. One layout type, [`TpLayout`], says where each
//! field sits in a tracepoint's raw record on the running kernel (read from tracefs at
//! load time), so one generic reader in the kernel serves all programs.
//!
//! It must never depend on std or on another faultline crate: the kernel programs link
//! it, and only aya (under the `user` feature) and serde may be added on the user side.
#![no_std]

use core::mem::size_of;

mod data;

pub use data::*;

/// Address family values as the kernel reports them (`AF_INET`, `AF_INET6`).
pub const AF_INET: u16 = 2;
/// `TCP_ESTABLISHED`: the one TCP state value the kernel programs compare with. The TCP
/// states are user-space ABI (`tcpi_state` of `TCP_INFO`, `<netinet/tcp.h>`), numbered
/// so since Linux 2.0; userspace still names every state from BTF.
pub const TCP_ESTABLISHED: i32 = 1;
/// See [`AF_INET`].
pub const AF_INET6: u16 = 10;
/// `IPPROTO_TCP`, as `sock:inet_sock_set_state` and `sock:inet_sk_error_report` report it.
pub const IPPROTO_TCP: u16 = 6;
/// `ETH_P_IP` / `ETH_P_IPV6`: the `protocol` field of `skb:kfree_skb` (host byte order).
pub const ETH_P_IP: u16 = 0x0800;
/// See [`ETH_P_IP`].
pub const ETH_P_IPV6: u16 = 0x86dd;

/// Which tracepoint an [`Event`] comes from. The value indexes [`Layouts::tp`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "user", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "user", serde(rename_all = "snake_case"))]
pub enum EventKind {
    /// `tcp:tcp_receive_reset`: this host received an RST on a socket.
    ReceiveReset = 1,
    /// `tcp:tcp_send_reset`: this host sent an RST (state and the kernel's reason).
    SendReset = 2,
    /// `sock:inet_sock_set_state`: a TCP socket changed state.
    StateChange = 3,
    /// `tcp:tcp_retransmit_skb`: a segment (SYN included) was retransmitted.
    Retransmit = 4,
    /// `tcp:tcp_destroy_sock`: the socket is gone (carries the cookie).
    DestroySock = 5,
    /// `sock:inet_sk_error_report`: an error was delivered to a socket (errno).
    ErrorReport = 6,
    /// `skb:kfree_skb`: a packet was dropped, with the kernel's drop reason.
    Drop = 7,
}

impl EventKind {
    /// Every kind, in value order.
    pub const ALL: [Self; 7] = [
        Self::ReceiveReset,
        Self::SendReset,
        Self::StateChange,
        Self::Retransmit,
        Self::DestroySock,
        Self::ErrorReport,
        Self::Drop,
    ];
}

impl TryFrom<u32> for EventKind {
    type Error = u32;
    fn try_from(v: u32) -> Result<Self, u32> {
        Self::ALL.iter().copied().find(|k| *k as u32 == v).ok_or(v)
    }
}

/// A TCP 4-tuple as the kernel saw it at the tracepoint: `s*` is the local side of the
/// socket, `d*` the remote. IPv4 addresses sit in the first four bytes of the arrays.
///
/// Layout invariant: 40 bytes, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tuple {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// Host byte order.
    pub sport: u16,
    pub dport: u16,
    /// [`AF_INET`], [`AF_INET6`], or 0 when the tracepoint has no addresses.
    pub family: u16,
    pub _pad: u16,
}
const _: () = assert!(size_of::<Tuple>() == 40);

/// One kernel event, whatever the tracepoint. Fields a tracepoint lacks stay zero.
///
/// Layout invariant: 144 bytes, 8-byte aligned, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// The socket cookie (`SO_COOKIE`) where the tracepoint carries it
    /// (`tcp_receive_reset`, `tcp_destroy_sock`); userspace learns it per `skaddr`.
    pub sock_cookie: u64,
    /// Kernel address of the `struct sock` (for drops: `rx_sk`). Stable for a socket's life.
    pub skaddr: u64,
    /// Kernel address of the `struct sk_buff` involved, if any.
    pub skbaddr: u64,
    /// For drops: the kernel code address that dropped the packet.
    pub location: u64,
    /// An [`EventKind`] value.
    pub kind: u32,
    /// The CPU the event was recorded on.
    pub cpu: u32,
    /// Thread-group id of the current task: the owning process in process context
    /// (`connect()`, `close()`), an unrelated one in softirq context.
    pub pid: u32,
    /// TCP state (`tcp_send_reset`, `tcp_retransmit_skb`), or the old state of a change.
    pub state: i32,
    /// The new state of a state change.
    pub new_state: i32,
    /// `sk_rst_reason` (resets sent) or `skb_drop_reason` (drops), numbered as this kernel
    /// numbers them; userspace names them from the tracepoint's print format.
    pub reason: u32,
    /// errno delivered to the socket (`inet_sk_error_report`, positive), or the
    /// retransmit's `err`.
    pub error: i32,
    /// IP protocol (state change, error report) or ethertype (drops).
    pub protocol: u16,
    pub _pad: u16,
    pub tuple: Tuple,
    /// The socket's TCP counters at this event (state changes, resets received,
    /// destroy); all zero where not read.
    pub tcp: TcpCounters,
}
const _: () = assert!(size_of::<Event>() == 144);

/// A socket's cumulative TCP counters, read from its `struct tcp_sock` (the RFC 4898
/// ones the kernel keeps for `TCP_INFO`).
///
/// Layout invariant: 32 bytes, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCounters {
    /// Sequence space received in order (`tcpi_bytes_received`: payload, and the FIN).
    pub bytes_received: u64,
    /// Sequence space the peer acknowledged (`tcpi_bytes_acked`: payload, the SYN, and
    /// the FIN once acknowledged).
    pub bytes_acked: u64,
    /// Segments with payload received (`tcpi_data_segs_in`).
    pub data_segs_in: u32,
    /// Segments with payload sent (`tcpi_data_segs_out`).
    pub data_segs_out: u32,
    /// Smoothed RTT in microseconds times 8, as the kernel keeps it (`srtt_us`).
    pub srtt_us_x8: u32,
    /// Non-zero when the counters were read.
    pub present: u32,
}
const _: () = assert!(size_of::<TcpCounters>() == 32);

/// Where the [`TcpCounters`] fields sit in `struct tcp_sock` on the running kernel, as
/// byte offsets found in its BTF at load time (never hard-coded); [`FIELD_ABSENT`] where
/// this kernel lacks one. With `present` 0 the programs read nothing.
///
/// Layout invariant: 24 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSockLayout {
    pub present: u32,
    pub bytes_received: u32,
    pub bytes_acked: u32,
    pub data_segs_in: u32,
    pub data_segs_out: u32,
    pub srtt_us: u32,
}
const _: () = assert!(size_of::<TcpSockLayout>() == 24);

impl TcpSockLayout {
    /// Nothing known: the programs read no counters.
    pub const ABSENT: Self = Self {
        present: 0,
        bytes_received: FIELD_ABSENT,
        bytes_acked: FIELD_ABSENT,
        data_segs_in: FIELD_ABSENT,
        data_segs_out: FIELD_ABSENT,
        srtt_us: FIELD_ABSENT,
    };
}

/// Marks a tracepoint field that the running kernel does not provide.
pub const FIELD_ABSENT: u32 = u32::MAX;

/// Where the fields of one tracepoint sit in its raw record on the running kernel, as
/// byte offsets read from `/sys/kernel/tracing/events/<group>/<name>/format`; never
/// hard-coded. [`FIELD_ABSENT`] marks a field this tracepoint (on this kernel) lacks.
///
/// Layout invariant: 80 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TpLayout {
    /// Non-zero when userspace filled this layout in; a program with an unfilled layout
    /// records nothing.
    pub present: u32,
    pub skaddr: u32,
    pub skbaddr: u32,
    pub sport: u32,
    pub dport: u32,
    pub family: u32,
    pub protocol: u32,
    /// `__u8 saddr[4]` / `daddr[4]`.
    pub saddr: u32,
    pub daddr: u32,
    /// `__u8 saddr_v6[16]` / `daddr_v6[16]`.
    pub saddr_v6: u32,
    pub daddr_v6: u32,
    /// `__u8 saddr[sizeof(struct sockaddr_in6)]`: a whole socket address (family, port,
    /// address), as `tcp_send_reset` stores it on recent kernels.
    pub sockaddr_src: u32,
    pub sockaddr_dst: u32,
    pub sock_cookie: u32,
    /// `state` or `oldstate`.
    pub state: u32,
    pub new_state: u32,
    pub reason: u32,
    /// `error` or `err`.
    pub error: u32,
    pub rx_sk: u32,
    pub location: u32,
}
const _: () = assert!(size_of::<TpLayout>() == 80);

impl TpLayout {
    /// Nothing known: the program records nothing until userspace fills it in.
    pub const ABSENT: Self = Self {
        present: 0,
        skaddr: FIELD_ABSENT,
        skbaddr: FIELD_ABSENT,
        sport: FIELD_ABSENT,
        dport: FIELD_ABSENT,
        family: FIELD_ABSENT,
        protocol: FIELD_ABSENT,
        saddr: FIELD_ABSENT,
        daddr: FIELD_ABSENT,
        saddr_v6: FIELD_ABSENT,
        daddr_v6: FIELD_ABSENT,
        sockaddr_src: FIELD_ABSENT,
        sockaddr_dst: FIELD_ABSENT,
        sock_cookie: FIELD_ABSENT,
        state: FIELD_ABSENT,
        new_state: FIELD_ABSENT,
        reason: FIELD_ABSENT,
        error: FIELD_ABSENT,
        rx_sk: FIELD_ABSENT,
        location: FIELD_ABSENT,
    };
}

/// Number of slots in [`Layouts::tp`] (kind values are 1..=7; slot 0 is unused).
pub const LAYOUT_SLOTS: usize = 8;

/// The layouts of every tracepoint, indexed by [`EventKind`] value.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layouts {
    pub tp: [TpLayout; LAYOUT_SLOTS],
}

impl Layouts {
    /// Every layout absent.
    pub const ABSENT: Self = Self {
        tp: [TpLayout::ABSENT; LAYOUT_SLOTS],
    };
}

/// How many ports and addresses a [`Filter`] holds.
pub const FILTER_PORTS: usize = 16;
/// See [`FILTER_PORTS`].
pub const FILTER_ADDRS: usize = 4;

/// In-kernel filter, set by userspace before loading. An event passes when (no ports are
/// given, or its local or remote port is one of them) and (no addresses are given, or
/// its local or remote address is one of them). Drops (`kfree_skb`) carry no tuple: they
/// pass only when they name a receiving socket (`rx_sk`), and userspace keeps those whose
/// socket it tracks.
///
/// Layout invariant: 120 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    pub ports: [u16; FILTER_PORTS],
    pub nports: u32,
    pub naddrs: u32,
    /// IPv4 addresses in the first four bytes.
    pub addrs: [[u8; 16]; FILTER_ADDRS],
    /// [`AF_INET`] or [`AF_INET6`] per address.
    pub addr_families: [u16; FILTER_ADDRS],
    /// Non-zero: also record drops without a receiving socket (host-wide; noisy).
    pub all_drops: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<Filter>() == 120);

impl Filter {
    /// Everything passes.
    pub const ALL: Self = Self {
        ports: [0; FILTER_PORTS],
        nports: 0,
        naddrs: 0,
        addrs: [[0; 16]; FILTER_ADDRS],
        addr_families: [0; FILTER_ADDRS],
        all_drops: 0,
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
    /// Events the in-kernel filter discarded.
    Filtered = 3,
    /// The tracked-socket map was full: a socket's later events may be filtered out.
    TrackFull = 4,
    /// Captured calls written to the ring buffer (their losses count as
    /// [`StatSlot::ReserveFailed`]).
    DataEmitted = 5,
    /// A captured call's buffer could not be read (paged out, or a bad pointer).
    DataReadFailed = 6,
}
/// Number of [`StatSlot`]s.
pub const STAT_SLOTS: u32 = 7;

/// Capacity of the kernel's tracked-socket map (sockets alive at once that matched the
/// filter).
pub const TRACKED_SOCKETS: u32 = 1 << 18;

/// Unread bytes in the event ring above which a submit wakes the reader at once. Below
/// it the kernel programs submit without a wakeup and the reader drains on a short
/// timer ([`RING_DRAIN_INTERVAL_MS`]): a wakeup per event costs an irq_work (an
/// interrupt, and a VM exit under KVM) on the traced CPU, which was the analyzer's main
/// cost under connection churn. 1 MiB is about 8,700 events, 1/16 of the ring.
pub const RING_WAKEUP_BYTES: u64 = 1 << 20;

/// How often the reader drains the ring without being woken, in milliseconds. At the
/// ring's 16 MiB, a timer this short leaves room for over 10M events/s between drains
/// before a reserve can fail; the wakeup above fires long before that.
pub const RING_DRAIN_INTERVAL_MS: u64 = 10;

/// Slots of the per-CPU `DROP_REASONS` array: host-wide IP packet drops counted by
/// `skb_drop_reason` value (whatever the filter), values at or above this are folded
/// into the last slot.
pub const DROP_REASON_SLOTS: u32 = 256;

/// Name of the ring buffer map in the object file.
pub const EVENTS_MAP: &str = "EVENTS";
/// Name of the per-CPU statistics array in the object file.
pub const STATS_MAP: &str = "STATS";
/// Name of the per-CPU drop-reason histogram in the object file.
pub const DROP_REASONS_MAP: &str = "DROP_REASONS";
/// Name of the global holding [`Layouts`].
pub const LAYOUTS_GLOBAL: &str = "LAYOUTS";
/// Name of the global holding the [`Filter`].
pub const FILTER_GLOBAL: &str = "FILTER";
/// Name of the global holding the [`TcpSockLayout`].
pub const TCP_SOCK_GLOBAL: &str = "TCP_SOCK";

#[cfg(feature = "user")]
mod user {
    // SAFETY: each type is #[repr(C)], Copy, built only from integers and integer
    // arrays, with explicit padding fields and no implicit padding (see the size asserts),
    // so every bit pattern is a valid value.
    unsafe impl aya::Pod for super::Tuple {}
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::TpLayout {}
    unsafe impl aya::Pod for super::Layouts {}
    unsafe impl aya::Pod for super::Filter {}
    unsafe impl aya::Pod for super::TcpCounters {}
    unsafe impl aya::Pod for super::TcpSockLayout {}
    unsafe impl aya::Pod for super::DataHeader {}
    unsafe impl aya::Pod for super::FdLayout {}
    unsafe impl aya::Pod for super::GoConnLayout {}
    unsafe impl aya::Pod for super::ExecLayout {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_u32() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::try_from(k as u32), Ok(k));
            assert!((k as usize) < LAYOUT_SLOTS);
        }
        assert_eq!(EventKind::try_from(0), Err(0));
        assert_eq!(EventKind::try_from(8), Err(8));
    }
}
