//! Where a session's events come from: the eBPF probes' ring buffer, or the raw-socket
//! capture; one interface over both for the collector.
use std::{collections::BTreeMap, sync::Arc};

use anyhow::{Context, Result};

use super::options::{AttachOptions, Backend, Status, StatusSink};
use crate::{
    ebpf::{
        decode::Record,
        probe::{AsyncEventReader, Probes},
        tracefs,
    },
    event::Observed,
    names::NameSources,
    plaintext::{Plaintext, PlaintextStats},
    raw::{
        flow::Inspect,
        source::{CaptureReport, RawOptions, RawSource},
        tls::keylog::KeyLog,
    },
    recording::{AttachReport, ProbeStats},
};

/// Where events come from.
#[expect(
    clippy::large_enum_variant,
    reason = "one per session, never moved in a loop"
)]
pub(super) enum Source {
    Ebpf {
        _mount: tracefs::Mount,
        probes: Probes,
        reader: AsyncEventReader,
        plaintext: Plaintext,
        records: Vec<Record>,
        status: StatusSink,
    },
    Raw(RawSource),
}

/// What a source counted, read when it stops.
pub(super) struct SourceEnd {
    pub stats: ProbeStats,
    pub drop_reasons: BTreeMap<String, u64>,
    pub decode_errors: u64,
    pub capture: Option<CaptureReport>,
    /// The eBPF backend's plaintext capture.
    pub plaintext: Option<PlaintextStats>,
}

impl Source {
    /// Opens the backend `opts` asks for; with `auto`, also why eBPF was not used.
    pub fn open(opts: &AttachOptions) -> Result<(Self, Option<String>)> {
        match opts.backend {
            Backend::Ebpf if opts.keylog.is_some() => anyhow::bail!(
                "--keylog needs the raw backend (--backend raw): the eBPF backend reads TLS \
                 plaintext through its uprobes on the TLS libraries instead"
            ),
            Backend::Ebpf => Ok((Self::ebpf(opts)?, None)),
            Backend::Raw => Ok((Self::raw(opts)?, None)),
            Backend::Auto if opts.keylog.is_some() => {
                let notice = "--keylog decrypts on the raw backend: using the raw-socket backend";
                opts.status.send(Status::Fallback { notice });
                Ok((Self::raw(opts)?, Some(notice.to_owned())))
            }
            Backend::Auto => match Self::ebpf(opts) {
                Ok(s) => Ok((s, None)),
                Err(e) => {
                    let notice = format!("eBPF unavailable ({e:#}); using the raw-socket backend");
                    // Told before trying the capture, which may fail too.
                    opts.status.send(Status::Fallback { notice: &notice });
                    Ok((Self::raw(opts)?, Some(notice)))
                }
            },
        }
    }

    fn ebpf(opts: &AttachOptions) -> Result<Self> {
        let mount = tracefs::ensure_mounted().context("tracefs")?;
        let mut probes = Probes::attach_with(
            mount.path(),
            &opts.filter,
            &crate::ebpf::tls_probes::TlsProbeOptions {
                no_openssl: false,
                go_exes: opts.tls_exes.clone(),
            },
        )
        .context("attach the kernel probes")?;
        let reader = probes
            .take_reader()
            .context("event reader")?
            .into_async()
            .context("register the ring buffer with epoll")?;
        Ok(Self::Ebpf {
            _mount: mount,
            probes,
            reader,
            plaintext: Plaintext::default(),
            records: Vec::new(),
            status: opts.status.clone(),
        })
    }

    fn raw(opts: &AttachOptions) -> Result<Self> {
        if opts.filter.pid.is_some() {
            anyhow::bail!(
                "--pid needs the eBPF backend: packets do not say which process sent them"
            );
        }
        let mut ro = RawOptions {
            ifaces: opts.ifaces.clone(),
            ports: opts.filter.ports.clone(),
            addrs: opts.filter.addrs.clone(),
            ..RawOptions::default()
        };
        if let Some(path) = &opts.keylog {
            let keylog = KeyLog::open(path).context("--keylog")?;
            ro.track.inspect = Some(Inspect::with_keylog(Arc::new(keylog)));
        }
        Ok(Self::Raw(
            RawSource::start(&ro).context("start the raw-socket capture")?,
        ))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Ebpf { .. } => "ebpf",
            Self::Raw(_) => "raw",
        }
    }

    pub fn report(&self, opts: &AttachOptions) -> AttachReport {
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

    pub fn name_sources(&self) -> NameSources {
        match self {
            Self::Ebpf { probes, .. } => probes.names().sources.clone(),
            Self::Raw(_) => NameSources {
                tcp_states: "wire".into(),
                rst_reasons: "none".into(),
                drop_reasons: "none".into(),
            },
        }
    }

    /// Ring-buffer loss so far (eBPF only; for the live counters).
    pub fn lost_so_far(&self) -> u64 {
        match self {
            Self::Ebpf { probes, .. } => probes.stats().unwrap_or_default().reserve_failed,
            Self::Raw(_) => 0,
        }
    }

    /// Waits for events and appends them to `out`.
    pub async fn recv(&mut self, out: &mut Vec<Observed>) -> Result<()> {
        match self {
            Self::Ebpf {
                reader,
                plaintext,
                records,
                probes,
                status,
                ..
            } => {
                reader.recv(records).await.context("read the ring buffer")?;
                read_records(records, plaintext, probes, status, out);
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
    pub fn drain(&mut self, out: &mut Vec<Observed>) {
        match self {
            Self::Ebpf {
                reader,
                plaintext,
                records,
                probes,
                status,
                ..
            } => {
                reader.drain(records);
                read_records(records, plaintext, probes, status, out);
            }
            Self::Raw(r) => r.drain(out),
        }
    }

    /// Stops recording and reads the counters. `emitted`: the events kept (the raw
    /// backend counts no more). Events the raw tracker still held go to `late`.
    pub fn stop(self, emitted: u64, late: &mut Vec<Observed>) -> Result<SourceEnd> {
        match self {
            Self::Ebpf {
                probes,
                reader,
                mut plaintext,
                ..
            } => {
                plaintext.finish_all(late);
                let names = probes.names().clone();
                let drop_reasons = probes
                    .drop_reason_counts()?
                    .into_iter()
                    .map(|(r, n)| (names.drop_reason(r), n))
                    .collect();
                Ok(SourceEnd {
                    stats: probes.stats()?,
                    drop_reasons,
                    decode_errors: reader.decode_errors(),
                    capture: None,
                    plaintext: Some(plaintext.stats()),
                })
            }
            Self::Raw(r) => {
                let cap = r.stop(late);
                let stats = ProbeStats {
                    emitted,
                    // Packets the kernel dropped before the capture read them: lost
                    // evidence.
                    reserve_failed: cap.drops(),
                    ..ProbeStats::default()
                };
                Ok(SourceEnd {
                    stats,
                    drop_reasons: BTreeMap::new(),
                    decode_errors: 0,
                    capture: Some(cap),
                    plaintext: None,
                })
            }
        }
    }
}

/// Hands on the records in ring order: kernel events as they are (after the plaintext
/// reader has learnt from them, so a connection's last facts come before its destroy),
/// captured calls as the wire facts they show; a Go client executed gets its probes.
fn read_records(
    records: &mut Vec<Record>,
    plaintext: &mut Plaintext,
    probes: &mut Probes,
    status: &StatusSink,
    out: &mut Vec<Observed>,
) {
    for r in records.drain(..) {
        match r {
            Record::Kernel(ev) => {
                plaintext.kernel(&ev, out);
                out.push(Observed::Kernel(ev));
            }
            Record::Data(d) => plaintext.data(&d, out),
            Record::Exec { pid, path } => match probes.exec_seen(pid, &path) {
                Some(Ok(what)) => status.send(Status::Probed { what: &what }),
                Some(Err(why)) => status.send(Status::ProbeFailed { why: &why }),
                None => {}
            },
        }
    }
}
