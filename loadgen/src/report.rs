//! Reports of a run: the summary types, the text report, the JSON, and rebuilding the
//! statistics from NDJSON event files (`loadgen report FILE...`).
mod read;
mod summary;
mod text;

pub use read::{ReadError, ReadInfo, read_events};
pub use summary::{
    Bytes, ClassSummary, Connections, ErrorCount, Lag, Latency, Overload, Rate, Requests, Second,
    Summary,
};
pub use text::{format_ms, text};

/// The summary as pretty JSON (the `--output FILE` format).
pub fn json(summary: &Summary) -> String {
    serde_json::to_string_pretty(summary).expect("a summary always serializes")
}

#[cfg(test)]
mod tests;
