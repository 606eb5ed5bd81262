//! Tests of the TCP rules on the kernel sequences of real loopback sockets.
use super::*;
use crate::{
    event::KernelEvent,
    rules::{attribute, fixture::*},
    table::{ConnRecord, ResetSent},
};

use TcpState::{Close, CloseWait, Established, SynSent, TimeWait};

/// Established at 0; the server's FIN at `fin` ms; the client writes and gets an RST
/// in CLOSE_WAIT at `rst` ms.
fn fin_then_rst(fin: u64, rst: u64) -> Vec<KernelEvent> {
    vec![
        state(0, 1, Close, SynSent),
        state(0, 1, SynSent, Established),
        state(fin, 1, Established, CloseWait),
        rst_in(rst, 1, 7),
        state(rst, 1, CloseWait, Close),
        destroy(rst + 1, 1, 7),
    ]
}

/// A reused connection, idle `idle_ms` before a request intended at `sent_ms`.
fn reused(class: Class, phase: Phase, idle_ms: u64, sent_ms: u64) -> Fx {
    let mut fx = Fx::loadgen(class, phase);
    fx.intended = at(sent_ms);
    let r = fx.request.as_mut().unwrap();
    r.conn.conn_requests = 3;
    r.conn.idle_us = idle_ms * 1000;
    fx
}

#[test]
fn idle_race_high_when_the_fin_came_before_the_request() {
    let fx = reused(Class::TcpReset, Phase::Write, 5_000, 10_000)
        .with_kernel(&fin_then_rst(9_000, 10_001));
    let v = idle_race(&fx.case()).unwrap();
    assert_eq!(v.confidence.level, Level::High, "{:?}", v.confidence);
    assert!(
        v.evidence
            .iter()
            .any(|e| e.what.contains("peer FIN received")
                && e.what.contains("1000 ms before the request was written")),
        "{:?}",
        v.evidence
    );
}

#[test]
fn an_rst_after_the_write_on_a_busy_connection_is_the_server_aborting_not_a_race() {
    // The RST arrives 0.1 ms after the request was written, on a connection idle 30 ms:
    // the server reacted to the request (testbed `rst:after=1`, a firewall's reset).
    let mut fx = reused(Class::TcpReset, Phase::AwaitHeaders, 30, 0)
        .with_kernel(&server_rst(1, 7, 0, 10_000));
    fx.intended = at(10_000) - 100_000;
    assert!(idle_race(&fx.case()).is_none());
    let (_, v) = attribute(&fx.case());
    assert_eq!(v.cause, "server_abort_mid_request");
    assert!(
        v.evidence
            .iter()
            .any(|e| e.what.contains("0.1 ms after the request was written")),
        "{:?}",
        v.evidence
    );
}

#[test]
fn a_close_counts_as_before_the_write_only_beyond_the_clock_skew() {
    // The server's FIN 2 ms before the write, connection idle 30 ms: provably a race.
    let fx = reused(Class::PeerEof, Phase::AwaitHeaders, 30, 10_000)
        .with_kernel(&peer_fin(1, 7, 0, 9_998));
    let v = idle_race(&fx.case()).unwrap();
    assert_eq!(v.confidence.level, Level::High);
    assert!(
        v.confidence
            .why
            .contains("2.0 ms before the request was written"),
        "{:?}",
        v.confidence
    );
    // 0.1 ms before: within what the two clocks can disagree by, so not proven.
    let mut fx =
        reused(Class::PeerEof, Phase::AwaitHeaders, 30, 0).with_kernel(&peer_fin(1, 7, 0, 10_000));
    fx.intended = at(10_000) + 100_000;
    assert!(idle_race(&fx.case()).is_none());
    // A FIN during the previous request (before the idle gap) proves nothing either.
    let fx =
        reused(Class::TcpReset, Phase::Write, 30, 10_000).with_kernel(&fin_then_rst(9_900, 10_001));
    assert!(idle_race(&fx.case()).is_none());
}

#[test]
fn idle_race_medium_on_idle_time_alone_and_not_for_fresh_or_busy_connections() {
    let fx = reused(Class::PeerEof, Phase::AwaitHeaders, 5_000, 10_000);
    assert_eq!(
        idle_race(&fx.case()).unwrap().confidence.level,
        Level::Medium
    );
    assert!(idle_race(&reused(Class::TcpReset, Phase::Write, 10, 10_000).case()).is_none());
    let mut first = reused(Class::TcpReset, Phase::Write, 5_000, 10_000);
    first.request.as_mut().unwrap().conn.conn_requests = 0;
    assert!(idle_race(&first.case()).is_none());
    assert!(idle_race(&reused(Class::TcpReset, Phase::Body, 5_000, 10_000).case()).is_none());
}

#[test]
fn idle_race_from_the_kernel_alone_is_fin_then_rst_in_close_wait() {
    let v = idle_race(&Fx::kernel(&fin_then_rst(9_000, 9_500)).case()).unwrap();
    assert_eq!(v.confidence.level, Level::Medium);
    assert!(v.evidence.iter().any(|e| {
        e.what
            .contains("RST received in CLOSE_WAIT 500 ms after the FIN")
    }));
    // Too young to have idled past the threshold: the server closed a busy connection.
    assert!(idle_race(&Fx::kernel(&fin_then_rst(20, 30)).case()).is_none());
    assert!(idle_race(&Fx::kernel(&peer_fin(1, 7, 0, 9_000)).case()).is_none());
    assert!(idle_race(&Fx::kernel(&server_rst(1, 7, 0, 50)).case()).is_none());
}

fn client_resets(st: TcpState, reason: &str) -> Vec<KernelEvent> {
    vec![
        state(0, 1, Close, SynSent),
        state(0, 1, SynSent, Established),
        rst_out(40, 1, st, reason),
        state(40, 1, Established, Close),
        destroy(41, 1, 7),
    ]
}

#[test]
fn rst_sent_names_the_kernel_reason_and_time_wait() {
    let v = rst_sent_by_this_host(
        &Fx::kernel(&client_resets(Established, "TCP_ABORT_ON_CLOSE")).case(),
    )
    .unwrap();
    assert_eq!(v.detail.as_deref(), Some("TCP_ABORT_ON_CLOSE"));
    assert_eq!(v.confidence.level, Level::High);
    assert!(v.evidence[0].what.contains("in ESTABLISHED, kernel reason TCP_ABORT_ON_CLOSE (the application closed the socket with unread data)"), "{:?}", v.evidence);
    let v = rst_sent_by_this_host(&Fx::kernel(&client_resets(TimeWait, "NOT_SPECIFIED")).case())
        .unwrap();
    assert_eq!(v.detail.as_deref(), Some("TIME_WAIT"));
}

#[test]
fn rst_sent_not_when_the_peer_reset_first_or_loadgen_says_timeout() {
    assert!(rst_sent_by_this_host(&Fx::kernel(&server_rst(1, 7, 0, 50)).case()).is_none());
    let fx = Fx::loadgen(Class::Timeout, Phase::Body)
        .with_kernel(&client_resets(Established, "TCP_ABORT_ON_CLOSE"));
    assert!(rst_sent_by_this_host(&fx.case()).is_none());
}

#[test]
fn server_abort_joined_is_high_with_the_server_side_reason() {
    let mut fx =
        Fx::loadgen(Class::TcpReset, Phase::AwaitHeaders).with_kernel(&server_rst(1, 7, 0, 50));
    let mut peer = ConnRecord::synthetic(
        9,
        SERVER.parse().unwrap(),
        CLIENT.parse().unwrap(),
        Role::Server,
    );
    peer.facts.rst_sent_first = Some(ResetSent {
        ts_unix_ns: at(50),
        state: Some(Established),
        reason: Some("TCP_STATE".into()),
    });
    fx.peer = Some(peer);
    let v = server_abort_mid_request(&fx.case()).unwrap();
    assert_eq!(v.confidence.level, Level::High);
    assert!(v.evidence.iter().any(|e| e.what.starts_with("RST received in ESTABLISHED on 127.0.0.1:40000 → 127.0.0.1:8443 (cookie 7), 50.0 ms after")), "{:?}", v.evidence);
    assert!(v.evidence.iter().any(|e| e.what.starts_with("the server's socket sent the RST in ESTABLISHED, kernel reason TCP_STATE (the application aborted")));
}

#[test]
fn server_abort_loadgen_alone_medium_kernel_alone_medium() {
    let fx = Fx::loadgen(Class::TcpReset, Phase::Body);
    assert_eq!(
        server_abort_mid_request(&fx.case())
            .unwrap()
            .confidence
            .level,
        Level::Medium
    );
    let fx = Fx::kernel(&server_rst(1, 7, 0, 50));
    assert_eq!(
        server_abort_mid_request(&fx.case())
            .unwrap()
            .confidence
            .level,
        Level::Medium
    );
}

#[test]
fn server_abort_not_for_refusals_eof_or_server_sockets() {
    assert!(server_abort_mid_request(&Fx::kernel(&refused(1, 7, 0)).case()).is_none());
    assert!(
        server_abort_mid_request(&Fx::loadgen(Class::PeerEof, Phase::AwaitHeaders).case())
            .is_none()
    );
    let mut fx = Fx::kernel(&server_rst(1, 7, 0, 50));
    fx.kernel.as_mut().unwrap().role = Role::Server;
    assert!(server_abort_mid_request(&fx.case()).is_none());
}

#[test]
fn peer_fin_outstanding_high_with_the_kernel_fin() {
    let mut fx =
        Fx::loadgen(Class::PeerEof, Phase::AwaitHeaders).with_kernel(&peer_fin(1, 7, 0, 30));
    fx.intended = at(10);
    let v = peer_fin_outstanding(&fx.case()).unwrap();
    assert_eq!(v.confidence.level, Level::High);
    assert!(
        v.evidence
            .iter()
            .any(|e| e.what.contains("20.0 ms after the request was written")),
        "{:?}",
        v.evidence
    );
    let alone = Fx::loadgen(Class::PeerEof, Phase::Body);
    assert_eq!(
        peer_fin_outstanding(&alone.case())
            .unwrap()
            .confidence
            .level,
        Level::Medium
    );
}

#[test]
fn peer_fin_outstanding_needs_a_request_in_flight() {
    assert!(peer_fin_outstanding(&Fx::loadgen(Class::PeerEof, Phase::Connect).case()).is_none());
    assert!(peer_fin_outstanding(&Fx::kernel(&peer_fin(1, 7, 0, 30)).case()).is_none());
    assert!(peer_fin_outstanding(&Fx::kernel(&server_rst(1, 7, 0, 30)).case()).is_none());
}

#[test]
fn peer_fin_then_rst_on_a_young_connection_from_the_kernel_alone() {
    let v = peer_fin_outstanding(&Fx::kernel(&fin_then_rst(20, 30)).case()).unwrap();
    assert_eq!(v.confidence.level, Level::Medium);
    assert!(
        v.evidence
            .iter()
            .any(|e| e.what.contains("10.0 ms after the FIN")),
        "{:?}",
        v.evidence
    );
}

fn lossy() -> Vec<KernelEvent> {
    vec![
        state(0, 1, Close, SynSent),
        state(0, 1, SynSent, Established),
        retrans(300, 1, Established),
        retrans(900, 1, Established),
        error_report(5_000, libc::ETIMEDOUT),
        state(5_000, 1, Established, Close),
        destroy(5_001, 1, 7),
    ]
}

#[test]
fn timeout_split_by_retransmits() {
    let fx = Fx::loadgen(Class::Timeout, Phase::AwaitHeaders).with_kernel(&lossy());
    assert_eq!(
        timeout(&fx.case()).unwrap().cause,
        "timeout_with_retransmits"
    );
    let fx = Fx::loadgen(Class::Timeout, Phase::AwaitHeaders).with_kernel(&peer_fin(1, 7, 0, 30));
    let v = timeout(&fx.case()).unwrap();
    assert_eq!(
        (v.cause, v.confidence.level),
        ("timeout_slow_server", Level::High)
    );
    let mut fx = Fx::loadgen(Class::Timeout, Phase::AwaitHeaders);
    assert_eq!(timeout(&fx.case()).unwrap().confidence.level, Level::Low);
    fx.kernel_seen = true;
    assert_eq!(timeout(&fx.case()).unwrap().confidence.level, Level::Medium);
}

#[test]
fn timeout_from_the_kernel_alone_and_negatives() {
    let v = timeout(&Fx::kernel(&lossy()).case()).unwrap();
    assert_eq!(v.cause, "timeout_with_retransmits");
    assert!(
        v.evidence[0].what.contains("after 2 retransmits"),
        "{:?}",
        v.evidence
    );
    assert!(timeout(&Fx::loadgen(Class::ConnectTimeout, Phase::Connect).case()).is_none());
    assert!(timeout(&Fx::kernel(&server_rst(1, 7, 0, 50)).case()).is_none());
}

/// A loopback connection: the client (sk 1) and the server's socket (sk 2) established;
/// then the client receives an RST at 50 ms, sent by the server's socket at 49 ms when
/// `server_sent`, else by nothing on this host.
fn reset_on_loopback(server_sent: bool) -> Fx {
    let mut events = vec![
        state(0, 1, Close, SynSent),
        state(0, 1, SynSent, Established),
        reversed(state(0, 2, TcpState::SynRecv, Established)),
    ];
    if server_sent {
        events.push(reversed(rst_out(49, 2, Established, "NOT_SPECIFIED")));
    }
    events.extend([
        rst_in(50, 1, 7),
        error_report(50, libc::ECONNRESET),
        state(50, 1, Established, Close),
        destroy(51, 1, 7),
    ]);
    let conns = connections(&events);
    let client = conns.records().find(|r| r.skaddr == 1).unwrap().clone();
    let mut fx = Fx::kernel(&events);
    fx.peer = conns.peer_of(&client).cloned();
    fx.kernel = Some(client);
    fx.opts.local_resets_recorded = true;
    fx
}

#[test]
fn an_rst_no_local_socket_sent_to_a_local_client_is_possibly_injected() {
    let fx = reset_on_loopback(false);
    assert!(fx.kernel.as_ref().unwrap().facts.rst_peer_traced);
    let (_, v) = attribute(&fx.case());
    assert_eq!(v.cause, "rst_possibly_injected", "{v:?}");
    assert!(
        v.evidence
            .iter()
            .any(|e| e.what.contains("recorded no RST from it")),
        "{:?}",
        v.evidence
    );
    // The server's own RST is taken at face value.
    let fx = reset_on_loopback(true);
    assert!(
        fx.peer.is_some(),
        "the server's socket sent an RST and is kept"
    );
    assert_eq!(attribute(&fx.case()).1.cause, "server_abort_mid_request");
    // Without a complete record of this host's resets (raw backend, --pid, lost
    // events), or with the server elsewhere, nothing is claimed.
    let mut fx = reset_on_loopback(false);
    fx.opts.local_resets_recorded = false;
    assert_eq!(attribute(&fx.case()).1.cause, "server_abort_mid_request");
    let remote = Fx::kernel(&server_rst(1, 7, 0, 50));
    let mut remote_all = remote;
    remote_all.opts.local_resets_recorded = true;
    assert!(!remote_all.kernel.as_ref().unwrap().facts.rst_peer_traced);
    assert_eq!(
        attribute(&remote_all.case()).1.cause,
        "server_abort_mid_request"
    );
}
