//! The certificate a server presented to the probe, judged three ways apart: its names
//! against the name asked for (RFC 6125, by `wire::cert`), its validity dates against
//! the clock, and its chain against the trust anchors (webpki path validation, through
//! rustls). One [`Verdict`] sums them up for the report; the three judgments stay.
use std::time::Duration;

use rustls::{
    CertificateError, Error as TlsError,
    client::verify_server_cert_signed_by_trust_anchor,
    pki_types::{CertificateDer, UnixTime},
    server::ParsedCertificate,
};
use serde::{Deserialize, Serialize};
use wire::cert::CertFact;

use super::roots::Roots;

/// The end-entity certificate, as the report and `WireFact::TlsCertificate` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafCert {
    /// The subject as an RFC 4514 string.
    pub subject: String,
    /// DNS and IP subjectAltNames (the subject CN when there are none, shown only:
    /// matching never falls back to it, RFC 9525 section 6.3).
    pub names: Vec<String>,
    pub issuer: String,
    /// SHA-256 of the DER, lowercase hex.
    pub sha256: String,
    pub not_before_unix_s: i64,
    pub not_after_unix_s: i64,
    /// Set when x509-parser could not read the DER (only `sha256` is meaningful then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<String>,
}

impl LeafCert {
    fn from_fact(fact: &CertFact) -> Self {
        let mut names = fact.names();
        if names.is_empty()
            && let Some(cn) = &fact.subject_cn
        {
            names.push(cn.clone());
        }
        Self {
            subject: fact.subject.clone(),
            names,
            issuer: fact.issuer.clone(),
            sha256: fact.sha256_hex(),
            not_before_unix_s: fact.not_before_unix_s,
            not_after_unix_s: fact.not_after_unix_s,
            parse_error: fact.parse_error.clone(),
        }
    }
}

/// The leaf's validity period against the clock (RFC 5280 section 4.1.2.5: both ends
/// inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validity {
    Current,
    Expired,
    NotYetValid,
}

/// Whether the chain leads to a trust anchor, judged at a moment when the leaf itself is
/// valid (so an expired certificate from a known CA reads `Expired`, not `Untrusted`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "trust", rename_all = "snake_case")]
pub enum Trust {
    Trusted,
    Untrusted {
        why: String,
    },
    /// No trust anchors were loaded: not judged.
    Unknown {
        why: String,
    },
}

/// The one-word summary, the first that applies in this order:
/// `Mismatch` first, because a certificate for another name says the server answered
/// for another site (a reverse proxy's default certificate, typically also self-signed:
/// `Untrusted` would be true and beside the point); then the dates, which are specific;
/// then trust, which depends on the roots the client used and this host does not know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// Not valid for the name asked for.
    Mismatch,
    Expired,
    NotYetValid,
    Untrusted {
        why: String,
    },
    /// Names and dates are fine; trust was not judged (no roots).
    TrustUnknown {
        why: String,
    },
    Valid,
}

impl Verdict {
    /// The rules' cause id this verdict would support, if any.
    pub fn cause(&self) -> Option<&'static str> {
        match self {
            Self::Mismatch => Some("tls_cert_mismatch"),
            Self::Expired | Self::NotYetValid => Some("tls_cert_expired"),
            Self::Untrusted { .. } => Some("tls_cert_untrusted"),
            Self::TrustUnknown { .. } | Self::Valid => None,
        }
    }
}

/// The three judgments of one presented chain, and their summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judgment {
    /// The name judged: the SNI, else the address dialled (a client that sends no SNI
    /// has usually dialled an IP address, and checks the iPAddress SANs).
    pub name: String,
    /// The moment the dates were judged against (the probe's handshake), Unix seconds.
    pub at_unix_s: i64,
    /// `None` when the leaf does not parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches_name: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity: Option<Validity>,
    pub trust: Trust,
    pub verdict: Verdict,
}

/// Judges a presented chain (leaf first) for `name` at `now_unix_s`. `None` for an
/// empty chain.
pub fn judge(
    chain: &[CertificateDer<'_>],
    roots: &Roots,
    name: &str,
    now_unix_s: i64,
) -> Option<(LeafCert, Judgment)> {
    let (leaf_der, intermediates) = chain.split_first()?;
    let fact = CertFact::from_der(leaf_der);
    let leaf = LeafCert::from_fact(&fact);
    if let Some(e) = &fact.parse_error {
        let why = format!("the certificate does not parse: {e}");
        let judgment = Judgment {
            name: name.to_owned(),
            at_unix_s: now_unix_s,
            matches_name: None,
            validity: None,
            trust: Trust::Untrusted { why: why.clone() },
            verdict: Verdict::Untrusted { why },
        };
        return Some((leaf, judgment));
    }
    let matches_name = fact.is_valid_for(name);
    let validity = if now_unix_s > fact.not_after_unix_s {
        Validity::Expired
    } else if now_unix_s < fact.not_before_unix_s {
        Validity::NotYetValid
    } else {
        Validity::Current
    };
    // Inside the leaf's own period, so that trust is judged apart from its dates.
    let at_unix_s = if fact.not_before_unix_s <= fact.not_after_unix_s {
        now_unix_s.clamp(fact.not_before_unix_s, fact.not_after_unix_s)
    } else {
        now_unix_s
    };
    let trust = trust(leaf_der, intermediates, roots, at_unix_s);
    let verdict = match (&trust, validity) {
        _ if !matches_name => Verdict::Mismatch,
        (_, Validity::Expired) => Verdict::Expired,
        (_, Validity::NotYetValid) => Verdict::NotYetValid,
        (Trust::Untrusted { why }, Validity::Current) => Verdict::Untrusted { why: why.clone() },
        (Trust::Unknown { why }, Validity::Current) => Verdict::TrustUnknown { why: why.clone() },
        (Trust::Trusted, Validity::Current) => Verdict::Valid,
    };
    let judgment = Judgment {
        name: name.to_owned(),
        at_unix_s: now_unix_s,
        matches_name: Some(matches_name),
        validity: Some(validity),
        trust,
        verdict,
    };
    Some((leaf, judgment))
}

fn trust(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    roots: &Roots,
    at_unix_s: i64,
) -> Trust {
    if roots.is_empty() {
        return Trust::Unknown {
            why: format!("no trust anchors loaded ({})", roots.source()),
        };
    }
    let parsed = match ParsedCertificate::try_from(leaf) {
        Ok(p) => p,
        Err(e) => {
            return Trust::Untrusted {
                why: format!("webpki cannot use the certificate: {e}"),
            };
        }
    };
    let at = UnixTime::since_unix_epoch(Duration::from_secs(at_unix_s.max(0).cast_unsigned()));
    let algs = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    match verify_server_cert_signed_by_trust_anchor(&parsed, roots.store(), intermediates, at, algs)
    {
        Ok(()) => Trust::Trusted,
        Err(e) => Trust::Untrusted {
            why: format!("{}, against {}", untrusted_why(&e), roots.source()),
        },
    }
}

/// Words for a path-validation failure (webpki's names are terse).
fn untrusted_why(e: &TlsError) -> String {
    let TlsError::InvalidCertificate(ce) = e else {
        return e.to_string();
    };
    match ce {
        CertificateError::UnknownIssuer => {
            "no chain to a trusted root: issuer unknown (self-signed or a private CA?)".into()
        }
        CertificateError::BadSignature => "a signature in the chain does not verify".into(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "not allowed for TLS server authentication (extended key usage)".into()
        }
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => {
            "a CA certificate of the chain is outside its validity period".into()
        }
        other => format!("{other:?}"),
    }
}
