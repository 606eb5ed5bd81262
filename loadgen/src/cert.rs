//! Certificates summarised with x509-parser, once for faultline: the certificate rustls
//! was shown (loadgen's TLS facts, through [`crate::tls::cert_facts`]) and the ones the
//! analyzer's raw backend reads in plaintext (TLS 1.2 and older) on the wire.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;

/// subjectAltName entries kept per certificate (of each kind); the rest are counted.
pub const MAX_SAN_ENTRIES: usize = 256;

/// One certificate of a chain. When the DER does not parse, only the length, fingerprint
/// and [`Self::parse_error`] are set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertFact {
    pub der_len_bytes: usize,
    /// SHA-256 of the DER: the fingerprint tools such as `openssl x509 -fingerprint` show.
    pub sha256: [u8; 32],
    /// The subject as an RFC 4514 string.
    pub subject: String,
    pub subject_cn: Option<String>,
    pub issuer: String,
    pub issuer_cn: Option<String>,
    /// dNSName entries of subjectAltName (RFC 5280 section 4.2.1.6), as presented.
    pub san_dns: Vec<String>,
    /// iPAddress entries of subjectAltName.
    pub san_ips: Vec<IpAddr>,
    /// subjectAltName entries beyond [`MAX_SAN_ENTRIES`], not kept.
    pub san_dropped: usize,
    pub not_before_unix_s: i64,
    pub not_after_unix_s: i64,
    pub parse_error: Option<String>,
}

impl CertFact {
    /// Summarises a DER certificate; never fails (see [`Self::parse_error`]).
    pub fn from_der(der: &[u8]) -> Self {
        let mut fact = CertFact {
            der_len_bytes: der.len(),
            sha256: Sha256::digest(der).into(),
            ..CertFact::default()
        };
        let cert = match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => cert,
            Err(e) => {
                fact.parse_error = Some(e.to_string());
                return fact;
            }
        };
        let cn = |name: &x509_parser::x509::X509Name<'_>| {
            name.iter_common_name()
                .next()
                .and_then(|a| a.as_str().ok())
                .map(str::to_owned)
        };
        fact.subject = cert.subject().to_string();
        fact.subject_cn = cn(cert.subject());
        fact.issuer = cert.issuer().to_string();
        fact.issuer_cn = cn(cert.issuer());
        fact.not_before_unix_s = cert.validity().not_before.timestamp();
        fact.not_after_unix_s = cert.validity().not_after.timestamp();
        match cert.subject_alternative_name() {
            Ok(Some(san)) => {
                for name in &san.value.general_names {
                    fact.add_san(name);
                }
            }
            Ok(None) => {}
            // A duplicated or undecodable extension: keep the rest, say what failed.
            Err(e) => fact.parse_error = Some(format!("subjectAltName: {e}")),
        }
        fact
    }

    fn add_san(&mut self, name: &GeneralName<'_>) {
        match name {
            GeneralName::DNSName(d) if self.san_dns.len() < MAX_SAN_ENTRIES => {
                self.san_dns.push((*d).to_owned());
            }
            GeneralName::IPAddress(ip) if self.san_ips.len() < MAX_SAN_ENTRIES => {
                // RFC 5280 section 4.2.1.6: 4 octets for IPv4, 16 for IPv6.
                if let Ok(a) = <[u8; 4]>::try_from(*ip) {
                    self.san_ips.push(IpAddr::V4(Ipv4Addr::from(a)));
                } else if let Ok(a) = <[u8; 16]>::try_from(*ip) {
                    self.san_ips.push(IpAddr::V6(Ipv6Addr::from(a)));
                }
            }
            GeneralName::DNSName(_) | GeneralName::IPAddress(_) => self.san_dropped += 1,
            _ => {}
        }
    }

    /// The fingerprint as lowercase hex.
    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A short name for messages ("presented TRAEFIK DEFAULT CERT"): the subject CN,
    /// else the first DNS SAN, else the subject.
    pub fn presented_name(&self) -> &str {
        self.subject_cn
            .as_deref()
            .or(self.san_dns.first().map(String::as_str))
            .unwrap_or(&self.subject)
    }
}

impl From<&CertFact> for crate::model::CertFacts {
    /// The report's certificate summary, the same shape loadgen records from rustls.
    fn from(c: &CertFact) -> Self {
        let rfc3339 = |s: i64| {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.max(0).unsigned_abs());
            humantime::format_rfc3339_seconds(t).to_string()
        };
        let ips = c.san_ips.iter().map(IpAddr::to_string);
        crate::model::CertFacts {
            subject: c.subject.clone(),
            issuer: c.issuer.clone(),
            names: c.san_dns.iter().cloned().chain(ips).collect(),
            sha256: c.sha256_hex(),
            not_before: rfc3339(c.not_before_unix_s),
            not_after: rfc3339(c.not_after_unix_s),
        }
    }
}
