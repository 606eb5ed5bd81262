//! What finding a uprobe target can fail with: each error names the file and what was
//! missing in it, so a user can tell a wrong path from an unsupported binary.
use std::path::PathBuf;

use super::gopclntab::PclnError;
use super::ret::RetError;

/// Everything finding uprobe targets can fail with.
#[derive(Debug, thiserror::Error)]
pub enum UprobeError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not an ELF file we can read")]
    Elf {
        path: PathBuf,
        #[source]
        source: object::Error,
    },
    #[error(
        "{path} has no Go pc-line table (no .gopclntab section and none found in its \
         read-only data): not a Go binary"
    )]
    NoPclnTab { path: PathBuf },
    #[error("{path}: unreadable Go pc-line table (.gopclntab)")]
    PclnTab {
        path: PathBuf,
        #[source]
        source: PclnError,
    },
    #[error(
        "{path} has no Go build info (no .go.buildinfo section and no \"\\xff Go buildinf:\" \
         blob in its data): cannot tell its Go version"
    )]
    NoBuildInfo { path: PathBuf },
    #[error("{path}: Go version {version:?} is not one we can read")]
    GoVersion { path: PathBuf, version: String },
    #[error("{path} has no function `{function}`")]
    FunctionNotFound { path: PathBuf, function: String },
    #[error("{path}: {what} at {vaddr:#x} is in no loadable segment backed by the file")]
    NotMapped {
        path: PathBuf,
        what: String,
        vaddr: u64,
    },
    #[error("{path}: cannot find the return instructions of `{function}`")]
    Returns {
        path: PathBuf,
        function: String,
        #[source]
        source: RetError,
    },
    #[error("library {name} not found in {searched:?}")]
    LibraryNotFound {
        name: String,
        searched: Vec<PathBuf>,
    },
}
