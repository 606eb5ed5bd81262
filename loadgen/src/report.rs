//! Reports of a run: the summary types, the text report, the JSON, and rebuilding the
//! statistics from NDJSON event files (`loadgen report FILE...`).
//!
//! The summary's types are [`crate::summary`]; the statistics that build it are
//! [`crate::stats`]. Arrows: `report` → `stats` → `summary`.
mod read;
mod text;

use crate::summary::Summary;

pub use read::read_events;
pub use text::{format_ms, text};

/// The summary as pretty JSON (the `--output FILE` format).
pub fn json(summary: &Summary) -> String {
    serde_json::to_string_pretty(summary).expect("a summary always serializes")
}

#[cfg(test)]
mod tests;
