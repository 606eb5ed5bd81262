//! Round trips through the builders and the parser, and hostile inputs.
use pnet_packet::{ipv4, tcp};

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn frame(ip: &[u8], ethertype: [u8; 2]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&ethertype);
    f.extend_from_slice(ip);
    f
}

fn tcp_of(p: Packet<'_>) -> Segment<'_> {
    match p {
        Packet::Tcp(s) => s,
        other => panic!("not TCP: {other:?}"),
    }
}

#[test]
fn syn_round_trips_over_v4_and_v6_with_valid_checksums() {
    for (src, dst) in [
        ("10.0.0.1:61000", "10.0.0.2:80"),
        ("[::1]:61000", "[2001:db8::1]:443"),
    ] {
        let spec = SegmentSpec::syn(addr(src), addr(dst), 0xdead_beef, 0x4242);
        let ip = build(&spec).unwrap();
        let ethertype = if spec.src.is_ipv4() {
            [0x08, 0x00]
        } else {
            [0x86, 0xdd]
        };
        for (link, bytes) in [
            (LinkType::RawIp, ip.clone()),
            (LinkType::Ethernet, frame(&ip, ethertype)),
        ] {
            let s = tcp_of(parse_frame(link, &bytes).unwrap());
            assert_eq!(
                (s.src, s.dst, s.seq, s.ack),
                (spec.src, spec.dst, 0xdead_beef, 0)
            );
            assert_eq!(s.flags, TcpFlags::SYN);
            assert_eq!((s.window, s.ttl), (64_240, 64));
            assert_eq!(s.options.mss, Some(1460));
            assert_eq!(s.options.wscale, Some(7));
            assert!(s.options.sack_permitted);
            assert_eq!(s.options.timestamps, None);
            assert!(s.payload.is_empty() && !s.truncated);
            assert_eq!(s.seq_len(), 1);
            if spec.src.is_ipv4() {
                assert_eq!(s.ip_id, Some(0x4242));
                assert!(s.dont_fragment);
            } else {
                assert_eq!(s.ip_id, None);
            }
        }
        // Checksums: recomputing over the built bytes gives what was written.
        let (ip_len, tcp) = if spec.src.is_ipv4() {
            (20, &ip[20..])
        } else {
            (40, &ip[40..])
        };
        let t = TcpPacket::new(tcp).unwrap();
        let want = match (spec.src.ip(), spec.dst.ip()) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                assert_eq!(
                    ipv4::checksum(&Ipv4Packet::new(&ip[..ip_len]).unwrap()),
                    Ipv4Packet::new(&ip).unwrap().get_checksum()
                );
                tcp::ipv4_checksum(&t, &a, &b)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => tcp::ipv6_checksum(&t, &a, &b),
            _ => unreachable!(),
        };
        assert_eq!(t.get_checksum(), want);
        assert_ne!(want, 0);
    }
}

#[test]
fn known_checksum_of_a_v4_rst() {
    // The ones' complement sum of the whole TCP segment plus pseudo-header is 0xffff
    // when the checksum is right (RFC 1071).
    let spec = SegmentSpec::rst(addr("127.0.0.1:80"), addr("127.0.0.1:40000"), 1000, 7);
    let ip = build(&spec).unwrap();
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    add(&ip[12..20]);
    add(&[0, 6]);
    add(&((ip.len() - 20) as u16).to_be_bytes());
    add(&ip[20..]);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    assert_eq!(sum, 0xffff);
}

#[test]
fn fin_with_timestamps_and_rst_shapes() {
    let mut fin = SegmentSpec::fin(addr("127.0.0.1:80"), addr("127.0.0.1:4000"), 5, 6, 512);
    fin.options.timestamps = Some((11, 22));
    let bytes = build(&fin).unwrap();
    let s = tcp_of(parse_ip(&bytes).unwrap());
    assert_eq!(s.flags, TcpFlags::FIN | TcpFlags::ACK);
    assert_eq!(s.options.timestamps, Some((11, 22)));
    assert_eq!((s.window, s.seq_len()), (512, 1));
    let rst = SegmentSpec::rst(addr("[::1]:80"), addr("[::1]:4000"), 5, 6);
    let bytes = build(&rst).unwrap();
    let s = tcp_of(parse_ip(&bytes).unwrap());
    assert_eq!((s.flags, s.window), (TcpFlags::RST | TcpFlags::ACK, 0));
    let mixed = SegmentSpec::rst(addr("[::1]:80"), addr("127.0.0.1:4000"), 5, 6);
    assert!(matches!(
        build(&mixed),
        Err(WireError::MixedFamilies { .. })
    ));
}

#[test]
fn ipv4_options_padding_and_payload_are_bounded_by_lengths() {
    let spec = SegmentSpec::syn(addr("10.0.0.1:1"), addr("10.0.0.2:2"), 1, 2);
    let built = build(&spec).unwrap();
    // Insert 8 bytes of IPv4 options (NOP, NOP, ..., EOL) and a 3-byte payload, then
    // pad the frame the way Ethernet does.
    let mut ip = built[..20].to_vec();
    ip[0] = 0x47;
    ip.extend_from_slice(&[1, 1, 1, 1, 1, 1, 1, 0]);
    ip.extend_from_slice(&built[20..]);
    ip.extend_from_slice(b"abc");
    let total = ip.len() as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0xee; 10]);
    let s = tcp_of(parse_ip(&ip).unwrap());
    assert_eq!(s.payload, b"abc");
    assert_eq!(s.dst, addr("10.0.0.2:2"));
    // A capture cut short keeps what there is and says so.
    let cut = &ip[..ip.len() - 12];
    let s = tcp_of(parse_ip(cut).unwrap());
    assert!(s.truncated);
    assert_eq!(s.payload, b"a");
}

#[test]
fn vlan_tagged_frames_and_ipv6_extension_headers() {
    let ip = build(&SegmentSpec::syn(
        addr("10.0.0.1:1"),
        addr("10.0.0.2:2"),
        1,
        2,
    ))
    .unwrap();
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]);
    f.extend_from_slice(&ip);
    assert!(matches!(
        parse_frame(LinkType::Ethernet, &f),
        Ok(Packet::Tcp(_))
    ));

    let v6 = build(&SegmentSpec::syn(addr("[::1]:1"), addr("[::2]:2"), 1, 2)).unwrap();
    // Hop-by-hop (8 bytes, next = TCP) in front of TCP.
    let mut with_ext = v6[..40].to_vec();
    with_ext[6] = 0;
    let pl = (v6.len() - 40 + 8) as u16;
    with_ext[4..6].copy_from_slice(&pl.to_be_bytes());
    with_ext.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    with_ext.extend_from_slice(&v6[40..]);
    assert_eq!(tcp_of(parse_ip(&with_ext).unwrap()).dst, addr("[::2]:2"));
    // A non-first fragment.
    let mut frag = v6[..40].to_vec();
    frag[6] = 44;
    frag.extend_from_slice(&[6, 0, 0x00, 0x08, 0, 0, 0, 1]);
    frag.extend_from_slice(&v6[40..]);
    assert_eq!(parse_ip(&frag), Err(WireError::Fragment));
}

#[test]
fn icmp_unreachable_quotes_the_probe() {
    let syn = build(&SegmentSpec::syn(
        addr("10.0.0.1:61000"),
        addr("10.0.0.2:80"),
        77,
        2,
    ))
    .unwrap();
    let mut icmp = vec![3, 13, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&syn[..28]);
    let mut ip = build(&SegmentSpec::rst(
        addr("10.0.0.9:0"),
        addr("10.0.0.1:0"),
        0,
        0,
    ))
    .unwrap();
    ip.truncate(20);
    ip[9] = 1;
    ip.extend_from_slice(&icmp);
    let total = ip.len() as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    match parse_ip(&ip).unwrap() {
        Packet::Unreachable(u) => {
            assert_eq!(u.from, "10.0.0.9".parse::<IpAddr>().unwrap());
            assert_eq!((u.icmp_type, u.code, u.seq), (3, 13, 77));
            assert_eq!(
                (u.src, u.dst),
                (addr("10.0.0.1:61000"), addr("10.0.0.2:80"))
            );
        }
        other => panic!("{other:?}"),
    }
    // An echo request is not an unreachable.
    let echo_at = 20;
    ip[echo_at] = 8;
    assert_eq!(
        parse_ip(&ip),
        Err(WireError::NotUnreachable { icmp_type: 8 })
    );
}

#[test]
fn truncated_and_hostile_inputs_are_errors_not_panics() {
    let v4 = build(&SegmentSpec::syn(
        addr("10.0.0.1:1"),
        addr("10.0.0.2:2"),
        1,
        2,
    ))
    .unwrap();
    let v6 = build(&SegmentSpec::syn(addr("[::1]:1"), addr("[::2]:2"), 1, 2)).unwrap();
    for good in [&v4, &v6] {
        for len in 0..good.len() {
            let _ = parse_ip(&good[..len]);
            let _ = parse_frame(LinkType::Ethernet, &good[..len]);
        }
    }
    assert!(matches!(parse_ip(&[]), Err(WireError::Truncated { .. })));
    assert_eq!(
        parse_ip(&[0x50; 40]),
        Err(WireError::IpVersion { version: 5 })
    );
    // IHL below 5.
    let mut bad = v4.clone();
    bad[0] = 0x44;
    assert!(matches!(
        parse_ip(&bad),
        Err(WireError::HeaderLength { .. })
    ));
    // IHL beyond the bytes.
    bad[0] = 0x4f;
    assert!(matches!(
        parse_ip(&bad[..40]),
        Err(WireError::Truncated { .. })
    ));
    // Total length below the header.
    let mut bad = v4.clone();
    bad[2..4].copy_from_slice(&10u16.to_be_bytes());
    assert!(matches!(
        parse_ip(&bad),
        Err(WireError::HeaderLength { .. })
    ));
    // TCP data offset below 5 and beyond the segment.
    let mut bad = v4.clone();
    bad[32] = 0x20;
    assert!(matches!(
        parse_ip(&bad),
        Err(WireError::HeaderLength { .. })
    ));
    bad[32] = 0xf0;
    assert!(matches!(parse_ip(&bad), Err(WireError::Truncated { .. })));
    // Option lengths that lie: kind 2 with length 0, 1 and 255.
    for len in [0u8, 1, 255] {
        let mut bad = v4.clone();
        bad[41] = len;
        let _ = parse_ip(&bad);
    }
    // Not IP, not TCP.
    assert_eq!(
        parse_frame(LinkType::Ethernet, &frame(&v4, [0x08, 0x06])),
        Err(WireError::NotIp { ethertype: 0x0806 })
    );
    let mut udp = v4.clone();
    udp[9] = 17;
    assert_eq!(parse_ip(&udp), Err(WireError::NotTcp { protocol: 17 }));
    // A non-first IPv4 fragment.
    let mut frag = v4.clone();
    frag[6..8].copy_from_slice(&[0x00, 0x10]);
    assert_eq!(parse_ip(&frag), Err(WireError::Fragment));
}

#[test]
fn link_types_from_arphrd() {
    assert_eq!(LinkType::from_arphrd(1), Some(LinkType::Ethernet));
    assert_eq!(LinkType::from_arphrd(772), Some(LinkType::Ethernet));
    assert_eq!(LinkType::from_arphrd(65534), Some(LinkType::RawIp));
    assert_eq!(LinkType::from_arphrd(32), None);
}
