#![no_main]
//! Fuzz target: the HTTP/2 frame decoder never panics, never buffers beyond its bound, and
//! decodes the same frames whether its input arrives whole or split in two.
//!
//! The first input byte picks the split position; the rest is the byte stream, decoded
//! both as server-to-client frames and as a client-to-server stream with preface.
use libfuzzer_sys::fuzz_target;
use wire::h2frame::{DecoderOptions, FrameDecoder, FrameError, MAX_BUFFERED_BYTES};

struct Outcome {
    frames: Vec<String>,
    result: Result<(), FrameError>,
    bytes_seen: u64,
    frames_seen: u64,
}

fn decode(opts: DecoderOptions, chunks: &[&[u8]]) -> Outcome {
    let mut dec = FrameDecoder::new(opts);
    let mut frames = Vec::new();
    let mut result = Ok(());
    for chunk in chunks {
        result = dec.feed(chunk, |f| frames.push(format!("{f:?}")));
        assert!(
            dec.buffered_bytes() <= MAX_BUFFERED_BYTES,
            "decoder buffers {} bytes",
            dec.buffered_bytes()
        );
    }
    assert_eq!(
        frames.len() as u64,
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
            let opts = DecoderOptions {
                expect_client_preface,
                max_frame_size_bytes,
            };
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
        }
    }
});
