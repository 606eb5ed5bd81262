//! The run summary: the `--output FILE` JSON, described by `schema/summary.schema.json`.
//!
//! Field names are a contract: a change here is a change of that schema (and of
//! [`events::model::SCHEMA_VERSION`] when it is not purely additive).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use events::model::Class;

/// Everything `loadgen` knows about a run, built by [`crate::stats::Stats::summary`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// [`events::model::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The attack (run) name.
    pub attack: String,
    /// The configuration the run was started with, as the caller gave it.
    pub config: serde_json::Value,
    /// When the run started, RFC 3339 in UTC.
    pub started: String,
    /// Wall-clock duration of the run.
    pub duration_s: f64,
    /// From the first to the last intended send time (vegeta's "attack" duration).
    pub attack_s: f64,
    /// From the last intended send time to the end of the last response (vegeta's "wait").
    pub wait_s: f64,
    /// The run was stopped early (signal, or an events file that ended mid-line).
    pub interrupted: bool,
    pub requests: Requests,
    pub rate: Rate,
    /// From the intended send time to the end of the response: free of coordinated omission.
    pub latency_ms: Latency,
    /// From the actual write of the request to the end: what the server took.
    pub service_latency_ms: Latency,
    /// Intended versus actual send time: how far the generator fell behind its schedule.
    pub lag_ms: Lag,
    pub overload: Overload,
    pub bytes: Bytes,
    /// Responses by HTTP status; `"0"` counts requests that got no response.
    pub status_codes: BTreeMap<String, u64>,
    /// Failure classes, most frequent first.
    pub classes: Vec<ClassSummary>,
    pub connections: Connections,
    /// One row per intended second, from the first to the last (gaps filled with zeros).
    pub per_second: Vec<Second>,
}

/// Request counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Requests {
    pub total: u64,
    /// Responses with a 2xx/3xx status and no error.
    pub success: u64,
    /// Everything else; each one is in exactly one of `classes`.
    pub failed: u64,
    /// `success / total`, 0 to 1 (0 when there were no requests).
    pub success_ratio: f64,
    /// Requests that were retries of an earlier one (`retry_of`); included in `total`.
    pub retries: u64,
}

/// Rates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// The rate asked for (open model), absent for a closed model.
    pub target_per_sec: Option<f64>,
    /// Requests over the span of intended send times, as vegeta computes its rate.
    pub achieved_per_sec: f64,
    /// Successes over the wall-clock duration.
    pub throughput_per_sec: f64,
}

/// A latency distribution, in milliseconds. All zero when `count` is 0.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Requests that carried this measure.
    pub count: u64,
    /// Exact.
    pub min: f64,
    /// Exact.
    pub mean: f64,
    /// Percentiles from an HDR histogram with 3 significant figures (within 0.1%).
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    /// Exact.
    pub max: f64,
}

/// Schedule lag, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Lag {
    pub p50: f64,
    pub p99: f64,
    /// Exact.
    pub max: f64,
}

/// How much the generator itself fell behind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Overload {
    /// Lag above which a sent request counts as `late`.
    pub late_threshold_ms: f64,
    /// Requests sent, but more than `late_threshold_ms` after their intended time.
    pub late: u64,
    /// Requests never sent because the generator could not keep up (`client_overload`).
    pub skipped: u64,
}

/// Bytes moved; means are per request, over all requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bytes {
    pub in_total: u64,
    pub out_total: u64,
    pub in_mean: f64,
    pub out_mean: f64,
}

/// One failure class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassSummary {
    pub class: Class,
    pub count: u64,
    /// `count / requests.failed`, 0 to 1.
    pub share_of_failures: f64,
    /// `count / requests.total`, 0 to 1.
    pub share_of_requests: f64,
    /// Counts by phase name; `"unspecified"` when the event carried no phase.
    pub phases: BTreeMap<String, u64>,
    /// Distinct error texts, most frequent first. At most
    /// [`crate::stats::MAX_ERROR_TEXTS`] texts are kept per class; later new texts are
    /// counted under [`crate::stats::OTHER_MESSAGES`], which always comes last.
    pub errors: Vec<ErrorCount>,
}

/// An error text and how often it occurred.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCount {
    pub text: String,
    pub count: u64,
}

/// Connection lifecycle counts (from the `conn` event lines).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Connections {
    /// Connection attempts.
    pub opened: u64,
    /// Connections that never got going (closed as `failed`: connect or TLS failed).
    pub failed: u64,
    /// TLS handshakes that failed (a subset of `failed`).
    pub tls_failed: u64,
    /// Closes by how they happened (`local`, `peer_fin`, `peer_rst`, ...).
    pub closed: BTreeMap<String, u64>,
}

/// One intended second of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the wall-clock second the run started in. Buckets are whole UTC
    /// seconds so that runs from several hosts line up when merged; second 0 may be partial.
    pub second: u64,
    pub requests: u64,
    pub success: u64,
    pub failed: u64,
    /// Latency percentiles of the second's requests (2 significant figures); null when none
    /// of its requests arrived while the second was still open (see `crate::stats`).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}
