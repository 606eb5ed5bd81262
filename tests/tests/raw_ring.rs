//! The raw backend's capture ring (`wire::capture`, TPACKET_V3) on loopback, as root:
//! frames of a known exchange arrive in order with kernel timestamps, the reader keeps up
//! across many blocks, drops of a ring left unread are counted, and a quiet link still
//! delivers a lone packet (the block timeout). Each test captures only its own port, so
//! other traffic on `lo` does not reach its ring.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use wire::{
    capture::{IfaceCapture, RingSize},
    packet::{Packet, parse_frame},
};

fn now_unix_ns() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap()
}

/// A listener on 127.0.0.1 that answers each 8-byte message `ping-NNN` with `pong-NNN`
/// until the client closes.
fn echo_server() -> (u16, thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = [0u8; 8];
        while s.read_exact(&mut buf).is_ok() {
            buf[..4].copy_from_slice(b"pong");
            s.write_all(&buf).unwrap();
        }
    });
    (port, t)
}

fn msg(kind: &str, i: usize) -> Vec<u8> {
    format!("{kind}-{:03}", i % 1000).into_bytes()
}

/// `n` ping-pong exchanges with the echo server on `port`.
fn ping_pong(port: u16, n: usize) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_nodelay(true).unwrap();
    let mut buf = [0u8; 8];
    for i in 0..n {
        c.write_all(&msg("ping", i)).unwrap();
        c.read_exact(&mut buf).unwrap();
        assert_eq!(buf.as_slice(), msg("pong", i));
    }
}

/// The payloads (with kernel timestamps) of the segments read until `want` of them are
/// in, or `limit` has passed.
fn read_payloads(cap: &mut IfaceCapture, want: usize, limit: Duration) -> Vec<(u64, Vec<u8>)> {
    let link = cap.link;
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        if let Some(f) = cap.next_packet().expect("read the ring")
            && let Ok(Packet::Tcp(seg)) = parse_frame(link, f.data)
            && !seg.payload.is_empty()
        {
            out.push((f.ts_unix_ns, seg.payload.to_vec()));
        }
    }
    out
}

fn expected(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .flat_map(|i| [msg("ping", i), msg("pong", i)])
        .collect()
}

#[test]
fn known_exchange_arrives_in_order_with_kernel_timestamps() {
    let (port, server) = echo_server();
    let mut cap = IfaceCapture::open("lo", &[port]).expect("open the capture (as root)");
    let t0 = now_unix_ns();
    ping_pong(port, 20);
    let t1 = now_unix_ns();
    server.join().unwrap();
    let got = read_payloads(&mut cap, 40, Duration::from_secs(5));
    let payloads: Vec<_> = got.iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(payloads, expected(20), "every segment once, in order");
    let ts: Vec<u64> = got.iter().map(|(t, _)| *t).collect();
    assert!(
        ts.windows(2).all(|w| w[0] <= w[1]),
        "timestamps go forward: {ts:?}"
    );
    assert!(
        ts[0] >= t0 - 1_000_000 && ts[39] <= t1 + 1_000_000,
        "stamped during the exchange ({t0}..{t1}): {ts:?}"
    );
    // Fine-grained stamps (a jiffy-grained fallback would repeat values).
    let mut distinct = ts.clone();
    distinct.dedup();
    assert!(distinct.len() >= 30, "timestamps too coarse: {ts:?}");
    let c = cap.counts();
    assert_eq!((c.drops, c.bad_blocks), (0, 0), "{c:?}");
}

#[test]
fn reader_keeps_up_across_many_blocks() {
    // 16 blocks of 64 KiB (1 MiB) for about 3 MB of frames: the ring wraps several times.
    let size = RingSize {
        block_bytes: 64 << 10,
        blocks: 16,
        block_timeout: Duration::from_millis(10),
    };
    let (port, server) = echo_server();
    let mut cap = IfaceCapture::open_with("lo", &[port], size).expect("open the capture");
    const N: usize = 10_000;
    let client = thread::spawn(move || ping_pong(port, N));
    let got = read_payloads(&mut cap, 2 * N, Duration::from_secs(60));
    client.join().unwrap();
    server.join().unwrap();
    let c = cap.counts();
    assert_eq!(c.drops, 0, "the reader fell behind: {c:?}");
    assert_eq!(c.bad_blocks, 0, "{c:?}");
    assert!(c.blocks > 2 * 16, "the ring wrapped more than twice: {c:?}");
    let payloads: Vec<_> = got.into_iter().map(|(_, p)| p).collect();
    assert_eq!(payloads.len(), 2 * N);
    assert!(payloads == expected(N), "segments out of order or missing");
}

#[test]
fn drops_of_an_unread_ring_are_counted() {
    // Two 4 KiB blocks hold a few dozen small frames; 600 are sent while nobody reads.
    let size = RingSize {
        block_bytes: 4096,
        blocks: 2,
        block_timeout: Duration::from_millis(10),
    };
    let (port, server) = echo_server();
    let mut cap = IfaceCapture::open_with("lo", &[port], size).expect("open the capture");
    ping_pong(port, 300);
    server.join().unwrap();
    thread::sleep(Duration::from_millis(50));
    let c = cap.counts();
    assert!(c.drops > 0, "no drops reported: {c:?}");
    assert!(
        c.packets >= 600,
        "tp_packets counts dropped ones too: {c:?}"
    );
    assert!(c.freezes > 0 || c.drops > 0, "{c:?}");
    // What the ring kept is still readable, and fewer than what was sent.
    let kept = read_payloads(&mut cap, 600, Duration::from_millis(500));
    assert!(!kept.is_empty() && kept.len() < 600, "kept {}", kept.len());
    assert_eq!(cap.counts().bad_blocks, 0);
}

#[test]
fn quiet_link_delivers_a_lone_packet() {
    // A 1 MiB block a single SYN does not fill: only the block timeout hands it over.
    let size = RingSize {
        block_bytes: 1 << 20,
        blocks: 4,
        block_timeout: Duration::from_millis(20),
    };
    // A port nobody listens on: the SYN, and the RST that answers it.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cap = IfaceCapture::open_with("lo", &[port], size).expect("open the capture");
    let _ = TcpStream::connect(("127.0.0.1", port)).unwrap_err();
    let deadline = Instant::now() + Duration::from_secs(5);
    let link = cap.link;
    let mut syn = None;
    while syn.is_none() && Instant::now() < deadline {
        if let Some(f) = cap.next_packet().unwrap()
            && let Ok(Packet::Tcp(seg)) = parse_frame(link, f.data)
        {
            syn = Some((seg.dst.port(), seg.flags));
        }
    }
    let (dport, flags) = syn.expect("the SYN was delivered");
    assert_eq!(dport, port);
    assert_eq!(
        flags & 0x02,
        0x02,
        "first frame is the SYN: flags {flags:#x}"
    );
}
