//! events: the contract between faultline's two tools.
//!
//! It owns what `loadgen` writes and the analyzer reads: the failure taxonomy and the
//! event records ([`model`]), reading NDJSON event files line by line ([`ndjson`]), the
//! one clock and RFC 3339 format both tools stamp records with ([`time`]), and the atomic
//! file write every report goes through ([`fs`]).
//!
//! It must never depend on another faultline crate, nor on an HTTP, TLS or kernel
//! library: both tools build on it, and a reader of the contract should find nothing but
//! the contract here.

pub mod fs;
pub mod model;
pub mod ndjson;
pub mod time;
