#![no_main]
//! Fuzz target: the HTTP/2 frame decoder never panics, never buffers beyond its bound, and
//! decodes the same frames (and header blocks, when kept) whether its input arrives whole
//! or split in two.
//!
//! The first input byte picks the split position; the rest is the byte stream, decoded
//! both as server-to-client frames and as a client-to-server stream with preface.
use libfuzzer_sys::fuzz_target;
use wire::h2frame::{DecoderOptions, Frame, FrameDecoder, FrameError};

struct Outcome {
    frames: Vec<String>,
    result: Result<(), FrameError>,
    bytes_seen: u64,
    frames_seen: u64,
}

fn decode(opts: DecoderOptions, chunks: &[&[u8]]) -> Outcome {
    let mut dec = FrameDecoder::new(opts);
    let mut frames = Vec::new();
    let mut blocks = 0u64;
    let mut result = Ok(());
    for chunk in chunks {
        result = dec.feed(chunk, |f| {
            blocks += u64::from(matches!(f, Frame::HeaderBlock { .. }));
            frames.push(format!("{f:?}"));
        });
        assert!(
            dec.buffered_bytes() <= opts.max_buffered_bytes(),
            "decoder buffers {} bytes",
            dec.buffered_bytes()
        );
    }
    assert_eq!(
        frames.len() as u64 - blocks,
        dec.frames_seen(),
        "frames_seen disagrees with the callbacks"
    );
    Outcome {
        frames,
        result,
        bytes_seen: dec.bytes_seen(),
        frames_seen: dec.frames_seen(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let at = usize::from(split) * bytes.len() / 255;
    for expect_client_preface in [false, true] {
        for max_frame_size_bytes in [16_384, DecoderOptions::default().max_frame_size_bytes] {
            let plain = DecoderOptions {
                expect_client_preface,
                max_frame_size_bytes,
                ..DecoderOptions::default()
            };
            let frames = check_split(plain, bytes, at);
            // Keeping header blocks adds them and changes nothing else; a small cap lets
            // the fuzzer reach blocks over it.
            for max_header_block_bytes in [64, 64 * 1024] {
                let keep = DecoderOptions {
                    keep_header_blocks: true,
                    max_header_block_bytes,
                    ..plain
                };
                let mut with_blocks = check_split(keep, bytes, at);
                with_blocks.retain(|f| !f.starts_with("HeaderBlock"));
                assert_eq!(
                    with_blocks, frames,
                    "keeping header blocks changed the frames"
                );
            }
        }
    }
});

/// Decodes `bytes` whole and split at `at`, checks both agree, and returns the frames.
fn check_split(opts: DecoderOptions, bytes: &[u8], at: usize) -> Vec<String> {
    let whole = decode(opts, &[bytes]);
    let split = decode(opts, &[&bytes[..at], &bytes[at..]]);
    assert_eq!(
        split.frames, whole.frames,
        "frames differ when split at {at}"
    );
    assert_eq!(
        split.result, whole.result,
        "result differs when split at {at}"
    );
    assert_eq!(
        split.bytes_seen, whole.bytes_seen,
        "bytes_seen differs when split at {at}"
    );
    assert_eq!(split.frames_seen, whole.frames_seen, "frames_seen differs");
    if whole.result.is_ok() {
        assert_eq!(whole.bytes_seen, bytes.len() as u64, "input left unread");
    }
    whole.frames
}
