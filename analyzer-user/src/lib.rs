//! The analyzer: loads faultline's kernel programs, decodes the TCP evidence they record,
//! and (as the project grows) joins it with loadgen's events into root-cause reports.
//!
//! Public surface: [`probe`] (load, attach, drain), [`event`] (decoded kernel events),
//! [`check`] (host readiness), [`tracefs`] (tracepoint formats), [`Error`].

pub mod attach;
pub mod check;
pub mod cli;
pub mod ebpf;
pub mod error;
pub mod event;
pub mod host;
pub mod join;
pub mod kernel_log;
pub mod names;
pub mod offline;
pub mod raw;
pub mod recording;
pub mod report;
pub mod rules;
pub mod session;
pub mod table;
