//! Tests of the connection table: kernel sequences in, one record per socket out, memory
//! bounded.
use super::{record::Closer, *};
use crate::rules::fixture::*;

use TcpState::{Close, Established, Listen, SynRecv, SynSent};

fn table(max_closed: usize) -> ConnTable {
    ConnTable::new(TableConfig {
        max_closed,
        ..TableConfig::default()
    })
}

fn feed(t: &mut ConnTable, events: &[KernelEvent]) {
    for e in events {
        t.ingest(e);
    }
}

#[test]
fn a_reused_address_after_destroy_is_a_new_socket() {
    let mut t = table(10);
    feed(&mut t, &refused(1, 7, 0));
    feed(&mut t, &server_rst(1, 8, 100, 20));
    let c = t.finish();
    let recs: Vec<_> = c.records().collect();
    assert_eq!(recs.len(), 2);
    assert_eq!(
        (recs[0].sock_cookie, recs[0].facts.rst_state),
        (Some(7), Some(SynSent))
    );
    assert_eq!(
        (recs[1].sock_cookie, recs[1].facts.rst_state),
        (Some(8), Some(Established))
    );
    assert!(
        recs.iter()
            .all(|r| r.end == End::Destroyed && r.role == Role::Client)
    );
    assert_eq!(recs[1].pid, Some(4242));
}

#[test]
fn a_new_connect_without_destroy_replaces_the_record() {
    let mut t = table(10);
    feed(&mut t, &backlog_full(1, 7, 0, 1)[..2]);
    feed(&mut t, &server_rst(1, 8, 5_000, 20));
    let c = t.finish();
    let ends: Vec<End> = c.records().map(|r| r.end).collect();
    assert_eq!(ends, [End::Replaced, End::Destroyed]);
}

#[test]
fn the_cookie_is_learned_late_from_destroy() {
    let mut t = table(10);
    let ev = peer_fin(1, 7, 0, 10);
    feed(&mut t, &ev[..5]);
    assert_eq!(t.live(1).unwrap().sock_cookie, None);
    feed(&mut t, &ev[5..]);
    let c = ConnTable::finish(t);
    // A clean close is counted, not kept.
    assert_eq!(c.records().count(), 0);
    assert_eq!((c.counts().closed_clean, c.counts().tracked), (1, 1));

    let mut t = ConnTable::new(TableConfig {
        keep_all: true,
        ..TableConfig::default()
    });
    feed(&mut t, &ev);
    let c = t.finish();
    let r = c.records().next().unwrap();
    assert_eq!(r.sock_cookie, Some(7));
    assert_eq!(r.facts.closed_first, Some(Closer::Peer));
    assert!(!r.is_failed());
}

#[test]
fn socketless_events_attach_by_tuple_or_wait_as_orphans() {
    let mut t = table(10);
    // The refusal's NO_SOCKET reset comes before the client socket's tuple is known
    // (port 0 at SYN_SENT): an orphan, adopted as the peer's when the tuple shows up.
    feed(&mut t, &refused(1, 7, 0));
    let c = t.finish();
    let r = c.records().next().unwrap();
    assert_eq!(
        r.facts.errno,
        Some(libc::ECONNREFUSED),
        "error_report attached by tuple"
    );
    let peer = r.facts.peer_rst_sent.as_ref().unwrap();
    assert_eq!(peer.reason.as_deref(), Some("NO_SOCKET"));
    assert_eq!(r.facts.rst_sent, 0, "the stack's RST is not this socket's");
    assert!(
        r.timeline
            .iter()
            .any(|e| e.peer && e.event == EventKind::SendReset)
    );
    assert_eq!(
        (c.counts().orphan_events, c.counts().orphans_adopted),
        (1, 1)
    );

    let mut t = table(10);
    feed(&mut t, &server_rst(1, 7, 0, 20)[..2]);
    t.ingest(&rst_out(10, 0, Established, "NOT_SPECIFIED"));
    let mut stray = error_report(11, libc::EHOSTUNREACH);
    stray.remote = Some("10.9.9.9:80".parse().unwrap());
    t.ingest(&stray);
    assert_eq!(
        t.live(1).unwrap().facts.rst_sent,
        1,
        "exact tuple: this socket's own RST"
    );
    assert_eq!(t.counts().orphan_events, 1);
}

#[test]
fn rst_state_is_the_state_the_reset_hit() {
    let r = record(&server_rst(1, 7, 0, 20));
    assert_eq!(r.facts.rst_state, Some(Established));
    assert_eq!(r.facts.closed_first, Some(Closer::PeerReset));
    assert!(r.is_failed());
}

#[test]
fn eviction_keeps_failed_records_first_and_counts() {
    let mut t = table(2);
    let mut retransmitted = peer_fin(1, 7, 0, 50);
    retransmitted.insert(2, retrans(10, 1, Established));
    feed(&mut t, &on_port(retransmitted, 0));
    feed(&mut t, &on_port(refused(1, 7, 100), 1));
    feed(&mut t, &on_port(refused(1, 7, 200), 2));
    assert_eq!(
        t.counts().evicted,
        1,
        "the notable, not failed record goes first"
    );
    feed(&mut t, &on_port(refused(1, 7, 300), 3));
    for i in 4..6 {
        feed(&mut t, &on_port(peer_fin(1, 7, 400, 10), i));
    }
    let c = t.finish();
    let counts = c.counts();
    assert_eq!(
        (counts.kept, counts.evicted, counts.closed_clean),
        (2, 2, 2)
    );
    assert!(c.records().all(|r| r.is_failed()));
    assert_eq!(
        c.records().map(|r| r.sock_cookie).collect::<Vec<_>>(),
        [Some(207), Some(307)]
    );
}

#[test]
fn timelines_and_live_sockets_are_bounded() {
    let mut t = ConnTable::new(TableConfig {
        max_timeline: 8,
        max_live: 4,
        ..TableConfig::default()
    });
    let mut ev = backlog_full(1, 7, 0, 20);
    ev.truncate(ev.len() - 2);
    feed(&mut t, &ev);
    let r = t.live(1).unwrap();
    assert_eq!((r.timeline.len(), r.timeline_dropped), (8, 13));
    assert_eq!(r.timeline[0].event, EventKind::StateChange);
    assert_eq!(r.facts.syn_retransmits, 20);
    for i in 1..8 {
        t.ingest(&on_port(vec![state(10 + u64::from(i), 1, Close, SynSent)], i)[0].clone());
    }
    let counts = t.counts();
    assert!(counts.live <= 4 && counts.live_evicted >= 4, "{counts:?}");
}

#[test]
fn drops_go_to_their_socket_or_listener_and_servers_never_fail() {
    let mut t = table(10);
    let mut listen = state(0, 50, Close, Listen);
    listen.local = Some(SERVER.parse().unwrap());
    listen.remote = Some("0.0.0.0:0".parse().unwrap());
    t.ingest(&listen);
    let drop = |sk, reason: &str| KernelEvent {
        reason: Some(reason.into()),
        local: None,
        remote: None,
        ..kev(EventKind::Drop, 1, sk)
    };
    t.ingest(&drop(50, "TCP_LISTEN_OVERFLOW"));
    // The server's child socket: LISTEN→SYN_RECV at a new address, then reset.
    let server = |e: KernelEvent| KernelEvent {
        skaddr: 60,
        ..reversed(e)
    };
    t.ingest(&server(state(2, 0, Listen, SynRecv)));
    t.ingest(&server(state(2, 0, SynRecv, Established)));
    t.ingest(&drop(60, "TCP_OFO_DROP"));
    t.ingest(&server(rst_in(3, 0, 9)));
    t.ingest(&drop(70, "NO_SOCKET"));
    feed(&mut t, &server_rst(1, 7, 2, 1));
    let c = t.finish();
    assert_eq!(c.drop_reasons().values().sum::<u64>(), 3);
    assert_eq!(c.counts().untracked_events, 1);
    let l = c.listener_for(SERVER.parse().unwrap()).unwrap();
    assert_eq!(l.drops.get("TCP_LISTEN_OVERFLOW"), Some(&1));
    let s = c.records().find(|r| r.skaddr == 60).unwrap();
    assert_eq!(s.role, Role::Server);
    assert!(!s.is_failed() && s.is_notable());
    assert_eq!(s.facts.drops.get("TCP_OFO_DROP"), Some(&1));
    let client = c.records().find(|r| r.skaddr == 1).unwrap();
    assert_eq!(c.peer_of(client).map(|p| p.skaddr), Some(60));
}

/// The `rst` fault as the kernel really reports it on loopback (captured on 6.18): both
/// ends on this host; the server's socket aborts (SO_LINGER 0) and reports remote port 0
/// once closed.
#[test]
fn a_loopback_abort_as_captured_keeps_both_ends_apart() {
    let (c, s) = (0xc1, 0x51);
    let server = |mut e: KernelEvent| {
        e.skaddr = s;
        reversed(e)
    };
    let gone = |mut e: KernelEvent| {
        e.remote = Some("127.0.0.1:0".parse().unwrap());
        e
    };
    let mut syn = state(0, c, Close, SynSent);
    syn.local = Some("127.0.0.1:0".parse().unwrap());
    let events = vec![
        syn,
        state(1, c, SynSent, Established),
        server(state(1, 0, Listen, SynRecv)),
        server(state(1, 0, SynRecv, Established)),
        server(state(400, 0, Established, Close)),
        rst_in(400, c, 17739),
        state(400, c, Established, Close),
        error_report(400, libc::ECONNRESET),
        server(rst_out(400, 0, Close, "TCP_STATE")),
        gone(server(error_report(400, libc::ECONNRESET))),
        gone(server(destroy(400, 0, 17740))),
        destroy(600, c, 17739),
    ];
    let conns = connections(&events);
    let client = conns.records().find(|r| r.skaddr == c).unwrap();
    let srv = conns.records().find(|r| r.skaddr == s).unwrap();
    assert_eq!(
        (client.role, client.facts.rst_state, client.facts.errno),
        (Role::Client, Some(Established), Some(104))
    );
    assert_eq!(
        (srv.role, srv.remote),
        (Role::Server, Some(CLIENT.parse().unwrap()))
    );
    assert!(client.is_failed() && !srv.is_failed());
    let peer = conns.peer_of(client).expect("the server's socket");
    assert_eq!(
        peer.facts
            .rst_sent_first
            .as_ref()
            .and_then(|r| r.reason.as_deref()),
        Some("TCP_STATE")
    );
    assert_eq!(
        conns.counts().orphan_events,
        1,
        "the closed server socket's error report"
    );
}

/// A client that resets a thousand streams of its own fills the wire facts; the
/// server's GOAWAY that follows still gets in, and the client's resets are no failure.
#[test]
fn a_goaway_is_kept_past_a_flood_of_client_resets() {
    use crate::event::wire_fact::{WireEvent, WireFact};
    let local: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let remote: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let mut rec = ConnRecord::synthetic(1, local, remote, Role::Client);
    let ev = |fact| WireEvent {
        ts_unix_ns: 1,
        skaddr: 1,
        client: local,
        server: remote,
        fact,
    };
    for stream_id in (1..2400).step_by(2) {
        rec.add_wire(&ev(WireFact::H2RstStream {
            from_server: false,
            stream_id,
            code: "CANCEL".into(),
        }));
    }
    assert_eq!(rec.wire.len(), record::MAX_WIRE_FACTS);
    assert!(!rec.is_failed(), "a client's own resets are no failure");
    rec.add_wire(&ev(WireFact::H2Goaway {
        from_server: true,
        code: "ENHANCE_YOUR_CALM".into(),
        last_stream_id: 2399,
        debug: String::new(),
        streams_in_flight: 0,
        streams_unprocessed: 0,
    }));
    assert_eq!(rec.wire.len(), record::MAX_WIRE_FACTS);
    assert!(
        rec.wire
            .iter()
            .any(|f| matches!(f, WireFact::H2Goaway { .. })),
        "{:?}",
        rec.wire
    );
    assert!(rec.is_failed());
}
