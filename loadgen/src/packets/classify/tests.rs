//! The four verdicts, and the matching rules, without a network.
use super::*;
use wire::packet::TcpOptions;

fn key() -> ProbeKey {
    ProbeKey {
        source: "127.0.0.1:61000".parse().unwrap(),
        target: "127.0.0.1:80".parse().unwrap(),
        isn: u32::MAX,
    }
}

fn answer(flags: u8, ack: u32) -> Segment<'static> {
    Segment {
        src: "127.0.0.1:80".parse().unwrap(),
        dst: "127.0.0.1:61000".parse().unwrap(),
        seq: 5,
        ack,
        flags,
        window: 0,
        ttl: 64,
        ip_id: Some(0),
        dont_fragment: true,
        options: TcpOptions::default(),
        payload: b"",
        truncated: false,
    }
}

#[test]
fn answers_match_by_port_and_isn_plus_one() {
    let k = key();
    // ISN + 1 wraps.
    assert_eq!(
        answer_of(&answer(TcpFlags::SYN | TcpFlags::ACK, 0), &k),
        Some(Answer::SynAck)
    );
    assert_eq!(
        answer_of(&answer(TcpFlags::RST | TcpFlags::ACK, 0), &k),
        Some(Answer::Rst)
    );
    assert_eq!(
        answer_of(&answer(TcpFlags::RST | TcpFlags::ACK, 1), &k),
        None
    );
    assert_eq!(answer_of(&answer(TcpFlags::RST, 0), &k), None);
    assert_eq!(answer_of(&answer(TcpFlags::ACK, 0), &k), None);
    let mut other_port = answer(TcpFlags::SYN | TcpFlags::ACK, 0);
    other_port.dst.set_port(61001);
    assert_eq!(answer_of(&other_port, &k), None);
    let mut other_host = answer(TcpFlags::SYN | TcpFlags::ACK, 0);
    other_host.src = "127.0.0.2:80".parse().unwrap();
    assert_eq!(answer_of(&other_host, &k), None);
    let u = Unreachable {
        from: "10.0.0.254".parse().unwrap(),
        icmp_type: 3,
        code: 13,
        src: k.source,
        dst: k.target,
        seq: k.isn,
    };
    assert!(icmp_answers(&u, &k));
    assert!(!icmp_answers(&Unreachable { seq: 0, ..u }, &k));
}

fn tally(sent: u64, syn_ack: u64, rst: u64, icmp: u64) -> Tally {
    Tally {
        sent,
        syn_ack,
        rst,
        icmp_unreachable: icmp,
        no_answer: sent - syn_ack - rst - icmp,
    }
}

fn listener(queue: u32, backlog: u32) -> Listener {
    Listener {
        local: "127.0.0.1:80".parse().unwrap(),
        accept_queue: queue,
        backlog: Some(backlog),
    }
}

fn local(listeners: Vec<Listener>, overflows: u64) -> LocalEvidence {
    LocalEvidence {
        target_is_local: true,
        listeners,
        counters_delta: Some(ListenCounters {
            listen_overflows: overflows,
            listen_drops: overflows,
        }),
    }
}

#[test]
fn the_four_verdicts() {
    let none = LocalEvidence::default();
    assert_eq!(
        judge(&tally(50, 50, 0, 0), &none, None).verdict,
        Verdict::Open
    );
    assert_eq!(
        judge(&tally(50, 0, 50, 0), &none, None).verdict,
        Verdict::Closed
    );
    let full = judge(&tally(50, 0, 0, 0), &local(vec![listener(2, 1)], 50), None);
    assert_eq!(full.verdict, Verdict::ListenQueueFull);
    assert!(
        full.evidence
            .iter()
            .any(|e| e.contains("above its backlog 1")),
        "{full:?}"
    );
    assert!(
        full.evidence
            .iter()
            .any(|e| e.contains("ListenOverflows +50")),
        "{full:?}"
    );
    let host = HostCheck {
        port: 9,
        answer: Answer::Rst,
    };
    let f = judge(&tally(50, 0, 0, 0), &local(vec![], 0), Some(&host));
    assert_eq!(f.verdict, Verdict::Filtered);
    assert!(
        f.evidence.iter().any(|e| e.contains("no LISTEN socket")),
        "{f:?}"
    );
    assert!(f.evidence.iter().any(|e| e.contains("host is up")), "{f:?}");
}

#[test]
fn queue_evidence_needs_a_full_queue_or_rising_overflows() {
    // At the backlog (not above it) and no overflow: the kernel would still accept.
    let j = judge(&tally(10, 0, 0, 0), &local(vec![listener(1, 1)], 0), None);
    assert_eq!(j.verdict, Verdict::Filtered);
    // Overflows rising while a listener is there is enough.
    let j = judge(&tally(10, 0, 0, 0), &local(vec![listener(1, 1)], 10), None);
    assert_eq!(j.verdict, Verdict::ListenQueueFull);
    // Overflows without a listener on the port are someone else's.
    let j = judge(&tally(10, 0, 0, 0), &local(vec![], 10), None);
    assert_eq!(j.verdict, Verdict::Filtered);
    // Evidence is ignored for a target that is not local.
    let remote = LocalEvidence {
        target_is_local: false,
        ..local(vec![listener(5, 1)], 10)
    };
    let j = judge(&tally(10, 0, 0, 0), &remote, None);
    assert_eq!(j.verdict, Verdict::Filtered);
    assert!(
        j.evidence[0].contains("not an address of this host"),
        "{j:?}"
    );
}

#[test]
fn mixed_answers() {
    let none = LocalEvidence::default();
    // Some SYN-ACKs and some silence, queue overflowing: intermittently full.
    let j = judge(&tally(10, 6, 0, 0), &local(vec![listener(3, 2)], 4), None);
    assert_eq!(j.verdict, Verdict::ListenQueueFull);
    let j = judge(&tally(10, 6, 0, 0), &none, None);
    assert_eq!(j.verdict, Verdict::Open);
    assert!(j.reason.contains("4 unanswered"), "{j:?}");
    let j = judge(&tally(10, 0, 0, 10), &none, None);
    assert_eq!(j.verdict, Verdict::Filtered);
    assert!(j.reason.contains("ICMP"), "{j:?}");
    let j = judge(&tally(0, 0, 0, 0), &none, None);
    assert_eq!(j.verdict, Verdict::NotProbed);
    let host = HostCheck {
        port: 9,
        answer: Answer::NoAnswer,
    };
    let j = judge(&tally(3, 0, 0, 0), &none, Some(&host));
    assert!(
        j.evidence
            .iter()
            .any(|e| e.contains("did not answer either")),
        "{j:?}"
    );
}
