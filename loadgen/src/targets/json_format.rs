//! vegeta's `json` targets format: one `{"method","url","header","body"}` object per line.

use std::path::Path;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::{Target, TargetsError, TargetsErrorKind, parse_absolute_url, parse_method};

/// Parses the whole text, one target per non-blank line.
pub(super) fn parse(text: &str, origin: &Path) -> Result<Vec<Target>, TargetsError> {
    let mut targets = Vec::new();
    // Editors on Windows may start the file with a byte order mark; serde_json refuses it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |column: Option<usize>, kind| TargetsError {
            file: origin.to_owned(),
            line: Some(index + 1),
            column,
            kind,
        };
        let value: Value = serde_json::from_str(line).map_err(|err| {
            at(
                Some(err.column()),
                TargetsErrorKind::Json {
                    reason: serde_reason(&err),
                },
            )
        })?;
        targets.push(json_target(&value).map_err(|kind| at(None, kind))?);
    }
    if targets.is_empty() {
        return Err(TargetsError {
            file: origin.to_owned(),
            line: Some(1),
            column: None,
            kind: TargetsErrorKind::NoTargets {
                expected: "JSON object per line",
            },
        });
    }
    Ok(targets)
}

/// serde_json's message without its " at line L column C" tail (we print our own).
fn serde_reason(err: &serde_json::Error) -> String {
    let mut reason = err.to_string();
    if let Some(at) = reason.rfind(" at line ") {
        reason.truncate(at);
    }
    reason
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn json_target(value: &Value) -> Result<Target, TargetsErrorKind> {
    let Value::Object(object) = value else {
        return Err(TargetsErrorKind::NotAnObject {
            found: json_type(value),
        });
    };
    // Unknown fields are refused rather than ignored (as Go's decoder would), so that a
    // typo such as `headers` does not silently send requests without them.
    if let Some(field) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "method" | "url" | "header" | "body"))
    {
        return Err(TargetsErrorKind::UnknownField {
            field: field.clone(),
        });
    }
    let in_field = |field: &str, reason: TargetsErrorKind| TargetsErrorKind::InField {
        field: field.into(),
        reason: Box::new(reason),
    };
    let method = required_str(object, "method")?;
    let method = parse_method(method).map_err(|problem| in_field("method", problem))?;
    let url = required_str(object, "url")?;
    let url = parse_absolute_url(url).map_err(|err| in_field("url", err.into()))?;
    let mut headers = HeaderMap::new();
    match object.get("header") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, values) in map {
                json_header(name, values, &mut headers)?;
            }
        }
        Some(other) => return Err(wrong_type("header", other, "an object of string arrays")),
    }
    let body = match object.get("body") {
        // Go encodes a nil []byte as null.
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(text)) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Bytes::from)
            .map_err(|err| {
                let reason = err.to_string();
                in_field("body", TargetsErrorKind::BadBase64 { reason })
            })?,
        Some(other) => return Err(wrong_type("body", other, "a base64 string")),
    };
    Ok(Target {
        method,
        url,
        headers,
        body,
    })
}

fn required_str<'v>(
    object: &'v serde_json::Map<String, Value>,
    field: &'static str,
) -> Result<&'v str, TargetsErrorKind> {
    match object.get(field) {
        None | Some(Value::Null) => Err(TargetsErrorKind::MissingField { field }),
        Some(Value::String(text)) => Ok(text),
        Some(other) => Err(wrong_type(field, other, "a string")),
    }
}

fn wrong_type(field: &str, found: &Value, expected: &'static str) -> TargetsErrorKind {
    TargetsErrorKind::WrongType {
        field: field.into(),
        found: json_type(found),
        expected,
    }
}

/// One `"Name": ["v1", "v2"]` entry (vegeta's `http.Header`); a lone string is accepted
/// as one value.
fn json_header(
    name: &str,
    values: &Value,
    headers: &mut HeaderMap,
) -> Result<(), TargetsErrorKind> {
    let field = format!("header.{name}");
    let header_name =
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| TargetsErrorKind::InField {
            field: "header".into(),
            reason: Box::new(TargetsErrorKind::BadHeaderName { name: name.into() }),
        })?;
    let one = |value: &Value| -> Result<HeaderValue, TargetsErrorKind> {
        let Value::String(text) = value else {
            return Err(wrong_type(&field, value, "a string or an array of strings"));
        };
        HeaderValue::from_str(text).map_err(|_| TargetsErrorKind::InField {
            field: "header".into(),
            reason: Box::new(TargetsErrorKind::BadHeaderValue { name: name.into() }),
        })
    };
    match values {
        Value::Array(items) => {
            for item in items {
                headers.append(header_name.clone(), one(item)?);
            }
        }
        single => {
            headers.append(header_name, one(single)?);
        }
    }
    Ok(())
}
