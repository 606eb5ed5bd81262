//! One TLS handshake of the analyzer's own: blocking std::net and a rustls client whose
//! verifier records the chain it is shown and accepts it, so the handshake goes on to
//! its end (or at least past the certificate) whatever the certificate; the chain is
//! judged afterwards ([`super::judge()`]). No application data is sent: close_notify, then
//! close.
use std::{
    io::ErrorKind,
    net::{SocketAddr, TcpStream},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use rustls::{ClientConfig, ClientConnection, Error as TlsError, pki_types::ServerName};
use serde::{Deserialize, Serialize};
use wire::cert::verifier::{LastChain, RecordingVerifier};

use super::{
    judge::{Judgment, LeafCert, judge},
    roots::Roots,
};
use crate::raw::tls::{alert_name, version_name};

/// Reads and writes of one handshake, at most (a handshake takes a handful).
const MAX_ROUNDS: usize = 64;

/// Where the probe stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Connect,
    Handshake,
}

/// Why the probe saw no certificate or did not finish: data for the report, never a
/// panic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum ProbeError {
    #[error("connection refused")]
    Refused,
    #[error("no answer within {timeout_ms} ms ({stage:?})")]
    Timeout { stage: Stage, timeout_ms: u64 },
    #[error("the server closed the connection during the handshake")]
    Closed,
    #[error("the server reset the connection ({stage:?})")]
    Reset { stage: Stage },
    /// The server sent a fatal alert (RFC 8446 section 6.2).
    #[error("the server sent TLS alert {name} ({code})")]
    Alert { code: u8, name: String },
    /// rustls refused the handshake (not TLS, a protocol version it does not speak, a
    /// bad handshake signature...).
    #[error("TLS handshake failed: {what}")]
    Tls { what: String },
    /// The SNI cannot be sent as given (not a valid DNS name).
    #[error("SNI {sni:?} is not a DNS name rustls can send")]
    BadSni { sni: String },
    #[error("{stage:?}: {what}")]
    Io { stage: Stage, what: String },
    /// Not probed: see `why` (the per-run limit, probing disabled).
    #[error("not probed: {why}")]
    NotProbed { why: String },
}

impl ProbeError {
    fn io(stage: Stage, e: &std::io::Error, timeout: Duration) -> Self {
        match e.kind() {
            ErrorKind::ConnectionRefused => Self::Refused,
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Self::Timeout {
                stage,
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            },
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => Self::Reset { stage },
            ErrorKind::UnexpectedEof => Self::Closed,
            _ => Self::Io {
                stage,
                what: e.to_string(),
            },
        }
    }

    fn tls(e: &TlsError) -> Self {
        match e {
            TlsError::AlertReceived(desc) => {
                let code = u8::from(*desc);
                Self::Alert {
                    code,
                    name: alert_name(code).map_or_else(|| format!("{desc:?}"), str::to_owned),
                }
            }
            other => Self::Tls {
                what: other.to_string(),
            },
        }
    }
}

/// What the server presented to the probe, and how it was judged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presented {
    /// `TLS 1.3` or `TLS 1.2`, when the handshake got that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The protocol the server chose by ALPN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpn: Option<String>,
    /// Certificates in the chain, leaf included.
    pub chain_len: usize,
    pub leaf: LeafCert,
    pub judgment: Judgment,
}

/// The result of one probe: the certificate when one was seen, and the error when the
/// handshake did not complete (both may be set: a server that aborts after its
/// certificate, e.g. for want of a client certificate).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOutcome {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presented: Option<Presented>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ProbeError>,
    /// What trust was judged against.
    pub roots: String,
}

impl ProbeOutcome {
    /// An outcome with no certificate.
    pub fn failed(error: ProbeError, roots: &Roots) -> Self {
        Self {
            presented: None,
            error: Some(error),
            roots: roots.source().to_owned(),
        }
    }

    /// The verdict on the presented certificate, if one was seen.
    pub fn verdict(&self) -> Option<&super::judge::Verdict> {
        self.presented.as_ref().map(|p| &p.judgment.verdict)
    }
}

/// One TLS handshake to `addr` with the client's SNI and ALPN, its certificate judged
/// against `roots`. The connect is bounded by `timeout`, and so is the handshake after it
/// (every read waits at most what is left of it).
pub fn probe(
    addr: SocketAddr,
    sni: Option<&str>,
    alpn: &[String],
    roots: &Roots,
    timeout: Duration,
) -> ProbeOutcome {
    // Without an SNI, rustls sends none for an IP address name: what the client did.
    let server_name = match sni {
        Some(s) => match ServerName::try_from(s) {
            Ok(n) => n.to_owned(),
            Err(_) => return ProbeOutcome::failed(ProbeError::BadSni { sni: s.into() }, roots),
        },
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let recorder = Arc::new(recorder());
    let (negotiated, error) = handshake(addr, server_name, alpn, &recorder, timeout);
    let chain = recorder.recorder().take();
    let name = sni.map_or_else(|| addr.ip().to_string(), str::to_owned);
    let now_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let presented = judge(&chain, roots, &name, now_unix_s).map(|(leaf, judgment)| Presented {
        version: negotiated.version,
        alpn: negotiated.alpn,
        chain_len: chain.len(),
        leaf,
        judgment,
    });
    ProbeOutcome {
        presented,
        error,
        roots: roots.source().to_owned(),
    }
}

/// What the handshake negotiated, as far as it got.
#[derive(Default)]
struct Negotiated {
    version: Option<String>,
    alpn: Option<String>,
}

impl Negotiated {
    fn of(conn: &ClientConnection) -> Self {
        Self {
            version: conn
                .protocol_version()
                .map(|v| version_name(u16::from(v)).into_owned()),
            alpn: conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
        }
    }
}

/// Connects and runs the handshake; what was negotiated is kept even when it failed.
fn handshake(
    addr: SocketAddr,
    name: ServerName<'static>,
    alpn: &[String],
    recorder: &Arc<Recorder>,
    timeout: Duration,
) -> (Negotiated, Option<ProbeError>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(recorder.clone())
                .with_no_client_auth()
        });
    let conn = config.and_then(|mut config| {
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        ClientConnection::new(Arc::new(config), name)
    });
    let mut conn = match conn {
        Ok(c) => c,
        Err(e) => return (Negotiated::default(), Some(ProbeError::tls(&e))),
    };
    let mut sock = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => {
            let error = ProbeError::io(Stage::Connect, &e, timeout);
            return (Negotiated::default(), Some(error));
        }
    };
    let deadline = Instant::now() + timeout;
    let result = drive(&mut conn, &mut sock, deadline, timeout);
    let negotiated = Negotiated::of(&conn);
    if result.is_ok() {
        // RFC 8446 section 6.1: close_notify before closing. Best effort: the chain is
        // recorded already.
        conn.send_close_notify();
        while conn.wants_write() {
            if conn.write_tls(&mut sock).is_err() {
                break;
            }
        }
    }
    let _ = sock.shutdown(std::net::Shutdown::Both);
    (negotiated, result.err())
}

/// Runs the handshake to its end, or to the first error, before `deadline`.
fn drive(
    conn: &mut ClientConnection,
    sock: &mut TcpStream,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), ProbeError> {
    let hs_err = |e: std::io::Error| ProbeError::io(Stage::Handshake, &e, timeout);
    sock.set_write_timeout(Some(timeout)).map_err(hs_err)?;
    // Segments of a handshake are small; do not hold the last one back.
    sock.set_nodelay(true).map_err(hs_err)?;
    for _ in 0..MAX_ROUNDS {
        while conn.wants_write() {
            conn.write_tls(sock).map_err(hs_err)?;
        }
        if !conn.is_handshaking() {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(hs_err(ErrorKind::TimedOut.into()));
        }
        sock.set_read_timeout(Some(left)).map_err(hs_err)?;
        match conn.read_tls(sock) {
            Ok(0) => return Err(ProbeError::Closed),
            Ok(_) => {}
            Err(e) => return Err(hs_err(e)),
        }
        if let Err(e) = conn.process_new_packets() {
            // Send the alert rustls queued (best effort), then report.
            while conn.wants_write() {
                if conn.write_tls(sock).is_err() {
                    break;
                }
            }
            return Err(ProbeError::tls(&e));
        }
    }
    Err(ProbeError::Tls {
        what: format!("handshake not finished after {MAX_ROUNDS} reads"),
    })
}

/// The probe's verifier: keeps the chain it is shown and accepts it; handshake
/// signatures are still checked (a server that cannot sign with its certificate's key is
/// a failure of its own, reported as one).
type Recorder = RecordingVerifier<LastChain>;

fn recorder() -> Recorder {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    RecordingVerifier::new(LastChain::default(), None, provider)
}
