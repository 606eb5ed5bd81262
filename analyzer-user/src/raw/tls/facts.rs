//! The facts a [`super::TlsObserver`] reports, the errors that stop it, and its counters.
use std::borrow::Cow;

use wire::cert::CertFact;

use super::{ClientHelloFact, ServerHelloFact};

/// What one direction of a TLS connection showed in plaintext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsFact {
    ClientHello(ClientHelloFact),
    ServerHello(ServerHelloFact),
    /// A Certificate message in plaintext (TLS 1.2 and older).
    Certificates(CertChainFact),
    /// An alert in plaintext.
    Alert(AlertFact),
    /// The server selected TLS 1.3: certificates and alerts are encrypted from here on,
    /// and this direction's records are only counted (see [`TlsStats`]).
    EncryptedAfterServerHello {
        version: u16,
    },
    /// The client's first encrypted record was the size of an alert, or the first after
    /// its Finished was, and nothing longer followed: it gave the handshake up, or closed
    /// right after it without a byte of application data. Told by size alone, and
    /// reported when the direction ends ([`super::TlsObserver::finish`]). In TLS 1.3 an
    /// alert is an application_data record of 2 bytes of alert, 1 byte of inner content
    /// type and the AEAD tag (19 bytes with a 16-byte tag, RFC 8446 section 5.2), where
    /// the client's Finished is 53 to 69 ([`super::FINISHED_RECORD_LEN_BYTES`]); in TLS
    /// 1.2, an alert record after the ChangeCipherSpec. Only in a direction that sent a
    /// ClientHello: the server's first encrypted record (EncryptedExtensions) can be as
    /// short.
    EncryptedAlert {
        /// The record's length (its body, the 5-byte header not counted).
        len_bytes: usize,
        /// Its Finished went first: the handshake completed, and the client closed before
        /// the server did (a client that checks the certificate's name only then, as
        /// curl 7.x does, closes so).
        after_handshake: bool,
    },
    /// A handshake message longer than [`super::MAX_HANDSHAKE_LEN_BYTES`] was skipped, unread.
    HandshakeAbandoned {
        offset: u64,
        msg_type: u8,
        len_bytes: usize,
    },
    /// The direction does not start like TLS; nothing more is parsed.
    NotTls {
        offset: u64,
        what: TlsWireError,
    },
    /// The stream broke at `offset` (a stream offset); nothing more is parsed.
    Malformed {
        offset: u64,
        what: TlsWireError,
    },
}

/// The certificates of a Certificate message, leaf first (RFC 5246 section 7.4.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertChainFact {
    /// At most [`super::MAX_CHAIN_CERTS`].
    pub certs: Vec<CertFact>,
    pub chain_len: usize,
}

impl CertChainFact {
    /// The end-entity certificate.
    pub fn leaf(&self) -> Option<&CertFact> {
        self.certs.first()
    }
}

/// An alert (RFC 8446 section 6): level 1 warning, 2 fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlertFact {
    pub level: u8,
    pub description: u8,
}

impl AlertFact {
    /// The RFC name of the description (`unknown_ca`), or its number.
    pub fn name(&self) -> Cow<'static, str> {
        alert_name(self.description)
            .map_or_else(|| Cow::Owned(self.description.to_string()), Cow::Borrowed)
    }

    pub fn is_fatal(&self) -> bool {
        self.level == 2
    }
}

/// The name of an AlertDescription: RFC 8446 section 6, plus the older values of the IANA
/// TLS Alerts registry (RFC 5246 section 7.2) still seen from TLS 1.2 peers.
pub fn alert_name(description: u8) -> Option<&'static str> {
    Some(match description {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        60 => "export_restriction",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        111 => "certificate_unobtainable",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        114 => "bad_certificate_hash_value",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        _ => return None,
    })
}

/// Why a direction is not TLS, or where it broke. The section cited is what was broken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsWireError {
    #[error("byte 0x{byte:02x} is not a TLS content type (RFC 8446 section 5.1)")]
    ContentType { byte: u8 },
    #[error("record version 0x{version:04x} is not SSL 3.0 to TLS 1.3 (RFC 8446 section 5.1)")]
    RecordVersion { version: u16 },
    #[error("the first record has content type {content_type}, not handshake or alert")]
    FirstRecord { content_type: u8 },
    #[error("record of {len_bytes} bytes exceeds {max_bytes} (RFC 5246 section 6.2.3)")]
    RecordTooLong { len_bytes: usize, max_bytes: usize },
    #[error("empty record of content type {content_type} (RFC 8446 section 5.1)")]
    EmptyRecord { content_type: u8 },
    #[error(
        "record of content type {content_type} inside a fragmented handshake message (RFC 8446 section 5.1)"
    )]
    Interleaved { content_type: u8 },
    #[error("ChangeCipherSpec is not the single byte 0x01 (RFC 5246 section 7.1)")]
    ChangeCipherSpec,
    #[error(
        "alert record of {len_bytes} bytes does not hold whole 2-byte alerts (RFC 8446 section 6)"
    )]
    AlertLength { len_bytes: usize },
    #[error("handshake message of type {msg_type} does not parse: {detail}")]
    Handshake { msg_type: u8, detail: String },
    #[error("{len_bytes} bytes are missing from the capture; record boundaries are lost")]
    Gap { len_bytes: u64 },
}

/// Counters of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsStats {
    pub bytes_seen: u64,
    pub records: u64,
    pub handshake_messages: u64,
    pub change_cipher_spec_records: u64,
    pub application_data_records: u64,
    pub application_data_bytes: u64,
    /// Handshake or alert records sent after this direction's keys changed: encrypted.
    pub protected_records: u64,
    pub heartbeat_records: u64,
    /// Capture gaps that fell inside an unparsed record body and were stepped over.
    pub gap_bytes_skipped: u64,
    pub facts_dropped: u64,
}
