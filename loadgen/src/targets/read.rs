//! Reading targets: from a file (with `@file` bodies beside it) or from bytes, in either
//! format, with the UTF-8 check that names the line and column of a bad byte.
use std::path::Path;

use super::{
    Bodies, Target, TargetFormat, TargetsError, TargetsErrorKind, http_format, json_format,
};

/// Reads and parses a targets file; `@file` bodies are relative to its directory.
pub(crate) fn load(path: &Path, format: TargetFormat) -> Result<Vec<Target>, TargetsError> {
    let bytes = std::fs::read(path).map_err(|source| TargetsError {
        file: path.to_owned(),
        line: None,
        column: None,
        kind: TargetsErrorKind::ReadFile { source },
    })?;
    let text = decode_utf8(&bytes, path)?;
    let base_dir = path.parent().unwrap_or(Path::new(""));
    parse(text, format, path, Bodies::Dir(base_dir))
}

/// Parses in-memory bytes (no filesystem access: an `@file` body line is an error).
pub fn parse_bytes(
    bytes: &[u8],
    format: TargetFormat,
    origin: &Path,
) -> Result<Vec<Target>, TargetsError> {
    let text = decode_utf8(bytes, origin)?;
    parse(text, format, origin, Bodies::Unavailable)
}

/// Parses vegeta's `http` format; `origin` names the file in errors and `@file` bodies
/// are read relative to `base_dir`.
#[cfg(test)]
pub(crate) fn parse_http(
    text: &str,
    origin: &Path,
    base_dir: &Path,
) -> Result<Vec<Target>, TargetsError> {
    parse(text, TargetFormat::Http, origin, Bodies::Dir(base_dir))
}

/// Parses vegeta's `json` format (one object per line, blank lines skipped).
fn parse_json(text: &str, origin: &Path) -> Result<Vec<Target>, TargetsError> {
    json_format::parse(text, origin)
}

fn parse(
    text: &str,
    format: TargetFormat,
    origin: &Path,
    bodies: Bodies<'_>,
) -> Result<Vec<Target>, TargetsError> {
    match format {
        TargetFormat::Http => http_format::parse(text, origin, bodies),
        TargetFormat::Json => parse_json(text, origin),
    }
}

/// Turns bytes into text, or names the line and column of the first invalid byte.
fn decode_utf8<'b>(bytes: &'b [u8], origin: &Path) -> Result<&'b str, TargetsError> {
    std::str::from_utf8(bytes).map_err(|err| {
        let valid = &bytes[..err.valid_up_to()];
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&valid[line_start..])
            .chars()
            .count()
            + 1;
        TargetsError {
            file: origin.to_owned(),
            line: Some(valid.iter().filter(|&&b| b == b'\n').count() + 1),
            column: Some(column),
            kind: TargetsErrorKind::InvalidUtf8,
        }
    })
}
