//! Rules for failures before a connection exists: the generator itself, local
//! resources, refused and unanswered SYNs.
use events::model::Class;

use super::{Case, Confidence, Evidence, Level, Verdict, conn_label, ms, reset_words};
use crate::names::TcpState;

/// Drop reasons that mean a listener turned a SYN away.
const LISTEN_DROP_REASONS: [&str; 3] =
    ["TCP_LISTEN_OVERFLOW", "TCP_REQQFULLDROP", "SOCKET_BACKLOG"];

/// loadgen `client_overload`: the request could not be sent at its intended time.
pub fn generator_overload(case: &Case<'_>) -> Option<Verdict> {
    let r = case
        .request
        .filter(|r| r.class == Some(Class::ClientOverload))?;
    let mut evidence: Vec<Evidence> = case.request_evidence().into_iter().collect();
    evidence.push(Evidence::loadgen(
        case.intended_unix_ns,
        format!("schedule lag {} at the intended send time", ms(r.lag)),
    ));
    Some(Verdict {
        cause: "generator_overload",
        detail: None,
        title: "the load generator fell behind its schedule".into(),
        confidence: Confidence::new(Level::High, "loadgen measured its own schedule lag"),
        evidence,
        hint: "give loadgen more CPU, connections or workers, or lower the rate: these requests were not sent on time, so they say nothing about the server".into(),
    })
}

/// The ephemeral-port facts of the host, as evidence.
fn port_pressure(case: &Case<'_>) -> Vec<Evidence> {
    let h = case.host;
    let mut out = Vec::new();
    if let Some((lo, hi)) = h.port_range {
        out.push(Evidence::host(format!(
            "ephemeral port range {lo}-{hi} ({} ports)",
            u32::from(hi.saturating_sub(lo)) + 1
        )));
    }
    for d in h.busiest_destinations.iter().take(3) {
        out.push(Evidence::host(format!(
            "{} local ports in use towards {} ({} in TIME_WAIT)",
            d.local_ports_in_use, d.dest, d.time_wait
        )));
    }
    out
}

/// loadgen `local_port_exhausted`: connect() found no free local port (EADDRNOTAVAIL).
pub fn local_port_exhaustion(case: &Case<'_>) -> Option<Verdict> {
    let by_loadgen = case.class() == Some(Class::LocalPortExhausted);
    let kernel = case.kernel.filter(|k| k.connect_without_port());
    if !(by_loadgen || case.kernel_decides() && kernel.is_some()) {
        return None;
    }
    let mut evidence: Vec<Evidence> = case.request_evidence().into_iter().collect();
    if let Some(k) = kernel {
        evidence.push(Evidence::kernel(
            k.last_unix_ns,
            format!(
                "connect() to {} went SYN_SENT→CLOSE without a local port: no SYN sent",
                k.remote.map_or("?".to_owned(), |r| r.to_string())
            ),
        ));
    }
    evidence.extend(port_pressure(case));
    let what = if by_loadgen {
        "connect() returned EADDRNOTAVAIL"
    } else {
        "the kernel closed the connecting socket before choosing a local port"
    };
    let why = match (case.host.port_range, case.host.busiest_destinations.first()) {
        (Some((lo, hi)), Some(d)) => format!(
            "{what}; {} of {} ephemeral ports in use towards {}",
            d.local_ports_in_use,
            u32::from(hi.saturating_sub(lo)) + 1,
            d.dest
        ),
        _ => what.into(),
    };
    Some(Verdict {
        cause: "local_port_exhaustion",
        detail: None,
        title: "the load host ran out of local ports".into(),
        confidence: Confidence::new(Level::High, why),
        evidence,
        hint: "reuse connections (keep-alive), widen net.ipv4.ip_local_port_range, add source addresses or destination addresses; TIME_WAIT holds a port for 60 s after each close".into(),
    })
}

/// loadgen `fd_exhausted`: the generator ran out of file descriptors (EMFILE/ENFILE).
pub fn local_fd_exhaustion(case: &Case<'_>) -> Option<Verdict> {
    case.request
        .filter(|r| r.class == Some(Class::FdExhausted))?;
    Some(Verdict {
        cause: "local_fd_exhaustion",
        detail: None,
        title: "the load host ran out of file descriptors".into(),
        confidence: Confidence::new(Level::High, "socket() or accept returned EMFILE/ENFILE"),
        evidence: case.request_evidence().into_iter().collect(),
        hint: "raise the open-files limit (ulimit -n, LimitNOFILE, fs.file-max) or cap loadgen's connections".into(),
    })
}

/// An RST answered our SYN: the kernel saw an RST in SYN_SENT, or loadgen
/// `connect_refused`.
pub fn connect_refused(case: &Case<'_>) -> Option<Verdict> {
    let kernel = case.kernel.filter(|k| {
        k.facts.rst_state == Some(TcpState::SynSent)
            || (k.facts.errno == Some(libc::ECONNREFUSED) && k.facts.established_unix_ns.is_none())
    });
    let by_loadgen = case.class() == Some(Class::ConnectRefused);
    if !(by_loadgen || case.kernel_decides() && kernel.is_some()) {
        return None;
    }
    let mut evidence: Vec<Evidence> = case.request_evidence().into_iter().collect();
    if let Some(k) = kernel {
        let f = &k.facts;
        if let Some(ts) = f.rst_received_unix_ns {
            evidence.push(Evidence::kernel(
                ts,
                format!("RST received in SYN_SENT on {}", conn_label(k)),
            ));
        }
        if let Some(r) = &f.peer_rst_sent {
            evidence.push(Evidence::kernel(
                r.ts_unix_ns,
                format!(
                    "this host's stack answered the SYN with an RST{}",
                    reset_words(r)
                ),
            ));
        }
        if let (Some(e), Some(ts)) = (f.errno, f.errno_unix_ns) {
            evidence.push(Evidence::kernel(
                ts,
                format!("errno {e} delivered to the socket"),
            ));
        }
    }
    let confidence = match (by_loadgen, kernel.is_some()) {
        (true, true) => Confidence::new(
            Level::High,
            "loadgen got ECONNREFUSED and the kernel saw the RST in SYN_SENT on the same socket",
        ),
        (false, _) => Confidence::new(Level::High, "the kernel saw an RST answer the SYN"),
        (true, false) => Confidence::new(
            Level::Medium,
            "connect() returned ECONNREFUSED; no kernel record of the socket (an RST, or an ICMP port unreachable)",
        ),
    };
    let remote = case
        .request
        .and_then(|r| r.conn.remote)
        .or_else(|| case.kernel.and_then(|k| k.remote))
        .map_or("the target".to_owned(), |a| a.to_string());
    Some(Verdict {
        cause: "connect_refused",
        detail: None,
        title: "connection refused: an RST answered the SYN".into(),
        confidence,
        evidence,
        hint: format!(
            "nothing listens on {remote} (or a firewall rejects with RST): check that the service is up and bound to that address and port, and the load balancer's targets"
        ),
    })
}

/// SYNs unanswered: SYN retransmits and no SYN-ACK (kernel), or loadgen
/// `connect_timeout`. Listen-queue overflow evidence (host counters, listener drops)
/// raises the confidence.
pub fn listen_overflow_or_syn_drop(case: &Case<'_>) -> Option<Verdict> {
    let kernel = case.kernel.filter(|k| k.connect_unanswered());
    let by_loadgen = case.class() == Some(Class::ConnectTimeout);
    if !(by_loadgen || case.kernel_decides() && kernel.is_some()) {
        return None;
    }
    let mut evidence: Vec<Evidence> = case.request_evidence().into_iter().collect();
    let mut syn_retrans = 0;
    if let Some(k) = kernel {
        let f = &k.facts;
        syn_retrans = f.syn_retransmits;
        let start = f.syn_sent_unix_ns.unwrap_or(k.first_unix_ns);
        let last = f.last_retransmit_unix_ns.unwrap_or(k.last_unix_ns);
        evidence.push(Evidence::kernel(
            last,
            format!(
                "{} SYN retransmits over {} and no SYN-ACK on {}",
                f.syn_retransmits,
                ms(last.saturating_sub(start)),
                conn_label(k)
            ),
        ));
        if f.state == Some(TcpState::Close) {
            evidence.push(Evidence::kernel(
                k.last_unix_ns,
                "the client gave up in SYN_SENT (SYN_SENT→CLOSE)",
            ));
        }
    }
    let mut overflow = Vec::new();
    if let Some(l) = case.listener {
        for (reason, n) in l
            .drops
            .iter()
            .filter(|(r, _)| LISTEN_DROP_REASONS.contains(&r.as_str()))
        {
            overflow.push(Evidence::kernel(
                l.since_unix_ns,
                format!(
                    "this host's listener on {} dropped {n} packets ({reason})",
                    l.local
                ),
            ));
        }
    }
    for reason in LISTEN_DROP_REASONS {
        if let Some(n) = case.drop_reasons.get(reason).filter(|n| **n > 0)
            && overflow.is_empty()
        {
            overflow.push(Evidence::kernel(
                case.intended_unix_ns
                    .max(case.kernel.map_or(0, |k| k.first_unix_ns)),
                format!("the kernel dropped {n} packets with reason {reason} during the run"),
            ));
        }
    }
    for (name, v) in [
        ("ListenOverflows", case.host.listen_overflows),
        ("ListenDrops", case.host.listen_drops),
    ] {
        if let Some(n) = v.filter(|n| *n > 0) {
            overflow.push(Evidence::host(format!("{name} +{n} over the run")));
        }
    }
    let overflow_seen = !overflow.is_empty();
    evidence.extend(overflow);
    let confidence = if overflow_seen {
        Confidence::new(
            Level::High,
            "SYNs went unanswered and this host counted listen-queue overflows",
        )
    } else if syn_retrans > 0 {
        Confidence::new(
            Level::Medium,
            "SYNs retransmitted without an answer; no listen-queue overflow seen on this host (the server may be remote, or SYNs are dropped on the path)",
        )
    } else {
        Confidence::new(
            Level::Low,
            "the connect timed out; no kernel record of SYN retransmits",
        )
    };
    Some(Verdict {
        cause: "listen_overflow_or_syn_drop",
        detail: None,
        title: "SYN unanswered: listen queue overflow or SYN dropped".into(),
        confidence,
        evidence,
        hint: "the server's accept queue is full or SYNs are dropped: raise the listen backlog (listen() argument, net.core.somaxconn, net.ipv4.tcp_max_syn_backlog), make the server accept faster, or look for firewalls and SYN rate limits on the path".into(),
    })
}

#[cfg(test)]
mod tests {
    use events::model::Phase;

    use super::*;
    use crate::{
        rules::{DestPorts, fixture::*},
        table::ListenerRecord,
    };

    #[test]
    fn generator_overload_only_for_client_overload() {
        let v =
            generator_overload(&Fx::loadgen(Class::ClientOverload, Phase::Queue).case()).unwrap();
        assert_eq!(v.cause, "generator_overload");
        assert!(generator_overload(&Fx::loadgen(Class::Timeout, Phase::Body).case()).is_none());
        assert!(generator_overload(&Fx::kernel(&refused(1, 7, 0)).case()).is_none());
    }

    #[test]
    fn local_port_exhaustion_names_the_port_pressure() {
        let mut fx = Fx::loadgen(Class::LocalPortExhausted, Phase::Connect);
        fx.host.port_range = Some((32768, 60999));
        fx.host.busiest_destinations = vec![DestPorts {
            dest: SERVER.parse().unwrap(),
            local_ports_in_use: 28_000,
            time_wait: 27_000,
        }];
        let v = local_port_exhaustion(&fx.case()).unwrap();
        assert!(
            v.confidence.why.contains("28000 of 28232"),
            "{}",
            v.confidence.why
        );
        assert!(
            v.evidence
                .iter()
                .any(|e| e.what.contains("27000 in TIME_WAIT"))
        );
        assert!(
            local_port_exhaustion(&Fx::loadgen(Class::ConnectRefused, Phase::Connect).case())
                .is_none()
        );
    }

    #[test]
    fn local_port_exhaustion_from_the_kernel_alone() {
        let mut syn = state(0, 1, TcpState::Close, TcpState::SynSent);
        syn.local = Some("127.0.0.1:0".parse().unwrap());
        let mut close = state(0, 1, TcpState::SynSent, TcpState::Close);
        close.local = syn.local;
        let mut gone = destroy(0, 1, 7);
        gone.local = syn.local;
        let fx = Fx::kernel(&[syn, close, gone]);
        let v = local_port_exhaustion(&fx.case()).unwrap();
        assert!(
            v.evidence[0].what.contains("without a local port"),
            "{:?}",
            v.evidence
        );
        assert!(
            listen_overflow_or_syn_drop(&fx.case()).is_none(),
            "no SYN was sent"
        );
        assert!(local_port_exhaustion(&Fx::kernel(&backlog_full(1, 7, 0, 1)).case()).is_none());
    }

    #[test]
    fn local_fd_exhaustion_only_for_fd_exhausted() {
        assert!(
            local_fd_exhaustion(&Fx::loadgen(Class::FdExhausted, Phase::Connect).case()).is_some()
        );
        assert!(
            local_fd_exhaustion(&Fx::loadgen(Class::LocalPortExhausted, Phase::Connect).case())
                .is_none()
        );
    }

    #[test]
    fn connect_refused_from_the_kernel_alone_with_the_stack_reason() {
        let fx = Fx::kernel(&refused(1, 7, 0));
        let v = connect_refused(&fx.case()).unwrap();
        assert_eq!(v.confidence.level, Level::High);
        assert!(
            v.evidence.iter().any(|e| e.what.starts_with(
                "RST received in SYN_SENT on 127.0.0.1:40000 → 127.0.0.1:8443 (cookie 7)"
            )),
            "{:?}",
            v.evidence
        );
        assert!(
            v.evidence
                .iter()
                .any(|e| e.what.contains("reason NO_SOCKET")),
            "{:?}",
            v.evidence
        );
        assert!(v.hint.contains("127.0.0.1:8443"));
    }

    #[test]
    fn connect_refused_joined_is_high_and_loadgen_alone_medium() {
        let joined =
            Fx::loadgen(Class::ConnectRefused, Phase::Connect).with_kernel(&refused(1, 7, 0));
        assert_eq!(
            connect_refused(&joined.case()).unwrap().confidence.level,
            Level::High
        );
        let alone = Fx::loadgen(Class::ConnectRefused, Phase::Connect);
        assert_eq!(
            connect_refused(&alone.case()).unwrap().confidence.level,
            Level::Medium
        );
    }

    #[test]
    fn connect_refused_not_for_a_reset_after_established() {
        assert!(connect_refused(&Fx::kernel(&server_rst(1, 7, 0, 50)).case()).is_none());
        // loadgen's class wins over kernel facts when it has one.
        let fx = Fx::loadgen(Class::TlsCertExpired, Phase::Tls).with_kernel(&refused(1, 7, 0));
        assert!(connect_refused(&fx.case()).is_none());
    }

    #[test]
    fn syn_retransmits_with_listen_overflows_are_high() {
        let mut fx = Fx::kernel(&backlog_full(1, 7, 0, 3));
        fx.host.listen_overflows = Some(4);
        fx.listener = Some(ListenerRecord {
            local: SERVER.parse().unwrap(),
            since_unix_ns: T0,
            drops: [("TCP_LISTEN_OVERFLOW".to_owned(), 4)].into(),
        });
        let v = listen_overflow_or_syn_drop(&fx.case()).unwrap();
        assert_eq!(v.confidence.level, Level::High);
        assert!(
            v.evidence
                .iter()
                .any(|e| e.what.starts_with("3 SYN retransmits over 3000 ms")),
            "{:?}",
            v.evidence
        );
        assert!(
            v.evidence
                .iter()
                .any(|e| e.what == "ListenOverflows +4 over the run")
        );
        assert!(
            v.evidence
                .iter()
                .any(|e| e.what.contains("dropped 4 packets (TCP_LISTEN_OVERFLOW)"))
        );
    }

    #[test]
    fn syn_retransmits_without_overflow_are_medium_and_timeout_alone_low() {
        let fx = Fx::kernel(&backlog_full(1, 7, 0, 2));
        assert_eq!(
            listen_overflow_or_syn_drop(&fx.case())
                .unwrap()
                .confidence
                .level,
            Level::Medium
        );
        let fx = Fx::loadgen(Class::ConnectTimeout, Phase::Connect);
        assert_eq!(
            listen_overflow_or_syn_drop(&fx.case())
                .unwrap()
                .confidence
                .level,
            Level::Low
        );
    }

    #[test]
    fn established_connections_are_not_unanswered_syns() {
        assert!(listen_overflow_or_syn_drop(&Fx::kernel(&peer_fin(1, 7, 0, 10)).case()).is_none());
        assert!(listen_overflow_or_syn_drop(&Fx::kernel(&refused(1, 7, 0)).case()).is_none());
    }
}
