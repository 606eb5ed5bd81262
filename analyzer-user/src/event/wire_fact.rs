//! What the raw backend reads on the wire that no tracepoint shows, as facts about one
//! connection: kept on its record (`ConnRecord::wire`), judged by the wire rules, and
//! logged as `{"wire": ...}` lines of `--raw-events`.
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

use serde::{Deserialize, Serialize};

/// Something the wire shows that no tracepoint does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
pub enum WireFact {
    /// An RST whose IP TTL (hop limit) or IP ID does not fit the packets its sender sent
    /// before on this connection: likely forged by a middlebox (or `loadgen packets
    /// inject`), not sent by the peer's stack.
    RstSuspect {
        /// The RST came from the server end.
        from_server: bool,
        ttl: u8,
        /// The TTL of every earlier packet from that end.
        expected_ttl: u8,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip_id: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_ip_id: Option<u16>,
        window: u16,
        why: String,
    },
    /// An ICMP or ICMPv6 destination unreachable quoting one of the connection's
    /// segments: a router or firewall rejected it. In SYN_SENT the kernel ends the
    /// connect with `errno` (`tcp_v4_err`/`tcp_v6_err`).
    IcmpUnreachable {
        from: IpAddr,
        icmp_type: u8,
        code: u8,
        errno: i32,
    },
    /// The receiver advertised a zero window (it stopped reading).
    ZeroWindow { from_server: bool, count: u32 },
    /// The client's ClientHello: the name it asked for and the protocols it offered.
    TlsClientHello {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sni: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        alpn: Vec<String>,
    },
    /// The version the server chose (TLS 1.3 hides the rest of the handshake).
    TlsServerHello {
        version: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alpn: Option<String>,
    },
    /// The server's certificate (plaintext in TLS 1.2 and older), judged against the SNI;
    /// or, with `probed_unix_s`, the one it presented to the analyzer's own handshake
    /// after the run (`tls_probe`), which TLS 1.3 hides from the wire.
    TlsCertificate {
        subject: String,
        /// DNS and IP subjectAltNames (the subject CN when there are none).
        names: Vec<String>,
        issuer: String,
        sha256: String,
        not_before_unix_s: i64,
        not_after_unix_s: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sni: Option<String>,
        /// Whether the certificate is valid for the SNI (RFC 6125 name matching).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        matches_sni: Option<bool>,
        /// Set when the certificate was presented to the analyzer's own handshake after the
        /// run (tls_probe), not read on the wire: that handshake's Unix time, which the
        /// dates are judged against.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        probed_unix_s: Option<i64>,
        /// Probe only: whether the chain validated against the probe's roots; None when not
        /// judged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trusted: Option<bool>,
    },
    /// A plaintext TLS alert.
    TlsAlert {
        from_server: bool,
        fatal: bool,
        code: u8,
        name: String,
    },
    /// TLS 1.3: certificates and alerts are encrypted after the ServerHello.
    TlsEncrypted { version: String },
    /// The first encrypted record of that end was the size of an alert and nothing longer
    /// followed it: it gave the handshake up (a client rejecting the server's certificate
    /// sends one encrypted alert and closes). Told by size: in TLS 1.3 an alert is 19
    /// bytes of record (2 of alert, 1 of inner type, a 16-byte AEAD tag) where the
    /// client's Finished is at least 53. Emitted for the client's end only, and only when
    /// no application data went before it. With `after_handshake`, the alert came right
    /// after the client's Finished and before the server's FIN: it completed the
    /// handshake and closed without a request (curl 7.x checks the certificate's name
    /// only then): a failure by the look of it, no more (see
    /// `ConnRecord::tls_handshake_abandoned`).
    TlsEncryptedAlert {
        from_server: bool,
        len_bytes: u32,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        after_handshake: bool,
    },
    /// An h2c GOAWAY.
    H2Goaway {
        from_server: bool,
        code: String,
        last_stream_id: u32,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        debug: String,
        /// Client streams open when it came.
        streams_in_flight: u32,
        /// Of which above last_stream_id: never processed, safe to retry.
        streams_unprocessed: u32,
    },
    /// An h2c RST_STREAM.
    H2RstStream {
        from_server: bool,
        stream_id: u32,
        code: String,
    },
    /// The server's SETTINGS_MAX_CONCURRENT_STREAMS.
    H2Settings { max_concurrent_streams: u32 },
    /// What the plaintext showed of the HTTP exchanges on the connection, summed when it
    /// ended: from the raw capture (cleartext only) or the syscall capture (any process).
    Http(HttpTally),
    /// A TLS or h2c stream that broke; nothing more was parsed in that direction.
    Malformed {
        from_server: bool,
        protocol: String,
        offset: u64,
        what: String,
    },
}

/// The HTTP exchanges of one connection, as its plaintext showed them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpTally {
    /// `http/1.1` or `h2c` (`h2` when the plaintext came from a TLS library).
    pub protocol: String,
    /// Requests the client sent: HTTP/1.1 request heads, HTTP/2 streams the client
    /// opened with HEADERS.
    pub requests: u32,
    /// Of which a complete answer came back: a final status and the whole body its
    /// framing announced (HTTP/1.1), or the server's END_STREAM (HTTP/2).
    pub answered: u32,
    /// Final statuses seen, with how many responses carried each (HTTP/2: only those the
    /// HPACK decoder could read).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub statuses: BTreeMap<u16, u32>,
    /// Answers begun and cut short: the connection ended before the body its framing
    /// announced was complete.
    #[serde(default)]
    pub cut_mid_answer: u32,
    /// Requests with not one byte of answer when the connection ended.
    #[serde(default)]
    pub unanswered: u32,
    /// HTTP/2 requests the client cancelled (its own RST_STREAM) before their answer
    /// ended: the client gave up waiting, as clients do at their timeout.
    #[serde(default)]
    pub client_cancelled: u32,
    /// When the client last wrote a request's bytes (eBPF backend's capture; the
    /// plaintext's when it came from a TLS library).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request_unix_ns: Option<u64>,
    /// TLS: when the client wrote a record after its last plaintext (a close_notify or
    /// an alert): it was ending the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_tls_close_unix_ns: Option<u64>,
    /// TLS: when the client's TLS library first read the end of the server's stream
    /// (OpenSSL's SSL_read returning 0: its close_notify, or its FIN): the server ended
    /// the connection then, whatever the client's close did after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_tls_end_unix_ns: Option<u64>,
    /// eBPF backend's capture: what the client's reads on the socket returned, in all
    /// (TLS records included). Less than the kernel's `bytes_received` means the server
    /// sent bytes the client never read ([`crate::table::ConnRecord::unread_by_client`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_read: Option<u64>,
    /// HTTP/2 streams the server reset (RST_STREAM), per error code name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub streams_reset: BTreeMap<String, u32>,
    /// Some bytes were not captured (a gap, a cap): the counts may be short.
    #[serde(default)]
    pub incomplete: bool,
}

impl HttpTally {
    /// Requests with a final status of 400 or more.
    pub fn status_failures(&self) -> u32 {
        self.statuses
            .iter()
            .filter(|(s, _)| **s >= 400)
            .map(|(_, n)| *n)
            .sum()
    }

    /// Requests the connection's fate failed: never answered, cut mid-answer, or
    /// reset by the server (HTTP/2).
    pub fn transport_failures(&self) -> u32 {
        self.unanswered
            .saturating_add(self.cut_mid_answer)
            .saturating_add(self.client_cancelled)
            .saturating_add(self.streams_reset.values().sum())
    }

    /// Every failed request.
    pub fn failed_requests(&self) -> u32 {
        self.status_failures()
            .saturating_add(self.transport_failures())
    }
}

impl WireFact {
    /// Whether the fact alone makes the connection a failure from the client's side.
    pub fn means_failure(&self) -> bool {
        match self {
            Self::RstSuspect { .. } => true,
            Self::TlsAlert { fatal, .. } => *fatal,
            // A probed certificate is the probe's evidence, never a failure by itself.
            Self::TlsCertificate {
                matches_sni,
                probed_unix_s,
                ..
            } => probed_unix_s.is_none() && *matches_sni == Some(false),
            Self::TlsEncryptedAlert {
                from_server,
                after_handshake,
                ..
            } => !from_server && !after_handshake,
            Self::H2Goaway { code, .. } => code != "NO_ERROR",
            // The client cancelling its own stream is not a failure of the server's.
            Self::H2RstStream { from_server, .. } => *from_server,
            _ => false,
        }
    }
}

/// A wire fact about one connection, keyed like kernel events: by the synthetic socket
/// address of its client end (when local; else the server end) and its 4-tuple.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEvent {
    pub ts_unix_ns: u64,
    /// The synthetic socket address of the client end (the server end when only it is
    /// local); 0 for an RST judged before its connection was known.
    pub skaddr: u64,
    /// The client end.
    pub client: SocketAddr,
    /// The server end.
    pub server: SocketAddr,
    #[serde(flatten)]
    pub fact: WireFact,
}
