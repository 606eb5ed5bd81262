//! Attaching the TLS library probes (the kernel side is `analyzer-ebpf`'s `probes/tls.rs`):
//! OpenSSL 3's `SSL_write`, `SSL_read` and their `_ex` forms in the system's libssl, for
//! every process that maps it (uprobe at entry, uretprobe at return); and Go's
//! `crypto/tls.(*Conn).Write` and `Read` in the Go binaries named by `--tls-exe`
//! (uprobes at the entry and at every return instruction, found through `.gopclntab`, so
//! stripped binaries work). Attached by path, before the clients start: a probe attached
//! after a client's handshake still sees its later reads and writes.
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use analyzer_common::ExecLayout;
use aya::{
    Ebpf,
    programs::{UProbe, uprobe::UProbeScope},
};

use super::tracefs::{Format, attach_tracepoint};

use crate::{
    error::{Error, error_chain},
    recording::{AttachReport, Missing},
    uprobe::{self, GoConnLayout, UprobeError},
};

/// Programs executed after the attach whose paths were looked at, at most this many.
const MAX_EXES_SEEN: usize = 4096;

/// Where `sched:sched_process_exec` keeps the file name on this kernel, or why not.
pub fn exec_layout(tracefs: &Path) -> Result<ExecLayout, Error> {
    let f = Format::read(tracefs, "sched", "sched_process_exec")?;
    let off = f
        .fields
        .get("filename")
        .filter(|x| x.size == 4)
        .map(|x| x.offset)
        .ok_or_else(|| Error::FormatField {
            tracepoint: f.tracepoint.clone(),
            field: "filename",
            problem: "no 4-byte __data_loc field".into(),
        })?;
    Ok(ExecLayout {
        present: 1,
        filename_loc: off,
    })
}

/// Attaches the exec watch (`sched:sched_process_exec`).
pub fn attach_exec(ebpf: &mut Ebpf, report: &mut AttachReport) {
    let r = attach_tracepoint(ebpf, "sched_process_exec", "sched", "sched_process_exec");
    match r {
        Ok(()) => report.attached.push("sched:sched_process_exec".into()),
        Err(e) => report.missing.push(Missing {
            tracepoint: "sched:sched_process_exec".into(),
            reason: error_chain(&e),
        }),
    }
}

/// Go binaries executed while recording, probed as they start.
#[derive(Debug, Default)]
pub struct ExecWatch {
    seen: HashSet<PathBuf>,
}

impl ExecWatch {
    /// Process `pid` executed `path`: when it is a Go binary with crypto/tls not seen
    /// before, attaches to it. Returns what was attached, or why it could not be; `None`
    /// for anything else (not Go, no crypto/tls, seen before).
    pub fn exec(
        &mut self,
        ebpf: &mut Ebpf,
        pid: u32,
        path: &Path,
        report: &mut AttachReport,
    ) -> Option<Result<String, String>> {
        // The file the process runs, wherever the path given to exec was relative to.
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| path.to_owned());
        if self.seen.len() >= MAX_EXES_SEEN || !self.seen.insert(exe.clone()) {
            return None;
        }
        if !uprobe::is_go_binary(&exe) {
            return None;
        }
        let mut rep = AttachReport::default();
        match attach_go(ebpf, &exe, &mut rep) {
            Ok(()) => {
                let what = rep.attached.join(", ");
                report.attached.extend(rep.attached);
                Some(Ok(what))
            }
            // A Go program without crypto/tls (the go tool's compiler, say): not a client.
            Err(Error::Uprobe(UprobeError::FunctionNotFound { .. })) => None,
            Err(e) => {
                let m = Missing {
                    tracepoint: format!("uprobe:{}", exe.display()),
                    reason: error_chain(&e),
                };
                let why = format!("{} ({})", m.tracepoint, m.reason);
                report.missing.push(m);
                Some(Err(why))
            }
        }
    }
}

/// Which TLS libraries to probe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsProbeOptions {
    /// Leave the system's libssl alone.
    pub no_openssl: bool,
    /// Go binaries to probe (`--tls-exe`).
    pub go_exes: Vec<PathBuf>,
}

/// The kernel's view of where a Go program keeps a TLS connection's descriptor (the same
/// for every Go release with the register ABI, 1.17 and later).
pub fn go_conn_layout() -> analyzer_common::GoConnLayout {
    let v = uprobe::GoVersion {
        major: 1,
        minor: 17,
        patch: 0,
        raw: String::new(),
    };
    GoConnLayout::for_version(&v).map_or(analyzer_common::GoConnLayout::ABSENT, |l| {
        analyzer_common::GoConnLayout {
            present: 1,
            tls_conn_data: u32::try_from(l.tls_conn_conn + l.iface_data).unwrap_or(0),
            tcp_conn_fd: u32::try_from(l.tcp_conn_fd).unwrap_or(0),
            net_fd_sysfd: u32::try_from(l.net_fd_sysfd).unwrap_or(0),
            _pad: 0,
        }
    })
}

/// Attaches what `opts` asks for; what attached and what could not goes to `report`.
pub fn attach(ebpf: &mut Ebpf, opts: &TlsProbeOptions, report: &mut AttachReport) {
    if !opts.no_openssl
        && let Err(e) = attach_openssl(ebpf, report)
    {
        report.missing.push(Missing {
            tracepoint: format!("uprobe:{}", uprobe::LIBSSL),
            reason: error_chain(&e),
        });
    }
    for exe in &opts.go_exes {
        if let Err(e) = attach_go(ebpf, exe, report) {
            report.missing.push(Missing {
                tracepoint: format!("uprobe:{}", exe.display()),
                reason: error_chain(&e),
            });
        }
    }
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut UProbe, Error> {
    let p: &mut UProbe = ebpf
        .program_mut(name)
        .ok_or_else(|| Error::MissingObject {
            kind: "program",
            name: name.to_owned(),
        })?
        .try_into()
        .map_err(|source| Error::Program {
            what: format!("program {name} is not a uprobe"),
            source,
        })?;
    if p.fd().is_err() {
        p.load().map_err(|source| Error::Program {
            what: format!("load program {name} (verifier)"),
            source,
        })?;
    }
    Ok(p)
}

fn attach_at(ebpf: &mut Ebpf, prog: &str, offset: u64, target: &Path) -> Result<(), Error> {
    program(ebpf, prog)?
        .attach(offset, target, UProbeScope::AllProcesses)
        .map_err(|source| Error::Program {
            what: format!("attach {prog} at {}+{offset:#x}", target.display()),
            source,
        })?;
    Ok(())
}

fn attach_openssl(ebpf: &mut Ebpf, report: &mut AttachReport) -> Result<(), Error> {
    let t = uprobe::system_openssl_targets().map_err(|e| Error::Config {
        what: e.to_string(),
    })?;
    let mut any = false;
    for (name, off) in t.functions() {
        let Some(off) = off else { continue };
        let prog = name.to_ascii_lowercase();
        attach_at(ebpf, &prog, off, &t.path)?;
        attach_at(ebpf, "ssl_return", off, &t.path)?;
        report
            .attached
            .push(format!("uprobe:{}:{name}", t.path.display()));
        any = true;
    }
    if !any {
        return Err(Error::Config {
            what: format!("{} defines none of SSL_write, SSL_read", t.path.display()),
        });
    }
    Ok(())
}

/// Attaches to one Go binary: `crypto/tls.(*Conn).Write` and `Read`, entries and returns.
pub fn attach_go(ebpf: &mut Ebpf, exe: &Path, report: &mut AttachReport) -> Result<(), Error> {
    let t = uprobe::go_tls_targets(exe).map_err(Error::Uprobe)?;
    if GoConnLayout::for_version(&t.go_version).is_none() {
        return Err(Error::Config {
            what: format!(
                "{} was built with {}: before Go 1.17's register ABI, which the probes read",
                exe.display(),
                t.go_version.raw
            ),
        });
    }
    for (prog, f) in [("go_tls_write", &t.write), ("go_tls_read", &t.read)] {
        attach_at(ebpf, prog, f.entry_offset, exe)?;
        for ret in &f.return_offsets {
            attach_at(ebpf, "go_tls_return", *ret, exe)?;
        }
        report.attached.push(format!(
            "uprobe:{}:{} (entry and {} returns, {})",
            exe.display(),
            f.function,
            f.return_offsets.len(),
            t.go_version.raw
        ));
    }
    Ok(())
}
