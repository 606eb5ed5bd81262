//! Pass/fail thresholds for CI: `--fail-under success=99%` and `--max-latency p95=500ms`.
//!
//! Latency thresholds apply to `latency_ms` (from the intended send time, over all requests
//! including failures), the number free of coordinated omission.
use std::{fmt, str::FromStr, time::Duration};

use crate::{
    report::format_ms,
    summary::{Latency, Summary},
};

/// A latency statistic a threshold can bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatencyMetric {
    P50,
    P90,
    P95,
    P99,
    Max,
    Mean,
}

impl LatencyMetric {
    pub const ALL: [LatencyMetric; 6] = [
        LatencyMetric::P50,
        LatencyMetric::P90,
        LatencyMetric::P95,
        LatencyMetric::P99,
        LatencyMetric::Max,
        LatencyMetric::Mean,
    ];

    /// The name on the command line (`p95`).
    pub fn as_str(self) -> &'static str {
        match self {
            LatencyMetric::P50 => "p50",
            LatencyMetric::P90 => "p90",
            LatencyMetric::P95 => "p95",
            LatencyMetric::P99 => "p99",
            LatencyMetric::Max => "max",
            LatencyMetric::Mean => "mean",
        }
    }

    /// This statistic of `latency`, in milliseconds.
    pub fn of(self, latency: &Latency) -> f64 {
        match self {
            LatencyMetric::P50 => latency.p50,
            LatencyMetric::P90 => latency.p90,
            LatencyMetric::P95 => latency.p95,
            LatencyMetric::P99 => latency.p99,
            LatencyMetric::Max => latency.max,
            LatencyMetric::Mean => latency.mean,
        }
    }
}

const SUCCESS_METRICS: &str = "success";
const LATENCY_METRICS: &str = "p50, p90, p95, p99, max, mean";
const ALL_METRICS: &str = "success, p50, p90, p95, p99, max, mean";

/// One threshold the run must meet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    /// `success=99%` (or `success=0.99`): the success ratio must be at least `ratio` (0 to 1).
    SuccessAtLeast { ratio: f64 },
    /// `p95=500ms`: the latency statistic must be at most `limit_ms`.
    LatencyAtMost {
        metric: LatencyMetric,
        limit_ms: f64,
    },
}

/// Why a threshold did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    #[error("expected METRIC=VALUE (like success=99% or p95=500ms), got '{0}'")]
    Syntax(String),
    #[error("unknown metric '{metric}', expected one of {expected}")]
    UnknownMetric {
        metric: String,
        expected: &'static str,
    },
    #[error("'{value}' is not a ratio: use a percentage like 99% or a fraction like 0.99")]
    Ratio { value: String },
    #[error("'{value}' is not a duration: use a unit, like 500ms, 1.5s, 250us or '1m 30s'")]
    Duration { value: String },
}

impl Threshold {
    /// Parses a `--fail-under` value: `success=99%` or `success=0.99`.
    pub fn parse_fail_under(s: &str) -> Result<Self, ThresholdError> {
        parse(s, true, false)
    }

    /// Parses a `--max-latency` value: `p95=500ms` (p50, p90, p95, p99, max, mean).
    pub fn parse_max_latency(s: &str) -> Result<Self, ThresholdError> {
        parse(s, false, true)
    }
}

impl FromStr for Threshold {
    type Err = ThresholdError;

    /// Either kind, told apart by the metric.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s, true, true)
    }
}

fn parse(s: &str, success: bool, latency: bool) -> Result<Threshold, ThresholdError> {
    let Some((metric, value)) = s.split_once('=') else {
        return Err(ThresholdError::Syntax(s.to_owned()));
    };
    let (metric, value) = (metric.trim(), value.trim());
    if metric.is_empty() || value.is_empty() {
        return Err(ThresholdError::Syntax(s.to_owned()));
    }
    let expected = match (success, latency) {
        (true, false) => SUCCESS_METRICS,
        (false, true) => LATENCY_METRICS,
        _ => ALL_METRICS,
    };
    let unknown = || ThresholdError::UnknownMetric {
        metric: metric.to_owned(),
        expected,
    };
    let name = metric.to_ascii_lowercase();
    if name == "success" {
        return if success {
            Ok(Threshold::SuccessAtLeast {
                ratio: parse_ratio(value)?,
            })
        } else {
            Err(unknown())
        };
    }
    let metric = LatencyMetric::ALL
        .into_iter()
        .find(|m| m.as_str() == name)
        .filter(|_| latency)
        .ok_or_else(unknown)?;
    Ok(Threshold::LatencyAtMost {
        metric,
        limit_ms: parse_ms(value)?,
    })
}

/// `99%` or `99.5%` (0..=100), or `0.99` (0..=1). A bare `99` is refused as ambiguous.
fn parse_ratio(value: &str) -> Result<f64, ThresholdError> {
    let bad = || ThresholdError::Ratio {
        value: value.to_owned(),
    };
    let (number, scale) = match value.strip_suffix('%') {
        Some(pct) => (pct.trim(), 100.0),
        None => (value, 1.0),
    };
    let n: f64 = number.parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 || n > scale {
        return Err(bad());
    }
    Ok(n / scale)
}

/// `500ms`, `1.5s`, `250us`/`250µs`, `100ns`, or anything humantime reads (`1m 30s`).
fn parse_ms(value: &str) -> Result<f64, ThresholdError> {
    // "ms" before "s", or "500ms" would read as "500m" seconds.
    const UNITS: [(&str, f64); 5] = [
        ("ms", 1.0),
        ("us", 1e-3),
        ("µs", 1e-3),
        ("ns", 1e-6),
        ("s", 1e3),
    ];
    for (suffix, to_ms) in UNITS {
        if let Some(n) = value
            .strip_suffix(suffix)
            .and_then(|n| n.trim().parse::<f64>().ok())
            && n.is_finite()
            && n >= 0.0
        {
            return Ok(n * to_ms);
        }
    }
    humantime::parse_duration(value)
        .map(|d: Duration| d.as_secs_f64() * 1e3)
        .map_err(|_| ThresholdError::Duration {
            value: value.to_owned(),
        })
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::SuccessAtLeast { ratio } => write!(f, "success={:.2}%", ratio * 100.0),
            Threshold::LatencyAtMost { metric, limit_ms } => {
                write!(f, "{}={}", metric.as_str(), format_ms(*limit_ms))
            }
        }
    }
}

/// A threshold the run did not meet.
#[derive(Clone, Debug, PartialEq)]
pub enum Violation {
    SuccessUnder {
        actual: f64,
        required: f64,
    },
    LatencyOver {
        metric: LatencyMetric,
        actual_ms: f64,
        limit_ms: f64,
    },
    /// The run made no requests: no threshold can be said to be met.
    NoRequests {
        threshold: Threshold,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::SuccessUnder { actual, required } => write!(
                f,
                "success ratio {:.2}% is under the required {:.2}%",
                actual * 100.0,
                required * 100.0
            ),
            Violation::LatencyOver {
                metric,
                actual_ms,
                limit_ms,
            } => write!(
                f,
                "{} latency {} exceeds {}",
                metric.as_str(),
                format_ms(*actual_ms),
                format_ms(*limit_ms)
            ),
            Violation::NoRequests { threshold } => {
                write!(f, "no requests were made, so {threshold} cannot be checked")
            }
        }
    }
}

/// The thresholds `s` violates, in the order given (empty: the run passes).
pub fn check(thresholds: &[Threshold], s: &Summary) -> Vec<Violation> {
    thresholds
        .iter()
        .filter_map(|t| match *t {
            _ if s.requests.total == 0 => Some(Violation::NoRequests { threshold: *t }),
            Threshold::SuccessAtLeast { ratio } => {
                (s.requests.success_ratio < ratio).then_some(Violation::SuccessUnder {
                    actual: s.requests.success_ratio,
                    required: ratio,
                })
            }
            Threshold::LatencyAtMost { metric, limit_ms } => {
                let actual_ms = metric.of(&s.latency_ms);
                (actual_ms > limit_ms).then_some(Violation::LatencyOver {
                    metric,
                    actual_ms,
                    limit_ms,
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{
        Stats,
        tests::{meta, ok, req},
    };

    fn parse_err(s: &str) -> String {
        s.parse::<Threshold>().expect_err(s).to_string()
    }

    #[test]
    fn parses_ratios_and_durations() {
        let success = |s: &str| match Threshold::parse_fail_under(s) {
            Ok(Threshold::SuccessAtLeast { ratio }) => ratio,
            other => panic!("{s}: {other:?}"),
        };
        assert!((success("success=99%") - 0.99).abs() < 1e-12);
        assert!((success("success=0.99") - 0.99).abs() < 1e-12);
        assert!((success("SUCCESS = 99.5 %") - 0.995).abs() < 1e-12);
        let limit = |s: &str| match Threshold::parse_max_latency(s) {
            Ok(Threshold::LatencyAtMost { limit_ms, .. }) => limit_ms,
            other => panic!("{s}: {other:?}"),
        };
        for (s, want) in [
            ("p95=500ms", 500.0),
            ("p99=1.5s", 1_500.0),
            ("p50=250us", 0.25),
            ("p50=250µs", 0.25),
            ("max=1m 30s", 90_000.0),
            ("mean=2s", 2_000.0),
        ] {
            assert!(
                (limit(s) - want).abs() < 1e-9,
                "{s}: {} != {want}",
                limit(s)
            );
        }
        let t: Threshold = "p90=20ms".parse().expect("FromStr takes either kind");
        assert_eq!(
            t,
            Threshold::LatencyAtMost {
                metric: LatencyMetric::P90,
                limit_ms: 20.0
            }
        );
        assert_eq!(t.to_string(), "p90=20ms");
    }

    #[test]
    fn parse_errors_are_clear() {
        assert_eq!(
            parse_err("p96=500ms"),
            "unknown metric 'p96', expected one of success, p50, p90, p95, p99, max, mean"
        );
        assert_eq!(
            Threshold::parse_max_latency("success=99%")
                .expect_err("wrong flag")
                .to_string(),
            "unknown metric 'success', expected one of p50, p90, p95, p99, max, mean"
        );
        assert_eq!(
            Threshold::parse_fail_under("p95=1s")
                .expect_err("wrong flag")
                .to_string(),
            "unknown metric 'p95', expected one of success"
        );
        assert!(
            parse_err("p95").starts_with("expected METRIC=VALUE"),
            "{}",
            parse_err("p95")
        );
        assert!(
            parse_err("=1").starts_with("expected METRIC=VALUE"),
            "{}",
            parse_err("=1")
        );
        for bad in [
            "success=99",
            "success=101%",
            "success=-1%",
            "success=NaN",
            "success=lots",
        ] {
            assert!(
                parse_err(bad).contains("is not a ratio"),
                "{bad}: {}",
                parse_err(bad)
            );
        }
        for bad in ["p95=500", "p95=fast", "p95=-5ms"] {
            assert!(
                parse_err(bad).contains("is not a duration"),
                "{bad}: {}",
                parse_err(bad)
            );
        }
    }

    #[test]
    fn violations_say_what_and_by_how_much() {
        // 1000 requests, 972 successes; latencies 1..=1000 ms.
        let mut s = Stats::new();
        for i in 1..=1_000u64 {
            let (ev, t) = if i <= 28 {
                req(i, i, 0, Some(events::model::Class::TcpReset), None, "reset")
            } else {
                ok(i, i)
            };
            s.record(&ev, t);
        }
        let summary = s.summary(meta());
        let thresholds: Vec<Threshold> = [
            "success=99%",
            "p95=500ms",
            "p50=600ms",
            "max=1s",
            "success=97%",
        ]
        .iter()
        .map(|t| t.parse().expect(t))
        .collect();
        let shown: Vec<String> = check(&thresholds, &summary)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            [
                "success ratio 97.20% is under the required 99.00%",
                "p95 latency 950.3ms exceeds 500ms"
            ],
            "p50 and max are within bounds, and 97.2% meets 97%"
        );
        let empty = Stats::new().summary(meta());
        let none = check(&thresholds[1..2], &empty);
        assert_eq!(none.len(), 1, "{none:?}");
        assert_eq!(
            none[0].to_string(),
            "no requests were made, so p95=500ms cannot be checked"
        );
        assert!(check(&[], &summary).is_empty());
    }
}
