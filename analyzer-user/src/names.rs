//! The names both backends give kernel numbers: TCP states ([`TcpState`]) and where a
//! run's name tables came from ([`NameSources`]). Reading them from the running kernel
//! is the eBPF backend's job (`ebpf::kernel_names`).
use serde::{Deserialize, Serialize};

/// A TCP state, by the kernel's name for it (`TCP_ESTABLISHED` → `ESTABLISHED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    BoundInactive,
    /// A number this kernel has no name for.
    Unknown,
}

impl TcpState {
    /// The named states in the kernel's long-stable numbering (`include/net/tcp_states.h`,
    /// `TCP_ESTABLISHED` = 1 ... `TCP_BOUND_INACTIVE` = 13), which `/proc/net/tcp` prints
    /// as its `st` column. Tracepoint values are named through BTF instead
    /// (`ebpf::kernel_names::KernelNames`), in case a kernel renumbers them.
    pub const KNOWN: [Self; 13] = [
        Self::Established,
        Self::SynSent,
        Self::SynRecv,
        Self::FinWait1,
        Self::FinWait2,
        Self::TimeWait,
        Self::Close,
        Self::CloseWait,
        Self::LastAck,
        Self::Listen,
        Self::Closing,
        Self::NewSynRecv,
        Self::BoundInactive,
    ];

    /// The state of code `code` in that numbering (the `st` column of `/proc/net/tcp`).
    pub fn from_code(code: u8) -> Option<Self> {
        Self::KNOWN.get(usize::from(code).checked_sub(1)?).copied()
    }

    /// This state's code in that numbering; `None` for [`Self::Unknown`].
    pub fn code(self) -> Option<u8> {
        let i = Self::KNOWN.iter().position(|s| *s == self)?;
        u8::try_from(i + 1).ok()
    }

    /// The state for a kernel enumerator name such as `TCP_SYN_SENT`.
    pub fn from_kernel_name(name: &str) -> Option<Self> {
        Some(match name.strip_prefix("TCP_")? {
            "ESTABLISHED" => Self::Established,
            "SYN_SENT" => Self::SynSent,
            "SYN_RECV" => Self::SynRecv,
            "FIN_WAIT1" => Self::FinWait1,
            "FIN_WAIT2" => Self::FinWait2,
            "TIME_WAIT" => Self::TimeWait,
            "CLOSE" => Self::Close,
            "CLOSE_WAIT" => Self::CloseWait,
            "LAST_ACK" => Self::LastAck,
            "LISTEN" => Self::Listen,
            "CLOSING" => Self::Closing,
            "NEW_SYN_RECV" => Self::NewSynRecv,
            "BOUND_INACTIVE" => Self::BoundInactive,
            _ => return None,
        })
    }

    /// The short name used in reports (`ESTABLISHED`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Established => "ESTABLISHED",
            Self::SynSent => "SYN_SENT",
            Self::SynRecv => "SYN_RECV",
            Self::FinWait1 => "FIN_WAIT1",
            Self::FinWait2 => "FIN_WAIT2",
            Self::TimeWait => "TIME_WAIT",
            Self::Close => "CLOSE",
            Self::CloseWait => "CLOSE_WAIT",
            Self::LastAck => "LAST_ACK",
            Self::Listen => "LISTEN",
            Self::Closing => "CLOSING",
            Self::NewSynRecv => "NEW_SYN_RECV",
            Self::BoundInactive => "BOUND_INACTIVE",
            Self::Unknown => "UNKNOWN",
        }
    }
}

impl std::fmt::Display for TcpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a name table came from, for the report's run metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameSources {
    /// `btf` (`/sys/kernel/btf/vmlinux`) or `builtin` (the long-stable Linux values).
    pub tcp_states: String,
    /// `tracefs` or `none`.
    pub rst_reasons: String,
    /// `tracefs` or `none`.
    pub drop_reasons: String,
}
