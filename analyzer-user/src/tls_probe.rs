//! The active certificate probe: after a run, one TLS handshake of the analyzer's own to
//! each server whose handshakes a client abandoned, with the client's SNI and ALPN, to
//! judge the certificate the server presents (names against the SNI, dates, trust).
//!
//! Why: TLS 1.3 encrypts the server's certificate (RFC 8446 section 2), so when a
//! foreign client (curl, Go, Python) rejects it, the wire shows only the ClientHello, the
//! ServerHello and the client closing. A wrong cause costs more than none, so the
//! analyzer looks for itself rather than guess. What it finds is the probe's evidence,
//! not the wire's: the certificate presented *to the probe*, later, judged against *this
//! host's* roots (or `--cacert`). It is kept in [`ProbeRecord`]s (the report's `probes`),
//! and on the records judged as a `TlsCertificate` fact told apart by its
//! `probed_unix_s`; the rules that use it say whose it is.
//!
//! [`probe`] is one handshake; [`ProbePlan`] picks the candidates of a finished run and
//! dedups them (one probe per address and SNI); [`probe_failed_handshakes`] does both;
//! [`ProbeOptions`] are its command-line flags (`--no-probe`, `--cacert`,
//! `--probe-timeout`). Depends on `wire` (certificate facts and RFC 6125 name matching),
//! rustls and the connection table; nothing depends on it but the analysis that runs it
//! when a live run finishes (`report::analysis`), never an offline report.
mod handshake;
mod judge;
mod plan;
mod roots;

pub use handshake::{Presented, ProbeError, ProbeOutcome, Stage, probe};
pub use judge::{Judgment, LeafCert, Trust, Validity, Verdict, judge};
pub use plan::{
    Candidate, DEFAULT_TIMEOUT, MAX_CONN_IDS, MAX_PROBES, ProbeOptions, ProbePlan, ProbeReason,
    ProbeRecord, candidate, probe_failed_handshakes,
};
pub use roots::{Roots, RootsError};

#[cfg(test)]
mod tests;
