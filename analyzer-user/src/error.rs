//! The analyzer library's error type (one enum, structured fields, sources kept), and
//! how an error and its causes read on one line.
use std::path::PathBuf;

/// Everything the analyzer library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("tracefs is not mounted and mounting it at {path} failed")]
    TracefsMount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: malformed tracepoint format line: {reason}")]
    FormatSyntax {
        path: PathBuf,
        line: usize,
        reason: &'static str,
    },
    #[error("tracepoint {tracepoint}: field `{field}` {problem}")]
    FormatField {
        tracepoint: String,
        field: &'static str,
        problem: String,
    },
    #[error("no tracepoint could be attached: {missing}")]
    NothingAttached { missing: String },
    #[error("{what}")]
    Config { what: String },
    #[error(transparent)]
    Uprobe(#[from] crate::uprobe::UprobeError),
    #[error("loading the eBPF object")]
    Load(#[source] aya::EbpfError),
    #[error("{what}")]
    Program {
        what: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("{what}")]
    Map {
        what: String,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("the eBPF object has no {kind} named `{name}`")]
    MissingObject { kind: &'static str, name: String },
    #[error("{what}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// An error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
