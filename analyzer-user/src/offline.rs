//! Post-mortem reports: `analyzer report --kernel kernel.ndjson --loadgen events.ndjson
//! --format json|text|markdown` runs the same analysis as `attach` over recorded files
//! (the kernel log is read by `kernel_log`), and the report's renderings
//! ([`Format`], [`Report::render`]).
use std::path::PathBuf;

use events::ndjson::{FileInfo, ReadError};

use crate::{
    event::Observed,
    kernel_log::{self, KernelLogEnd, KernelLogMeta, REORDER_WINDOW},
    report::{Analysis, AnalysisOptions, FinishInput, Report, Run},
};

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
    let mut replay = Replay {
        analysis: Analysis::new(opts),
        input: FinishInput {
            loadgen,
            // Never a certificate probe: the servers now are not the recording's.
            probe: None,
            ..FinishInput::default()
        },
    };
    let late = kernel_log::read(kernel, &mut replay)?;
    let Replay {
        analysis,
        mut input,
    } = replay;
    if late > 0 {
        input.run.warnings.push(format!(
            "{late} kernel events were more than {REORDER_WINDOW} lines out of time order; timelines may be out of order"
        ));
    }
    analysis.finish(input)
}

/// A recorded log replayed into an analysis.
struct Replay<'a> {
    analysis: Analysis,
    input: FinishInput<'a>,
}

impl kernel_log::Visit for Replay<'_> {
    fn header(&mut self, meta: KernelLogMeta) {
        apply_header(&mut self.input.run, meta);
    }

    fn trailer(&mut self, end: KernelLogEnd) {
        apply_trailer(&mut self.input, end);
    }

    fn observed(&mut self, o: &Observed) {
        match o {
            Observed::Kernel(ev) => self.analysis.ingest_kernel(ev),
            Observed::Wire(w) => self.analysis.ingest_wire(w),
        }
    }

    fn file_done(&mut self, info: FileInfo, mut warnings: Vec<String>) {
        self.input.run.warnings.append(&mut warnings);
        self.input.run.kernel_files.push(info);
    }
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
    if !m.backend.is_empty() {
        run.backend = m.backend;
    }
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
mod tests;
