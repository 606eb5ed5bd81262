//! Tests of the HPACK decoder: the examples of RFC 7541 Appendix C, and agreement with
//! loona-hpack 0.4.3 (the decoder it replaces) on random, generated and mutated blocks.
use super::*;

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

fn decode(d: &mut Decoder, block: &[u8]) -> Result<Fields, HpackError> {
    let mut fields = Vec::new();
    d.decode(block, |n, v| fields.push((n.to_vec(), v.to_vec())))?;
    Ok(fields)
}

fn fields(list: &[(&str, &str)]) -> Fields {
    list.iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

/// The table's entries, newest first, and its size.
fn table(d: &Decoder) -> (Vec<(String, String)>, usize) {
    let entries = d.table.entries.iter().map(|e| {
        let (n, v) = e.field();
        (
            String::from_utf8_lossy(n).into(),
            String::from_utf8_lossy(v).into(),
        )
    });
    (entries.collect(), d.table.size)
}

#[test]
fn rfc7541_c4_requests_with_huffman() {
    let mut d = Decoder::new(MAX_BYTES);
    let blocks = [
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ];
    let want = [
        fields(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ]),
        fields(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ]),
        fields(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ]),
    ];
    for (block, want) in blocks.iter().zip(&want) {
        assert_eq!(decode(&mut d, &unhex(block)).unwrap(), *want);
    }
    assert_eq!(table(&d).1, 164, "{:?}", table(&d));
}

/// C.6: responses with Huffman coding and a 256-byte table, where entries are evicted.
#[test]
fn rfc7541_c6_responses_with_huffman_and_eviction() {
    let mut d = Decoder::new(MAX_BYTES);
    d.table.set_max_size(256);
    let blocks = [
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
         2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        "4883 640e ffc1 c0bf",
        "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
         77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
         9587 3160 65c0 03ed 4ee5 b106 3d50 07",
    ];
    let date1 = "Mon, 21 Oct 2013 20:13:21 GMT";
    let date2 = "Mon, 21 Oct 2013 20:13:22 GMT";
    let location = "https://www.example.com";
    let cookie = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
    let want = [
        fields(&[
            (":status", "302"),
            ("cache-control", "private"),
            ("date", date1),
            ("location", location),
        ]),
        fields(&[
            (":status", "307"),
            ("cache-control", "private"),
            ("date", date1),
            ("location", location),
        ]),
        fields(&[
            (":status", "200"),
            ("cache-control", "private"),
            ("date", date2),
            ("location", location),
            ("content-encoding", "gzip"),
            ("set-cookie", cookie),
        ]),
    ];
    for (block, want) in blocks.iter().zip(&want) {
        assert_eq!(decode(&mut d, &unhex(block)).unwrap(), *want);
    }
    let (entries, size) = table(&d);
    assert_eq!(size, 215);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["set-cookie", "content-encoding", "date"]);
}

#[test]
fn errors() {
    let cases: [(&str, HpackError); 8] = [
        ("be", HpackError::IndexOutOfBounds { index: 62 }),
        ("80", HpackError::IndexOutOfBounds { index: 0 }),
        ("ff", HpackError::IntegerTruncated),
        ("ff ff ff ff ff 01", HpackError::IntegerTooLong),
        ("44 05 2f70", HpackError::StringTruncated),
        ("20", HpackError::SizeUpdateAtEnd),
        (
            "3fe1ff07 88",
            HpackError::TableSizeOverMax {
                size: 131_072,
                max_bytes: MAX_BYTES,
            },
        ),
        // `a` is 00011 (5 bits); 8 bits of ones after it are too long a padding.
        (
            "44 82 1fff",
            HuffmanError::PaddingTooLong { bits: 11 }.into(),
        ),
    ];
    for (block, want) in cases {
        let got = decode(&mut Decoder::new(MAX_BYTES), &unhex(block));
        assert_eq!(got, Err(want), "{block}");
    }
    // The 30 ones of EOS, then 2 of padding.
    let eos = decode(&mut Decoder::new(MAX_BYTES), &unhex("44 84 ffffffff"));
    assert_eq!(eos, Err(HuffmanError::Eos.into()));
    // `a` then 3 zero bits.
    let bad_pad = decode(&mut Decoder::new(MAX_BYTES), &unhex("44 81 18"));
    assert_eq!(bad_pad, Err(HuffmanError::PaddingNotEos.into()));
    // An empty block, and a size update first and in the middle (loona-hpack's rule).
    let mut d = Decoder::new(MAX_BYTES);
    assert_eq!(decode(&mut d, b""), Ok(vec![]));
    assert_eq!(decode(&mut d, &unhex("20 88 3fe11f 88")).unwrap().len(), 2);
    assert_eq!(d.table.max_size, 4096);
}

#[test]
fn huffman_round_trips_every_octet() {
    let plain: Vec<u8> = (0..=255u8)
        .chain(b"text/html; charset=utf-8".iter().copied())
        .collect();
    let mut out = Vec::new();
    huffman::decode(&huffman::encode(&plain), &mut out).unwrap();
    assert_eq!(out, plain);
}

const MAX_BYTES: usize = 64 * 1024;

/// xorshift64*: deterministic cases without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, max_len: u64) -> Vec<u8> {
        let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789-:/ ;=ABCXYZ\x00\xff\x7f";
        (0..self.below(max_len + 1))
            .map(|_| alphabet[self.below(alphabet.len() as u64) as usize])
            .collect()
    }
}

/// An HPACK integer (section 5.1) after the `flags` of its first octet.
fn put_integer(out: &mut Vec<u8>, flags: u8, prefix: u8, mut value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_string(rng: &mut Rng, out: &mut Vec<u8>, s: &[u8]) {
    if rng.below(2) == 0 {
        let coded = huffman::encode(s);
        put_integer(out, 0x80, 7, coded.len());
        out.extend(coded);
    } else {
        put_integer(out, 0, 7, s.len());
        out.extend(s);
    }
}

/// A block of well-formed representations, with indices that now and then miss a
/// table of `dynamic_len` entries.
fn block(rng: &mut Rng, dynamic_len: usize) -> Vec<u8> {
    let mut b = Vec::new();
    if rng.below(8) == 0 {
        put_integer(&mut b, 0x20, 5, rng.below(5000) as usize);
    }
    for _ in 0..rng.below(8) {
        // Mostly the static table; the first dynamic entries, which may not be there yet.
        let index = match rng.below(200) {
            0 => 0,
            1 => 62 + dynamic_len + rng.below(3) as usize,
            2..80 if dynamic_len > 0 => 62 + rng.below(dynamic_len as u64) as usize,
            _ => 1 + rng.below(61) as usize,
        };
        match rng.below(5) {
            0 => put_integer(&mut b, 0x80, 7, index),
            kind => {
                let (flags, prefix) = [(0x40, 6), (0, 4), (0x10, 4), (0x40, 6)][kind as usize - 1];
                let name_index = if rng.below(3) == 0 { 0 } else { index };
                put_integer(&mut b, flags, prefix, name_index);
                if name_index == 0 {
                    let name = rng.bytes(12);
                    put_string(rng, &mut b, &name);
                }
                let max_len = if rng.below(10) == 0 { 300 } else { 20 };
                let value = rng.bytes(max_len);
                put_string(rng, &mut b, &value);
            }
        }
    }
    // Now and then, a broken one: an octet changed, the end cut, or noise.
    match rng.below(60) {
        0 if !b.is_empty() => {
            let at = rng.below(b.len() as u64) as usize;
            b[at] = rng.next() as u8;
        }
        1 => b.truncate(rng.below(b.len() as u64 + 1) as usize),
        2 => b = (0..rng.below(16)).map(|_| rng.next() as u8).collect(),
        _ => {}
    }
    b
}

/// Both decoders, fed the same sequences of blocks, give the same fields for every block
/// and fail on the same one; a failure ends the sequence, as it ends reading statuses.
#[test]
fn agrees_with_loona_hpack() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut blocks_seen, mut failures) = (0, 0);
    for _ in 0..1000 {
        let mut ours = Decoder::new(MAX_BYTES);
        let mut theirs = loona_hpack::Decoder::new();
        theirs.set_max_allowed_table_size(MAX_BYTES);
        for _ in 0..rng.below(30) {
            let b = block(&mut rng, ours.table.entries.len());
            blocks_seen += 1;
            let got = decode(&mut ours, &b);
            let want = theirs.decode(&b);
            match (&got, &want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{b:02x?}"),
                (Err(_), Err(_)) => {
                    failures += 1;
                    break;
                }
                _ => panic!("{b:02x?}: ours {got:?}, loona-hpack {want:?}"),
            }
        }
    }
    assert!(
        blocks_seen > 6000 && failures > 200,
        "{blocks_seen} {failures}"
    );
}

#[test]
fn huffman_agrees_with_loona_hpack_on_random_octets() {
    let mut rng = Rng(7);
    let mut out = Vec::new();
    for _ in 0..20_000 {
        let len = rng.below(12);
        let coded: Vec<u8> = (0..len)
            .map(|_| (rng.next() as u8) | [0, 0xf0, 0xfe][rng.below(3) as usize])
            .collect();
        out.clear();
        let got = huffman::decode(&coded, &mut out).map(|()| out.clone());
        let want = loona_hpack::huffman::HuffmanDecoder::new().decode(&coded);
        assert_eq!(got.is_ok(), want.is_ok(), "{coded:02x?}: {got:?} {want:?}");
        if let (Ok(g), Ok(w)) = (got, want) {
            assert_eq!(g, w, "{coded:02x?}");
        }
    }
}
