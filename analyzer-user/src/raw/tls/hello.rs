//! ClientHello and ServerHello facts (RFC 8446 sections 4.1.2 and 4.1.3), read from the
//! contents tls-parser decodes.
use std::borrow::Cow;

use tls_parser::{
    SNIType, TlsClientHelloContents, TlsExtension, TlsServerHelloContents,
    parse_tls_client_hello_extensions, parse_tls_server_hello_extensions,
};

/// Entries kept per list (ALPN protocols, supported versions); the rest are dropped.
pub const MAX_LISTED: usize = 32;

/// TLS 1.3 on the wire (RFC 8446 section 4.2.1).
pub const TLS13: u16 = 0x0304;
/// TLS 1.2 (RFC 5246), also TLS 1.3's legacy_version.
pub const TLS12: u16 = 0x0303;

/// The Random of a ServerHello that is really a HelloRetryRequest: SHA-256 of
/// "HelloRetryRequest" (RFC 8446 section 4.1.3).
pub(super) const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// What a client offered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHelloFact {
    /// ClientHello.legacy_version (0x0303 for TLS 1.2 and 1.3 clients).
    pub legacy_version: u16,
    /// The supported_versions extension, GREASE values (RFC 8701) left out.
    pub supported_versions: Vec<u16>,
    /// The host_name of server_name (RFC 6066 section 3), lossily decoded.
    pub sni: Option<String>,
    /// Protocols offered by ALPN (RFC 7301), in preference order.
    pub alpn: Vec<String>,
    pub cipher_suites: usize,
    /// ClientHello.random: the key log's index of the connection's secrets.
    pub random: [u8; 32],
    /// True when the extension block did not parse to its end; what came before is kept.
    pub extensions_malformed: bool,
}

impl ClientHelloFact {
    /// True when the client offers TLS 1.3.
    pub fn offers_tls13(&self) -> bool {
        self.supported_versions.contains(&TLS13)
    }
}

/// What a server chose.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerHelloFact {
    pub legacy_version: u16,
    /// supported_versions when present (then TLS 1.3), else legacy_version.
    pub selected_version: u16,
    pub cipher_suite: u16,
    /// ServerHello.random (TLS 1.2's key block is derived from both randoms).
    pub random: [u8; 32],
    /// The ALPN protocol selected. TLS 1.2 only: TLS 1.3 sends it in the encrypted
    /// EncryptedExtensions (RFC 8446 section 4.3.1), so it is `None` there.
    pub alpn: Option<String>,
    /// A HelloRetryRequest (RFC 8446 section 4.1.4): the handshake stays in plaintext and
    /// the client sends a second ClientHello.
    pub hello_retry_request: bool,
    pub extensions_malformed: bool,
}

impl ServerHelloFact {
    /// The IANA name of the cipher suite, when tls-parser knows it.
    pub fn cipher_suite_name(&self) -> Option<&'static str> {
        tls_parser::TlsCipherSuiteID(self.cipher_suite)
            .get_ciphersuite()
            .map(|c| c.name)
    }

    /// True when the rest of the handshake is encrypted (TLS 1.3, not a retry request).
    pub fn encrypts_handshake(&self) -> bool {
        !self.hello_retry_request && (self.selected_version == TLS13 || is_draft13(self))
    }
}

fn is_draft13(sh: &ServerHelloFact) -> bool {
    // Pre-RFC TLS 1.3 drafts announced themselves as 0x7fNN.
    sh.selected_version >> 8 == 0x7f
}

/// "TLS 1.2" for 0x0303, or the number in hex.
pub fn version_name(v: u16) -> Cow<'static, str> {
    Cow::Borrowed(match v {
        0x0300 => "SSL 3.0",
        0x0301 => "TLS 1.0",
        0x0302 => "TLS 1.1",
        TLS12 => "TLS 1.2",
        TLS13 => "TLS 1.3",
        _ => return Cow::Owned(format!("0x{v:04x}")),
    })
}

/// RFC 8701: GREASE values have the form 0x?A?A.
fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The extensions that parsed, and whether any bytes did not: tls-parser's `many0` stops
/// at the first extension it cannot parse and returns those before it.
fn extensions<T, E>(parsed: Result<(&[u8], Vec<T>), E>) -> (Vec<T>, bool) {
    match parsed {
        Ok((rest, exts)) => (exts, !rest.is_empty()),
        Err(_) => (Vec::new(), true),
    }
}

pub(super) fn client_hello(ch: &TlsClientHelloContents<'_>) -> ClientHelloFact {
    let mut f = ClientHelloFact {
        legacy_version: ch.version.0,
        cipher_suites: ch.ciphers.len(),
        random: ch.random.try_into().unwrap_or_default(),
        ..ClientHelloFact::default()
    };
    let Some(ext) = ch.ext else {
        return f;
    };
    let exts;
    (exts, f.extensions_malformed) = extensions(parse_tls_client_hello_extensions(ext));
    for e in exts {
        match e {
            TlsExtension::SNI(names) => {
                f.sni = names
                    .iter()
                    .find(|(t, _)| *t == SNIType::HostName)
                    .map(|(_, n)| lossy(n));
            }
            TlsExtension::SupportedVersions(vs) => {
                f.supported_versions = vs
                    .iter()
                    .map(|v| v.0)
                    .filter(|v| !is_grease(*v))
                    .take(MAX_LISTED)
                    .collect();
            }
            TlsExtension::ALPN(protos) => {
                f.alpn = protos.iter().take(MAX_LISTED).map(|p| lossy(p)).collect();
            }
            _ => {}
        }
    }
    f
}

pub(super) fn server_hello(sh: &TlsServerHelloContents<'_>) -> ServerHelloFact {
    let mut f = ServerHelloFact {
        legacy_version: sh.version.0,
        selected_version: sh.version.0,
        cipher_suite: sh.cipher.0,
        hello_retry_request: sh.random == HRR_RANDOM,
        random: sh.random.try_into().unwrap_or_default(),
        ..ServerHelloFact::default()
    };
    let Some(ext) = sh.ext else {
        return f;
    };
    let exts;
    (exts, f.extensions_malformed) = extensions(parse_tls_server_hello_extensions(ext));
    for e in exts {
        match e {
            // RFC 8446 section 4.2.1: the server's supported_versions is one version.
            TlsExtension::SupportedVersions(vs) => {
                if let Some(v) = vs.first() {
                    f.selected_version = v.0;
                }
            }
            // RFC 7301 section 3.1: the server's list holds exactly one protocol.
            TlsExtension::ALPN(protos) => f.alpn = protos.first().map(|p| lossy(p)),
            _ => {}
        }
    }
    f
}

/// A TLS 1.3 draft-18 ServerHello (tls-parser decodes it apart).
pub(super) fn server_hello_draft(version: u16, cipher_suite: u16) -> ServerHelloFact {
    ServerHelloFact {
        legacy_version: version,
        selected_version: version,
        cipher_suite,
        ..ServerHelloFact::default()
    }
}
