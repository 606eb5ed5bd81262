//! Why flags were refused: [`ConfigError`], with what to do instead.
use std::path::PathBuf;

use crate::{rate, targets};

/// A flag that does not make sense, with what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Targets(#[from] targets::TargetsError),
    #[error(transparent)]
    Rate(#[from] rate::RateError),
    #[error("read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A usage mistake (exit 2).
pub fn usage(s: impl Into<String>) -> ConfigError {
    ConfigError::Usage(s.into())
}
