//! loadgen: exact-rate HTTP/1.1 and HTTP/2 load that never hides a failure.
//!
//! Every request is issued at its intended time (open model) or by a virtual user
//! (closed model); every failure gets one [`model::Class`], its [`model::Phase`] and the
//! connection's facts, stamped with the socket cookie the analyzer joins on.

pub mod app;
pub mod classify;
pub mod cli;
pub mod conn;
pub mod engine;
mod h1conn;
pub mod h2conn;
pub mod packets;
pub mod rate;
pub mod record;
pub mod report;
pub mod run;
pub mod sink;
pub mod stats;
pub mod tap;
pub mod targets;
pub mod thresholds;
pub mod tls;
