//! The tracker against hand-built segments: the events it plays must be the ones the
//! kernel's tracepoints give for the same exchange (see tests/tests/ebpf_probes.rs).
use std::net::SocketAddr;

use analyzer_common::EventKind;
use wire::packet::{Segment, TcpFlags, TcpOptions};

use super::*;
use crate::event::{
    KernelEvent,
    wire_fact::{WireEvent, WireFact},
};

const C: &str = "127.0.0.1:40000";
const S: &str = "127.0.0.1:8080";

fn seg(
    from: &str,
    to: &str,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &'static [u8],
) -> Segment<'static> {
    Segment {
        src: from.parse().unwrap(),
        dst: to.parse().unwrap(),
        seq,
        ack,
        flags,
        window: 512,
        ttl: 64,
        ip_id: Some(100),
        dont_fragment: true,
        options: TcpOptions::default(),
        payload,
        truncated: false,
    }
}

struct T {
    tracker: Tracker,
    out: Vec<Observed>,
    ts: u64,
}

impl T {
    fn new(local: &[&str]) -> Self {
        let ips = local
            .iter()
            .map(|a| a.parse::<SocketAddr>().unwrap().ip())
            .collect();
        Self {
            tracker: Tracker::new(TrackConfig::default(), ips),
            out: Vec::new(),
            ts: 1_000,
        }
    }

    fn push(&mut self, s: &Segment<'_>) {
        self.ts += 1_000;
        self.tracker.segment(s, self.ts, self.ts, &mut self.out);
    }

    /// `kind state->new_state @local` lines, for comparing with what the kernel says.
    fn story(&self) -> Vec<String> {
        self.out
            .iter()
            .map(|o| match o {
                Observed::Kernel(e) => {
                    let st =
                        |s: Option<TcpState>| s.map_or(String::new(), |s| s.as_str().to_owned());
                    let mut line = format!("{:?}", e.event);
                    if e.state.is_some() || e.new_state.is_some() {
                        line += &format!(" {}", st(e.state));
                    }
                    if e.new_state.is_some() {
                        line += &format!("->{}", st(e.new_state));
                    }
                    if let Some(n) = e.errno {
                        line += &format!(" errno {n}");
                    }
                    if let Some(r) = &e.reason {
                        line += &format!(" {r}");
                    }
                    line + &format!(" @{}", e.local.map_or(0, |l| l.port()))
                }
                Observed::Wire(w) => format!("wire {:?}", w.fact),
            })
            .collect()
    }
}

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const RST: u8 = TcpFlags::RST;
const FIN: u8 = TcpFlags::FIN;
const PSH: u8 = TcpFlags::PSH;

fn handshake(t: &mut T) {
    t.push(&seg(C, S, SYN, 1000, 0, b""));
    t.push(&seg(S, C, SYN | ACK, 5000, 1001, b""));
    t.push(&seg(C, S, ACK, 1001, 5001, b""));
}

#[test]
fn a_refused_connect_is_the_kernels_story() {
    let mut t = T::new(&[]);
    t.push(&seg(C, S, SYN, 1000, 0, b""));
    t.push(&seg(S, C, RST | ACK, 0, 1001, b""));
    assert_eq!(
        t.story(),
        [
            "StateChange CLOSE->SYN_SENT @40000",
            "SendReset NO_SOCKET @8080",
            "ReceiveReset SYN_SENT @40000",
            "ErrorReport errno 111 @40000",
            "StateChange SYN_SENT->CLOSE @40000",
            "DestroySock @40000",
        ]
    );
}

#[test]
fn handshake_then_server_closes_first() {
    let mut t = T::new(&[]);
    handshake(&mut t);
    t.push(&seg(C, S, ACK | PSH, 1001, 5001, b"GET"));
    t.push(&seg(S, C, ACK | FIN, 5001, 1004, b""));
    t.push(&seg(C, S, ACK | FIN, 1004, 5002, b""));
    t.push(&seg(S, C, ACK, 5002, 1005, b""));
    assert_eq!(
        t.story(),
        [
            "StateChange CLOSE->SYN_SENT @40000",
            "StateChange SYN_SENT->ESTABLISHED @40000",
            "StateChange LISTEN->SYN_RECV @8080",
            "StateChange SYN_RECV->ESTABLISHED @8080",
            "StateChange ESTABLISHED->FIN_WAIT1 @8080",
            "StateChange ESTABLISHED->CLOSE_WAIT @40000",
            "StateChange FIN_WAIT1->FIN_WAIT2 @8080",
            "StateChange CLOSE_WAIT->LAST_ACK @40000",
            "StateChange FIN_WAIT2->CLOSE @8080",
            "DestroySock @8080",
            "StateChange LAST_ACK->CLOSE @40000",
            "DestroySock @40000",
        ]
    );
    assert!(
        t.tracker.flows.is_empty(),
        "a closed connection is forgotten"
    );
}

#[test]
fn syn_and_data_retransmits() {
    let mut t = T::new(&[]);
    t.push(&seg(C, S, SYN, 1000, 0, b""));
    t.push(&seg(C, S, SYN, 1000, 0, b""));
    t.push(&seg(S, C, SYN | ACK, 5000, 1001, b""));
    t.push(&seg(C, S, ACK, 1001, 5001, b""));
    t.push(&seg(C, S, ACK | PSH, 1001, 5001, b"GET"));
    t.push(&seg(C, S, ACK | PSH, 1001, 5001, b"GET"));
    let story = t.story();
    assert_eq!(story[1], "Retransmit SYN_SENT @40000");
    assert_eq!(story.last().unwrap(), "Retransmit ESTABLISHED @40000");
    assert_eq!(
        story.iter().filter(|l| l.starts_with("Retransmit")).count(),
        2,
        "{story:#?}"
    );
}

#[test]
fn server_abort_is_reset_in_established_with_econnreset() {
    let mut t = T::new(&[]);
    handshake(&mut t);
    t.push(&seg(S, C, RST | ACK, 5001, 1001, b""));
    let story = t.story();
    assert_eq!(
        story[4..],
        [
            "SendReset ESTABLISHED @8080",
            "StateChange ESTABLISHED->CLOSE @8080",
            "DestroySock @8080",
            "ReceiveReset ESTABLISHED @40000",
            "ErrorReport errno 104 @40000",
            "StateChange ESTABLISHED->CLOSE @40000",
            "DestroySock @40000",
        ]
    );
}

#[test]
fn only_local_ends_are_played() {
    // A remote server: only the client socket is this host's.
    let mut t = T::new(&["10.0.0.5:0"]);
    let (c, s) = ("10.0.0.5:40000", "192.0.2.10:443");
    t.push(&seg(c, s, SYN, 1, 0, b""));
    t.push(&seg(s, c, SYN | ACK, 9, 2, b""));
    t.push(&seg(c, s, ACK, 2, 10, b""));
    assert_eq!(
        t.story(),
        [
            "StateChange CLOSE->SYN_SENT @40000",
            "StateChange SYN_SENT->ESTABLISHED @40000"
        ]
    );
}

#[test]
fn an_rst_with_a_foreign_ttl_is_suspect_and_the_peers_own_is_not() {
    for (ttl, ip_id, suspect) in [
        (64u8, Some(101u16), false),
        (128, Some(101), true),
        (64, Some(40_000), true),
    ] {
        let mut t = T::new(&[]);
        handshake(&mut t);
        t.push(&seg(S, C, ACK | PSH, 5001, 1001, b"data"));
        let mut rst = seg(S, C, RST | ACK, 5005, 1001, b"");
        rst.ttl = ttl;
        rst.ip_id = ip_id;
        t.push(&rst);
        let flagged = t.out.iter().any(|o| {
            matches!(
                o,
                Observed::Wire(WireEvent {
                    fact: WireFact::RstSuspect {
                        from_server: true,
                        ..
                    },
                    ..
                })
            )
        });
        assert_eq!(
            flagged,
            suspect,
            "ttl {ttl} ip id {ip_id:?}: {:#?}",
            t.story()
        );
    }
}

#[test]
fn zero_window_is_reported_once() {
    let mut t = T::new(&[]);
    handshake(&mut t);
    for _ in 0..3 {
        let mut s = seg(S, C, ACK, 5001, 1001, b"");
        s.window = 0;
        t.push(&s);
    }
    let n = t
        .out
        .iter()
        .filter(|o| {
            matches!(
                o,
                Observed::Wire(WireEvent {
                    fact: WireFact::ZeroWindow { .. },
                    ..
                })
            )
        })
        .count();
    assert_eq!(n, 1);
}

#[test]
fn followed_connections_are_bounded() {
    let mut t = Tracker::new(
        TrackConfig {
            max_flows: 2,
            inspect: None,
        },
        vec![],
    );
    let mut out = Vec::new();
    for port in 40000..40003u16 {
        let c = format!("127.0.0.1:{port}");
        t.segment(&seg(&c, S, SYN, 1, 0, b""), 1, 1, &mut out);
    }
    assert_eq!(t.flows.len(), 2);
    assert_eq!(t.stats().flows_evicted, 1);
    // A stray RST for no followed connection: the local stack's reset for no socket.
    out.clear();
    t.segment(&seg(S, "127.0.0.1:1", RST, 0, 0, b""), 2, 2, &mut out);
    assert_eq!(t.stats().stray_segments, 1);
    assert!(matches!(
        &out[..],
        [Observed::Kernel(KernelEvent {
            event: EventKind::SendReset,
            skaddr: 0,
            ..
        })]
    ));
}

#[test]
fn an_icmp_reject_ends_the_connect_with_the_kernels_errno() {
    let mut t = T::new(&[]);
    t.push(&seg(C, S, SYN, 1000, 0, b""));
    let u = wire::packet::Unreachable {
        from: "127.0.0.1".parse().unwrap(),
        icmp_type: 3,
        code: 13,
        src: C.parse().unwrap(),
        dst: S.parse().unwrap(),
        seq: 1000,
    };
    t.tracker.unreachable(&u, 5_000, 5_000, &mut t.out);
    let story = t.story();
    assert!(story[1].starts_with("wire IcmpUnreachable"), "{story:#?}");
    assert_eq!(
        story[2..],
        [
            "ErrorReport errno 113 @40000",
            "StateChange SYN_SENT->CLOSE @40000",
            "DestroySock @40000",
        ]
    );
    assert!(t.tracker.flows.is_empty());
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody";
const ANSWER_BEGUN: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nbo";

fn len(b: &[u8]) -> u32 {
    u32::try_from(b.len()).unwrap()
}

/// The HTTP tallies among the events, with the client end each was keyed by.
fn tallies(out: &[Observed]) -> Vec<(SocketAddr, crate::event::wire_fact::HttpTally)> {
    out.iter()
        .filter_map(|o| match o {
            Observed::Wire(WireEvent {
                client,
                fact: WireFact::Http(t),
                ..
            }) => Some((*client, t.clone())),
            _ => None,
        })
        .collect()
}

/// Handshake, one request, and `answer` from the server.
fn exchange(t: &mut T, answer: &'static [u8]) {
    handshake(t);
    t.push(&seg(C, S, ACK | PSH, 1001, 5001, REQUEST));
    t.push(&seg(S, C, ACK | PSH, 5001, 1001 + len(REQUEST), answer));
}

#[test]
fn a_closed_connection_ends_with_its_http_tally() {
    let mut t = T::new(&[]);
    exchange(&mut t, ANSWER);
    let (c_fin, s_fin) = (1001 + len(REQUEST), 5001 + len(ANSWER));
    t.push(&seg(C, S, ACK | FIN, c_fin, s_fin, b""));
    assert!(tallies(&t.out).is_empty(), "not before the connection ends");
    t.push(&seg(S, C, ACK | FIN, s_fin, c_fin + 1, b""));
    t.push(&seg(C, S, ACK, c_fin + 1, s_fin + 1, b""));
    let got = tallies(&t.out);
    assert_eq!(got.len(), 1, "{:#?}", t.story());
    assert_eq!(got[0].0, C.parse::<SocketAddr>().unwrap());
    assert_eq!((got[0].1.requests, got[0].1.answered), (1, 1));
    assert_eq!(got[0].1.statuses, [(200, 1)].into());
    assert!(t.tracker.flows.is_empty());
}

#[test]
fn a_reset_mid_answer_is_cut_short() {
    let mut t = T::new(&[]);
    exchange(&mut t, ANSWER_BEGUN);
    t.push(&seg(
        S,
        C,
        RST | ACK,
        5001 + len(ANSWER_BEGUN),
        1001 + len(REQUEST),
        b"",
    ));
    let got = tallies(&t.out);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].1.answered, got[0].1.cut_mid_answer), (0, 1));
}

#[test]
fn open_connections_end_with_the_capture_or_when_they_expire() {
    let mut t = T::new(&[]);
    handshake(&mut t);
    t.push(&seg(C, S, ACK | PSH, 1001, 5001, REQUEST));
    t.tracker.expire(t.ts + 10, 1_000_000);
    assert!(tallies(&t.out).is_empty(), "not idle yet");
    t.tracker.expire(t.ts + 2_000_000, 1_000_000);
    assert!(t.tracker.flows.is_empty());
    // Handed on with the next segment, whatever its connection.
    t.push(&seg("127.0.0.1:40001", S, SYN, 7000, 0, b""));
    let got = tallies(&t.out);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].1.requests, got[0].1.unanswered), (1, 1));
    // The new connection is still open when the capture stops.
    t.push(&seg(S, "127.0.0.1:40001", SYN | ACK, 9000, 7001, b""));
    t.push(&seg("127.0.0.1:40001", S, ACK | PSH, 7001, 9001, REQUEST));
    let mut out = Vec::new();
    t.tracker.finish_all(t.ts + 1, &mut out);
    assert!(t.tracker.flows.is_empty());
    let got = tallies(&out);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "127.0.0.1:40001".parse::<SocketAddr>().unwrap());
}
