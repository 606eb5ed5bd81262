//! Tests of the h2c observer: hand-built frames (RFC 9113 layouts) and a real h2 client
//! and server over an in-memory duplex, both directions captured.
use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wire::h2frame::{FrameKind, encode_frame as frame};

use super::*;

// Response statuses (HPACK) have their own file.
mod statuses;

fn settings(params: &[(u16, u32)]) -> Vec<u8> {
    let p: Vec<u8> = params
        .iter()
        .flat_map(|(id, v)| [id.to_be_bytes().as_slice(), v.to_be_bytes().as_slice()].concat())
        .collect();
    frame(0x4, 0, 0, &p)
}

fn goaway(last: u32, code: u32, debug: &[u8]) -> Vec<u8> {
    frame(
        0x7,
        0,
        0,
        &[&last.to_be_bytes()[..], &code.to_be_bytes(), debug].concat(),
    )
}

fn observe_chunks<'a>(
    dir: H2cDirection,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<H2cFact>, H2cObserver) {
    let mut o = H2cObserver::new(dir);
    let mut facts = Vec::new();
    for c in chunks {
        o.feed(c, &mut facts);
        assert!(o.buffered_bytes() <= MAX_BUFFERED_BYTES);
    }
    (facts, o)
}

fn observe(dir: H2cDirection, bytes: &[u8]) -> (Vec<H2cFact>, H2cObserver) {
    observe_chunks(dir, [bytes])
}

fn assert_chunking_invariant(dir: H2cDirection, bytes: &[u8], whole: &[H2cFact]) {
    assert_eq!(
        observe_chunks(dir, bytes.chunks(1)).0,
        whole,
        "1-byte chunks"
    );
    for at in 0..=bytes.len() {
        let (a, b) = bytes.split_at(at);
        assert_eq!(observe_chunks(dir, [a, b]).0, whole, "split at {at}");
    }
}

fn client_stream() -> Vec<u8> {
    let mut b = CLIENT_PREFACE.to_vec();
    b.extend(settings(&[(0x2, 0), (0x4, 65_535)]));
    b.extend(frame(0x1, 0x5, 1, b"\x82")); // HEADERS, END_STREAM|END_HEADERS
    b.extend(frame(0x1, 0x4, 3, b"\x82")); // HEADERS, body follows
    b.extend(frame(0x0, 0x0, 3, b"hello"));
    b.extend(frame(0x1, 0x5, 5, b"\x82"));
    b.extend(frame(0x1, 0x5, 7, b"\x82"));
    b
}

fn server_stream() -> Vec<u8> {
    let mut b = settings(&[(0x3, 100), (0x5, 16_384)]);
    b.extend(frame(0x4, 0x1, 0, &[])); // SETTINGS ACK
    b.extend(frame(0x1, 0x4, 1, b"\x88"));
    b.extend(frame(0x0, 0x1, 1, b"ok"));
    b.extend(frame(0x3, 0, 3, &7u32.to_be_bytes())); // RST_STREAM REFUSED_STREAM
    b.extend(goaway(5, 0xb, b"too many requests \xff"));
    b
}

#[test]
fn hand_built_frames_give_settings_goaway_and_rst_stream() {
    let (c2s, client) = observe(H2cDirection::ClientToServer, &client_stream());
    assert_eq!(c2s[0], H2cFact::ClientPreface);
    assert!(matches!(
        &c2s[1],
        H2cFact::Settings {
            param_count: 2,
            max_concurrent_streams: None,
            ..
        }
    ));
    assert_eq!(c2s.len(), 2);
    assert_eq!(client.stats().headers_frames, 4);
    assert_eq!(client.stats().data_bytes, 5);

    let (s2c, server) = observe(H2cDirection::ServerToClient, &server_stream());
    let want_settings = H2cFact::Settings {
        params: vec![
            (SettingId::SETTINGS_MAX_CONCURRENT_STREAMS, 100),
            (SettingId::SETTINGS_MAX_FRAME_SIZE, 16_384),
        ],
        param_count: 2,
        max_concurrent_streams: Some(100),
    };
    let want = vec![
        want_settings,
        H2cFact::RstStream {
            stream_id: 3,
            code: ErrorCode::REFUSED_STREAM,
        },
        H2cFact::GoAway {
            last_stream_id: 5,
            code: ErrorCode::ENHANCE_YOUR_CALM,
            debug: "too many requests \u{fffd}".into(),
            debug_len_bytes: 19,
        },
    ];
    assert_eq!(s2c, want);
    assert_eq!(server.stats().settings_acks, 1);
    let H2cFact::GoAway { code, .. } = &s2c[2] else {
        unreachable!()
    };
    assert_eq!(code.name(), "ENHANCE_YOUR_CALM");
    // Stream 1 answered, 3 refused: 5 (accepted) and 7 (above last_stream_id) in flight.
    assert_eq!(in_flight(&client, &server), vec![5, 7]);

    assert_chunking_invariant(H2cDirection::ClientToServer, &client_stream(), &c2s);
    assert_chunking_invariant(H2cDirection::ServerToClient, &server_stream(), &s2c);
}

#[test]
fn goaway_debug_data_is_bounded() {
    let mut b = settings(&[]);
    b.extend(goaway(0, 0x2, &vec![b'x'; 5000]));
    let (facts, _) = observe(H2cDirection::ServerToClient, &b);
    let H2cFact::GoAway {
        debug,
        debug_len_bytes,
        ..
    } = &facts[1]
    else {
        panic!("{facts:?}");
    };
    assert_eq!(
        (debug.len(), *debug_len_bytes),
        (GOAWAY_DEBUG_KEPT_BYTES, 5000)
    );
}

#[test]
fn http1_upgrade_and_http1_responses_are_not_h2c() {
    let req =
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n";
    let (facts, o) = observe(H2cDirection::ClientToServer, req);
    assert!(matches!(
        facts[..],
        [H2cFact::NotH2c {
            what: H2cError::Frame(FrameError::BadPreface { offset: 0 }),
            ..
        }]
    ));
    assert!(o.is_stopped());
    // "HTTP/1.1 200" read as a frame header would claim 4.7 MB of type 0x50: the type
    // byte check names it at once.
    let (facts, _) = observe(H2cDirection::ServerToClient, b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(
        facts,
        vec![H2cFact::NotH2c {
            offset: 3,
            what: H2cError::FirstFrameNotSettings {
                kind: FrameKind(b'P')
            }
        }]
    );
    // A client that sends the preface but then no SETTINGS.
    let mut b = CLIENT_PREFACE.to_vec();
    b.extend(frame(0x1, 0x5, 1, b"\x82"));
    let (facts, _) = observe(H2cDirection::ClientToServer, &b);
    assert_eq!(facts[0], H2cFact::ClientPreface);
    assert!(matches!(facts[1], H2cFact::NotH2c { offset: 27, .. }));
}

#[test]
fn broken_frames_after_the_preface_are_malformed() {
    let mut b = settings(&[]);
    b.extend(frame(0x3, 0, 0, &[0; 4])); // RST_STREAM on stream 0 (RFC 9113 section 6.4)
    let (facts, o) = observe(H2cDirection::ServerToClient, &b);
    assert!(matches!(
        facts.last(),
        Some(H2cFact::Malformed {
            what: H2cError::Frame(FrameError::StreamIdZero { .. }),
            ..
        })
    ));
    assert!(o.is_stopped());
    let mut o = H2cObserver::new(H2cDirection::ServerToClient);
    let mut facts = Vec::new();
    o.feed(&settings(&[]), &mut facts);
    o.gap(100, &mut facts);
    assert!(matches!(
        facts.last(),
        Some(H2cFact::Malformed {
            what: H2cError::Gap { len_bytes: 100 },
            ..
        })
    ));
    // A gap before any frame is capture loss, not evidence that the peer is not HTTP/2.
    let mut o = H2cObserver::new(H2cDirection::ClientToServer);
    let mut facts = Vec::new();
    o.gap(10, &mut facts);
    assert!(matches!(
        facts[..],
        [H2cFact::Malformed {
            offset: 0,
            what: H2cError::Gap { .. }
        }]
    ));
}

#[test]
fn garbage_never_panics_and_stays_bounded() {
    let mut x = 0x0bad_5eed_u64;
    for round in 0..300usize {
        let mut bytes: Vec<u8> = (0..1 + (round * 131) % 4000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        if round % 2 == 0 {
            let mut s = server_stream();
            s.append(&mut bytes);
            bytes = s;
        }
        for dir in [H2cDirection::ClientToServer, H2cDirection::ServerToClient] {
            let (facts, _) = observe_chunks(dir, bytes.chunks(1 + round % 17));
            assert!(facts.len() <= MAX_FACTS + 1);
        }
    }
}

/// Records what is written through it.
struct Tap<S> {
    inner: S,
    log: Arc<Mutex<Vec<u8>>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.log.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A real h2 exchange: the client opens streams 1, 3 and 5; the server answers 1,
/// refuses 3 and, holding 5, shuts down with GOAWAY(ENHANCE_YOUR_CALM).
async fn h2_exchange() -> (Vec<u8>, Vec<u8>) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let c2s = Arc::new(Mutex::new(Vec::new()));
    let s2c = Arc::new(Mutex::new(Vec::new()));
    let server_io = Tap {
        inner: b,
        log: s2c.clone(),
    };
    let client_io = Tap {
        inner: a,
        log: c2s.clone(),
    };
    let server = tokio::spawn(async move {
        let mut conn = h2::server::Builder::new()
            .max_concurrent_streams(10)
            .handshake::<_, bytes::Bytes>(server_io)
            .await
            .unwrap();
        let mut held = Vec::new();
        let mut n = 0;
        while let Some(req) = conn.accept().await {
            let Ok((_req, mut respond)) = req else { break };
            n += 1;
            match n {
                1 => {
                    let resp = http::Response::builder().status(200).body(()).unwrap();
                    respond.send_response(resp, true).unwrap();
                }
                2 => respond.send_reset(h2::Reason::REFUSED_STREAM),
                _ => {
                    held.push(respond);
                    conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                }
            }
        }
        drop(held);
    });
    let (mut client, conn) = h2::client::handshake(client_io).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut responses = Vec::new();
    for _ in 0..3 {
        let req = http::Request::builder()
            .uri("http://api.example.test/")
            .body(())
            .unwrap();
        client = client.ready().await.unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        responses.push(resp);
        // One at a time, so the server sees them in order.
        tokio::task::yield_now().await;
    }
    for r in responses {
        let _ = r.await;
    }
    server.await.unwrap();
    drop(client);
    let _ = driver.await;
    let c2s = c2s.lock().unwrap().clone();
    let s2c = s2c.lock().unwrap().clone();
    (c2s, s2c)
}

#[tokio::test]
async fn real_h2_client_and_server() {
    let (c2s, s2c) = tokio::time::timeout(Duration::from_secs(20), h2_exchange())
        .await
        .expect("h2 exchange finished");
    let (cf, client) = observe(H2cDirection::ClientToServer, &c2s);
    let (sf, server) = observe(H2cDirection::ServerToClient, &s2c);
    assert_eq!(cf[0], H2cFact::ClientPreface, "{cf:?}");
    assert!(matches!(cf[1], H2cFact::Settings { .. }));
    assert!(
        !client.is_stopped() && !server.is_stopped(),
        "{cf:?} {sf:?}"
    );
    assert_eq!(client.stats().headers_frames, 3);
    assert!(
        matches!(
            sf[0],
            H2cFact::Settings {
                max_concurrent_streams: Some(10),
                ..
            }
        ),
        "{sf:?}"
    );
    assert!(
        sf.contains(&H2cFact::RstStream {
            stream_id: 3,
            code: ErrorCode::REFUSED_STREAM
        }),
        "{sf:?}"
    );
    let goaway = sf.iter().find_map(|f| match f {
        H2cFact::GoAway {
            last_stream_id,
            code,
            ..
        } => Some((*last_stream_id, *code)),
        _ => None,
    });
    assert_eq!(goaway, Some((5, ErrorCode::ENHANCE_YOUR_CALM)), "{sf:?}");
    assert_eq!(server.stats().headers_frames, 1);
    assert_eq!(in_flight(&client, &server), vec![5]);
    assert_chunking_invariant(H2cDirection::ClientToServer, &c2s, &cf);
    assert_chunking_invariant(H2cDirection::ServerToClient, &s2c, &sf);
}
