//! Tests of header block assembly: fragments of HEADERS, PUSH_PROMISE and CONTINUATION
//! frames without padding and priority fields, in any chunking, bounded by the cap.
use super::*;

const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;

fn keeping(max_header_block_bytes: usize) -> DecoderOptions {
    DecoderOptions {
        keep_header_blocks: true,
        max_header_block_bytes,
        ..DecoderOptions::default()
    }
}

fn block(stream_id: u32, end_stream: bool, bytes: Option<&[u8]>, len_bytes: u64) -> String {
    dbg(Frame::HeaderBlock {
        stream_id,
        promised_id: None,
        end_stream,
        block: bytes,
        len_bytes,
    })
}

fn headers(stream_id: u32, end_stream: bool, end_headers: bool) -> String {
    dbg(Frame::Headers {
        stream_id,
        end_stream,
        end_headers,
    })
}

fn continuation(stream_id: u32, end_headers: bool) -> String {
    dbg(Frame::Continuation {
        stream_id,
        end_headers,
    })
}

/// Decodes `bytes` with `opts` whole, split at every position and a byte at a time,
/// checks all agree (and the buffer bound, in `run`), and returns the frames.
fn decode_every_way(opts: DecoderOptions, bytes: &[u8]) -> Vec<String> {
    let (whole, result, dec) = run(opts, [bytes]);
    result.unwrap_or_else(|e| panic!("valid frames rejected: {e}"));
    assert_eq!(dec.bytes_seen(), bytes.len() as u64, "bytes_seen");
    assert_eq!(dec.buffered_bytes(), 0, "buffered after the last frame");
    for at in 0..=bytes.len() {
        let (split, result, _) = run(opts, [&bytes[..at], &bytes[at..]]);
        assert_eq!((split, result), (whole.clone(), Ok(())), "split at {at}");
    }
    let (bytewise, result, _) = run(opts, bytes.chunks(1));
    assert_eq!(
        (bytewise, result),
        (whole.clone(), Ok(())),
        "byte at a time"
    );
    whole
}

#[test]
fn blocks_are_kept_only_on_request() {
    let bytes = frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x88");
    assert_eq!(decode(&bytes), [headers(1, true, true)]);
    let (frames, result, dec) = run(keeping(16), [&bytes[..]]);
    assert_eq!(result, Ok(()));
    assert_eq!(
        frames,
        [headers(1, true, true), block(1, true, Some(b"\x88"), 1)]
    );
    assert_eq!(dec.frames_seen(), 1, "a header block is not a frame");
}

#[test]
fn padding_and_priority_fields_are_stripped() {
    let bytes = [
        // Pad Length 2, then the 5 priority bytes, the fragment, the padding.
        frame(
            HEADERS,
            END_HEADERS | PADDED | PRIORITY,
            3,
            &[2, 0x80, 0, 0, 1, 16, b'a', b'b', b'c', 0, 0],
        ),
        frame(HEADERS, END_HEADERS | PRIORITY, 5, &[0, 0, 0, 3, 7, b'd']),
        frame(HEADERS, END_HEADERS | PADDED, 7, &[1, b'e', b'f', 0]),
        // Padding may fill the payload: an empty block.
        frame(HEADERS, END_HEADERS | END_STREAM | PADDED, 9, &[3, 0, 0, 0]),
        frame(HEADERS, END_HEADERS, 11, &[]),
    ]
    .concat();
    assert_eq!(
        decode_every_way(keeping(16), &bytes),
        [
            headers(3, false, true),
            block(3, false, Some(b"abc"), 3),
            headers(5, false, true),
            block(5, false, Some(b"d"), 1),
            headers(7, false, true),
            block(7, false, Some(b"ef"), 2),
            headers(9, true, true),
            block(9, true, Some(b""), 0),
            headers(11, false, true),
            block(11, false, Some(b""), 0),
        ]
    );
}

#[test]
fn continuations_join_the_block_and_push_promises_name_their_stream() {
    let bytes = [
        frame(HEADERS, END_STREAM | PADDED, 1, &[1, b'a', b'b', 0]),
        frame(CONTINUATION, 0, 1, b"cd"),
        frame(CONTINUATION, 0, 1, b""),
        // CONTINUATION defines no PADDED flag (RFC 9113 section 6.10): 0x8 is ignored.
        frame(CONTINUATION, END_HEADERS | PADDED, 1, b"\x05e"),
        frame(PUSH_PROMISE, PADDED, 1, &[2, 0, 0, 0, 2, b'p', 0, 0]),
        frame(CONTINUATION, END_HEADERS, 1, b"q"),
        // A frame between blocks.
        frame(0x6, 0, 0, &[0; 8]),
        frame(HEADERS, END_HEADERS, 2, b"r"),
    ]
    .concat();
    let promised = dbg(Frame::HeaderBlock {
        stream_id: 1,
        promised_id: Some(2),
        end_stream: false,
        block: Some(b"pq"),
        len_bytes: 2,
    });
    assert_eq!(
        decode_every_way(keeping(16), &bytes),
        [
            headers(1, true, false),
            continuation(1, false),
            continuation(1, false),
            continuation(1, true),
            block(1, true, Some(b"abcd\x05e"), 6),
            dbg(Frame::PushPromise {
                stream_id: 1,
                promised_id: 2,
            }),
            continuation(1, true),
            promised,
            dbg(Frame::Ping {
                ack: false,
                opaque: [0; 8],
            }),
            headers(2, false, true),
            block(2, false, Some(b"r"), 1),
        ]
    );
}

#[test]
fn a_block_over_the_cap_is_reported_not_buffered() {
    let bytes = [
        // Exactly the cap of 6, across three frames.
        frame(HEADERS, PADDED, 1, &[3, b'a', b'b', 0, 0, 0]),
        frame(CONTINUATION, 0, 1, b"cd"),
        frame(CONTINUATION, END_HEADERS, 1, b"ef"),
        // One byte over it, in the last CONTINUATION.
        frame(HEADERS, 0, 3, b"abcd"),
        frame(CONTINUATION, END_HEADERS, 3, b"efg"),
        // Over it in the first frame already.
        frame(HEADERS, END_HEADERS, 5, &[b'x'; 100]),
        // The next block starts afresh.
        frame(HEADERS, END_HEADERS | END_STREAM, 7, b"ok"),
    ]
    .concat();
    let frames = decode_every_way(keeping(6), &bytes);
    let blocks: Vec<&String> = frames
        .iter()
        .filter(|f| f.starts_with("HeaderBlock"))
        .collect();
    assert_eq!(
        blocks,
        [
            &block(1, false, Some(b"abcdef"), 6),
            &block(3, false, None, 7),
            &block(5, false, None, 100),
            &block(7, true, Some(b"ok"), 2),
        ]
    );
    // Between calls the decoder holds at most the cap and a partial frame header.
    let mut dec = FrameDecoder::new(keeping(6));
    let mut most = 0;
    for b in &bytes {
        dec.feed(&[*b], |_| {}).unwrap();
        most = most.max(dec.buffered_bytes());
    }
    assert!(
        most <= FRAME_HEADER_LEN_BYTES - 1 + 6,
        "{most} bytes buffered"
    );
}

#[test]
fn a_huge_block_streams_past_and_frees_its_buffer() {
    let cap = DEFAULT_MAX_HEADER_BLOCK_BYTES;
    let opts = keeping(cap);
    let mut dec = FrameDecoder::new(opts);
    let mut blocks = Vec::new();
    let mut feed = |dec: &mut FrameDecoder, bytes: &[u8]| {
        dec.feed(bytes, |f| {
            if let Frame::HeaderBlock {
                block, len_bytes, ..
            } = f
            {
                blocks.push((block.map(<[u8]>::len), len_bytes));
            }
        })
        .unwrap();
        assert!(dec.buffered_bytes() <= opts.max_buffered_bytes());
    };
    let fragment = vec![0x41; cap - 1];
    feed(&mut dec, &frame(HEADERS, 0, 1, &fragment));
    assert_eq!(dec.buffered_bytes(), cap - 1, "the block so far is held");
    for _ in 0..40 {
        feed(&mut dec, &frame(CONTINUATION, 0, 1, &fragment));
        assert_eq!(dec.buffered_bytes(), 0, "a block over the cap is dropped");
    }
    feed(&mut dec, &frame(CONTINUATION, END_HEADERS, 1, b"z"));
    feed(&mut dec, &frame(HEADERS, END_HEADERS, 3, &fragment));
    assert_eq!(
        blocks,
        [
            (None, 41 * (cap as u64 - 1) + 1),
            (Some(cap - 1), cap as u64 - 1)
        ]
    );
    assert_eq!(dec.buffered_bytes(), 0);
}

#[test]
fn framing_errors_are_the_same_when_blocks_are_kept() {
    let cases = [
        // Padding longer than the payload after the priority fields (RFC 9113 section 6.2).
        frame(
            HEADERS,
            END_HEADERS | PADDED | PRIORITY,
            1,
            &[2, 0, 0, 0, 0, 0, 0],
        ),
        frame(PUSH_PROMISE, END_HEADERS | PADDED, 1, &[9, 0, 0, 0, 2, 0]),
        // A block interrupted (section 6.10).
        [
            frame(HEADERS, 0, 1, b"a"),
            frame(HEADERS, END_HEADERS, 3, b"b"),
        ]
        .concat(),
        frame(CONTINUATION, END_HEADERS, 1, b"a"),
    ];
    for bytes in cases {
        let (plain, plain_result, plain_dec) = run(DecoderOptions::default(), [&bytes[..]]);
        let (kept, kept_result, kept_dec) = run(keeping(16), [&bytes[..]]);
        assert!(plain_result.is_err(), "{bytes:02x?} accepted");
        assert_eq!(
            (kept, kept_result, kept_dec.bytes_seen()),
            (plain, plain_result, plain_dec.bytes_seen()),
            "{bytes:02x?}"
        );
        assert_eq!(kept_dec.buffered_bytes(), 0, "failed decoder holds nothing");
    }
}
