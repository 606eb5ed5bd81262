//! ICMP and ICMPv6 destination unreachable messages quoting a followed connection's
//! segment: a router or firewall rejecting it, and what the kernel makes of that.
use analyzer_common::EventKind;
use wire::packet::Unreachable;

use super::{
    Tracker,
    conn::{Ctx, ends_mut, event, wire},
};
use crate::{
    event::{Observed, wire_fact::WireFact},
    names::TcpState,
};

impl Tracker {
    /// Takes an ICMP/ICMPv6 destination unreachable: for a connection of ours in
    /// SYN_SENT, the kernel delivers the error and ends the connect (`tcp_v4_err`); in
    /// other states it is a soft error, kept as a fact only.
    pub fn unreachable(
        &mut self,
        u: &Unreachable,
        ts_ns: u64,
        ts_unix_ns: u64,
        out: &mut Vec<Observed>,
    ) {
        out.append(&mut self.ended);
        let key = (u.src, u.dst);
        let Some(flow) = self.flows.get_mut(&key) else {
            self.stats.stray_segments += 1;
            return;
        };
        let errno = icmp_errno(u.from.is_ipv4(), u.code);
        let ctx = Ctx { ts_ns, ts_unix_ns };
        out.push(wire(
            flow,
            ctx,
            WireFact::IcmpUnreachable {
                from: u.from,
                icmp_type: u.icmp_type,
                code: u.code,
                errno,
            },
        ));
        let (mut client, _) = ends_mut(&mut flow.ends, flow.client, flow.server, 0);
        if client.end.state != TcpState::SynSent {
            return;
        }
        if client.end.local {
            let mut ev = event(
                EventKind::ErrorReport,
                ctx,
                client.end.skaddr,
                client.local,
                client.remote,
                None,
            );
            ev.errno = Some(errno);
            out.push(Observed::Kernel(ev));
        }
        client.close(ctx, out);
        if let Some(mut flow) = self.flows.remove(&key) {
            flow.finish(ts_unix_ns, out);
        }
    }
}

/// The errno the kernel makes of an ICMP destination unreachable code
/// (`icmp_err_convert` in net/ipv4/icmp.c, `icmpv6_err_convert` in net/ipv6/icmp.c).
fn icmp_errno(v4: bool, code: u8) -> i32 {
    if v4 {
        match code {
            0 | 6 | 9 | 11 => libc::ENETUNREACH,
            2 => libc::ENOPROTOOPT,
            3 => libc::ECONNREFUSED,
            4 => libc::EMSGSIZE,
            5 => libc::EOPNOTSUPP,
            7 => libc::EHOSTDOWN,
            8 => libc::ENONET,
            _ => libc::EHOSTUNREACH,
        }
    } else {
        match code {
            0 => libc::ENETUNREACH,
            1 | 5 | 6 => libc::EACCES,
            4 => libc::ECONNREFUSED,
            _ => libc::EHOSTUNREACH,
        }
    }
}
