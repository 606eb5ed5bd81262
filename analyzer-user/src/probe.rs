//! Loading and attaching the kernel programs, and draining their ring buffer.
//!
//! The object built by `cargo xtask build-ebpf` is embedded in the binary. Before loading,
//! each program's tracepoint layout is read from tracefs and written into the program's
//! offsets global; a tracepoint this kernel lacks is reported as missing and the others
//! still attach.
use std::{
    io,
    os::fd::{AsRawFd, RawFd},
    path::Path,
};

use analyzer_common::{
    FIELD_ABSENT, PROG_RECEIVE_RESET, RECEIVE_RESET_OFFSETS_GLOBAL, ReceiveResetOffsets, STATS_MAP,
    StatSlot,
};
use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};
use serde::Serialize;
use tokio::io::{Interest, unix::AsyncFd};

use crate::{
    Error,
    event::{Clock, KernelEvent, decode},
    tracefs::Format,
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
}

/// Every tracepoint the analyzer attaches to.
pub const TRACEPOINTS: &[Tracepoint] = &[Tracepoint {
    group: "tcp",
    name: "tcp_receive_reset",
    program: PROG_RECEIVE_RESET,
}];

/// A tracepoint that could not be used, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Missing {
    pub tracepoint: String,
    pub reason: String,
}

/// Which probes are attached and which are missing on this kernel.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AttachReport {
    pub attached: Vec<String>,
    pub missing: Vec<Missing>,
}

/// Counters summed over CPUs from the programs' `STATS` map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProbeStats {
    pub emitted: u64,
    /// Ring buffer full: events lost in the kernel.
    pub reserve_failed: u64,
    /// A tracepoint field could not be read.
    pub read_failed: u64,
}

/// Loaded and attached programs. Dropping it detaches everything.
pub struct Probes {
    // Keeps programs, links and maps alive.
    _ebpf: Ebpf,
    stats: PerCpuArray<MapData, u64>,
    reader: Option<EventReader>,
    report: AttachReport,
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
    /// object with them and attaches every program whose tracepoint exists.
    pub fn attach(tracefs: &Path) -> Result<Self, Error> {
        let mut report = AttachReport::default();
        let rr_offsets = match receive_reset_offsets(tracefs) {
            Ok(o) => Some(o),
            Err(e) => {
                report.missing.push(Missing {
                    tracepoint: "tcp:tcp_receive_reset".into(),
                    reason: error_chain(&e),
                });
                None
            }
        };
        let rr_global = rr_offsets.unwrap_or(ReceiveResetOffsets::ABSENT);
        let mut ebpf = EbpfLoader::new()
            .override_global(RECEIVE_RESET_OFFSETS_GLOBAL, &rr_global, true)
            .load(OBJECT)
            .map_err(Error::Load)?;

        for tp in TRACEPOINTS {
            let full = format!("{}:{}", tp.group, tp.name);
            if report.missing.iter().any(|m| m.tracepoint == full) {
                continue;
            }
            attach_one(&mut ebpf, tp)?;
            report.attached.push(full);
        }

        let stats = PerCpuArray::try_from(take_map(&mut ebpf, STATS_MAP)?).map_err(|source| {
            Error::Map {
                what: format!("open map {STATS_MAP}"),
                source,
            }
        })?;
        let ring = RingBuf::try_from(take_map(&mut ebpf, analyzer_common::EVENTS_MAP)?).map_err(
            |source| Error::Map {
                what: "open ring buffer EVENTS".into(),
                source,
            },
        )?;
        Ok(Self {
            _ebpf: ebpf,
            stats,
            reader: Some(EventReader {
                ring,
                clock: Clock::now(),
                decode_errors: 0,
            }),
            report,
        })
    }

    /// What attached and what is missing.
    pub fn report(&self) -> &AttachReport {
        &self.report
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
        })
    }
}

fn take_map(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map, Error> {
    ebpf.take_map(name).ok_or_else(|| Error::MissingObject {
        kind: "map",
        name: name.to_owned(),
    })
}

fn attach_one(ebpf: &mut Ebpf, tp: &Tracepoint) -> Result<(), Error> {
    let full = format!("{}:{}", tp.group, tp.name);
    let prog: &mut TracePoint = ebpf
        .program_mut(tp.program)
        .ok_or_else(|| Error::MissingObject {
            kind: "program",
            name: tp.program.to_owned(),
        })?
        .try_into()
        .map_err(|source| Error::Program {
            what: format!("program {} is not a tracepoint", tp.program),
            source,
        })?;
    prog.load().map_err(|source| Error::Program {
        what: format!("load program {} (verifier)", tp.program),
        source,
    })?;
    prog.attach(tp.group, tp.name)
        .map_err(|source| Error::Program {
            what: format!("attach {full}"),
            source,
        })?;
    Ok(())
}

/// Offsets of `tcp:tcp_receive_reset` on this kernel, from its format file.
pub fn receive_reset_offsets(tracefs: &Path) -> Result<ReceiveResetOffsets, Error> {
    let f = Format::read(tracefs, "tcp", "tcp_receive_reset")?;
    let opt = |name, size| -> Result<u32, Error> {
        Ok(f.offset_sized(name, size)?.unwrap_or(FIELD_ABSENT))
    };
    Ok(ReceiveResetOffsets {
        skaddr: f.require("skaddr", 8)?,
        sport: f.require("sport", 2)?,
        dport: f.require("dport", 2)?,
        family: f.require("family", 2)?,
        saddr: f.require("saddr", 4)?,
        daddr: f.require("daddr", 4)?,
        saddr_v6: opt("saddr_v6", 16)?,
        daddr_v6: opt("daddr_v6", 16)?,
        // Older kernels (before 5.x) have no cookie in this record.
        sock_cookie: opt("sock_cookie", 8)?,
        _pad: 0,
    })
}

/// An error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Drains the programs' ring buffer and decodes what it finds.
pub struct EventReader {
    ring: RingBuf<MapData>,
    clock: Clock,
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
    pub fn drain(&mut self, out: &mut Vec<KernelEvent>) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            n += 1;
            match decode(&item, self.clock) {
                Ok(ev) => out.push(ev),
                Err(e) => {
                    self.decode_errors += 1;
                    tracing::warn!(error = %e, "undecodable kernel record");
                }
            }
        }
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
    pub async fn recv(&mut self, out: &mut Vec<KernelEvent>) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable_mut().await?;
            let n = guard.get_inner_mut().drain(out);
            guard.clear_ready();
            if n > 0 {
                return Ok(n);
            }
        }
    }

    /// Drains without waiting.
    pub fn drain(&mut self, out: &mut Vec<KernelEvent>) -> usize {
        self.fd.get_mut().drain(out)
    }

    /// See [`EventReader::decode_errors`].
    pub fn decode_errors(&self) -> u64 {
        self.fd.get_ref().decode_errors()
    }
}
