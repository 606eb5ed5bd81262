//! Tests of the statuses in an h2c tally: read from the server's HPACK header blocks in
//! order, counted per answer, and never guessed once a block could not be decoded.
use super::*;

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// The client's preface, SETTINGS and a GET (`:method: GET`, static index 2) on each of
/// `streams`.
fn requests(streams: impl IntoIterator<Item = u32>) -> Vec<u8> {
    let mut b = CLIENT_PREFACE.to_vec();
    b.extend(frame(0x4, 0, 0, &[]));
    for id in streams {
        b.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, b"\x82"));
    }
    b
}

fn h2c(requests: u32, answered: u32, statuses: &[(u16, u32)]) -> HttpTally {
    HttpTally {
        protocol: "h2c".into(),
        requests,
        answered,
        statuses: statuses.iter().copied().collect(),
        ..HttpTally::default()
    }
}

#[test]
fn h2c_statuses_are_tallied_and_a_503_is_a_failure() {
    let mut server = frame(0x4, 0, 0, &[]);
    server.extend(frame(HEADERS, END_HEADERS, 1, b"\x88"));
    server.extend(frame(0x0, END_STREAM, 1, b"ok"));
    // `:status: 503` indexed into the dynamic table (RFC 7541 section 6.2.1), then read
    // back from it (index 62, section 6.1).
    server.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, b"\x48\x03503"));
    server.extend(frame(HEADERS, END_HEADERS | END_STREAM, 5, b"\xbe"));
    // A 429, Huffman-coded (Appendix B), its body cut.
    server.extend(frame(HEADERS, END_HEADERS, 7, b"\x48\x83\x68\x4f\xff"));
    server.extend(frame(0x0, 0, 7, b"slow"));
    let facts = inspect(
        &[
            (CLIENT, Chunk::Data(&requests([1, 3, 5, 7]))),
            (SERVER, Chunk::Data(&server)),
        ],
        true,
    );
    let t = tally(&facts);
    assert_eq!(
        t,
        HttpTally {
            cut_mid_answer: 1,
            ..h2c(4, 3, &[(200, 1), (429, 1), (503, 2)])
        }
    );
    assert_eq!(t.status_failures(), 3);
}

#[test]
fn an_answer_whose_status_was_lost_makes_the_tally_incomplete() {
    let mut server = frame(0x4, 0, 0, &[]);
    server.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x48\x03503"));
    // Index 70 is past the table (RFC 7541 section 2.3.3): the HPACK state is lost, and
    // the 503 at index 62 that follows is not read either.
    server.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, b"\xc6"));
    server.extend(frame(HEADERS, END_HEADERS | END_STREAM, 5, b"\xbe"));
    let facts = inspect(
        &[
            (CLIENT, Chunk::Data(&requests([1, 3, 5]))),
            (SERVER, Chunk::Data(&server)),
        ],
        true,
    );
    assert_eq!(
        tally(&facts),
        HttpTally {
            incomplete: true,
            ..h2c(3, 3, &[(503, 1)])
        }
    );
    // Frames still parse: nothing is malformed.
    assert!(
        !facts
            .iter()
            .any(|f| matches!(f, WireFact::Malformed { .. })),
        "{facts:?}"
    );

    // Only a stream that was answered matters: one still open when the state was lost
    // is counted as cut, whatever its status.
    let mut server = frame(0x4, 0, 0, &[]);
    server.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x88"));
    server.extend(frame(HEADERS, END_HEADERS, 3, b"\xc6"));
    let facts = inspect(
        &[
            (CLIENT, Chunk::Data(&requests([1, 3]))),
            (SERVER, Chunk::Data(&server)),
        ],
        true,
    );
    assert_eq!(
        tally(&facts),
        HttpTally {
            cut_mid_answer: 1,
            ..h2c(2, 1, &[(200, 1)])
        }
    );
}

#[test]
fn a_capture_gap_inside_a_header_block_leaves_its_status_unknown() {
    let mut server = frame(0x4, 0, 0, &[]);
    server.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x48\x03503"));
    // Stream 3's block: its HEADERS frame ends the stream, its CONTINUATION is lost.
    server.extend(frame(HEADERS, END_STREAM, 3, b"\x48\x03"));
    let continuation = frame(CONTINUATION, END_HEADERS, 3, b"503");
    let facts = inspect(
        &[
            (CLIENT, Chunk::Data(&requests([1, 3]))),
            (SERVER, Chunk::Data(&server)),
            (
                SERVER,
                Chunk::Gap {
                    len_bytes: continuation.len() as u64,
                },
            ),
        ],
        true,
    );
    assert_eq!(
        tally(&facts),
        HttpTally {
            incomplete: true,
            ..h2c(2, 2, &[(503, 1)])
        }
    );
}
