//! Which connections of a finished run are worth a probe, one probe per (server address,
//! SNI), and the command-line options of the probe.
//!
//! A candidate is a TLS handshake its client gave up
//! ([`ConnRecord::tls_handshake_maybe_abandoned`]: the server answered its ClientHello, the
//! client sent an alert, no request went out), with no certificate seen in plaintext
//! (TLS 1.2's is judged on the wire already), and an alert that may be about the
//! certificate: an encrypted one (TLS 1.3 hides which; in place of the client's
//! Finished, or right after it, before the server closed), or a plaintext one about a
//! certificate (RFC 8446 section 6.2: `bad_certificate` ... `unknown_ca`). A plaintext
//! `protocol_version` or `handshake_failure` is not: the client never saw a certificate.
use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::{
    handshake::{ProbeError, ProbeOutcome, probe},
    judge::Trust,
    roots::Roots,
};
use crate::{error::error_chain, event::wire_fact::WireFact, table::ConnRecord};

/// The probe's wait for the connect, and then for the handshake, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Probes per run at most: each may take twice the timeout, after the run.
pub const MAX_PROBES: usize = 32;
/// Record ids kept per probe ([`ProbeRecord::connections`] counts them all).
pub const MAX_CONN_IDS: usize = 64;

/// The certificate probe's options, for `#[command(flatten)]` into a command.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct ProbeOptions {
    /// Make no TLS handshake of the analyzer's own. By default, after the run, the
    /// analyzer makes one handshake per server address and SNI whose handshakes a client
    /// abandoned, to judge the certificate TLS 1.3 hides from the wire.
    #[arg(long = "no-probe", action = clap::ArgAction::SetFalse)]
    pub enabled: bool,
    /// PEM file of CA certificates the probe judges trust against, instead of the system
    /// roots (the CA your clients trust).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// How long the probe waits to connect, and then for the handshake (e.g. 2s, 500ms).
    #[arg(
        long = "probe-timeout",
        value_name = "DURATION",
        default_value = "2s",
        value_parser = humantime::parse_duration
    )]
    pub timeout: Duration,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            cacert: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Why a connection is a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeReason {
    /// The client sent an encrypted alert after the server's first flight (TLS 1.3).
    ClientEncryptedAlert,
    /// The client completed the handshake, then sent an encrypted alert before the server
    /// closed, without a request (curl 7.x checks the certificate's name only then).
    ClientClosedAfterHandshake,
    /// The client sent a fatal plaintext alert about a certificate.
    ClientCertificateAlert,
}

/// A connection worth a probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub addr: SocketAddr,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    pub reason: ProbeReason,
}

/// RFC 8446 section 6.2 (and RFC 5246 7.2.2): the alerts a client sends about the
/// server's certificate: bad_certificate, unsupported_certificate, certificate_revoked,
/// certificate_expired, certificate_unknown, unknown_ca.
const CERT_ALERTS: [u8; 6] = [42, 43, 44, 45, 46, 48];

/// Whether `rec` is worth a probe, and with what (see the module doc).
pub fn candidate(rec: &ConnRecord) -> Option<Candidate> {
    if !rec.tls_handshake_maybe_abandoned() {
        return None;
    }
    let addr = rec.remote?;
    let (mut hello, mut reason) = (None, None);
    for f in &rec.wire {
        match f {
            // Judged on the wire already (TLS 1.2 and older show it in plaintext), or
            // probed already.
            WireFact::TlsCertificate { .. } => return None,
            WireFact::TlsClientHello { sni, alpn } => {
                hello.get_or_insert((sni, alpn));
            }
            WireFact::TlsEncryptedAlert {
                from_server: false,
                after_handshake,
                ..
            } => {
                reason = Some(if *after_handshake {
                    ProbeReason::ClientClosedAfterHandshake
                } else {
                    ProbeReason::ClientEncryptedAlert
                });
            }
            WireFact::TlsAlert {
                from_server: false,
                fatal: true,
                code,
                ..
            } if CERT_ALERTS.contains(code) => {
                reason.get_or_insert(ProbeReason::ClientCertificateAlert);
            }
            _ => {}
        }
    }
    let (sni, alpn) = hello?;
    Some(Candidate {
        addr,
        sni: sni.clone(),
        alpn: alpn.clone(),
        reason: reason?,
    })
}

/// One probe's record for the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRecord {
    pub addr: SocketAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// The ALPN protocols offered (the first candidate's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    /// Candidate connections with this address and SNI, judged by this one probe.
    pub connections: usize,
    /// Their record ids (the first [`MAX_CONN_IDS`]).
    pub conn_ids: Vec<u64>,
    pub outcome: ProbeOutcome,
}

impl ProbeRecord {
    /// The probe's certificate as a `TlsCertificate` fact for the records it judged, told
    /// apart from the wire's by `probed_unix_s` (see the module doc of `tls_probe`).
    pub fn wire_fact(&self) -> Option<WireFact> {
        let p = self.outcome.presented.as_ref()?;
        let trusted = match p.judgment.trust {
            Trust::Trusted => Some(true),
            Trust::Untrusted { .. } => Some(false),
            Trust::Unknown { .. } => None,
        };
        Some(WireFact::TlsCertificate {
            subject: p.leaf.subject.clone(),
            names: p.leaf.names.clone(),
            issuer: p.leaf.issuer.clone(),
            sha256: p.leaf.sha256.clone(),
            not_before_unix_s: p.leaf.not_before_unix_s,
            not_after_unix_s: p.leaf.not_after_unix_s,
            sni: self.sni.clone(),
            matches_sni: self.sni.as_ref().and(p.judgment.matches_name),
            probed_unix_s: Some(p.judgment.at_unix_s),
            trusted,
        })
    }
}

/// The probes of one run: one per (address, SNI), SNIs compared as DNS names are (ASCII
/// case-insensitively, one trailing dot ignored).
#[derive(Clone, Debug, Default)]
pub struct ProbePlan {
    targets: BTreeMap<(SocketAddr, Option<String>), ProbeRecord>,
}

impl ProbePlan {
    /// The plan for a finished run's records.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a ConnRecord>) -> Self {
        let mut plan = Self::default();
        for rec in records {
            plan.add(rec);
        }
        plan
    }

    /// Adds `rec` when it is a candidate; returns whether it is.
    pub fn add(&mut self, rec: &ConnRecord) -> bool {
        let Some(c) = candidate(rec) else {
            return false;
        };
        let target = self
            .targets
            .entry(Self::key(c.addr, c.sni.as_deref()))
            .or_insert_with(|| ProbeRecord {
                addr: c.addr,
                sni: c.sni,
                alpn: c.alpn,
                connections: 0,
                conn_ids: Vec::new(),
                outcome: ProbeOutcome::default(),
            });
        target.connections += 1;
        if target.conn_ids.len() < MAX_CONN_IDS {
            target.conn_ids.push(rec.id);
        }
        true
    }

    /// A target: an address and an SNI, the SNI as DNS names compare.
    fn key(addr: SocketAddr, sni: Option<&str>) -> (SocketAddr, Option<String>) {
        let sni = sni.map(|s| s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase());
        (addr, sni)
    }

    /// Probes planned.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Runs `probe_one(addr, sni, alpn)` once per target, the first [`MAX_PROBES`]; the
    /// rest are recorded as not probed.
    pub fn run(
        self,
        mut probe_one: impl FnMut(SocketAddr, Option<&str>, &[String]) -> ProbeOutcome,
    ) -> Vec<ProbeRecord> {
        let mut out = Vec::with_capacity(self.targets.len());
        for (i, mut target) in self.targets.into_values().enumerate() {
            target.outcome = if i < MAX_PROBES {
                probe_one(target.addr, target.sni.as_deref(), &target.alpn)
            } else {
                ProbeOutcome {
                    error: Some(ProbeError::NotProbed {
                        why: format!("limit of {MAX_PROBES} probes per run reached"),
                    }),
                    ..ProbeOutcome::default()
                }
            };
            out.push(target);
        }
        out
    }
}

/// Probes the servers of the run's abandoned TLS handshakes (see the module doc): at most
/// one handshake per (address, SNI), sequentially, each bounded by `opts.timeout` to
/// connect and again to finish. Each candidate record (all of them, not only the
/// [`ProbeRecord::conn_ids`] kept) gets its probe's [`ProbeRecord::wire_fact`] when the
/// probe saw a certificate.
pub fn probe_failed_handshakes<'a>(
    records: impl IntoIterator<Item = &'a mut ConnRecord>,
    opts: &ProbeOptions,
) -> Vec<ProbeRecord> {
    if !opts.enabled {
        return Vec::new();
    }
    let mut records: Vec<&mut ConnRecord> = records.into_iter().collect();
    let plan = ProbePlan::from_records(records.iter().map(|r| &**r));
    if plan.is_empty() {
        return Vec::new();
    }
    // The caller should have checked `--cacert` at start-up (`Roots::load`); if it still
    // fails here, names and dates are judged and trust is not.
    let roots = Roots::load(opts.cacert.as_deref()).unwrap_or_else(|e| {
        let why = error_chain(&e);
        tracing::warn!(error = %why, "certificate probe: trust not judged");
        Roots::from_der(Vec::new(), &why)
    });
    tracing::debug!(probes = plan.len(), "certificate probe");
    let probes = plan.run(|addr, sni, alpn| probe(addr, sni, alpn, &roots, opts.timeout));
    attach(&probes, &mut records);
    probes
}

/// Adds each probe's certificate fact to the candidate records of its target.
fn attach(probes: &[ProbeRecord], records: &mut [&mut ConnRecord]) {
    let facts: BTreeMap<_, WireFact> = probes
        .iter()
        .filter_map(|p| Some((ProbePlan::key(p.addr, p.sni.as_deref()), p.wire_fact()?)))
        .collect();
    for rec in records.iter_mut() {
        let key = candidate(rec).map(|c| ProbePlan::key(c.addr, c.sni.as_deref()));
        let Some(fact) = key.and_then(|k| facts.get(&k)) else {
            continue;
        };
        // Past the table's cap on wire facts if need be (one per record): the rules
        // judge the handshake by it.
        rec.wire.push(fact.clone());
    }
}
