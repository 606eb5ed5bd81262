//! A whole live session, as `analyzer attach` runs it: attach, fold every kernel event
//! into the analysis as it arrives (memory stays bounded), stop, join loadgen's files,
//! and build the report with the host's evidence. The binary and the end-to-end tests
//! both call [`run`].
use std::{future::Future, path::PathBuf};

use anyhow::{Context, Result};

use crate::{
    attach::{self, AttachOptions, AttachOutcome},
    event::Observed,
    host::PortRange,
    report::{Analysis, AnalysisOptions, FinishInput, Report},
};

/// What a session does.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    pub attach: AttachOptions,
    /// loadgen `--events` files, joined at the end.
    pub loadgen_events: Vec<PathBuf>,
    /// Keep and list every connection, not only failed ones.
    pub all: bool,
}

/// Runs a session until `stop` (or the duration) ends it; returns what the kernel side
/// saw and the report.
pub async fn run(
    opts: &SessionOptions,
    stop: impl Future<Output = ()>,
) -> Result<(AttachOutcome, Report)> {
    let mut aopts = AnalysisOptions::with_all(opts.all);
    // A socket whose local port is a filtered port is the server side (loopback runs see
    // both ends); the ephemeral range tells clients among sockets opened before the
    // session.
    aopts.table.listen_ports = opts.attach.filter.ports.clone();
    if let Ok(r) = PortRange::read() {
        aopts.table.ephemeral_ports = (r.low, r.high);
    }
    let mut analysis = Analysis::new(aopts);
    let outcome = attach::run(&opts.attach, stop, |o| match o {
        Observed::Kernel(ev) => analysis.ingest_kernel(ev),
        Observed::Wire(w) => analysis.ingest_wire(w),
    })
    .await?;
    let report = analysis
        .finish(FinishInput {
            run: outcome.run_facts(&opts.attach.filter),
            loadgen: &opts.loadgen_events,
            host_evidence: outcome.host_evidence(),
            host: outcome.host_json(),
        })
        .context("join loadgen's events")?;
    Ok((outcome, report))
}
