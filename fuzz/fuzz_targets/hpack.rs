#![no_main]
//! Fuzz target: the statuses the h2c observer reads from the server's header blocks
//! (`analyzer-user/src/raw/h2c/status/hpack.rs`, our HPACK decoder) are the ones
//! loona-hpack 0.4.3's decoder, which it replaced, gives for the same blocks: the same
//! `:status` per block, lost from the same block on, never a panic.
//!
//! The input is a sequence of header blocks, each one length octet then its bytes; each
//! block is one HEADERS frame (END_HEADERS, END_STREAM) on its own stream: 1, 3, 5, ...
use analyzer::raw::h2c::{H2cDirection, H2cObserver, MAX_TABLE_BYTES};
use libfuzzer_sys::fuzz_target;
use wire::h2frame::encode_frame;

/// What loona-hpack says of one block: its final status, or `Err` once the state is lost.
fn reference(decoder: &mut loona_hpack::Decoder<'_>, block: &[u8]) -> Result<Option<u16>, ()> {
    let mut status = None;
    decoder
        .decode_with_cb(block, |name, value| {
            if status.is_none() && &name[..] == b":status" {
                status = Some(parse_status(&value));
            }
        })
        .map_err(drop)?;
    // The observer keeps the first final status of a stream (RFC 9113 section 8.1).
    Ok(status.flatten().filter(|s| *s >= 200))
}

/// RFC 9110 section 15: three digits, from 100.
fn parse_status(value: &[u8]) -> Option<u16> {
    let digits: &[u8; 3] = value.try_into().ok()?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let status = digits.iter().fold(0, |n, d| n * 10 + u16::from(d - b'0'));
    (status >= 100).then_some(status)
}

fuzz_target!(|data: &[u8]| {
    let mut blocks = Vec::new();
    let mut rest = data;
    // Within the streams the observer tracks (MAX_TRACKED_STREAMS).
    while let Some((&len, tail)) = rest.split_first().filter(|_| blocks.len() < 1000) {
        let len = usize::from(len).min(tail.len());
        blocks.push(&tail[..len]);
        rest = &tail[len..];
    }
    let mut bytes = encode_frame(0x4, 0, 0, &[]);
    for (stream_id, block) in (1u32..).step_by(2).zip(&blocks) {
        bytes.extend(encode_frame(0x1, 0x4 | 0x1, stream_id, block));
    }
    let mut observer = H2cObserver::new(H2cDirection::ServerToClient);
    observer.feed(&bytes, &mut Vec::new());

    let mut decoder = loona_hpack::Decoder::new();
    decoder.set_max_allowed_table_size(MAX_TABLE_BYTES);
    let mut lost = false;
    for (stream_id, block) in (1u32..).step_by(2).zip(&blocks) {
        let want = if lost {
            Err(())
        } else {
            reference(&mut decoder, block)
        };
        lost = want.is_err();
        let view = observer.stream(stream_id).expect("every stream tracked");
        let got = if view.status_lost {
            Err(())
        } else {
            Ok(view.status)
        };
        assert_eq!(got, want, "stream {stream_id}, block {block:02x?}");
    }
    assert_eq!(observer.hpack_lost().is_some(), lost);
});
