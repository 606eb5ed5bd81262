//! Tests of response statuses read from the server's HPACK header blocks: blocks built by
//! hand in the forms of RFC 7541 (section 6; Huffman codes from its Appendix B), blocks
//! from loona-hpack's encoder, and a real h2 server's.
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use loona_hpack::Encoder;

use super::*;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;

/// `:status` as a literal with incremental indexing, its name from static index 8
/// (RFC 7541 section 6.2.1): the value enters the dynamic table.
fn status_indexed(code: &[u8; 3]) -> Vec<u8> {
    [&[0x48, 0x03][..], code].concat()
}

/// The status of each stream the server's direction tracks.
fn statuses(o: &H2cObserver) -> Vec<(u32, Option<u16>)> {
    o.streams().map(|v| (v.stream_id, v.status)).collect()
}

/// Observes the server's bytes whole, in two parts split at every position and a byte
/// at a time; the statuses must not depend on the chunking.
fn observe_every_way(bytes: &[u8]) -> H2cObserver {
    let (facts, whole) = observe(H2cDirection::ServerToClient, bytes);
    assert!(!whole.is_stopped(), "{facts:?}");
    for at in 0..=bytes.len() {
        let (_, split) = observe_chunks(H2cDirection::ServerToClient, [&bytes[..at], &bytes[at..]]);
        assert_eq!(statuses(&split), statuses(&whole), "split at {at}");
        assert_eq!(split.stats(), whole.stats(), "split at {at}");
    }
    let (_, bytewise) = observe_chunks(H2cDirection::ServerToClient, bytes.chunks(1));
    assert_eq!(statuses(&bytewise), statuses(&whole), "byte at a time");
    whole
}

#[test]
fn statuses_literal_indexed_huffman_interim_trailers_and_continued() {
    let mut b = settings(&[]);
    // Static index 8 is `:status: 200` (RFC 7541 Appendix A).
    b.extend(frame(HEADERS, END_HEADERS, 1, b"\x88"));
    b.extend(frame(DATA, END_STREAM, 1, b"ok"));
    // A 503 enters the dynamic table at 62; the next 503 is that index alone.
    b.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        3,
        &status_indexed(b"503"),
    ));
    b.extend(frame(HEADERS, END_HEADERS | END_STREAM, 5, b"\xbe"));
    // "429" Huffman-coded (H bit, 3 bytes): 011010 00010 011111 (Appendix B), then 7 bits
    // of EOS prefix as padding (section 5.2). Now 62 is 429 and 63 is 503.
    b.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        7,
        b"\x48\x83\x68\x4f\xff",
    ));
    // 100 (Continue), a literal not indexed (section 6.2.2), then the final 200.
    b.extend(frame(HEADERS, END_HEADERS, 9, b"\x08\x03100"));
    b.extend(frame(HEADERS, END_HEADERS | END_STREAM, 9, b"\x88"));
    // 503 again, at 63 now; then trailers with a new name, indexed: 62 grpc-status,
    // 63 429, 64 503.
    b.extend(frame(HEADERS, END_HEADERS, 11, b"\xbf"));
    b.extend(frame(DATA, 0, 11, b"x"));
    let trailers = [&b"\x40\x0bgrpc-status\x01"[..], b"0"].concat();
    b.extend(frame(HEADERS, END_HEADERS | END_STREAM, 11, &trailers));
    // A 502 in three frames, the first padded: 62 502, 63 grpc-status, 64 429, 65 503.
    b.extend(frame(HEADERS, PADDED, 13, &[2, 0x48, 0x03, b'5', 0, 0]));
    b.extend(frame(CONTINUATION, 0, 13, b"0"));
    b.extend(frame(CONTINUATION, END_HEADERS, 13, b"2"));
    b.extend(frame(DATA, END_STREAM, 13, b""));
    // Index 65 (0x80 | 65): right only if every block before was read in order.
    b.extend(frame(HEADERS, END_HEADERS | END_STREAM, 15, b"\xc1"));
    let o = observe_every_way(&b);
    assert_eq!(
        statuses(&o),
        [
            (1, Some(200)),
            (3, Some(503)),
            (5, Some(503)),
            (7, Some(429)),
            (9, Some(200)),
            (11, Some(503)),
            (13, Some(502)),
            (15, Some(503)),
        ]
    );
    assert_eq!(
        (
            o.stats().header_blocks_decoded,
            o.stats().header_blocks_lost
        ),
        (10, 0)
    );
    assert_eq!(o.hpack_lost(), None);
    assert!(o.streams().all(|v| !v.status_lost));
}

#[test]
fn push_promise_blocks_feed_the_table_but_give_no_status() {
    let mut b = settings(&[]);
    b.extend(frame(HEADERS, END_HEADERS, 1, &status_indexed(b"404")));
    // PUSH_PROMISE on 1 reserving 2, its request `:path: /push` indexed (name index 4):
    // 62 :path, 63 404.
    let promise = [&2u32.to_be_bytes()[..], b"\x44\x05/push"].concat();
    b.extend(frame(PUSH_PROMISE, END_HEADERS, 1, &promise));
    b.extend(frame(DATA, END_STREAM, 1, b""));
    b.extend(frame(HEADERS, END_HEADERS | END_STREAM, 2, b"\x88"));
    // 63 is the 404 only if the promise's block was decoded too.
    b.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, b"\xbf"));
    let o = observe_every_way(&b);
    assert_eq!(
        statuses(&o),
        [(1, Some(404)), (2, Some(200)), (3, Some(404))]
    );
    assert_eq!(o.stats().header_blocks_decoded, 4);
}

#[test]
fn a_gap_inside_a_header_block_loses_the_status_and_guesses_none() {
    let mut b = settings(&[]);
    b.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &status_indexed(b"503"),
    ));
    // END_STREAM on a HEADERS frame whose block goes on in a CONTINUATION.
    b.extend(frame(HEADERS, END_STREAM, 3, b"\x48\x03"));
    let mut o = H2cObserver::new(H2cDirection::ServerToClient);
    let mut facts = Vec::new();
    o.feed(&b, &mut facts);
    o.gap(12, &mut facts);
    assert!(o.is_stopped());
    assert_eq!(statuses(&o), [(1, Some(503)), (3, None)]);
    let cut = o.stream(3).unwrap();
    assert!(cut.status_lost && cut.end_stream, "{cut:?}");
    assert_eq!(o.hpack_lost(), Some(&HpackLoss::Gap { stream_id: 3 }));
    assert_eq!(o.stats().header_blocks_lost, 1);

    // A gap inside the payload of a HEADERS frame that would have ended its block: the
    // stream was never seen, so no view of it is made up.
    let mut o = H2cObserver::new(H2cDirection::ServerToClient);
    let full = frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &status_indexed(b"503"),
    );
    o.feed(&settings(&[]), &mut facts);
    o.feed(&full[..11], &mut facts);
    o.gap(3, &mut facts);
    assert_eq!(o.hpack_lost(), Some(&HpackLoss::Gap { stream_id: 1 }));
    assert!(statuses(&o).is_empty());

    // A gap outside any block ends parsing but loses no HPACK state.
    let mut o = H2cObserver::new(H2cDirection::ServerToClient);
    o.feed(&settings(&[]), &mut facts);
    o.feed(&frame(HEADERS, END_HEADERS, 1, b"\x88"), &mut facts);
    o.gap(3, &mut facts);
    assert_eq!((o.hpack_lost(), statuses(&o)), (None, vec![(1, Some(200))]));
}

#[test]
fn an_undecodable_or_oversized_block_stops_reading() {
    let mut b = settings(&[]);
    b.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &status_indexed(b"503"),
    ));
    // Index 70 is past the table's end (RFC 7541 section 2.3.3: a decoding error).
    b.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, b"\xc6"));
    // The 503 at 62 would decode, but the state is lost: not read, not guessed.
    b.extend(frame(HEADERS, END_HEADERS | END_STREAM, 5, b"\xbe"));
    let (facts, o) = observe(H2cDirection::ServerToClient, &b);
    assert!(!o.is_stopped(), "frames still parse: {facts:?}");
    assert_eq!(statuses(&o), [(1, Some(503)), (3, None), (5, None)]);
    assert!(o.stream(3).unwrap().status_lost && o.stream(5).unwrap().status_lost);
    assert!(
        matches!(o.hpack_lost(), Some(HpackLoss::Decode { stream_id: 3, .. })),
        "{:?}",
        o.hpack_lost()
    );
    assert_eq!(
        (
            o.stats().header_blocks_decoded,
            o.stats().header_blocks_lost
        ),
        (1, 2)
    );

    // A block over the cap is not kept; the table it would have changed is lost.
    let mut b = settings(&[]);
    let mut big = status_indexed(b"200");
    // A literal header not indexed, new name, value of 2^16 bytes (integer continued,
    // section 5.1: 127 + 65409 = 0x7f, 0x81, 0xff, 0x03).
    big.extend(b"\x00\x01x\x7f\x81\xff\x03");
    big.resize(big.len() + 65_536, b'v');
    b.extend(frame(HEADERS, 0, 1, &big[..16_000]));
    b.extend(frame(CONTINUATION, 0, 1, &big[16_000..50_000]));
    b.extend(frame(CONTINUATION, END_HEADERS, 1, &big[50_000..]));
    b.extend(frame(DATA, END_STREAM, 1, b""));
    b.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, b"\x88"));
    let (facts, o) = observe_chunks(H2cDirection::ServerToClient, b.chunks(1000));
    assert!(!o.is_stopped(), "{facts:?}");
    assert_eq!(statuses(&o), [(1, None), (3, None)]);
    assert_eq!(
        o.hpack_lost(),
        Some(&HpackLoss::TooLarge {
            stream_id: 1,
            len_bytes: big.len() as u64,
            max_bytes: MAX_HEADER_BLOCK_BYTES,
        })
    );

    // A table size update (section 6.3) past what the reader follows.
    let mut b = settings(&[]);
    // 0x3f then 2^17 - 31 continued: a table of 128 KiB.
    b.extend(frame(HEADERS, END_HEADERS, 1, b"\x3f\xe1\xff\x07\x88"));
    let (_, o) = observe(H2cDirection::ServerToClient, &b);
    assert_eq!(statuses(&o), [(1, None)]);
    assert!(matches!(o.hpack_lost(), Some(HpackLoss::Decode { .. })));
    // One the reader follows: the table shrinks, then grows back within bounds.
    let mut b = settings(&[]);
    b.extend(frame(HEADERS, END_HEADERS, 1, b"\x20\x88"));
    b.extend(frame(HEADERS, END_HEADERS, 3, b"\x3f\xe1\x1f\x48\x03503"));
    b.extend(frame(HEADERS, END_HEADERS, 5, b"\xbe"));
    let (_, o) = observe(H2cDirection::ServerToClient, &b);
    assert_eq!(
        statuses(&o),
        [(1, Some(200)), (3, Some(503)), (5, Some(503))]
    );
}

#[test]
fn blocks_from_an_hpack_encoder_decode_in_order() {
    let mut enc = Encoder::new();
    let mut block = |status: &str, backend: &str| {
        enc.encode([
            (&b":status"[..], status.as_bytes()),
            (&b"content-type"[..], &b"text/plain"[..]),
            (&b"x-backend"[..], backend.as_bytes()),
            (&b"x-request-id"[..], &b"a1"[..]),
        ])
    };
    let blocks = [
        block("503", "db-7"),
        block("503", "db-7"),
        block("429", "db-9"),
        block("200", "db-9"),
    ];
    // The encoder indexes the custom fields: later blocks refer to the dynamic table.
    assert!(blocks[1].len() < blocks[0].len() / 2, "{blocks:02x?}");
    let mut b = settings(&[]);
    for (i, block) in (1u32..).step_by(2).zip(&blocks) {
        b.extend(frame(HEADERS, END_HEADERS | END_STREAM, i, block));
    }
    let o = observe_every_way(&b);
    assert_eq!(
        statuses(&o),
        [
            (1, Some(503)),
            (3, Some(503)),
            (5, Some(429)),
            (7, Some(200))
        ]
    );
}

/// A real h2 server answers four requests on one connection: 503, 503 (indexed from the
/// dynamic table the first put it in), 429 with a body, 200 with trailers.
async fn h2_statuses_exchange() -> Vec<u8> {
    let (a, b) = tokio::io::duplex(1 << 16);
    let s2c = Arc::new(Mutex::new(Vec::new()));
    let server_io = Tap {
        inner: b,
        log: s2c.clone(),
    };
    let server = tokio::spawn(async move {
        let mut conn = h2::server::handshake(server_io).await.unwrap();
        let mut n = 0;
        while let Some(req) = conn.accept().await {
            let Ok((_req, mut respond)) = req else { break };
            n += 1;
            let status = [503, 503, 429, 200][(n - 1) % 4];
            let resp = http::Response::builder().status(status).body(()).unwrap();
            let bodiless = status == 503;
            let mut send = respond.send_response(resp, bodiless).unwrap();
            if status == 429 {
                send.send_data(bytes::Bytes::from_static(b"slow down"), true)
                    .unwrap();
            } else if status == 200 {
                send.send_data(bytes::Bytes::from_static(b"ok"), false)
                    .unwrap();
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                send.send_trailers(trailers).unwrap();
            }
        }
    });
    let (mut client, conn) = h2::client::handshake(a).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    for _ in 0..4 {
        let req = http::Request::builder()
            .uri("http://api.example.test/")
            .body(())
            .unwrap();
        client = client.ready().await.unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let mut body = resp.await.unwrap().into_body();
        while let Some(chunk) = body.data().await {
            let n = chunk.unwrap().len();
            body.flow_control().release_capacity(n).unwrap();
        }
        let _ = body.trailers().await;
    }
    drop(client);
    let _ = driver.await;
    server.await.unwrap();
    s2c.lock().unwrap().clone()
}

#[tokio::test]
async fn a_real_h2_server_answering_503_twice() {
    let s2c = tokio::time::timeout(Duration::from_secs(20), h2_statuses_exchange())
        .await
        .expect("h2 exchange finished");
    let o = observe_every_way(&s2c);
    assert_eq!(
        statuses(&o),
        [
            (1, Some(503)),
            (3, Some(503)),
            (5, Some(429)),
            (7, Some(200))
        ]
    );
    assert_eq!(o.stats().header_blocks_lost, 0);
    assert_eq!(
        o.stats().header_blocks_decoded,
        5,
        "4 responses and 1 trailers"
    );
    // The second 503 was a reference to the dynamic table (RFC 7541 section 6.1): one
    // byte, meaningless without the first block.
    let mut dec = wire::h2frame::FrameDecoder::new(DecoderOptions {
        keep_header_blocks: true,
        ..DecoderOptions::default()
    });
    let mut blocks = BTreeMap::new();
    dec.feed(&s2c, |f| {
        if let Frame::HeaderBlock {
            stream_id,
            block: Some(block),
            ..
        } = f
        {
            blocks.entry(stream_id).or_insert_with(|| block.to_vec());
        }
    })
    .unwrap();
    assert_eq!(blocks[&3].len(), 1, "{blocks:02x?}");
    assert!(blocks[&3][0] >= 0x80 | 62, "{blocks:02x?}");
}
