//! vegeta's `http` targets format: `METHOD URL`, header lines, an optional `@body` line.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};

use super::{
    Bodies, METHODS, Target, TargetsError, TargetsErrorKind, parse_absolute_url, parse_method,
};

/// A problem on one line: the column (if known) and what is wrong.
type LineResult<T> = Result<T, (Option<usize>, TargetsErrorKind)>;

/// A target whose header and body lines are still being read.
struct Pending {
    target: Target,
    has_body: bool,
}

/// Parses the whole text; `bodies` says where `@file` lines are read from.
pub(super) fn parse(
    text: &str,
    origin: &Path,
    bodies: Bodies<'_>,
) -> Result<Vec<Target>, TargetsError> {
    let mut targets = Vec::new();
    let mut pending: Option<Pending> = None;
    // Editors on Windows may start the file with a byte order mark; it is not whitespace.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (index, raw) in text.lines().enumerate() {
        let located = |(column, kind)| TargetsError {
            file: origin.to_owned(),
            line: Some(index + 1),
            column,
            kind,
        };
        let line = raw.trim();
        if line.is_empty() {
            targets.extend(pending.take().map(|p| p.target));
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        match pending.as_mut() {
            Some(p) if !starts_request_line(line) => {
                if p.has_body {
                    return Err(located((
                        Some(column_of(raw, line)),
                        TargetsErrorKind::AfterBody { line: line.into() },
                    )));
                }
                if let Some(path) = line.strip_prefix('@') {
                    p.target.body = read_body(path.trim(), bodies)
                        .map_err(|kind| located((Some(column_of(raw, line)), kind)))?;
                    p.has_body = true;
                } else {
                    parse_header(raw, line, &mut p.target.headers).map_err(located)?;
                }
            }
            _ => {
                targets.extend(pending.take().map(|p| p.target));
                let (method, url) = parse_request_line(raw, line).map_err(located)?;
                pending = Some(Pending {
                    target: Target {
                        method,
                        url,
                        headers: HeaderMap::new(),
                        body: Bytes::new(),
                    },
                    has_body: false,
                });
            }
        }
    }
    targets.extend(pending.map(|p| p.target));
    if targets.is_empty() {
        return Err(TargetsError {
            file: origin.to_owned(),
            line: Some(1),
            column: None,
            kind: TargetsErrorKind::NoTargets {
                expected: "`METHOD URL` line",
            },
        });
    }
    Ok(targets)
}

/// Whether a line inside a target starts the next one. Header names cannot contain
/// whitespace (RFC 9110 section 5.1), so `GET http://...` is never a header; any case is
/// accepted here so that `get http://...` gets the lowercase-method message.
fn starts_request_line(line: &str) -> bool {
    let mut tokens = line.split_whitespace();
    let first = tokens.next().unwrap_or_default();
    if METHODS.iter().any(|m| m.eq_ignore_ascii_case(first)) {
        return true;
    }
    // `FOO http://host/` inside a target: report the unknown method, not a header name.
    let second = tokens.next().unwrap_or_default();
    first.bytes().all(|b| b.is_ascii_alphabetic())
        && (second.contains("://") || second.starts_with('/'))
}

/// 1-based character column of `part` (a subslice of `raw`) within `raw`.
fn column_of(raw: &str, part: &str) -> usize {
    let offset = (part.as_ptr() as usize).saturating_sub(raw.as_ptr() as usize);
    raw.get(..offset).map_or(0, |s| s.chars().count()) + 1
}

fn parse_request_line(raw: &str, line: &str) -> LineResult<(Method, Uri)> {
    let mut tokens = line.split_whitespace();
    let first = tokens.next().unwrap_or_default();
    let column = Some(column_of(raw, first));
    let method = match parse_method(first) {
        Ok(method) => method,
        Err(_) => return Err((column, request_line_problem(line, first))),
    };
    let Some(url) = tokens.next() else {
        let method = first.to_owned();
        return Err((column, TargetsErrorKind::MissingUrl { method }));
    };
    let url_column = Some(column_of(raw, url));
    let uri = parse_absolute_url(url).map_err(|err| (url_column, err.into()))?;
    if let Some(extra) = tokens.next() {
        let offset = (extra.as_ptr() as usize).saturating_sub(line.as_ptr() as usize);
        let text = line
            .get(offset..)
            .unwrap_or(extra)
            .chars()
            .take(60)
            .collect();
        return Err((
            Some(column_of(raw, extra)),
            TargetsErrorKind::TrailingText { text },
        ));
    }
    Ok((method, uri))
}

/// Names the mistake on a line that should have been `METHOD URL` but is not.
fn request_line_problem(line: &str, first: &str) -> TargetsErrorKind {
    let method_like = first.bytes().all(|b| b.is_ascii_alphabetic());
    if !method_like && (first.contains("://") || first.starts_with('/')) {
        return TargetsErrorKind::MissingMethod { url: first.into() };
    }
    if line.starts_with('@') {
        return TargetsErrorKind::BodyOutsideTarget { line: line.into() };
    }
    if let Some((name, _)) = line.split_once(':')
        && HeaderName::from_bytes(name.trim().as_bytes()).is_ok()
    {
        return TargetsErrorKind::HeaderOutsideTarget { line: line.into() };
    }
    match parse_method(first) {
        Ok(_) => TargetsErrorKind::UnknownMethod {
            found: first.into(),
        },
        Err(problem) => problem,
    }
}

fn parse_header(raw: &str, line: &str, headers: &mut HeaderMap) -> LineResult<()> {
    let column = Some(column_of(raw, line));
    let Some((name, value)) = line.split_once(':') else {
        return Err((
            column,
            TargetsErrorKind::HeaderWithoutColon { line: line.into() },
        ));
    };
    let name = name.trim();
    let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        (
            column,
            TargetsErrorKind::BadHeaderName { name: name.into() },
        )
    })?;
    let value = value.trim();
    let header_value = HeaderValue::from_str(value).map_err(|_| {
        let name = name.to_owned();
        (
            Some(column_of(raw, value)),
            TargetsErrorKind::BadHeaderValue { name },
        )
    })?;
    // Repeated lines add values, as vegeta's `req.Header.Add` does.
    headers.append(header_name, header_value);
    Ok(())
}

fn read_body(path: &str, bodies: Bodies<'_>) -> Result<Bytes, TargetsErrorKind> {
    if path.is_empty() {
        return Err(TargetsErrorKind::EmptyBodyPath);
    }
    let path = PathBuf::from(path);
    match bodies {
        Bodies::Unavailable => Err(TargetsErrorKind::BodyFileUnavailable { path }),
        Bodies::Dir(dir) => {
            // `join` keeps an absolute body path as it is.
            let resolved = dir.join(&path);
            match std::fs::read(&resolved) {
                Ok(bytes) => Ok(Bytes::from(bytes)),
                Err(source) => Err(TargetsErrorKind::BodyFile {
                    path,
                    resolved,
                    source,
                }),
            }
        }
    }
}
