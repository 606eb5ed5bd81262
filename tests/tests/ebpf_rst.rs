//! Privileged end-to-end test of the join key: the analyzer's `tcp:tcp_receive_reset`
//! program must report an RST with the same socket cookie that `getsockopt(SO_COOKIE)`
//! returns on the client socket. Needs root (CI and developers' machines are).
use std::{
    io::Read,
    net::{SocketAddr, TcpListener},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use analyzer::{
    event::{KernelEvent, SocketEvent},
    probe::{EventReader, Probes},
    tracefs,
};
use socket2::{Domain, Socket, Type};

fn attach() -> (Probes, EventReader) {
    let mount = tracefs::ensure_mounted().expect("tracefs (run as root)");
    let mut probes = Probes::attach(mount.path()).expect("attach probes (run as root)");
    assert!(
        probes
            .report()
            .attached
            .iter()
            .any(|a| a == "tcp:tcp_receive_reset"),
        "{:?}",
        probes.report()
    );
    let reader = probes.take_reader().unwrap();
    (probes, reader)
}

fn cookie(fd: &impl AsRawFd) -> u64 {
    let mut v: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: valid fd, and an out-buffer of the size passed.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&raw mut v).cast(),
            &mut len,
        )
    };
    assert_eq!(
        rc,
        0,
        "getsockopt(SO_COOKIE): {}",
        std::io::Error::last_os_error()
    );
    v
}

/// Polls the ring buffer (bounded: 5 s) for a reset event with `cookie`.
fn wait_for_reset(reader: &mut EventReader, cookie: u64) -> SocketEvent {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let mut batch = Vec::new();
        reader.drain(&mut batch);
        for ev in batch {
            match ev {
                KernelEvent::ReceiveReset(e) if e.sock_cookie == cookie => return e,
                other => seen.push(other.sock_cookie()),
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no reset event with cookie {cookie} within 5 s; cookies seen: {seen:?}");
}

/// A port on `ip` that answers SYNs with RST: bound, never listening, kept reserved.
fn closed_port(ip: &str) -> (Socket, SocketAddr) {
    let addr: SocketAddr = format!("{ip}:0").parse().unwrap();
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    s.bind(&addr.into()).unwrap();
    let bound = s.local_addr().unwrap().as_socket().unwrap();
    (s, bound)
}

fn refused_connect_is_seen_with_our_cookie(ip: &str) {
    let (probes, mut reader) = attach();
    let (_reserved, target) = closed_port(ip);
    let client = Socket::new(Domain::for_address(target), Type::STREAM, None).unwrap();
    let our_cookie = cookie(&client);
    assert_ne!(our_cookie, 0);
    let err = client
        .connect(&target.into())
        .expect_err("the port is closed");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");

    let ev = wait_for_reset(&mut reader, our_cookie);
    assert_eq!(ev.remote, target);
    assert_eq!(ev.local.ip(), target.ip());
    assert_ne!(ev.local.port(), 0);
    assert_ne!(ev.skaddr, 0);
    assert!(ev.ts_ns > 0 && ev.ts_unix_ns > ev.ts_ns);
    let stats = probes.stats().unwrap();
    assert!(stats.emitted >= 1, "{stats:?}");
    assert_eq!(stats.reserve_failed, 0, "events were lost: {stats:?}");
    assert_eq!(stats.read_failed, 0, "{stats:?}");
}

#[test]
fn rst_to_syn_on_ipv4_carries_the_client_socket_cookie() {
    refused_connect_is_seen_with_our_cookie("127.0.0.1");
}

#[test]
fn rst_to_syn_on_ipv6_carries_the_client_socket_cookie() {
    refused_connect_is_seen_with_our_cookie("[::1]");
}

#[test]
fn rst_on_established_connection_carries_the_client_socket_cookie() {
    let (_probes, mut reader) = attach();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap();
    let mut client = std::net::TcpStream::connect(target).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let our_cookie = cookie(&client);
    let (server, _) = listener.accept().unwrap();
    // SO_LINGER 0: close() aborts the connection with an RST (a server abort).
    let server = Socket::from(server);
    server.set_linger(Some(Duration::ZERO)).unwrap();
    drop(server);

    let err = client.read(&mut [0u8; 16]).expect_err("the server aborted");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    let ev = wait_for_reset(&mut reader, our_cookie);
    assert_eq!(ev.local, client.local_addr().unwrap());
    assert_eq!(ev.remote, target);
}
