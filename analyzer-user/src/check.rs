//! `analyzer check`: can this host run the analyzer, and if not, what to do about it.
//!
//! Each check yields a status, what was found, and, when it is not fine, a hint. The
//! verdict fails when anything the analyzer needs is missing; a missing optional
//! tracepoint only warns (the other probes still work).
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{
    ebpf::probe::{Probes, TRACEPOINTS},
    ebpf::tracefs::{self, Mount},
    error::error_chain,
};

/// Outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// One line of the check report.
#[derive(Clone, Debug, Serialize)]
pub struct Item {
    pub name: String,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The whole check report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub items: Vec<Item>,
}

impl Report {
    /// True when nothing failed.
    pub fn passed(&self) -> bool {
        self.items.iter().all(|i| i.status != Status::Fail)
    }

    /// Human-readable lines, one per check, hints indented beneath.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for i in &self.items {
            let tag = match i.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            s.push_str(&format!("[{tag}] {:<32} {}\n", i.name, i.detail));
            if let Some(h) = &i.hint {
                s.push_str(&format!("       -> {h}\n"));
            }
        }
        s.push_str(if self.passed() {
            "host is ready: `analyzer attach` will work here\n"
        } else {
            "host is NOT ready: fix the FAIL lines above\n"
        });
        s
    }
}

fn item(name: &str, status: Status, detail: impl Into<String>, hint: Option<&str>) -> Item {
    Item {
        name: name.to_owned(),
        status,
        detail: detail.into(),
        hint: hint.map(str::to_owned),
    }
}

// Capability numbers from include/uapi/linux/capability.h.
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Effective capabilities, from the `CapEff:` line of `/proc/self/status`.
pub fn effective_caps(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

fn has(caps: u64, cap: u32) -> bool {
    caps & (1u64 << cap) != 0
}

/// Runs every check. Mounts tracefs if it is not mounted.
pub fn run() -> Report {
    let mut items = Vec::new();
    items.push(kernel_item());

    let btf = Path::new("/sys/kernel/btf/vmlinux");
    items.push(if btf.exists() {
        item("BTF", Status::Ok, btf.display().to_string(), None)
    } else {
        item(
            "BTF",
            Status::Fail,
            "/sys/kernel/btf/vmlinux is missing",
            Some("use a kernel built with CONFIG_DEBUG_INFO_BTF=y"),
        )
    });

    let privileged = privileges_item(&mut items);

    let tracefs_root = match tracefs::ensure_mounted() {
        Ok(m) => {
            let how = match &m {
                Mount::Found(_) => "mounted",
                Mount::Mounted(_) => "was not mounted; mounted it",
            };
            items.push(item(
                "tracefs",
                Status::Ok,
                format!("{} ({how})", m.path().display()),
                None,
            ));
            Some(m.path().to_path_buf())
        }
        Err(e) => {
            items.push(item(
                "tracefs",
                Status::Fail,
                error_chain(&e),
                Some("run as root, or: mount -t tracefs tracefs /sys/kernel/tracing"),
            ));
            None
        }
    };

    let usable = tracepoint_items(&mut items, tracefs_root.as_deref());

    items.push(match (&tracefs_root, privileged, usable) {
        (Some(root), true, true) => load_item(root),
        _ => item(
            "test program loads",
            Status::Fail,
            "not tried: privileges, tracefs or tracepoints are missing (see above)",
            None,
        ),
    });
    items.push(raw_item());
    Report { items }
}

/// Whether the raw-socket backend (`--backend raw`, and `auto`'s fallback) can open its
/// capture socket. A warning, not a failure: the eBPF backend does not need it.
fn raw_item() -> Item {
    // SAFETY: plain socket(2); the fd is closed right after.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from((libc::ETH_P_ALL as u16).to_be()),
        )
    };
    if fd >= 0 {
        // SAFETY: the fd was just opened here.
        unsafe { libc::close(fd) };
        item(
            "raw backend",
            Status::Ok,
            "AF_PACKET capture socket opens (--backend raw works, and is auto's fallback)",
            None,
        )
    } else {
        item(
            "raw backend",
            Status::Warn,
            format!("AF_PACKET socket: {}", std::io::Error::last_os_error()),
            Some("grant CAP_NET_RAW for --backend raw (the fallback where eBPF cannot load)"),
        )
    }
}

fn kernel_item() -> Item {
    // SAFETY: utsname is plain data; uname fills it and cannot fail with a valid pointer.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid out-pointer.
    unsafe { libc::uname(&mut u) };
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    item(
        "kernel",
        Status::Ok,
        format!(
            "{} {} {}",
            field(&u.sysname),
            field(&u.release),
            field(&u.machine)
        ),
        None,
    )
}

/// Pushes the privileges item; returns whether loading programs can work.
fn privileges_item(items: &mut Vec<Item>) -> bool {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(effective_caps)
        .unwrap_or(0);
    let names = [
        ("CAP_BPF", CAP_BPF),
        ("CAP_PERFMON", CAP_PERFMON),
        ("CAP_NET_ADMIN", CAP_NET_ADMIN),
        ("CAP_SYS_ADMIN", CAP_SYS_ADMIN),
    ];
    let held: Vec<&str> = names
        .iter()
        .filter(|(_, c)| has(caps, *c))
        .map(|(n, _)| *n)
        .collect();
    let ok = (has(caps, CAP_BPF) && has(caps, CAP_PERFMON)) || has(caps, CAP_SYS_ADMIN);
    let detail = format!(
        "euid {euid}, effective capabilities: {}",
        if held.is_empty() {
            "none".to_owned()
        } else {
            held.join(", ")
        }
    );
    items.push(if ok {
        item("privileges", Status::Ok, detail, None)
    } else {
        item(
            "privileges",
            Status::Fail,
            detail,
            Some(
                "run as root (`sudo analyzer ...`) or grant the binary CAP_BPF, CAP_PERFMON \
                 and CAP_NET_ADMIN (setcap cap_bpf,cap_perfmon,cap_net_admin+ep analyzer)",
            ),
        )
    });
    ok
}

/// Pushes one item per tracepoint; returns whether at least one is usable.
fn tracepoint_items(items: &mut Vec<Item>, root: Option<&Path>) -> bool {
    let mut usable = 0;
    for tp in TRACEPOINTS {
        let name = format!("tracepoint {}:{}", tp.group, tp.name);
        let Some(root) = root else {
            items.push(item(
                &name,
                Status::Fail,
                "unknown: tracefs unavailable",
                None,
            ));
            continue;
        };
        let path: PathBuf = tracefs::format_path(root, tp.group, tp.name);
        match tracefs::Format::read(root, tp.group, tp.name) {
            Ok(_) => {
                usable += 1;
                items.push(item(&name, Status::Ok, "present", None));
            }
            Err(e) => items.push(item(
                &name,
                Status::Warn,
                format!("missing or unreadable ({})", error_chain(&e)),
                Some(&format!(
                    "this kernel lacks {} or it is not readable; the analyzer works without \
                     it but loses that evidence",
                    path.display()
                )),
            )),
        }
    }
    if usable == 0 {
        items.push(item(
            "tracepoints",
            Status::Fail,
            "none of the analyzer's tracepoints is usable",
            Some("use a kernel with CONFIG_BPF_EVENTS and the tcp/sock tracepoints (>= 5.15)"),
        ));
    }
    usable > 0
}

fn load_item(root: &Path) -> Item {
    match Probes::attach(root, &crate::recording::FilterConfig::default()) {
        Ok(p) => item(
            "test program loads",
            Status::Ok,
            format!(
                "loaded and attached {} program(s), then detached",
                p.report().attached.len()
            ),
            None,
        ),
        Err(e) => item(
            "test program loads",
            Status::Fail,
            error_chain(&e),
            Some("see the verifier message above; `RUST_LOG=debug analyzer check` shows more"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_effective_caps() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        let caps = effective_caps(status).unwrap();
        assert!(has(caps, CAP_BPF) && has(caps, CAP_PERFMON) && has(caps, CAP_NET_ADMIN));
        let none = effective_caps("CapEff:\t0000000000000000\n").unwrap();
        assert!(!has(none, CAP_BPF));
        assert_eq!(effective_caps("Name: x\n"), None);
    }

    #[test]
    fn report_fails_on_any_fail_item() {
        let mut r = Report {
            items: vec![
                item("a", Status::Ok, "", None),
                item("b", Status::Warn, "", None),
            ],
        };
        assert!(r.passed());
        r.items.push(item("c", Status::Fail, "x", Some("do y")));
        assert!(!r.passed());
        let text = r.to_text();
        assert!(
            text.contains("[FAIL] c") && text.contains("-> do y") && text.contains("NOT ready")
        );
    }
}
