//! Local evidence for a silent port: the LISTEN sockets of this network namespace and
//! their accept queues, and the kernel's listen-overflow counters. Parsers are pure;
//! the readers beside them only fetch the text.
//!
//! Sources: `/proc/net/tcp{,6}` (net/ipv4/tcp_ipv4.c get_tcp4_sock: for a LISTEN socket
//! `rx_queue` is `sk_ack_backlog`, the accept-queue length, but `tx_queue` is
//! `write_seq - snd_una`, always 0, not the backlog); the backlog itself
//! (`sk_max_ack_backlog`) only comes through sock_diag, read here with iproute2's `ss`
//! (its Send-Q column for a listener, net/ipv4/tcp_diag.c tcp_diag_get_info); and
//! `/proc/net/netstat` TcpExt ListenOverflows / ListenDrops (tcp_conn_request counts both
//! when sk_acceptq_is_full drops a SYN).
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    process::Command,
};

use serde::Serialize;

/// TCP_LISTEN in `/proc/net/tcp`'s `st` column (include/net/tcp_states.h).
const TCP_LISTEN: u8 = 0x0a;

/// A LISTEN socket of this namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Listener {
    pub local: SocketAddr,
    /// Connections waiting in the accept queue (`sk_ack_backlog`).
    pub accept_queue: u32,
    /// The listen backlog (`sk_max_ack_backlog`), when `ss` could tell.
    pub backlog: Option<u32>,
}

impl Listener {
    /// The kernel drops SYNs when the queue is *above* the backlog: sk_acceptq_is_full is
    /// `sk_ack_backlog > sk_max_ack_backlog` (include/net/sock.h; the `>` is deliberate,
    /// commit 64a146513f8f), so a listener with backlog 1 holds 2 connections.
    pub fn queue_full(&self) -> Option<bool> {
        self.backlog.map(|b| self.accept_queue > b)
    }

    /// Whether this listener takes connections for `target` (its address or a wildcard;
    /// an IPv6 wildcard listener takes IPv4 too unless it is v6only, which procfs does
    /// not show, so it is counted).
    pub fn serves(&self, target: SocketAddr) -> bool {
        if self.local.port() != target.port() {
            return false;
        }
        let ip = self.local.ip();
        ip == target.ip()
            || ip.is_unspecified() && (ip.is_ipv6() || target.is_ipv4())
            || matches!((ip, target.ip()), (IpAddr::V6(l), IpAddr::V4(t)) if l.to_ipv4_mapped() == Some(t))
    }
}

/// The LISTEN sockets in a `/proc/net/tcp` or `/proc/net/tcp6` text. Lines that do not
/// parse are skipped (the header, a future column layout).
pub fn parse_proc_net_tcp(text: &str) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let _slot = f.next()?;
            let local = f.next()?;
            let _remote = f.next()?;
            let state = u8::from_str_radix(f.next()?, 16).ok()?;
            let (_tx, rx) = f.next()?.split_once(':')?;
            if state != TCP_LISTEN {
                return None;
            }
            Some(Listener {
                local: parse_hex_addr(local)?,
                accept_queue: u32::from_str_radix(rx, 16).ok()?,
                backlog: None,
            })
        })
        .collect()
}

/// `0100007F:A2C2` (IPv4, one host-order u32) or 32 hex digits (IPv6, four host-order
/// u32s), as seq_printf("%08X") writes them on a little-endian machine.
fn parse_hex_addr(s: &str) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words = (0..addr.len() / 8)
        .map(|i| {
            addr.get(i * 8..i * 8 + 8)
                .and_then(|w| u32::from_str_radix(w, 16).ok())
        })
        .collect::<Option<Vec<u32>>>()?;
    let ip = match words.as_slice() {
        [w] => IpAddr::V4(Ipv4Addr::from(w.to_ne_bytes())),
        [a, b, c, d] => {
            let mut o = [0u8; 16];
            for (chunk, w) in o.chunks_mut(4).zip([a, b, c, d]) {
                chunk.copy_from_slice(&w.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// `(local address, Recv-Q, Send-Q)` of each line of `ss -Hltn`: for a listener Recv-Q is
/// the accept queue and Send-Q the backlog.
pub fn parse_ss_listeners(text: &str) -> Vec<(SocketAddr, u32, u32)> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // State Recv-Q Send-Q Local:Port Peer:Port [Process]
            let [state, recv_q, send_q, local, ..] = f.as_slice() else {
                return None;
            };
            if *state != "LISTEN" {
                return None;
            }
            let (host, port) = local.rsplit_once(':')?;
            // ss writes `[::1]`, `*` for any address, and `%lo` for a bound device.
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let host = host.split('%').next().unwrap_or(host);
            let ip: IpAddr = match host {
                "*" | "0.0.0.0" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                h => h.parse().ok()?,
            };
            Some((
                SocketAddr::new(ip, port.parse().ok()?),
                recv_q.parse().ok()?,
                send_q.parse().ok()?,
            ))
        })
        .collect()
}

/// TcpExt counters of `/proc/net/netstat` the verdict reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ListenCounters {
    pub listen_overflows: u64,
    pub listen_drops: u64,
}

impl ListenCounters {
    /// Growth from `before` to `self` (counters only grow; a wrap reads as 0).
    pub fn since(&self, before: &Self) -> Self {
        Self {
            listen_overflows: self
                .listen_overflows
                .saturating_sub(before.listen_overflows),
            listen_drops: self.listen_drops.saturating_sub(before.listen_drops),
        }
    }
}

/// ListenOverflows and ListenDrops from a `/proc/net/netstat` text: a `TcpExt:` line of
/// names, then one of values.
pub fn parse_netstat(text: &str) -> Option<ListenCounters> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next()?.split_whitespace();
    let values = lines.next()?.split_whitespace();
    let mut out = ListenCounters::default();
    let mut found = 0;
    for (name, value) in names.zip(values) {
        match name {
            "ListenOverflows" => out.listen_overflows = value.parse().ok()?,
            "ListenDrops" => out.listen_drops = value.parse().ok()?,
            _ => continue,
        }
        found += 1;
    }
    (found == 2).then_some(out)
}

/// Reads the counters of this namespace; `None` when procfs does not have them.
pub fn read_counters() -> Option<ListenCounters> {
    parse_netstat(&std::fs::read_to_string("/proc/net/netstat").ok()?)
}

/// The listeners of this namespace that serve `target`, with their backlog from `ss`
/// when it runs. Procfs is read for presence and queue length whatever `ss` says.
pub fn read_listeners(target: SocketAddr) -> Vec<Listener> {
    let mut found: Vec<Listener> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| parse_proc_net_tcp(&t))
        .filter(|l| l.serves(target))
        .collect();
    if found.is_empty() {
        return found;
    }
    let ss = Command::new("ss")
        .args(["-Hltn"])
        .output()
        .ok()
        .filter(|o| o.status.success());
    match ss {
        Some(out) => {
            let rows = parse_ss_listeners(&String::from_utf8_lossy(&out.stdout));
            for l in &mut found {
                let same = |a: &SocketAddr| {
                    a.port() == l.local.port()
                        && (a.ip() == l.local.ip()
                            || a.ip().is_unspecified() && l.local.ip().is_unspecified())
                };
                if let Some((_, _, backlog)) = rows.iter().find(|(a, _, _)| same(a)) {
                    l.backlog = Some(*backlog);
                }
            }
        }
        None => tracing::debug!("ss did not run: the backlog of a listener stays unknown"),
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:E3F5 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 10841083 4 0 100 0 0 10 0
   1: 0100007F:E3F5 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 10841084 1 0 20 4 30 10 -1
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
garbage
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0
";

    #[test]
    fn procfs_listeners_with_accept_queue() {
        let l = parse_proc_net_tcp(TCP);
        assert_eq!(l.len(), 2, "{l:?}");
        assert_eq!(l[0].local, "127.0.0.1:58357".parse().unwrap());
        assert_eq!(l[0].accept_queue, 3);
        assert_eq!(l[1].local, "0.0.0.0:22".parse().unwrap());
        let l6 = parse_proc_net_tcp(TCP6);
        assert_eq!(l6[0].local, "[::1]:8080".parse().unwrap());
        assert!(parse_proc_net_tcp("").is_empty());
        assert!(parse_proc_net_tcp("h\n 0: zz:zz 0 0A 1:2").is_empty());
    }

    #[test]
    fn listener_serves_its_address_and_wildcards() {
        let l = |s: &str| Listener {
            local: s.parse().unwrap(),
            accept_queue: 0,
            backlog: None,
        };
        let t: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert!(l("127.0.0.1:80").serves(t));
        assert!(l("0.0.0.0:80").serves(t));
        assert!(l("[::]:80").serves(t));
        assert!(!l("127.0.0.2:80").serves(t));
        assert!(!l("127.0.0.1:81").serves(t));
        assert!(!l("0.0.0.0:80").serves("[::1]:80".parse().unwrap()));
    }

    #[test]
    fn queue_full_is_above_the_backlog() {
        let mut l = Listener {
            local: "127.0.0.1:1".parse().unwrap(),
            accept_queue: 1,
            backlog: Some(1),
        };
        assert_eq!(l.queue_full(), Some(false));
        l.accept_queue = 2;
        assert_eq!(l.queue_full(), Some(true));
        l.backlog = None;
        assert_eq!(l.queue_full(), None);
    }

    #[test]
    fn ss_columns() {
        let rows = parse_ss_listeners(
            "LISTEN 3      5          127.0.0.1:58357      0.0.0.0:*\n\
             LISTEN 0      4096               *:8080             *:*\n\
             LISTEN 2      1              [::1]:9000          [::]:*\n\
             LISTEN 0      10     127.0.0.1%lo:53          0.0.0.0:*\n\
             ESTAB  0      0          127.0.0.1:1          127.0.0.1:2\n",
        );
        assert_eq!(rows.len(), 4, "{rows:?}");
        assert_eq!(rows[0], ("127.0.0.1:58357".parse().unwrap(), 3, 5));
        assert_eq!(rows[1].0, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(rows[2], ("[::1]:9000".parse().unwrap(), 2, 1));
        assert_eq!(rows[3].0, "127.0.0.1:53".parse().unwrap());
    }

    #[test]
    fn netstat_counters() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 34 35\nIpExt: A\nIpExt: 1\n";
        let c = parse_netstat(text).unwrap();
        assert_eq!((c.listen_overflows, c.listen_drops), (34, 35));
        let later = ListenCounters {
            listen_overflows: 40,
            listen_drops: 30,
        };
        assert_eq!(later.since(&c).listen_overflows, 6);
        assert_eq!(later.since(&c).listen_drops, 0);
        assert_eq!(parse_netstat("TcpExt: A B\nTcpExt: 1 2\n"), None);
        assert_eq!(parse_netstat(""), None);
    }
}
