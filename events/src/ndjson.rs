//! Streaming NDJSON input, shared by `loadgen report` and the analyzer (loadgen's event
//! files and the kernel event log): one line at a time so memory stays flat, errors
//! name file and line, and a truncated last line (a writer killed mid-write) is skipped
//! with a warning instead of failing the whole file.
use std::{
    fs::File,
    io::{self, BufRead, BufReader},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// Why an NDJSON file (loadgen's or the kernel's) could not be read. The cause is in
/// [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
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
    #[error("{}:{line}: not a valid {what} line", path.display())]
    Parse {
        path: PathBuf,
        line: u64,
        what: &'static str,
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

/// An input file and what was read from it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    pub path: String,
    /// Lines read (blank lines and a skipped truncated last line excluded).
    pub lines: u64,
    /// The file ended in the middle of a line (the writer was killed); that line was
    /// skipped.
    #[serde(default)]
    pub truncated: bool,
}

/// A file read line by line; [`Self::info`] and [`Self::warnings`] say what was read.
#[derive(Debug)]
pub struct NdjsonLines {
    path: PathBuf,
    reader: BufReader<File>,
    buf: Vec<u8>,
    line_no: u64,
    pub info: FileInfo,
    /// Problems that did not stop the reading (a truncated last line), as `file:line: ...`.
    pub warnings: Vec<String>,
}

impl NdjsonLines {
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let file = File::open(path).map_err(|source| ReadError::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
            reader: BufReader::with_capacity(256 * 1024, file),
            buf: Vec::new(),
            line_no: 0,
            info: FileInfo {
                path: path.display().to_string(),
                ..FileInfo::default()
            },
            warnings: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of the line last read (1-based).
    pub fn line(&self) -> u64 {
        self.line_no
    }

    /// The next non-blank line; `None` at the end of the file.
    pub fn next_line(&mut self) -> Result<Option<&[u8]>, ReadError> {
        loop {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|source| ReadError::Read {
                    path: self.path.clone(),
                    line: self.line_no + 1,
                    source,
                })?;
            if n == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            if !self.buf.iter().all(u8::is_ascii_whitespace) {
                self.info.lines += 1;
                return Ok(Some(&self.buf));
            }
        }
    }

    /// The line last read did not parse: `Ok` (skip it) when it is a truncated last
    /// line, else the error naming file and line. `refine` may replace the error with a
    /// more precise one, given the line.
    pub fn bad_line(
        &mut self,
        err: serde_json::Error,
        what: &'static str,
        refine: fn(&[u8], serde_json::Error) -> serde_json::Error,
    ) -> Result<(), ReadError> {
        let at_eof = match self.reader.fill_buf() {
            Ok(rest) => rest.is_empty(),
            Err(source) => {
                return Err(ReadError::Read {
                    path: self.path.clone(),
                    line: self.line_no + 1,
                    source,
                });
            }
        };
        // A writer killed mid-line leaves a last line without its newline; a cut inside
        // a multi-byte character makes it a syntax error rather than an EOF one.
        if at_eof && (!self.buf.ends_with(b"\n") || err.is_eof()) {
            self.info.truncated = true;
            self.info.lines -= 1;
            self.warnings.push(format!(
                "{}:{}: last line is truncated (the run was killed mid-write?); skipped",
                self.path.display(),
                self.line_no
            ));
            return Ok(());
        }
        Err(ReadError::Parse {
            path: self.path.clone(),
            line: self.line_no,
            what,
            source: refine(&self.buf, err),
        })
    }
}
