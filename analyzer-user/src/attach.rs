//! `analyzer attach`: load and attach the probes, drain the ring buffer until stopped,
//! hand every event to the caller (the correlation), optionally log it raw, show live
//! counters, and sample the host's counters at start and end.
//!
//! The caller decides what to do with the events; this module owns the kernel side of a
//! session and its bookkeeping, so the command line and the tests share one path.
use std::{
    collections::BTreeMap,
    fs::File,
    future::Future,
    io::{BufWriter, IsTerminal, Write},
    path::PathBuf,
    time::{Duration, Instant},
};

// Keys are kernel addresses, cookies and tuples, hashed per event on the hot path:
// foldhash instead of SipHash (a third of the reader's CPU under churn, by perf).
use foldhash::HashMap;

use analyzer_common::EventKind;
use anyhow::{Context, Result};
use serde::Serialize;

use crate::{
    ebpf::{
        probe::{AsyncEventReader, Probes},
        tracefs,
    },
    event::wire_fact::WireEvent,
    event::{KernelEvent, Observed},
    host::{self, CensusSummary, CounterDeltas, PortPressure, PortRange, Snapshot, SocketCensus},
    names::{NameSources, TcpState},
    offline::{KernelLogEnd, KernelLogHeader, KernelLogTrailer},
    raw::source::{CaptureReport, RawOptions, RawSource},
    recording::{AttachReport, FilterConfig, ProbeStats},
    report::Run,
    rules::{DestPorts, HostEvidence},
};

/// How a session runs.
#[derive(Clone, Debug, Default)]
pub struct AttachOptions {
    /// In-kernel filter (ports, addresses).
    pub filter: FilterConfig,
    /// Keep only sockets whose `connect()` ran in this process (learned from the
    /// transition to SYN_SENT, which runs in the caller's context). Sockets connected
    /// before the session, and server-side sockets, have no known pid and are left out.
    pub pid: Option<u32>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Write every kept event as one JSON line here, after a header line.
    pub raw_events: Option<PathBuf>,
    /// Live counters on stderr.
    pub progress: bool,
    /// Told once the probes are attached (tests and drivers start their load then).
    pub ready: Option<std::sync::mpsc::SyncSender<()>>,
    /// Which backend records: eBPF tracepoints, raw-socket capture, or eBPF with the
    /// capture as fallback.
    pub backend: Backend,
    /// Interfaces the raw backend captures on (default `lo`).
    pub ifaces: Vec<String>,
}

/// Which backend records the evidence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// eBPF; the raw-socket capture when eBPF cannot load (with a notice saying why).
    #[default]
    Auto,
    /// Kernel tracepoints (needs CAP_BPF and CAP_PERFMON, or root, and tracefs).
    Ebpf,
    /// AF_PACKET capture (needs CAP_NET_RAW): TCP from the wire, plus TLS and h2c facts.
    Raw,
}

/// Where events come from.
#[expect(
    clippy::large_enum_variant,
    reason = "one per session, never moved in a loop"
)]
enum Source {
    Ebpf {
        _mount: tracefs::Mount,
        probes: Probes,
        reader: AsyncEventReader,
    },
    Raw(RawSource),
}

impl Source {
    fn open(opts: &AttachOptions) -> Result<(Self, Option<String>)> {
        let ebpf = || -> Result<Self> {
            let mount = tracefs::ensure_mounted().context("tracefs")?;
            let mut probes =
                Probes::attach(mount.path(), &opts.filter).context("attach the kernel probes")?;
            let reader = probes
                .take_reader()
                .context("event reader")?
                .into_async()
                .context("register the ring buffer with epoll")?;
            Ok(Self::Ebpf {
                _mount: mount,
                probes,
                reader,
            })
        };
        let raw = || -> Result<Self> {
            if opts.pid.is_some() {
                anyhow::bail!(
                    "--pid needs the eBPF backend: packets do not say which process sent them"
                );
            }
            let ro = RawOptions {
                ifaces: opts.ifaces.clone(),
                ports: opts.filter.ports.clone(),
                addrs: opts.filter.addrs.clone(),
                ..RawOptions::default()
            };
            Ok(Self::Raw(
                RawSource::start(&ro).context("start the raw-socket capture")?,
            ))
        };
        match opts.backend {
            Backend::Ebpf => Ok((ebpf()?, None)),
            Backend::Raw => Ok((raw()?, None)),
            Backend::Auto => match ebpf() {
                Ok(s) => Ok((s, None)),
                Err(e) => {
                    let notice = format!("eBPF unavailable ({e:#}); using the raw-socket backend");
                    eprintln!("notice: {notice}");
                    Ok((raw()?, Some(notice)))
                }
            },
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Ebpf { .. } => "ebpf",
            Self::Raw(_) => "raw",
        }
    }

    fn report(&self, opts: &AttachOptions) -> AttachReport {
        match self {
            Self::Ebpf { probes, .. } => probes.report().clone(),
            Self::Raw(_) => AttachReport {
                attached: if opts.ifaces.is_empty() {
                    vec!["raw:lo".into()]
                } else {
                    opts.ifaces.iter().map(|i| format!("raw:{i}")).collect()
                },
                missing: Vec::new(),
            },
        }
    }

    fn name_sources(&self) -> NameSources {
        match self {
            Self::Ebpf { probes, .. } => probes.names().sources.clone(),
            Self::Raw(_) => NameSources {
                tcp_states: "wire".into(),
                rst_reasons: "none".into(),
                drop_reasons: "none".into(),
            },
        }
    }

    /// Waits for events and appends them to `out`.
    async fn recv(&mut self, kbuf: &mut Vec<KernelEvent>, out: &mut Vec<Observed>) -> Result<()> {
        match self {
            Self::Ebpf { reader, .. } => {
                reader.recv(kbuf).await.context("read the ring buffer")?;
                out.extend(kbuf.drain(..).map(Observed::Kernel));
                Ok(())
            }
            Self::Raw(r) => match r.recv().await {
                Some(mut b) => {
                    out.append(&mut b);
                    Ok(())
                }
                None => anyhow::bail!("every capture thread ended (see the warnings above)"),
            },
        }
    }

    /// Appends what is ready without waiting.
    fn drain(&mut self, kbuf: &mut Vec<KernelEvent>, out: &mut Vec<Observed>) {
        match self {
            Self::Ebpf { reader, .. } => {
                reader.drain(kbuf);
                out.extend(kbuf.drain(..).map(Observed::Kernel));
            }
            Self::Raw(r) => r.drain(out),
        }
    }
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

/// Live counters, also shown on stderr while attached.
#[derive(Clone, Copy, Debug, Default)]
struct Live {
    events: u64,
    resets_rx: u64,
    resets_tx: u64,
    retrans: u64,
    syn_retrans: u64,
    drops: u64,
}

/// Runs a session until `stop` resolves, the duration passes, or SIGTERM/SIGINT arrive
/// (the caller's `stop` usually covers the signals). Every kept event goes to
/// `on_event`, in ring-buffer order.
pub async fn run(
    opts: &AttachOptions,
    stop: impl Future<Output = ()>,
    mut on_event: impl FnMut(&Observed),
) -> Result<AttachOutcome> {
    let mut host_errors = Vec::new();
    let host_before = Snapshot::read()
        .map_err(|e| host_errors.push(format!("host counters at start: {e}")))
        .ok();
    let (mut source, backend_notice) = Source::open(opts)?;
    let start_unix_ns = events::time::now_unix_ns();
    let attach_report = source.report(opts);
    {
        let rep = &attach_report;
        eprintln!("attached: {}", rep.attached.join(", "));
        for m in &rep.missing {
            eprintln!("missing: {} ({})", m.tracepoint, m.reason);
        }
    }
    let mut raw = match &opts.raw_events {
        None => None,
        Some(p) => {
            let mut w =
                BufWriter::new(File::create(p).with_context(|| format!("create {}", p.display()))?);
            let header = KernelLogHeader::new(
                kernel_release(),
                start_unix_ns,
                attach_report.clone(),
                opts.filter.clone(),
                source.name_sources(),
            );
            w.write_all(header.to_line().as_bytes())
                .with_context(|| format!("write {}", p.display()))?;
            Some((p.clone(), w))
        }
    };
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
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    if let Some(r) = &opts.ready {
        let _ = r.send(());
    }

    let mut batch: Vec<Observed> = Vec::new();
    let mut kbuf: Vec<KernelEvent> = Vec::new();
    let mut wire_events = 0u64;
    let mut live = Live::default();
    let mut last_events = 0u64;
    // Counted by kind value on the hot path; named once at the end.
    let mut kind_counts = [0u64; EventKind::ALL.len() + 1];
    let mut pids: HashMap<u64, u32> = HashMap::default();
    let mut pid_filtered = 0u64;
    let mut open_sockets: HashMap<u64, ()> = HashMap::default();
    loop {
        let done = tokio::select! {
            r = source.recv(&mut kbuf, &mut batch) => { r?; false }
            () = &mut stop => true,
            () = &mut deadline => true,
            _ = drain_tick.tick() => { source.drain(&mut kbuf, &mut batch); false }
            _ = tick.tick() => {
                if opts.progress && started.elapsed() >= Duration::from_millis(900) {
                    let stats = match &source {
                        Source::Ebpf { probes, .. } => probes.stats().unwrap_or_default(),
                        Source::Raw(_) => ProbeStats::default(),
                    };
                    let rate = live.events - last_events;
                    last_events = live.events;
                    show(tty, started.elapsed(), rate, open_sockets.len(), &live, stats.reserve_failed);
                }
                false
            }
        };
        if done {
            source.drain(&mut kbuf, &mut batch);
        }
        for item in batch.drain(..) {
            let ev = match item {
                Observed::Kernel(ev) => ev,
                Observed::Wire(w) => {
                    wire_events += 1;
                    if let Some((p, out)) = raw.as_mut() {
                        serde_json::to_writer(&mut *out, &WireLine { wire: &w })
                            .and_then(|()| out.write_all(b"\n").map_err(serde_json::Error::io))
                            .with_context(|| format!("write {}", p.display()))?;
                    }
                    on_event(&Observed::Wire(w));
                    continue;
                }
            };
            if let Some(want) = opts.pid {
                if ev.event == EventKind::StateChange && ev.new_state == Some(TcpState::SynSent) {
                    pids.insert(ev.skaddr, ev.pid);
                }
                let keep = pids.get(&ev.skaddr).is_some_and(|p| *p == want);
                if ev.event == EventKind::DestroySock {
                    pids.remove(&ev.skaddr);
                }
                if !keep {
                    pid_filtered += 1;
                    continue;
                }
            }
            count(&ev, &mut live, &mut open_sockets);
            kind_counts[ev.event as usize % kind_counts.len()] += 1;
            if let Some((p, w)) = raw.as_mut() {
                serde_json::to_writer(&mut *w, &ev)
                    .and_then(|()| w.write_all(b"\n").map_err(serde_json::Error::io))
                    .with_context(|| format!("write {}", p.display()))?;
            }
            on_event(&Observed::Kernel(ev));
        }
        if done {
            break;
        }
    }
    if opts.progress && tty {
        eprintln!();
    }
    let end_unix_ns = events::time::now_unix_ns();
    let name_sources = source.name_sources();
    let backend = source.name();
    let (stats, drop_reasons, decode_errors, capture) = match source {
        Source::Ebpf { probes, reader, .. } => {
            let names = probes.names().clone();
            let drop_reasons = probes
                .drop_reason_counts()?
                .into_iter()
                .map(|(r, n)| (names.drop_reason(r), n))
                .collect();
            (probes.stats()?, drop_reasons, reader.decode_errors(), None)
        }
        Source::Raw(r) => {
            let mut late = Vec::new();
            let cap = r.stop(&mut late);
            for item in late {
                if let Observed::Wire(_) = &item {
                    wire_events += 1;
                }
                on_event(&item);
            }
            let stats = ProbeStats {
                emitted: live.events,
                // Packets the kernel dropped before the capture read them: lost evidence.
                reserve_failed: cap.drops(),
                ..ProbeStats::default()
            };
            (stats, BTreeMap::new(), 0, Some(cap))
        }
    };
    let host_counters = match (&host_before, Snapshot::read()) {
        (Some(b), Ok(a)) => Some(host::delta(b, &a)),
        (_, Err(e)) => {
            host_errors.push(format!("host counters at end: {e}"));
            None
        }
        (None, Ok(_)) => None,
    };
    let port_range = PortRange::read()
        .map_err(|e| host_errors.push(format!("ephemeral port range: {e}")))
        .ok();
    let census = SocketCensus::read()
        .map_err(|e| host_errors.push(format!("socket census: {e}")))
        .ok();
    let worst_port_pressure = match (&port_range, &census) {
        (Some(r), Some(c)) => host::worst_port_pressure(r, c),
        _ => None,
    };
    let outcome = AttachOutcome {
        attach: attach_report,
        stats,
        decode_errors,
        events: live.events,
        pid_filtered,
        by_kind: EventKind::ALL
            .into_iter()
            .filter(|k| kind_counts[*k as usize] > 0)
            .map(|k| (kind_name(k), kind_counts[k as usize]))
            .collect(),
        start_unix_ns,
        end_unix_ns,
        kernel_release: kernel_release(),
        names: name_sources,
        backend,
        backend_notice,
        capture,
        wire_events,
        drop_reasons,
        host_counters,
        port_range,
        census: census.map(|c| c.summary(5)),
        worst_port_pressure,
        host_errors,
    };
    if let Some((p, mut w)) = raw {
        let trailer = KernelLogTrailer {
            end: KernelLogEnd {
                ended_unix_ns: outcome.end_unix_ns,
                lost_events: outcome.stats.reserve_failed,
                read_failures: outcome.stats.read_failed,
                decode_errors: outcome.decode_errors,
                host_evidence: Some(outcome.host_evidence()),
                host: Some(outcome.host_json()),
            },
        };
        w.write_all(trailer.to_line().as_bytes())
            .and_then(|()| w.flush())
            .with_context(|| format!("write {}", p.display()))?;
    }
    Ok(outcome)
}

impl AttachOutcome {
    /// The host facts the rules use.
    pub fn host_evidence(&self) -> HostEvidence {
        let c = |name: &str| {
            self.host_counters
                .as_ref()
                .and_then(|d| d.get(name))
                .and_then(|d| d.delta)
        };
        HostEvidence {
            listen_overflows: c("TcpExt.ListenOverflows"),
            listen_drops: c("TcpExt.ListenDrops"),
            syn_retrans: c("TcpExt.TCPSynRetrans"),
            tcp_timeouts: c("TcpExt.TCPTimeouts"),
            port_range: self.port_range.as_ref().map(|r| (r.low, r.high)),
            busiest_destinations: self
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

    /// The host facts as the report shows them: counters that moved, drop reasons, the
    /// port range, the socket census, port pressure, and what could not be read.
    pub fn host_json(&self) -> serde_json::Value {
        serde_json::json!({
            "counters": self.host_counters.as_ref().map(|d| d.nonzero().cloned().collect::<Vec<_>>()),
            "drop_reasons": self.drop_reasons,
            "port_range": self.port_range,
            "sockets": self.census,
            "worst_port_pressure": self.worst_port_pressure,
            "errors": self.host_errors,
        })
    }

    /// The report's run section from this session.
    pub fn run_facts(&self, filters: &FilterConfig) -> Run {
        Run {
            kernel_release: self.kernel_release.clone(),
            started_unix_ns: self.start_unix_ns,
            ended_unix_ns: self.end_unix_ns,
            probes: self.attach.clone(),
            backend: self.backend.to_owned(),
            backend_notice: self.backend_notice.clone(),
            capture: self.capture.clone(),
            filters: filters.clone(),
            names: Some(self.names.clone()),
            lost_events: self.stats.reserve_failed,
            read_failures: self.stats.read_failed,
            decode_errors: self.decode_errors,
            ..Run::default()
        }
    }
}

fn count(ev: &KernelEvent, live: &mut Live, open: &mut HashMap<u64, ()>) {
    live.events += 1;
    match ev.event {
        EventKind::ReceiveReset => live.resets_rx += 1,
        EventKind::SendReset => live.resets_tx += 1,
        EventKind::Retransmit => {
            live.retrans += 1;
            if ev.state == Some(TcpState::SynSent) {
                live.syn_retrans += 1;
            }
        }
        EventKind::Drop => live.drops += 1,
        EventKind::DestroySock => {
            open.remove(&ev.skaddr);
        }
        EventKind::StateChange if ev.skaddr != 0 => {
            if ev.new_state == Some(TcpState::Close) {
                open.remove(&ev.skaddr);
            } else {
                open.insert(ev.skaddr, ());
            }
        }
        _ => {}
    }
}

fn show(tty: bool, elapsed: Duration, rate: u64, conns: usize, l: &Live, lost: u64) {
    let line = format!(
        "analyzer {:>6.1}s  events {rate}/s ({} total)  conns {conns}  resets rx {} tx {}  \
         retrans {} (SYN {})  drops {}  lost {lost}",
        elapsed.as_secs_f64(),
        l.events,
        l.resets_rx,
        l.resets_tx,
        l.retrans,
        l.syn_retrans,
        l.drops,
    );
    if tty {
        eprint!("\r\x1b[2K{line}");
    } else {
        eprintln!("{line}");
    }
}

/// The snake_case name of an event kind, as in the JSON.
pub fn kind_name(k: EventKind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{k:?}"))
}

/// A wire fact as a line of the raw event log (`{"wire": {...}}`), apart from kernel
/// event lines.
#[derive(Serialize)]
struct WireLine<'a> {
    wire: &'a WireEvent,
}

/// `uname -r` of this host.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}
