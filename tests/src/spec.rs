//! The fault spec grammar: parsing, canonical printing and plain-English descriptions.
//!
//! A listener is asked for with `SPEC[@PORT]`, for example `goaway:enhance_your_calm:after=2`
//! or `slow:2s@8443`. Parsing is strict: an unknown fault, option or malformed value is an
//! error naming the spec and what was expected, so a typo never silently becomes `ok`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use h2::Reason;

use crate::error::SpecError;

/// Response hold time of `goaway-on-concurrency` when the spec gives none.
const DEFAULT_HOLD: Duration = Duration::from_millis(50);

/// Body of `ok` when the spec gives no size: the two bytes `ok`.
const DEFAULT_OK_BODY_BYTES: usize = 2;

/// Largest body `ok:size=N` accepts; the body is built in memory for every response.
const MAX_OK_BODY_BYTES: usize = 64 * 1024 * 1024;

/// One failure the testbed produces on a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Fast `200` with a body of `body_bytes` bytes.
    Ok { body_bytes: usize },
    /// Every request is answered with this status.
    Status(http::StatusCode),
    /// TLS presents the fallback "default" certificate (valid chain, wrong name).
    WrongCert,
    /// TLS presents a leaf for the right name signed by an unpublished CA.
    UntrustedCert,
    /// TLS presents a leaf for the right name whose validity ended in the past.
    ExpiredCert,
    /// HTTP/2 GOAWAY with `reason` once `after` streams were answered on a connection.
    GoAway { reason: Reason, after: usize },
    /// HTTP/2 GOAWAY ENHANCE_YOUR_CALM once more than `max_streams` are in flight.
    GoAwayOnConcurrency { max_streams: usize, hold: Duration },
    /// HTTP/2 RST_STREAM with `reason` on every stream after the first `after`.
    RstStream { reason: Reason, after: usize },
    /// TCP RST instead of the answer to request number `after + 1` on a connection.
    Rst { after: usize },
    /// Response head and part of the body, then TCP RST.
    RstMidResponse,
    /// Response head and part of the body, then a clean FIN.
    FinMidResponse,
    /// Keep-alive connections idle for this long are closed with FIN.
    CloseIdle(Duration),
    /// Requests are read and never answered.
    Stall,
    /// Every answer waits this long.
    Slow(Duration),
    /// A listening socket whose accept queue is full, so SYNs are dropped.
    BacklogFull,
    /// A bound port with no listener, so SYNs are answered with RST.
    Refused,
}

/// A fault and the port it should listen on (`None`: any free port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub fault: Fault,
    pub port: Option<u16>,
}

/// The listeners started when none are asked for: one per fault class.
pub fn default_specs() -> Vec<ListenerSpec> {
    [
        "ok",
        "status:503",
        "wrong-cert",
        "untrusted-cert",
        "expired-cert",
        "goaway:enhance_your_calm:after=2",
        "goaway:no_error:after=5",
        "goaway-on-concurrency:8",
        "rst-stream:refused_stream:after=1",
        "rst:after=1",
        "rst-mid-response",
        "fin-mid-response",
        "close-idle:200ms",
        "stall",
        "slow:2s",
        "backlog-full",
        "refused",
    ]
    .iter()
    .map(|s| s.parse().expect("default specs parse"))
    .collect()
}

impl Fault {
    /// What a client of this listener experiences, in plain English.
    pub fn describe(&self) -> String {
        match self {
            Fault::Ok { body_bytes } => {
                format!("answers 200 at once with a {body_bytes}-byte body")
            }
            Fault::Status(code) => format!("answers every request with status {}", code.as_u16()),
            Fault::WrongCert => "TLS presents the fallback default certificate \
                (CN FAULTLINE TESTBED DEFAULT CERT, SAN default.invalid; trusted CA, wrong name)"
                .to_owned(),
            Fault::UntrustedCert => {
                "TLS presents a certificate for the right name signed by an unknown CA".to_owned()
            }
            Fault::ExpiredCert => {
                "TLS presents a certificate for the right name that has expired".to_owned()
            }
            Fault::GoAway { reason, after } => format!(
                "HTTP/2: GOAWAY {} after {after} answered streams per connection; \
                 HTTP/1.1: `Connection: close` on response {}",
                reason_name(*reason)
                    .unwrap_or("(unnamed code)")
                    .to_uppercase(),
                after + 1
            ),
            Fault::GoAwayOnConcurrency { max_streams, hold } => format!(
                "HTTP/2: GOAWAY ENHANCE_YOUR_CALM when more than {max_streams} streams are in \
                 flight on a connection (each answer held {} ms); HTTP/1.1: ok",
                hold.as_millis()
            ),
            Fault::RstStream { reason, after } => format!(
                "HTTP/2: RST_STREAM {} on every stream after the first {after} per connection; \
                 HTTP/1.1: ok",
                reason_name(*reason)
                    .unwrap_or("(unnamed code)")
                    .to_uppercase()
            ),
            Fault::Rst { after } => format!(
                "answers {after} request{} per connection, then resets the TCP connection (RST) \
                 instead of answering the next",
                if *after == 1 { "" } else { "s" }
            ),
            Fault::RstMidResponse => {
                "sends the response head (Content-Length 1024) and 512 body bytes, then TCP RST"
                    .to_owned()
            }
            Fault::FinMidResponse => "sends the response head (Content-Length 1024) and 512 body \
                bytes, then closes cleanly (FIN): EOF mid-body"
                .to_owned(),
            Fault::CloseIdle(idle) => format!(
                "closes keep-alive connections idle for {} ms with FIN (the idle-timeout race)",
                idle.as_millis()
            ),
            Fault::Stall => "reads requests and never answers".to_owned(),
            Fault::Slow(delay) => format!("answers 200 after {} ms", delay.as_millis()),
            Fault::BacklogFull => "accept queue kept full and never accepted: \
                SYNs are dropped, connects time out"
                .to_owned(),
            Fault::Refused => "port bound but not listening: SYNs are answered with RST \
                (connection refused)"
                .to_owned(),
        }
    }
}

/// The RFC 9113 section 7 name of an error code, lower case, if it has one.
pub(crate) fn reason_name(reason: Reason) -> Option<&'static str> {
    REASON_NAMES
        .iter()
        .find(|(_, r)| *r == u32::from(reason))
        .map(|(name, _)| *name)
}

/// Error codes of RFC 9113 section 7, by the names the spec grammar accepts.
const REASON_NAMES: [(&str, u32); 14] = [
    ("no_error", 0x0),
    ("protocol_error", 0x1),
    ("internal_error", 0x2),
    ("flow_control_error", 0x3),
    ("settings_timeout", 0x4),
    ("stream_closed", 0x5),
    ("frame_size_error", 0x6),
    ("refused_stream", 0x7),
    ("cancel", 0x8),
    ("compression_error", 0x9),
    ("connect_error", 0xa),
    ("enhance_your_calm", 0xb),
    ("inadequate_security", 0xc),
    ("http_1_1_required", 0xd),
];

struct ReasonDisplay(Reason);

impl fmt::Display for ReasonDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match reason_name(self.0) {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", u32::from(self.0)),
        }
    }
}

struct DurationDisplay(Duration);

impl fmt::Display for DurationDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms != 0 && ms.is_multiple_of(60_000) {
            write!(f, "{}m", ms / 60_000)
        } else if ms != 0 && ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl fmt::Display for Fault {
    /// The canonical spec: parsing it gives the same fault back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Ok { body_bytes } if *body_bytes == DEFAULT_OK_BODY_BYTES => f.write_str("ok"),
            Fault::Ok { body_bytes } => write!(f, "ok:size={body_bytes}"),
            Fault::Status(code) => write!(f, "status:{}", code.as_u16()),
            Fault::WrongCert => f.write_str("wrong-cert"),
            Fault::UntrustedCert => f.write_str("untrusted-cert"),
            Fault::ExpiredCert => f.write_str("expired-cert"),
            Fault::GoAway { reason, after } => {
                write!(f, "goaway:{}:after={after}", ReasonDisplay(*reason))
            }
            Fault::GoAwayOnConcurrency { max_streams, hold } => write!(
                f,
                "goaway-on-concurrency:{max_streams}:hold={}",
                DurationDisplay(*hold)
            ),
            Fault::RstStream { reason, after } => {
                write!(f, "rst-stream:{}:after={after}", ReasonDisplay(*reason))
            }
            Fault::Rst { after } => write!(f, "rst:after={after}"),
            Fault::RstMidResponse => f.write_str("rst-mid-response"),
            Fault::FinMidResponse => f.write_str("fin-mid-response"),
            Fault::CloseIdle(idle) => write!(f, "close-idle:{}", DurationDisplay(*idle)),
            Fault::Stall => f.write_str("stall"),
            Fault::Slow(delay) => write!(f, "slow:{}", DurationDisplay(*delay)),
            Fault::BacklogFull => f.write_str("backlog-full"),
            Fault::Refused => f.write_str("refused"),
        }
    }
}

impl fmt::Display for ListenerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}@{port}", self.fault),
            None => write!(f, "{}", self.fault),
        }
    }
}

impl FromStr for ListenerSpec {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, SpecError> {
        let (fault, port) = match spec.rsplit_once('@') {
            Some((fault, port)) => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad(spec, "a port number 1-65535 after `@`"))?;
                (fault, Some(port))
            }
            None => (spec, None),
        };
        let fault = parse_fault(fault).map_err(|expected| bad(spec, expected))?;
        Ok(ListenerSpec { fault, port })
    }
}

impl FromStr for Fault {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, SpecError> {
        parse_fault(spec).map_err(|expected| bad(spec, expected))
    }
}

fn bad(spec: &str, expected: impl Into<String>) -> SpecError {
    SpecError {
        spec: spec.to_owned(),
        expected: expected.into(),
    }
}

/// Parses a fault; the error is what was expected instead.
fn parse_fault(spec: &str) -> Result<Fault, String> {
    let mut parts = spec.split(':');
    let name = parts.next().unwrap_or_default();
    let args: Vec<&str> = parts.collect();
    let fault = match name {
        "ok" => {
            let opts = options(name, &args, &["size"])?;
            let body_bytes = match opts.get("size") {
                Some(v) => v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n <= MAX_OK_BODY_BYTES)
                    .ok_or_else(|| format!("`size=` a byte count up to {MAX_OK_BODY_BYTES}"))?,
                None => DEFAULT_OK_BODY_BYTES,
            };
            Fault::Ok { body_bytes }
        }
        "status" => {
            let [code] = args[..] else {
                return Err("`status:<code>` with a code 200-599".to_owned());
            };
            let code = code
                .parse::<u16>()
                .ok()
                .filter(|c| (200..=599).contains(c))
                .and_then(|c| http::StatusCode::from_u16(c).ok())
                .ok_or("a status code 200-599 after `status:`")?;
            Fault::Status(code)
        }
        "wrong-cert" | "untrusted-cert" | "expired-cert" | "rst-mid-response"
        | "fin-mid-response" | "stall" | "backlog-full" | "refused" => {
            if !args.is_empty() {
                return Err(format!("`{name}` without arguments"));
            }
            match name {
                "wrong-cert" => Fault::WrongCert,
                "untrusted-cert" => Fault::UntrustedCert,
                "expired-cert" => Fault::ExpiredCert,
                "rst-mid-response" => Fault::RstMidResponse,
                "fin-mid-response" => Fault::FinMidResponse,
                "stall" => Fault::Stall,
                "backlog-full" => Fault::BacklogFull,
                _ => Fault::Refused,
            }
        }
        "goaway" | "rst-stream" => {
            let Some((code, rest)) = args.split_first() else {
                return Err(format!(
                    "`{name}:<code>[:after=N]` with an HTTP/2 error code name or number"
                ));
            };
            let reason = parse_reason(code)?;
            let after = parse_after(&options(name, rest, &["after"])?)?;
            if name == "goaway" {
                Fault::GoAway { reason, after }
            } else {
                Fault::RstStream { reason, after }
            }
        }
        "goaway-on-concurrency" => {
            let Some((max, rest)) = args.split_first() else {
                return Err("`goaway-on-concurrency:<N>[:hold=DUR]`".to_owned());
            };
            let max_streams = max
                .parse::<usize>()
                .map_err(|_| "a stream count after `goaway-on-concurrency:`")?;
            let opts = options(name, rest, &["hold"])?;
            let hold = match opts.get("hold") {
                Some(v) => parse_duration(v)?,
                None => DEFAULT_HOLD,
            };
            Fault::GoAwayOnConcurrency { max_streams, hold }
        }
        "rst" => Fault::Rst {
            after: parse_after(&options(name, &args, &["after"])?)?,
        },
        "close-idle" | "slow" => {
            let [dur] = args[..] else {
                return Err(format!("`{name}:<duration>` like 100ms, 2s or 1m"));
            };
            let dur = parse_duration(dur)?;
            if name == "slow" {
                Fault::Slow(dur)
            } else if dur.is_zero() {
                return Err("an idle time above zero after `close-idle:`".to_owned());
            } else {
                Fault::CloseIdle(dur)
            }
        }
        _ => {
            return Err(
                "a fault: ok, status, wrong-cert, untrusted-cert, expired-cert, goaway, \
                 goaway-on-concurrency, rst-stream, rst, rst-mid-response, fin-mid-response, \
                 close-idle, stall, slow, backlog-full or refused"
                    .to_owned(),
            );
        }
    };
    Ok(fault)
}

/// Parses `key=value` options, each allowed at most once.
fn options<'a>(
    name: &str,
    args: &[&'a str],
    allowed: &[&str],
) -> Result<std::collections::BTreeMap<&'a str, &'a str>, String> {
    let mut opts = std::collections::BTreeMap::new();
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(format!("options of `{name}` as key=value, got `{arg}`"));
        };
        if !allowed.contains(&key) {
            return Err(format!(
                "an option of `{name}` among {allowed:?}, got `{key}`"
            ));
        }
        if opts.insert(key, value).is_some() {
            return Err(format!("option `{key}` of `{name}` at most once"));
        }
    }
    Ok(opts)
}

fn parse_after(opts: &std::collections::BTreeMap<&str, &str>) -> Result<usize, String> {
    match opts.get("after") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| "`after=` a request count".to_owned()),
        None => Ok(0),
    }
}

/// An HTTP/2 error code (RFC 9113 section 7) by name, any case, or by number.
fn parse_reason(code: &str) -> Result<Reason, String> {
    let lower = code.to_ascii_lowercase();
    if let Some((_, n)) = REASON_NAMES.iter().find(|(name, _)| *name == lower) {
        return Ok(Reason::from(*n));
    }
    let number = match lower.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => lower.parse::<u32>(),
    };
    number.map(Reason::from).map_err(|_| {
        format!(
            "an HTTP/2 error code name (no_error, protocol_error, ..., enhance_your_calm, \
             http_1_1_required) or number, got `{code}`"
        )
    })
}

/// A duration such as `100ms`, `2s` or `1m`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected = || format!("a duration like 100ms, 2s or 1m, got `{text}`");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(expected)?;
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits.parse().map_err(|_| expected())?;
    let ms = match unit {
        "ms" => Some(value),
        "s" => value.checked_mul(1000),
        "m" => value.checked_mul(60_000),
        _ => None,
    };
    ms.map(Duration::from_millis).ok_or_else(expected)
}

#[cfg(test)]
mod tests;
