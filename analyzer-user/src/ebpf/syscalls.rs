//! The plaintext capture's kernel side, seen from userspace: which syscall tracepoints it
//! attaches (eight calls, entry and exit), the check that this kernel lays their records
//! out as the programs read them, and where a descriptor's socket sits in kernel memory
//! ([`FdLayout`], from BTF).
//!
//! What is read: for a process that connected a tracked socket, every `write`, `sendto`,
//! `writev`, `sendmsg`, `read`, `recvfrom`, `readv` and `recvmsg` on that socket, the
//! first [`analyzer_common::DATA_CAP`] bytes of the call's first buffer. Not read:
//! `sendfile`, `splice`, io_uring, and sockets of connections made before the analyzer
//! attached.
use std::path::Path;

use analyzer_common::FdLayout;
use aya::Ebpf;

use super::tracefs::{Format, attach_tracepoint};
use crate::{
    error::{Error, error_chain},
    recording::{AttachReport, Missing},
};

/// The calls captured, each as its `sys_enter_*` and `sys_exit_*` tracepoints (the
/// programs carry the tracepoints' names).
pub const CALLS: [&str; 8] = [
    "write", "sendto", "writev", "sendmsg", "read", "recvfrom", "readv", "recvmsg",
];

/// Where the programs read the descriptor and the buffer (`sys_enter_*`) and the return
/// value (`sys_exit_*`): they must sit there on this kernel.
const FD_OFFSET: u32 = 16;
const BUF_OFFSET: u32 = 24;
const RET_OFFSET: u32 = 16;

/// The members the programs follow from the current task to a descriptor's socket:
/// `(struct, member, size in bytes)`.
const PATH: [(&str, &str, u32); 6] = [
    ("task_struct", "files", 8),
    ("files_struct", "fdt", 8),
    ("fdtable", "max_fds", 4),
    ("fdtable", "fd", 8),
    ("file", "private_data", 8),
    ("socket", "sk", 8),
];

/// The layout from the BTF at `btf`, or why there is none (nothing is captured then).
pub fn fd_layout(btf: &Path) -> Result<FdLayout, String> {
    let b = btf_rs::Btf::from_file(btf).map_err(|e| format!("{}: {e}", btf.display()))?;
    let mut off = [0u32; PATH.len()];
    for (i, (st, member, size)) in PATH.iter().enumerate() {
        off[i] = member_offset(&b, st, member, *size)?;
    }
    Ok(FdLayout {
        present: 1,
        task_files: off[0],
        files_fdt: off[1],
        fdt_max_fds: off[2],
        fdt_fd: off[3],
        file_private_data: off[4],
        socket_sk: off[5],
    })
}

/// The byte offset of `member` in `struct st`, looking into anonymous structs and unions
/// (where recent kernels put some of `struct file`'s members).
fn member_offset(b: &btf_rs::Btf, st: &str, member: &str, size: u32) -> Result<u32, String> {
    let types = b
        .resolve_types_by_name(st)
        .map_err(|e| format!("struct {st}: {e}"))?;
    let s = types
        .iter()
        .find_map(|t| match t {
            btf_rs::Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
        .ok_or_else(|| format!("no struct {st} in BTF"))?;
    find_member(b, s, member, 0, 4)
        .filter(|(_, sz)| *sz == Some(size))
        .map(|(bits, _)| bits / 8)
        .ok_or_else(|| format!("struct {st} has no {size}-byte member {member}"))
}

/// `(bit offset, size)` of `member` in `s`, `base` bits in; searches anonymous members
/// `depth` levels down.
fn find_member(
    b: &btf_rs::Btf,
    s: &btf_rs::Struct,
    member: &str,
    base: u32,
    depth: u32,
) -> Option<(u32, Option<u32>)> {
    for m in &s.members {
        if m.bitfield_size().is_some_and(|x| x != 0) || m.bit_offset() % 8 != 0 {
            continue;
        }
        let name = b.resolve_name(m).unwrap_or_default();
        let t = b.resolve_chained_type(m).ok();
        if name == member {
            return Some((base + m.bit_offset(), t.and_then(|t| type_size(b, t))));
        }
        if name.is_empty()
            && depth > 0
            && let Some(btf_rs::Type::Struct(inner) | btf_rs::Type::Union(inner)) = &t
            && let Some(hit) = find_member(b, inner, member, base + m.bit_offset(), depth - 1)
        {
            return Some(hit);
        }
    }
    None
}

/// The size in bytes of an integer or pointer, through typedefs and qualifiers.
fn type_size(b: &btf_rs::Btf, mut t: btf_rs::Type) -> Option<u32> {
    for _ in 0..8 {
        match t {
            btf_rs::Type::Int(i) => return u32::try_from(i.size()).ok(),
            btf_rs::Type::Ptr(_) => return Some(8),
            btf_rs::Type::Typedef(_)
            | btf_rs::Type::Volatile(_)
            | btf_rs::Type::Const(_)
            | btf_rs::Type::TypeTag(_) => {
                t = b.resolve_chained_type(t.as_btf_type()?).ok()?;
            }
            _ => return None,
        }
    }
    None
}

/// Checks that `syscalls:<name>` keeps `field` at `offset`.
fn check_field(tracefs: &Path, name: &str, field: &str, offset: u32) -> Result<(), Error> {
    let f = Format::read(tracefs, "syscalls", name)?;
    let found = f.fields.get(field).map(|x| x.offset);
    if found == Some(offset) {
        Ok(())
    } else {
        Err(Error::FormatField {
            tracepoint: f.tracepoint.clone(),
            field: "args",
            problem: format!("`{field}` sits at {found:?}, the program reads it at {offset}"),
        })
    }
}

/// The buffer argument's name in `sys_enter_<call>`.
fn buf_field(call: &str) -> &'static str {
    match call {
        "sendto" => "buff",
        "recvfrom" => "ubuf",
        "writev" | "readv" => "vec",
        "sendmsg" | "recvmsg" => "msg",
        _ => "buf",
    }
}

/// Attaches the capture's sixteen programs, each after checking its record's layout.
/// What attached or is missing goes to `report`; a call whose entry or exit cannot be
/// attached is left out whole (an entry without its exit would only fill the map).
pub fn attach(ebpf: &mut Ebpf, tracefs: &Path, report: &mut AttachReport) {
    for call in CALLS {
        let enter = format!("sys_enter_{call}");
        let exit = format!("sys_exit_{call}");
        let checked = check_field(tracefs, &enter, "fd", FD_OFFSET)
            .and_then(|()| check_field(tracefs, &enter, buf_field(call), BUF_OFFSET))
            .and_then(|()| check_field(tracefs, &exit, "ret", RET_OFFSET))
            .and_then(|()| attach_tracepoint(ebpf, &exit, "syscalls", &exit))
            .and_then(|()| attach_tracepoint(ebpf, &enter, "syscalls", &enter));
        match checked {
            Ok(()) => {
                report.attached.push(format!("syscalls:{enter}"));
                report.attached.push(format!("syscalls:{exit}"));
            }
            Err(e) => report.missing.push(Missing {
                tracepoint: format!("syscalls:{enter}"),
                reason: error_chain(&e),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This kernel's BTF has every member on the way, at distinct plausible offsets.
    #[test]
    fn finds_the_path_to_a_socket_in_this_kernels_btf() {
        let l = fd_layout(Path::new("/sys/kernel/btf/vmlinux")).expect("BTF");
        assert_eq!(l.present, 1);
        assert_ne!(l.fdt_max_fds, l.fdt_fd, "{l:?}");
        for o in [
            l.task_files,
            l.files_fdt,
            l.fdt_fd,
            l.file_private_data,
            l.socket_sk,
        ] {
            assert_eq!(o % 8, 0, "pointers are 8-aligned: {l:?}");
            assert!(o < 16384, "{l:?}");
        }
    }

    #[test]
    fn a_missing_file_says_so() {
        let e = fd_layout(Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(e.contains("/nonexistent/vmlinux"), "{e}");
    }
}
