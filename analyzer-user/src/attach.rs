//! The collector behind `analyzer attach`: opens a backend (eBPF probes or the raw-socket
//! capture), drains its events until stopped, filters and counts them, hands each to the
//! caller's [`Sink`], and samples the host's counters at start and end.
//!
//! The collector only collects: logging the events to a file, the analysis and the report
//! are the caller's (see `session`), and what it has to say to the user goes to a
//! [`StatusSink`] (the binary prints it).
use std::{
    collections::BTreeMap,
    future::Future,
    time::{Duration, Instant},
};

use anyhow::Result;
use serde::Serialize;

mod host_sample;
mod options;
mod source;
mod tally;

pub use options::{AttachOptions, Backend, Progress, Status, StatusSink};
pub use tally::Counters;

use host_sample::HostSample;
use source::Source;
use tally::Tally;

use crate::{
    event::Observed,
    host::{CensusSummary, CounterDeltas, PortPressure, PortRange},
    names::NameSources,
    raw::source::CaptureReport,
    recording::{AttachReport, FilterConfig, ProbeStats},
};

/// What the collector hands its caller.
pub trait Sink {
    /// Once, when recording starts, before any event.
    fn attached(&mut self, attached: &Attached<'_>) -> Result<()>;
    /// Every event kept while recording, in arrival order.
    fn recorded(&mut self, o: &Observed) -> Result<()>;
    /// Events the raw backend's tracker still held at stop (not counted as recorded).
    fn flushed(&mut self, o: &Observed);
}

/// What is known when recording starts.
#[derive(Clone, Copy, Debug)]
pub struct Attached<'a> {
    /// `ebpf` or `raw`.
    pub backend: &'static str,
    /// `uname -r`.
    pub kernel_release: &'a str,
    pub started_unix_ns: u64,
    pub probes: &'a AttachReport,
    pub filter: &'a FilterConfig,
    pub names: &'a NameSources,
}

/// What a session saw, besides the events themselves.
#[derive(Clone, Debug, Serialize)]
pub struct AttachOutcome {
    pub attach: AttachReport,
    pub stats: ProbeStats,
    pub decode_errors: u64,
    /// Events handed on (after the pid filter).
    pub events: u64,
    /// Events left out by the pid filter.
    pub pid_filtered: u64,
    pub by_kind: BTreeMap<String, u64>,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub kernel_release: String,
    pub names: NameSources,
    /// `ebpf` or `raw`.
    pub backend: &'static str,
    /// Why `auto` fell back to the raw backend.
    pub backend_notice: Option<String>,
    /// The raw backend's capture counts.
    pub capture: Option<CaptureReport>,
    /// The eBPF backend's plaintext capture counts.
    pub plaintext: Option<crate::plaintext::PlaintextStats>,
    /// Wire facts handed on (raw backend).
    pub wire_events: u64,
    /// Host-wide IP packet drops during the session, by the kernel's reason name.
    pub drop_reasons: BTreeMap<String, u64>,
    /// Host counters (netstat/snmp) over the session; `None` when unreadable.
    pub host_counters: Option<CounterDeltas>,
    pub port_range: Option<PortRange>,
    /// TCP sockets at the end of the session, by state and busiest destinations.
    pub census: Option<CensusSummary>,
    /// The destination closest to running out of local ports at the end.
    pub worst_port_pressure: Option<PortPressure>,
    /// Host facts that could not be read, with why.
    pub host_errors: Vec<String>,
}

/// Runs a session until `stop` resolves or the duration passes (the caller's `stop`
/// usually covers SIGTERM and SIGINT). Every kept event goes to `sink`, in ring-buffer
/// order.
pub async fn run(
    opts: &AttachOptions,
    stop: impl Future<Output = ()>,
    sink: &mut impl Sink,
) -> Result<AttachOutcome> {
    let host = HostSample::start();
    let (mut source, backend_notice) = Source::open(opts)?;
    let started_unix_ns = events::time::now_unix_ns();
    let attach_report = source.report(opts);
    let kernel_release = kernel_release();
    opts.status.send(Status::Attached(&attach_report));
    sink.attached(&Attached {
        backend: source.name(),
        kernel_release: &kernel_release,
        started_unix_ns,
        probes: &attach_report,
        filter: &opts.filter,
        names: &source.name_sources(),
    })?;
    if let Some(r) = &opts.ready {
        let _ = r.send(());
    }
    let mut tally = Tally::new(opts.filter.pid);
    record(&mut source, opts, stop, &mut tally, sink).await?;
    opts.status.send(Status::Stopped);
    let end_unix_ns = events::time::now_unix_ns();
    let names = source.name_sources();
    let backend = source.name();
    let mut late = Vec::new();
    // Go clients probed at exec joined the probes while recording.
    let attach_report = source.report(opts);
    let end = source.stop(tally.live.events, &mut late)?;
    for item in &late {
        if let Observed::Wire(_) = item {
            tally.wire_events += 1;
        }
        sink.flushed(item);
    }
    let host = host.finish();
    Ok(AttachOutcome {
        attach: attach_report,
        stats: end.stats,
        decode_errors: end.decode_errors,
        events: tally.live.events,
        pid_filtered: tally.pid_filtered,
        by_kind: tally.by_kind(),
        start_unix_ns: started_unix_ns,
        end_unix_ns,
        kernel_release,
        names,
        backend,
        backend_notice,
        capture: end.capture,
        plaintext: end.plaintext,
        wire_events: tally.wire_events,
        drop_reasons: end.drop_reasons,
        host_counters: host.counters,
        port_range: host.port_range,
        census: host.census,
        worst_port_pressure: host.worst_port_pressure,
        host_errors: host.errors,
    })
}

/// The recording loop: waits for events, drains the ring on a timer, shows the live
/// counters once a second, until `stop` or the duration; then drains what is left.
async fn record(
    source: &mut Source,
    opts: &AttachOptions,
    stop: impl Future<Output = ()>,
    tally: &mut Tally,
    sink: &mut impl Sink,
) -> Result<()> {
    let deadline = tokio::time::sleep(opts.duration.unwrap_or(Duration::from_secs(86_400 * 365)));
    tokio::pin!(deadline);
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The kernel programs wake the reader only when the ring is filling (see
    // RING_WAKEUP_BYTES); below that, this timer drains it.
    let mut drain_tick = tokio::time::interval(Duration::from_millis(
        analyzer_common::RING_DRAIN_INTERVAL_MS,
    ));
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    let mut batch: Vec<Observed> = Vec::new();
    let mut last_events = 0u64;
    loop {
        let done = tokio::select! {
            r = source.recv(&mut batch) => { r?; false }
            () = &mut stop => true,
            () = &mut deadline => true,
            _ = drain_tick.tick() => { source.drain(&mut batch); false }
            _ = tick.tick() => {
                if opts.progress && started.elapsed() >= Duration::from_millis(900) {
                    let rate_per_s = tally.live.events - last_events;
                    last_events = tally.live.events;
                    opts.status.send(Status::Progress(&Progress {
                        elapsed: started.elapsed(),
                        rate_per_s,
                        open_sockets: tally.open_sockets(),
                        counters: tally.live,
                        lost: source.lost_so_far(),
                    }));
                }
                false
            }
        };
        if done {
            source.drain(&mut batch);
        }
        hand_on(&mut batch, tally, sink)?;
        if done {
            return Ok(());
        }
    }
}

/// Counts and filters a batch, and hands what is kept to the sink.
fn hand_on(batch: &mut Vec<Observed>, tally: &mut Tally, sink: &mut impl Sink) -> Result<()> {
    for item in batch.drain(..) {
        match &item {
            Observed::Wire(_) => tally.wire_events += 1,
            Observed::Kernel(ev) => {
                if !tally.keep(ev) {
                    continue;
                }
            }
        }
        sink.recorded(&item)?;
    }
    Ok(())
}

/// `uname -r` of this host.
fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}
