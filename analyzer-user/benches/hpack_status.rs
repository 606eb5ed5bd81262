//! What reading each response's `:status` costs the analyzer: the server's direction of
//! an h2c connection (1,000 responses) through [`H2cObserver`], which decodes every
//! header block with HPACK (`raw/h2c/status.rs`), in nanoseconds per header block.
//!
//! ```text
//! cargo bench -p analyzer-user --bench hpack_status [-- --rounds 200]
//! ```
//!
//! Two sequences, each checked once (1,000 statuses read, none lost) before it is timed:
//! - `nginx`: the block nginx 1.22.1 sends for `return 200 "<html>ok</html>\n"` over h2c,
//!   captured from a real nginx ([`NGINX_BLOCK`]), 1,000 times on one connection. nginx
//!   sends every field as a literal with incremental indexing (RFC 7541 section 6.2.1),
//!   `server`, `date` and `content-type` Huffman-coded, and never refers to the table: 3
//!   Huffman strings and 4 table insertions per block.
//! - `h2`: a real `h2` crate server (in memory) answering 1,000 requests with `server`,
//!   `date` (a new second every 10 responses), `content-type` and `content-length`
//!   (varying): Huffman-coded literals while a value is new, table references after.
//!
//! Each is also fed as the client's direction (preface first), whose header blocks are
//! framed but not decoded: `frames_ns_per_block` is the frame parsing alone, the floor
//! under `ns_per_block`. One line of JSON per sequence: the median and the fastest round.
use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use analyzer::raw::h2c::{H2cDirection, H2cObserver};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wire::h2frame::{CLIENT_PREFACE, encode_frame};

const RESPONSES: u32 = 1000;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// nginx 1.22.1's response block for `return 200 "<html>ok</html>\n"`, `default_type
/// text/html`, read off the wire (h2c, prior knowledge, 2026-12-07): `88` (`:status:
/// 200`, static index 8), then literals with incremental indexing, names from the static
/// table: `76 89 ..` `server: nginx/1.22.1` (Huffman, 9 bytes), `61 96 ..` `date: Mon, 07
/// Dec 2026 03:42:33 GMT` (Huffman, 22), `5f 87 ..` `content-type: text/html` (Huffman,
/// 7), `5c 02 31 36` `content-length: 16` (raw).
const NGINX_BLOCK: &str = "887689aa6355e580ae212e1f6196d07abe9403aa5f29141004e28066e341b8d3ea62d1bf5f87497ca589d34d1f5c023136";

fn main() {
    let mut rounds = 200usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--rounds N")
            }
            // `cargo bench` passes --bench to a harness-less target.
            "--bench" => {}
            other => panic!("unknown argument {other}; usage: [--rounds N]"),
        }
    }
    for (name, s2c) in [("nginx", nginx_sequence()), ("h2", h2_sequence())] {
        check(&s2c);
        let mut c2s = CLIENT_PREFACE.to_vec();
        c2s.extend(&s2c);
        let decoded = time_rounds(H2cDirection::ServerToClient, &s2c, rounds);
        let framed = time_rounds(H2cDirection::ClientToServer, &c2s, rounds);
        let per_block = |d: Duration| d.as_nanos() as f64 / f64::from(RESPONSES);
        println!(
            "{{\"sequence\":\"{name}\",\"blocks\":{RESPONSES},\"bytes\":{},\"rounds\":{rounds},\
             \"ns_per_block\":{:.0},\"fastest_ns_per_block\":{:.0},\"frames_ns_per_block\":{:.0}}}",
            s2c.len(),
            per_block(decoded.0),
            per_block(decoded.1),
            per_block(framed.0),
        );
    }
}

/// The median and the fastest of `rounds` runs of a fresh observer over `bytes`.
fn time_rounds(dir: H2cDirection, bytes: &[u8], rounds: usize) -> (Duration, Duration) {
    let mut facts = Vec::new();
    let mut times: Vec<Duration> = (0..rounds.max(1))
        .map(|_| {
            facts.clear();
            let start = Instant::now();
            let mut o = H2cObserver::new(dir);
            o.feed(bytes, &mut facts);
            std::hint::black_box(&o);
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[times.len() / 2], times[0])
}

/// Every response's status is read, and none is lost.
fn check(s2c: &[u8]) {
    let mut o = H2cObserver::new(H2cDirection::ServerToClient);
    o.feed(s2c, &mut Vec::new());
    assert_eq!(o.hpack_lost(), None);
    assert_eq!(o.stats().header_blocks_lost, 0);
    assert_eq!(o.stats().header_blocks_decoded, u64::from(RESPONSES));
    assert_eq!(
        o.streams().filter(|v| v.status == Some(200)).count(),
        RESPONSES as usize
    );
}

fn nginx_sequence() -> Vec<u8> {
    let block: Vec<u8> = (0..NGINX_BLOCK.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&NGINX_BLOCK[i..i + 2], 16).unwrap())
        .collect();
    let mut b = encode_frame(SETTINGS, 0, 0, &[]);
    for i in 0..RESPONSES {
        b.extend(encode_frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            2 * i + 1,
            &block,
        ));
    }
    b
}

/// The server's bytes of 1,000 exchanges with a real h2 server over an in-memory duplex.
fn h2_sequence() -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let (a, b) = tokio::io::duplex(1 << 16);
        let log = Arc::new(Mutex::new(Vec::new()));
        let server_io = Tap {
            inner: b,
            log: log.clone(),
        };
        let server = tokio::spawn(async move {
            let mut conn = h2::server::handshake(server_io).await.unwrap();
            let mut n = 0u32;
            while let Some(req) = conn.accept().await {
                let Ok((_req, mut respond)) = req else { break };
                let body = "x".repeat(10 + (n % 7) as usize);
                let resp = http::Response::builder()
                    .status(200)
                    .header("server", "nginx/1.22.1")
                    .header(
                        "date",
                        format!(
                            "Mon, 07 Dec 2026 03:{:02}:{:02} GMT",
                            n / 600 % 60,
                            n / 10 % 60
                        ),
                    )
                    .header("content-type", "text/html")
                    .header("content-length", body.len())
                    .body(())
                    .unwrap();
                let mut send = respond.send_response(resp, false).unwrap();
                send.send_data(body.into(), true).unwrap();
                n += 1;
            }
        });
        let (mut client, conn) = h2::client::handshake(a).await.unwrap();
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        for _ in 0..RESPONSES {
            let req = http::Request::builder()
                .uri("http://127.0.0.1/")
                .body(())
                .unwrap();
            client = client.ready().await.unwrap();
            let (resp, _) = client.send_request(req, true).unwrap();
            let mut body = resp.await.unwrap().into_body();
            while let Some(chunk) = body.data().await {
                let n = chunk.unwrap().len();
                body.flow_control().release_capacity(n).unwrap();
            }
        }
        drop(client);
        let _ = driver.await;
        server.await.unwrap();
        log.lock().unwrap().clone()
    })
}

/// Records what the server writes.
struct Tap {
    inner: tokio::io::DuplexStream,
    log: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let n = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.log.lock().unwrap().extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
