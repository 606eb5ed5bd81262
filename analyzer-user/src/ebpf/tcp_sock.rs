//! Where the TCP counters sit in `struct tcp_sock` on the running kernel: byte offsets
//! of its members read from the kernel's BTF (`/sys/kernel/btf/vmlinux`) at load time,
//! handed to the programs ([`TcpSockLayout`]). Field offsets move between kernel
//! versions and configurations, so they are never hard-coded.
use std::path::Path;

use analyzer_common::{FIELD_ABSENT, TcpSockLayout};

/// The members read, with the size each must have (bytes) to be read as its field.
const MEMBERS: [(&str, u32); 5] = [
    ("bytes_received", 8),
    ("bytes_acked", 8),
    ("data_segs_in", 4),
    ("data_segs_out", 4),
    ("srtt_us", 4),
];

/// The layout of `struct tcp_sock` from the BTF at `btf`, or why there is none (the
/// programs then read no counters, and the rules that need them stay silent).
pub fn layout(btf: &Path) -> Result<TcpSockLayout, String> {
    let btf = btf_rs::Btf::from_file(btf).map_err(|e| format!("{}: {e}", btf.display()))?;
    let types = btf
        .resolve_types_by_name("tcp_sock")
        .map_err(|e| format!("struct tcp_sock: {e}"))?;
    let s = types
        .iter()
        .find_map(|t| match t {
            btf_rs::Type::Struct(s) => Some(s),
            _ => None,
        })
        .ok_or("no struct tcp_sock in BTF")?;
    let mut offsets = [FIELD_ABSENT; MEMBERS.len()];
    for m in &s.members {
        let Ok(name) = btf.resolve_name(m) else {
            continue;
        };
        let Some(i) = MEMBERS.iter().position(|(n, _)| *n == name) else {
            continue;
        };
        // A bitfield, or a member not on a byte boundary, is not a plain counter.
        if m.bitfield_size().is_some_and(|b| b != 0) || m.bit_offset() % 8 != 0 {
            continue;
        }
        let size = btf
            .resolve_chained_type(m)
            .ok()
            .and_then(|t| type_size(&btf, t));
        if size == Some(MEMBERS[i].1) {
            offsets[i] = m.bit_offset() / 8;
        }
    }
    let missing: Vec<&str> = MEMBERS
        .iter()
        .zip(offsets)
        .filter(|(_, o)| *o == FIELD_ABSENT)
        .map(|((n, _), _)| *n)
        .collect();
    if missing.len() == MEMBERS.len() {
        return Err("struct tcp_sock has none of the counters".into());
    }
    if !missing.is_empty() {
        tracing::warn!(missing = ?missing, "struct tcp_sock lacks some counters");
    }
    Ok(TcpSockLayout {
        present: 1,
        bytes_received: offsets[0],
        bytes_acked: offsets[1],
        data_segs_in: offsets[2],
        data_segs_out: offsets[3],
        srtt_us: offsets[4],
    })
}

/// The size in bytes of an integer type, through typedefs (`u64` is a typedef of
/// `__u64`, itself of `unsigned long long`).
fn type_size(btf: &btf_rs::Btf, mut t: btf_rs::Type) -> Option<u32> {
    for _ in 0..8 {
        match t {
            btf_rs::Type::Int(i) => return Some(i.size() as u32),
            btf_rs::Type::Typedef(_) | btf_rs::Type::Volatile(_) | btf_rs::Type::Const(_) => {
                t = btf.resolve_chained_type(t.as_btf_type()?).ok()?;
            }
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This kernel's BTF (the machines this project runs on have it): the counters are
    /// found, each at a distinct offset inside a `tcp_sock`.
    #[test]
    fn finds_the_counters_in_this_kernels_btf() {
        let l = layout(Path::new("/sys/kernel/btf/vmlinux")).expect("BTF with struct tcp_sock");
        assert_eq!(l.present, 1);
        let offs = [
            l.bytes_received,
            l.bytes_acked,
            l.data_segs_in,
            l.data_segs_out,
            l.srtt_us,
        ];
        assert!(
            offs.iter().all(|o| *o != FIELD_ABSENT && *o < 4096),
            "{l:?}"
        );
        let mut sorted = offs.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), offs.len(), "{l:?}");
        assert_eq!(l.bytes_received % 8, 0, "a u64 counter is 8-aligned: {l:?}");
    }

    #[test]
    fn a_missing_file_says_so() {
        let e = layout(Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(e.contains("/nonexistent/vmlinux"), "{e}");
    }
}
