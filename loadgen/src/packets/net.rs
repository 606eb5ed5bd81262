//! The sockets of the packet tools: which interface and source address reach a target,
//! a raw IP socket that sends the packets [`wire::packet`] builds, and an AF_PACKET
//! capture (pnet_datalink) on a thread that hands matching frames over a channel.
use std::{
    io,
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::Instant,
};

use pnet_datalink::NetworkInterface;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::PacketsError;
use wire::capture::{CaptureError, IfaceCapture};
use wire::packet::{self, LinkType, Packet};

/// How a target is reached from this namespace.
#[derive(Clone, Debug)]
pub struct Route {
    /// The address our packets come from.
    pub source: IpAddr,
    /// The interface the answers arrive on.
    pub iface: NetworkInterface,
    pub link: LinkType,
    /// The target is loopback or an address of this namespace's interfaces.
    pub target_is_local: bool,
}

/// Every address configured on this namespace's interfaces.
pub fn local_addrs() -> Vec<IpAddr> {
    pnet_datalink::interfaces()
        .iter()
        .flat_map(|i| i.ips.iter().map(|n| n.ip()))
        .collect()
}

/// Loopback, or an address of this namespace.
pub fn is_local(ip: IpAddr, locals: &[IpAddr]) -> bool {
    ip.is_loopback() || locals.contains(&ip) || ip.to_canonical().is_loopback()
}

/// The source address and interface for `target`: the kernel's route choice (a
/// connected UDP socket sends nothing but learns its source), and loopback for the
/// host's own addresses, whose traffic never leaves through the interface that holds
/// them (local routes point at lo).
pub fn route_to(target: IpAddr) -> Result<Route, PacketsError> {
    let interfaces = pnet_datalink::interfaces();
    let locals: Vec<IpAddr> = interfaces
        .iter()
        .flat_map(|i| i.ips.iter().map(|n| n.ip()))
        .collect();
    let probe = match target {
        IpAddr::V4(_) => UdpSocket::bind("0.0.0.0:0"),
        IpAddr::V6(_) => UdpSocket::bind("[::]:0"),
    }
    .and_then(|s| s.connect(SocketAddr::new(target, 9)).map(|()| s))
    .and_then(|s| s.local_addr())
    .map_err(|source| PacketsError::Io {
        what: format!("find a route to {target}"),
        source,
    })?;
    let source = probe.ip();
    let target_is_local = is_local(target, &locals);
    let iface = interfaces
        .into_iter()
        .find(|i| {
            if target_is_local {
                i.is_loopback()
            } else {
                i.ips.iter().any(|n| n.ip() == source)
            }
        })
        .ok_or(PacketsError::NoInterface {
            target,
            via: source,
        })?;
    let arphrd = std::fs::read_to_string(format!("/sys/class/net/{}/type", iface.name))
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .unwrap_or(1);
    let link = LinkType::from_arphrd(arphrd).ok_or_else(|| PacketsError::LinkType {
        iface: iface.name.clone(),
        arphrd,
    })?;
    Ok(Route {
        source,
        iface,
        link,
        target_is_local,
    })
}

/// A raw IP socket that sends whole IP packets (IPv4 IPPROTO_RAW implies IP_HDRINCL,
/// raw(7); on IPv6 IPPROTO_RAW sets hdrincl too, net/ipv6/af_inet6.c inet6_create).
#[derive(Debug)]
pub struct RawSender {
    socket: Socket,
}

impl RawSender {
    /// A sender for `family`'s packets; `mark` sets SO_MARK so firewall rules can tell
    /// our packets from the kernel's.
    pub fn new(family: IpAddr, mark: Option<u32>) -> Result<Self, PacketsError> {
        let domain = match family {
            IpAddr::V4(_) => Domain::IPV4,
            IpAddr::V6(_) => Domain::IPV6,
        };
        let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))
            .map_err(PacketsError::privileged("open a raw IP socket"))?;
        if let Some(mark) = mark {
            socket
                .set_mark(mark)
                .map_err(PacketsError::privileged("set SO_MARK on the raw socket"))?;
        }
        Ok(Self { socket })
    }

    /// Sends one packet built by [`packet::build`] to `dst`.
    pub fn send(&self, packet: &[u8], dst: IpAddr) -> Result<(), PacketsError> {
        // The port must be 0 (or the protocol) for raw IPv6 (net/ipv6/raw.c rawv6_sendmsg).
        let addr = SockAddr::from(SocketAddr::new(dst, 0));
        self.socket
            .send_to(packet, &addr)
            .map(|_| ())
            .map_err(|source| PacketsError::Io {
                what: format!("send a raw packet to {dst}"),
                source,
            })
    }
}

/// One captured frame that passed the filter, with when it was read.
#[derive(Debug)]
pub struct Frame {
    pub at: Instant,
    pub bytes: Vec<u8>,
}

/// An AF_PACKET capture running on its own thread; stops when dropped.
#[derive(Debug)]
pub struct Capture {
    pub link: LinkType,
    pub rx: mpsc::Receiver<Frame>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Capture {
    /// Starts capturing on `iface`; the kernel keeps TCP segments with one of `ports`
    /// (and ICMP errors), and frames that parse and pass `keep` are sent on.
    pub fn start(
        iface: &NetworkInterface,
        link: LinkType,
        ports: &[u16],
        keep: impl Fn(&Packet<'_>) -> bool + Send + 'static,
    ) -> Result<Self, PacketsError> {
        let mut rx = IfaceCapture::open(&iface.name, ports).map_err(|e| match e {
            CaptureError::Socket { source, what, .. } => PacketsError::privileged(format!(
                "open an AF_PACKET capture on {} ({what})",
                iface.name
            ))(source),
            CaptureError::LinkType { arphrd, .. } => PacketsError::LinkType {
                iface: iface.name.clone(),
                arphrd,
            },
            CaptureError::NoInterface(name) => PacketsError::Io {
                what: format!("no interface {name}"),
                source: io::Error::from(io::ErrorKind::NotFound),
            },
        })?;
        let (tx, frames) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let name = iface.name.clone();
            thread::Builder::new()
                .name(format!("capture-{name}"))
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match rx.next_frame() {
                            Ok(None) => {}
                            Ok(Some(bytes)) => {
                                let at = Instant::now();
                                if packet::parse_frame(link, bytes).is_ok_and(|p| keep(&p)) {
                                    let frame = Frame {
                                        at,
                                        bytes: bytes.to_vec(),
                                    };
                                    if tx.send(frame).is_err() {
                                        return;
                                    }
                                }
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                                ) => {}
                            Err(e) => {
                                tracing::warn!(iface = %name, cause = %e, "capture read failed");
                                return;
                            }
                        }
                    }
                })
                .map_err(|source| PacketsError::Io {
                    what: "start the capture thread".into(),
                    source,
                })?
        };
        Ok(Self {
            link,
            rx: frames,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
