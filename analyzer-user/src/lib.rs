//! The analyzer: collects TCP evidence beside a load run, from faultline's kernel programs
//! (the eBPF backend, [`ebpf`]) or from the wire (the raw-socket backend, [`raw`]), folds
//! it into one record per connection, joins loadgen's event files, and names why requests
//! failed in a ranked root-cause report.
//!
//! It owns collection ([`attach`], the kernel log), the connection table and the join,
//! the rules and the report. It depends on `events` (the contract between the tools) and
//! `wire` (parsers); it must never depend on `loadgen`: what both tools share lives in
//! those two crates.
//!
//! Public surface, what the binary, the tests and the fuzz targets use:
//! [`cli`] (every flag), [`session`] (a live run: attach, analyse, report), [`attach`]
//! (its options and outcome), [`offline`] (the report from recorded files), [`report`]
//! (the report), [`check`] (host readiness), [`ebpf`] (probes and tracefs), [`raw`] (the
//! wire parsers), [`event`] and [`names`] (the evidence), [`recording`] (filters and
//! probe reports), [`error`].

pub mod attach;
pub mod check;
pub mod cli;
pub mod ebpf;
pub mod error;
pub mod event;
mod host;
mod join;
mod kernel_log;
pub mod names;
pub mod offline;
pub mod plaintext;
pub mod raw;
pub mod recording;
pub mod report;
mod rules;
pub mod session;
mod table;
pub mod tls_probe;
pub mod uprobe;
