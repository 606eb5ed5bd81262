//! A TLS handshake the client gave up ([`ConnRecord::tls_handshake_abandoned`]), judged by
//! the certificate probe's handshake when one was made (`tls_probe`: its
//! `TlsCertificate` fact, told apart by `probed_unix_s`). The probe saw what the server
//! presents now, to the analyzer, not necessarily what the client saw: its verdicts are
//! of medium confidence, and a certificate it finds valid leaves the client's refusal
//! unexplained, which is said rather than guessed.
use events::time::rfc3339_s;

use crate::{
    event::wire_fact::WireFact,
    rules::{Confidence, Evidence, Level, Verdict, kernel_summary},
    table::ConnRecord,
};

/// The certificate probe's fact on a record.
pub(super) struct Probed<'a> {
    subject: &'a str,
    names: &'a [String],
    issuer: &'a str,
    sha256: &'a str,
    not_before_unix_s: i64,
    not_after_unix_s: i64,
    matches_sni: Option<bool>,
    probed_unix_s: i64,
    trusted: Option<bool>,
}

/// What the probed certificate shows, the first that applies, in the order of
/// `tls_probe::Verdict` (a certificate for another name first: a proxy's default
/// certificate is usually self-signed too, which is beside the point).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Finding {
    Mismatch,
    Expired,
    NotYetValid,
    Untrusted,
    /// Names and dates fine; no roots to judge trust against.
    TrustUnknown,
    Valid,
}

impl<'a> Probed<'a> {
    /// The probe's fact on `k`, if the probe saw a certificate for it.
    pub(super) fn of(k: &'a ConnRecord) -> Option<Self> {
        k.wire.iter().find_map(|f| match f {
            WireFact::TlsCertificate {
                subject,
                names,
                issuer,
                sha256,
                not_before_unix_s,
                not_after_unix_s,
                matches_sni,
                probed_unix_s: Some(probed_unix_s),
                trusted,
                ..
            } => Some(Self {
                subject,
                names,
                issuer,
                sha256,
                not_before_unix_s: *not_before_unix_s,
                not_after_unix_s: *not_after_unix_s,
                matches_sni: *matches_sni,
                probed_unix_s: *probed_unix_s,
                trusted: *trusted,
            }),
            _ => None,
        })
    }

    fn finding(&self) -> Finding {
        if self.matches_sni == Some(false) {
            Finding::Mismatch
        } else if self.probed_unix_s > self.not_after_unix_s {
            Finding::Expired
        } else if self.probed_unix_s < self.not_before_unix_s {
            Finding::NotYetValid
        } else {
            match self.trusted {
                Some(false) => Finding::Untrusted,
                None => Finding::TrustUnknown,
                Some(true) => Finding::Valid,
            }
        }
    }

    /// The probe's handshake, what it was presented and how that was judged.
    pub(super) fn evidence(&self, k: &ConnRecord, sni: Option<&str>) -> Evidence {
        let to = k
            .remote
            .map_or_else(|| "the server".into(), |a| a.to_string());
        let with_sni = sni.map_or_else(|| "without SNI".into(), |s| format!("with SNI {s}"));
        let judged = match self.finding() {
            Finding::Mismatch => format!("not valid for {}", sni.unwrap_or("the SNI")),
            Finding::Expired => format!("expired at {}", rfc3339_s(self.probed_unix_s)),
            Finding::NotYetValid => {
                format!("not yet valid at {}", rfc3339_s(self.probed_unix_s))
            }
            Finding::Untrusted => "no chain to a root the analyzer trusts".into(),
            Finding::TrustUnknown => "names and dates fine, trust not judged (no roots)".into(),
            Finding::Valid => "valid for the name, current, and trusted by the analyzer".into(),
        };
        Evidence::probe(
            self.probed_unix_s,
            format!(
                "the analyzer's own handshake to {to} {with_sni} was presented a certificate for [{}] (subject {:?}) issued by {:?}, valid {} to {}, sha256 {}…: {judged}",
                self.names.join(", "),
                self.subject,
                self.issuer,
                rfc3339_s(self.not_before_unix_s),
                rfc3339_s(self.not_after_unix_s),
                self.sha256.chars().take(16).collect::<String>(),
            ),
        )
    }
}

/// The client's encrypted alert, and whether its Finished went before it.
fn encrypted_alert(k: &ConnRecord) -> Option<(u32, bool)> {
    k.wire.iter().find_map(|f| match f {
        WireFact::TlsEncryptedAlert {
            from_server: false,
            len_bytes,
            after_handshake,
        } => Some((*len_bytes, *after_handshake)),
        _ => None,
    })
}

/// How the client gave the handshake up, as wire evidence at `ts`: `alert` is the
/// plaintext alert's words, when it sent one.
fn given_up(k: &ConnRecord, ts: u64, sni: Option<&str>, alert: Option<&str>) -> Option<Evidence> {
    let hello = format!("ClientHello SNI {}", sni.unwrap_or("(none)"));
    let how = match (alert, encrypted_alert(k)) {
        (Some(a), _) => format!("{a}, after the server's first flight"),
        (None, Some((len, false))) => format!(
            "the client sent an encrypted alert ({len}-byte record) right after the server's first flight and closed"
        ),
        (None, Some((len, true))) => format!(
            "the client completed the handshake, then sent an encrypted alert ({len}-byte record) and closed first, without a request"
        ),
        (None, None) => return None,
    };
    Some(Evidence::wire(ts, format!("{hello}; {how}")))
}

/// A handshake the client gave up whose certificate the probe found wrong: the probe's
/// cause. `ts`: when the wire evidence is dated; `alert`: the client's plaintext fatal
/// alert, in words, if it sent one.
pub(super) fn probe_verdict(
    k: &ConnRecord,
    ts: u64,
    sni: Option<&str>,
    alert: Option<String>,
) -> Option<Verdict> {
    if !k.tls_handshake_abandoned() {
        return None;
    }
    let p = Probed::of(k)?;
    let name = sni.unwrap_or("the name requested");
    let (cause, title, hint) = match p.finding() {
        Finding::Mismatch => (
            "tls_cert_mismatch",
            "TLS certificate not valid for the name requested (SNI)",
            format!(
                "the server presents a certificate not valid for {name} (it names {}): usually a reverse proxy's default certificate, served because no router/host rule matched {name} or its certificate failed to load",
                p.names.join(", ")
            ),
        ),
        Finding::Expired | Finding::NotYetValid => (
            "tls_cert_expired",
            "TLS certificate expired or not yet valid",
            format!(
                "the server presents a certificate valid from {} to {}: renew it, or check the clock of the server or of the load host",
                rfc3339_s(p.not_before_unix_s),
                rfc3339_s(p.not_after_unix_s)
            ),
        ),
        Finding::Untrusted => (
            "tls_cert_untrusted",
            "TLS certificate from an untrusted issuer",
            "the server's certificate chains to no root the analyzer trusts (the system's, or --cacert; see the report's probes): fix its chain (intermediates missing?) or use a certificate from a CA the clients trust; if they trust a private CA, run the analyzer with --cacert CA.pem to judge against it".into(),
        ),
        Finding::TrustUnknown | Finding::Valid => return None,
    };
    let mut evidence: Vec<Evidence> = given_up(k, ts, sni, alert.as_deref()).into_iter().collect();
    evidence.push(p.evidence(k, sni));
    evidence.extend(kernel_summary(k));
    Some(Verdict {
        cause,
        detail: None,
        title: title.into(),
        confidence: Confidence::new(
            Level::Medium,
            "the client gave the handshake up; the certificate is the one the server presented to the analyzer's own handshake after the run, not necessarily the one the client saw",
        ),
        evidence,
        hint,
    })
}

/// `tls_handshake_rejected_by_client`: the client gave the handshake up with an
/// encrypted alert and no probe verdict explains it (no probe, a failed one, or a
/// certificate the probe finds fine). `ts`: when the wire evidence is dated.
pub(super) fn rejected_by_client(k: &ConnRecord, ts: u64, sni: Option<&str>) -> Option<Verdict> {
    if !k.tls_handshake_abandoned() {
        return None;
    }
    let (_, after_handshake) = encrypted_alert(k)?;
    let mut evidence: Vec<Evidence> = given_up(k, ts, sni, None).into_iter().collect();
    let probed = Probed::of(k);
    if let Some(p) = &probed {
        evidence.push(p.evidence(k, sni));
    }
    evidence.extend(kernel_summary(k));
    let name = sni.unwrap_or("the name requested");
    let hint = match probed.map(|p| p.finding()) {
        Some(Finding::Valid) => format!(
            "the certificate the server presents to the analyzer is valid for {name}, current and trusted by this host's roots, yet the client refused it: the client's trust store or pinning differs from the system's (a private CA it lacks, a pinned key), or it was presented another certificate; see the client's own error"
        ),
        Some(_) => format!(
            "the certificate the server presents to the analyzer is valid for {name} and current; trust was not judged (no roots): run the analyzer with --cacert and the CA the clients trust, or see the client's own error"
        ),
        None => "the client refused the server's handshake; the usual reason is a certificate it does not accept (wrong name, expired, unknown CA), which TLS 1.3 hides from the wire: the analyzer's certificate probe (off with --no-probe, or it failed: see the report's probes), loadgen's events or the client's own error say which".into(),
    };
    // An alert in place of the Finished is a refusal; a close right after a completed
    // handshake, without a request, only looks like one (curl checks names then).
    let confidence = if after_handshake {
        Confidence::new(
            Level::Low,
            "the client completed the TLS handshake and closed at once without a request, with an alert-sized encrypted record: a refusal by the look of it, and TLS 1.3 hides why",
        )
    } else {
        Confidence::new(
            Level::Medium,
            "the client sent an encrypted alert right after the server's first flight and closed: it refused the handshake, and TLS 1.3 hides why",
        )
    };
    Some(Verdict {
        cause: "tls_handshake_rejected_by_client",
        detail: None,
        title: "the client refused the TLS handshake (an encrypted alert instead of, or right after, its Finished)".into(),
        confidence,
        evidence,
        hint,
    })
}
