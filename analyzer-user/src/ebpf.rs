//! The eBPF backend: reading tracepoint layouts from tracefs ([`tracefs`]), naming this
//! kernel's numbers (`kernel_names`), loading and attaching the kernel programs and
//! draining their ring buffer ([`probe`]), finding the TCP counters in `struct tcp_sock`
//! through BTF (`tcp_sock`), the plaintext capture's syscall programs ([`syscalls`]),
//! and decoding its records (`decode`).
//! Everything here is eBPF-only; what the raw backend shares with it lives outside (the
//! events in `event`, the run facts in `recording`).
pub mod decode;
pub(crate) mod kernel_names;
pub mod probe;
pub mod syscalls;
mod tcp_sock;
pub mod tls_probes;
pub mod tracefs;
