//! Tests of the stream reassembler: order, wraparound, overlaps, bounds and caps.
use super::*;

/// What a consumer sees: the data joined, with gaps and the cap marked in line.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    data: Vec<u8>,
    gaps: Vec<u64>,
    capped: Option<u64>,
    chunks: usize,
}

impl Seen {
    fn take(&mut self, c: Chunk<'_>) {
        self.chunks += 1;
        match c {
            Chunk::Data(d) => self.data.extend_from_slice(d),
            Chunk::Gap { len_bytes } => self.gaps.push(len_bytes),
            Chunk::Capped { delivered_bytes } => {
                assert!(self.capped.is_none(), "Capped sent twice");
                self.capped = Some(delivered_bytes);
            }
        }
    }
}

fn push(r: &mut StreamReassembler, seen: &mut Seen, seq: u32, payload: &[u8]) {
    r.push(seq, payload, |c| seen.take(c));
    let cfg = r.cfg;
    assert!(
        r.held_bytes() <= cfg.max_held_bytes,
        "held {}",
        r.held_bytes()
    );
    assert!(r.held_segments() <= cfg.max_held_segments);
    assert!(r.recent.len() <= cfg.retain_delivered_bytes);
}

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A small deterministic PRNG (xorshift64*), so the tests need no extra crate.
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
fn in_order_segments_are_passed_through_without_copying() {
    let mut r = StreamReassembler::after_syn(999, ReasmConfig::default());
    assert_eq!(r.next_seq(), 1000);
    let payload = b"hello world".to_vec();
    let mut ptrs = Vec::new();
    r.push(1000, &payload, |c| {
        if let Chunk::Data(d) = c {
            ptrs.push(d.as_ptr());
        }
    });
    assert_eq!(
        ptrs,
        vec![payload.as_ptr()],
        "delivered from the payload itself"
    );
    assert_eq!(r.stats().delivered_bytes, 11);
    assert_eq!(r.next_seq(), 1011);
}

#[test]
fn sequence_wraparound_in_and_out_of_order() {
    let data = bytes(300);
    let isn = u32::MAX - 100;
    for order in [[0, 1, 2], [2, 0, 1], [1, 2, 0], [2, 1, 0]] {
        let mut r = StreamReassembler::after_syn(isn, ReasmConfig::default());
        let mut seen = Seen::default();
        let segs = [(0usize, 100usize), (100, 200), (200, 300)];
        for i in order {
            let (a, b) = segs[i];
            let seq = isn.wrapping_add(1).wrapping_add(a as u32);
            push(&mut r, &mut seen, seq, &data[a..b]);
        }
        assert_eq!(seen.data, data, "order {order:?}");
        assert_eq!(r.next_seq(), isn.wrapping_add(301));
        assert_eq!(r.held_bytes(), 0);
        assert!(seen.gaps.is_empty());
    }
}

#[test]
fn identical_retransmission_is_counted_not_delivered() {
    let data = bytes(100);
    let mut r = StreamReassembler::mid_stream(5, ReasmConfig::default());
    let mut seen = Seen::default();
    push(&mut r, &mut seen, 5, &data);
    push(&mut r, &mut seen, 5, &data);
    push(&mut r, &mut seen, 55, &data[50..]);
    assert_eq!(seen.data, data);
    assert_eq!(r.stats().retransmitted_bytes, 150);
    assert_eq!(r.stats().overlap_conflicts, 0);
    assert_eq!(r.stats().unverified_retransmitted_bytes, 0);
}

#[test]
fn differing_retransmission_is_a_conflict_and_first_copy_wins() {
    let data = bytes(100);
    let mut evil = data.clone();
    evil[10] ^= 0xff;
    let mut r = StreamReassembler::mid_stream(0, ReasmConfig::default());
    let mut seen = Seen::default();
    push(&mut r, &mut seen, 0, &data);
    push(&mut r, &mut seen, 0, &evil);
    assert_eq!(seen.data, data);
    assert_eq!(r.stats().overlap_conflicts, 1);
}

#[test]
fn partly_new_segment_delivers_only_its_new_bytes() {
    let data = bytes(200);
    let mut r = StreamReassembler::mid_stream(0, ReasmConfig::default());
    let mut seen = Seen::default();
    push(&mut r, &mut seen, 0, &data[..120]);
    push(&mut r, &mut seen, 100, &data[100..]);
    assert_eq!(seen.data, data);
    assert_eq!(r.stats().retransmitted_bytes, 20);
    assert_eq!(r.stats().delivered_bytes, 200);
}

#[test]
fn retransmission_older_than_the_window_is_unverified() {
    let data = bytes(5000);
    let cfg = ReasmConfig {
        retain_delivered_bytes: 1000,
        ..ReasmConfig::default()
    };
    let mut r = StreamReassembler::mid_stream(0, cfg);
    let mut seen = Seen::default();
    push(&mut r, &mut seen, 0, &data);
    let mut evil = data[..10].to_vec();
    evil[0] ^= 1;
    push(&mut r, &mut seen, 0, &evil);
    assert_eq!(r.stats().unverified_retransmitted_bytes, 10);
    assert_eq!(r.stats().overlap_conflicts, 0, "cannot know");
    let mut late = data[4500..].to_vec();
    late[3] ^= 1;
    push(&mut r, &mut seen, 4500, &late);
    assert_eq!(r.stats().overlap_conflicts, 1);
}

#[test]
fn overlapping_held_segments_are_trimmed_and_compared() {
    let data = bytes(400);
    let mut r = StreamReassembler::mid_stream(0, ReasmConfig::default());
    let mut seen = Seen::default();
    push(&mut r, &mut seen, 200, &data[200..300]);
    push(&mut r, &mut seen, 250, &data[250..350]);
    let mut evil = data[150..260].to_vec();
    evil[55] ^= 1; // offset 205, inside the first held piece
    push(&mut r, &mut seen, 150, &evil);
    assert_eq!(r.stats().overlap_conflicts, 1);
    assert_eq!(r.held_bytes(), 200, "150..350 held once");
    push(&mut r, &mut seen, 0, &data[..150]);
    push(&mut r, &mut seen, 350, &data[350..]);
    assert_eq!(
        seen.data, data,
        "held copy of 200..300 won over the later one"
    );
    assert_eq!(r.stats().out_of_order_segments, 3);
}

#[test]
fn in_order_segment_covering_held_pieces_trims_them() {
    let data = bytes(300);
    let mut r = StreamReassembler::mid_stream(0, ReasmConfig::default());
    let mut seen = Seen::default();
    push(&mut r, &mut seen, 50, &data[50..80]);
    push(&mut r, &mut seen, 150, &data[150..250]);
    push(&mut r, &mut seen, 0, &data[..200]);
    assert_eq!(seen.data, data[..250]);
    assert_eq!(r.held_bytes(), 0);
    assert_eq!(r.stats().retransmitted_bytes, 30 + 50);
    push(&mut r, &mut seen, 270, &data[270..280]);
    let mut covering = data[250..300].to_vec();
    covering[25] ^= 1; // offset 275, differs from the held piece 270..280
    push(&mut r, &mut seen, 250, &covering);
    assert_eq!(r.stats().overlap_conflicts, 1);
}

#[test]
fn hole_that_never_fills_is_skipped_past_the_byte_bound() {
    let cfg = ReasmConfig {
        max_held_bytes: 1000,
        ..ReasmConfig::default()
    };
    let data = bytes(3000);
    let mut r = StreamReassembler::mid_stream(0, cfg);
    let mut seen = Seen::default();
    push(&mut r, &mut seen, 0, &data[..100]);
    // 100..200 is lost; the rest arrives in 100-byte segments.
    for a in (200..3000).step_by(100) {
        push(&mut r, &mut seen, a as u32, &data[a..a + 100]);
    }
    assert_eq!(seen.gaps, vec![100]);
    assert_eq!(r.stats().gap_bytes, 100);
    assert_eq!(r.stats().gaps, 1);
    let mut want = data[..100].to_vec();
    want.extend_from_slice(&data[200..]);
    assert_eq!(seen.data, want);
    // A late copy of the hole is old news now.
    push(&mut r, &mut seen, 100, &data[100..200]);
    assert_eq!(seen.data, want);
}

#[test]
fn many_tiny_segments_hit_the_segment_bound() {
    let cfg = ReasmConfig {
        max_held_segments: 8,
        ..ReasmConfig::default()
    };
    let data = bytes(100);
    let mut r = StreamReassembler::mid_stream(0, cfg);
    let mut seen = Seen::default();
    // Every other byte, starting after a 1-byte hole: each is its own piece.
    for a in (1..100).step_by(2) {
        push(&mut r, &mut seen, a as u32, &data[a..a + 1]);
    }
    assert!(r.held_segments() <= 8);
    assert!(r.stats().gaps > 0);
    r.skip_holes(|c| seen.take(c));
    assert_eq!(r.held_segments(), 0);
    assert_eq!(seen.data.len(), 50);
    assert_eq!(r.stats().gap_bytes, 50);
}

#[test]
fn a_single_segment_larger_than_the_bound_is_delivered_after_its_hole() {
    let cfg = ReasmConfig {
        max_held_bytes: 10,
        ..ReasmConfig::default()
    };
    let data = bytes(100);
    let mut r = StreamReassembler::mid_stream(0, cfg);
    let mut seen = Seen::default();
    push(&mut r, &mut seen, 20, &data[20..]);
    assert_eq!(seen.gaps, vec![20]);
    assert_eq!(seen.data, data[20..]);
}

#[test]
fn delivery_stops_at_the_cap_and_says_so_once() {
    let cfg = ReasmConfig {
        max_delivered_bytes: 250,
        ..ReasmConfig::default()
    };
    let data = bytes(1000);
    let mut r = StreamReassembler::mid_stream(0, cfg);
    let mut seen = Seen::default();
    push(&mut r, &mut seen, 400, &data[400..500]);
    for a in (0..1000).step_by(100) {
        push(&mut r, &mut seen, a as u32, &data[a..a + 100]);
    }
    assert_eq!(seen.data, data[..250]);
    assert_eq!(seen.capped, Some(250));
    assert!(r.is_capped());
    assert_eq!(r.held_bytes(), 0, "held data freed at the cap");
    assert_eq!(r.stats().bytes_past_cap, 700);
}

#[test]
fn far_ahead_segment_is_out_of_window() {
    let cfg = ReasmConfig {
        max_ahead_bytes: 1 << 16,
        ..ReasmConfig::default()
    };
    let mut r = StreamReassembler::mid_stream(0, cfg);
    let mut seen = Seen::default();
    push(&mut r, &mut seen, 1 << 20, b"junk");
    assert_eq!(r.stats().out_of_window_bytes, 4);
    assert_eq!(r.held_bytes(), 0);
    // And a huge "old" distance (just under 2^31 back) is a retransmission, not data.
    push(&mut r, &mut seen, 0x8000_0001, b"old");
    assert!(seen.data.is_empty());
}

#[test]
fn mid_stream_bytes_before_the_start_are_dropped() {
    let data = bytes(100);
    let mut r = StreamReassembler::mid_stream(1000, ReasmConfig::default());
    let mut seen = Seen::default();
    push(&mut r, &mut seen, 990, &data[..30]);
    assert_eq!(r.stats().before_start_bytes, 10);
    assert_eq!(seen.data, data[10..30]);
    assert_eq!(r.next_seq(), 1020);
}

#[test]
fn skip_holes_flushes_everything_held() {
    let data = bytes(100);
    let mut r = StreamReassembler::mid_stream(0, ReasmConfig::default());
    let mut seen = Seen::default();
    push(&mut r, &mut seen, 10, &data[10..20]);
    push(&mut r, &mut seen, 50, &data[50..60]);
    r.skip_holes(|c| seen.take(c));
    assert_eq!(seen.gaps, vec![10, 30]);
    assert_eq!(seen.data, [&data[10..20], &data[50..60]].concat());
    assert_eq!(r.next_offset(), 60);
}

#[test]
fn shuffled_duplicated_segments_reassemble_exactly() {
    let data = bytes(20_000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..50 {
        let isn = rng.next() as u32;
        let mut segs = Vec::new();
        let mut a = 0;
        while a < data.len() {
            let b = (a + 1 + rng.below(1500)).min(data.len());
            segs.push((a, b));
            a = b;
        }
        // Duplicates, some overlapping re-segmentations, then a shuffle.
        for _ in 0..segs.len() / 3 {
            let (a, b) = segs[rng.below(segs.len())];
            let a2 = a.saturating_sub(rng.below(200));
            segs.push((a2, b));
        }
        for i in (1..segs.len()).rev() {
            segs.swap(i, rng.below(i + 1));
        }
        let cfg = ReasmConfig {
            max_held_bytes: usize::MAX,
            max_held_segments: usize::MAX,
            max_delivered_bytes: u64::MAX,
            ..ReasmConfig::default()
        };
        let mut r = StreamReassembler::after_syn(isn, cfg);
        let mut seen = Seen::default();
        for (a, b) in segs {
            let seq = isn.wrapping_add(1).wrapping_add(a as u32);
            push(&mut r, &mut seen, seq, &data[a..b]);
        }
        assert_eq!(seen.data, data, "round {round}");
        assert_eq!(r.stats().overlap_conflicts, 0);
        assert!(seen.gaps.is_empty());
    }
}

#[test]
fn hostile_pushes_stay_within_bounds() {
    let cfg = ReasmConfig {
        max_held_bytes: 4096,
        max_held_segments: 16,
        max_delivered_bytes: 100_000,
        retain_delivered_bytes: 512,
        max_ahead_bytes: 1 << 20,
    };
    let pool = bytes(70_000);
    let mut rng = Rng(42);
    let mut r = StreamReassembler::mid_stream(rng.next() as u32, cfg);
    let mut seen = Seen::default();
    for _ in 0..20_000 {
        let seq = match rng.below(3) {
            0 => rng.next() as u32,
            _ => r.next_seq().wrapping_add(rng.below(20_000) as u32),
        };
        let a = rng.below(pool.len());
        let b = (a + rng.below(3000)).min(pool.len());
        push(&mut r, &mut seen, seq, &pool[a..b]);
    }
    assert!(seen.data.len() as u64 <= cfg.max_delivered_bytes);
    assert_eq!(seen.data.len() as u64, r.stats().delivered_bytes);
}

#[test]
fn zero_caps_do_not_panic() {
    let cfg = ReasmConfig {
        max_held_bytes: 0,
        max_held_segments: 0,
        max_delivered_bytes: 0,
        retain_delivered_bytes: 0,
        max_ahead_bytes: 0,
    };
    let mut r = StreamReassembler::mid_stream(0, cfg);
    let mut seen = Seen::default();
    push(&mut r, &mut seen, 5, b"abc");
    push(&mut r, &mut seen, 0, b"abc");
    assert_eq!(seen.capped, Some(0));
    assert!(seen.data.is_empty());
}
