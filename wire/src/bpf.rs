//! The classic BPF socket filter of every AF_PACKET capture of faultline (the analyzer's
//! raw backend, `packets syn` and `packets inject`): keep TCP segments with one of the
//! ports asked for as source or destination (every TCP segment when none), plus ICMP and
//! ICMPv6 errors (which quote the segment they answer); drop the rest in the kernel,
//! before it is copied to the capture socket.
//!
//! Written here rather than compiled by libpcap: the program is a dozen instructions of
//! one fixed shape, and linking libpcap for it would add a C dependency to the analyzer.
//! The instruction encoding is `include/uapi/linux/filter.h` and `bpf_common.h`; the
//! program is the one `tcpdump -d 'tcp port P or icmp or icmp6'` prints, minus the IPv6
//! fragment cases.
use crate::packet::LinkType;

const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const LD_H_IND: u16 = 0x48;
const LDX_B_MSH: u16 = 0xb1;
const JEQ_K: u16 = 0x15;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;

const ETH_P_IP: u32 = 0x0800;
const ETH_P_IPV6: u32 = 0x86dd;
const IPPROTO_ICMP: u32 = 1;
const IPPROTO_TCP: u32 = 6;
const IPPROTO_ICMPV6: u32 = 58;

#[derive(Clone, Copy)]
enum Target {
    Accept,
    Drop,
    Next,
    Label(usize),
}

#[derive(Clone, Copy)]
enum Insn {
    Stmt(u16, u32),
    Jump(u16, u32, Target, Target),
}

/// Assembles `prog` with labels resolved: `labels[i]` is the instruction index of label i.
fn assemble(prog: &[Insn], labels: &[usize], snap: u32) -> Vec<libc::sock_filter> {
    let accept = prog.len();
    let drop = accept + 1;
    let mut out: Vec<libc::sock_filter> = prog
        .iter()
        .enumerate()
        .map(|(i, insn)| match *insn {
            Insn::Stmt(code, k) => libc::sock_filter {
                code,
                jt: 0,
                jf: 0,
                k,
            },
            Insn::Jump(code, k, t, f) => {
                let off = |t: Target| {
                    let to = match t {
                        Target::Accept => accept,
                        Target::Drop => drop,
                        Target::Next => i + 1,
                        Target::Label(l) => labels.get(l).copied().unwrap_or(drop),
                    };
                    u8::try_from(to.saturating_sub(i + 1)).unwrap_or(u8::MAX)
                };
                libc::sock_filter {
                    code,
                    jt: off(t),
                    jf: off(f),
                    k,
                }
            }
        })
        .collect();
    out.push(libc::sock_filter {
        code: RET_K,
        jt: 0,
        jf: 0,
        k: snap,
    });
    out.push(libc::sock_filter {
        code: RET_K,
        jt: 0,
        jf: 0,
        k: 0,
    });
    out
}

/// Port tests on the halfword just loaded: accept on a match, fall through otherwise.
fn port_tests(prog: &mut Vec<Insn>, ports: &[u16]) {
    for p in ports {
        prog.push(Insn::Jump(
            JEQ_K,
            u32::from(*p),
            Target::Accept,
            Target::Next,
        ));
    }
}

/// The filter for `link` frames. At most 64 ports (jump offsets are 8 bits).
pub fn tcp_ports(link: LinkType, ports: &[u16], snap: u32) -> Vec<libc::sock_filter> {
    let ports = &ports[..ports.len().min(64)];
    let l2 = match link {
        LinkType::Ethernet => 14u32,
        LinkType::RawIp => 0,
    };
    let mut prog = Vec::new();
    let mut labels = vec![0usize; 3];
    const V4: usize = 0;
    const V6: usize = 1;
    const V4TCP: usize = 2;
    match link {
        LinkType::Ethernet => {
            prog.push(Insn::Stmt(LD_H_ABS, 12));
            prog.push(Insn::Jump(JEQ_K, ETH_P_IP, Target::Label(V4), Target::Next));
            prog.push(Insn::Jump(
                JEQ_K,
                ETH_P_IPV6,
                Target::Label(V6),
                Target::Drop,
            ));
        }
        LinkType::RawIp => {
            // The version nibble: 0x40 IPv4, 0x60 IPv6.
            prog.push(Insn::Stmt(LD_B_ABS, 0));
            prog.push(Insn::Jump(
                JSET_K,
                0x20,
                Target::Label(V6),
                Target::Label(V4),
            ));
        }
    }
    // IPv4: protocol at 9, fragment offset at 6, header length from the first byte.
    labels[V4] = prog.len();
    prog.push(Insn::Stmt(LD_B_ABS, l2 + 9));
    prog.push(Insn::Jump(
        JEQ_K,
        IPPROTO_TCP,
        Target::Label(V4TCP),
        Target::Next,
    ));
    prog.push(Insn::Jump(
        JEQ_K,
        IPPROTO_ICMP,
        Target::Accept,
        Target::Drop,
    ));
    labels[V4TCP] = prog.len();
    if ports.is_empty() {
        prog.push(Insn::Jump(
            JEQ_K,
            IPPROTO_TCP,
            Target::Accept,
            Target::Accept,
        ));
    } else {
        prog.push(Insn::Stmt(LD_H_ABS, l2 + 6));
        prog.push(Insn::Jump(JSET_K, 0x1fff, Target::Drop, Target::Next));
        prog.push(Insn::Stmt(LDX_B_MSH, l2));
        prog.push(Insn::Stmt(LD_H_IND, l2));
        port_tests(&mut prog, ports);
        prog.push(Insn::Stmt(LD_H_IND, l2 + 2));
        port_tests(&mut prog, ports);
        prog.push(Insn::Jump(JEQ_K, 0, Target::Drop, Target::Drop));
    }
    // IPv6: next header at 6 (extension headers not followed), ports at 40 and 42.
    labels[V6] = prog.len();
    prog.push(Insn::Stmt(LD_B_ABS, l2 + 6));
    if ports.is_empty() {
        prog.push(Insn::Jump(JEQ_K, IPPROTO_TCP, Target::Accept, Target::Next));
    } else {
        prog.push(Insn::Jump(
            JEQ_K,
            IPPROTO_ICMPV6,
            Target::Accept,
            Target::Next,
        ));
        prog.push(Insn::Jump(JEQ_K, IPPROTO_TCP, Target::Next, Target::Drop));
        prog.push(Insn::Stmt(LD_H_ABS, l2 + 40));
        port_tests(&mut prog, ports);
        prog.push(Insn::Stmt(LD_H_ABS, l2 + 42));
        port_tests(&mut prog, ports);
        prog.push(Insn::Jump(JEQ_K, 0, Target::Drop, Target::Drop));
        return assemble(&prog, &labels, snap);
    }
    prog.push(Insn::Jump(
        JEQ_K,
        IPPROTO_ICMPV6,
        Target::Accept,
        Target::Drop,
    ));
    assemble(&prog, &labels, snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny interpreter for the instructions above, to check the program's answers.
    fn run(prog: &[libc::sock_filter], pkt: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let ld = |off: usize, n: usize| -> Option<u32> {
            let b = pkt.get(off..off + n)?;
            Some(b.iter().fold(0u32, |acc, v| (acc << 8) | u32::from(*v)))
        };
        for _ in 0..1000 {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_H_ABS => match ld(i.k as usize, 2) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LD_B_ABS => match ld(i.k as usize, 1) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LD_H_IND => match ld((x + i.k) as usize, 2) {
                    Some(v) => a = v,
                    None => return 0,
                },
                LDX_B_MSH => match ld(i.k as usize, 1) {
                    Some(v) => x = (v & 0xf) * 4,
                    None => return 0,
                },
                JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                JSET_K => pc += usize::from(if a & i.k != 0 { i.jt } else { i.jf }),
                RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
        panic!("no return");
    }

    fn v4(proto: u8, sport: u16, dport: u16, frag: u16) -> Vec<u8> {
        let mut p = vec![0u8; 14 + 20 + 20];
        p[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        p[14] = 0x45;
        p[14 + 6..14 + 8].copy_from_slice(&frag.to_be_bytes());
        p[14 + 9] = proto;
        p[34..36].copy_from_slice(&sport.to_be_bytes());
        p[36..38].copy_from_slice(&dport.to_be_bytes());
        p
    }

    fn v6(next: u8, sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 14 + 40 + 20];
        p[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        p[14] = 0x60;
        p[14 + 6] = next;
        p[54..56].copy_from_slice(&sport.to_be_bytes());
        p[56..58].copy_from_slice(&dport.to_be_bytes());
        p
    }

    #[test]
    fn keeps_the_ports_asked_for_and_icmp_errors() {
        let f = tcp_ports(LinkType::Ethernet, &[443, 8080], 9999);
        assert_eq!(
            run(&f, &v4(6, 50000, 443, 0x4000)),
            9999,
            "dst port, DF set"
        );
        assert_eq!(run(&f, &v4(6, 8080, 50000, 0)), 9999, "src port");
        assert_eq!(run(&f, &v4(6, 50000, 80, 0)), 0);
        assert_eq!(run(&f, &v4(6, 50000, 443, 0x0010)), 0, "a later fragment");
        assert_eq!(run(&f, &v4(17, 50000, 443, 0)), 0, "UDP");
        assert_eq!(run(&f, &v4(1, 0, 0, 0)), 9999, "ICMP");
        assert_eq!(run(&f, &v6(6, 50000, 8080)), 9999);
        assert_eq!(run(&f, &v6(6, 50000, 81)), 0);
        assert_eq!(run(&f, &v6(58, 0, 0)), 9999, "ICMPv6");
        let mut arp = v4(6, 1, 443, 0);
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(run(&f, &arp), 0);
        assert_eq!(run(&f, &[0u8; 5]), 0, "short frame");
    }

    #[test]
    fn without_ports_keeps_all_tcp() {
        let f = tcp_ports(LinkType::Ethernet, &[], 100);
        assert_eq!(run(&f, &v4(6, 1, 2, 0)), 100);
        assert_eq!(run(&f, &v6(6, 1, 2)), 100);
        assert_eq!(run(&f, &v4(17, 1, 2, 0)), 0);
    }

    #[test]
    fn raw_ip_framing() {
        let f = tcp_ports(LinkType::RawIp, &[443], 100);
        assert_eq!(run(&f, &v4(6, 1, 443, 0)[14..]), 100);
        assert_eq!(run(&f, &v4(6, 1, 444, 0)[14..]), 0);
        assert_eq!(run(&f, &v6(6, 443, 1)[14..]), 100);
    }
}
