//! TLS for loadgen: the rustls client configuration, and the facts a failed handshake
//! must carry (SNI sent, the certificate actually presented, the verification error), so
//! that "the proxy served its default certificate" is recognisable at a glance.
//!
//! rustls shares one verifier between all connections and drops the connection object
//! when the handshake fails, so the presented certificate cannot be read afterwards. The
//! verifier ([`wire::cert::verifier::RecordingVerifier`]) therefore records what it is
//! shown into a tokio task-local slot that each handshake scopes around itself:
//! `verify_server_cert` runs synchronously inside the poll of that handshake, on that
//! task.
use std::{
    cell::RefCell,
    fs::File,
    io::{BufReader, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use rustls::{
    CertificateError, ClientConfig, Error as TlsError, RootCertStore,
    client::{WebPkiServerVerifier, danger::ServerCertVerifier},
    pki_types::{CertificateDer, PrivateKeyDer},
};
use wire::cert::verifier::{Record, RecordingVerifier};

use events::{
    model::{CertFacts, Class},
    time::rfc3339_s,
};

/// TLS options from the command line.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// PEM files of CA certificates to trust instead of the system roots.
    pub cacerts: Vec<PathBuf>,
    /// Accept any certificate (still recorded).
    pub insecure: bool,
    /// Client certificate chain and key (PEM).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Write session secrets here in SSLKEYLOGFILE format.
    pub keylog: Option<PathBuf>,
    /// ALPN protocols to offer, in preference order.
    pub alpn: Vec<Vec<u8>>,
}

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found")]
    NoCert { path: PathBuf },
    #[error("{path}: no PEM private key found")]
    NoKey { path: PathBuf },
    #[error("{path}: certificate rejected")]
    BadCert {
        path: PathBuf,
        #[source]
        source: TlsError,
    },
    #[error("no trusted roots: /etc/ssl/certs/ca-certificates.crt is missing; pass --cacert")]
    NoRoots,
    #[error("building the TLS configuration")]
    Build(#[source] TlsError),
}

tokio::task_local! {
    static CAPTURE: RefCell<Option<CertFacts>>;
}

/// Runs a handshake future with a slot that the verifier fills with the presented
/// certificate; returns the future's output and what was captured.
pub async fn capture_cert<F: Future>(fut: F) -> (F::Output, Option<CertFacts>) {
    CAPTURE
        .scope(RefCell::new(None), async {
            let out = fut.await;
            let cert = CAPTURE.with(|c| c.borrow_mut().take());
            (out, cert)
        })
        .await
}

/// Records the end-entity certificate a [`RecordingVerifier`] is shown into the
/// handshake's [`capture_cert`] slot.
#[derive(Debug)]
struct TaskLocalCapture;

impl Record for TaskLocalCapture {
    fn record(&self, end_entity: &CertificateDer<'_>, _intermediates: &[CertificateDer<'_>]) {
        // Outside a capture scope (no task-local) recording is skipped, not an error.
        let _ = CAPTURE.try_with(|c| *c.borrow_mut() = Some(cert_facts(end_entity)));
    }
}

/// Summarises a DER certificate for the report ([`wire::cert::CertFact`], the one
/// summary of faultline); a certificate that does not parse is still named by its
/// fingerprint.
pub fn cert_facts(der: &[u8]) -> CertFacts {
    let fact = wire::cert::CertFact::from_der(der);
    let subject = if fact.parse_error.is_some() {
        "(unparsable certificate)".to_owned()
    } else {
        fact.subject.clone()
    };
    CertFacts {
        subject,
        issuer: fact.issuer.clone(),
        names: fact.names(),
        sha256: fact.sha256_hex(),
        not_before: rfc3339_s(fact.not_before_unix_s),
        not_after: rfc3339_s(fact.not_after_unix_s),
    }
}

/// Writes TLS secrets in the SSLKEYLOGFILE format (NSS key log) to a chosen file.
#[derive(Debug)]
struct KeyLogFile(Mutex<File>);

impl rustls::KeyLog for KeyLogFile {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        if let Ok(mut f) = self.0.lock() {
            // A failed write loses a debugging aid, not evidence: warn and go on.
            if let Err(e) = writeln!(f, "{label} {} {}", hex(client_random), hex(secret)) {
                tracing::warn!(error = %e, "keylog write failed");
            }
        }
    }
}

fn read_pem(path: &Path) -> Result<BufReader<File>, TlsConfigError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| TlsConfigError::Read {
            path: path.to_owned(),
            source,
        })
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut read_pem(path)?)
        .collect::<Result<_, _>>()
        .map_err(|source| TlsConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCert {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Builds the shared client configuration.
pub fn client_config(opts: &TlsOptions) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = if opts.insecure {
        None
    } else {
        let mut roots = RootCertStore::empty();
        let files: Vec<PathBuf> = if opts.cacerts.is_empty() {
            if !Path::new(SYSTEM_ROOTS).is_file() {
                return Err(TlsConfigError::NoRoots);
            }
            vec![PathBuf::from(SYSTEM_ROOTS)]
        } else {
            opts.cacerts.clone()
        };
        for f in &files {
            for c in load_certs(f)? {
                // The system bundle may hold a few certificates webpki cannot use;
                // skip those there, but a user's --cacert must load whole.
                if let Err(source) = roots.add(c)
                    && !opts.cacerts.is_empty()
                {
                    return Err(TlsConfigError::BadCert {
                        path: f.clone(),
                        source,
                    });
                }
            }
        }
        let webpki: Arc<dyn ServerCertVerifier> =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TlsConfigError::Build(TlsError::General(e.to_string())))?;
        Some(webpki)
    };
    let verifier = Arc::new(RecordingVerifier::new(
        TaskLocalCapture,
        inner,
        provider.clone(),
    ));
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::Build)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &opts.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = load_certs(cert)?;
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut read_pem(key)?)
                .map_err(|source| TlsConfigError::Read {
                    path: key.clone(),
                    source,
                })?
                .ok_or_else(|| TlsConfigError::NoKey { path: key.clone() })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(TlsConfigError::Build)?
        }
    };
    config.alpn_protocols = opts.alpn.clone();
    if let Some(path) = &opts.keylog {
        let f = File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| TlsConfigError::Read {
                path: path.clone(),
                source,
            })?;
        config.key_log = Arc::new(KeyLogFile(Mutex::new(f)));
    }
    Ok(Arc::new(config))
}

/// The taxonomy class of a TLS handshake error (None: not a TLS-layer verdict, e.g. an
/// I/O error that the socket rules classify).
pub fn classify_tls_error(e: &TlsError) -> Option<Class> {
    Some(match e {
        TlsError::InvalidCertificate(c) => match c {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Class::TlsCertNameMismatch
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => Class::TlsCertExpired,
            _ => Class::TlsCertUntrusted,
        },
        TlsError::AlertReceived(_) => Class::TlsAlert,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_certificate_errors() {
        let cert = |c| TlsError::InvalidCertificate(c);
        assert_eq!(
            classify_tls_error(&cert(CertificateError::NotValidForName)),
            Some(Class::TlsCertNameMismatch)
        );
        assert_eq!(
            classify_tls_error(&cert(CertificateError::UnknownIssuer)),
            Some(Class::TlsCertUntrusted)
        );
        assert_eq!(
            classify_tls_error(&cert(CertificateError::Expired)),
            Some(Class::TlsCertExpired)
        );
        assert_eq!(
            classify_tls_error(&TlsError::AlertReceived(
                rustls::AlertDescription::HandshakeFailure
            )),
            Some(Class::TlsAlert)
        );
        assert_eq!(classify_tls_error(&TlsError::DecryptError), None);
    }

    #[test]
    fn unparsable_certificate_is_still_fingerprinted() {
        let f = cert_facts(b"not a certificate");
        assert_eq!(f.sha256.len(), 64);
        assert!(f.subject.contains("unparsable"));
    }

    #[test]
    fn missing_cacert_file_is_named() {
        let e = client_config(&TlsOptions {
            cacerts: vec![PathBuf::from("/nonexistent/ca.pem")],
            ..TlsOptions::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
