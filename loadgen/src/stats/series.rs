//! The per-second series of a run, in flat memory: an open window of recent intended
//! seconds with small histograms, older seconds finalized into plain numbers.
//!
//! See the parent module's comment for the approximations this makes.
use std::collections::{BTreeMap, btree_map::Entry};

use hdrhistogram::Histogram;

use super::hist::{histogram, us_to_ms};
use crate::summary::Second;

/// Intended seconds kept open (with a histogram) behind the newest one seen.
pub const WINDOW_S: u64 = 64;

/// An intended second still open: counts and a small histogram (2 significant figures,
/// u32 counts: about 13 KB).
#[derive(Clone, Debug)]
struct OpenSecond {
    requests: u64,
    success: u64,
    hist_us: Histogram<u32>,
}

impl OpenSecond {
    fn new() -> Self {
        Self {
            requests: 0,
            success: 0,
            hist_us: histogram(2),
        }
    }

    fn finish(&self) -> DoneSecond {
        let q = |q| (!self.hist_us.is_empty()).then(|| self.hist_us.value_at_quantile(q));
        DoneSecond {
            requests: self.requests,
            success: self.success,
            p50_us: q(0.5),
            p99_us: q(0.99),
        }
    }
}

/// A finalized second: plain numbers only.
#[derive(Clone, Copy, Debug, PartialEq)]
struct DoneSecond {
    requests: u64,
    success: u64,
    p50_us: Option<u64>,
    p99_us: Option<u64>,
}

impl DoneSecond {
    fn absorb(&mut self, other: DoneSecond) {
        // The histograms are gone: see the module comment for this approximation.
        self.p50_us = match (self.p50_us, other.p50_us) {
            (Some(a), Some(b)) => {
                let (wa, wb) = (self.requests.max(1) as f64, other.requests.max(1) as f64);
                Some(((a as f64 * wa + b as f64 * wb) / (wa + wb)).round() as u64)
            }
            (a, b) => a.or(b),
        };
        self.p99_us = self.p99_us.max(other.p99_us);
        self.requests += other.requests;
        self.success += other.success;
    }
}

/// The per-second series, keyed by intended unix second.
#[derive(Clone, Debug, Default)]
pub(super) struct Series {
    open: BTreeMap<u64, OpenSecond>,
    done: BTreeMap<u64, DoneSecond>,
    newest: Option<u64>,
    /// Events that arrived after their second was finalized.
    missed_percentiles: u64,
}

/// What the series holds, for tests and diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeriesSize {
    /// Seconds holding a histogram; never more than [`WINDOW_S`].
    pub open: usize,
    /// Seconds finalized into plain numbers.
    pub finalized: usize,
    /// Bytes of one finalized second.
    pub finalized_entry_bytes: usize,
    /// Requests that arrived after their second was finalized: in the counts, not in that
    /// second's percentiles.
    pub missed_percentiles: u64,
}

impl Series {
    pub(super) fn size(&self) -> SeriesSize {
        SeriesSize {
            open: self.open.len(),
            finalized: self.done.len(),
            finalized_entry_bytes: size_of::<DoneSecond>(),
            missed_percentiles: self.missed_percentiles,
        }
    }

    fn in_window(&self, sec: u64) -> bool {
        self.newest.is_none_or(|newest| sec + WINDOW_S > newest)
    }

    fn advance(&mut self, sec: u64) {
        if self.newest.is_some_and(|newest| sec <= newest) {
            return;
        }
        self.newest = Some(sec);
        let keep_from = (sec + 1).saturating_sub(WINDOW_S);
        let kept = self.open.split_off(&keep_from);
        for (old_sec, open) in std::mem::replace(&mut self.open, kept) {
            self.absorb_done(old_sec, open.finish());
        }
    }

    fn absorb_done(&mut self, sec: u64, done: DoneSecond) {
        match self.done.entry(sec) {
            Entry::Vacant(e) => {
                e.insert(done);
            }
            Entry::Occupied(mut e) => e.get_mut().absorb(done),
        }
    }

    pub(super) fn record(&mut self, sec: u64, latency_us: u64, success: bool) {
        self.advance(sec);
        if self.in_window(sec) {
            let open = self.open.entry(sec).or_insert_with(OpenSecond::new);
            open.requests += 1;
            open.success += u64::from(success);
            open.hist_us.saturating_record(latency_us);
        } else {
            self.missed_percentiles += 1;
            let done = DoneSecond {
                requests: 1,
                success: u64::from(success),
                p50_us: None,
                p99_us: None,
            };
            self.absorb_done(sec, done);
        }
    }

    pub(super) fn merge(&mut self, other: &Series) {
        if let Some(newest) = other.newest {
            self.advance(newest);
        }
        // After advancing, every second `other` finalized lies before our window, so it
        // can never collide with one of our open seconds.
        for (sec, theirs) in &other.open {
            if !self.in_window(*sec) {
                self.absorb_done(*sec, theirs.finish());
                continue;
            }
            match self.open.entry(*sec) {
                Entry::Vacant(e) => {
                    e.insert(theirs.clone());
                }
                Entry::Occupied(mut e) => {
                    let ours = e.get_mut();
                    ours.requests += theirs.requests;
                    ours.success += theirs.success;
                    ours.hist_us
                        .add(&theirs.hist_us)
                        .expect("histograms with the same bounds add");
                }
            }
        }
        for (sec, done) in &other.done {
            self.absorb_done(*sec, *done);
        }
        self.missed_percentiles += other.missed_percentiles;
    }

    pub(super) fn recent_percentiles_ms(&self, seconds: u64) -> (Option<f64>, Option<f64>) {
        let Some(newest) = self.newest else {
            return (None, None);
        };
        let from = (newest + 1).saturating_sub(seconds);
        let mut acc: Option<Histogram<u32>> = None;
        for open in self.open.range(from..).map(|(_, o)| o) {
            match &mut acc {
                None => acc = Some(open.hist_us.clone()),
                Some(h) => h
                    .add(&open.hist_us)
                    .expect("histograms with the same bounds add"),
            }
        }
        match acc {
            Some(h) if !h.is_empty() => (
                Some(us_to_ms(h.value_at_quantile(0.5))),
                Some(us_to_ms(h.value_at_quantile(0.99))),
            ),
            _ => (None, None),
        }
    }

    /// Rows in second order; `base` is the unix second of row 0.
    pub(super) fn rows(&self, base: u64) -> Vec<Second> {
        let finished = self.open.iter().map(|(sec, open)| (*sec, open.finish()));
        self.done
            .iter()
            .map(|(sec, done)| (*sec, *done))
            .chain(finished)
            .map(|(sec, d)| Second {
                second: sec - base,
                requests: d.requests,
                success: d.success,
                failed: d.requests - d.success,
                p50_ms: d.p50_us.map(us_to_ms),
                p99_ms: d.p99_us.map(us_to_ms),
            })
            .collect()
    }

    pub(super) fn first(&self) -> Option<u64> {
        let done = self.done.keys().next();
        let open = self.open.keys().next();
        done.or(open).copied()
    }
}
