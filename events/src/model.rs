//! The failure taxonomy and the event records: faultline's JSON contract.
//!
//! Defined once, here; the analyzer reads loadgen's event files through these same types.
//! Class and phase names are part of the contract (shared/DESIGN.md, "Failure taxonomy"):
//! renaming a variant is a schema change and bumps [`SCHEMA_VERSION`].
use std::{fmt, net::SocketAddr};

use serde::{Deserialize, Serialize};

/// Version of the event-line and summary formats (`schema/*.json`).
pub const SCHEMA_VERSION: u32 = 1;

/// Why a request failed. One per failed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// An RST answered our SYN.
    ConnectRefused,
    /// No answer to our SYN before the connect timeout.
    ConnectTimeout,
    /// The load host ran out of local ports (EADDRNOTAVAIL).
    LocalPortExhausted,
    /// The load host ran out of file descriptors (EMFILE/ENFILE).
    FdExhausted,
    /// The certificate is not valid for the SNI sent (a proxy's default certificate).
    TlsCertNameMismatch,
    /// The certificate chains to no trusted root.
    TlsCertUntrusted,
    /// The certificate is expired or not yet valid.
    TlsCertExpired,
    /// The server sent a TLS alert during the handshake.
    TlsAlert,
    /// The connection closed during the TLS handshake.
    TlsHandshakeEof,
    /// An RST on an established connection.
    TcpReset,
    /// The peer closed (FIN) while a request was outstanding.
    PeerEof,
    /// A GOAWAY ended the request.
    H2Goaway,
    /// The server reset the request's stream.
    H2RstStream,
    /// A response with a non-success status.
    HttpStatus,
    /// A deadline passed (see the phase).
    Timeout,
    /// The generator itself could not send at the intended time.
    ClientOverload,
    /// The server broke the protocol (garbage instead of HTTP, a bad frame).
    ProtocolError,
    /// Anything the rules above do not explain; always shown, never dropped.
    Other,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Class; 18] = [
        Class::ConnectRefused,
        Class::ConnectTimeout,
        Class::LocalPortExhausted,
        Class::FdExhausted,
        Class::TlsCertNameMismatch,
        Class::TlsCertUntrusted,
        Class::TlsCertExpired,
        Class::TlsAlert,
        Class::TlsHandshakeEof,
        Class::TcpReset,
        Class::PeerEof,
        Class::H2Goaway,
        Class::H2RstStream,
        Class::HttpStatus,
        Class::Timeout,
        Class::ClientOverload,
        Class::ProtocolError,
        Class::Other,
    ];

    /// The JSON name (`tcp_reset`).
    pub fn as_str(self) -> &'static str {
        match self {
            Class::ConnectRefused => "connect_refused",
            Class::ConnectTimeout => "connect_timeout",
            Class::LocalPortExhausted => "local_port_exhausted",
            Class::FdExhausted => "fd_exhausted",
            Class::TlsCertNameMismatch => "tls_cert_name_mismatch",
            Class::TlsCertUntrusted => "tls_cert_untrusted",
            Class::TlsCertExpired => "tls_cert_expired",
            Class::TlsAlert => "tls_alert",
            Class::TlsHandshakeEof => "tls_handshake_eof",
            Class::TcpReset => "tcp_reset",
            Class::PeerEof => "peer_eof",
            Class::H2Goaway => "h2_goaway",
            Class::H2RstStream => "h2_rst_stream",
            Class::HttpStatus => "http_status",
            Class::Timeout => "timeout",
            Class::ClientOverload => "client_overload",
            Class::ProtocolError => "protocol_error",
            Class::Other => "other",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where in a request's life it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for a connection or stream slot (client_overload only).
    Queue,
    Connect,
    Tls,
    Write,
    AwaitHeaders,
    Body,
}

impl Phase {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Queue => "queue",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Write => "write",
            Phase::AwaitHeaders => "await_headers",
            Phase::Body => "body",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The wire protocol of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    /// HTTP/1.1 over TCP or TLS.
    Http1,
    /// HTTP/2 over TLS (ALPN h2).
    H2,
    /// HTTP/2 over cleartext TCP with prior knowledge.
    H2c,
}

/// The connection's facts at the moment a request failed (or finished).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnFacts {
    /// loadgen's connection id, unique within a run (0: no connection was made).
    pub conn_id: u64,
    /// `SO_COOKIE` of the socket: the join key with the analyzer's kernel events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sock_cookie: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<SocketAddr>,
    /// Age of the connection when the request was sent.
    pub conn_age_us: u64,
    /// Requests completed on the connection before this one.
    pub conn_requests: u64,
    /// How long the connection sat idle before this request (HTTP/1.1; for HTTP/2,
    /// since the last stream ended).
    pub idle_us: u64,
    /// Streams in flight on the connection when this one was opened (this one excluded).
    pub inflight: u32,
}

/// HTTP/2 facts about a request's stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct H2Facts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<u32>,
    /// The GOAWAY that ended the request, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goaway: Option<GoAway>,
    /// True when the stream id was above the GOAWAY's last_stream_id: the server never
    /// processed it, so it is safe to retry (RFC 9113 section 6.8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above_last_stream_id: Option<bool>,
    /// The RST_STREAM error code name, when the stream was reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rst_code: Option<String>,
}

/// A GOAWAY frame as the server sent it (RFC 9113 section 6.8).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoAway {
    /// The error code name (`ENHANCE_YOUR_CALM`, or `0x1f` when unknown).
    pub code: String,
    pub last_stream_id: u32,
    /// Debug data, lossily decoded as UTF-8.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub debug: String,
}

/// One request's outcome: one NDJSON line of `--events`.
///
/// The first fields are those of vegeta's JSON result lines, so `vegeta`-minded tools
/// read them; ours follow.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestEvent {
    /// Always `"request"` (connection lines carry `"conn"`).
    #[serde(rename = "type")]
    pub kind: RequestTag,
    /// The attack (run) name.
    pub attack: String,
    /// Request sequence number in scheduling order.
    pub seq: u64,
    /// HTTP status, 0 when there was no response.
    pub code: u16,
    /// The intended send time, RFC 3339 with nanoseconds (vegeta: the send time).
    pub timestamp: String,
    /// Nanoseconds from the intended send time to the end of the response body (or the
    /// failure): free of coordinated omission.
    pub latency: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// The error as text, empty on success (vegeta's field).
    pub error: String,
    pub method: String,
    pub url: String,
    /// Nanoseconds from the actual write of the request to the end (service time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_latency: Option<u64>,
    /// Nanoseconds between the intended and the actual send time.
    pub lag: u64,
    /// Failure class; absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<Class>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(flatten)]
    pub conn: ConnFacts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2: Option<H2Facts>,
    /// This request is a retry of `seq` (`--retry-unprocessed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<u64>,
}

/// The `"type": "request"` tag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestTag {
    #[default]
    Request,
}

/// What the TLS handshake showed: enough to recognise "the proxy served its default
/// certificate" at a glance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsFacts {
    /// The SNI sent (absent for an IP address target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// The negotiated ALPN protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The leaf certificate the server presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<CertFacts>,
    /// The verification error, if the handshake failed on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A certificate, summarised.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertFacts {
    pub subject: String,
    pub issuer: String,
    /// DNS names and IP addresses from subjectAltName.
    pub names: Vec<String>,
    /// SHA-256 of the DER, lowercase hex.
    pub sha256: String,
    /// RFC 3339.
    pub not_before: String,
    pub not_after: String,
}

/// A connection lifecycle step: one NDJSON line of `--events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnEvent {
    /// Always `"conn"`.
    #[serde(rename = "type")]
    pub kind: ConnTag,
    pub attack: String,
    pub conn_id: u64,
    /// RFC 3339 with nanoseconds.
    pub timestamp: String,
    #[serde(flatten)]
    pub step: ConnStep,
}

/// The `"type": "conn"` tag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnTag {
    #[default]
    Conn,
}

/// What happened to the connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ConnStep {
    /// TCP connected (or failed to).
    Opened {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sock_cookie: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        local: Option<SocketAddr>,
        remote: SocketAddr,
        connect_us: u64,
    },
    /// The TLS handshake finished (or failed: `tls.error`).
    Tls { tls: TlsFacts, handshake_us: u64 },
    /// The protocol in use on the connection.
    Ready { proto: Proto },
    /// A frame from the server that matters (HTTP/2 tap).
    Frame { frame: FrameFacts },
    /// The connection ended.
    Closed {
        how: CloseHow,
        /// Error text, when the close was an error.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        error: String,
        requests: u64,
        age_us: u64,
    },
}

/// HTTP/2 frames from the server that the analysis uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "frame", rename_all = "snake_case")]
pub enum FrameFacts {
    Goaway(GoAway),
    RstStream {
        stream_id: u32,
        code: String,
    },
    /// SETTINGS as (name, value) pairs in the order sent.
    Settings {
        settings: Vec<(String, u32)>,
    },
    Ping {
        ack: bool,
    },
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseHow {
    /// We closed it (end of run, keep-alive off, idle).
    Local,
    /// The peer sent FIN.
    PeerFin,
    /// The peer sent RST.
    PeerRst,
    /// The server sent GOAWAY.
    Goaway,
    /// The connection never got going (connect or TLS failed).
    Failed,
    /// Another error (timeout, protocol error).
    Error,
}

/// One line of an events file: either kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EventLine {
    Request(Box<RequestEvent>),
    Conn(Box<ConnEvent>),
}

/// The untagged [`EventLine`] only says "did not match any variant": parse again as the
/// kind the line names, for an error that points at the bad field. For
/// [`crate::ndjson::NdjsonLines::bad_line`].
pub fn precise_event_error(line: &[u8], err: serde_json::Error) -> serde_json::Error {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_match_serde_names() {
        for c in Class::ALL {
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
    }

    #[test]
    fn request_line_has_vegeta_fields_and_ours() {
        let ev = RequestEvent {
            seq: 7,
            code: 0,
            class: Some(Class::H2Goaway),
            phase: Some(Phase::AwaitHeaders),
            conn: ConnFacts {
                conn_id: 3,
                sock_cookie: Some(99),
                ..ConnFacts::default()
            },
            ..RequestEvent::default()
        };
        let v: serde_json::Value = serde_json::to_value(&ev).unwrap();
        for k in [
            "attack",
            "seq",
            "code",
            "timestamp",
            "latency",
            "bytes_out",
            "bytes_in",
            "error",
            "method",
            "url",
        ] {
            assert!(v.get(k).is_some(), "vegeta field {k} missing: {v}");
        }
        assert_eq!(v["type"], "request");
        assert_eq!(v["class"], "h2_goaway");
        assert_eq!(v["phase"], "await_headers");
        assert_eq!(v["conn_id"], 3);
        assert_eq!(v["sock_cookie"], 99);
        let back: EventLine = serde_json::from_value(v).unwrap();
        assert_eq!(back, EventLine::Request(Box::new(ev)));
    }

    #[test]
    fn conn_lines_round_trip_and_are_told_apart() {
        let ev = ConnEvent {
            kind: ConnTag::Conn,
            attack: "a".into(),
            conn_id: 1,
            timestamp: "t".into(),
            step: ConnStep::Frame {
                frame: FrameFacts::Goaway(GoAway {
                    code: "ENHANCE_YOUR_CALM".into(),
                    last_stream_id: 5,
                    debug: "calm".into(),
                }),
            },
        };
        let line = serde_json::to_string(&ev).unwrap();
        assert!(
            line.contains("\"type\":\"conn\"") && line.contains("\"event\":\"frame\""),
            "{line}"
        );
        let back: EventLine = serde_json::from_str(&line).unwrap();
        assert_eq!(back, EventLine::Conn(Box::new(ev)));
    }
}
