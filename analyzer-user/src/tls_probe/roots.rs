//! The certificates the probe judges trust against: the system's roots (through
//! rustls-native-certs, which honours `SSL_CERT_FILE` and `SSL_CERT_DIR` like OpenSSL), or
//! the `--cacert` file the user gave instead.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    RootCertStore,
    pki_types::{CertificateDer, pem::PemObject},
};

/// Why the `--cacert` roots could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    #[error("--cacert {path}: cannot read PEM certificates")]
    Read {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("--cacert {path}: no PEM certificate found")]
    Empty { path: PathBuf },
    #[error("--cacert {path}: certificate rejected as a trust anchor")]
    Rejected {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// Trust anchors, and where they came from (the report says what trust was judged
/// against: a client with a private CA trusts what the system roots do not).
#[derive(Clone, Debug)]
pub struct Roots {
    store: Arc<RootCertStore>,
    source: String,
}

impl Roots {
    /// The roots for `--cacert FILE` when given, else the system's.
    pub fn load(cacert: Option<&Path>) -> Result<Self, RootsError> {
        match cacert {
            Some(path) => Self::from_pem_file(path),
            None => Ok(Self::system()),
        }
    }

    /// The system's roots. Never fails: certificates that webpki cannot use are skipped
    /// (a system bundle may hold a few), and with none at all the store is empty and
    /// trust is not judged ([`Self::is_empty`]).
    pub fn system() -> Self {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!(error = %e, "system root certificates: a source failed");
        }
        let mut store = RootCertStore::empty();
        let (added, skipped) = store.add_parsable_certificates(found.certs);
        if skipped > 0 {
            tracing::debug!(added, skipped, "system root certificates: some skipped");
        }
        Self {
            store: Arc::new(store),
            source: format!("system roots ({added} certificates)"),
        }
    }

    /// The certificates of one PEM file, all of which must load: a user's `--cacert`
    /// that half-loads would make trust verdicts silently wrong.
    pub fn from_pem_file(path: &Path) -> Result<Self, RootsError> {
        let read = |source| RootsError::Read {
            path: path.to_owned(),
            source,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(read)?
            .collect::<Result<_, _>>()
            .map_err(read)?;
        if certs.is_empty() {
            return Err(RootsError::Empty {
                path: path.to_owned(),
            });
        }
        let mut store = RootCertStore::empty();
        for c in certs {
            store.add(c).map_err(|source| RootsError::Rejected {
                path: path.to_owned(),
                source,
            })?;
        }
        Ok(Self {
            source: format!("--cacert {} ({} certificates)", path.display(), store.len()),
            store: Arc::new(store),
        })
    }

    /// Roots from DER certificates already in memory (tests, embedders); certificates
    /// webpki cannot use are skipped.
    pub fn from_der(certs: Vec<CertificateDer<'static>>, source: &str) -> Self {
        let mut store = RootCertStore::empty();
        store.add_parsable_certificates(certs);
        Self {
            store: Arc::new(store),
            source: source.to_owned(),
        }
    }

    /// No trust anchor at all: trust cannot be judged.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// What the roots are, for the report ("system roots (146 certificates)").
    pub fn source(&self) -> &str {
        &self.source
    }

    pub(super) fn store(&self) -> &RootCertStore {
        &self.store
    }
}
