//! Tests of the HTTP/2 frame decoder: round trips, chunking, malformed frames, bounds.
use super::*;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

use super::encode_frame as frame;

// Header block assembly (DecoderOptions::keep_header_blocks) has its own file.
mod blocks;

fn setting(id: u16, value: u32) -> Vec<u8> {
    [&id.to_be_bytes()[..], &value.to_be_bytes()].concat()
}

fn u32s(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// Feeds `chunks` to a fresh decoder; frames come back as their Debug text.
fn run<'c>(
    opts: DecoderOptions,
    chunks: impl IntoIterator<Item = &'c [u8]>,
) -> (Vec<String>, Result<(), FrameError>, FrameDecoder) {
    let mut dec = FrameDecoder::new(opts);
    let mut frames = Vec::new();
    let mut result = Ok(());
    for chunk in chunks {
        result = dec.feed(chunk, |f| frames.push(format!("{f:?}")));
        assert!(
            dec.buffered_bytes() <= opts.max_buffered_bytes(),
            "decoder buffers {} bytes",
            dec.buffered_bytes()
        );
    }
    (frames, result, dec)
}

fn decode(bytes: &[u8]) -> Vec<String> {
    let (frames, result, _) = run(DecoderOptions::default(), [bytes]);
    result.unwrap_or_else(|e| panic!("valid frames rejected: {e}"));
    frames
}

fn decode_result(bytes: &[u8]) -> Result<(), FrameError> {
    run(DecoderOptions::default(), [bytes]).1
}

fn dbg(f: Frame<'_>) -> String {
    format!("{f:?}")
}

#[test]
fn error_codes_have_rfc_names_and_parse_back() {
    assert_eq!(ErrorCode(0).name(), "NO_ERROR");
    assert_eq!(ErrorCode::REFUSED_STREAM.name(), "REFUSED_STREAM");
    assert_eq!(ErrorCode(0xb).to_string(), "ENHANCE_YOUR_CALM");
    assert_eq!(ErrorCode(0xd).name(), "HTTP_1_1_REQUIRED");
    assert_eq!(ErrorCode(0x1f).name(), "0x1f");
    for n in 0..0x20 {
        let code = ErrorCode(n);
        let back: ErrorCode = code
            .name()
            .parse()
            .unwrap_or_else(|e| panic!("{code}: {e}"));
        assert_eq!(back, code, "name {} does not parse back", code.name());
    }
    assert_eq!(
        "enhance_your_calm".parse(),
        Ok(ErrorCode::ENHANCE_YOUR_CALM)
    );
    assert_eq!("Refused_Stream".parse(), Ok(ErrorCode(7)));
    assert!(
        "NOT_A_CODE".parse::<ErrorCode>().is_err(),
        "unknown name accepted"
    );
    assert!("".parse::<ErrorCode>().is_err(), "empty name accepted");
    assert_eq!(SettingId(3).name(), "SETTINGS_MAX_CONCURRENT_STREAMS");
    assert_eq!(SettingId(0x2a).name(), "0x2a");
    assert_eq!(FrameKind::GOAWAY.name(), "GOAWAY");
    assert_eq!(FrameKind(0xf0).to_string(), "0xf0");
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "a flat table: one frame of each type and the decoding it must give"
)]
fn each_frame_type_round_trips() {
    let cases: Vec<(Vec<u8>, String)> = vec![
        (
            frame(0x0, END_STREAM | PADDED, 1, &[3, b'h', b'i', 0, 0, 0]),
            dbg(Frame::Data {
                stream_id: 1,
                len: 6,
                end_stream: true,
                padded: true,
            }),
        ),
        (
            frame(
                0x1,
                END_HEADERS | PRIORITY | PADDED,
                3,
                &[1, 0, 0, 0, 1, 16, 0x82, 0],
            ),
            dbg(Frame::Headers {
                stream_id: 3,
                end_stream: false,
                end_headers: true,
            }),
        ),
        (
            // Padding may fill the payload, leaving an empty header block fragment.
            frame(0x1, END_HEADERS | PADDED, 5, &[2, 0, 0]),
            dbg(Frame::Headers {
                stream_id: 5,
                end_stream: false,
                end_headers: true,
            }),
        ),
        (
            frame(0x2, 0, 5, &[0, 0, 0, 1, 16]),
            dbg(Frame::Priority { stream_id: 5 }),
        ),
        (
            frame(0x3, 0, 3, &u32s(&[7])),
            dbg(Frame::RstStream {
                stream_id: 3,
                code: ErrorCode::REFUSED_STREAM,
            }),
        ),
        (
            frame(0x5, END_HEADERS | PADDED, 1, &[1, 0x80, 0, 0, 2, 0x82, 0]),
            dbg(Frame::PushPromise {
                stream_id: 1,
                promised_id: 2,
            }),
        ),
        (
            frame(0x6, ACK, 0, b"12345678"),
            dbg(Frame::Ping {
                ack: true,
                opaque: *b"12345678",
            }),
        ),
        (
            // The reserved bit of last_stream_id is masked (RFC 9113 section 6.8).
            frame(
                0x7,
                0,
                0,
                &[&u32s(&[0x8000_0003, 0xb])[..], b"calm"].concat(),
            ),
            dbg(Frame::GoAway {
                last_stream_id: 3,
                code: ErrorCode::ENHANCE_YOUR_CALM,
                debug: b"calm",
                debug_len: 4,
            }),
        ),
        (
            frame(0x8, 0, 0, &u32s(&[0x8000_0010])),
            dbg(Frame::WindowUpdate {
                stream_id: 0,
                increment: 16,
            }),
        ),
        (
            frame(0xf0, 0x3, 9, b"ext"),
            dbg(Frame::Unknown {
                kind: FrameKind(0xf0),
                flags: 3,
                stream_id: 9,
                len: 3,
            }),
        ),
        // The reserved bit of the frame header's stream id is masked (section 4.1).
        (
            frame(0x2, 0, 0x8000_0007, &[0; 5]),
            dbg(Frame::Priority { stream_id: 7 }),
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(decode(&bytes), [want], "decoding {bytes:02x?}");
    }
    let block = [
        frame(0x1, END_STREAM, 1, &[0x82]),
        frame(0x9, 0, 1, &[0x84]),
        frame(0x9, 4, 1, &[]),
    ];
    let want = [
        dbg(Frame::Headers {
            stream_id: 1,
            end_stream: true,
            end_headers: false,
        }),
        dbg(Frame::Continuation {
            stream_id: 1,
            end_headers: false,
        }),
        dbg(Frame::Continuation {
            stream_id: 1,
            end_headers: true,
        }),
    ];
    assert_eq!(
        decode(&block.concat()),
        want,
        "header block with CONTINUATION"
    );
}

#[test]
fn settings_keep_order_names_and_unknown_ids() {
    let payload = [
        setting(3, 7),
        setting(4, 65_535),
        setting(0x2a, 1),
        setting(3, 9),
    ]
    .concat();
    let bytes = [frame(0x4, 0, 0, &payload), frame(0x4, ACK, 0, &[])].concat();
    let mut seen = Vec::new();
    FrameDecoder::new(DecoderOptions::default())
        .feed(&bytes, |f| match f {
            Frame::Settings { ack, params } => {
                let named: Vec<_> = params
                    .iter()
                    .map(|(id, v)| (id.name().into_owned(), v))
                    .collect();
                seen.push((
                    ack,
                    named,
                    params.get(SettingId::SETTINGS_MAX_CONCURRENT_STREAMS),
                ));
            }
            other => panic!("expected SETTINGS, got {other:?}"),
        })
        .unwrap_or_else(|e| panic!("valid SETTINGS rejected: {e}"));
    let names = [
        "SETTINGS_MAX_CONCURRENT_STREAMS",
        "SETTINGS_INITIAL_WINDOW_SIZE",
        "0x2a",
    ];
    let want_params: Vec<(String, u32)> = [
        (names[0], 7),
        (names[1], 65_535),
        (names[2], 1),
        (names[0], 9),
    ]
    .map(|(n, v)| (n.to_owned(), v))
    .into();
    assert_eq!(
        seen,
        vec![(false, want_params, Some(9)), (true, vec![], None)],
        "SETTINGS decoded"
    );
}

#[test]
fn large_goaway_and_settings_keep_a_bounded_prefix() {
    let debug = vec![b'x'; 5000];
    let goaway = frame(0x7, 0, 0, &[&u32s(&[1, 0])[..], &debug].concat());
    let settings = frame(
        0x4,
        0,
        0,
        &setting(1, 4096).repeat(SETTINGS_KEPT_PARAMS + 10),
    );
    let mut seen = Vec::new();
    FrameDecoder::new(DecoderOptions::default())
        .feed(&[goaway, settings].concat(), |f| match f {
            Frame::GoAway {
                debug, debug_len, ..
            } => seen.push((debug.len(), debug_len as usize)),
            Frame::Settings { params, .. } => {
                assert!(
                    params.is_truncated(),
                    "SETTINGS beyond the cap not reported truncated"
                );
                seen.push((params.iter().count(), params.len()));
            }
            other => panic!("unexpected frame {other:?}"),
        })
        .unwrap_or_else(|e| panic!("large control frames rejected: {e}"));
    let want = [
        (GOAWAY_DEBUG_KEPT_BYTES, 5000),
        (SETTINGS_KEPT_PARAMS, SETTINGS_KEPT_PARAMS + 10),
    ];
    assert_eq!(seen, want, "kept prefix and full lengths");
}

/// A client-to-server stream with every frame type, preface first.
fn sample_stream() -> Vec<u8> {
    [
        CLIENT_PREFACE.to_vec(),
        frame(0x4, 0, 0, &[setting(2, 0), setting(4, 1 << 20)].concat()),
        frame(0x8, 0, 0, &u32s(&[1 << 20])),
        frame(0x1, PRIORITY, 1, &[0, 0, 0, 0, 16, 0x82]),
        frame(0x9, END_HEADERS, 1, &[0x84]),
        frame(0x0, PADDED, 1, &[4, b'b', b'o', b'd', b'y', 0, 0, 0, 0]),
        frame(0x0, END_STREAM, 1, &[]),
        frame(0x4, ACK, 0, &[]),
        frame(0x2, 0, 3, &[0, 0, 0, 1, 8]),
        frame(0x6, 0, 0, &[9; 8]),
        frame(0x5, END_HEADERS, 1, &[0, 0, 0, 2, 0x82]),
        frame(0x3, 0, 3, &u32s(&[8])),
        frame(0xfe, 0, 0, b"extension"),
        frame(0x7, 0, 0, &[&u32s(&[3, 0])[..], b"bye"].concat()),
    ]
    .concat()
}

#[test]
fn feeding_split_at_every_byte_boundary_gives_the_same_frames() {
    let bytes = sample_stream();
    let opts = DecoderOptions {
        expect_client_preface: true,
        ..DecoderOptions::default()
    };
    let (whole, result, dec) = run(opts, [&bytes[..]]);
    result.unwrap_or_else(|e| panic!("sample stream rejected: {e}"));
    assert_eq!(whole.len(), 13, "frames in the sample: {whole:#?}");
    assert_eq!(dec.frames_seen(), 13, "frames_seen");
    assert_eq!(dec.bytes_seen(), bytes.len() as u64, "bytes_seen");
    for at in 0..=bytes.len() {
        let (split, result, _) = run(opts, [&bytes[..at], &bytes[at..]]);
        assert_eq!(result, Ok(()), "split at {at}");
        assert_eq!(split, whole, "split at {at}");
    }
    let (bytewise, result, _) = run(opts, bytes.chunks(1));
    assert_eq!(
        (bytewise, result),
        (whole, Ok(())),
        "byte-at-a-time feeding"
    );
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "a flat table: one malformed frame per RFC 9113 rule and the error it must give"
)]
fn malformed_frames_are_errors() {
    use FrameError::*;
    type K = FrameKind;
    let len = |kind, len_bytes, rule, section| BadLength {
        kind,
        len_bytes,
        rule,
        section,
    };
    let cases: Vec<(Vec<u8>, FrameError)> = vec![
        (
            frame(0x3, 0, 1, &[0; 3]),
            len(K::RST_STREAM, 3, "not 4", "6.4"),
        ),
        (
            frame(0x3, 0, 0, &[0; 4]),
            StreamIdZero {
                kind: K::RST_STREAM,
                section: "6.4",
            },
        ),
        (
            frame(0x4, 0, 0, &[0; 5]),
            len(K::SETTINGS, 5, "not a multiple of 6", "6.5"),
        ),
        (
            frame(0x4, ACK, 0, &[0; 6]),
            len(K::SETTINGS, 6, "but an ACK must be empty", "6.5"),
        ),
        (
            frame(0x4, 0, 1, &[]),
            StreamIdNonZero {
                kind: K::SETTINGS,
                stream_id: 1,
                section: "6.5",
            },
        ),
        (frame(0x6, 0, 0, &[0; 7]), len(K::PING, 7, "not 8", "6.7")),
        (
            frame(0x6, 0, 5, &[0; 8]),
            StreamIdNonZero {
                kind: K::PING,
                stream_id: 5,
                section: "6.7",
            },
        ),
        (
            frame(0x7, 0, 0, &[0; 7]),
            len(K::GOAWAY, 7, "shorter than its 8 fixed bytes", "6.8"),
        ),
        (
            frame(0x7, 0, 1, &[0; 8]),
            StreamIdNonZero {
                kind: K::GOAWAY,
                stream_id: 1,
                section: "6.8",
            },
        ),
        (
            frame(0x8, 0, 1, &[0; 5]),
            len(K::WINDOW_UPDATE, 5, "not 4", "6.9"),
        ),
        (
            frame(0x0, 0, 0, b"x"),
            StreamIdZero {
                kind: K::DATA,
                section: "6.1",
            },
        ),
        (
            frame(0x0, PADDED, 1, &[]),
            len(K::DATA, 0, "too short for the Pad Length field", "6.1"),
        ),
        (
            frame(0x0, PADDED, 1, &[3, 0, 0]),
            BadPadding {
                kind: K::DATA,
                stream_id: 1,
                pad_len_bytes: 3,
                len_bytes: 3,
                section: "6.1",
            },
        ),
        (
            frame(0x1, END_HEADERS, 0, b"x"),
            StreamIdZero {
                kind: K::HEADERS,
                section: "6.2",
            },
        ),
        (
            frame(0x1, PRIORITY, 1, &[0; 4]),
            len(
                K::HEADERS,
                4,
                "too short for the Pad Length and priority fields",
                "6.2",
            ),
        ),
        (
            frame(0x1, PADDED | END_HEADERS, 1, &[3, 0x82, 0]),
            BadPadding {
                kind: K::HEADERS,
                stream_id: 1,
                pad_len_bytes: 3,
                len_bytes: 3,
                section: "6.2",
            },
        ),
        (
            frame(0x2, 0, 1, &[0; 4]),
            len(K::PRIORITY, 4, "not 5", "6.3"),
        ),
        (
            frame(0x5, 0, 1, &[0; 3]),
            len(
                K::PUSH_PROMISE,
                3,
                "too short for the Promised Stream ID",
                "6.6",
            ),
        ),
        (
            frame(0x9, END_HEADERS, 1, &[]),
            UnexpectedContinuation { stream_id: 1 },
        ),
        (
            [frame(0x1, 0, 1, &[0x82]), frame(0x0, 0, 1, b"x")].concat(),
            HeaderBlockInterrupted {
                kind: K::DATA,
                stream_id: 1,
                open_stream_id: 1,
            },
        ),
        (
            [frame(0x1, 0, 1, &[0x82]), frame(0x9, END_HEADERS, 3, &[])].concat(),
            HeaderBlockInterrupted {
                kind: K::CONTINUATION,
                stream_id: 3,
                open_stream_id: 1,
            },
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(decode_result(&bytes), Err(want), "decoding {bytes:02x?}");
    }
}

#[test]
fn frame_size_limit_and_preface_are_enforced() {
    let opts = DecoderOptions {
        expect_client_preface: false,
        max_frame_size_bytes: 16_384,
        ..DecoderOptions::default()
    };
    let (_, result, _) = run(opts, [&frame(0x0, 0, 1, &[0; 16_385])[..]]);
    let want = FrameError::TooLarge {
        kind: FrameKind::DATA,
        len_bytes: 16_385,
        max_bytes: 16_384,
    };
    assert_eq!(result, Err(want), "frame above max_frame_size_bytes");
    let (frames, result, _) = run(opts, [&frame(0x0, 0, 1, &[0; 16_384])[..]]);
    assert_eq!(
        (frames.len(), result),
        (1, Ok(())),
        "frame at max_frame_size_bytes"
    );

    let with_preface = DecoderOptions {
        expect_client_preface: true,
        ..DecoderOptions::default()
    };
    let (_, result, dec) = run(with_preface, [&b"PRI * HTTP/1.1\r\n"[..]]);
    assert_eq!(
        result,
        Err(FrameError::BadPreface { offset: 11 }),
        "HTTP/1.1 in the preface"
    );
    assert_eq!(
        dec.bytes_seen(),
        12,
        "bytes_seen stops at the offending byte"
    );
    // A server-to-client stream has no preface: the decoder reads "PRI " as a header and
    // rejects it as too large for the configured frame size.
    let (_, result, _) = run(opts, [&CLIENT_PREFACE[..]]);
    assert!(
        matches!(result, Err(FrameError::TooLarge { .. })),
        "preface as frames: {result:?}"
    );
}

#[test]
fn a_failed_decoder_stays_failed_and_reads_nothing() {
    let mut dec = FrameDecoder::new(DecoderOptions::default());
    let bad = frame(0x3, 0, 1, &[0; 3]);
    let first = dec.feed(&bad, |f| panic!("frame {f:?} from malformed input"));
    let seen = dec.bytes_seen();
    let again = dec.feed(&frame(0x6, 0, 0, &[0; 8]), |f| {
        panic!("frame {f:?} after an error")
    });
    assert!(first.is_err(), "malformed RST_STREAM accepted");
    assert_eq!(again, first, "the decoder reports its first error again");
    assert_eq!(dec.error(), first.as_ref().err(), "error()");
    assert_eq!(
        (dec.bytes_seen(), dec.buffered_bytes()),
        (seen, 0),
        "input read after the error"
    );
}

#[test]
fn huge_data_frames_stream_past_without_buffering() {
    let len_bytes = MAX_FRAME_SIZE_CAP_BYTES;
    let mut header = frame(0x0, END_STREAM, 1, &[]);
    header[..3].copy_from_slice(&len_bytes.to_be_bytes()[1..]);
    let mut dec = FrameDecoder::new(DecoderOptions::default());
    let mut frames = Vec::new();
    let mut feed = |dec: &mut FrameDecoder, bytes: &[u8]| {
        dec.feed(bytes, |f| frames.push(dbg(f)))
            .unwrap_or_else(|e| panic!("huge DATA rejected: {e}"));
        assert_eq!(dec.buffered_bytes(), 0, "DATA payload buffered");
    };
    feed(&mut dec, &header);
    let chunk = vec![0xa5; 65_536];
    let mut left = len_bytes as usize;
    while left > 0 {
        let n = left.min(chunk.len());
        feed(&mut dec, &chunk[..n]);
        left -= n;
    }
    feed(&mut dec, &frame(0x6, 0, 0, &[1; 8]));
    let want = [
        dbg(Frame::Data {
            stream_id: 1,
            len: len_bytes,
            end_stream: true,
            padded: false,
        }),
        dbg(Frame::Ping {
            ack: false,
            opaque: [1; 8],
        }),
    ];
    assert_eq!(frames, want, "frames around a 16 MiB DATA frame");
    assert_eq!(
        dec.bytes_seen(),
        u64::from(len_bytes) + 9 + 17,
        "bytes_seen"
    );
}

/// xorshift64*: deterministic pseudo-random numbers for the never-panics test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn never_panics_on_random_and_mutated_input() {
    let sample = sample_stream();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..3000 {
        let mut bytes = if round % 4 == 0 {
            (0..rng.below(300)).map(|_| rng.next() as u8).collect()
        } else {
            sample.clone()
        };
        for _ in 0..rng.below(6) {
            let at = rng.below(bytes.len());
            match rng.below(4) {
                0 if !bytes.is_empty() => bytes[at] ^= 1 << rng.below(8),
                1 if !bytes.is_empty() => bytes[at] = rng.next() as u8,
                2 => bytes.insert(at, rng.next() as u8),
                _ => bytes.truncate(at),
            }
        }
        let opts = DecoderOptions {
            expect_client_preface: rng.below(2) == 0,
            max_frame_size_bytes: [16_384, MAX_FRAME_SIZE_CAP_BYTES][rng.below(2)],
            keep_header_blocks: rng.below(2) == 0,
            // Small caps too, so some blocks are over them.
            max_header_block_bytes: [0, 3, DEFAULT_MAX_HEADER_BLOCK_BYTES][rng.below(3)],
        };
        let (whole, whole_result, whole_dec) = run(opts, [&bytes[..]]);
        let mut chunks = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(1 + rng.below(rest.len().min(40)));
            chunks.push(chunk);
            rest = tail;
        }
        let (parts, parts_result, parts_dec) = run(opts, chunks);
        assert_eq!(
            parts, whole,
            "round {round}: chunked frames differ for {bytes:02x?}"
        );
        assert_eq!(
            parts_result, whole_result,
            "round {round}: chunked result differs"
        );
        assert_eq!(
            parts_dec.bytes_seen(),
            whole_dec.bytes_seen(),
            "round {round}: bytes_seen"
        );
        // Keeping header blocks adds them and changes nothing else.
        let other = DecoderOptions {
            keep_header_blocks: !opts.keep_header_blocks,
            ..opts
        };
        let (mut other_frames, other_result, _) = run(other, [&bytes[..]]);
        let mut whole = whole;
        for frames in [&mut whole, &mut other_frames] {
            frames.retain(|f| !f.starts_with("HeaderBlock"));
        }
        assert_eq!(
            (other_frames, other_result),
            (whole, whole_result),
            "round {round}: keeping header blocks changed the frames"
        );
    }
}
