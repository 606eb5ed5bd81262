//! A whole live session, as `analyzer attach` runs it: the collector ([`crate::attach`])
//! runs, every event is folded into the analysis as it arrives (memory stays bounded)
//! and, with `--raw-events`, written to the kernel log; at stop the host facts become the
//! report's evidence, the certificate probe looks at the servers whose TLS handshakes a
//! client gave up ([`crate::tls_probe`]), loadgen's files are joined and the report is
//! built. The binary and the end-to-end tests both call [`run`].
use std::{future::Future, path::PathBuf};

use anyhow::{Context, Result};

use crate::{
    attach::{self, AttachOptions, AttachOutcome, Attached},
    event::Observed,
    host::PortRange,
    kernel_log::{self, KernelLogEnd, KernelLogHeader, KernelLogTrailer},
    recording::FilterConfig,
    report::{Analysis, AnalysisOptions, FinishInput, Report, Run},
    rules::{DestPorts, HostEvidence},
    tls_probe::{ProbeOptions, Roots},
};

/// What a session does.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    pub attach: AttachOptions,
    /// loadgen `--events` files, joined at the end.
    pub loadgen_events: Vec<PathBuf>,
    /// Keep and list every connection, not only failed ones.
    pub all: bool,
    /// The certificate probe after the run (`--no-probe`, `--cacert`, `--probe-timeout`).
    pub probe: ProbeOptions,
}

/// Runs a session until `stop` (or the duration) ends it; returns what the kernel side
/// saw and the report.
pub async fn run(
    opts: &SessionOptions,
    stop: impl Future<Output = ()>,
) -> Result<(AttachOutcome, Report)> {
    // A `--cacert` that does not load is the user's mistake: say so now, not after the run.
    if opts.probe.enabled
        && let Some(path) = &opts.probe.cacert
    {
        Roots::from_pem_file(path).context("certificate probe")?;
    }
    let mut aopts = AnalysisOptions::with_all(opts.all);
    // A socket whose local port is a filtered port is the server side (loopback runs see
    // both ends); the ephemeral range tells clients among sockets opened before the
    // session.
    aopts.table.listen_ports = opts.attach.filter.ports.clone();
    if let Ok(r) = PortRange::read() {
        aopts.table.ephemeral_ports = (r.low, r.high);
    }
    let mut live = Live {
        analysis: Analysis::new(aopts),
        log_path: opts.attach.raw_events.clone(),
        log: None,
    };
    let outcome = attach::run(&opts.attach, stop, &mut live).await?;
    let host_evidence = host_evidence(&outcome);
    let host = host_json(&outcome);
    if let Some(log) = live.log {
        log.finish(&KernelLogTrailer {
            end: KernelLogEnd {
                ended_unix_ns: outcome.end_unix_ns,
                lost_events: outcome.stats.reserve_failed,
                read_failures: outcome.stats.read_failed,
                decode_errors: outcome.decode_errors,
                host_evidence: Some(host_evidence.clone()),
                host: Some(host.clone()),
            },
        })?;
    }
    let report = live
        .analysis
        .finish(FinishInput {
            run: run_facts(&outcome, &opts.attach.filter),
            loadgen: &opts.loadgen_events,
            host_evidence,
            host,
            probe: Some(&opts.probe),
        })
        .context("join loadgen's events")?;
    Ok((outcome, report))
}

/// Where a live session's events go: the analysis, and the kernel log when asked for.
struct Live {
    analysis: Analysis,
    log_path: Option<PathBuf>,
    log: Option<kernel_log::Writer>,
}

impl attach::Sink for Live {
    fn attached(&mut self, a: &Attached<'_>) -> Result<()> {
        if let Some(p) = &self.log_path {
            let header = KernelLogHeader::new(
                a.backend,
                a.kernel_release.to_owned(),
                a.started_unix_ns,
                a.probes.clone(),
                a.filter.clone(),
                a.names.clone(),
            );
            self.log = Some(kernel_log::Writer::create(p, &header)?);
        }
        Ok(())
    }

    fn recorded(&mut self, o: &Observed) -> Result<()> {
        if let Some(log) = &mut self.log {
            log.write(o)?;
        }
        self.flushed(o);
        Ok(())
    }

    fn flushed(&mut self, o: &Observed) {
        match o {
            Observed::Kernel(ev) => self.analysis.ingest_kernel(ev),
            Observed::Wire(w) => self.analysis.ingest_wire(w),
        }
    }
}

/// The host facts the rules use.
fn host_evidence(o: &AttachOutcome) -> HostEvidence {
    let c = |name: &str| {
        o.host_counters
            .as_ref()
            .and_then(|d| d.get(name))
            .and_then(|d| d.delta)
    };
    HostEvidence {
        listen_overflows: c("TcpExt.ListenOverflows"),
        listen_drops: c("TcpExt.ListenDrops"),
        syn_retrans: c("TcpExt.TCPSynRetrans"),
        tcp_timeouts: c("TcpExt.TCPTimeouts"),
        port_range: o.port_range.as_ref().map(|r| (r.low, r.high)),
        busiest_destinations: o
            .census
            .as_ref()
            .map(|c| {
                c.top_sockets
                    .iter()
                    .map(|d| DestPorts {
                        dest: d.destination,
                        local_ports_in_use: d.sockets,
                        time_wait: d.time_wait,
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The host facts as the report shows them: counters that moved, drop reasons, the port
/// range, the socket census, port pressure, and what could not be read.
fn host_json(o: &AttachOutcome) -> serde_json::Value {
    serde_json::json!({
        "counters": o.host_counters.as_ref().map(|d| d.nonzero().cloned().collect::<Vec<_>>()),
        "drop_reasons": o.drop_reasons,
        "port_range": o.port_range,
        "sockets": o.census,
        "worst_port_pressure": o.worst_port_pressure,
        "errors": o.host_errors,
    })
}

/// The report's run section from this session.
fn run_facts(o: &AttachOutcome, filters: &FilterConfig) -> Run {
    Run {
        kernel_release: o.kernel_release.clone(),
        started_unix_ns: o.start_unix_ns,
        ended_unix_ns: o.end_unix_ns,
        probes: o.attach.clone(),
        backend: o.backend.to_owned(),
        backend_notice: o.backend_notice.clone(),
        capture: o.capture.clone(),
        plaintext: o.plaintext,
        filters: filters.clone(),
        names: Some(o.names.clone()),
        lost_events: o.stats.reserve_failed,
        read_failures: o.stats.read_failed,
        decode_errors: o.decode_errors,
        ..Run::default()
    }
}
