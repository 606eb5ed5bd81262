//! Per-direction TCP byte-stream reassembly: turns captured segments (retransmitted,
//! overlapping, out of order, across sequence wraparound) into in-order bytes, in bounded
//! memory, skipping holes that never fill.
//!
//! Sequence numbers are compared with RFC 9293 section 3.4 serial arithmetic (modulo
//! 2^32, relative to the next expected byte), then kept as 64-bit stream offsets so that
//! the out-of-order store never has to reason about wraparound.
//!
//! Overlaps are resolved first-copy-wins: data already delivered or held is kept and the
//! later copy is only compared with it. A receiving kernel may resolve them otherwise
//! (the classic IDS-evasion ambiguity), which is why differing copies are counted in
//! [`ReasmStats::overlap_conflicts`] rather than hidden.
use std::collections::{BTreeMap, VecDeque};

/// Default bound on out-of-order bytes held per direction.
pub const DEFAULT_MAX_HELD_BYTES: usize = 64 * 1024;
/// Default bound on out-of-order segments (pieces) held per direction.
pub const DEFAULT_MAX_HELD_SEGMENTS: usize = 128;
/// Default cap on bytes delivered per direction for inspection.
pub const DEFAULT_MAX_DELIVERED_BYTES: u64 = 256 * 1024;
/// Default size of the window of delivered bytes kept to verify retransmissions.
pub const DEFAULT_RETAIN_DELIVERED_BYTES: usize = 16 * 1024;
/// Default limit on how far ahead of the next expected byte a segment may start: the
/// largest receive window TCP can advertise (RFC 7323 section 2.3: 2^30 bytes).
pub const DEFAULT_MAX_AHEAD_BYTES: u64 = 1 << 30;

/// Bounds of one [`StreamReassembler`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReasmConfig {
    /// Out-of-order bytes held waiting for a hole to fill; beyond it the oldest hole is
    /// skipped (reported as [`Chunk::Gap`]).
    pub max_held_bytes: usize,
    /// Out-of-order pieces held (bounds the per-piece overhead of many tiny segments).
    pub max_held_segments: usize,
    /// Bytes delivered before the reassembler stops ([`Chunk::Capped`]).
    pub max_delivered_bytes: u64,
    /// Delivered bytes remembered to compare retransmissions with (0: compare none).
    pub retain_delivered_bytes: usize,
    /// Segments starting further ahead than this are dropped as out of window.
    pub max_ahead_bytes: u64,
}

impl Default for ReasmConfig {
    fn default() -> Self {
        ReasmConfig {
            max_held_bytes: DEFAULT_MAX_HELD_BYTES,
            max_held_segments: DEFAULT_MAX_HELD_SEGMENTS,
            max_delivered_bytes: DEFAULT_MAX_DELIVERED_BYTES,
            retain_delivered_bytes: DEFAULT_RETAIN_DELIVERED_BYTES,
            max_ahead_bytes: DEFAULT_MAX_AHEAD_BYTES,
        }
    }
}

/// How the stream's first sequence number was learnt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamStart {
    /// ISN+1 from a seen SYN: offset 0 is the first byte of the stream.
    AfterSyn,
    /// The first segment seen mid-connection: offset 0 is wherever capture began, so
    /// parsers should expect to start inside a message.
    MidStream,
}

/// What the reassembler hands on, in stream order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// The next bytes of the stream (borrowed from the pushed payload when it arrived in
    /// order, so the common case copies nothing).
    Data(&'a [u8]),
    /// Bytes that never arrived and were skipped; the stream continues after them.
    Gap { len_bytes: u64 },
    /// The delivery cap was reached; nothing more will be delivered. Sent once.
    Capped { delivered_bytes: u64 },
}

/// Counters of one direction, all in bytes unless named otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReasmStats {
    /// Segments pushed (empty ones included).
    pub segments: u64,
    /// Bytes handed on as [`Chunk::Data`].
    pub delivered_bytes: u64,
    /// Bytes received again (already delivered or already held).
    pub retransmitted_bytes: u64,
    /// Retransmitted bytes that could not be compared (older than the retained window).
    pub unverified_retransmitted_bytes: u64,
    /// Segments whose retransmitted bytes differ from the first copy.
    pub overlap_conflicts: u64,
    /// Segments that arrived ahead of a hole.
    pub out_of_order_segments: u64,
    /// Holes skipped, and their total size.
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Bytes dropped for starting more than `max_ahead_bytes` ahead.
    pub out_of_window_bytes: u64,
    /// Bytes dropped for lying before the first byte of the stream.
    pub before_start_bytes: u64,
    /// Bytes pushed after the delivery cap was reached, not looked at.
    pub bytes_past_cap: u64,
}

/// Reassembles one direction of one TCP connection.
#[derive(Clone, Debug)]
pub struct StreamReassembler {
    cfg: ReasmConfig,
    start: StreamStart,
    /// Sequence number of the next expected byte.
    next_seq: u32,
    /// Stream offset of `next_seq`.
    next_off: u64,
    /// Out-of-order pieces by stream offset; never overlapping, all after `next_off`.
    held: BTreeMap<u64, Vec<u8>>,
    held_bytes: usize,
    /// The last delivered bytes, ending at `next_off`.
    recent: VecDeque<u8>,
    capped: bool,
    stats: ReasmStats,
}

impl StreamReassembler {
    /// A stream whose first byte has sequence number `first_seq`.
    pub fn new(first_seq: u32, start: StreamStart, cfg: ReasmConfig) -> Self {
        StreamReassembler {
            cfg,
            start,
            next_seq: first_seq,
            next_off: 0,
            held: BTreeMap::new(),
            held_bytes: 0,
            recent: VecDeque::new(),
            capped: false,
            stats: ReasmStats::default(),
        }
    }

    /// A stream opened by a SYN carrying `isn` (the SYN consumes one sequence number,
    /// RFC 9293 section 3.4).
    pub fn after_syn(isn: u32, cfg: ReasmConfig) -> Self {
        Self::new(isn.wrapping_add(1), StreamStart::AfterSyn, cfg)
    }

    /// A stream first seen mid-connection at a segment starting at `first_seq`.
    pub fn mid_stream(first_seq: u32, cfg: ReasmConfig) -> Self {
        Self::new(first_seq, StreamStart::MidStream, cfg)
    }

    pub fn start(&self) -> StreamStart {
        self.start
    }

    /// Sequence number of the next byte to deliver.
    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }

    /// Stream offset of the next byte to deliver (delivered plus skipped bytes).
    pub fn next_offset(&self) -> u64 {
        self.next_off
    }

    pub fn stats(&self) -> &ReasmStats {
        &self.stats
    }

    /// Out-of-order payload bytes held now (at most `max_held_bytes` between calls).
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Out-of-order pieces held now (at most `max_held_segments` between calls).
    pub fn held_segments(&self) -> usize {
        self.held.len()
    }

    /// True once the delivery cap was reached.
    pub fn is_capped(&self) -> bool {
        self.capped
    }

    /// Takes one segment's payload starting at sequence number `seq`, and calls `deliver`
    /// with whatever it makes deliverable, in stream order.
    pub fn push(&mut self, seq: u32, payload: &[u8], mut deliver: impl FnMut(Chunk<'_>)) {
        self.stats.segments += 1;
        if self.capped {
            self.stats.bytes_past_cap += payload.len() as u64;
            return;
        }
        if payload.is_empty() {
            return;
        }
        // RFC 9293 section 3.4: sequence space is modulo 2^32, so a segment is judged by
        // its signed distance from the next expected byte.
        let delta = seq.wrapping_sub(self.next_seq) as i32;
        let (start_off, payload) = if delta >= 0 {
            (self.next_off + u64::from(delta.unsigned_abs()), payload)
        } else {
            let back = u64::from(delta.unsigned_abs());
            match back.checked_sub(self.next_off) {
                // Part of it lies before offset 0 (a mid-stream start, or garbage).
                Some(before) if before > 0 => {
                    let n = usize::try_from(before).map_or(payload.len(), |b| b.min(payload.len()));
                    self.stats.before_start_bytes += n as u64;
                    (0, payload.get(n..).unwrap_or_default())
                }
                _ => (self.next_off - back, payload),
            }
        };
        if payload.is_empty() {
            return;
        }
        let end_off = start_off + payload.len() as u64;
        if end_off <= self.next_off {
            self.retransmitted(start_off, payload);
        } else if start_off <= self.next_off {
            let at = len_usize(self.next_off - start_off);
            let (old, new) = payload.split_at_checked(at).unwrap_or((payload, &[]));
            self.retransmitted(start_off, old);
            self.deliver_in_order(new, &mut deliver);
        } else if start_off - self.next_off > self.cfg.max_ahead_bytes {
            self.stats.out_of_window_bytes += payload.len() as u64;
        } else {
            self.stats.out_of_order_segments += 1;
            self.hold(start_off, payload);
            self.enforce_bounds(&mut deliver);
        }
    }

    /// Gives up on every hole (at FIN, RST or end of capture): skips each one and
    /// delivers the held data after it.
    pub fn skip_holes(&mut self, mut deliver: impl FnMut(Chunk<'_>)) {
        while !self.capped && !self.held.is_empty() {
            self.skip_first_hole(&mut deliver);
        }
    }

    /// Counts bytes received again and compares them with the retained delivered bytes.
    fn retransmitted(&mut self, start_off: u64, data: &[u8]) {
        let len = data.len() as u64;
        self.stats.retransmitted_bytes += len;
        let win_start = self.next_off - self.recent.len() as u64;
        let from = start_off.max(win_start);
        let to = (start_off + len).min(self.next_off);
        if from >= to {
            self.stats.unverified_retransmitted_bytes += len;
            return;
        }
        self.stats.unverified_retransmitted_bytes += len - (to - from);
        let old = self
            .recent
            .range(len_usize(from - win_start)..len_usize(to - win_start));
        let new = data
            .get(len_usize(from - start_off)..len_usize(to - start_off))
            .unwrap_or_default();
        if old.zip(new).any(|(a, b)| a != b) {
            self.stats.overlap_conflicts += 1;
        }
    }

    /// Delivers `data`, which starts at `next_off`, then whatever held data it unblocks.
    fn deliver_in_order(&mut self, data: &[u8], deliver: &mut impl FnMut(Chunk<'_>)) {
        let end = self.next_off + data.len() as u64;
        // Held pieces this segment covers were received twice: compare, then trim.
        let mut conflict = false;
        let covered: Vec<u64> = self.held.range(..end).map(|(k, _)| *k).collect();
        for key in covered {
            let Some(mut piece) = self.held.remove(&key) else {
                continue;
            };
            self.held_bytes -= piece.len();
            let piece_end = key + piece.len() as u64;
            let overlap_end = piece_end.min(end);
            let ours =
                data.get(len_usize(key - self.next_off)..len_usize(overlap_end - self.next_off));
            let theirs = piece.get(..len_usize(overlap_end - key));
            conflict |= ours != theirs;
            self.stats.retransmitted_bytes += overlap_end - key;
            if piece_end > end {
                let tail = piece.split_off(len_usize(end - key));
                self.held_bytes += tail.len();
                self.held.insert(end, tail);
            }
        }
        if conflict {
            self.stats.overlap_conflicts += 1;
        }
        self.emit(data, deliver);
        self.drain_held(deliver);
    }

    /// Delivers held pieces while the first one starts at `next_off`.
    fn drain_held(&mut self, deliver: &mut impl FnMut(Chunk<'_>)) {
        while !self.capped {
            let Some(entry) = self.held.first_entry() else {
                return;
            };
            if *entry.key() != self.next_off {
                return;
            }
            let piece = entry.remove();
            self.held_bytes -= piece.len();
            self.emit(&piece, deliver);
        }
    }

    /// Hands `data` (starting at `next_off`) on, up to the delivery cap.
    fn emit(&mut self, data: &[u8], deliver: &mut impl FnMut(Chunk<'_>)) {
        let room = (self.cfg.max_delivered_bytes).saturating_sub(self.stats.delivered_bytes);
        let n = len_usize(room.min(data.len() as u64));
        let data = data.get(..n).unwrap_or_default();
        if !data.is_empty() {
            deliver(Chunk::Data(data));
            self.advance(data.len() as u64);
            self.stats.delivered_bytes += data.len() as u64;
            self.remember(data);
        }
        if self.stats.delivered_bytes >= self.cfg.max_delivered_bytes {
            self.capped = true;
            self.held.clear();
            self.held_bytes = 0;
            self.recent = VecDeque::new();
            deliver(Chunk::Capped {
                delivered_bytes: self.stats.delivered_bytes,
            });
        }
    }

    fn advance(&mut self, n: u64) {
        self.next_off += n;
        // Truncation to 32 bits is the modulo-2^32 sequence arithmetic of RFC 9293 3.4.
        self.next_seq = self.next_seq.wrapping_add(n as u32);
    }

    /// Keeps the last `retain_delivered_bytes` delivered bytes.
    fn remember(&mut self, data: &[u8]) {
        let keep = self.cfg.retain_delivered_bytes;
        let tail = data
            .get(data.len().saturating_sub(keep)..)
            .unwrap_or_default();
        let excess = (self.recent.len() + tail.len()).saturating_sub(keep);
        self.recent.drain(..excess.min(self.recent.len()));
        self.recent.extend(tail);
    }

    /// Stores the parts of an out-of-order segment not already held.
    fn hold(&mut self, start_off: u64, data: &[u8]) {
        let end = start_off + data.len() as u64;
        // Held pieces never overlap, so walking back from `end` finds exactly those
        // that overlap [start_off, end).
        let mut overlaps: Vec<(u64, u64)> = self
            .held
            .range(..end)
            .rev()
            .map(|(k, v)| (*k, *k + v.len() as u64))
            .take_while(|&(_, e)| e > start_off)
            .collect();
        overlaps.reverse();
        let mut conflict = false;
        let mut cursor = start_off;
        for (k, e) in overlaps {
            if k > cursor {
                self.insert_piece(cursor, data, start_off, k);
            }
            let (from, to) = (k.max(start_off), e.min(end));
            let theirs = self
                .held
                .get(&k)
                .and_then(|p| p.get(len_usize(from - k)..len_usize(to - k)));
            let ours = data.get(len_usize(from - start_off)..len_usize(to - start_off));
            conflict |= theirs != ours;
            self.stats.retransmitted_bytes += to - from;
            cursor = cursor.max(e);
        }
        if cursor < end {
            self.insert_piece(cursor, data, start_off, end);
        }
        if conflict {
            self.stats.overlap_conflicts += 1;
        }
    }

    fn insert_piece(&mut self, from: u64, data: &[u8], data_off: u64, to: u64) {
        let piece = data
            .get(len_usize(from - data_off)..len_usize(to - data_off))
            .unwrap_or_default();
        self.held_bytes += piece.len();
        self.held.insert(from, piece.to_vec());
    }

    /// While over a bound, gives up on the oldest hole.
    fn enforce_bounds(&mut self, deliver: &mut impl FnMut(Chunk<'_>)) {
        while !self.capped
            && !self.held.is_empty()
            && (self.held_bytes > self.cfg.max_held_bytes
                || self.held.len() > self.cfg.max_held_segments)
        {
            self.skip_first_hole(deliver);
        }
    }

    /// Skips the hole before the first held piece and delivers what follows it.
    fn skip_first_hole(&mut self, deliver: &mut impl FnMut(Chunk<'_>)) {
        let Some(&first) = self.held.keys().next() else {
            return;
        };
        let len_bytes = first - self.next_off;
        if len_bytes > 0 {
            self.stats.gaps += 1;
            self.stats.gap_bytes += len_bytes;
            self.advance(len_bytes);
            // The retained window must end at `next_off`; after a hole it holds nothing.
            self.recent.clear();
            deliver(Chunk::Gap { len_bytes });
        }
        self.drain_held(deliver);
    }
}

/// A length that fits in memory already (offsets within one payload or window).
fn len_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

// The tests live in reasm/tests.rs to keep each file short (STYLE.md).
#[cfg(test)]
mod tests;
