//! Frames and packets, parsed once: [`parse_frame`] turns what an AF_PACKET socket (or a
//! raw IP socket) hands back into a [`Packet`] (a TCP [`Segment`] or an ICMP error that
//! quotes one), and the builders make the IPv4/IPv6 TCP segments the packet tools send.
//!
//! The parser never panics and never trusts a length field: every header length is
//! checked against the bytes captured before it is used, and a capture shorter than the
//! IP total length yields the bytes there are (`Segment::truncated`). It does not verify
//! checksums: on loopback the kernel leaves locally generated TCP checksums partial
//! (CHECKSUM_PARTIAL), so a capture would see "bad" ones.
//!
//! Field access, TCP option iteration, building and checksums are pnet_packet's; this
//! module adds the bounds checks, the link-layer framing and the IPv6 extension-header
//! walk (hop-by-hop, routing, destination options and fragment headers only, through
//! pnet's `ExtensionPacket`; a non-first fragment, AH or ESP is reported, not parsed).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use pnet_packet::{
    Packet as _,
    ethernet::{EtherTypes, EthernetPacket},
    ip::IpNextHeaderProtocols,
    ipv4::{Ipv4Flags, Ipv4Packet},
    ipv6::{ExtensionPacket, FragmentPacket, Ipv6Packet},
    tcp::{TcpOptionNumbers, TcpPacket},
    vlan::VlanPacket,
};

pub use build::{SegmentSpec, build};
pub use pnet_packet::tcp::TcpFlags;

mod build;

/// How the frames of an interface start (`/sys/class/net/IF/type`, ARPHRD_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet II (ARPHRD_ETHER). Linux loopback (ARPHRD_LOOPBACK) frames on AF_PACKET
    /// are Ethernet with both MAC addresses zero, so they use this too.
    Ethernet,
    /// A bare IPv4 or IPv6 packet, told apart by its version nibble (ARPHRD_NONE: tun,
    /// wireguard; or a raw IP socket).
    RawIp,
}

impl LinkType {
    /// The link type of an ARPHRD_* value, `None` for one this module cannot parse.
    pub fn from_arphrd(arphrd: u16) -> Option<Self> {
        match arphrd {
            // ARPHRD_ETHER, ARPHRD_LOOPBACK (include/uapi/linux/if_arp.h).
            1 | 772 => Some(Self::Ethernet),
            // ARPHRD_NONE, ARPHRD_RAWIP.
            0xfffe | 519 => Some(Self::RawIp),
            _ => None,
        }
    }
}

/// Why a frame is not a TCP segment or ICMP error this module understands.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{layer} header truncated: {have} bytes, need {need}")]
    Truncated {
        layer: &'static str,
        need: usize,
        have: usize,
    },
    #[error("not IP: ethertype {ethertype:#06x}")]
    NotIp { ethertype: u16 },
    #[error("IP version {version} is neither 4 nor 6")]
    IpVersion { version: u8 },
    #[error("{layer} header length {len} bytes is invalid")]
    HeaderLength { layer: &'static str, len: usize },
    #[error("IP protocol {protocol} is neither TCP nor ICMP")]
    NotTcp { protocol: u8 },
    #[error("a non-first IP fragment carries no TCP header")]
    Fragment,
    #[error("ICMP type {icmp_type} is not destination unreachable")]
    NotUnreachable { icmp_type: u8 },
    #[error("source {src} and destination {dst} are not the same IP family")]
    MixedFamilies { src: IpAddr, dst: IpAddr },
}

/// TCP options the packet tools read (RFC 9293 section 3.2, RFC 7323, RFC 2018).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// Maximum segment size (kind 2), SYN only.
    pub mss: Option<u16>,
    /// Window scale shift (kind 3), SYN only.
    pub wscale: Option<u8>,
    /// SACK permitted (kind 4), SYN only.
    pub sack_permitted: bool,
    /// Timestamps (kind 8): (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
}

/// One TCP segment with the IP fields the tools judge it by; `payload` borrows the frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    /// [`TcpFlags`] bits (FIN 0x01 ... CWR 0x80).
    pub flags: u8,
    /// The raw window field, unscaled.
    pub window: u16,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 identification; `None` for IPv6 (no ID outside a fragment header).
    pub ip_id: Option<u16>,
    /// IPv4 don't-fragment bit (false for IPv6).
    pub dont_fragment: bool,
    pub options: TcpOptions,
    pub payload: &'a [u8],
    /// The capture ended before the IP length said the packet does.
    pub truncated: bool,
}

impl Segment<'_> {
    /// Whether every bit of `flags` is set.
    pub fn has(&self, flags: u8) -> bool {
        self.flags & flags == flags
    }

    /// Sequence space this segment occupies: its payload, plus one for SYN and for FIN
    /// (RFC 9293 section 3.4).
    pub fn seq_len(&self) -> u32 {
        let len = u32::try_from(self.payload.len()).unwrap_or(u32::MAX);
        len.wrapping_add(u32::from(self.has(TcpFlags::SYN)))
            .wrapping_add(u32::from(self.has(TcpFlags::FIN)))
    }
}

/// An ICMP/ICMPv6 destination unreachable, with what it quotes of our segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unreachable {
    /// Who sent the ICMP error (a router or the target host).
    pub from: IpAddr,
    /// ICMP type 3 or ICMPv6 type 1.
    pub icmp_type: u8,
    /// RFC 792 / RFC 4443 code: 1 host, 3 port (v4), 13 administratively prohibited...
    pub code: u8,
    /// The quoted segment's source and destination.
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The quoted segment's sequence number (RFC 792: at least 8 bytes of it are quoted).
    pub seq: u32,
}

/// What [`parse_frame`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    Tcp(Segment<'a>),
    Unreachable(Unreachable),
}

fn need(layer: &'static str, have: &[u8], need: usize) -> Result<(), WireError> {
    if have.len() < need {
        return Err(WireError::Truncated {
            layer,
            need,
            have: have.len(),
        });
    }
    Ok(())
}

/// Parses one link-layer frame. VLAN tags (802.1Q/802.1ad) are stepped over.
pub fn parse_frame(link: LinkType, frame: &[u8]) -> Result<Packet<'_>, WireError> {
    match link {
        LinkType::RawIp => parse_ip(frame),
        LinkType::Ethernet => {
            let eth = EthernetPacket::new(frame).ok_or(WireError::Truncated {
                layer: "Ethernet",
                need: EthernetPacket::minimum_packet_size(),
                have: frame.len(),
            })?;
            let mut ethertype = eth.get_ethertype();
            let mut rest = frame
                .get(EthernetPacket::minimum_packet_size()..)
                .unwrap_or(&[]);
            // At most two tags (QinQ); more is not a frame we produce or expect.
            for _ in 0..2 {
                // 802.1Q, 802.1ad (0x88a8) and the older 0x9100 QinQ.
                if ethertype != EtherTypes::Vlan
                    && ethertype != EtherTypes::QinQ
                    && ethertype.0 != 0x88a8
                {
                    break;
                }
                let vlan = VlanPacket::new(rest).ok_or(WireError::Truncated {
                    layer: "VLAN",
                    need: VlanPacket::minimum_packet_size(),
                    have: rest.len(),
                })?;
                ethertype = vlan.get_ethertype();
                rest = rest.get(VlanPacket::minimum_packet_size()..).unwrap_or(&[]);
            }
            if ethertype != EtherTypes::Ipv4 && ethertype != EtherTypes::Ipv6 {
                return Err(WireError::NotIp {
                    ethertype: ethertype.0,
                });
            }
            parse_ip(rest)
        }
    }
}

/// Parses a bare IPv4 or IPv6 packet (what a raw IP socket or ARPHRD_NONE gives).
pub fn parse_ip(bytes: &[u8]) -> Result<Packet<'_>, WireError> {
    need("IP", bytes, 1)?;
    match bytes[0] >> 4 {
        4 => parse_ipv4(bytes),
        6 => parse_ipv6(bytes),
        version => Err(WireError::IpVersion { version }),
    }
}

/// The IP fields a [`Segment`] carries, gathered before the TCP header is read.
struct IpInfo {
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    ip_id: Option<u16>,
    dont_fragment: bool,
    truncated: bool,
}

fn parse_ipv4(bytes: &[u8]) -> Result<Packet<'_>, WireError> {
    let ip = Ipv4Packet::new(bytes).ok_or(WireError::Truncated {
        layer: "IPv4",
        need: Ipv4Packet::minimum_packet_size(),
        have: bytes.len(),
    })?;
    // RFC 791 section 3.1: IHL counts 32-bit words, at least 5; options fill the rest.
    let header_len = usize::from(ip.get_header_length()) * 4;
    if header_len < 20 {
        return Err(WireError::HeaderLength {
            layer: "IPv4",
            len: header_len,
        });
    }
    need("IPv4", bytes, header_len)?;
    let total_len = usize::from(ip.get_total_length());
    if total_len < header_len {
        return Err(WireError::HeaderLength {
            layer: "IPv4 total",
            len: total_len,
        });
    }
    if ip.get_fragment_offset() != 0 {
        return Err(WireError::Fragment);
    }
    // Ethernet pads short frames to 60 bytes: the IP length, not the frame, ends it.
    let end = total_len.min(bytes.len());
    let body = bytes.get(header_len..end).unwrap_or(&[]);
    let info = IpInfo {
        src: IpAddr::V4(ip.get_source()),
        dst: IpAddr::V4(ip.get_destination()),
        ttl: ip.get_ttl(),
        ip_id: Some(ip.get_identification()),
        dont_fragment: ip.get_flags() & Ipv4Flags::DontFragment != 0,
        truncated: total_len > bytes.len(),
    };
    match ip.get_next_level_protocol() {
        IpNextHeaderProtocols::Tcp => parse_tcp(info, body).map(Packet::Tcp),
        // RFC 792: type 3, code, checksum, 4 unused bytes, then the original IP header
        // and at least 64 bits of its data.
        IpNextHeaderProtocols::Icmp => parse_icmp(info.src, body, 3).map(Packet::Unreachable),
        p => Err(WireError::NotTcp { protocol: p.0 }),
    }
}

fn parse_ipv6(bytes: &[u8]) -> Result<Packet<'_>, WireError> {
    let ip = Ipv6Packet::new(bytes).ok_or(WireError::Truncated {
        layer: "IPv6",
        need: Ipv6Packet::minimum_packet_size(),
        have: bytes.len(),
    })?;
    let payload_len = usize::from(ip.get_payload_length());
    // A jumbogram (RFC 2675) says 0; take what was captured.
    let end = if payload_len == 0 {
        bytes.len()
    } else {
        (40 + payload_len).min(bytes.len())
    };
    let mut body = bytes.get(40..end).unwrap_or(&[]);
    let mut next = ip.get_next_header();
    // RFC 8200 section 4: walk the extension headers in front of the upper layer, at
    // most eight of them.
    for _ in 0..8 {
        match next {
            IpNextHeaderProtocols::Hopopt
            | IpNextHeaderProtocols::Ipv6Route
            | IpNextHeaderProtocols::Ipv6Opts => {
                let ext = ExtensionPacket::new(body).ok_or(WireError::Truncated {
                    layer: "IPv6 extension",
                    need: 8,
                    have: body.len(),
                })?;
                let len = (usize::from(ext.get_hdr_ext_len()) + 1) * 8;
                need("IPv6 extension", body, len)?;
                next = ext.get_next_header();
                body = body.get(len..).unwrap_or(&[]);
            }
            IpNextHeaderProtocols::Ipv6Frag => {
                let frag = FragmentPacket::new(body).ok_or(WireError::Truncated {
                    layer: "IPv6 fragment",
                    need: 8,
                    have: body.len(),
                })?;
                if frag.get_fragment_offset() != 0 {
                    return Err(WireError::Fragment);
                }
                next = frag.get_next_header();
                body = body.get(8..).unwrap_or(&[]);
            }
            _ => break,
        }
    }
    let info = IpInfo {
        src: IpAddr::V6(ip.get_source()),
        dst: IpAddr::V6(ip.get_destination()),
        ttl: ip.get_hop_limit(),
        ip_id: None,
        dont_fragment: false,
        truncated: payload_len != 0 && 40 + payload_len > bytes.len(),
    };
    match next {
        IpNextHeaderProtocols::Tcp => parse_tcp(info, body).map(Packet::Tcp),
        // RFC 4443 section 3.1: type 1, code, checksum, 4 unused bytes, then as much of
        // the invoking packet as fits.
        IpNextHeaderProtocols::Icmpv6 => parse_icmp(info.src, body, 1).map(Packet::Unreachable),
        p => Err(WireError::NotTcp { protocol: p.0 }),
    }
}

fn parse_tcp(ip: IpInfo, bytes: &[u8]) -> Result<Segment<'_>, WireError> {
    let tcp = TcpPacket::new(bytes).ok_or(WireError::Truncated {
        layer: "TCP",
        need: TcpPacket::minimum_packet_size(),
        have: bytes.len(),
    })?;
    // RFC 9293 section 3.1: Data Offset counts 32-bit words, at least 5.
    let header_len = usize::from(tcp.get_data_offset()) * 4;
    if header_len < 20 {
        return Err(WireError::HeaderLength {
            layer: "TCP",
            len: header_len,
        });
    }
    need("TCP", bytes, header_len)?;
    Ok(Segment {
        src: SocketAddr::new(ip.src, tcp.get_source()),
        dst: SocketAddr::new(ip.dst, tcp.get_destination()),
        seq: tcp.get_sequence(),
        ack: tcp.get_acknowledgement(),
        flags: tcp.get_flags(),
        window: tcp.get_window(),
        ttl: ip.ttl,
        ip_id: ip.ip_id,
        dont_fragment: ip.dont_fragment,
        options: tcp_options(&tcp),
        payload: bytes.get(header_len..).unwrap_or(&[]),
        truncated: ip.truncated,
    })
}

/// The options of interest; a malformed option ends the walk (RFC 9293 section 3.1:
/// options end at the data offset; a receiver must tolerate unknown kinds).
fn tcp_options(tcp: &TcpPacket) -> TcpOptions {
    let mut out = TcpOptions::default();
    for opt in tcp.get_options_iter() {
        let data = opt.payload();
        match opt.get_number() {
            TcpOptionNumbers::EOL => break,
            TcpOptionNumbers::MSS => {
                if let [a, b] = data {
                    out.mss = Some(u16::from_be_bytes([*a, *b]));
                }
            }
            TcpOptionNumbers::WSCALE => {
                if let [s] = data {
                    out.wscale = Some(*s);
                }
            }
            TcpOptionNumbers::SACK_PERMITTED => out.sack_permitted = true,
            TcpOptionNumbers::TIMESTAMPS => {
                if let [a, b, c, d, e, f, g, h] = data {
                    out.timestamps = Some((
                        u32::from_be_bytes([*a, *b, *c, *d]),
                        u32::from_be_bytes([*e, *f, *g, *h]),
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

/// An ICMP (`unreachable_type` 3) or ICMPv6 (1) destination unreachable quoting a TCP
/// segment; other ICMP types are [`WireError::NotUnreachable`].
fn parse_icmp(from: IpAddr, bytes: &[u8], unreachable_type: u8) -> Result<Unreachable, WireError> {
    need("ICMP", bytes, 8)?;
    let (icmp_type, code) = (bytes[0], bytes[1]);
    if icmp_type != unreachable_type {
        return Err(WireError::NotUnreachable { icmp_type });
    }
    let quoted = &bytes[8..];
    // The quote is an IP header and the first 8 bytes of TCP: ports and sequence.
    let (src, dst, tcp) = match quoted.first().map(|b| b >> 4) {
        Some(4) => {
            need("quoted IPv4", quoted, 20)?;
            let header_len = usize::from(quoted[0] & 0x0f) * 4;
            if header_len < 20 || quoted[9] != IpNextHeaderProtocols::Tcp.0 {
                return Err(WireError::HeaderLength {
                    layer: "quoted IPv4",
                    len: header_len,
                });
            }
            let src = Ipv4Addr::from(octets::<4>(&quoted[12..16]));
            let dst = Ipv4Addr::from(octets::<4>(&quoted[16..20]));
            (IpAddr::V4(src), IpAddr::V4(dst), quoted.get(header_len..))
        }
        Some(6) => {
            need("quoted IPv6", quoted, 40)?;
            if quoted[6] != IpNextHeaderProtocols::Tcp.0 {
                return Err(WireError::NotTcp {
                    protocol: quoted[6],
                });
            }
            let src = Ipv6Addr::from(octets::<16>(&quoted[8..24]));
            let dst = Ipv6Addr::from(octets::<16>(&quoted[24..40]));
            (IpAddr::V6(src), IpAddr::V6(dst), quoted.get(40..))
        }
        Some(version) => return Err(WireError::IpVersion { version }),
        None => {
            return Err(WireError::Truncated {
                layer: "quoted IP",
                need: 1,
                have: 0,
            });
        }
    };
    let tcp = tcp.unwrap_or(&[]);
    need("quoted TCP", tcp, 8)?;
    Ok(Unreachable {
        from,
        icmp_type,
        code,
        src: SocketAddr::new(src, u16::from_be_bytes([tcp[0], tcp[1]])),
        dst: SocketAddr::new(dst, u16::from_be_bytes([tcp[2], tcp[3]])),
        seq: u32::from_be_bytes(octets::<4>(&tcp[4..8])),
    })
}

/// The first `N` bytes of a slice the caller has length-checked (zeros if it is short).
fn octets<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = *b;
    }
    out
}

#[cfg(test)]
mod tests;
