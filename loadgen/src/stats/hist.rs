//! The histograms of the statistics: one set of bounds, and the unit they count in.
use hdrhistogram::{Counter, Histogram};

/// Histograms cover 1 us .. 1 hour; longer values saturate at the top.
const HIST_HIGH_US: u64 = 3_600_000_000;

/// A histogram in microseconds with `sigfig` significant figures.
pub fn histogram<T: Counter>(sigfig: u8) -> Histogram<T> {
    Histogram::new_with_bounds(1, HIST_HIGH_US, sigfig)
        .expect("constant histogram bounds are valid")
}

/// Microseconds as milliseconds.
pub fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1_000.0
}
