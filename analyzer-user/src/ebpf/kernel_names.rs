//! This kernel's names for the numbers its tracepoints record: TCP states (from BTF),
//! reset reasons and drop reasons (from the `__print_symbolic` tables in tracepoint print
//! formats), read from the running kernel at load time because the kernel may renumber
//! them.
use std::{collections::BTreeMap, path::Path};

use fallible_iterator::FallibleIterator;

use super::tracefs::Format;
use crate::names::{NameSources, TcpState};

/// This kernel's names for the numbers in [`analyzer_common::Event`].
#[derive(Clone, Debug, Default)]
pub struct KernelNames {
    tcp_states: BTreeMap<i32, TcpState>,
    rst_reasons: BTreeMap<u32, String>,
    drop_reasons: BTreeMap<u32, String>,
    pub sources: NameSources,
}

/// The TCP state numbering of `include/net/tcp_states.h`, unchanged since Linux 2.x;
/// used only when BTF is unavailable.
const BUILTIN_STATES: [(i32, &str); 13] = [
    (1, "TCP_ESTABLISHED"),
    (2, "TCP_SYN_SENT"),
    (3, "TCP_SYN_RECV"),
    (4, "TCP_FIN_WAIT1"),
    (5, "TCP_FIN_WAIT2"),
    (6, "TCP_TIME_WAIT"),
    (7, "TCP_CLOSE"),
    (8, "TCP_CLOSE_WAIT"),
    (9, "TCP_LAST_ACK"),
    (10, "TCP_LISTEN"),
    (11, "TCP_CLOSING"),
    (12, "TCP_NEW_SYN_RECV"),
    (13, "TCP_BOUND_INACTIVE"),
];

impl KernelNames {
    /// Built-in TCP states, no reason names (tests, offline use without a kernel).
    pub fn builtin() -> Self {
        Self {
            tcp_states: BUILTIN_STATES
                .iter()
                .filter_map(|(v, n)| Some((*v, TcpState::from_kernel_name(n)?)))
                .collect(),
            sources: NameSources {
                tcp_states: "builtin".into(),
                rst_reasons: "none".into(),
                drop_reasons: "none".into(),
            },
            ..Self::default()
        }
    }

    /// Reads the names of the running kernel: TCP states from BTF at `btf` (falling back
    /// to the built-in numbering), reason tables from the tracefs formats under `tracefs`.
    pub fn load(tracefs: &Path, btf: &Path) -> Self {
        let mut names = Self::builtin();
        if let Some(states) = btf_tcp_states(btf) {
            names.tcp_states = states;
            names.sources.tcp_states = "btf".into();
        }
        if let Ok(f) = Format::read(tracefs, "tcp", "tcp_send_reset") {
            let t = symbolic_table(&f.print_fmt, "reason");
            if !t.is_empty() {
                names.rst_reasons = t;
                names.sources.rst_reasons = "tracefs".into();
            }
        }
        if let Ok(f) = Format::read(tracefs, "skb", "kfree_skb") {
            let t = symbolic_table(&f.print_fmt, "reason");
            if !t.is_empty() {
                names.drop_reasons = t;
                names.sources.drop_reasons = "tracefs".into();
            }
        }
        names
    }

    /// The state numbered `v` on this kernel.
    pub fn tcp_state(&self, v: i32) -> TcpState {
        self.tcp_states
            .get(&v)
            .copied()
            .unwrap_or(TcpState::Unknown)
    }

    /// This kernel's name for reset reason `v` (`reason N` when it has none).
    pub fn rst_reason(&self, v: u32) -> String {
        self.rst_reasons
            .get(&v)
            .cloned()
            .unwrap_or_else(|| format!("reason {v}"))
    }

    /// This kernel's name for drop reason `v` (`reason N` when it has none).
    pub fn drop_reason(&self, v: u32) -> String {
        self.drop_reasons
            .get(&v)
            .cloned()
            .unwrap_or_else(|| format!("reason {v}"))
    }

    /// Every drop reason this kernel names, by value.
    pub fn drop_reasons(&self) -> &BTreeMap<u32, String> {
        &self.drop_reasons
    }
}

/// The TCP states from BTF: the (anonymous) enum that has a `TCP_ESTABLISHED` member.
fn btf_tcp_states(path: &Path) -> Option<BTreeMap<i32, TcpState>> {
    let btf = btf_rs::Btf::from_file(path).ok()?;
    let mut types = btf.type_iter();
    // A BTF type this parser cannot read ends the search: the built-in table is used.
    while let Ok(Some(ty)) = types.next() {
        let btf_rs::Type::Enum(e) = ty else { continue };
        let members: Vec<(i32, String)> = e
            .members
            .iter()
            .filter_map(|m| Some((m.val() as i32, btf.resolve_name(m).ok()?)))
            .collect();
        if !members.iter().any(|(_, n)| n == "TCP_ESTABLISHED") {
            continue;
        }
        let table: BTreeMap<i32, TcpState> = members
            .iter()
            .filter_map(|(v, n)| Some((*v, TcpState::from_kernel_name(n)?)))
            .collect();
        return (!table.is_empty()).then_some(table);
    }
    None
}

/// Parses `__print_symbolic(REC-><field>, { 0, "NAME" }, { 1, "OTHER" }, ...)` from a
/// print format into a value → name table. Entries whose value is not a number (macro
/// names) are skipped; a table that is not there is empty.
pub fn symbolic_table(print_fmt: &str, field: &str) -> BTreeMap<u32, String> {
    let mut out = BTreeMap::new();
    let needle = format!("__print_symbolic(REC->{field},");
    let Some(start) = print_fmt.find(&needle) else {
        return out;
    };
    let mut rest = &print_fmt[start + needle.len()..];
    // Entries until the closing parenthesis of this __print_symbolic call.
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        let Some(body) = rest.strip_prefix('{') else {
            break;
        };
        let Some(end) = body.find('}') else { break };
        let entry = &body[..end];
        rest = &body[end + 1..];
        let Some((v, name)) = entry.split_once(',') else {
            continue;
        };
        let name = name.trim().trim_matches('"');
        if let Ok(v) = v.trim().parse::<u32>() {
            out.insert(v, name.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEND_RESET_FMT: &str = r#""skbaddr=%p state=%s reason=%s", REC->skbaddr, REC->state ? __print_symbolic(REC->state, { TCP_ESTABLISHED, "TCP_ESTABLISHED" }, { TCP_SYN_SENT, "TCP_SYN_SENT" }) : "UNKNOWN", __print_symbolic(REC->reason, { 0, "NOT_SPECIFIED" }, { 1, "NO_SOCKET" }, { 17, "TCP_ABORT_ON_LINGER" })"#;

    #[test]
    fn parses_numeric_symbolic_tables_and_skips_macro_names() {
        let t = symbolic_table(SEND_RESET_FMT, "reason");
        assert_eq!(t.len(), 3);
        assert_eq!(t[&17], "TCP_ABORT_ON_LINGER");
        assert!(symbolic_table(SEND_RESET_FMT, "state").is_empty());
        assert!(symbolic_table(SEND_RESET_FMT, "nope").is_empty());
        assert!(symbolic_table("__print_symbolic(REC->reason, { 3", "reason").is_empty());
    }

    #[test]
    fn builtin_names_and_unknowns() {
        let n = KernelNames::builtin();
        assert_eq!(n.tcp_state(1), TcpState::Established);
        assert_eq!(n.tcp_state(99), TcpState::Unknown);
        assert_eq!(n.drop_reason(5), "reason 5");
    }

    #[test]
    fn this_kernel_names_states_from_btf_and_reasons_from_tracefs() {
        let tracefs = crate::ebpf::tracefs::ensure_mounted().expect("tracefs");
        let n = KernelNames::load(tracefs.path(), Path::new("/sys/kernel/btf/vmlinux"));
        assert_eq!(n.sources.tcp_states, "btf");
        assert_eq!(n.tcp_state(1), TcpState::Established);
        assert_eq!(n.tcp_state(7), TcpState::Close);
        assert_eq!(n.sources.drop_reasons, "tracefs");
        assert!(
            n.drop_reasons()
                .values()
                .any(|v| v == "TCP_LISTEN_OVERFLOW")
        );
        assert_eq!(n.sources.rst_reasons, "tracefs");
    }
}
