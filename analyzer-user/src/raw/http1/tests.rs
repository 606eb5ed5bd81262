//! Tests of the HTTP/1.1 observer: hand-written messages for each body framing of RFC
//! 9112 section 6.3, pipelining, interim and switching responses, capture gaps, streams
//! that are not HTTP/1, and random bytes.
use super::*;

use Http1Fact::{Complete, Interim, Request, Response, Switched};

fn observe_chunks<'a>(
    obs: &mut Http1Observer,
    chunks: impl IntoIterator<Item = Chunk<'a>>,
) -> Vec<Http1Fact> {
    let mut facts = Vec::new();
    for c in chunks {
        obs.on_chunk(c, &mut facts);
        assert!(obs.buffered_bytes() <= MAX_HEAD_BYTES);
    }
    facts
}

fn client(bytes: &[u8]) -> (Vec<Http1Fact>, Http1Observer) {
    let mut o = Http1Observer::new(Http1Side::Client);
    (observe_chunks(&mut o, [Chunk::Data(bytes)]), o)
}

/// A server side that knows the methods of the requests it answers.
fn server_after(kinds: &[RequestKind]) -> Http1Observer {
    let mut o = Http1Observer::new(Http1Side::Server);
    for k in kinds {
        o.expect_response_to(*k);
    }
    o
}

fn server(kinds: &[RequestKind], bytes: &[u8]) -> (Vec<Http1Fact>, Http1Observer) {
    let mut o = server_after(kinds);
    (observe_chunks(&mut o, [Chunk::Data(bytes)]), o)
}

/// The same facts whatever the chunking: byte by byte, and cut in two anywhere.
fn assert_chunking_invariant(side: Http1Side, kinds: &[RequestKind], bytes: &[u8]) {
    let new = || match side {
        Http1Side::Client => Http1Observer::new(side),
        Http1Side::Server => server_after(kinds),
    };
    let whole = observe_chunks(&mut new(), [Chunk::Data(bytes)]);
    let bytewise = observe_chunks(&mut new(), bytes.chunks(1).map(Chunk::Data));
    assert_eq!(bytewise, whole, "1-byte chunks");
    for at in 0..=bytes.len() {
        let (a, b) = bytes.split_at(at);
        let split = observe_chunks(&mut new(), [Chunk::Data(a), Chunk::Data(b)]);
        assert_eq!(split, whole, "split at {at}");
    }
}

fn status(s: u16) -> Http1Fact {
    Response { status: s }
}

const GET: RequestKind = RequestKind::Other;

#[test]
fn content_length_chunked_and_close_delimited_responses() {
    let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
        HTTP/1.1 404 Not Found\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
        5;name=\"v\"\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\n\
        HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close";
    let (facts, mut o) = server(&[GET; 3], bytes);
    assert_eq!(
        facts,
        [status(200), Complete, status(404), Complete, status(200)]
    );
    assert!(o.mid_message(), "the close-delimited body is still open");
    assert!(!o.is_stopped());
    let mut end = Vec::new();
    o.end(true, &mut end);
    assert_eq!(end, [Complete]);
    assert!(!o.mid_message());
    assert_chunking_invariant(Http1Side::Server, &[GET; 3], bytes);
}

#[test]
fn a_close_delimited_body_ended_by_a_reset_stays_open() {
    let (_, mut o) = server(&[GET], b"HTTP/1.1 200 OK\r\n\r\npartial");
    let mut end = Vec::new();
    o.end(false, &mut end);
    assert!(end.is_empty());
    assert!(o.mid_message());
}

#[test]
fn a_response_cut_mid_body_is_mid_message() {
    let (facts, o) = server(
        &[GET],
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
    );
    assert_eq!(facts, [status(200)]);
    assert!(o.mid_message());
    let (facts, o) = server(
        &[GET],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    );
    assert_eq!(facts, [status(200)]);
    assert!(o.mid_message());
    // A head begun is an answer begun.
    let (facts, o) = server(&[GET], b"HTTP/1.1 200 OK\r\nContent-Le");
    assert!(facts.is_empty());
    assert!(o.mid_message());
    let (_, o) = server(&[GET], b"");
    assert!(!o.mid_message());
}

#[test]
fn head_204_and_304_responses_have_no_body() {
    // RFC 9112 section 6.3 rule 1: whatever Content-Length or Transfer-Encoding say.
    let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n\
        HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n\
        HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n\
        HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let kinds = [RequestKind::Head, GET, GET, GET];
    let (facts, o) = server(&kinds, bytes);
    assert_eq!(
        facts,
        [
            status(200),
            Complete,
            status(204),
            Complete,
            status(304),
            Complete,
            status(200),
            Complete
        ]
    );
    assert!(!o.mid_message());
    assert_chunking_invariant(Http1Side::Server, &kinds, bytes);
}

#[test]
fn pipelined_requests_with_bodies() {
    let bytes = b"\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n\
        POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
        PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n\
        HEAD /d HTTP/1.0\r\n\r\n\
        CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    let (facts, o) = client(bytes);
    let req = |kind| Request { kind };
    assert_eq!(
        facts,
        [
            req(GET),
            Complete,
            req(GET),
            Complete,
            req(GET),
            Complete,
            req(RequestKind::Head),
            Complete,
            req(RequestKind::Connect),
            Complete,
        ]
    );
    assert!(!o.is_stopped());
    assert_chunking_invariant(Http1Side::Client, &[], bytes);
}

#[test]
fn interim_responses_precede_the_final_one() {
    let (facts, o) = server(&[GET], b"HTTP/1.1 100 Continue\r\n\r\n");
    assert_eq!(facts, [Interim { status: 100 }]);
    assert!(o.mid_message(), "an interim response is an answer begun");
    let bytes = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
        HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
    let (facts, o) = server(&[GET], bytes);
    assert_eq!(
        facts,
        [
            Interim { status: 100 },
            Interim { status: 103 },
            status(201),
            Complete
        ]
    );
    assert!(!o.mid_message());
}

#[test]
fn switching_protocols_and_connect_stop_the_parse() {
    let (facts, o) = server(
        &[GET],
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
    );
    assert_eq!(facts, [status(101), Complete, Switched]);
    assert!(o.is_stopped());
    let (facts, o) = server(
        &[RequestKind::Connect],
        b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01\x00\x05",
    );
    assert_eq!(facts, [status(200), Complete, Switched]);
    assert!(o.is_stopped());
    // A refused CONNECT is an ordinary response.
    let (facts, _) = server(
        &[RequestKind::Connect],
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(facts, [status(403), Complete]);
}

#[test]
fn the_client_side_follows_an_upgrade_quietly() {
    let upgrade = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let (facts, o) = client(&[&upgrade[..], b"\x81\x85\x00\x00\x00\x00hello"].concat());
    assert_eq!(facts, [Request { kind: GET }, Complete, Switched]);
    assert!(o.is_stopped());
    // The upgrade refused, the client goes on in HTTP/1.1.
    let (facts, o) = client(&[&upgrade[..], b"GET /next HTTP/1.1\r\n\r\n"].concat());
    assert_eq!(
        facts,
        [
            Request { kind: GET },
            Complete,
            Request { kind: GET },
            Complete
        ]
    );
    assert!(!o.is_stopped());
}

#[test]
fn other_protocols_stop_within_their_first_bytes() {
    let tls = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let settings = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64";
    let ssh = b"SSH-2.0-OpenSSH_9.6\r\n";
    for (side, bytes) in [
        (Http1Side::Client, &tls[..]),
        (Http1Side::Server, &tls[..]),
        (Http1Side::Client, &preface[..]),
        (Http1Side::Server, &settings[..]),
        (Http1Side::Client, &ssh[..]),
        (Http1Side::Server, b"220 mail.example.com ESMTP\r\n"),
    ] {
        let mut o = Http1Observer::new(side);
        let facts = observe_chunks(&mut o, bytes.chunks(1).map(Chunk::Data));
        assert!(
            matches!(facts.as_slice(), [Http1Fact::NotHttp1 { .. }]),
            "{side:?} {bytes:?}: {facts:?}"
        );
        assert!(o.is_stopped());
        assert_eq!(o.buffered_bytes(), 0);
    }
    // Stopped at the first byte that cannot start a request.
    let mut o = Http1Observer::new(Http1Side::Client);
    let facts = observe_chunks(&mut o, [Chunk::Data(b"\x16")]);
    assert!(matches!(facts.as_slice(), [Http1Fact::NotHttp1 { .. }]));
    // 16 KiB of token bytes with no start line is no request either.
    let (facts, _) = client(&[b'A'; MAX_HEAD_BYTES + 10]);
    assert!(matches!(
        facts.as_slice(),
        [Http1Fact::NotHttp1 {
            what: Http1Error::HeadTooLong { .. }
        }]
    ));
}

#[test]
fn broken_messages_are_malformed() {
    let long = [
        &b"GET / HTTP/1.1\r\nX-Long: "[..],
        &[b'a'; MAX_HEAD_BYTES],
        b"\r\n\r\n",
    ]
    .concat();
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let cases: [(Http1Side, Vec<u8>, Http1Error); 7] = [
        (
            Http1Side::Client,
            long,
            Http1Error::HeadTooLong {
                limit_bytes: MAX_HEAD_BYTES,
            },
        ),
        (
            Http1Side::Server,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n".to_vec(),
            Http1Error::BadContentLength,
        ),
        (
            Http1Side::Server,
            b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n".to_vec(),
            Http1Error::BadContentLength,
        ),
        (
            Http1Side::Client,
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
            Http1Error::RequestNotChunked,
        ),
        (
            Http1Side::Server,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            Http1Error::BadChunk {
                what: "no chunk size",
            },
        ),
        (
            Http1Side::Server,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n".to_vec(),
            Http1Error::BadChunk {
                what: "chunk size over 16 hex digits",
            },
        ),
        (
            Http1Side::Server,
            [&ok[..], b"\x00garbage after a response"].concat(),
            Http1Error::Head(httparse::Error::Version),
        ),
    ];
    for (side, bytes, want) in cases {
        let mut o = server_after(&[GET]);
        if side == Http1Side::Client {
            o = Http1Observer::new(side);
        }
        let facts = observe_chunks(&mut o, [Chunk::Data(&bytes)]);
        let Some(Http1Fact::Malformed { what, .. }) = facts.last() else {
            panic!("{side:?}: {facts:?}");
        };
        assert_eq!(*what, want);
        assert!(!what.is_capture_loss());
        assert!(o.is_stopped());
    }
}

#[test]
fn lenient_where_the_framing_is_still_clear() {
    // Equal Content-Length values (RFC 9112 section 6.3 rule 5), bare LF line ends, a
    // response Transfer-Encoding without chunked (read to the close).
    let (facts, _) = server(
        &[GET],
        b"HTTP/1.1 200 OK\nContent-Length: 2, 2\ncontent-length: 2\n\nok",
    );
    assert_eq!(facts, [status(200), Complete]);
    let (facts, o) = server(
        &[GET],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nabcdef",
    );
    assert_eq!(facts, [status(200)]);
    assert!(o.mid_message());
    let (facts, _) = client(b"GET / HTTP/1.1\nHost: x\n\nGET /b HTTP/1.1\n\n");
    assert_eq!(
        facts,
        [
            Request { kind: GET },
            Complete,
            Request { kind: GET },
            Complete
        ]
    );
}

#[test]
fn a_gap_inside_a_body_is_counted_through() {
    let mut o = server_after(&[GET; 3]);
    let facts = observe_chunks(
        &mut o,
        [
            Chunk::Data(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n0123"),
            Chunk::Gap { len_bytes: 9996 },
            Chunk::Data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\nab"),
            Chunk::Gap {
                len_bytes: 0x1000 - 2,
            },
            Chunk::Data(b"\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n\r\nstart"),
            Chunk::Gap { len_bytes: 1 << 20 },
        ],
    );
    assert_eq!(
        facts,
        [status(200), Complete, status(200), Complete, status(200)]
    );
    assert!(!o.is_stopped());
    assert!(o.mid_message());
}

#[test]
fn a_gap_where_framing_is_needed_stops() {
    let gap = Http1Error::Gap { len_bytes: 10 };
    // Inside a head, at a message boundary, past a body's end, inside a chunk line.
    for before in [
        &b"HTTP/1.1 200 OK\r\nContent-"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5",
    ] {
        let mut o = server_after(&[GET]);
        let facts = observe_chunks(&mut o, [Chunk::Data(before), Chunk::Gap { len_bytes: 10 }]);
        let Some(Http1Fact::Malformed { what, .. }) = facts.last() else {
            panic!("{facts:?}");
        };
        assert_eq!(*what, gap);
        assert!(what.is_capture_loss());
        assert!(o.is_stopped());
        // Nothing more is read.
        assert!(observe_chunks(&mut o, [Chunk::Data(b"HTTP/1.1 200 OK\r\n\r\n")]).is_empty());
    }
    let mut o = server_after(&[GET]);
    let facts = observe_chunks(
        &mut o,
        [Chunk::Capped {
            delivered_bytes: 10,
        }],
    );
    assert_eq!(
        facts,
        [Http1Fact::Malformed {
            offset: 0,
            what: Http1Error::Capped
        }]
    );
}

/// xorshift64*: deterministic random bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }
}

/// Feeds `bytes` in random chunks with random gaps; the observer must not panic and
/// must stay within its bounds.
fn feed_randomly(rng: &mut Rng, side: Http1Side, bytes: &[u8]) {
    let mut o = server_after(&[GET, RequestKind::Head, RequestKind::Connect]);
    if side == Http1Side::Client {
        o = Http1Observer::new(side);
    }
    let mut facts = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = 1 + rng.below(rest.len().min(64));
        let (now, later) = rest.split_at(n);
        o.on_chunk(Chunk::Data(now), &mut facts);
        if rng.below(20) == 0 {
            let len_bytes = rng.next() % 100;
            o.on_chunk(Chunk::Gap { len_bytes }, &mut facts);
        }
        assert!(o.buffered_bytes() <= MAX_HEAD_BYTES);
        rest = later;
    }
    o.end(rng.below(2) == 0, &mut facts);
    let _ = o.mid_message();
    let stops = facts
        .iter()
        .filter(|f| {
            matches!(
                f,
                Http1Fact::Switched | Http1Fact::NotHttp1 { .. } | Http1Fact::Malformed { .. }
            )
        })
        .count();
    assert!(stops <= 1, "{facts:?}");
    assert_eq!(stops == 1, o.is_stopped());
}

#[test]
fn random_and_mutated_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let valid: [&[u8]; 2] = [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
          a;x=y\r\n0123456789\r\n0\r\nT: 1\r\n\r\nPUT / HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nxyzHTTP/1.1 200 OK\r\n\r\nrest",
    ];
    for round in 0..2000 {
        let side = if round % 2 == 0 {
            Http1Side::Client
        } else {
            Http1Side::Server
        };
        let bytes: Vec<u8> = if round % 4 < 2 {
            // Pure noise, sometimes behind a plausible start.
            let mut b: Vec<u8> = (0..rng.below(600))
                .map(|_| u8::try_from(rng.next() >> 56).unwrap_or(0))
                .collect();
            if rng.below(2) == 0 {
                let start: &[u8] = match side {
                    Http1Side::Client => b"GET / HTTP/1.1\r\n",
                    Http1Side::Server => b"HTTP/1.1 200 OK\r\n",
                };
                b.splice(0..0, start.iter().copied());
            }
            b
        } else {
            // A valid exchange with a few bytes changed.
            let mut b = valid[usize::from(side == Http1Side::Server)].to_vec();
            for _ in 0..=rng.below(4) {
                let at = rng.below(b.len());
                b[at] = u8::try_from(rng.next() >> 56).unwrap_or(0);
            }
            b
        };
        feed_randomly(&mut rng, side, &bytes);
    }
}
