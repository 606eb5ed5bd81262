//! Post-mortem reports: `analyzer report --kernel kernel.ndjson --loadgen events.ndjson
//! --format json|text|markdown` runs the same analysis as `attach` over recorded files.
//!
//! # The kernel event file
//!
//! `kernel.ndjson` (written by `analyzer attach --raw-events`) holds one JSON object per
//! line:
//!
//! - optionally, first, a header [`KernelLogHeader`]:
//!   `{"meta":{"format":1,"analyzer_version":"0.1.0","kernel_release":"6.18.44",
//!   "started_unix_ns":...,"probes":{"attached":[...],"missing":[...]},
//!   "filters":{"ports":[443],"addrs":[],"all_drops":false},
//!   "names":{"tcp_states":"btf","rst_reasons":"tracefs","drop_reasons":"tracefs"}}}`;
//! - one [`KernelEvent`] per line;
//! - optionally, last, a trailer [`KernelLogTrailer`] written at stop:
//!   `{"end":{"ended_unix_ns":...,"lost_events":0,"read_failures":0,"decode_errors":0,
//!   "host_evidence":{...},"host":{...}}}` (the last two optional).
//!
//! Without header and trailer the report still works; it then cannot tell the probes,
//! filters or lost events. A line that is none of these is an error naming file and line,
//! except a truncated last line (the writer was killed), which is skipped and reported.
//!
//! Events are ingested in timestamp order: lines are put back in order within a window
//! of [`REORDER_WINDOW`] events (ring-buffer output is only nearly ordered across CPUs).
//! Several kernel files are read one after the other (rotated files of one run).
use std::{cmp::Reverse, collections::BinaryHeap, path::PathBuf};

use events::ndjson::{NdjsonLines, ReadError};
use serde::{Deserialize, Serialize};

use crate::{
    event::wire_fact::WireEvent,
    event::{KernelEvent, Observed},
    names::NameSources,
    recording::{AttachReport, FilterConfig},
    report::{Analysis, AnalysisOptions, FinishInput, Report, Run},
    rules::HostEvidence,
};

/// Events held back to restore timestamp order.
pub const REORDER_WINDOW: usize = 65_536;

/// Version of the header and trailer lines.
pub const KERNEL_LOG_FORMAT: u32 = 1;

/// The first line of a kernel event file: `{"meta": {...}}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KernelLogHeader {
    pub meta: KernelLogMeta,
}

/// What the recording knew when it started. Missing fields read as their defaults.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct KernelLogMeta {
    /// [`KERNEL_LOG_FORMAT`].
    pub format: u32,
    pub analyzer_version: String,
    /// `uname -r`.
    pub kernel_release: String,
    pub started_unix_ns: u64,
    pub probes: AttachReport,
    pub filters: FilterConfig,
    pub names: NameSources,
}

impl KernelLogHeader {
    /// The header for a recording starting now with these probes and names.
    pub fn new(
        kernel_release: String,
        started_unix_ns: u64,
        probes: AttachReport,
        filters: FilterConfig,
        names: NameSources,
    ) -> Self {
        Self {
            meta: KernelLogMeta {
                format: KERNEL_LOG_FORMAT,
                analyzer_version: env!("CARGO_PKG_VERSION").to_owned(),
                kernel_release,
                started_unix_ns,
                probes,
                filters,
                names,
            },
        }
    }

    /// The line to write first, newline included.
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).expect("a header always serializes");
        s.push('\n');
        s
    }
}

/// The last line of a kernel event file, written at stop: `{"end": {...}}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelLogTrailer {
    pub end: KernelLogEnd,
}

/// What the recording knew when it stopped. Missing fields read as their defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KernelLogEnd {
    pub ended_unix_ns: u64,
    /// Ring buffer reserve failures.
    pub lost_events: u64,
    pub read_failures: u64,
    pub decode_errors: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_evidence: Option<HostEvidence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<serde_json::Value>,
}

impl KernelLogTrailer {
    /// The line to write last, newline included.
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).expect("a trailer always serializes");
        s.push('\n');
        s
    }
}

/// Report renderings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    #[default]
    Text,
    Markdown,
}

impl Report {
    /// The report in `format`.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => self.to_json(),
            Format::Text => self.to_text(),
            Format::Markdown => self.to_markdown(),
        }
    }
}

/// `analyzer report`: reads kernel event files and loadgen event files, runs the
/// analysis, returns the rendered report. `all` lists every connection.
pub fn report_offline(
    kernel: &[PathBuf],
    loadgen: &[PathBuf],
    format: Format,
    all: bool,
) -> anyhow::Result<String> {
    Ok(analyze_files(kernel, loadgen, AnalysisOptions::with_all(all))?.render(format))
}

/// The analysis of recorded files, as a [`Report`].
pub fn analyze_files(
    kernel: &[PathBuf],
    loadgen: &[PathBuf],
    opts: AnalysisOptions,
) -> Result<Report, ReadError> {
    let mut analysis = Analysis::new(opts);
    let mut input = FinishInput {
        loadgen,
        ..FinishInput::default()
    };
    let mut pending: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut last_ts = 0u64;
    let mut late = 0u64;
    let mut ingest = |p: Pending, analysis: &mut Analysis| {
        if p.ts < last_ts {
            late += 1;
        }
        last_ts = last_ts.max(p.ts);
        match &p.event {
            Observed::Kernel(ev) => analysis.ingest_kernel(ev),
            Observed::Wire(w) => analysis.ingest_wire(w),
        }
    };
    for path in kernel {
        let mut lines = NdjsonLines::open(path)?;
        while let Some(bytes) = lines.next_line()? {
            match serde_json::from_slice::<KernelEvent>(bytes) {
                Ok(event) => {
                    seq += 1;
                    pending.push(Reverse(Pending {
                        ts: event.ts_unix_ns,
                        seq,
                        event: Observed::Kernel(event),
                    }));
                    if pending.len() > REORDER_WINDOW
                        && let Some(Reverse(p)) = pending.pop()
                    {
                        ingest(p, &mut analysis);
                    }
                }
                Err(err) => match meta_line(bytes) {
                    Some(Meta::Header(h)) => apply_header(&mut input.run, h.meta),
                    Some(Meta::Trailer(t)) => apply_trailer(&mut input, t.end),
                    Some(Meta::Wire(w)) => {
                        seq += 1;
                        pending.push(Reverse(Pending {
                            ts: w.wire.ts_unix_ns,
                            seq,
                            event: Observed::Wire(w.wire),
                        }));
                    }
                    None => lines.bad_line(err, "kernel event", |_, e| e)?,
                },
            }
        }
        input.run.warnings.append(&mut lines.warnings);
        input.run.kernel_files.push(lines.info);
    }
    while let Some(Reverse(p)) = pending.pop() {
        ingest(p, &mut analysis);
    }
    if late > 0 {
        input.run.warnings.push(format!(
            "{late} kernel events were more than {REORDER_WINDOW} lines out of time order; timelines may be out of order"
        ));
    }
    analysis.finish(input)
}

/// A kernel event waiting in the reorder window, ordered by time then line.
#[derive(Debug)]
struct Pending {
    ts: u64,
    seq: u64,
    event: Observed,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.ts, self.seq) == (other.ts, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.ts, self.seq).cmp(&(other.ts, other.seq))
    }
}

enum Meta {
    Header(KernelLogHeader),
    Trailer(KernelLogTrailer),
    /// A raw-backend wire fact (`{"wire": {...}}`).
    Wire(WireLine),
}

#[derive(Deserialize)]
struct WireLine {
    wire: WireEvent,
}

/// The header or trailer a line holds, if it is one.
fn meta_line(bytes: &[u8]) -> Option<Meta> {
    if let Ok(h) = serde_json::from_slice::<KernelLogHeader>(bytes) {
        return Some(Meta::Header(h));
    }
    if let Ok(w) = serde_json::from_slice::<WireLine>(bytes) {
        return Some(Meta::Wire(w));
    }
    serde_json::from_slice::<KernelLogTrailer>(bytes)
        .ok()
        .map(Meta::Trailer)
}

fn apply_header(run: &mut Run, m: KernelLogMeta) {
    if m.analyzer_version != env!("CARGO_PKG_VERSION") {
        run.warnings.push(format!(
            "recorded by analyzer {}, reported by {}",
            m.analyzer_version,
            env!("CARGO_PKG_VERSION")
        ));
    }
    run.kernel_release = m.kernel_release;
    if run.started_unix_ns == 0 || m.started_unix_ns < run.started_unix_ns {
        run.started_unix_ns = m.started_unix_ns;
    }
    run.probes = m.probes;
    run.filters = m.filters;
    run.names = Some(m.names);
}

fn apply_trailer(input: &mut FinishInput<'_>, e: KernelLogEnd) {
    let run = &mut input.run;
    run.ended_unix_ns = run.ended_unix_ns.max(e.ended_unix_ns);
    run.lost_events += e.lost_events;
    run.read_failures += e.read_failures;
    run.decode_errors += e.decode_errors;
    if let Some(h) = e.host_evidence {
        input.host_evidence = h;
    }
    if let Some(h) = e.host {
        input.host = h;
    }
}

#[cfg(test)]
#[path = "report/offline_tests.rs"]
mod tests;
