//! The builders of [`super`]: whole IPv4/IPv6 TCP segments with correct checksums, for
//! a raw socket with IP_HDRINCL (pnet_packet's mutable packets and checksum functions).
use std::net::{IpAddr, SocketAddr};

use pnet_packet::{
    ip::IpNextHeaderProtocols,
    ipv4::{self, Ipv4Flags, MutableIpv4Packet},
    ipv6::MutableIpv6Packet,
    tcp::{self, MutableTcpPacket, TcpFlags, TcpOption},
};

use super::{TcpOptions, WireError};

/// A segment to build: every header field the packet tools choose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentSpec {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 identification (ignored for IPv6).
    pub ip_id: u16,
    /// IPv4 don't-fragment bit (ignored for IPv6).
    pub dont_fragment: bool,
    pub options: TcpOptions,
}

impl SegmentSpec {
    /// A SYN as Linux would send it: MSS, window scale 7, SACK permitted, DF, window 64240.
    pub fn syn(src: SocketAddr, dst: SocketAddr, isn: u32, ip_id: u16) -> Self {
        Self {
            src,
            dst,
            seq: isn,
            ack: 0,
            flags: TcpFlags::SYN,
            window: 64_240,
            ttl: 64,
            ip_id,
            dont_fragment: true,
            options: TcpOptions {
                mss: Some(1460),
                wscale: Some(7),
                sack_permitted: true,
                timestamps: None,
            },
        }
    }

    /// An RST with ACK, window 0, no options (RFC 9293 section 3.10.7.1 shape).
    pub fn rst(src: SocketAddr, dst: SocketAddr, seq: u32, ack: u32) -> Self {
        Self {
            src,
            dst,
            seq,
            ack,
            flags: TcpFlags::RST | TcpFlags::ACK,
            window: 0,
            ttl: 64,
            ip_id: 0,
            dont_fragment: false,
            options: TcpOptions::default(),
        }
    }

    /// A FIN with ACK.
    pub fn fin(src: SocketAddr, dst: SocketAddr, seq: u32, ack: u32, window: u16) -> Self {
        Self {
            flags: TcpFlags::FIN | TcpFlags::ACK,
            window,
            ..Self::rst(src, dst, seq, ack)
        }
    }
}

/// The option bytes for `opts`, NOP-padded to a 32-bit boundary (at most 20 bytes).
fn option_list(opts: &TcpOptions) -> Vec<TcpOption> {
    let mut list = Vec::new();
    let mut len = 0;
    if let Some(mss) = opts.mss {
        list.push(TcpOption::mss(mss));
        len += 4;
    }
    if let Some(shift) = opts.wscale {
        list.push(TcpOption::nop());
        list.push(TcpOption::wscale(shift));
        len += 4;
    }
    if opts.sack_permitted {
        list.extend([TcpOption::nop(), TcpOption::nop(), TcpOption::sack_perm()]);
        len += 4;
    }
    if let Some((val, ecr)) = opts.timestamps {
        list.extend([TcpOption::nop(), TcpOption::nop()]);
        list.push(TcpOption::timestamp(val, ecr));
        len += 12;
    }
    debug_assert_eq!(len % 4, 0);
    list
}

fn options_len(opts: &TcpOptions) -> usize {
    4 * usize::from(opts.mss.is_some())
        + 4 * usize::from(opts.wscale.is_some())
        + 4 * usize::from(opts.sack_permitted)
        + 12 * usize::from(opts.timestamps.is_some())
}

/// Builds the IP packet (header included) for `spec`, with correct IP and TCP
/// checksums; ready for a raw socket with IP_HDRINCL (or IPv6 IPPROTO_RAW).
pub fn build(spec: &SegmentSpec) -> Result<Vec<u8>, WireError> {
    let tcp_len = 20 + options_len(&spec.options);
    let ip_len = match (spec.src.ip(), spec.dst.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => 20,
        (IpAddr::V6(_), IpAddr::V6(_)) => 40,
        (src, dst) => return Err(WireError::MixedFamilies { src, dst }),
    };
    let mut buf = vec![0u8; ip_len + tcp_len];
    let (ip_buf, tcp_buf) = buf.split_at_mut(ip_len);
    let Some(mut tcp) = MutableTcpPacket::new(tcp_buf) else {
        unreachable!("the buffer holds a TCP header");
    };
    tcp.set_source(spec.src.port());
    tcp.set_destination(spec.dst.port());
    tcp.set_sequence(spec.seq);
    tcp.set_acknowledgement(spec.ack);
    tcp.set_data_offset((tcp_len / 4) as u8);
    tcp.set_flags(spec.flags);
    tcp.set_window(spec.window);
    tcp.set_options(&option_list(&spec.options));
    match (spec.src.ip(), spec.dst.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let sum = tcp::ipv4_checksum(&tcp.to_immutable(), &src, &dst);
            tcp.set_checksum(sum);
            let Some(mut ip) = MutableIpv4Packet::new(ip_buf) else {
                unreachable!("the buffer holds an IPv4 header");
            };
            ip.set_version(4);
            ip.set_header_length(5);
            ip.set_total_length((ip_len + tcp_len) as u16);
            ip.set_identification(spec.ip_id);
            ip.set_flags(if spec.dont_fragment {
                Ipv4Flags::DontFragment
            } else {
                0
            });
            ip.set_ttl(spec.ttl);
            ip.set_next_level_protocol(IpNextHeaderProtocols::Tcp);
            ip.set_source(src);
            ip.set_destination(dst);
            let sum = ipv4::checksum(&ip.to_immutable());
            ip.set_checksum(sum);
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let sum = tcp::ipv6_checksum(&tcp.to_immutable(), &src, &dst);
            tcp.set_checksum(sum);
            let Some(mut ip) = MutableIpv6Packet::new(ip_buf) else {
                unreachable!("the buffer holds an IPv6 header");
            };
            ip.set_version(6);
            ip.set_payload_length(tcp_len as u16);
            ip.set_next_header(IpNextHeaderProtocols::Tcp);
            ip.set_hop_limit(spec.ttl);
            ip.set_source(src);
            ip.set_destination(dst);
        }
        (src, dst) => return Err(WireError::MixedFamilies { src, dst }),
    }
    Ok(buf)
}
