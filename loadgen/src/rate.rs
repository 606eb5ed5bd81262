//! Arrival rates, ramps and the exact open-model schedule; think times and user groups
//! for the closed model.
//!
//! The schedule sends request `n` (0-based) at the time `t` where the integral of the
//! rate from 0 to `t` equals `n`, computed from `n` in closed form rather than by adding
//! intervals, so that long runs do not drift.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::targets::UrlError;

/// Everything that can be wrong with a rate, stage list, think time or user group.
#[derive(Debug, thiserror::Error)]
pub enum RateError {
    #[error(
        "invalid rate `{input}`, expected requests per second (`1250`) or per period \
         (`100/1s`, `6000/1m`, `5/100ms`)"
    )]
    InvalidRate { input: String },
    #[error("negative rate `{input}`, expected 0 or more requests")]
    NegativeRate { input: String },
    #[error("rate `{input}` is too large, expected a finite number of requests per second")]
    RateTooLarge { input: String },
    #[error("missing period after `/` in `{input}`, expected e.g. `{}/1s`", .input.trim_end_matches('/'))]
    MissingPeriod { input: String },
    #[error(
        "invalid period `{period}` in `{input}` ({reason}), expected a duration such as \
         `1s`, `1m` or `100ms`"
    )]
    InvalidPeriod {
        input: String,
        period: String,
        reason: String,
    },
    #[error("zero period in `{input}`, expected a period longer than 0")]
    ZeroPeriod { input: String },
    #[error("no stages, expected `DURATION:RATE[,DURATION:RATE...]` such as `30s:100,2m:1250`")]
    NoStages,
    #[error("stage {number} is empty, expected `DURATION:RATE` such as `30s:100`")]
    EmptyStage { number: usize },
    #[error("stage {number} `{stage}` has no `:`, expected `DURATION:RATE` such as `30s:100`")]
    StageWithoutColon { number: usize, stage: String },
    #[error("stage {number} `{stage}` has no duration, expected `DURATION:RATE` such as `30s:100`")]
    MissingStageDuration { number: usize, stage: String },
    #[error(
        "stage {number} `{stage}` has an invalid duration ({reason}), expected a duration \
         such as `30s` or `2m`"
    )]
    InvalidStageDuration {
        number: usize,
        stage: String,
        reason: String,
    },
    #[error("stage {number} `{stage}` has no rate, expected `DURATION:RATE` such as `30s:100`")]
    MissingStageRate { number: usize, stage: String },
    #[error("stage {number} `{stage}`: {error}")]
    InvalidStageRate {
        number: usize,
        stage: String,
        error: Box<RateError>,
    },
    #[error("invalid think time `{input}` ({reason}), expected `2s` or a range such as `4s..10s`")]
    InvalidThinkTime { input: String, reason: String },
    #[error(
        "think time `{input}` has its minimum above its maximum, expected `MIN..MAX` with MIN <= MAX"
    )]
    ThinkTimeRange { input: String },
    #[error(
        "invalid group name `{name}`, expected letters, digits, `-`, `_` or `.` \
         before the first `:`"
    )]
    GroupName { name: String },
    #[error(
        "part `{part}` of group `{group}` is not `key=value`, expected users=N, think=DURATION, \
         url=URL or ramp=DURATION"
    )]
    GroupPart { group: String, part: String },
    #[error("unknown key `{key}` in group `{group}`, expected users, think, url or ramp")]
    GroupUnknownKey { group: String, key: String },
    #[error("`{key}` given twice in group `{group}`, expected each key at most once")]
    GroupDuplicateKey { group: String, key: String },
    #[error("invalid `{part}` in group `{group}` ({reason}), expected {expected}")]
    GroupValue {
        group: String,
        part: String,
        reason: String,
        expected: &'static str,
    },
    #[error("invalid `url=` in group `{group}`: {error}")]
    GroupUrl { group: String, error: UrlError },
    #[error("group `{group}` has no `users=N`, expected e.g. `{group}:users=250:think=0s`")]
    GroupMissingUsers { group: String },
    #[error("{}:{line}: {error}", .file.display())]
    Scenario {
        file: PathBuf,
        line: usize,
        error: Box<RateError>,
    },
    #[error("{}:{line}: group `{name}` already defined on line {first_line}, expected unique names", .file.display())]
    DuplicateGroup {
        file: PathBuf,
        line: usize,
        name: String,
        first_line: usize,
    },
    #[error("{}: no user groups, expected one group per line such as `active:users=250:think=0s`", .file.display())]
    NoGroups { file: PathBuf },
    #[error("{}: cannot read the scenario file: {source}", .file.display())]
    ReadScenario {
        file: PathBuf,
        source: std::io::Error,
    },
}

/// A request rate; `0` means no requests (a pause).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    per_sec: f64,
}

impl Rate {
    /// Requests per second (finite, never negative).
    pub fn per_sec(&self) -> f64 {
        self.per_sec
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", self.per_sec)
    }
}

impl FromStr for Rate {
    type Err = RateError;

    /// `1250` (per second), `100/1s`, `6000/1m`, `5/100ms`; `50/s` means `50/1s`, as in
    /// vegeta's `-rate`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let input = s.trim();
        let (count, period) = match input.split_once('/') {
            Some((count, period)) => (count.trim(), Some(period.trim())),
            None => (input, None),
        };
        let count = parse_count(count, input)?;
        let per_sec = match period {
            None => count,
            Some("") => {
                return Err(RateError::MissingPeriod {
                    input: input.into(),
                });
            }
            Some(period) => {
                let explicit;
                let with_count = if period.starts_with(|c: char| c.is_ascii_digit()) {
                    period
                } else {
                    explicit = format!("1{period}");
                    &explicit
                };
                let length =
                    parse_duration(with_count).map_err(|reason| RateError::InvalidPeriod {
                        input: input.into(),
                        period: period.into(),
                        reason,
                    })?;
                if length.is_zero() {
                    return Err(RateError::ZeroPeriod {
                        input: input.into(),
                    });
                }
                count / length.as_secs_f64()
            }
        };
        if !per_sec.is_finite() {
            return Err(RateError::RateTooLarge {
                input: input.into(),
            });
        }
        Ok(Self { per_sec })
    }
}

/// A plain decimal count: no sign, exponent, `inf` or `NaN` (which `f64::from_str` takes).
fn parse_count(count: &str, input: &str) -> Result<f64, RateError> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && s.bytes().any(|b| b.is_ascii_digit())
    };
    if let Some(rest) = count.strip_prefix('-')
        && plain(rest)
    {
        return Err(RateError::NegativeRate {
            input: input.into(),
        });
    }
    if !plain(count) {
        return Err(RateError::InvalidRate {
            input: input.into(),
        });
    }
    let value: f64 = count.parse().map_err(|_| RateError::InvalidRate {
        input: input.into(),
    })?;
    if !value.is_finite() {
        return Err(RateError::RateTooLarge {
            input: input.into(),
        });
    }
    Ok(value)
}

/// humantime's syntax (`30s`, `2m`, `1h30m`, `1.5s`), plus a bare `0`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text).map_err(|err| err.to_string())
}

/// One k6 stage: ramp linearly from the previous rate to `target_per_sec` over `duration`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub target_per_sec: f64,
}

/// Parses `30s:100,2m:1250,30s:0`; each rate takes [`Rate`]'s syntax (`2m:6000/1m`).
pub fn parse_stages(s: &str) -> Result<Vec<Stage>, RateError> {
    if s.trim().is_empty() {
        return Err(RateError::NoStages);
    }
    s.split(',')
        .enumerate()
        .map(|(index, stage)| parse_stage(index + 1, stage.trim()))
        .collect()
}

fn parse_stage(number: usize, stage: &str) -> Result<Stage, RateError> {
    if stage.is_empty() {
        return Err(RateError::EmptyStage { number });
    }
    let Some((duration, rate)) = stage.split_once(':') else {
        let stage = stage.into();
        return Err(RateError::StageWithoutColon { number, stage });
    };
    let duration = duration.trim();
    if duration.is_empty() {
        let stage = stage.into();
        return Err(RateError::MissingStageDuration { number, stage });
    }
    let duration = parse_duration(duration).map_err(|reason| RateError::InvalidStageDuration {
        number,
        stage: stage.into(),
        reason,
    })?;
    if rate.trim().is_empty() {
        let stage = stage.into();
        return Err(RateError::MissingStageRate { number, stage });
    }
    let rate: Rate = rate.parse().map_err(|error| RateError::InvalidStageRate {
        number,
        stage: stage.into(),
        error: Box::new(error),
    })?;
    Ok(Stage {
        duration,
        target_per_sec: rate.per_sec(),
    })
}

/// A stretch of the schedule over which the rate changes linearly.
#[derive(Clone, Copy, Debug)]
struct Segment {
    start: Duration,
    /// `f64::INFINITY` for a constant rate that runs until stopped.
    length_ns: f64,
    start_per_sec: f64,
    /// Change of the rate per second, per second.
    slope_per_sec2: f64,
    /// Requests due before the segment starts (the integral of the rate up to `start`).
    area_before: f64,
    area: f64,
}

/// The open-model arrival schedule: when each request is due, from the start of the run.
#[derive(Clone, Debug)]
pub struct Schedule {
    segments: Vec<Segment>,
    /// `None`: unbounded (a constant positive rate without a duration).
    total_requests: Option<u64>,
    total_duration: Option<Duration>,
    next_index: u64,
    segment: usize,
    last_offset: Duration,
}

/// Negative, NaN or infinite rates from callers are treated as 0 (no requests).
fn sane(per_sec: f64) -> f64 {
    if per_sec.is_finite() && per_sec > 0.0 {
        per_sec
    } else {
        0.0
    }
}

/// Requests that fit in `area`: request `n` is sent only if its whole unit of area fits
/// (`n + 1 <= area`), so the count is `floor(area)`. The tolerance absorbs rounding in
/// sums such as 0.1 s * 50/s that should be whole.
fn whole_requests(area: f64) -> u64 {
    (area * (1.0 + 1e-12) + 1e-9).floor() as u64
}

impl Schedule {
    /// A constant rate for `duration`, or until stopped when `None`.
    pub fn constant(rate: Rate, duration: Option<Duration>) -> Self {
        let per_sec = sane(rate.per_sec());
        let length_ns = duration.map_or(f64::INFINITY, |d| d.as_nanos() as f64);
        let area = if per_sec == 0.0 {
            0.0
        } else {
            per_sec * length_ns / 1e9
        };
        let segment = Segment {
            start: Duration::ZERO,
            length_ns,
            start_per_sec: per_sec,
            slope_per_sec2: 0.0,
            area_before: 0.0,
            area,
        };
        let total_requests = if area.is_infinite() {
            None
        } else {
            Some(whole_requests(area))
        };
        Self::from_segments(vec![segment], total_requests, duration)
    }

    /// k6-style stages: linear ramps starting from `start_per_sec`.
    pub fn stages(start_per_sec: f64, stages: Vec<Stage>) -> Self {
        let mut segments = Vec::with_capacity(stages.len());
        let mut previous_per_sec = sane(start_per_sec);
        let mut start = Duration::ZERO;
        let mut area_before = 0.0;
        for stage in stages {
            let target_per_sec = sane(stage.target_per_sec);
            // A zero-length stage is a step: the rate jumps to its target.
            if !stage.duration.is_zero() {
                let length_secs = stage.duration.as_secs_f64();
                let area = (previous_per_sec + target_per_sec) / 2.0 * length_secs;
                segments.push(Segment {
                    start,
                    length_ns: stage.duration.as_nanos() as f64,
                    start_per_sec: previous_per_sec,
                    slope_per_sec2: (target_per_sec - previous_per_sec) / length_secs,
                    area_before,
                    area,
                });
                area_before += area;
                start = start.saturating_add(stage.duration);
            }
            previous_per_sec = target_per_sec;
        }
        Self::from_segments(segments, Some(whole_requests(area_before)), Some(start))
    }

    fn from_segments(
        segments: Vec<Segment>,
        total_requests: Option<u64>,
        total_duration: Option<Duration>,
    ) -> Self {
        Self {
            segments,
            total_requests,
            total_duration,
            next_index: 0,
            segment: 0,
            last_offset: Duration::ZERO,
        }
    }

    /// How long the schedule runs; `None` for a constant rate until stopped.
    pub fn total_duration(&self) -> Option<Duration> {
        self.total_duration
    }

    /// How many requests the schedule sends in all; `None` when unbounded.
    pub fn expected_requests(&self) -> Option<u64> {
        self.total_requests
    }
}

/// Iterating yields each request's intended send time, as an offset from the start of
/// the run, and ends with the schedule.
impl Iterator for Schedule {
    type Item = Duration;

    /// The intended send time of the next request, as an offset from the start of the
    /// run; `None` once the schedule is over.
    fn next(&mut self) -> Option<Duration> {
        if self
            .total_requests
            .is_some_and(|total| self.next_index >= total)
        {
            return None;
        }
        let n = self.next_index as f64;
        // Skip segments already used up, and 0-rate stretches (zero area): request `n`
        // is due at the last moment its area is not yet exceeded, so nothing is sent
        // during a pause.
        while self
            .segments
            .get(self.segment)
            .is_some_and(|s| n >= s.area_before + s.area)
        {
            self.segment += 1;
        }
        let segment = self.segments.get(self.segment)?;
        let offset = segment.start + Duration::from_nanos(segment_offset_ns(segment, n));
        // Rounding to whole nanoseconds must never reorder requests.
        let offset = offset.max(self.last_offset);
        self.last_offset = offset;
        self.next_index += 1;
        Some(offset)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.total_requests {
            Some(total) => {
                let left = usize::try_from(total - self.next_index).unwrap_or(usize::MAX);
                (left, Some(left))
            }
            None => (usize::MAX, None),
        }
    }
}

impl std::iter::FusedIterator for Schedule {}

/// Nanoseconds into `segment` at which the integral of the rate reaches `n`.
fn segment_offset_ns(segment: &Segment, n: f64) -> u64 {
    let x = (n - segment.area_before).max(0.0);
    let r0 = segment.start_per_sec;
    let a = segment.slope_per_sec2;
    let tau_ns = if x == 0.0 {
        0.0
    } else if a == 0.0 {
        // One division from `n` (not a running sum), so 1250/s gives exactly n * 800 us.
        x * 1e9 / r0
    } else {
        // x = r0 t + a t^2 / 2, solved as t = 2x / (r0 + sqrt(r0^2 + 2 a x)): this form
        // has no cancellation when r0 is large and stays defined for r0 = 0 and a < 0
        // (r0^2 + 2 a x >= r1^2 >= 0 inside the segment; clamp rounding below 0).
        let root = (r0 * r0 + 2.0 * a * x).max(0.0).sqrt();
        2.0 * x * 1e9 / (r0 + root)
    };
    tau_ns.clamp(0.0, segment.length_ns).round() as u64
}

#[cfg(test)]
mod tests;
mod users;

#[cfg(test)]
pub use users::load_scenario;
pub use users::{ThinkTime, UserGroup, parse_scenario};
