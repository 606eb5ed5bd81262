//! The decryptor on real TLS: a rustls client and server in memory, the client's secrets
//! written to a key log file by a `rustls::KeyLog` (NSS lines, as curl and loadgen write
//! them), each direction's bytes fed in the order they went on the wire.
use std::{
    io::{Read, Write},
    path::PathBuf,
    sync::{Arc, Mutex},
};

use rustls::{
    ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
    SupportedCipherSuite, SupportedProtocolVersion,
    crypto::{CryptoProvider, ring::cipher_suite as cs},
    pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName},
};

use super::*;
use crate::{
    event::wire_fact::WireFact,
    raw::{
        flow::{Inspect, Inspector},
        tls::{TlsFact, TlsObserver},
    },
};

const SNI: &str = "decrypt.example.test";

/// The client's secrets as NSS key log lines.
#[derive(Debug, Default)]
struct Lines(Mutex<String>);

impl rustls::KeyLog for Lines {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let line = format!("{label} {} {}\n", hex(client_random), hex(secret));
        self.0.lock().unwrap().push_str(&line);
    }
}

/// A connection in memory and the bytes it put on the wire, in order.
struct Wire {
    client: Connection,
    server: Connection,
    flights: Vec<(bool, Vec<u8>)>,
    keys: Arc<Lines>,
}

impl Wire {
    fn new(suite: SupportedCipherSuite, version: &'static SupportedProtocolVersion) -> Self {
        let ck = rcgen::generate_simple_self_signed(vec![SNI.to_owned()]).unwrap();
        let provider = Arc::new(CryptoProvider {
            cipher_suites: vec![suite],
            ..rustls::crypto::ring::default_provider()
        });
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
        let server_cfg = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ck.cert.der().clone()).unwrap();
        let mut client_cfg = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let keys = Arc::new(Lines::default());
        client_cfg.key_log = Arc::clone(&keys) as Arc<dyn rustls::KeyLog>;
        let name = ServerName::try_from(SNI).unwrap().to_owned();
        let mut w = Self {
            client: Connection::Client(ClientConnection::new(Arc::new(client_cfg), name).unwrap()),
            server: Connection::Server(ServerConnection::new(Arc::new(server_cfg)).unwrap()),
            flights: Vec::new(),
            keys,
        };
        for _ in 0..10 {
            w.flush();
            if !w.client.is_handshaking() && !w.server.is_handshaking() {
                break;
            }
        }
        assert!(!w.client.is_handshaking(), "the handshake completed");
        w
    }

    /// Moves what each side wants to write to the other, client first.
    fn flush(&mut self) {
        for from_server in [false, true] {
            let (from, to) = match from_server {
                false => (&mut self.client, &mut self.server),
                true => (&mut self.server, &mut self.client),
            };
            let mut buf = Vec::new();
            while from.wants_write() {
                from.write_tls(&mut buf).unwrap();
            }
            if buf.is_empty() {
                continue;
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                to.read_tls(&mut rd).unwrap();
                to.process_new_packets().unwrap();
            }
            self.flights.push((from_server, buf));
        }
    }

    /// The client sends `req`, the server answers `resp`; both are read by their peer
    /// (8 KiB at a time, within rustls's buffers).
    fn exchange(&mut self, req: &[u8], resp: &[u8]) {
        for (from_server, data) in [(false, req), (true, resp)] {
            for piece in data.chunks(8192) {
                let from = if from_server {
                    &mut self.server
                } else {
                    &mut self.client
                };
                from.writer().write_all(piece).unwrap();
                self.flush();
                let to = if from_server {
                    &mut self.client
                } else {
                    &mut self.server
                };
                read_all(to, piece.len());
            }
        }
    }

    fn keylog_lines(&self) -> String {
        self.keys.0.lock().unwrap().clone()
    }
}

fn read_all(c: &mut Connection, n: usize) {
    let mut buf = vec![0; n];
    c.reader().read_exact(&mut buf).unwrap();
}

fn keylog_file(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("faultline-decrypt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

/// What came out of a decryptor, per direction.
#[derive(Debug, Default)]
struct Plain {
    bytes: [Vec<u8>; 2],
    capped: [bool; 2],
}

impl Plain {
    fn sink(&mut self) -> impl FnMut(bool, Chunk<'_>) + '_ {
        |from_server, c| match c {
            Chunk::Data(d) => self.bytes[usize::from(from_server)].extend_from_slice(d),
            _ => self.capped[usize::from(from_server)] = true,
        }
    }
}

/// A decryptor for `w`'s connection, told its hellos as the TLS observer reads them.
fn decryptor(w: &Wire, keylog: Arc<KeyLog>) -> TlsDecryptor {
    let mut d = TlsDecryptor::new(keylog);
    hellos(w, &mut d);
    d
}

fn hellos(w: &Wire, d: &mut TlsDecryptor) {
    for from_server in [false, true] {
        let mut o = TlsObserver::new();
        let mut facts = Vec::new();
        for (_, b) in w.flights.iter().filter(|(s, _)| *s == from_server) {
            o.feed(b, &mut facts);
        }
        for f in facts {
            match f {
                TlsFact::ClientHello(h) => d.client_hello(h.random),
                TlsFact::ServerHello(h) => {
                    d.server_hello(h.random, h.selected_version, h.cipher_suite)
                }
                _ => {}
            }
        }
    }
}

fn feed(d: &mut TlsDecryptor, flights: &[(bool, Vec<u8>)], out: &mut Plain) {
    let mut sink = out.sink();
    for (from_server, b) in flights {
        d.push(*from_server, Chunk::Data(b), &mut sink);
    }
}

const TLS13_SUITES: [SupportedCipherSuite; 3] = [
    cs::TLS13_AES_128_GCM_SHA256,
    cs::TLS13_AES_256_GCM_SHA384,
    cs::TLS13_CHACHA20_POLY1305_SHA256,
];
/// rcgen's keys are ECDSA P-256: the ECDHE_ECDSA suites.
const TLS12_SUITES: [SupportedCipherSuite; 3] = [
    cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
];

fn every_suite() -> impl Iterator<Item = (SupportedCipherSuite, &'static SupportedProtocolVersion)>
{
    TLS13_SUITES
        .into_iter()
        .map(|s| (s, &rustls::version::TLS13))
        .chain(
            TLS12_SUITES
                .into_iter()
                .map(|s| (s, &rustls::version::TLS12)),
        )
}

/// Two exchanges, the second answer 40 KB (three records), through every suite: both
/// directions' plaintext comes out whole and in order.
#[test]
fn every_suite_of_tls12_and_tls13_decrypts_both_directions() {
    for (i, (suite, version)) in every_suite().enumerate() {
        let mut w = Wire::new(suite, version);
        let big: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        w.exchange(b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 503 x\r\n\r\n");
        w.exchange(b"GET /big HTTP/1.1\r\n\r\n", &big);
        let log =
            Arc::new(KeyLog::open(&keylog_file(&format!("suite{i}"), &w.keylog_lines())).unwrap());
        let mut d = decryptor(&w, Arc::clone(&log));
        let mut p = Plain::default();
        feed(&mut d, &w.flights, &mut p);
        d.finish(&mut p.sink());
        let name = format!("{:?}", suite.suite());
        assert_eq!(
            p.bytes[0], b"GET / HTTP/1.1\r\n\r\nGET /big HTTP/1.1\r\n\r\n",
            "{name}"
        );
        assert_eq!(&p.bytes[1][..18], b"HTTP/1.1 503 x\r\n\r\n", "{name}");
        assert_eq!(&p.bytes[1][18..], &big[..], "{name}");
        assert_eq!(p.capped, [false, false], "{name}");
        let st = log.stats();
        assert_eq!(st.connections_decrypted, 1, "{name}: {st:?}");
        assert_eq!(st.records_failed_auth, 0, "{name}: {st:?}");
        assert!(st.records_decrypted >= 6, "{name}: {st:?}");
    }
}

/// A secret off by one bit: the first record fails to authenticate, its direction
/// stops, nothing is handed on, the stat says so.
#[test]
fn a_wrong_key_fails_authentication_and_is_counted_not_guessed() {
    for (i, (suite, version)) in every_suite().enumerate() {
        let mut w = Wire::new(suite, version);
        w.exchange(b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n");
        // The last hex digit of every secret changed.
        let wrong: String = w
            .keylog_lines()
            .lines()
            .map(|l| {
                let (head, last) = l.split_at(l.len() - 1);
                format!("{head}{}\n", if last == "0" { "1" } else { "0" })
            })
            .collect();
        let log = Arc::new(KeyLog::open(&keylog_file(&format!("wrong{i}"), &wrong)).unwrap());
        let mut d = decryptor(&w, Arc::clone(&log));
        let mut p = Plain::default();
        feed(&mut d, &w.flights, &mut p);
        d.finish(&mut p.sink());
        assert_eq!(p.bytes, [Vec::<u8>::new(), Vec::new()]);
        let st = log.stats();
        assert_eq!(st.records_failed_auth, 2, "both directions: {st:?}");
        assert_eq!(st.connections_decrypted, 0, "{st:?}");
        assert!(d.is_stopped(false) && d.is_stopped(true));
    }
}

/// The client writes its keys while its connection goes on: records that came first
/// wait in the buffer, and are decrypted once the key log has the keys.
#[test]
fn records_before_their_keys_wait_for_them() {
    for (i, (suite, version)) in every_suite().enumerate() {
        let mut w = Wire::new(suite, version);
        w.exchange(b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n");
        let path = keylog_file(&format!("late{i}"), "");
        let log = Arc::new(KeyLog::open(&path).unwrap());
        let mut d = decryptor(&w, Arc::clone(&log));
        let mut p = Plain::default();
        feed(&mut d, &w.flights, &mut p);
        assert_eq!(
            p.bytes,
            [Vec::<u8>::new(), Vec::new()],
            "nothing without keys"
        );
        std::fs::write(&path, w.keylog_lines()).unwrap();
        // The next record (or the end) reads the key log again.
        let n = w.flights.len();
        w.exchange(b"again", b"more");
        feed(&mut d, &w.flights[n..], &mut p);
        assert_eq!(p.bytes[0], b"GET / HTTP/1.1\r\n\r\nagain");
        assert_eq!(p.bytes[1], b"HTTP/1.1 200 OK\r\n\r\nmore");
        assert_eq!(log.stats().connections_decrypted, 1);
    }
}

/// Keys that never come: the connection is counted as having none, at its end.
#[test]
fn a_connection_with_no_key_is_counted_at_its_end() {
    let mut w = Wire::new(cs::TLS13_AES_128_GCM_SHA256, &rustls::version::TLS13);
    w.exchange(b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n");
    let log = Arc::new(KeyLog::open(&keylog_file("nokey", "# nothing\n")).unwrap());
    let mut d = decryptor(&w, Arc::clone(&log));
    let mut p = Plain::default();
    feed(&mut d, &w.flights, &mut p);
    d.finish(&mut p.sink());
    let st = log.stats();
    assert_eq!(
        (st.connections_no_key, st.connections_decrypted),
        (1, 0),
        "{st:?}"
    );
}

/// A suite this does not decrypt (here a CBC one, as if the ServerHello had chosen it):
/// nothing is tried, nothing held, and the connection counted as unsupported.
#[test]
fn an_unsupported_suite_is_counted_not_tried() {
    let mut w = Wire::new(TLS12_SUITES[0], &rustls::version::TLS12);
    w.exchange(b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n");
    let log = Arc::new(KeyLog::open(&keylog_file("unsupported", &w.keylog_lines())).unwrap());
    let mut d = TlsDecryptor::new(Arc::clone(&log));
    // TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA chosen first: the real ServerHello is ignored.
    d.server_hello([0; 32], crate::raw::tls::TLS12, 0xc013);
    hellos(&w, &mut d);
    let mut p = Plain::default();
    feed(&mut d, &w.flights, &mut p);
    d.finish(&mut p.sink());
    assert_eq!(p.bytes, [Vec::<u8>::new(), Vec::new()]);
    assert!(d.is_stopped(false) && d.is_stopped(true));
    let st = log.stats();
    assert_eq!(
        (st.connections_unsupported, st.records_failed_auth),
        (1, 0),
        "{st:?}"
    );
}

/// More than the buffer holds before the keys come: that direction is given up (the
/// other, within the bound, still decrypts once the keys are there).
#[test]
fn keys_later_than_the_buffer_holds_give_that_direction_up() {
    let mut w = Wire::new(cs::TLS13_AES_128_GCM_SHA256, &rustls::version::TLS13);
    let big = vec![7u8; MAX_PENDING_BYTES + 1000];
    w.exchange(b"GET / HTTP/1.1\r\n\r\n", &big);
    let path = keylog_file("toolate", "");
    let log = Arc::new(KeyLog::open(&path).unwrap());
    let mut d = decryptor(&w, Arc::clone(&log));
    let mut p = Plain::default();
    feed(&mut d, &w.flights, &mut p);
    std::fs::write(&path, w.keylog_lines()).unwrap();
    d.finish(&mut p.sink());
    assert!(d.is_stopped(true), "the server's direction was given up");
    assert_eq!(p.bytes[0], b"GET / HTTP/1.1\r\n\r\n", "the client's waited");
    assert_eq!(p.bytes[1], b"");
    // The client's direction decrypted: the connection counts as decrypted.
    assert_eq!(log.stats().connections_decrypted, 1);
    // With neither direction in time, it counts as keys too late.
    let log = Arc::new(KeyLog::open(&keylog_file("toolate2", "")).unwrap());
    let mut d = decryptor(&w, Arc::clone(&log));
    let mut p = Plain::default();
    let big_flights: Vec<_> = w.flights.iter().filter(|(s, _)| *s).cloned().collect();
    feed(&mut d, &big_flights, &mut p);
    std::fs::write(keylog_file("toolate2", ""), w.keylog_lines()).unwrap();
    d.finish(&mut p.sink());
    let st = log.stats();
    assert_eq!(
        (st.connections_keys_too_late, st.connections_decrypted),
        (1, 0),
        "{st:?}"
    );
}

/// TLS 1.3 KeyUpdate from both sides (RFC 8446 section 4.6.3): the next traffic secret
/// is derived ("traffic upd") and what follows still decrypts.
#[test]
fn key_updates_switch_to_the_next_traffic_secret() {
    for suite in TLS13_SUITES {
        let mut w = Wire::new(suite, &rustls::version::TLS13);
        w.exchange(b"one", b"uno");
        w.client.refresh_traffic_keys().unwrap();
        w.server.refresh_traffic_keys().unwrap();
        w.exchange(b"two", b"dos");
        w.client.refresh_traffic_keys().unwrap();
        w.exchange(b"three", b"tres");
        let log = Arc::new(KeyLog::open(&keylog_file("keyupdate", &w.keylog_lines())).unwrap());
        let mut d = decryptor(&w, Arc::clone(&log));
        let mut p = Plain::default();
        feed(&mut d, &w.flights, &mut p);
        assert_eq!(p.bytes[0], b"onetwothree", "{:?}", suite.suite());
        assert_eq!(p.bytes[1], b"unodostres", "{:?}", suite.suite());
        assert_eq!(log.stats().records_failed_auth, 0);
    }
}

/// The derivation itself, against RFC 8448 section 3's trace: the server's handshake
/// traffic key and IV from its secret.
#[test]
fn hkdf_expand_label_matches_rfc8448() {
    let unhex = |s: &str| -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    let secret = unhex(
        "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38",
    );
    let suite = Suite::find(0x1301, crate::raw::tls::TLS13).unwrap();
    let mut key = [0; 16];
    suite.expand_label(&secret, b"key", &mut key).unwrap();
    assert_eq!(
        key.to_vec(),
        unhex("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc")
    );
    let mut iv = [0; 12];
    suite.expand_label(&secret, b"iv", &mut iv).unwrap();
    assert_eq!(iv.to_vec(), unhex("5d 31 3e b2 67 12 76 ee 13 00 0b 30"));
}

/// Through the connection's inspection, as the raw backend runs it: the HTTP/1.1 inside
/// TLS is tallied like cleartext (a 503 counted), from the decrypted bytes alone.
#[test]
fn the_inspector_tallies_the_http_inside_tls() {
    let mut w = Wire::new(cs::TLS13_AES_256_GCM_SHA384, &rustls::version::TLS13);
    w.exchange(
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
    );
    w.exchange(
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
    );
    let log = Arc::new(KeyLog::open(&keylog_file("inspector", &w.keylog_lines())).unwrap());
    let mut ins = Inspector::new(Inspect::with_keylog(Arc::clone(&log)), false);
    let mut facts = Vec::new();
    for (from_server, b) in &w.flights {
        ins.stream(*from_server, Chunk::Data(b), &mut |f| facts.push(f));
    }
    ins.finish(&mut |f| facts.push(f));
    let tally = facts
        .iter()
        .find_map(|f| match f {
            WireFact::Http(t) => Some(t),
            _ => None,
        })
        .expect("an HTTP tally");
    assert_eq!(tally.protocol, "http/1.1");
    assert_eq!((tally.requests, tally.answered), (2, 2));
    assert_eq!(tally.statuses.get(&503), Some(&2));
    assert!(!tally.incomplete, "{tally:?}");
    assert!(
        facts
            .iter()
            .any(|f| matches!(f, WireFact::TlsClientHello { .. }))
    );
    // Without the key log the same bytes give no tally.
    let mut ins = Inspector::new(Inspect::default(), false);
    let mut facts = Vec::new();
    for (from_server, b) in &w.flights {
        ins.stream(*from_server, Chunk::Data(b), &mut |f| facts.push(f));
    }
    ins.finish(&mut |f| facts.push(f));
    assert!(
        !facts.iter().any(|f| matches!(f, WireFact::Http(_))),
        "{facts:?}"
    );
}

/// The cost of decrypting, per MB of plaintext, for every suite (printed, not judged):
/// `cargo test --release -p analyzer-user --lib measure_decrypt -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, run by hand in a release build"]
fn measure_decrypt_cost_per_mb() {
    for (suite, version) in every_suite() {
        let mut w = Wire::new(suite, version);
        let big = vec![b'x'; 16 << 20];
        w.exchange(b"GET / HTTP/1.1\r\n\r\n", &big);
        let log = Arc::new(KeyLog::open(&keylog_file("measure", &w.keylog_lines())).unwrap());
        let mut d = decryptor(&w, Arc::clone(&log));
        let mut n = 0usize;
        let t = std::time::Instant::now();
        for (from_server, b) in &w.flights {
            d.push(*from_server, Chunk::Data(b), &mut |_, c| {
                if let Chunk::Data(x) = c {
                    n += x.len();
                }
            });
        }
        let el = t.elapsed();
        let mut ins = Inspector::new(Inspect::with_keylog(Arc::clone(&log)), false);
        let t2 = std::time::Instant::now();
        for (from_server, b) in &w.flights {
            ins.stream(*from_server, Chunk::Data(b), &mut |_| {});
        }
        ins.finish(&mut |_| {});
        let el2 = t2.elapsed();
        eprintln!(
            "{:?}: {} MB decrypted in {:?}: {:.3} ms/MB; through the inspector {:.3} ms/MB",
            suite.suite(),
            n >> 20,
            el,
            el.as_secs_f64() * 1000.0 / (n as f64 / 1048576.0),
            el2.as_secs_f64() * 1000.0 / (n as f64 / 1048576.0)
        );
    }
}
