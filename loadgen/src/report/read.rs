//! Rebuilding the statistics from NDJSON event files (`loadgen report FILE...`).
//!
//! Files are streamed line by line, so memory stays flat however long the run. Several
//! files (one run split across hosts) are merged in intended-time order, one pending
//! request per file: the per-second window then sees one timeline, as it would have live,
//! and keeps exact per-second percentiles.
use std::path::PathBuf;

use events::{model::precise_event_error, time::parse_unix_ns};

#[cfg(test)]
use crate::stats::RunMeta;
use crate::stats::Stats;
use events::model::{EventLine, RequestEvent};
use events::ndjson::NdjsonLines;
pub use events::ndjson::ReadError;

/// Distinct attack names kept in [`ReadInfo::attacks`].
const MAX_ATTACK_NAMES: usize = 8;

/// What reading the files found, beside the statistics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadInfo {
    pub files: usize,
    /// Event lines read (blank lines and a skipped truncated line excluded).
    pub lines: u64,
    pub requests: u64,
    pub conn_events: u64,
    /// Problems that did not stop the report (a truncated last line), as `file:line: ...`.
    pub warnings: Vec<String>,
    /// A file ended in the middle of a line: the run was killed mid-write.
    pub truncated: bool,
    /// Distinct attack names, in order of appearance (at most 8).
    pub attacks: Vec<String>,
    /// The earliest intended send time.
    pub started_unix_ns: Option<u64>,
    /// From the earliest intended send time to the end of the last response.
    pub span_ns: u64,
}

impl ReadInfo {
    /// The run metadata these files imply: the target rate is not in the events, and a
    /// truncated file means the run was interrupted. (`loadgen report` builds its own,
    /// from the statistics, with `interrupted: false`; only the tests use this.)
    #[cfg(test)]
    pub fn run_meta(&self, config: serde_json::Value) -> RunMeta {
        RunMeta {
            attack: self.attacks.join(","),
            config,
            started_unix_ns: self.started_unix_ns.unwrap_or(0),
            wall_ns: self.span_ns,
            target_rate_per_sec: None,
            interrupted: self.truncated,
        }
    }

    fn note_attack(&mut self, name: &str) {
        if self.attacks.len() < MAX_ATTACK_NAMES && !self.attacks.iter().any(|a| a == name) {
            self.attacks.push(name.to_owned());
        }
    }
}

/// One file being read, with its next request held back for the time-ordered merge.
struct Cursor {
    lines: NdjsonLines,
    next: Option<(u64, Box<RequestEvent>)>,
}

impl Cursor {
    /// Reads up to the next request line, recording connection lines on the way. Leaves
    /// `next` empty at the end of the file.
    fn advance(&mut self, stats: &mut Stats, info: &mut ReadInfo) -> Result<(), ReadError> {
        self.next = None;
        while let Some(bytes) = self.lines.next_line()? {
            match serde_json::from_slice::<EventLine>(bytes) {
                Ok(EventLine::Conn(ev)) => {
                    info.conn_events += 1;
                    info.note_attack(&ev.attack);
                    stats.record_conn(&ev);
                }
                Ok(EventLine::Request(ev)) => {
                    let Some(intended_ns) = parse_unix_ns(&ev.timestamp) else {
                        return Err(ReadError::Timestamp {
                            path: self.lines.path().to_owned(),
                            line: self.lines.line(),
                            value: ev.timestamp.clone(),
                        });
                    };
                    self.next = Some((intended_ns, ev));
                    return Ok(());
                }
                Err(err) => self.lines.bad_line(err, "event", precise_event_error)?,
            }
        }
        Ok(())
    }
}

/// Rebuilds the statistics from one or more NDJSON event files (one run, possibly split
/// across hosts). A malformed line is an error naming its file and line, except a truncated
/// last line, which becomes a warning in [`ReadInfo`].
pub fn read_events(paths: &[PathBuf]) -> Result<(Stats, ReadInfo), ReadError> {
    if paths.is_empty() {
        return Err(ReadError::NoFiles);
    }
    let mut stats = Stats::new();
    let mut info = ReadInfo {
        files: paths.len(),
        ..ReadInfo::default()
    };
    let mut cursors = paths
        .iter()
        .map(|p| NdjsonLines::open(p).map(|lines| Cursor { lines, next: None }))
        .collect::<Result<Vec<_>, _>>()?;
    for cursor in &mut cursors {
        cursor.advance(&mut stats, &mut info)?;
    }
    loop {
        // Few files: a linear scan for the earliest pending request is cheap.
        let earliest = cursors
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.next.as_ref().map(|(t, _)| (*t, i)))
            .min();
        let Some((_, i)) = earliest else { break };
        let (intended_ns, ev) = cursors[i]
            .next
            .take()
            .expect("the chosen cursor has a request");
        info.requests += 1;
        info.note_attack(&ev.attack);
        stats.record(&ev, intended_ns);
        cursors[i].advance(&mut stats, &mut info)?;
    }
    for c in &mut cursors {
        info.lines += c.lines.info.lines;
        info.truncated |= c.lines.info.truncated;
        info.warnings.append(&mut c.lines.warnings);
    }
    info.started_unix_ns = stats.first_intended_unix_ns();
    info.span_ns = stats.span_ns();
    Ok((stats, info))
}
