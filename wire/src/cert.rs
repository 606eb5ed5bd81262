//! Certificates summarised with x509-parser, once for faultline: the certificate rustls
//! was shown (loadgen's TLS facts) and the ones the analyzer's raw backend reads in
//! plaintext (TLS 1.2 and older) on the wire; and the one RFC 6125 name matcher
//! ([`names_cover`]) both tools judge them with; and the rustls verifier both record
//! the presented chain with ([`verifier`]).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;

pub mod verifier;

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

    /// The subjectAltNames kept, DNS names first, then IP addresses, as strings: what
    /// [`names_cover`] takes.
    pub fn names(&self) -> Vec<String> {
        let ips = self.san_ips.iter().map(IpAddr::to_string);
        self.san_dns.iter().cloned().chain(ips).collect()
    }

    /// True when this certificate is valid for `name`, by RFC 6125 section 6 through
    /// [`names_cover`]: a DNS name against the dNSName SANs; an IP address (bare or in
    /// brackets: SNI cannot carry one, but a caller may know the address dialled) against
    /// the iPAddress SANs only, never against a dNSName spelled like an address.
    pub fn is_valid_for(&self, name: &str) -> bool {
        let bare = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.san_ips.contains(&ip);
        }
        names_cover(&self.san_dns, name)
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

/// True when one of a certificate's subjectAltNames (`names`: DNS names and IP addresses
/// as strings) is valid for `host`, by RFC 6125 section 6: the one matcher of faultline,
/// used for loadgen's certificate facts and the analyzer's certificates read on the wire.
///
/// - DNS names compare ASCII case-insensitively (section 6.4.1), ignoring one trailing dot.
/// - A wildcard counts only as the whole left-most label (`*.example.com`), matches
///   exactly one non-empty label (section 6.4.3), and never directly above a single-label
///   suffix (`*.com`, section 7.2). Partial wildcards (`f*.example.com`) do not count.
/// - The subject CN is not consulted: RFC 9525 section 6.3 removed that fallback, and
///   rustls/webpki, Go and browsers reject certificates that rely on it.
/// - An IP address (SNI cannot carry one, RFC 6066 section 3, but the address dialled
///   can be checked) matches only IP entries, never a DNS name or wildcard.
pub fn names_cover(names: &[String], host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return names
            .iter()
            .any(|n| n.parse::<std::net::IpAddr>().is_ok_and(|p| p == ip));
    }
    let reference = host.strip_suffix('.').unwrap_or(host);
    if reference.is_empty() || reference.contains('*') || reference.split('.').any(str::is_empty) {
        return false;
    }
    names.iter().any(|p| dns_id_matches(p, reference))
}

/// One presented DNS-ID against a reference identifier (see [`names_cover`]).
fn dns_id_matches(presented: &str, reference: &str) -> bool {
    let presented = presented.strip_suffix('.').unwrap_or(presented);
    let Some(parent) = presented.strip_prefix("*.") else {
        return !presented.contains('*') && presented.eq_ignore_ascii_case(reference);
    };
    if parent.contains('*') || parent.split('.').any(str::is_empty) || !parent.contains('.') {
        return false;
    }
    reference
        .split_once('.')
        .is_some_and(|(first, rest)| !first.is_empty() && rest.eq_ignore_ascii_case(parent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_exact_and_single_label_wildcards() {
        let names = vec!["api.example.com".to_owned(), "*.svc.example.com".to_owned()];
        assert!(names_cover(&names, "API.example.com."));
        assert!(names_cover(&names, "a.svc.example.com"));
        assert!(!names_cover(&names, "a.b.svc.example.com"));
        assert!(!names_cover(&names, "svc.example.com"));
        assert!(!names_cover(
            &["TRAEFIK DEFAULT CERT".to_owned()],
            "pokt.ai"
        ));
        assert!(!names_cover(&[], "x"));
        assert!(
            !names_cover(&["*.com".to_owned()], "example.com"),
            "RFC 6125 7.2"
        );
        assert!(!names_cover(
            &["f*.example.com".to_owned()],
            "foo.example.com"
        ));
        assert!(names_cover(&["10.0.0.1".to_owned()], "10.0.0.1"));
        assert!(
            !names_cover(&["*.0.0.1".to_owned()], "10.0.0.1"),
            "no wildcard for IPs"
        );
    }

    #[test]
    fn is_valid_for_checks_dns_names_and_ip_addresses_apart() {
        let cert = CertFact {
            san_dns: vec!["api.example.com".into(), "127.0.0.2".into()],
            san_ips: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            ..CertFact::default()
        };
        assert!(cert.is_valid_for("API.example.com"));
        assert!(!cert.is_valid_for("other.example.com"));
        assert!(cert.is_valid_for("127.0.0.1"));
        assert!(cert.is_valid_for("[::1]"));
        assert!(
            !cert.is_valid_for("127.0.0.2"),
            "a dNSName spelled like an address is not an IP SAN"
        );
        assert!(!CertFact::default().is_valid_for("api.example.com"));
    }
}
