//! The live progress line on stderr during `attack`: UI, so it prints (the one library
//! module besides [`crate::app`] that does). On a terminal it is redrawn in place; to a
//! file or pipe it is a plain line every few seconds.
use std::{
    io::{self, IsTerminal},
    time::Duration,
};

use crate::stats::Stats;

/// How often the progress line is refreshed on a terminal, and printed otherwise.
const TTY_EVERY: Duration = Duration::from_millis(500);
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Where the progress line goes.
#[derive(Debug)]
pub struct Progress {
    /// stderr is a terminal (and progress is on): redraw in place.
    tty: bool,
}

impl Progress {
    /// `enabled` is false under `--quiet`.
    pub fn new(enabled: bool) -> Self {
        Self {
            tty: enabled && io::stderr().is_terminal(),
        }
    }

    /// How often to call [`Self::show`].
    pub fn every(&self) -> Duration {
        if self.tty { TTY_EVERY } else { PLAIN_EVERY }
    }

    /// Shows the line for `stats` at `elapsed` into the run.
    pub fn show(&self, stats: &Stats, elapsed: Duration, target_rate: Option<f64>) {
        let line = render(stats, elapsed, target_rate);
        if self.tty {
            eprint!("\r\x1b[K{line}");
        } else {
            eprintln!("{line}");
        }
    }

    /// Clears the line on a terminal, at the end of the run.
    pub fn finish(&self) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
    }
}

/// `12.0s  rate 1250.0/1250 req/s  ok 99.6%  p50 1.2ms p99 8.4ms  tcp_reset:12 peer_eof:3`
fn render(stats: &Stats, elapsed: Duration, target_rate: Option<f64>) -> String {
    let live = stats.snapshot();
    let target = target_rate.map_or_else(String::new, |r| format!("/{r:.0}"));
    let ok = if live.requests == 0 {
        0.0
    } else {
        100.0 * live.successes as f64 / live.requests as f64
    };
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}ms"));
    let mut s = format!(
        "{:>6.1}s  {} req  rate {:.1}{target} req/s  ok {ok:.1}%  p50 {} p99 {}",
        elapsed.as_secs_f64(),
        live.requests,
        live.rate_per_sec,
        ms(live.p50_ms),
        ms(live.p99_ms),
    );
    for (class, n) in &live.top_classes {
        s.push_str(&format!("  {class}:{n}"));
    }
    s
}
