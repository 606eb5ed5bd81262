//! Privileged end-to-end tests of the kernel programs: each tracepoint the analyzer uses
//! is attached, provoked on loopback, and its event checked against what the test knows
//! (socket cookie from `getsockopt(SO_COOKIE)`, 4-tuple, TCP states, errno, the kernel's
//! reason names). Every test filters in the kernel on its own ports, so tests running in
//! parallel do not see each other's events; one test checks the filter itself. Needs
//! root (CI and developers' machines are).
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use analyzer::{
    ebpf::{
        decode::{Captured, Record},
        probe::{EventReader, Probes},
        tracefs,
    },
    event::KernelEvent,
    names::TcpState,
    recording::FilterConfig,
};
use analyzer_common::EventKind;
use socket2::{Domain, Socket, Type};

struct Capture {
    probes: Probes,
    reader: EventReader,
    seen: Vec<KernelEvent>,
}

impl Capture {
    fn attach(ports: &[u16]) -> Self {
        let mount = tracefs::ensure_mounted().expect("tracefs (run as root)");
        let filter = FilterConfig {
            ports: ports.to_vec(),
            ..FilterConfig::default()
        };
        let mut probes = Probes::attach(mount.path(), &filter).expect("attach (run as root)");
        let rep = probes.report();
        assert!(
            rep.missing.is_empty(),
            "every tracepoint exists on this kernel: {rep:?}"
        );
        // The seven TCP tracepoints, the plaintext capture's sixteen syscall ones, the
        // exec watch, and the system libssl's uprobes.
        let want = analyzer::ebpf::probe::TRACEPOINTS
            .iter()
            .map(|t| t.full_name())
            .chain(analyzer::ebpf::syscalls::CALLS.iter().flat_map(|c| {
                [
                    format!("syscalls:sys_enter_{c}"),
                    format!("syscalls:sys_exit_{c}"),
                ]
            }))
            .chain(["sched:sched_process_exec".to_owned()]);
        for w in want {
            assert!(rep.attached.contains(&w), "{w} attached: {rep:?}");
        }
        assert!(
            rep.attached
                .iter()
                .any(|a| a.starts_with("uprobe:") && a.ends_with(":SSL_read")),
            "{rep:?}"
        );
        let reader = probes.take_reader().unwrap();
        Self {
            probes,
            reader,
            seen: Vec::new(),
        }
    }

    /// Drains until `done` holds over everything seen so far (bounded by `secs`).
    fn until(&mut self, secs: u64, what: &str, done: impl Fn(&[KernelEvent]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            self.reader.drain(&mut self.seen);
            if done(&self.seen) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what} not seen within {secs} s; events: {:#?}",
                self.seen
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn no_loss(&self) {
        let stats = self.probes.stats().unwrap();
        assert!(stats.emitted >= 1, "{stats:?}");
        assert_eq!(stats.reserve_failed, 0, "events were lost: {stats:?}");
        assert_eq!(stats.read_failed, 0, "{stats:?}");
        assert_eq!(self.reader.decode_errors(), 0);
    }
}

/// The socket's cookie, which must be readable.
fn cookie(fd: &impl AsRawFd) -> u64 {
    wire::sock::cookie(fd).unwrap_or_else(|e| panic!("SO_COOKIE: {e}"))
}

/// A port on `ip` that answers SYNs with RST: bound, never listening, kept reserved.
fn closed_port(ip: &str) -> (Socket, SocketAddr) {
    let addr: SocketAddr = format!("{ip}:0").parse().unwrap();
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    s.bind(&addr.into()).unwrap();
    let bound = s.local_addr().unwrap().as_socket().unwrap();
    (s, bound)
}

fn is(ev: &KernelEvent, kind: EventKind) -> bool {
    ev.event == kind
}

fn refused_connect_leaves_the_whole_story(ip: &str) {
    let (_reserved, target) = closed_port(ip);
    let mut cap = Capture::attach(&[target.port()]);
    let client = Socket::new(Domain::for_address(target), Type::STREAM, None).unwrap();
    let ours = cookie(&client);
    let err = client
        .connect(&target.into())
        .expect_err("the port is closed");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    drop(client);

    cap.until(5, "destroy_sock with our cookie", |evs| {
        evs.iter()
            .any(|e| is(e, EventKind::DestroySock) && e.sock_cookie == ours)
    });
    let evs = &cap.seen;
    let rr = evs
        .iter()
        .find(|e| is(e, EventKind::ReceiveReset) && e.sock_cookie == ours)
        .expect("receive_reset with our cookie");
    assert_eq!(rr.remote, Some(target));
    let local = rr.local.unwrap();
    assert_eq!(local.ip(), target.ip());
    assert!(rr.ts_unix_ns > rr.ts_ns);
    let sk = rr.skaddr;
    assert_ne!(sk, 0);
    // The state timeline of our socket: CLOSE -> SYN_SENT (in our process), SYN_SENT -> CLOSE.
    let changes: Vec<(TcpState, TcpState, u32)> = evs
        .iter()
        .filter(|e| is(e, EventKind::StateChange) && e.skaddr == sk)
        .map(|e| (e.state.unwrap(), e.new_state.unwrap(), e.pid))
        .collect();
    assert_eq!(
        changes.first().map(|c| (c.0, c.1)),
        Some((TcpState::Close, TcpState::SynSent)),
        "{changes:?}"
    );
    assert_eq!(
        changes[0].2,
        std::process::id(),
        "connect() runs in our process"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.0 == TcpState::SynSent && c.1 == TcpState::Close),
        "{changes:?}"
    );
    // The errno delivered to our socket, found by 4-tuple.
    let er = evs
        .iter()
        .find(|e| is(e, EventKind::ErrorReport) && e.local == Some(local))
        .expect("error_report on our tuple");
    assert_eq!(er.errno, Some(libc::ECONNREFUSED));
    // The RST was sent by this host's stack for no socket, from the closed port.
    let sr = evs
        .iter()
        .find(|e| is(e, EventKind::SendReset) && e.local == Some(target))
        .expect("send_reset from the closed port");
    assert_eq!(sr.remote, Some(local));
    assert_eq!(sr.skaddr, 0, "no socket owns a closed port");
    let reason = sr.reason.as_deref().unwrap();
    assert!(
        !reason.starts_with("reason "),
        "named from tracefs: {reason}"
    );
    let ds = evs
        .iter()
        .find(|e| is(e, EventKind::DestroySock) && e.sock_cookie == ours)
        .unwrap();
    assert_eq!(ds.skaddr, sk, "cookie and socket address agree");
    cap.no_loss();
}

#[test]
fn refused_connect_on_ipv4() {
    refused_connect_leaves_the_whole_story("127.0.0.1");
}

#[test]
fn refused_connect_on_ipv6() {
    refused_connect_leaves_the_whole_story("[::1]");
}

#[test]
fn server_abort_and_peer_fin_show_state_and_reason() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap();
    let mut cap = Capture::attach(&[target.port()]);

    // 1. The server aborts (SO_LINGER 0): the client receives an RST in ESTABLISHED.
    let mut client = TcpStream::connect(target).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let ours = cookie(&client);
    let (server, _) = listener.accept().unwrap();
    let server_local = server.local_addr().unwrap();
    let server = Socket::from(server);
    server.set_linger(Some(Duration::ZERO)).unwrap();
    drop(server);
    let err = client.read(&mut [0u8; 16]).expect_err("the server aborted");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");

    // 2. The server closes normally: the client sees the peer's FIN (CLOSE_WAIT).
    let fin_client = TcpStream::connect(target).unwrap();
    let fin_local = fin_client.local_addr().unwrap();
    let (server2, _) = listener.accept().unwrap();
    drop(server2);

    let client_local = client.local_addr().unwrap();
    cap.until(5, "RST received and peer FIN", |evs| {
        evs.iter()
            .any(|e| is(e, EventKind::ReceiveReset) && e.sock_cookie == ours)
            && evs.iter().any(|e| {
                is(e, EventKind::StateChange)
                    && e.local == Some(fin_local)
                    && e.new_state == Some(TcpState::CloseWait)
            })
    });
    let evs = &cap.seen;
    let rr = evs
        .iter()
        .find(|e| is(e, EventKind::ReceiveReset) && e.sock_cookie == ours)
        .unwrap();
    // The state the RST found us in: the change it caused starts from ESTABLISHED.
    let after = evs
        .iter()
        .find(|e| is(e, EventKind::StateChange) && e.skaddr == rr.skaddr && e.ts_ns >= rr.ts_ns)
        .expect("state change after the RST");
    assert_eq!(after.state, Some(TcpState::Established));
    assert_eq!(after.new_state, Some(TcpState::Close));
    // The abort seen from the server's side: an RST sent in ESTABLISHED, with a reason.
    let sr = evs
        .iter()
        .find(|e| {
            is(e, EventKind::SendReset)
                && e.local == Some(server_local)
                && e.remote == Some(client_local)
        })
        .expect("send_reset by the aborting server socket");
    // close() with SO_LINGER 0 moves the socket to CLOSE, then sends the RST.
    assert_eq!(sr.state, Some(TcpState::Close));
    assert_ne!(sr.skaddr, 0);
    let reason = sr.reason.as_deref().unwrap();
    assert!(
        !reason.starts_with("reason "),
        "named from tracefs: {reason}"
    );
    let er = evs
        .iter()
        .find(|e| is(e, EventKind::ErrorReport) && e.local == Some(client_local))
        .expect("error_report on the client");
    assert_eq!(er.errno, Some(libc::ECONNRESET));
    cap.no_loss();
}

/// The TCP counters read from `struct tcp_sock` (offsets from BTF) count what each end
/// sent: 100 bytes of request acknowledged (plus the SYN), 300 bytes of answer received,
/// when the client's FIN leaves.
#[test]
fn tcp_counters_count_what_each_end_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap();
    let mut cap = Capture::attach(&[target.port()]);
    let mut client = TcpStream::connect(target).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(&[b'q'; 100]).unwrap();
    server.read_exact(&mut [0u8; 100]).unwrap();
    server.write_all(&[b'a'; 300]).unwrap();
    client.read_exact(&mut [0u8; 300]).unwrap();
    let local = client.local_addr().unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let fin_wait = |e: &KernelEvent| {
        is(e, EventKind::StateChange)
            && e.local == Some(local)
            && e.new_state == Some(TcpState::FinWait1)
    };
    cap.until(5, "the client's FIN", |evs| evs.iter().any(fin_wait));
    let ev = cap.seen.iter().find(|e| fin_wait(e)).unwrap();
    let c = ev.tcp.expect("counters read at a state change");
    // bytes_acked counts the SYN's sequence number too (RFC 4898 HCThruOctetsAcked as
    // Linux keeps it): 1 + 100.
    assert_eq!((c.bytes_acked, c.bytes_received), (101, 300), "{c:?}");
    assert!(c.data_segs_out >= 1 && c.data_segs_in >= 1, "{c:?}");
    assert!(c.srtt_us > 0, "an RTT was measured: {c:?}");
    // A reset sent carries none: its socket may be a time-wait or request socket.
    assert!(
        cap.seen
            .iter()
            .filter(|e| is(e, EventKind::SendReset))
            .all(|e| e.tcp.is_none())
    );
    drop(server);
    cap.no_loss();
}

#[test]
fn syn_retransmits_when_the_backlog_is_full_and_drop_reasons_by_name() {
    // A listener with a backlog of 1 that never accepts: once its accept queue is full,
    // the kernel drops further SYNs (TCP_LISTEN_OVERFLOW) and the clients retransmit.
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    l.bind(&addr.into()).unwrap();
    l.listen(1).unwrap();
    let target = l.local_addr().unwrap().as_socket().unwrap();
    let mut cap = Capture::attach(&[target.port()]);

    let mut clients = Vec::new();
    for _ in 0..6 {
        let c = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        c.set_nonblocking(true).unwrap();
        let _ = c.connect(&target.into()); // EINPROGRESS
        clients.push(c);
    }
    // The first SYN retransmission comes after the initial RTO (1 s).
    cap.until(8, "a SYN retransmit", |evs| {
        evs.iter()
            .any(|e| is(e, EventKind::Retransmit) && e.state == Some(TcpState::SynSent))
    });
    let rt = cap
        .seen
        .iter()
        .find(|e| is(e, EventKind::Retransmit) && e.state == Some(TcpState::SynSent))
        .unwrap();
    assert_eq!(rt.remote, Some(target));
    // A listen overflow consumes the SYN instead of dropping it (no kfree_skb): the
    // evidence is the retransmits (and the host's ListenOverflows counter). The drop
    // histogram is checked on a SYN to a closed port, dropped as NO_SOCKET.
    let (_reserved, closed) = closed_port("127.0.0.1");
    let c = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let _ = c.connect(&closed.into());
    let no_socket = cap
        .probes
        .names()
        .drop_reasons()
        .iter()
        .find(|(_, n)| *n == "NO_SOCKET")
        .map(|(v, _)| *v)
        .expect("this kernel names NO_SOCKET");
    let drops = cap.probes.drop_reason_counts().unwrap();
    assert!(
        drops.iter().any(|(r, n)| *r == no_socket && *n > 0),
        "host-wide drop histogram: {drops:?}"
    );
    cap.no_loss();
    drop(clients);
}

#[test]
fn the_kernel_filter_keeps_only_the_ports_asked_for() {
    let (_a, watched) = closed_port("127.0.0.1");
    let (_b, ignored) = closed_port("127.0.0.1");
    let mut cap = Capture::attach(&[watched.port()]);
    for target in [ignored, watched] {
        let c = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let _ = c.connect(&target.into());
    }
    cap.until(5, "the watched port's reset", |evs| {
        evs.iter()
            .any(|e| is(e, EventKind::ReceiveReset) && e.remote == Some(watched))
    });
    // Whatever else arrives: nothing about the ignored port.
    std::thread::sleep(Duration::from_millis(100));
    cap.reader.drain(&mut cap.seen);
    let port_of = |a: Option<SocketAddr>| a.map(|a| a.port());
    assert!(
        !cap.seen
            .iter()
            .any(|e| port_of(e.remote) == Some(ignored.port())
                || port_of(e.local) == Some(ignored.port())),
        "{:#?}",
        cap.seen
    );
    let stats = cap.probes.stats().unwrap();
    assert!(stats.filtered > 0, "{stats:?}");
}

/// The kernel programs submit without waking the reader until the ring holds
/// `RING_WAKEUP_BYTES` (the reader drains on a timer below that): records below the
/// threshold are in the ring but raise no epoll edge; crossing it raises one.
#[test]
fn the_reader_is_woken_only_once_the_ring_fills() {
    let (_reserved, target) = closed_port("127.0.0.1");
    let mut cap = Capture::attach(&[target.port()]);
    cap.reader.drain(&mut cap.seen);
    // SAFETY: plain syscalls on an fd this test owns; the event buffer outlives the calls.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(
        ep >= 0,
        "epoll_create1: {}",
        std::io::Error::last_os_error()
    );
    let mut want = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLET) as u32,
        u64: 1,
    };
    // SAFETY: as above.
    let rc = unsafe {
        libc::epoll_ctl(
            ep,
            libc::EPOLL_CTL_ADD,
            cap.reader.as_raw_fd(),
            &raw mut want,
        )
    };
    assert_eq!(rc, 0, "epoll_ctl: {}", std::io::Error::last_os_error());
    let wait = |ms: i32| -> i32 {
        let mut got = [libc::epoll_event { events: 0, u64: 0 }];
        // SAFETY: as above.
        unsafe { libc::epoll_wait(ep, got.as_mut_ptr(), 1, ms) }
    };
    let refuse = |n: usize| {
        for _ in 0..n {
            let c = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            assert!(c.connect(&target.into()).is_err(), "the port is closed");
        }
    };
    // A few refused connects: a few kilobytes of records, far below the threshold.
    let small = 20;
    refuse(small);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(wait(0), 0, "the reader was woken below RING_WAKEUP_BYTES");
    cap.reader.drain(&mut cap.seen);
    let per_connect = cap.seen.len() / small;
    assert!(
        per_connect >= 3,
        "records wait in the ring unannounced: {:#?}",
        cap.seen
    );
    // Enough refused connects to cross the threshold (record: 112 bytes + 8 of header).
    let record_bytes = 120u64;
    let need = analyzer_common::RING_WAKEUP_BYTES / record_bytes / per_connect as u64 + 100;
    refuse(usize::try_from(need).unwrap());
    assert_eq!(wait(5_000), 1, "no wakeup after {need} refused connects");
    cap.reader.drain(&mut cap.seen);
    // SAFETY: closing the epoll fd this test created.
    unsafe { libc::close(ep) };
    cap.no_loss();
}

/// The plaintext capture: a client socket's reads and writes (plain, vectored, and one
/// larger than the capture) come through with their first bytes and true lengths; the
/// server end's calls, in the same process, do not (only client ends are captured).
#[test]
fn a_client_sockets_reads_and_writes_are_captured_and_nothing_else() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cap = Capture::attach(&[addr.port()]);
    let big = vec![b'x'; 10_000];
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 16_384];
        let mut got = 0;
        // The request head, then the 10,000-byte body, then answer.
        while got < 18 + 10_000 {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "client closed early");
            got += n;
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
        s.local_addr().unwrap()
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"POST / HTTP/1.1\r\n").unwrap();
    let n = c
        .write_vectored(&[std::io::IoSlice::new(&big), std::io::IoSlice::new(b"tail")])
        .unwrap();
    assert!(n >= 10_000, "one writev took the body: {n}");
    let server_end = server.join().unwrap();
    let mut resp = [0u8; 64];
    let mut got = 0;
    while got < 40 {
        let n = c.read(&mut resp[got..]).unwrap();
        assert!(n > 0);
        got += n;
    }
    let client_end = c.local_addr().unwrap();
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut records = Vec::new();
    let data = |records: &[Record]| -> Vec<Captured> {
        records
            .iter()
            .filter_map(|r| match r {
                Record::Data(d) => Some(d.clone()),
                Record::Kernel(_) | Record::Exec { .. } => None,
            })
            .collect()
    };
    while data(&records).iter().filter(|d| !d.sent).count() == 0 {
        assert!(Instant::now() < deadline, "no read captured: {records:#?}");
        cap.reader.drain_records(&mut records);
        std::thread::sleep(Duration::from_millis(20));
    }
    let client_sk = records
        .iter()
        .find_map(|r| match r {
            Record::Kernel(e) if e.local == Some(client_end) && e.skaddr != 0 => Some(e.skaddr),
            _ => None,
        })
        .expect("the client socket's events");
    let server_sk = records.iter().find_map(|r| match r {
        Record::Kernel(e) if e.local == Some(server_end) && e.skaddr != 0 => Some(e.skaddr),
        _ => None,
    });
    let d = data(&records);
    assert!(
        d.iter().all(|x| x.skaddr == client_sk),
        "only the client end: {d:#?} (server {server_sk:?})"
    );
    assert!(d.iter().all(|x| x.pid == std::process::id()), "{d:#?}");
    let sent: Vec<&Captured> = d.iter().filter(|x| x.sent).collect();
    assert_eq!(sent[0].data, b"POST / HTTP/1.1\r\n");
    assert_eq!(sent[0].total_len, 17);
    // writev: a record per buffer, in order: the first buffer's first DATA_CAP bytes
    // with its whole length, then the second buffer.
    assert_eq!(sent[1].data.len(), analyzer_common::DATA_CAP);
    assert!(sent[1].data.iter().all(|b| *b == b'x'));
    if n == big.len() + 4 {
        assert_eq!(sent[1].total_len, big.len() as u64);
        assert_eq!(sent[2].data, b"tail", "{sent:#?}");
        assert_eq!(sent[2].total_len, 4);
    } else {
        assert_eq!(sent[1].total_len, n as u64);
    }
    let received: Vec<u8> = d
        .iter()
        .filter(|x| !x.sent)
        .flat_map(|x| x.data.clone())
        .collect();
    assert_eq!(received, &resp[..got]);
    let stats = cap.probes.stats().unwrap();
    assert!(stats.data_emitted >= 3, "{stats:?}");
    assert_eq!(stats.data_read_failed, 0, "{stats:?}");
    cap.no_loss();
}
