//! The analysis driver: kernel events in (live or from a file), loadgen files joined at
//! the end, every failure attributed, the report out.
use std::{collections::BTreeMap, path::PathBuf};

use events::{model::RequestEvent, ndjson::ReadError};

use super::{
    Cause, Joins, REPORT_SCHEMA_VERSION, Report, Run, Totals, Unattributed,
    build::{Aggregator, Failure},
};
use crate::{
    event::KernelEvent,
    join::{LoadgenConn, LoadgenSummary, join_loadgen},
    rules::{Case, HostEvidence, RuleOptions, Source, attribute},
    table::{ConnTable, Connections, JoinKind, TableConfig, TableCounts},
    tls_probe::{ProbeOptions, probe_failed_handshakes},
};

/// How the analysis runs.
#[derive(Clone, Debug)]
pub struct AnalysisOptions {
    pub table: TableConfig,
    pub rules: RuleOptions,
    /// List every kept connection in the report, not only failed ones (`--all`; also
    /// set `table.keep_all` to keep clean connections).
    pub all: bool,
    /// Example connections per cause.
    pub max_examples: usize,
    /// The time window slack of a 4-tuple join.
    pub join_slack_ns: u64,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        Self {
            table: TableConfig::default(),
            rules: RuleOptions::default(),
            all: false,
            max_examples: 5,
            join_slack_ns: 1_000_000_000,
        }
    }
}

impl AnalysisOptions {
    /// The defaults, with `--all` (clean connections kept and listed) as given.
    pub fn with_all(all: bool) -> Self {
        Self {
            all,
            table: TableConfig {
                keep_all: all,
                ..TableConfig::default()
            },
            ..Self::default()
        }
    }
}

/// What [`Analysis::finish`] needs beside the kernel events.
#[derive(Clone, Debug, Default)]
pub struct FinishInput<'a> {
    /// What the caller knows of the run (kernel release, probes, filters, lost events,
    /// start and end); the rest is filled in.
    pub run: Run,
    /// loadgen event files to join (NDJSON); may be empty.
    pub loadgen: &'a [PathBuf],
    /// Host counter deltas and port facts the rules use.
    pub host_evidence: HostEvidence,
    /// Host counters as the caller wants them shown (opaque).
    pub host: serde_json::Value,
    /// The certificate probe (`tls_probe`) of a live run, which judges the certificates
    /// of handshakes clients gave up by a handshake of the analyzer's own before the
    /// failures are judged. `None` (offline reports, tests): no probe, ever.
    pub probe: Option<&'a ProbeOptions>,
}

/// An analysis in progress.
///
/// ```no_run
/// # use analyzer::report::{Analysis, AnalysisOptions, FinishInput};
/// let mut a = Analysis::new(AnalysisOptions::default());
/// # let events: Vec<analyzer::event::KernelEvent> = Vec::new();
/// for ev in &events {
///     a.ingest_kernel(ev);
/// }
/// let report = a.finish(FinishInput::default()).expect("loadgen files readable");
/// println!("{}", report.to_text());
/// ```
#[derive(Debug)]
pub struct Analysis {
    opts: AnalysisOptions,
    table: ConnTable,
    first_unix_ns: Option<u64>,
    last_unix_ns: Option<u64>,
}

impl Analysis {
    pub fn new(opts: AnalysisOptions) -> Self {
        Self {
            table: ConnTable::new(opts.table.clone()),
            opts,
            first_unix_ns: None,
            last_unix_ns: None,
        }
    }

    /// Folds one kernel event in (events in timestamp order; memory stays bounded).
    pub fn ingest_kernel(&mut self, ev: &KernelEvent) {
        let t = ev.ts_unix_ns;
        self.first_unix_ns = Some(self.first_unix_ns.map_or(t, |f| f.min(t)));
        self.last_unix_ns = Some(self.last_unix_ns.map_or(t, |l| l.max(t)));
        self.table.ingest(ev);
    }

    /// Takes one wire fact (raw backend, or the eBPF backend's plaintext capture): kept
    /// on its connection's record.
    pub fn ingest_wire(&mut self, w: &crate::event::wire_fact::WireEvent) {
        self.table.ingest_wire(w);
    }

    /// The connection table's counters so far (for live displays).
    pub fn counts(&self) -> TableCounts {
        self.table.counts()
    }

    /// Ends the analysis: probes the certificates of abandoned TLS handshakes (when
    /// `input.probe` asks), joins the loadgen files, attributes every failure (loadgen's
    /// failed requests, then failed kernel connections no loadgen event accounts for),
    /// and builds the report. Errors only when a loadgen file cannot be read.
    pub fn finish(self, input: FinishInput<'_>) -> Result<Report, ReadError> {
        let kernel_seen = self.table.counts().events.values().sum::<u64>() > 0;
        let mut conns = self.table.finish();
        let probes = input
            .probe
            .map(|p| probe_failed_handshakes(conns.records_mut(), p))
            .unwrap_or_default();
        let mut agg = Aggregator::new(self.opts.max_examples);
        let drop_reasons = conns.drop_reasons().clone();
        let rules = RuleOptions {
            local_resets_recorded: local_resets_recorded(&input.run),
            ..self.opts.rules.clone()
        };
        let judging = Judging {
            kernel_seen,
            drop_reasons: &drop_reasons,
            host: &input.host_evidence,
            rules: &rules,
        };
        let loadgen = if input.loadgen.is_empty() {
            LoadgenSummary::default()
        } else {
            judging.loadgen(input.loadgen, &mut conns, self.opts.join_slack_ns, &mut agg)?
        };
        let kernel_only = judging.kernel_only(&mut conns, &mut agg);
        let failures = loadgen.requests_failed + kernel_only;
        let (mut causes, mut unattributed) = agg.finish(failures);
        let counts = conns.counts().clone();
        let run = complete_run(
            input.run,
            (self.first_unix_ns, self.last_unix_ns),
            &counts,
            &loadgen,
        );
        let totals = Totals {
            requests: loadgen.requests,
            requests_ok: loadgen.requests_ok,
            requests_failed: loadgen.requests_failed,
            failed_by_class: loadgen.failed_by_class.clone(),
            kernel_only_failures: kernel_only,
            plaintext_requests: plaintext(&conns, |t| t.requests),
            plaintext_requests_failed: plaintext(&conns, |t| t.failed_requests()),
            connections_ended_abnormally_after_all_answered: conns
                .records()
                .filter(|r| r.ended_abnormally_after_all_answered())
                .count() as u64,
            failures,
            unattributed: unattributed.count,
            connections_failed: conns.records().filter(|r| r.is_failed()).count() as u64,
            connections: counts,
            joins: joins(&loadgen),
        };
        let mut connections: Vec<_> = conns
            .records()
            .filter(|r| self.opts.all || r.is_failed())
            .cloned()
            .collect();
        connections.sort_by_key(|r| (r.first_unix_ns, r.id));
        if run.backend == "raw" {
            label_wire_evidence(&mut causes, &mut unattributed);
        }
        Ok(Report {
            schema_version: REPORT_SCHEMA_VERSION,
            run,
            totals,
            causes,
            unattributed,
            connections,
            all_connections: self.opts.all,
            drop_reasons,
            host_evidence: input.host_evidence,
            host: input.host,
            probes,
        })
    }
}

/// What every failure is judged with.
struct Judging<'a> {
    kernel_seen: bool,
    drop_reasons: &'a BTreeMap<String, u64>,
    host: &'a HostEvidence,
    rules: &'a RuleOptions,
}

impl Judging<'_> {
    /// Joins the loadgen files and judges each failed request.
    fn loadgen(
        &self,
        files: &[PathBuf],
        conns: &mut Connections,
        slack_ns: u64,
        agg: &mut Aggregator,
    ) -> Result<LoadgenSummary, ReadError> {
        join_loadgen(files, conns, slack_ns, |conns, f| {
            let subject = Subject {
                request: Some(f.request),
                intended_unix_ns: f.intended_unix_ns,
                conn: f.conn,
                kernel_id: f.kernel,
                join: f.join,
                status: None,
                weight: 1,
            };
            let cause = self.judge_one(conns, agg, subject);
            if let Some(id) = f.kernel {
                conns.note_failure(id, cause, true);
            }
        })
    }

    /// Judges the failed kernel connections no loadgen event accounts for; returns how
    /// many failures they stand for: one per connection, or, where the plaintext showed
    /// the connection's HTTP exchanges, one per failed request.
    fn kernel_only(&self, conns: &mut Connections, agg: &mut Aggregator) -> u64 {
        let kernel_only: Vec<(u64, Vec<FailurePart>)> = conns
            .records()
            .filter(|r| r.join == JoinKind::KernelOnly && r.is_failed())
            .map(|r| (r.id, failure_parts(r)))
            .collect();
        let mut total = 0;
        for (id, parts) in kernel_only {
            let mut first = None;
            for (status, weight) in parts {
                let subject = Subject {
                    request: None,
                    intended_unix_ns: 0,
                    conn: None,
                    kernel_id: Some(id),
                    join: JoinKind::KernelOnly,
                    status,
                    weight,
                };
                let cause = self.judge_one(conns, agg, subject);
                first.get_or_insert(cause);
                total += weight;
            }
            if let Some(cause) = first {
                conns.note_failure(id, cause, false);
            }
        }
        total
    }

    /// Judges one failure with the kernel's record of its connection (and this host's
    /// socket at the other end, and the listener it went to); returns the cause id.
    fn judge_one(&self, conns: &Connections, agg: &mut Aggregator, s: Subject<'_>) -> &'static str {
        let kernel = s.kernel_id.and_then(|id| conns.get(id));
        let remote = kernel
            .and_then(|k| k.remote)
            .or(s.request.and_then(|r| r.conn.remote));
        let case = Case {
            request: s.request,
            intended_unix_ns: s.intended_unix_ns,
            conn: s.conn,
            kernel,
            peer: kernel.and_then(|k| conns.peer_of(k)),
            listener: remote.and_then(|r| conns.listener_for(r)),
            kernel_seen: self.kernel_seen,
            drop_reasons: self.drop_reasons,
            host: self.host,
            opts: self.rules,
            status: s.status,
        };
        let failure = Failure {
            request: s.request,
            intended_unix_ns: s.intended_unix_ns,
            kernel,
            join: s.join,
            weight: s.weight,
        };
        judge(agg, &case, failure)
    }
}

/// One failure to judge: loadgen's failed request, when there is one, and the kernel
/// record of its connection, when there is one.
struct Subject<'a> {
    request: Option<&'a RequestEvent>,
    /// The request's intended send time (0 without a request).
    intended_unix_ns: u64,
    conn: Option<&'a LoadgenConn>,
    kernel_id: Option<u64>,
    join: JoinKind,
    /// See [`Case::status`].
    status: Option<u16>,
    /// How many failures it stands for.
    weight: u64,
}

/// Sums `f` of the complete HTTP tallies of kernel-only client connections.
fn plaintext(conns: &Connections, f: impl Fn(&crate::event::wire_fact::HttpTally) -> u32) -> u64 {
    conns
        .records()
        .filter(|r| r.join == JoinKind::KernelOnly)
        .filter_map(|r| r.complete_http())
        .map(|t| u64::from(f(t)))
        .sum()
}

/// Failures of one connection: the status they share (`None`: its transport failed
/// them), and how many.
type FailurePart = (Option<u16>, u64);

/// The failures of a kernel-only connection as `(status, count)`: per failing status,
/// and the requests its transport failed (`None`); one failure when the plaintext did
/// not show its HTTP exchanges whole.
fn failure_parts(r: &crate::table::ConnRecord) -> Vec<FailurePart> {
    let Some(t) = r.complete_http() else {
        return vec![(None, 1)];
    };
    let mut parts: Vec<FailurePart> = t
        .statuses
        .iter()
        .filter(|(s, n)| **s >= 400 && **n > 0)
        .map(|(s, n)| (Some(*s), u64::from(*n)))
        .collect();
    let transport = t.transport_failures();
    if transport > 0 {
        parts.push((None, u64::from(transport)));
    }
    parts
}

/// Whether every RST this host's sockets sent is in the recording (see
/// [`RuleOptions::local_resets_recorded`]): the eBPF backend, no pid filter, nothing lost.
fn local_resets_recorded(run: &Run) -> bool {
    run.backend == "ebpf"
        && run.filters.pid.is_none()
        && run.lost_events == 0
        && run.read_failures == 0
        && run.decode_errors == 0
}

/// The report's join counts from the loadgen summary.
fn joins(loadgen: &LoadgenSummary) -> Joins {
    Joins {
        loadgen_connections: loadgen.connections,
        connections_by_cookie: loadgen.connections_joined_cookie,
        connections_by_tuple_time: loadgen.connections_joined_tuple_time,
        failures_by_cookie: loadgen.failures_joined_cookie,
        failures_by_tuple_time: loadgen.failures_joined_tuple_time,
        failures_loadgen_only: loadgen.failures_loadgen_only,
    }
}

/// The raw backend's "kernel" events were read off the wire and played by its tracker:
/// say so in the evidence a ticket will quote.
fn label_wire_evidence(causes: &mut [Cause], unattributed: &mut Unattributed) {
    let examples = causes
        .iter_mut()
        .flat_map(|c| c.examples.iter_mut())
        .chain(unattributed.examples.iter_mut());
    for e in examples.flat_map(|x| x.evidence.iter_mut()) {
        if e.source == Source::Kernel {
            e.source = Source::Wire;
        }
    }
}

/// Attributes one failure to its first matching rule and adds it to the aggregate;
/// returns the cause id.
fn judge(agg: &mut Aggregator, case: &Case<'_>, failure: Failure<'_>) -> &'static str {
    // Responses with a failing status are that status, whatever else befell their
    // connection; the rest of the rules judge the requests its transport failed.
    let (precedence, verdict) = match (case.status, crate::rules::http_status(case)) {
        (Some(_), Some(v)) => (crate::rules::precedence_of("http_status"), v),
        _ => attribute(case),
    };
    let cause = verdict.cause;
    agg.add(precedence, verdict, failure);
    cause
}

/// The run metadata: the caller's, completed.
fn complete_run(
    mut run: Run,
    kernel_span: (Option<u64>, Option<u64>),
    counts: &TableCounts,
    loadgen: &LoadgenSummary,
) -> Run {
    if run.analyzer_version.is_empty() {
        run.analyzer_version = env!("CARGO_PKG_VERSION").to_owned();
    }
    let earliest = [kernel_span.0, loadgen.first_unix_ns]
        .into_iter()
        .flatten()
        .min();
    let latest = [kernel_span.1, loadgen.last_unix_ns]
        .into_iter()
        .flatten()
        .max();
    if run.started_unix_ns == 0 {
        run.started_unix_ns = earliest.unwrap_or(0);
    }
    if run.ended_unix_ns == 0 {
        run.ended_unix_ns = latest.unwrap_or(run.started_unix_ns);
    }
    run.duration_ns = run.ended_unix_ns.saturating_sub(run.started_unix_ns);
    run.evicted_connections = counts.evicted + counts.live_evicted;
    run.loadgen_files = loadgen.files.clone();
    run.warnings.extend(loadgen.warnings.iter().cloned());
    if loadgen.notable_connections_dropped > 0 {
        run.warnings.push(format!(
                "{} loadgen connections with TLS or HTTP/2 facts were not kept (memory bound): their failures lack those facts",
                loadgen.notable_connections_dropped
            ));
    }
    run
}
