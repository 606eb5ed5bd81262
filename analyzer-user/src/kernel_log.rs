//! The kernel event log (`analyzer attach --raw-events kernel.ndjson`), its writer and
//! its reader in one place, so the two cannot drift.
//!
//! The file holds one JSON object per line:
//!
//! - optionally, first, a header [`KernelLogHeader`]:
//!   `{"meta":{"format":1,"analyzer_version":"0.1.0","kernel_release":"6.18.44",
//!   "started_unix_ns":...,"probes":{"attached":[...],"missing":[...]},
//!   "filters":{"ports":[443],"addrs":[],"all_drops":false},
//!   "names":{"tcp_states":"btf","rst_reasons":"tracefs","drop_reasons":"tracefs"}}}`;
//! - one [`KernelEvent`] per line, and (raw backend) wire facts as `{"wire": {...}}`;
//! - optionally, last, a trailer [`KernelLogTrailer`] written at stop:
//!   `{"end":{"ended_unix_ns":...,"lost_events":0,"read_failures":0,"decode_errors":0,
//!   "host_evidence":{...},"host":{...}}}` (the last two optional).
//!
//! Without header and trailer a log still reads; the reader then cannot tell the probes,
//! filters or lost events. A line that is none of these is an error naming file and
//! line, except a truncated last line (the writer was killed), which is skipped and
//! reported.
//!
//! The reader hands events on in timestamp order: every line, kernel event or wire fact,
//! goes through one reorder window of [`REORDER_WINDOW`] lines (ring-buffer output is only
//! nearly ordered across CPUs), so memory stays bounded however long the log. Several
//! files are read one after the other (rotated files of one run).
use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use anyhow::Context;
use events::ndjson::{FileInfo, NdjsonLines, ReadError};
use serde::{Deserialize, Serialize};

use crate::{
    event::{KernelEvent, Observed, wire_fact::WireEvent},
    names::NameSources,
    recording::{AttachReport, FilterConfig},
    rules::HostEvidence,
};

/// Lines held back to restore timestamp order.
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
    /// `ebpf` or `raw`; empty in logs written before it was recorded.
    pub backend: String,
    pub started_unix_ns: u64,
    pub probes: AttachReport,
    pub filters: FilterConfig,
    pub names: NameSources,
}

impl KernelLogHeader {
    /// The header for a recording starting now with these probes and names.
    pub fn new(
        backend: &str,
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
                backend: backend.to_owned(),
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

/// A wire fact as a line of the log (`{"wire": {...}}`), apart from kernel event lines.
#[derive(Serialize)]
struct WireLineOut<'a> {
    wire: &'a WireEvent,
}

#[derive(Deserialize)]
struct WireLine {
    wire: WireEvent,
}

/// Writes a kernel event log: the header at creation, one line per event, the trailer at
/// [`Writer::finish`].
#[derive(Debug)]
pub struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
}

impl Writer {
    /// Creates (truncates) `path` and writes `header`.
    pub fn create(path: &Path, header: &KernelLogHeader) -> anyhow::Result<Self> {
        let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
        let mut w = Self {
            path: path.to_owned(),
            out: BufWriter::new(file),
        };
        w.out
            .write_all(header.to_line().as_bytes())
            .with_context(|| format!("write {}", w.path.display()))?;
        Ok(w)
    }

    /// Appends one event as a line.
    pub fn write(&mut self, o: &Observed) -> anyhow::Result<()> {
        let out = &mut self.out;
        match o {
            Observed::Kernel(ev) => serde_json::to_writer(&mut *out, ev),
            Observed::Wire(w) => serde_json::to_writer(&mut *out, &WireLineOut { wire: w }),
        }
        .and_then(|()| out.write_all(b"\n").map_err(serde_json::Error::io))
        .with_context(|| format!("write {}", self.path.display()))
    }

    /// Writes the trailer and flushes.
    pub fn finish(mut self, trailer: &KernelLogTrailer) -> anyhow::Result<()> {
        self.out
            .write_all(trailer.to_line().as_bytes())
            .and_then(|()| self.out.flush())
            .with_context(|| format!("write {}", self.path.display()))
    }
}

/// What the reader hands its caller, line by line.
pub trait Visit {
    /// A header line, when read.
    fn header(&mut self, meta: KernelLogMeta);
    /// A trailer line, when read.
    fn trailer(&mut self, end: KernelLogEnd);
    /// The next event in timestamp order (within the reorder window).
    fn observed(&mut self, o: &Observed);
    /// One file read to its end, with what was skipped in it.
    fn file_done(&mut self, info: FileInfo, warnings: Vec<String>);
}

/// Reads kernel event files one after the other into `visit`; returns how many events
/// came later than the reorder window could restore (their timelines may be out of
/// order).
pub fn read(paths: &[PathBuf], visit: &mut impl Visit) -> Result<u64, ReadError> {
    read_with_window(paths, REORDER_WINDOW, visit).map(|r| r.late)
}

/// What a read saw of its reorder window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ReadStats {
    late: u64,
    /// The most lines the window held at once.
    max_held: usize,
}

fn read_with_window(
    paths: &[PathBuf],
    window: usize,
    visit: &mut impl Visit,
) -> Result<ReadStats, ReadError> {
    let mut reorder = Reorder::new(window);
    for path in paths {
        let mut lines = NdjsonLines::open(path)?;
        while let Some(bytes) = lines.next_line()? {
            let observed = match serde_json::from_slice::<KernelEvent>(bytes) {
                Ok(event) => Observed::Kernel(event),
                Err(err) => match meta_line(bytes) {
                    Some(Meta::Header(h)) => {
                        visit.header(h.meta);
                        continue;
                    }
                    Some(Meta::Trailer(t)) => {
                        visit.trailer(t.end);
                        continue;
                    }
                    Some(Meta::Wire(w)) => Observed::Wire(w.wire),
                    None => {
                        lines.bad_line(err, "kernel event", |_, e| e)?;
                        continue;
                    }
                },
            };
            if let Some(o) = reorder.push(observed) {
                visit.observed(&o);
            }
        }
        visit.file_done(lines.info, std::mem::take(&mut lines.warnings));
    }
    while let Some(o) = reorder.pop() {
        visit.observed(&o);
    }
    Ok(ReadStats {
        late: reorder.late,
        max_held: reorder.max_held,
    })
}

enum Meta {
    Header(KernelLogHeader),
    Trailer(KernelLogTrailer),
    /// A raw-backend wire fact (`{"wire": {...}}`).
    Wire(WireLine),
}

/// The header, trailer or wire fact a line holds, if it is one.
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

/// Puts nearly ordered events back in timestamp order, holding at most `window` of
/// them: pushing one more hands back the earliest.
#[derive(Debug)]
struct Reorder {
    window: usize,
    heap: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    last_ts: u64,
    /// Events handed on after a later one had been (out of order by more than the
    /// window).
    late: u64,
    max_held: usize,
}

impl Reorder {
    fn new(window: usize) -> Self {
        Self {
            window,
            heap: BinaryHeap::new(),
            seq: 0,
            last_ts: 0,
            late: 0,
            max_held: 0,
        }
    }

    /// Takes an event; returns the earliest held one once more than `window` are held.
    fn push(&mut self, event: Observed) -> Option<Observed> {
        self.seq += 1;
        let ts = match &event {
            Observed::Kernel(ev) => ev.ts_unix_ns,
            Observed::Wire(w) => w.ts_unix_ns,
        };
        self.heap.push(Reverse(Pending {
            ts,
            seq: self.seq,
            event,
        }));
        let out = if self.heap.len() > self.window {
            self.pop()
        } else {
            None
        };
        self.max_held = self.max_held.max(self.heap.len());
        out
    }

    /// The earliest held event (to drain the window at the end).
    fn pop(&mut self) -> Option<Observed> {
        let Reverse(p) = self.heap.pop()?;
        if p.ts < self.last_ts {
            self.late += 1;
        }
        self.last_ts = self.last_ts.max(p.ts);
        Some(p.event)
    }
}

/// An event waiting in the reorder window, ordered by time then line.
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

#[cfg(test)]
mod tests;
