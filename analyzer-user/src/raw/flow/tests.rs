//! Tests of the inspector as a whole: both directions of an exchange fed through
//! [`Inspector::stream`] (as the syscall capture does), then [`Inspector::finish`], and
//! the one [`HttpTally`] it makes of an HTTP/1.1 or an h2c connection.
use wire::h2frame::{CLIENT_PREFACE, encode_frame as frame};

use super::*;
use crate::event::wire_fact::HttpTally;

// The statuses of h2c answers, read through HPACK, have their own file.
mod h2c_statuses;

const CLIENT: bool = false;
const SERVER: bool = true;

/// Feeds the steps in order, marks the server's end clean if asked, finishes, and
/// returns every fact emitted.
fn inspect(steps: &[(bool, Chunk<'_>)], server_eof: bool) -> Vec<WireFact> {
    let mut ins = Inspector::new(Inspect::default(), false);
    let mut facts = Vec::new();
    for (from_server, chunk) in steps {
        ins.stream(*from_server, *chunk, &mut |f| facts.push(f));
    }
    if server_eof {
        ins.end_of_stream(SERVER);
    }
    ins.finish(&mut |f| facts.push(f));
    facts
}

/// The one tally among the facts.
fn tally(facts: &[WireFact]) -> HttpTally {
    let tallies: Vec<&HttpTally> = facts
        .iter()
        .filter_map(|f| match f {
            WireFact::Http(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(tallies.len(), 1, "{facts:?}");
    tallies[0].clone()
}

fn http1(requests: u32, answered: u32, statuses: &[(u16, u32)]) -> HttpTally {
    HttpTally {
        protocol: "http/1.1".into(),
        requests,
        answered,
        statuses: statuses.iter().copied().collect(),
        ..HttpTally::default()
    }
}

#[test]
fn pipelined_http1_requests_answered_cut_and_unanswered() {
    let requests = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\n\
        GET /c HTTP/1.1\r\nHost: x\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\n\r\n";
    let facts = inspect(
        &[
            (CLIENT, Chunk::Data(requests)),
            (
                SERVER,
                Chunk::Data(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
            ),
            // The answer to HEAD announces a body it does not carry.
            (
                SERVER,
                Chunk::Data(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"),
            ),
            (
                SERVER,
                Chunk::Data(b"HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\npart"),
            ),
        ],
        true,
    );
    assert_eq!(
        tally(&facts),
        HttpTally {
            cut_mid_answer: 1,
            unanswered: 1,
            ..http1(4, 2, &[(200, 2), (500, 1)])
        }
    );
}

#[test]
fn a_request_never_answered() {
    let facts = inspect(
        &[(
            CLIENT,
            Chunk::Data(b"POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"),
        )],
        false,
    );
    assert_eq!(
        tally(&facts),
        HttpTally {
            unanswered: 1,
            ..http1(1, 0, &[])
        }
    );
}

#[test]
fn a_close_delimited_answer_needs_a_clean_end() {
    let steps = [
        (CLIENT, Chunk::Data(&b"GET / HTTP/1.0\r\n\r\n"[..])),
        (SERVER, Chunk::Data(b"HTTP/1.0 200 OK\r\n\r\nall of it")),
    ];
    assert_eq!(tally(&inspect(&steps, true)), http1(1, 1, &[(200, 1)]));
    assert_eq!(
        tally(&inspect(&steps, false)),
        HttpTally {
            cut_mid_answer: 1,
            ..http1(1, 0, &[(200, 1)])
        }
    );
}

#[test]
fn capture_gaps_inside_bodies_and_where_framing_was_needed() {
    // A write larger than the capture: the prefix, then a gap inside the body.
    let facts = inspect(
        &[
            (CLIENT, Chunk::Data(b"GET /big HTTP/1.1\r\n\r\n")),
            (
                SERVER,
                Chunk::Data(b"HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\nab"),
            ),
            (SERVER, Chunk::Gap { len_bytes: 65534 }),
        ],
        false,
    );
    assert_eq!(tally(&facts), http1(1, 1, &[(200, 1)]));
    // The gap runs over the next response's head: what came after is not known.
    let facts = inspect(
        &[
            (
                CLIENT,
                Chunk::Data(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"),
            ),
            (
                SERVER,
                Chunk::Data(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab"),
            ),
            (SERVER, Chunk::Gap { len_bytes: 30 }),
        ],
        false,
    );
    assert_eq!(
        tally(&facts),
        HttpTally {
            incomplete: true,
            ..http1(2, 0, &[(200, 1)])
        }
    );
    assert!(
        !facts
            .iter()
            .any(|f| matches!(f, WireFact::Malformed { .. }))
    );
}

#[test]
fn an_answer_that_is_not_http1_is_named() {
    let facts = inspect(
        &[
            (CLIENT, Chunk::Data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")),
            // A TLS server's alert to a plaintext request.
            (SERVER, Chunk::Data(b"\x15\x03\x03\x00\x02\x02\x46")),
        ],
        true,
    );
    assert!(facts.iter().any(|f| matches!(
        f,
        WireFact::Malformed { from_server: true, protocol, .. } if protocol == "http/1.1"
    )));
    assert_eq!(
        tally(&facts),
        HttpTally {
            incomplete: true,
            ..http1(1, 0, &[])
        }
    );
}

#[test]
fn an_upgrade_answered_with_101_is_answered() {
    let facts = inspect(
        &[
            (
                CLIENT,
                Chunk::Data(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"),
            ),
            (
                SERVER,
                Chunk::Data(b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x02hi"),
            ),
            (CLIENT, Chunk::Data(b"\x81\x82\x00\x00\x00\x00hi")),
        ],
        false,
    );
    assert_eq!(tally(&facts), http1(1, 1, &[(101, 1)]));
}

#[test]
fn finish_emits_once_and_nothing_without_a_request() {
    let mut ins = Inspector::new(Inspect::default(), false);
    let mut facts = Vec::new();
    ins.stream(CLIENT, Chunk::Data(b"GET / HTTP/1.1\r\n\r\n"), &mut |f| {
        facts.push(f);
    });
    ins.finish(&mut |f| facts.push(f));
    ins.finish(&mut |f| facts.push(f));
    ins.stream(CLIENT, Chunk::Data(b"GET / HTTP/1.1\r\n\r\n"), &mut |f| {
        facts.push(f);
    });
    assert_eq!(facts.len(), 1);
    // A TLS connection is no HTTP/1.1 one.
    let hello = b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00";
    let facts = inspect(&[(CLIENT, Chunk::Data(hello))], false);
    assert!(
        !facts.iter().any(|f| matches!(f, WireFact::Http(_))),
        "{facts:?}"
    );
    assert!(inspect(&[], false).is_empty());
}

#[test]
fn an_h2c_exchange_is_tallied_from_its_streams() {
    const HEADERS: u8 = 0x1;
    const END_STREAM: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;
    let mut client = CLIENT_PREFACE.to_vec();
    client.extend(frame(0x4, 0, 0, &[]));
    client.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1, b"\x82"));
    for id in [3, 5, 7, 9] {
        client.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, b"\x82"));
    }
    // The client gives up on stream 9 (CANCEL) before any answer: it gave up waiting.
    client.extend(frame(0x3, 0, 9, &8u32.to_be_bytes()));
    let mut server = frame(0x4, 0, 0, &[]);
    server.extend(frame(HEADERS, END_HEADERS, 1, b"\x88"));
    server.extend(frame(0x0, END_STREAM, 1, b"ok"));
    // RST_STREAM REFUSED_STREAM on 3; 5 answered in part; nothing at all on 7.
    server.extend(frame(0x3, 0, 3, &7u32.to_be_bytes()));
    server.extend(frame(HEADERS, END_HEADERS, 5, b"\x88"));
    server.extend(frame(0x0, 0, 5, b"par"));
    let facts = inspect(
        &[
            (CLIENT, Chunk::Data(&client)),
            (SERVER, Chunk::Data(&server)),
        ],
        true,
    );
    assert_eq!(
        tally(&facts),
        HttpTally {
            protocol: "h2c".into(),
            requests: 5,
            answered: 1,
            cut_mid_answer: 1,
            unanswered: 1,
            client_cancelled: 1,
            streams_reset: [("REFUSED_STREAM".to_owned(), 1)].into(),
            // Static index 8 (RFC 7541 Appendix A), on 1 and on 5, cut or not.
            statuses: [(200, 2)].into(),
            ..HttpTally::default()
        }
    );
    // Bytes lost on the server's side: the streams' fate is not all known.
    let facts = inspect(
        &[
            (CLIENT, Chunk::Data(&client)),
            (SERVER, Chunk::Data(&server[..20])),
            (SERVER, Chunk::Gap { len_bytes: 5 }),
        ],
        true,
    );
    let t = tally(&facts);
    assert!(t.incomplete);
    assert_eq!(t.requests, 5);
}

/// The client's encrypted alert of a TLS 1.3 handshake it gave up (a real rustls client
/// rejecting the server's certificate), handed over as the syscall capture does: the
/// client's flight, the server's, the client's alert.
#[test]
fn a_tls13_handshake_the_client_gave_up_ends_in_its_encrypted_alert() {
    use crate::raw::tls::rustls_tests::tls13_transcript;
    let alerts = |facts: &[WireFact]| -> Vec<WireFact> {
        facts
            .iter()
            .filter(|f| matches!(f, WireFact::TlsEncryptedAlert { .. }))
            .cloned()
            .collect()
    };
    let (c2s, s2c) = tls13_transcript(false, false);
    // The ClientHello is the first record; the rest is the alert (after the CCS).
    let hello_len = 5 + usize::from(u16::from_be_bytes([c2s[3], c2s[4]]));
    let (hello, alert) = c2s.split_at(hello_len);
    let steps = [
        (CLIENT, Chunk::Data(hello)),
        (SERVER, Chunk::Data(&s2c)),
        (CLIENT, Chunk::Data(alert)),
    ];
    let facts = inspect(&steps, false);
    assert_eq!(
        alerts(&facts),
        [WireFact::TlsEncryptedAlert {
            from_server: false,
            len_bytes: 19,
            after_handshake: false,
        }],
        "{facts:?}"
    );
    assert!(
        WireFact::TlsEncryptedAlert {
            from_server: false,
            len_bytes: 19,
            after_handshake: false,
        }
        .means_failure()
    );
    assert!(
        facts
            .iter()
            .any(|f| matches!(f, WireFact::TlsServerHello { .. })),
        "{facts:?}"
    );
    // Completed, the client's first encrypted record is its Finished: no such fact.
    let (c2s, s2c) = tls13_transcript(true, false);
    let facts = inspect(
        &[(CLIENT, Chunk::Data(&c2s)), (SERVER, Chunk::Data(&s2c))],
        true,
    );
    assert_eq!(alerts(&facts), [], "{facts:?}");
}

/// Hand-built: ClientHello, ServerHello, the client's ChangeCipherSpec and one
/// application_data record of 19 bytes (an alert) or 53 (a Finished).
#[test]
fn the_clients_first_encrypted_record_is_an_alert_only_when_alert_sized() {
    let record = |content_type: u8, body: &[u8]| {
        let mut r = vec![content_type, 3, 3];
        r.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        r.extend_from_slice(body);
        r
    };
    let (c2s, s2c) = crate::raw::tls::rustls_tests::tls13_transcript(true, false);
    let hello_len = 5 + usize::from(u16::from_be_bytes([c2s[3], c2s[4]]));
    let server_hello_len = 5 + usize::from(u16::from_be_bytes([s2c[3], s2c[4]]));
    for (len, want) in [(19, 1), (53, 0)] {
        let mut rest = record(20, &[1]);
        rest.extend(record(23, &vec![0x5a; len]));
        let facts = inspect(
            &[
                (CLIENT, Chunk::Data(&c2s[..hello_len])),
                (SERVER, Chunk::Data(&s2c[..server_hello_len])),
                (CLIENT, Chunk::Data(&rest)),
            ],
            false,
        );
        let n = facts
            .iter()
            .filter(|f| {
                matches!(
                    f,
                    WireFact::TlsEncryptedAlert {
                        from_server: false,
                        len_bytes: 19,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(n, want, "{len}-byte record: {facts:?}");
    }
}
