//! Rebuilding the statistics from NDJSON event files (`loadgen report FILE...`).
//!
//! Files are streamed line by line, so memory stays flat however long the run. Several
//! files (one run split across hosts) are merged in intended-time order, one pending
//! request per file: the per-second window then sees one timeline, as it would have live,
//! and keeps exact per-second percentiles.
use std::{
    fs::File,
    io::{self, BufRead, BufReader},
    path::{Path, PathBuf},
};

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    model::{ConnEvent, EventLine, RequestEvent},
    stats::{RunMeta, Stats},
};

/// Distinct attack names kept in [`ReadInfo::attacks`].
const MAX_ATTACK_NAMES: usize = 8;

/// Why event files could not be read. The cause is in [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no event files given")]
    NoFiles,
    #[error("{}: cannot open", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}:{line}: cannot read", path.display())]
    Read {
        path: PathBuf,
        line: u64,
        #[source]
        source: io::Error,
    },
    #[error("{}:{line}: not a valid event line", path.display())]
    Parse {
        path: PathBuf,
        line: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}:{line}: timestamp {value:?} is not RFC 3339 after 1970", path.display())]
    Timestamp {
        path: PathBuf,
        line: u64,
        value: String,
    },
}

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
    /// truncated file means the run was interrupted.
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

/// Parses an RFC 3339 timestamp into unix nanoseconds (`None` before 1970 or malformed).
pub fn parse_unix_ns(timestamp: &str) -> Option<u64> {
    let t = OffsetDateTime::parse(timestamp, &Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos()).ok()
}

/// One file being read, with its next request held back for the time-ordered merge.
struct Cursor {
    path: PathBuf,
    reader: BufReader<File>,
    line: u64,
    buf: Vec<u8>,
    next: Option<(u64, Box<RequestEvent>)>,
}

impl Cursor {
    fn open(path: &Path) -> Result<Self, ReportError> {
        let file = File::open(path).map_err(|source| ReportError::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
            reader: BufReader::with_capacity(256 * 1024, file),
            line: 0,
            buf: Vec::new(),
            next: None,
        })
    }

    fn read_error(&self, source: io::Error) -> ReportError {
        ReportError::Read {
            path: self.path.clone(),
            line: self.line + 1,
            source,
        }
    }

    /// Reads up to the next request line, recording connection lines on the way. Leaves
    /// `next` empty at the end of the file.
    fn advance(&mut self, stats: &mut Stats, info: &mut ReadInfo) -> Result<(), ReportError> {
        self.next = None;
        loop {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| self.read_error(e))?;
            if n == 0 {
                return Ok(());
            }
            self.line += 1;
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<EventLine>(&self.buf) {
                Ok(EventLine::Conn(ev)) => {
                    info.lines += 1;
                    info.conn_events += 1;
                    info.note_attack(&ev.attack);
                    stats.record_conn(&ev);
                }
                Ok(EventLine::Request(ev)) => {
                    info.lines += 1;
                    let Some(intended_ns) = parse_unix_ns(&ev.timestamp) else {
                        return Err(ReportError::Timestamp {
                            path: self.path.clone(),
                            line: self.line,
                            value: ev.timestamp.clone(),
                        });
                    };
                    self.next = Some((intended_ns, ev));
                    return Ok(());
                }
                Err(err) => return self.bad_line(err, info),
            }
        }
    }

    /// A line that does not parse: a warning if it is a truncated last line, else an error.
    fn bad_line(&mut self, err: serde_json::Error, info: &mut ReadInfo) -> Result<(), ReportError> {
        let at_eof = match self.reader.fill_buf() {
            Ok(rest) => rest.is_empty(),
            Err(e) => return Err(self.read_error(e)),
        };
        // A writer killed mid-line leaves a last line without its newline; a cut inside a
        // multi-byte character makes it a syntax error rather than an EOF one.
        if at_eof && (!self.buf.ends_with(b"\n") || err.is_eof()) {
            info.truncated = true;
            info.warnings.push(format!(
                "{}:{}: last line is truncated (the run was killed mid-write?); skipped",
                self.path.display(),
                self.line
            ));
            return Ok(());
        }
        Err(ReportError::Parse {
            path: self.path.clone(),
            line: self.line,
            source: precise(&self.buf, err),
        })
    }
}

/// The untagged [`EventLine`] only says "did not match any variant": parse again as the
/// kind the line names, for an error that points at the bad field.
fn precise(line: &[u8], err: serde_json::Error) -> serde_json::Error {
    if !err.is_data() {
        return err;
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(line) else {
        return err;
    };
    let specific = match value.get("type").and_then(|t| t.as_str()) {
        Some("request") => serde_json::from_value::<RequestEvent>(value).err(),
        Some("conn") => serde_json::from_value::<ConnEvent>(value).err(),
        Some(other) => Some(serde::de::Error::custom(format_args!(
            "unknown event type {other:?}, expected \"request\" or \"conn\""
        ))),
        None => Some(serde::de::Error::custom("missing field `type`")),
    };
    specific.unwrap_or(err)
}

/// Rebuilds the statistics from one or more NDJSON event files (one run, possibly split
/// across hosts). A malformed line is an error naming its file and line, except a truncated
/// last line, which becomes a warning in [`ReadInfo`].
pub fn read_events(paths: &[PathBuf]) -> Result<(Stats, ReadInfo), ReportError> {
    if paths.is_empty() {
        return Err(ReportError::NoFiles);
    }
    let mut stats = Stats::new();
    let mut info = ReadInfo {
        files: paths.len(),
        ..ReadInfo::default()
    };
    let mut cursors = paths
        .iter()
        .map(|p| Cursor::open(p))
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
    info.started_unix_ns = stats.first_intended_unix_ns();
    info.span_ns = stats.span_ns();
    Ok((stats, info))
}
