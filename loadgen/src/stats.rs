//! Run statistics, owned by one consumer that the workers send their results to.
//!
//! Memory stays flat however long the run (the reference case is 33 minutes at 1,250
//! requests/s): the whole-run histograms have a fixed size, error texts are bounded per
//! class, and the per-second series keeps a small histogram only for an open window of the
//! [`WINDOW_S`](series::WINDOW_S) most recent intended seconds. Older seconds are
//! finalized into plain numbers (a few dozen bytes each).
//!
//! Approximation: an event whose second was already finalized (it completed more than
//! [`WINDOW_S`](series::WINDOW_S) seconds after a newer second was seen) still counts in
//! the totals and in that second's request/success/failure counts, but not in that
//! second's p50/p99. The window is longer than any sane request timeout, so in a live run
//! this only happens to a request stuck for over a minute. When two finalized seconds are
//! merged (runs split across hosts), the merged p50 is the request-weighted mean of the
//! two and the p99 the larger one.
use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap},
    time::Instant,
};

use events::time::rfc3339_ns;
use hdrhistogram::Histogram;

use crate::summary::{
    Bytes, ClassSummary, Connections, ErrorCount, Lag, Latency, Overload, Rate, Requests, Summary,
};
use events::model::{Class, CloseHow, ConnEvent, ConnStep, Phase, RequestEvent, SCHEMA_VERSION};

/// Distinct error texts kept per class.
pub const MAX_ERROR_TEXTS: usize = 20;
/// The error text under which texts past [`MAX_ERROR_TEXTS`] are counted.
pub const OTHER_MESSAGES: &str = "(other messages)";
/// A sent request is late when its lag exceeds this. Tokio's timer wheel has a 1 ms
/// resolution, so a lag below it is timer granularity, not the generator falling behind.
pub const LATE_LAG_NS: u64 = 1_000_000;
/// Error texts are cut to this length: GOAWAY debug data can be long, and memory is bounded.
const MAX_ERROR_TEXT_BYTES: usize = 240;
/// Seconds the progress line's percentiles cover.
const RECENT_S: u64 = 5;
const NS_PER_S: u64 = 1_000_000_000;

mod hist;
mod series;
#[cfg(test)]
pub(crate) mod tests;

use hist::{histogram, us_to_ms};
use series::Series;
pub use series::SeriesSize;
#[cfg(test)]
pub use series::WINDOW_S;

fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1_000_000.0
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// The class a request counts under, `None` for a success.
///
/// Success is a 2xx/3xx response with no error and no class. An event that is neither a
/// success nor classified is a bug upstream: it is counted (as `http_status` for a bare
/// status >= 400, else `other`), never dropped.
pub fn failure_class(ev: &RequestEvent) -> Option<Class> {
    if let Some(class) = ev.class {
        return Some(class);
    }
    if ev.error.is_empty() && (200..400).contains(&ev.code) {
        return None;
    }
    Some(if ev.error.is_empty() && ev.code >= 400 {
        Class::HttpStatus
    } else {
        Class::Other
    })
}

/// Metadata the statistics cannot know: given by the caller to [`Stats::summary`].
#[derive(Clone, Debug, PartialEq)]
pub struct RunMeta {
    pub attack: String,
    pub config: serde_json::Value,
    pub started_unix_ns: u64,
    pub wall_ns: u64,
    pub target_rate_per_sec: Option<f64>,
    pub interrupted: bool,
}

/// Cheap numbers for the progress line.
#[derive(Clone, Debug, PartialEq)]
pub struct Live {
    pub requests: u64,
    pub successes: u64,
    pub failures: u64,
    /// Requests completed during the last whole wall-clock second.
    pub rate_per_sec: f64,
    /// Latency percentiles over the last few intended seconds (2 significant figures).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The most frequent failure classes, at most 3, most frequent first.
    pub top_classes: Vec<(Class, u64)>,
}

/// One measure over the whole run: exact count, sum, min and max, and a histogram in us.
#[derive(Clone, Debug)]
struct Tally {
    count: u64,
    sum_ns: u128,
    min_ns: u64,
    max_ns: u64,
    hist_us: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            count: 0,
            sum_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            hist_us: histogram(3),
        }
    }

    fn record(&mut self, ns: u64) {
        self.count += 1;
        self.sum_ns += u128::from(ns);
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
        self.hist_us.saturating_record(ns / 1_000);
    }

    fn merge(&mut self, other: &Tally) {
        self.count += other.count;
        self.sum_ns += other.sum_ns;
        self.min_ns = self.min_ns.min(other.min_ns);
        self.max_ns = self.max_ns.max(other.max_ns);
        self.hist_us
            .add(&other.hist_us)
            .expect("histograms with the same bounds add");
    }

    /// A percentile, kept within the exact min and max: the histogram answers with the top
    /// of a bucket, which can lie past the largest value really seen.
    fn quantile_ms(&self, q: f64) -> f64 {
        let ms = us_to_ms(self.hist_us.value_at_quantile(q));
        ms.clamp(ns_to_ms(self.min_ns), ns_to_ms(self.max_ns))
    }

    fn latency(&self) -> Latency {
        if self.count == 0 {
            return Latency::default();
        }
        Latency {
            count: self.count,
            min: ns_to_ms(self.min_ns),
            mean: (self.sum_ns / u128::from(self.count)) as f64 / 1_000_000.0,
            p50: self.quantile_ms(0.50),
            p90: self.quantile_ms(0.90),
            p95: self.quantile_ms(0.95),
            p99: self.quantile_ms(0.99),
            max: ns_to_ms(self.max_ns),
        }
    }

    fn lag(&self) -> Lag {
        if self.count == 0 {
            return Lag::default();
        }
        Lag {
            p50: self.quantile_ms(0.50),
            p99: self.quantile_ms(0.99),
            max: ns_to_ms(self.max_ns),
        }
    }
}

/// One failure class: phases and a bounded set of error texts.
#[derive(Clone, Debug, Default)]
struct ClassTally {
    count: u64,
    phases: BTreeMap<Option<Phase>, u64>,
    errors: Vec<(String, u64)>,
    other_messages: u64,
}

/// Cuts `text` to [`MAX_ERROR_TEXT_BYTES`] on a character boundary.
fn bounded(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_ERROR_TEXT_BYTES {
        return Cow::Borrowed(text);
    }
    let mut end = MAX_ERROR_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &text[..end]))
}

impl ClassTally {
    fn add_error(&mut self, text: &str, n: u64) {
        let text = bounded(text);
        if let Some(entry) = self.errors.iter_mut().find(|(t, _)| *t == text) {
            entry.1 += n;
        } else if self.errors.len() < MAX_ERROR_TEXTS {
            self.errors.push((text.into_owned(), n));
        } else {
            self.other_messages += n;
        }
    }

    fn merge(&mut self, other: &ClassTally) {
        self.count += other.count;
        for (phase, n) in &other.phases {
            *self.phases.entry(*phase).or_default() += n;
        }
        for (text, n) in &other.errors {
            self.add_error(text, *n);
        }
        self.other_messages += other.other_messages;
    }

    fn summary(&self, class: Class, failed: u64, total: u64) -> ClassSummary {
        let phases = self
            .phases
            .iter()
            .map(|(p, n)| (p.map_or("unspecified", Phase::as_str).to_owned(), *n))
            .collect();
        let mut errors: Vec<ErrorCount> = self
            .errors
            .iter()
            .map(|(text, count)| ErrorCount {
                text: text.clone(),
                count: *count,
            })
            .collect();
        errors.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.text.cmp(&b.text)));
        if self.other_messages > 0 {
            errors.push(ErrorCount {
                text: OTHER_MESSAGES.to_owned(),
                count: self.other_messages,
            });
        }
        ClassSummary {
            class,
            count: self.count,
            share_of_failures: ratio(self.count, failed),
            share_of_requests: ratio(self.count, total),
            phases,
            errors,
        }
    }
}

/// Connection lifecycle counts.
#[derive(Clone, Debug, Default)]
struct ConnTally {
    opened: u64,
    failed: u64,
    tls_failed: u64,
    closed: HashMap<CloseHow, u64>,
}

fn close_how_name(how: CloseHow) -> String {
    // The JSON name, from the one place it is defined (serde on the model).
    serde_json::to_value(how)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{how:?}"))
}

/// The statistics of a run (or of several merged).
#[derive(Clone, Debug)]
pub struct Stats {
    total: u64,
    success: u64,
    retries: u64,
    late: u64,
    skipped: u64,
    bytes_in: u64,
    bytes_out: u64,
    latency: Tally,
    service: Tally,
    lag: Tally,
    status: BTreeMap<u16, u64>,
    classes: BTreeMap<Class, ClassTally>,
    conns: ConnTally,
    first_intended_ns: Option<u64>,
    last_intended_ns: u64,
    last_end_ns: u64,
    series: Series,
    /// Wall clock for the progress line's rate: completions per wall second, in two slots
    /// (this second and the last) tagged with their second.
    clock: Instant,
    recent: [(u64, u64); 2],
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        Self {
            total: 0,
            success: 0,
            retries: 0,
            late: 0,
            skipped: 0,
            bytes_in: 0,
            bytes_out: 0,
            latency: Tally::new(),
            service: Tally::new(),
            lag: Tally::new(),
            status: BTreeMap::new(),
            classes: BTreeMap::new(),
            conns: ConnTally::default(),
            first_intended_ns: None,
            last_intended_ns: 0,
            last_end_ns: 0,
            series: Series::default(),
            clock: Instant::now(),
            recent: [(0, 0); 2],
        }
    }

    /// Records one request. `intended_unix_ns` is its intended send time (the live path
    /// has it as a number; the offline path parses `RequestEvent::timestamp`).
    pub fn record(&mut self, ev: &RequestEvent, intended_unix_ns: u64) {
        let class = failure_class(ev);
        self.total += 1;
        self.retries += u64::from(ev.retry_of.is_some());
        self.bytes_in += ev.bytes_in;
        self.bytes_out += ev.bytes_out;
        *self.status.entry(ev.code).or_default() += 1;
        self.latency.record(ev.latency);
        if let Some(service_ns) = ev.service_latency {
            self.service.record(service_ns);
        }
        self.lag.record(ev.lag);
        match class {
            None => self.success += 1,
            Some(class) => {
                let tally = self.classes.entry(class).or_default();
                tally.count += 1;
                *tally.phases.entry(ev.phase).or_default() += 1;
                if ev.error.is_empty() {
                    let text = if ev.code != 0 {
                        format!("status {}", ev.code)
                    } else {
                        "(no error text)".to_owned()
                    };
                    tally.add_error(&text, 1);
                } else {
                    tally.add_error(&ev.error, 1);
                }
            }
        }
        if class == Some(Class::ClientOverload) {
            self.skipped += 1;
        } else if ev.lag > LATE_LAG_NS {
            self.late += 1;
        }
        self.first_intended_ns = Some(
            self.first_intended_ns
                .map_or(intended_unix_ns, |f| f.min(intended_unix_ns)),
        );
        self.last_intended_ns = self.last_intended_ns.max(intended_unix_ns);
        self.last_end_ns = self
            .last_end_ns
            .max(intended_unix_ns.saturating_add(ev.latency));
        self.series.record(
            intended_unix_ns / NS_PER_S,
            ev.latency / 1_000,
            class.is_none(),
        );
        self.note_completion();
    }

    fn note_completion(&mut self) {
        let now_s = self.clock.elapsed().as_secs();
        let slot = &mut self.recent[(now_s % 2) as usize];
        if slot.0 != now_s {
            *slot = (now_s, 0);
        }
        slot.1 += 1;
    }

    /// Records one connection lifecycle step.
    pub fn record_conn(&mut self, ev: &ConnEvent) {
        match &ev.step {
            ConnStep::Opened { .. } => self.conns.opened += 1,
            ConnStep::Tls { tls, .. } if tls.error.is_some() => self.conns.tls_failed += 1,
            ConnStep::Closed { how, .. } => {
                *self.conns.closed.entry(*how).or_default() += 1;
                self.conns.failed += u64::from(*how == CloseHow::Failed);
            }
            ConnStep::Tls { .. } | ConnStep::Ready { .. } | ConnStep::Frame { .. } => {}
        }
    }

    /// Adds `other` (e.g. the same run's events from another host) into these statistics.
    pub fn merge(&mut self, other: &Stats) {
        self.total += other.total;
        self.success += other.success;
        self.retries += other.retries;
        self.late += other.late;
        self.skipped += other.skipped;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.latency.merge(&other.latency);
        self.service.merge(&other.service);
        self.lag.merge(&other.lag);
        for (code, n) in &other.status {
            *self.status.entry(*code).or_default() += n;
        }
        for (class, tally) in &other.classes {
            self.classes.entry(*class).or_default().merge(tally);
        }
        self.conns.opened += other.conns.opened;
        self.conns.failed += other.conns.failed;
        self.conns.tls_failed += other.conns.tls_failed;
        for (how, n) in &other.conns.closed {
            *self.conns.closed.entry(*how).or_default() += n;
        }
        self.first_intended_ns = match (self.first_intended_ns, other.first_intended_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_intended_ns = self.last_intended_ns.max(other.last_intended_ns);
        self.last_end_ns = self.last_end_ns.max(other.last_end_ns);
        self.series.merge(&other.series);
    }

    /// Requests recorded so far.
    pub fn requests(&self) -> u64 {
        self.total
    }

    /// Earliest intended send time seen, unix ns.
    pub fn first_intended_unix_ns(&self) -> Option<u64> {
        self.first_intended_ns
    }

    /// From the earliest intended send time to the end of the last response, ns.
    pub fn span_ns(&self) -> u64 {
        self.first_intended_ns
            .map_or(0, |first| self.last_end_ns.saturating_sub(first))
    }

    /// What the per-second series holds (memory is flat: see the module comment).
    pub fn series_size(&self) -> SeriesSize {
        self.series.size()
    }

    /// Numbers for the progress line.
    pub fn snapshot(&self) -> Live {
        let elapsed = self.clock.elapsed();
        let now_s = elapsed.as_secs();
        let rate_per_sec = match now_s.checked_sub(1) {
            Some(last) => {
                let slot = self.recent[(last % 2) as usize];
                if slot.0 == last { slot.1 as f64 } else { 0.0 }
            }
            // Within the first second: what completed so far, scaled.
            None => self.recent[0].1 as f64 / elapsed.as_secs_f64().max(1e-3),
        };
        let (p50_ms, p99_ms) = self.series.recent_percentiles_ms(RECENT_S);
        let mut top_classes: Vec<(Class, u64)> =
            self.classes.iter().map(|(c, t)| (*c, t.count)).collect();
        top_classes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top_classes.truncate(3);
        Live {
            requests: self.total,
            successes: self.success,
            failures: self.total - self.success,
            rate_per_sec,
            p50_ms,
            p99_ms,
            top_classes,
        }
    }

    /// The run's summary: the `--output` JSON and the source of the text report.
    pub fn summary(&self, meta: RunMeta) -> Summary {
        let failed = self.total - self.success;
        let first_ns = self.first_intended_ns.unwrap_or(meta.started_unix_ns);
        let attack_s = self.last_intended_ns.saturating_sub(first_ns) as f64 / NS_PER_S as f64;
        let wait_s =
            self.last_end_ns.saturating_sub(self.last_intended_ns) as f64 / NS_PER_S as f64;
        let duration_s = meta.wall_ns as f64 / NS_PER_S as f64;
        let mut classes: Vec<ClassSummary> = self
            .classes
            .iter()
            .map(|(c, t)| t.summary(*c, failed, self.total))
            .collect();
        classes.sort_by(|a, b| b.count.cmp(&a.count).then(a.class.cmp(&b.class)));
        let base_s = self
            .series
            .first()
            .map_or(meta.started_unix_ns / NS_PER_S, |first| {
                first.min(meta.started_unix_ns / NS_PER_S)
            });
        Summary {
            schema_version: SCHEMA_VERSION,
            attack: meta.attack,
            config: meta.config,
            started: rfc3339_ns(meta.started_unix_ns),
            duration_s,
            attack_s,
            wait_s,
            interrupted: meta.interrupted,
            requests: Requests {
                total: self.total,
                success: self.success,
                failed,
                success_ratio: ratio(self.success, self.total),
                retries: self.retries,
            },
            rate: Rate {
                target_per_sec: meta.target_rate_per_sec,
                achieved_per_sec: if attack_s > 0.0 {
                    self.total as f64 / attack_s
                } else {
                    0.0
                },
                throughput_per_sec: if duration_s > 0.0 {
                    self.success as f64 / duration_s
                } else {
                    0.0
                },
            },
            latency_ms: self.latency.latency(),
            service_latency_ms: self.service.latency(),
            lag_ms: self.lag.lag(),
            overload: Overload {
                late_threshold_ms: ns_to_ms(LATE_LAG_NS),
                late: self.late,
                skipped: self.skipped,
            },
            bytes: Bytes {
                in_total: self.bytes_in,
                out_total: self.bytes_out,
                in_mean: ratio(self.bytes_in, self.total),
                out_mean: ratio(self.bytes_out, self.total),
            },
            status_codes: self
                .status
                .iter()
                .map(|(code, n)| (code.to_string(), *n))
                .collect(),
            classes,
            connections: Connections {
                opened: self.conns.opened,
                failed: self.conns.failed,
                tls_failed: self.conns.tls_failed,
                closed: self
                    .conns
                    .closed
                    .iter()
                    .map(|(how, n)| (close_how_name(*how), *n))
                    .collect(),
            },
            per_second: self.series.rows(base_s),
        }
    }
}
