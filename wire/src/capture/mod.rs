//! AF_PACKET capture for the analyzer's raw backend and the packet tools: a socket with
//! a classic BPF filter so the kernel hands over only TCP segments of the ports asked for
//! (and ICMP errors), `PACKET_IGNORE_OUTGOING` on loopback (every loopback packet passes
//! the tap twice, once leaving and once arriving; libpcap drops the outgoing copy the
//! same way), and a memory-mapped TPACKET_V3 receive ring ([`ring`]): the kernel fills
//! blocks of packets, each stamped with its receive time, and hands a block over when it
//! is full or after [`RingSize::block_timeout`]; drops and ring freezes are read from
//! `PACKET_STATISTICS` (`tpacket_stats_v3`).
//!
//! Why a ring of our own and not libpcap (the `pcap` crate): libpcap on Linux does the
//! same thing (TPACKET_V3, the same block handover), so it could not be leaner per
//! packet, and it would add a C library to build and ship with the analyzer, plus a
//! second filter compiler beside [`crate::bpf`] (its filter language for what is a fixed
//! program of a few instructions here). The ring is about 250 lines, and every offset
//! the kernel writes is checked before it is read.
use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use crate::packet::LinkType;
use pnet_datalink::NetworkInterface;

mod ring;
pub use ring::RingSize;

/// `SOL_PACKET` option number (include/uapi/linux/if_packet.h).
const PACKET_STATISTICS: libc::c_int = 6;
/// Frames larger than this are cut (loopback's MTU is 64 KiB; GSO frames can exceed it).
/// A frame is also cut to fit one ring block.
pub const SNAP_BYTES: usize = 256 * 1024;

/// Why a capture could not start.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("no network interface named {0:?} (see `ip link`)")]
    NoInterface(String),
    #[error("{iface}: link type {arphrd} (ARPHRD_*) is not Ethernet, loopback or raw IP")]
    LinkType { iface: String, arphrd: u16 },
    #[error("{iface}: {what}")]
    Socket {
        iface: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// One interface being captured.
pub struct IfaceCapture {
    pub name: String,
    pub link: LinkType,
    // Field order: the ring is unmapped before the socket closes.
    ring: ring::Ring,
    fd: OwnedFd,
    counts: CaptureCounts,
}

impl std::fmt::Debug for IfaceCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IfaceCapture")
            .field("name", &self.name)
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

/// What the kernel and the ring counted for one capture socket since it opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureCounts {
    /// Packets that passed the filter, dropped ones included (`tp_packets`).
    pub packets: u64,
    /// Packets the kernel dropped because every block of the ring was full (`tp_drops`).
    pub drops: u64,
    /// Times the ring filled up and the kernel froze it until a block came back
    /// (`tp_freeze_q_cnt`).
    pub freezes: u64,
    /// Blocks handed over by the kernel and read.
    pub blocks: u64,
    /// Of which given back unread past an inconsistent header (offsets past the block).
    pub bad_blocks: u64,
}

/// One captured frame, borrowed from the ring until the next read.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// The link-layer frame, cut at [`SNAP_BYTES`] or at the ring's block size.
    pub data: &'a [u8],
    /// Its length on the wire.
    pub wire_len: u32,
    /// When the kernel received it: CLOCK_REALTIME nanoseconds since the Unix epoch (the
    /// stack's software stamp when some socket asked for one, else the tap reads the
    /// clock itself: `tpacket_rcv` always stamps).
    pub ts_unix_ns: u64,
}

fn sock_err(iface: &str, what: &'static str) -> CaptureError {
    CaptureError::Socket {
        iface: iface.to_owned(),
        what,
        source: io::Error::last_os_error(),
    }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> libc::c_int {
    // SAFETY: `value` points at a live T and the length passed is its size.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            std::ptr::from_ref(value).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    }
}

/// The interface's ARPHRD_* type from sysfs.
fn arphrd(name: &str) -> Option<u16> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/type"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// How long one read waits for a block before returning `None`.
const POLL_MS: libc::c_int = 50;

impl IfaceCapture {
    /// Opens a capture on `name` for TCP segments to or from `ports` (all TCP when empty),
    /// with the default ring.
    pub fn open(name: &str, ports: &[u16]) -> Result<Self, CaptureError> {
        Self::open_with(name, ports, RingSize::default())
    }

    /// [`open`](Self::open) with a ring of `size`.
    pub fn open_with(name: &str, ports: &[u16], size: RingSize) -> Result<Self, CaptureError> {
        let iface: NetworkInterface = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == name)
            .ok_or_else(|| CaptureError::NoInterface(name.to_owned()))?;
        let arphrd = arphrd(name).unwrap_or(1);
        let link = LinkType::from_arphrd(arphrd).ok_or_else(|| CaptureError::LinkType {
            iface: name.to_owned(),
            arphrd,
        })?;
        // Protocol 0: the socket receives nothing until `bind` names ETH_P_ALL, after the
        // filter and the ring are in place (no unfiltered packet reaches the ring).
        // SAFETY: plain socket(2); the fd is owned at once.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(sock_err(name, "AF_PACKET socket (needs CAP_NET_RAW)"));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let v3 = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        if setsockopt(raw, libc::SOL_PACKET, libc::PACKET_VERSION, &v3) != 0 {
            return Err(sock_err(name, "PACKET_VERSION TPACKET_V3 (Linux 3.2+)"));
        }
        if iface.is_loopback()
            && setsockopt(raw, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &1i32) != 0
        {
            return Err(sock_err(name, "PACKET_IGNORE_OUTGOING (Linux 4.20+)"));
        }
        let prog = crate::bpf::tcp_ports(link, ports, SNAP_BYTES as u32);
        let fprog = libc::sock_fprog {
            len: u16::try_from(prog.len()).unwrap_or(u16::MAX),
            filter: prog.as_ptr().cast_mut(),
        };
        if setsockopt(raw, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog) != 0 {
            return Err(sock_err(name, "attach the BPF socket filter"));
        }
        let req = ring::Ring::request(size);
        if setsockopt(raw, libc::SOL_PACKET, libc::PACKET_RX_RING, &req) != 0 {
            return Err(sock_err(
                name,
                "set up the TPACKET_V3 receive ring (PACKET_RX_RING)",
            ));
        }
        let ring = ring::Ring::map(raw, &req).map_err(|source| CaptureError::Socket {
            iface: name.to_owned(),
            what: "map the receive ring",
            source,
        })?;
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = i32::try_from(iface.index).unwrap_or(0);
        // SAFETY: `sll` is a valid sockaddr_ll and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                raw,
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(sock_err(name, "bind the capture socket"));
        }
        let mut cap = Self {
            name: name.to_owned(),
            link,
            ring,
            fd,
            counts: CaptureCounts::default(),
        };
        // Start counting now (the kernel resets its counters on every read).
        let _ = cap.counts();
        cap.counts = CaptureCounts::default();
        Ok(cap)
    }

    /// The next frame, or `None` after 50 ms without one (a block that has packets is
    /// handed over within the ring's block timeout).
    pub fn next_frame(&mut self) -> io::Result<Option<&[u8]>> {
        Ok(self.next_packet()?.map(|f| f.data))
    }

    /// The next frame with its kernel receive time, or `None` after 50 ms without one.
    pub fn next_packet(&mut self) -> io::Result<Option<Frame<'_>>> {
        let mut loc = self.ring.next_loc();
        if loc.is_none() {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN | libc::POLLERR,
                revents: 0,
            };
            // SAFETY: one valid pollfd, count 1.
            let rc = unsafe { libc::poll(&raw mut pfd, 1, POLL_MS) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                return if e.kind() == io::ErrorKind::Interrupted {
                    Ok(None)
                } else {
                    Err(e)
                };
            }
            loc = self.ring.next_loc();
        }
        Ok(loc.map(|loc| Frame {
            data: self.ring.data(&loc),
            wire_len: loc.wire_len,
            ts_unix_ns: loc.ts_unix_ns,
        }))
    }

    /// What was counted since the capture opened (the kernel resets its counters on
    /// every read; they are summed here).
    pub fn counts(&mut self) -> CaptureCounts {
        let mut st = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: `st` and `len` are valid out-pointers of the sizes given.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_STATISTICS,
                (&raw mut st).cast(),
                &raw mut len,
            )
        };
        if rc == 0 {
            // tp_packets counts every packet that passed the filter, dropped ones included.
            self.counts.packets += u64::from(st.tp_packets);
            self.counts.drops += u64::from(st.tp_drops);
            self.counts.freezes += u64::from(st.tp_freeze_q_cnt);
        }
        self.counts.blocks = self.ring.blocks_read;
        self.counts.bad_blocks = self.ring.bad_blocks;
        self.counts
    }
}
