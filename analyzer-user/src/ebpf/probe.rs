//! Loading and attaching the kernel programs, and draining their ring buffer.
//!
//! The object built by `cargo xtask build-ebpf` is embedded in the binary. Before loading,
//! each program's tracepoint layout is read from tracefs and written into the program's
//! offsets global; a tracepoint this kernel lacks is reported as missing and the others
//! still attach.
use std::{
    io,
    net::IpAddr,
    os::fd::{AsRawFd, RawFd},
    path::Path,
};

use analyzer_common::{
    AF_INET, AF_INET6, DROP_REASON_SLOTS, DROP_REASONS_MAP, EXEC_LAYOUT_GLOBAL, EventKind,
    ExecLayout, FD_LAYOUT_GLOBAL, FIELD_ABSENT, FILTER_ADDRS, FILTER_GLOBAL, FILTER_PORTS,
    FdLayout, Filter, GO_CONN_GLOBAL, LAYOUTS_GLOBAL, Layouts, STATS_MAP, StatSlot,
    TCP_SOCK_GLOBAL, TcpSockLayout, TpLayout,
};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
};
use serde::Serialize;
use tokio::io::{Interest, unix::AsyncFd};

use super::{
    decode::{Record, decode_record},
    kernel_names::KernelNames,
    syscalls, tcp_sock,
    tls_probes::{self, TlsProbeOptions},
    tracefs::{Format, attach_tracepoint},
};

/// The running kernel's BTF.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
use crate::{
    error::{Error, error_chain},
    event::{Clock, KernelEvent},
    recording::{AttachReport, FilterConfig, Missing, ProbeStats},
};

/// The kernel object, built by `cargo xtask build-ebpf` (located by build.rs).
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("FAULTLINE_EBPF_OBJECT_PATH"));

/// A tracepoint the analyzer uses: `(group, name, program name in the object)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Tracepoint {
    pub group: &'static str,
    pub name: &'static str,
    #[serde(skip)]
    pub program: &'static str,
    #[serde(skip)]
    pub kind: EventKind,
}

impl Tracepoint {
    /// `group:name`.
    pub fn full_name(&self) -> String {
        format!("{}:{}", self.group, self.name)
    }
}

/// Every tracepoint the analyzer attaches to.
pub const TRACEPOINTS: &[Tracepoint] = &[
    Tracepoint {
        group: "sock",
        name: "inet_sock_set_state",
        program: "inet_sock_set_state",
        kind: EventKind::StateChange,
    },
    Tracepoint {
        group: "tcp",
        name: "tcp_receive_reset",
        program: "tcp_receive_reset",
        kind: EventKind::ReceiveReset,
    },
    Tracepoint {
        group: "tcp",
        name: "tcp_send_reset",
        program: "tcp_send_reset",
        kind: EventKind::SendReset,
    },
    Tracepoint {
        group: "tcp",
        name: "tcp_retransmit_skb",
        program: "tcp_retransmit_skb",
        kind: EventKind::Retransmit,
    },
    Tracepoint {
        group: "tcp",
        name: "tcp_destroy_sock",
        program: "tcp_destroy_sock",
        kind: EventKind::DestroySock,
    },
    Tracepoint {
        group: "sock",
        name: "inet_sk_error_report",
        program: "inet_sk_error_report",
        kind: EventKind::ErrorReport,
    },
    Tracepoint {
        group: "skb",
        name: "kfree_skb",
        program: "kfree_skb",
        kind: EventKind::Drop,
    },
];

/// Loaded and attached programs. Dropping it detaches everything.
pub struct Probes {
    // Keeps programs, links and maps alive; Go binaries found at exec attach to it.
    ebpf: Ebpf,
    exec: tls_probes::ExecWatch,
    stats: PerCpuArray<MapData, u64>,
    drop_reasons: PerCpuArray<MapData, u64>,
    reader: Option<EventReader>,
    report: AttachReport,
    names: KernelNames,
}

/// Detaching waits for an RCU grace period per perf event (`perf_uprobe_destroy`,
/// `perf_trace_destroy` → `synchronize_rcu`): 60-130 ms each on a busy host, so the
/// thirty-odd programs detached one after another held the analyzer's exit for seconds.
/// Each program detaches on a thread of its own, and the waits overlap.
impl Drop for Probes {
    fn drop(&mut self) {
        let programs: Vec<&mut aya::programs::Program> =
            self.ebpf.programs_mut().map(|(_, p)| p).collect();
        std::thread::scope(|s| {
            for p in programs {
                s.spawn(move || {
                    // A failure to detach leaves nothing to do: the fds close with the
                    // process.
                    let _ = match p {
                        aya::programs::Program::TracePoint(t) => t.unload(),
                        aya::programs::Program::UProbe(u) => u.unload(),
                        _ => Ok(()),
                    };
                });
            }
        });
    }
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes")
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl Probes {
    /// Reads tracepoint layouts under the tracefs mount `tracefs`, loads the embedded
    /// object with them and the filter, and attaches every program whose tracepoint
    /// exists on this kernel. A missing tracepoint is reported; the rest still attach.
    /// Unless the filter says `no_plaintext`, the plaintext capture attaches too, with
    /// the system's libssl probed.
    pub fn attach(tracefs: &Path, filter: &FilterConfig) -> Result<Self, Error> {
        Self::attach_with(tracefs, filter, &TlsProbeOptions::default())
    }

    /// [`Self::attach`], probing the TLS libraries `tls` names.
    pub fn attach_with(
        tracefs: &Path,
        filter: &FilterConfig,
        tls: &TlsProbeOptions,
    ) -> Result<Self, Error> {
        let mut report = AttachReport::default();
        let mut layouts = Layouts::ABSENT;
        for tp in TRACEPOINTS {
            match tracepoint_layout(tracefs, tp) {
                Ok(l) => layouts.tp[tp.kind as usize] = l,
                Err(e) => report.missing.push(Missing {
                    tracepoint: tp.full_name(),
                    reason: error_chain(&e),
                }),
            }
        }
        let kfilter = kernel_filter(filter).map_err(|what| Error::Config { what })?;
        let tcp_sock = tcp_sock::layout(Path::new(VMLINUX_BTF)).unwrap_or_else(|why| {
            tracing::warn!(%why, "no TCP counters: the rules that need them stay silent");
            TcpSockLayout::ABSENT
        });
        let (fd_layout, exec_layout) = capture_layouts(tracefs, filter, &mut report);
        let mut ebpf = EbpfLoader::new()
            .override_global(LAYOUTS_GLOBAL, &layouts, true)
            .override_global(FILTER_GLOBAL, &kfilter, true)
            .override_global(TCP_SOCK_GLOBAL, &tcp_sock, true)
            .override_global(FD_LAYOUT_GLOBAL, &fd_layout, true)
            .override_global(GO_CONN_GLOBAL, &tls_probes::go_conn_layout(), true)
            .override_global(EXEC_LAYOUT_GLOBAL, &exec_layout, true)
            .load(OBJECT)
            .map_err(Error::Load)?;

        for tp in TRACEPOINTS {
            let full = tp.full_name();
            if report.missing.iter().any(|m| m.tracepoint == full) {
                continue;
            }
            match attach_tracepoint(&mut ebpf, tp.program, tp.group, tp.name) {
                Ok(()) => report.attached.push(full),
                Err(e) => report.missing.push(Missing {
                    tracepoint: full,
                    reason: error_chain(&e),
                }),
            }
        }
        if fd_layout.present != 0 {
            syscalls::attach(&mut ebpf, tracefs, &mut report);
            tls_probes::attach(&mut ebpf, tls, &mut report);
            if exec_layout.present != 0 {
                tls_probes::attach_exec(&mut ebpf, &mut report);
            }
        }
        if report.attached.is_empty() {
            return Err(Error::NothingAttached {
                missing: report
                    .missing
                    .iter()
                    .map(|m| format!("{} ({})", m.tracepoint, m.reason))
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }

        let per_cpu = |ebpf: &mut Ebpf, name: &str| -> Result<PerCpuArray<MapData, u64>, Error> {
            PerCpuArray::try_from(take_map(ebpf, name)?).map_err(|source| Error::Map {
                what: format!("open map {name}"),
                source,
            })
        };
        let stats = per_cpu(&mut ebpf, STATS_MAP)?;
        let drop_reasons = per_cpu(&mut ebpf, DROP_REASONS_MAP)?;
        let ring = RingBuf::try_from(take_map(&mut ebpf, analyzer_common::EVENTS_MAP)?).map_err(
            |source| Error::Map {
                what: "open ring buffer EVENTS".into(),
                source,
            },
        )?;
        let names = KernelNames::load(tracefs, Path::new(VMLINUX_BTF));
        Ok(Self {
            ebpf,
            exec: tls_probes::ExecWatch::default(),
            stats,
            drop_reasons,
            reader: Some(EventReader {
                ring,
                clock: Clock::now(),
                names: names.clone(),
                decode_errors: 0,
            }),
            report,
            names,
        })
    }

    /// Process `pid` executed `path` (an exec record): probes it when it is a Go client
    /// (see [`tls_probes::ExecWatch::exec`]).
    pub fn exec_seen(&mut self, pid: u32, path: &Path) -> Option<Result<String, String>> {
        self.exec.exec(&mut self.ebpf, pid, path, &mut self.report)
    }

    /// What attached and what is missing.
    pub fn report(&self) -> &AttachReport {
        &self.report
    }

    /// This kernel's names for states and reasons.
    pub fn names(&self) -> &KernelNames {
        &self.names
    }

    /// Takes the event reader (once).
    pub fn take_reader(&mut self) -> Option<EventReader> {
        self.reader.take()
    }

    /// Reads the programs' counters, summed over CPUs.
    pub fn stats(&self) -> Result<ProbeStats, Error> {
        let slot = |s: StatSlot| -> Result<u64, Error> {
            let per_cpu = self
                .stats
                .get(&(s as u32), 0)
                .map_err(|source| Error::Map {
                    what: "read STATS".into(),
                    source,
                })?;
            Ok(per_cpu.iter().sum())
        };
        Ok(ProbeStats {
            emitted: slot(StatSlot::Emitted)?,
            reserve_failed: slot(StatSlot::ReserveFailed)?,
            read_failed: slot(StatSlot::ReadFailed)?,
            filtered: slot(StatSlot::Filtered)?,
            track_full: slot(StatSlot::TrackFull)?,
            data_emitted: slot(StatSlot::DataEmitted)?,
            data_read_failed: slot(StatSlot::DataReadFailed)?,
        })
    }

    /// Host-wide IP packet drops so far, by reason value (non-zero slots only).
    pub fn drop_reason_counts(&self) -> Result<Vec<(u32, u64)>, Error> {
        let mut out = Vec::new();
        for r in 0..DROP_REASON_SLOTS {
            let per_cpu = self.drop_reasons.get(&r, 0).map_err(|source| Error::Map {
                what: "read DROP_REASONS".into(),
                source,
            })?;
            let n: u64 = per_cpu.iter().sum();
            if n > 0 {
                out.push((r, n));
            }
        }
        Ok(out)
    }
}

/// Where the plaintext capture finds a descriptor's socket and an executed file's name
/// on this kernel; both absent with `no_plaintext`, or where this kernel lacks them
/// (said in `report`).
fn capture_layouts(
    tracefs: &Path,
    filter: &FilterConfig,
    report: &mut AttachReport,
) -> (FdLayout, ExecLayout) {
    let exec_layout = if filter.no_plaintext {
        ExecLayout {
            present: 0,
            filename_loc: 0,
        }
    } else {
        tls_probes::exec_layout(tracefs).unwrap_or_else(|e| {
            report.missing.push(Missing {
                tracepoint: "sched:sched_process_exec".into(),
                reason: error_chain(&e),
            });
            ExecLayout {
                present: 0,
                filename_loc: 0,
            }
        })
    };
    let fd_layout = if filter.no_plaintext {
        FdLayout::ABSENT
    } else {
        syscalls::fd_layout(Path::new(VMLINUX_BTF)).unwrap_or_else(|why| {
            report.missing.push(Missing {
                tracepoint: "syscalls (plaintext capture)".into(),
                reason: why,
            });
            FdLayout::ABSENT
        })
    };
    (fd_layout, exec_layout)
}

fn take_map(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map, Error> {
    ebpf.take_map(name).ok_or_else(|| Error::MissingObject {
        kind: "map",
        name: name.to_owned(),
    })
}

/// Where the fields of `tp` sit on this kernel, from its format file. Fields are found
/// by name and size, whatever the tracepoint; what the program needs must be there.
pub fn tracepoint_layout(tracefs: &Path, tp: &Tracepoint) -> Result<TpLayout, Error> {
    let f = Format::read(tracefs, tp.group, tp.name)?;
    layout_from_format(&f, tp.kind)
}

/// See [`tracepoint_layout`]; separate for tests.
pub fn layout_from_format(f: &Format, kind: EventKind) -> Result<TpLayout, Error> {
    let opt = |name: &'static str, size| -> Result<u32, Error> {
        Ok(f.offset_sized(name, size)?.unwrap_or(FIELD_ABSENT))
    };
    let either = |a: &'static str, b: &'static str, size| -> Result<u32, Error> {
        let x = opt(a, size)?;
        if x != FIELD_ABSENT {
            Ok(x)
        } else {
            opt(b, size)
        }
    };
    let mut l = TpLayout::ABSENT;
    l.present = 1;
    l.skaddr = opt("skaddr", 8)?;
    l.skbaddr = opt("skbaddr", 8)?;
    l.sock_cookie = opt("sock_cookie", 8)?;
    l.protocol = opt("protocol", 2)?;
    l.state = either("state", "oldstate", 4)?;
    l.new_state = opt("newstate", 4)?;
    l.reason = opt("reason", 4)?;
    l.error = either("error", "err", 4)?;
    l.rx_sk = opt("rx_sk", 8)?;
    l.location = opt("location", 8)?;
    if kind == EventKind::Drop {
        if l.reason == FIELD_ABSENT || l.protocol == FIELD_ABSENT {
            return Err(Error::FormatField {
                tracepoint: f.tracepoint.clone(),
                field: "reason",
                problem: "or `protocol` is missing (kernel older than 5.17?)".into(),
            });
        }
        return Ok(l);
    }
    // Addresses: separate fields, or whole socket addresses (tcp_send_reset on 6.x).
    let sockaddr_size = |name: &str| f.fields.get(name).map(|x| x.size);
    if sockaddr_size("saddr").is_some_and(|s| s >= 16) {
        l.sockaddr_src = f.fields["saddr"].offset;
        l.sockaddr_dst = f.require_min("daddr", 16)?;
    } else {
        l.sport = f.require("sport", 2)?;
        l.dport = f.require("dport", 2)?;
        l.family = f.require("family", 2)?;
        l.saddr = f.require("saddr", 4)?;
        l.daddr = f.require("daddr", 4)?;
        l.saddr_v6 = opt("saddr_v6", 16)?;
        l.daddr_v6 = opt("daddr_v6", 16)?;
    }
    Ok(l)
}

/// The kernel form of a filter. Errors when more ports or addresses are given than it
/// holds.
fn kernel_filter(filter: &FilterConfig) -> Result<Filter, String> {
    if filter.ports.len() > FILTER_PORTS {
        return Err(format!(
            "at most {FILTER_PORTS} ports can be filtered in the kernel, got {}",
            filter.ports.len()
        ));
    }
    if filter.addrs.len() > FILTER_ADDRS {
        return Err(format!(
            "at most {FILTER_ADDRS} addresses can be filtered in the kernel, got {}",
            filter.addrs.len()
        ));
    }
    let mut f = Filter::ALL;
    for (i, p) in filter.ports.iter().enumerate() {
        f.ports[i] = *p;
    }
    f.nports = filter.ports.len() as u32;
    for (i, a) in filter.addrs.iter().enumerate() {
        match a {
            IpAddr::V4(v4) => {
                f.addrs[i][..4].copy_from_slice(&v4.octets());
                f.addr_families[i] = AF_INET;
            }
            IpAddr::V6(v6) => {
                f.addrs[i] = v6.octets();
                f.addr_families[i] = AF_INET6;
            }
        }
    }
    f.naddrs = filter.addrs.len() as u32;
    f.all_drops = u32::from(filter.all_drops);
    Ok(f)
}

/// Drains the programs' ring buffer and decodes what it finds.
pub struct EventReader {
    ring: RingBuf<MapData>,
    clock: Clock,
    names: KernelNames,
    decode_errors: u64,
}

impl std::fmt::Debug for EventReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventReader")
            .field("decode_errors", &self.decode_errors)
            .finish_non_exhaustive()
    }
}

impl EventReader {
    /// Decodes every record currently in the ring into `out`; returns how many were read
    /// (including undecodable ones, which are counted in [`Self::decode_errors`]).
    pub fn drain_records(&mut self, out: &mut Vec<Record>) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            n += 1;
            match decode_record(&item, self.clock, &self.names) {
                Ok(r) => out.push(r),
                Err(e) => {
                    self.decode_errors += 1;
                    tracing::warn!(error = %e, "undecodable kernel record");
                }
            }
        }
        n
    }

    /// [`Self::drain_records`], keeping the kernel events only (captured calls are
    /// dropped).
    pub fn drain(&mut self, out: &mut Vec<KernelEvent>) -> usize {
        let mut records = Vec::new();
        let n = self.drain_records(&mut records);
        out.extend(records.into_iter().filter_map(|r| match r {
            Record::Kernel(ev) => Some(ev),
            Record::Data(_) | Record::Exec { .. } => None,
        }));
        n
    }

    /// Records that could not be decoded so far.
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors
    }

    /// Wraps the reader for use on a tokio runtime.
    pub fn into_async(self) -> io::Result<AsyncEventReader> {
        // SAFETY: the fd belongs to the ring buffer map owned by `self`; it stays open
        // and unchanged until the AsyncFd (which owns `self`) is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(self, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(AsyncEventReader { fd })
    }
}

impl AsRawFd for EventReader {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

/// An [`EventReader`] that waits for the ring buffer's epoll readiness.
#[derive(Debug)]
pub struct AsyncEventReader {
    fd: AsyncFd<EventReader>,
}

impl AsyncEventReader {
    /// Waits until records are available, then drains them into `out`.
    pub async fn recv(&mut self, out: &mut Vec<Record>) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable_mut().await?;
            let n = guard.get_inner_mut().drain_records(out);
            guard.clear_ready();
            if n > 0 {
                return Ok(n);
            }
        }
    }

    /// Drains without waiting.
    pub fn drain(&mut self, out: &mut Vec<Record>) -> usize {
        self.fd.get_mut().drain_records(out)
    }

    /// See [`EventReader::decode_errors`].
    pub fn decode_errors(&self) -> u64 {
        self.fd.get_ref().decode_errors()
    }
}
