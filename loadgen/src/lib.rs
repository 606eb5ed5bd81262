//! loadgen: exact-rate HTTP/1.1 and HTTP/2 load that never hides a failure.
//!
//! Every request is issued at its intended time (open model) or by a virtual user
//! (closed model); every failure gets one [`events::model::Class`], its
//! [`events::model::Phase`] and the connection's facts, stamped with the socket cookie the
//! analyzer joins on.
//!
//! loadgen owns generation only: the flags, the schedule, the engine and its HTTP/1.1 and
//! HTTP/2 drivers, the statistics and its own reports, and the packet tools. It depends
//! on `events` (the contract) and `wire` (the parsers); the analyzer must never depend
//! on it. Public: the command line ([`cli`]), the commands `main` calls ([`app`]), a run
//! in-process ([`run`]) and the targets-file parsers ([`targets`], fuzzed).

pub mod app;
mod classify;
pub mod cli;
mod engine;
mod packets;
mod progress;
mod rate;
mod record;
mod report;
pub mod run;
mod sink;
mod stats;
mod summary;
pub mod targets;
mod thresholds;
mod tls;
