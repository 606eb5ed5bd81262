//! The root-cause report: run metadata, totals, the ranked causes with their evidence
//! and example connections, the failed connections, host counters; and its renderings
//! (JSON, terminal text, ticket-sized Markdown). Described by
//! `analyzer-user/schema/report.schema.json` ([`REPORT_SCHEMA_VERSION`]).
//!
//! Made by an [`Analysis`]: kernel events are ingested as they come (incrementally,
//! memory-bounded), then [`Analysis::finish`] joins loadgen's files and attributes every
//! failure.
use std::{collections::BTreeMap, net::SocketAddr};

use events::model::{Class, Phase};
use events::ndjson::FileInfo;
use serde::{Deserialize, Serialize};

use crate::{
    names::NameSources,
    recording::{AttachReport, FilterConfig},
    rules::{Confidence, Evidence, HostEvidence},
    table::{ConnRecord, JoinKind, TableCounts, TimelineEntry},
};

mod analysis;
mod build;
mod markdown;
#[cfg(test)]
pub(crate) mod tests;
mod text;

pub use analysis::{Analysis, AnalysisOptions, FinishInput};

/// Version of the report format (`schema/report.schema.json`).
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// The analyzer's report. Failures are loadgen's failed requests plus the failed client
/// connections no loadgen event accounts for (foreign clients); each is attributed to
/// exactly one cause.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_SCHEMA_VERSION`].
    pub schema_version: u32,
    pub run: Run,
    pub totals: Totals,
    /// Causes by count, most first.
    pub causes: Vec<Cause>,
    /// Failures no rule explains: always present, never dropped.
    pub unattributed: Unattributed,
    /// Failed connections (every kept connection when `all_connections`), by time.
    pub connections: Vec<ConnRecord>,
    pub all_connections: bool,
    /// Packet drops recorded over the run, by the kernel's drop reason name.
    pub drop_reasons: BTreeMap<String, u64>,
    /// The host evidence the rules used.
    pub host_evidence: HostEvidence,
    /// Host counter deltas and port census, as the caller gave them.
    pub host: serde_json::Value,
    /// The certificate probe's handshakes (`tls_probe`): one per server address and SNI
    /// whose TLS handshakes a client gave up, made by the analyzer after the run. What
    /// they saw is the probe's evidence, not the wire's. Empty when none was made.
    #[serde(default)]
    pub probes: Vec<crate::tls_probe::ProbeRecord>,
}

/// What was recorded, how, and what may be missing.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Run {
    /// Filled by [`Analysis::finish`] when empty.
    pub analyzer_version: String,
    /// `uname -r` of the recording host.
    pub kernel_release: String,
    /// Recording start and end; [`Analysis::finish`] falls back to the first and last
    /// event seen.
    pub started_unix_ns: u64,
    pub ended_unix_ns: u64,
    /// Filled by [`Analysis::finish`].
    pub duration_ns: u64,
    pub probes: AttachReport,
    /// `ebpf` (tracepoints) or `raw` (AF_PACKET capture).
    #[serde(default = "ebpf_backend")]
    pub backend: String,
    /// Why `--backend auto` fell back to the raw backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_notice: Option<String>,
    /// The raw backend's capture: interfaces, packets, kernel drops, tracker counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<crate::raw::source::CaptureReport>,
    /// The eBPF backend's capture of client processes' reads and writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext: Option<crate::plaintext::PlaintextStats>,
    pub filters: FilterConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<NameSources>,
    /// Events lost in the kernel: ring buffer reserve failures.
    pub lost_events: u64,
    /// Tracepoint fields the programs failed to read.
    pub read_failures: u64,
    /// Ring buffer records that could not be decoded.
    pub decode_errors: u64,
    /// Connection records dropped to stay within the memory bound (filled by finish).
    pub evicted_connections: u64,
    /// Kernel event files read (offline reports).
    pub kernel_files: Vec<FileInfo>,
    /// loadgen event files joined (filled by finish).
    pub loadgen_files: Vec<FileInfo>,
    /// Problems that did not stop the report.
    pub warnings: Vec<String>,
}

fn ebpf_backend() -> String {
    "ebpf".into()
}

/// Counts over the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// loadgen requests.
    pub requests: u64,
    pub requests_ok: u64,
    pub requests_failed: u64,
    /// Failed requests by loadgen class.
    pub failed_by_class: BTreeMap<String, u64>,
    /// Failures with no loadgen counterpart: a failed client connection counts once,
    /// or once per failed request where its plaintext showed the HTTP exchanges.
    pub kernel_only_failures: u64,
    /// Foreign clients' HTTP requests the plaintext showed (kernel-only connections),
    /// and of which failed.
    #[serde(default)]
    pub plaintext_requests: u64,
    #[serde(default)]
    pub plaintext_requests_failed: u64,
    /// Client connections whose requests were all answered with success statuses but
    /// that ended with an RST or an error (a client trimming its pool, leaving unread
    /// control frames; a server closing idle connections): not failures.
    #[serde(default)]
    pub connections_ended_abnormally_after_all_answered: u64,
    /// `requests_failed + kernel_only_failures`: what the causes' shares divide.
    pub failures: u64,
    pub unattributed: u64,
    /// Failed connections the kernel recorded (kept ones).
    pub connections_failed: u64,
    /// The connection table's counters (connections seen, kept, evicted, events).
    pub connections: TableCounts,
    pub joins: Joins,
}

/// How loadgen's records met the kernel's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joins {
    pub loadgen_connections: u64,
    pub connections_by_cookie: u64,
    pub connections_by_tuple_time: u64,
    pub failures_by_cookie: u64,
    pub failures_by_tuple_time: u64,
    /// Failed requests with no kernel record (nothing abnormal seen, or not recorded).
    pub failures_loadgen_only: u64,
}

/// One cause of failure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    /// 1 for the most frequent.
    pub rank: u32,
    /// Stable snake_case id (see the `rules` module).
    pub id: String,
    /// What splits the cause (a code, a status, a reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub title: String,
    pub count: u64,
    /// Of all failures, 0 to 1.
    pub share: f64,
    /// Of which loadgen requests / kernel-only connections.
    pub loadgen_failures: u64,
    pub kernel_only_failures: u64,
    /// The most common confidence among its failures, with why.
    pub confidence: Confidence,
    pub confidence_counts: LevelCounts,
    pub hint: String,
    /// Up to 5, distinct connections, earliest first.
    pub examples: Vec<Example>,
}

/// Failures per confidence level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelCounts {
    pub high: u64,
    pub medium: u64,
    pub low: u64,
}

/// One failure, with its connection and evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub join: JoinKind,
    /// When it failed (the request's intended send time, or the connection's start).
    pub ts_unix_ns: u64,
    /// RFC 3339.
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sock_cookie: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<SocketAddr>,
    /// The kernel record's id (see `connections`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loadgen_conn_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<Class>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub confidence: Confidence,
    pub evidence: Vec<Evidence>,
    /// The kernel timeline's first and last entries.
    pub timeline: Vec<TimelineEntry>,
    /// Timeline entries left out of the excerpt (and of the record).
    pub timeline_dropped: u64,
}

/// Failures no rule explains.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Unattributed {
    pub count: u64,
    pub share: f64,
    /// By loadgen class (`kernel_only` for kernel-only failures).
    pub by_class: BTreeMap<String, u64>,
    pub examples: Vec<Example>,
}

/// `to_text` and `to_markdown` are defined beside their renderers (`text`, `markdown`).
impl Report {
    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }
}

/// `1234567` as `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A share as a percentage (`81.0%`, `0.04%`).
pub(crate) fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p > 0.0 && p < 0.1 {
        format!("{p:.2}%")
    } else {
        format!("{p:.1}%")
    }
}

/// A duration in nanoseconds, to the second (`33m 5s`), or ms below a second.
pub(crate) fn duration(ns: u64) -> String {
    if ns < 1_000_000_000 {
        return format!("{} ms", ns / 1_000_000);
    }
    humantime::format_duration(std::time::Duration::from_secs(ns / 1_000_000_000)).to_string()
}
