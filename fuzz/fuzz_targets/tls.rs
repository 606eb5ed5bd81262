#![no_main]
//! Fuzz target: the raw-socket parsers (stream reassembler, TLS and h2c observers) never
//! panic, stay within their memory bounds, and report the same facts however their input
//! is cut.
//!
//! The first input byte picks a split position and a mode; the rest is the byte stream S.
//! 1. S is fed to a TLS observer and to both h2c observers, whole and split in two: the
//!    facts must match.
//! 2. S is also cut into segments for a small-bounded reassembler, each described by 3
//!    input bytes (a 16-bit offset, a length). In truthful mode (even first byte) a
//!    segment carries S's own bytes at that offset, so every delivered byte must equal S
//!    at its stream offset and no overlap may conflict; in hostile mode the payload is
//!    whatever input follows, and offsets may point behind the start. The reassembled
//!    chunks drive a second TLS observer and h2c observer.
use analyzer::raw::{
    h2c::{self, H2cDirection, H2cFact, H2cObserver},
    reasm::{Chunk, ReasmConfig, StreamReassembler},
    tls::{self, TlsFact, TlsObserver},
};
use libfuzzer_sys::fuzz_target;

fn tls_facts(chunks: &[&[u8]]) -> Vec<TlsFact> {
    let mut o = TlsObserver::new();
    let mut facts = Vec::new();
    for c in chunks {
        o.feed(c, &mut facts);
        assert!(
            o.buffered_bytes() <= tls::MAX_BUFFERED_BYTES,
            "TLS buffers {}",
            o.buffered_bytes()
        );
    }
    assert!(
        facts.len() <= tls::MAX_FACTS + 1,
        "{} TLS facts",
        facts.len()
    );
    facts
}

fn h2c_facts(dir: H2cDirection, chunks: &[&[u8]]) -> Vec<H2cFact> {
    let mut o = H2cObserver::new(dir);
    let mut facts = Vec::new();
    for c in chunks {
        o.feed(c, &mut facts);
        assert!(o.buffered_bytes() <= h2c::MAX_BUFFERED_BYTES);
    }
    assert!(
        facts.len() <= h2c::MAX_FACTS + 1,
        "{} h2c facts",
        facts.len()
    );
    facts
}

fn reassemble(truthful: bool, isn: u32, stream: &[u8]) {
    let cfg = ReasmConfig {
        max_held_bytes: 4096,
        max_held_segments: 8,
        max_delivered_bytes: 32 * 1024,
        retain_delivered_bytes: 1024,
        max_ahead_bytes: 1 << 16,
    };
    let mut r = StreamReassembler::after_syn(isn, cfg);
    let mut tls_obs = TlsObserver::new();
    let mut h2c_obs = H2cObserver::new(H2cDirection::ServerToClient);
    let (mut tf, mut hf) = (Vec::new(), Vec::new());
    // Stream offset of the next chunk, to check truthful deliveries against S.
    let mut cursor = 0u64;
    let mut capped = false;
    let mut take = |c: Chunk<'_>| {
        match c {
            Chunk::Data(d) => {
                assert!(!capped, "data after Capped");
                if truthful {
                    let at = usize::try_from(cursor).unwrap();
                    assert_eq!(
                        stream.get(at..at + d.len()),
                        Some(d),
                        "wrong bytes at offset {at}"
                    );
                }
                cursor += d.len() as u64;
            }
            Chunk::Gap { len_bytes } => cursor += len_bytes,
            Chunk::Capped { .. } => {
                assert!(!capped, "Capped twice");
                capped = true;
            }
        }
        tls_obs.on_chunk(c, &mut tf);
        h2c_obs.on_chunk(c, &mut hf);
    };
    let mut ops = stream;
    while let [o0, o1, l, rest @ ..] = ops {
        let off = u16::from_le_bytes([*o0, *o1]);
        let len = usize::from(*l);
        let (seq_off, payload, next): (i64, &[u8], &[u8]) = if truthful {
            let a = usize::from(off) % stream.len().max(1);
            let b = (a + len).min(stream.len());
            (a as i64, &stream[a..b], rest)
        } else {
            let n = len.min(rest.len());
            // Let hostile offsets reach behind the stream start too.
            (i64::from(off as i16), &rest[..n], &rest[n..])
        };
        let seq = isn.wrapping_add(1).wrapping_add(seq_off as u32);
        r.push(seq, payload, &mut take);
        assert!(
            r.held_bytes() <= cfg.max_held_bytes,
            "held {}",
            r.held_bytes()
        );
        assert!(r.held_segments() <= cfg.max_held_segments);
        ops = next;
    }
    r.skip_holes(&mut take);
    let st = *r.stats();
    assert!(st.delivered_bytes <= cfg.max_delivered_bytes);
    assert_eq!(st.delivered_bytes + st.gap_bytes, r.next_offset());
    if truthful {
        assert_eq!(st.overlap_conflicts, 0, "truthful segments conflicted");
    }
    assert!(tf.len() <= tls::MAX_FACTS + 1 && hf.len() <= h2c::MAX_FACTS + 1);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let at = usize::from(mode) * bytes.len() / 255;
    let (a, b) = bytes.split_at(at);
    assert_eq!(
        tls_facts(&[bytes]),
        tls_facts(&[a, b]),
        "TLS facts differ when split at {at}"
    );
    for dir in [H2cDirection::ClientToServer, H2cDirection::ServerToClient] {
        let whole = h2c_facts(dir, &[bytes]);
        assert_eq!(
            whole,
            h2c_facts(dir, &[a, b]),
            "h2c facts differ when split at {at}"
        );
    }
    // Start near the top of the sequence space so most runs cross the wraparound.
    let isn = u32::MAX - u32::from(mode) * 97;
    reassemble(mode % 2 == 0, isn, bytes);
});
