//! AF_PACKET capture for the analyzer's raw backend and the packet tools, through pnet's
//! datalink channel on a socket
//! this module prepares first: a classic BPF socket filter so the kernel hands over only
//! TCP segments of the ports asked for (and ICMP errors), `PACKET_IGNORE_OUTGOING` on
//! loopback (every loopback packet passes the tap twice, once leaving and once arriving;
//! libpcap drops the outgoing copy the same way), a large receive buffer, and
//! `PACKET_STATISTICS` for the drops the kernel counts when the reader falls behind.
use std::{io, os::fd::RawFd, time::Duration};

use crate::packet::LinkType;
use pnet_datalink::{Channel, DataLinkReceiver, NetworkInterface};

/// `SOL_PACKET` option numbers (include/uapi/linux/if_packet.h).
const PACKET_STATISTICS: libc::c_int = 6;
/// Frames larger than this are cut (loopback's MTU is 64 KiB; GSO frames can exceed it).
pub const SNAP_BYTES: usize = 256 * 1024;
/// Receive buffer asked of the kernel (SO_RCVBUFFORCE as root).
const RCVBUF_BYTES: libc::c_int = 32 << 20;

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
    fd: RawFd,
    rx: Box<dyn DataLinkReceiver>,
    packets: u64,
    drops: u64,
}

impl std::fmt::Debug for IfaceCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IfaceCapture")
            .field("name", &self.name)
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

/// Packets the kernel queued and dropped for one capture socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureCounts {
    pub packets: u64,
    pub drops: u64,
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

impl IfaceCapture {
    /// Opens a capture on `name` for TCP segments to or from `ports` (all TCP when empty).
    pub fn open(name: &str, ports: &[u16]) -> Result<Self, CaptureError> {
        let iface: NetworkInterface = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == name)
            .ok_or_else(|| CaptureError::NoInterface(name.to_owned()))?;
        let arphrd = arphrd(name).unwrap_or(1);
        let link = LinkType::from_arphrd(arphrd).ok_or_else(|| CaptureError::LinkType {
            iface: name.to_owned(),
            arphrd,
        })?;
        // SAFETY: plain socket(2); the fd is handed to pnet, which owns and closes it.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from((libc::ETH_P_ALL as u16).to_be()),
            )
        };
        if fd < 0 {
            return Err(sock_err(name, "AF_PACKET socket (needs CAP_NET_RAW)"));
        }
        let close_on = |e: CaptureError| {
            // SAFETY: the fd is ours until pnet takes it.
            unsafe { libc::close(fd) };
            e
        };
        if iface.is_loopback()
            && setsockopt(fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &1i32) != 0
        {
            return Err(close_on(sock_err(
                name,
                "PACKET_IGNORE_OUTGOING (Linux 4.20+)",
            )));
        }
        if setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &RCVBUF_BYTES) != 0 {
            let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &RCVBUF_BYTES);
        }
        let prog = crate::bpf::tcp_ports(link, ports, SNAP_BYTES as u32);
        let fprog = libc::sock_fprog {
            len: u16::try_from(prog.len()).unwrap_or(u16::MAX),
            filter: prog.as_ptr().cast_mut(),
        };
        if setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog) != 0 {
            return Err(close_on(sock_err(name, "attach the BPF socket filter")));
        }
        let cfg = pnet_datalink::Config {
            read_buffer_size: SNAP_BYTES,
            read_timeout: Some(Duration::from_millis(50)),
            socket_fd: Some(fd),
            // Only this host's traffic: never flip a real NIC into promiscuous mode.
            promiscuous: false,
            ..pnet_datalink::Config::default()
        };
        let rx = match pnet_datalink::channel(&iface, cfg) {
            Ok(Channel::Ethernet(_tx, rx)) => rx,
            Ok(_) => {
                return Err(CaptureError::Socket {
                    iface: name.to_owned(),
                    what: "pnet returned an unknown channel type",
                    source: io::Error::other("unknown channel"),
                });
            }
            Err(source) => {
                return Err(CaptureError::Socket {
                    iface: name.to_owned(),
                    what: "bind the capture socket",
                    source,
                });
            }
        };
        let mut cap = Self {
            name: name.to_owned(),
            link,
            fd,
            rx,
            packets: 0,
            drops: 0,
        };
        // Packets queued between socket() and the filter are not ours: start counting now.
        let _ = cap.counts();
        cap.packets = 0;
        cap.drops = 0;
        Ok(cap)
    }

    /// The next frame, or `None` after the read timeout (50 ms) passed without one.
    pub fn next_frame(&mut self) -> io::Result<Option<&[u8]>> {
        match self.rx.next() {
            Ok(frame) => Ok(Some(frame)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Packets queued and dropped by the kernel since the capture opened (the kernel
    /// resets its counters on every read; they are summed here).
    pub fn counts(&mut self) -> CaptureCounts {
        let mut st = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `st` and `len` are valid out-pointers of the sizes given.
        let rc = unsafe {
            libc::getsockopt(
                self.fd,
                libc::SOL_PACKET,
                PACKET_STATISTICS,
                (&raw mut st).cast(),
                &raw mut len,
            )
        };
        if rc == 0 {
            // tp_packets counts every packet that passed the filter, dropped ones included.
            self.packets += u64::from(st.tp_packets);
            self.drops += u64::from(st.tp_drops);
        }
        CaptureCounts {
            packets: self.packets,
            drops: self.drops,
        }
    }
}
