//! Certificates seen in plaintext (TLS 1.2 and older) on the wire: the summary is
//! loadgen's ([`wire::cert::CertFact`]), the name check RFC 6125 through loadgen's one
//! matcher, so a name mismatch can be named from the wire alone.
use std::net::IpAddr;

pub use wire::cert::{CertFact, MAX_SAN_ENTRIES};

/// True when `cert` is valid for `name`, by RFC 6125 section 6 through loadgen's one
/// matcher ([`wire::cert::names_cover`]): DNS names against the dNSName SANs, an IP
/// address (a caller may know the address dialled) against the iPAddress SANs only.
pub fn cert_matches_name(cert: &CertFact, name: &str) -> bool {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return cert.san_ips.contains(&ip);
    }
    wire::cert::names_cover(&cert.san_dns, name)
}
