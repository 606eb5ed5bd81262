//! Targets files in vegeta's two formats (`http` and `json`), parsed into requests with
//! errors that point at the file, line and column of the mistake.
//!
//! The `http` format (vegeta's default) is blocks of
//!
//! ```text
//! # comment
//! POST https://api.example.com/v1/items
//! Content-Type: application/json
//! @bodies/item.json
//! ```
//!
//! separated by blank lines (a new `METHOD URL` line also starts a new target). The `json`
//! format is one object per line:
//! `{"method":"GET","url":"https://host/","header":{"Name":["v1","v2"]},"body":"<base64>"}`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use bytes::Bytes;
use http::header::HeaderMap;
use http::{Method, Uri};

/// One request to send, as read from a targets file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub method: Method,
    /// Absolute `http` or `https` URL with a host (checked by the parser).
    pub url: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The two vegeta targets formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetFormat {
    Http,
    Json,
}

impl FromStr for TargetFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "http" => Ok(Self::Http),
            "json" => Ok(Self::Json),
            other => Err(UnknownFormat(other.to_owned())),
        }
    }
}

impl fmt::Display for TargetFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Http => "http",
            Self::Json => "json",
        })
    }
}

/// A `--format` value that is neither `http` nor `json`.
#[derive(Debug, thiserror::Error)]
#[error("unknown targets format `{0}`, expected `http` or `json`")]
pub struct UnknownFormat(pub String);

/// A mistake in a targets file, located at `file:line[:column]`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", Location::new(.file, .line, .column))]
pub struct TargetsError {
    pub file: PathBuf,
    /// 1-based; `None` when the error concerns the whole file (it could not be read).
    pub line: Option<usize>,
    /// 1-based, in characters (serde_json's column for JSON syntax errors).
    pub column: Option<usize>,
    pub kind: TargetsErrorKind,
}

/// Renders `file:line:column` the way compilers do, so editors can jump to it.
struct Location<'a> {
    file: &'a Path,
    line: Option<usize>,
    column: Option<usize>,
}

impl<'a> Location<'a> {
    fn new(file: &'a Path, line: &Option<usize>, column: &Option<usize>) -> Self {
        Self {
            file,
            line: *line,
            column: *column,
        }
    }
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}

/// What is wrong, without the location (see [`TargetsError`]).
#[derive(Debug, thiserror::Error)]
pub enum TargetsErrorKind {
    #[error("cannot read the targets file: {source}")]
    ReadFile { source: std::io::Error },
    #[error("invalid UTF-8, expected UTF-8 text")]
    InvalidUtf8,
    #[error("no targets found, expected at least one {expected}")]
    NoTargets { expected: &'static str },
    #[error("method `{found}` is not uppercase, expected `{expected}`")]
    LowercaseMethod { found: String, expected: String },
    #[error("unknown method `{found}`, expected one of {}", METHODS.join(", "))]
    UnknownMethod { found: String },
    #[error("URL `{url}` has no method before it, expected `METHOD URL` such as `GET {url}`")]
    MissingMethod { url: String },
    #[error("missing URL after `{method}`, expected `{method} <absolute http(s) URL>`")]
    MissingUrl { method: String },
    #[error("unexpected `{text}` after the URL, expected only `METHOD URL` on this line")]
    TrailingText { text: String },
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("header line `{line}` outside a target, expected a `METHOD URL` line first")]
    HeaderOutsideTarget { line: String },
    #[error("body line `{line}` outside a target, expected a `METHOD URL` line first")]
    BodyOutsideTarget { line: String },
    #[error("header line `{line}` has no colon, expected `Name: value`")]
    HeaderWithoutColon { line: String },
    #[error("invalid header name `{name}`, expected a token such as `Content-Type`")]
    BadHeaderName { name: String },
    #[error("invalid value for header `{name}`, expected text without control characters")]
    BadHeaderValue { name: String },
    #[error("missing path after `@`, expected `@path/to/body`")]
    EmptyBodyPath,
    #[error("cannot read body file `{}` (at {}): {source}, expected a readable file", .path.display(), .resolved.display())]
    BodyFile {
        path: PathBuf,
        resolved: PathBuf,
        source: std::io::Error,
    },
    #[error("body file `{}` cannot be read from in-memory input, expected targets without `@file` lines", .path.display())]
    BodyFileUnavailable { path: PathBuf },
    #[error("`{line}` after the body line, expected a blank line or the next `METHOD URL`")]
    AfterBody { line: String },
    #[error("invalid JSON ({reason}), expected one JSON object per line")]
    Json { reason: String },
    #[error(
        "found {found}, expected a JSON object like {{\"method\":\"GET\",\"url\":\"https://host/\"}}"
    )]
    NotAnObject { found: &'static str },
    #[error("unknown field `{field}`, expected one of method, url, header, body")]
    UnknownField { field: String },
    #[error("missing field `{field}`, expected a string")]
    MissingField { field: &'static str },
    #[error("field `{field}` is {found}, expected {expected}")]
    WrongType {
        field: String,
        found: &'static str,
        expected: &'static str,
    },
    #[error("field `{field}`: {reason}")]
    InField {
        field: String,
        reason: Box<TargetsErrorKind>,
    },
    #[error(
        "invalid base64 ({reason}), expected standard base64 with padding (RFC 4648 section 4)"
    )]
    BadBase64 { reason: String },
}

/// Why a string is not an absolute `http`/`https` URL; shared with `--group url=`.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("invalid URL `{url}` ({reason}), expected an absolute http:// or https:// URL")]
    Invalid { url: String, reason: String },
    #[error("relative URL `{url}`, expected an absolute http:// or https:// URL")]
    Relative { url: String },
    #[error("unsupported scheme `{scheme}` in `{url}`, expected http or https")]
    UnsupportedScheme { url: String, scheme: String },
    #[error("URL `{url}` has no host, expected http(s)://HOST[:PORT]/PATH")]
    MissingHost { url: String },
}

/// Parses an absolute `http`/`https` URL with a non-empty host.
pub(crate) fn parse_absolute_url(url: &str) -> Result<Uri, UrlError> {
    let uri = match url.parse::<Uri>() {
        Ok(uri) => uri,
        Err(_) if !url.contains("://") => return Err(UrlError::Relative { url: url.into() }),
        Err(err) => {
            return Err(UrlError::Invalid {
                url: url.into(),
                reason: err.to_string(),
            });
        }
    };
    let Some(scheme) = uri.scheme_str() else {
        return Err(UrlError::Relative { url: url.into() });
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(UrlError::UnsupportedScheme {
            url: url.into(),
            scheme: scheme.into(),
        });
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(UrlError::MissingHost { url: url.into() });
    }
    Ok(uri)
}

/// vegeta's list (`startsWithHTTPMethod` in lib/targets.go): a line starting with one of
/// these begins a target, which is also how back-to-back targets are told from headers.
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// One of vegeta's methods, in uppercase; otherwise what is wrong with it.
fn parse_method(found: &str) -> Result<Method, TargetsErrorKind> {
    if METHODS.contains(&found) {
        // Cannot fail: every entry of METHODS is a valid token.
        if let Ok(method) = Method::from_bytes(found.as_bytes()) {
            return Ok(method);
        }
    }
    Err(
        match METHODS.iter().find(|m| m.eq_ignore_ascii_case(found)) {
            Some(upper) => TargetsErrorKind::LowercaseMethod {
                found: found.into(),
                expected: (*upper).into(),
            },
            None => TargetsErrorKind::UnknownMethod {
                found: found.into(),
            },
        },
    )
}

/// Where `@file` bodies come from.
#[derive(Clone, Copy)]
enum Bodies<'a> {
    Dir(&'a Path),
    /// In-memory input (fuzzing, tests): reading files named by the input is refused.
    Unavailable,
}

mod http_format;
mod json_format;
mod read;
#[cfg(test)]
mod tests;

pub(crate) use read::load;
pub use read::parse_bytes;
#[cfg(test)]
pub(crate) use read::parse_http;
