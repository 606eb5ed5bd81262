//! Certificates generated at start (rcgen) and the TLS server configuration that picks them.
//!
//! One published CA signs the good leaf, the reverse-proxy-style default certificate and an
//! expired leaf; a second CA that is never written anywhere signs the untrusted leaf. A
//! client trusting the published CA therefore fails on exactly one property per fault: the
//! name (default cert), the issuer (untrusted) or the validity period (expired).

use std::fmt;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, date_time_ymd,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::error::Error;
use crate::spec::Fault;

/// Common name of the fallback certificate, in the style of Traefik's `TRAEFIK DEFAULT CERT`.
pub(crate) const DEFAULT_CERT_CN: &str = "FAULTLINE TESTBED DEFAULT CERT";
/// The only SAN of the fallback certificate; `.invalid` never resolves (RFC 2606 section 2).
pub(crate) const DEFAULT_CERT_SAN: &str = "default.invalid";

/// Every certificate the listeners can present, plus the published CA.
pub(crate) struct CertSet {
    pub(crate) ca_pem: String,
    server_name: String,
    good: Arc<CertifiedKey>,
    default: Arc<CertifiedKey>,
    untrusted: Arc<CertifiedKey>,
    expired: Arc<CertifiedKey>,
}

impl fmt::Debug for CertSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertSet")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn cert_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> Error {
    move |source| Error::Certificate { what, source }
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Leaf parameters for `cn` with the given SANs (IP literals become IP SANs).
fn leaf_params(
    what: &'static str,
    cn: &str,
    sans: Vec<String>,
) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::new(sans).map_err(cert_err(what))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn sign_leaf(
    what: &'static str,
    params: &CertificateParams,
    issuer: &CertifiedIssuer<'_, KeyPair>,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, Error> {
    let key = KeyPair::generate().map_err(cert_err(what))?;
    let cert = params.signed_by(&key, issuer).map_err(cert_err(what))?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // The leaf alone: the CA is a root, and roots are not sent (RFC 8446 section 4.4.2
    // allows omitting the self-signed root); clients find it in their trust store or fail.
    let chain = vec![cert.der().clone()];
    CertifiedKey::from_der(chain, key_der, provider)
        .map(Arc::new)
        .map_err(|source| Error::Tls { source })
}

impl CertSet {
    /// Generates the CAs and leaves for `server_name`.
    pub(crate) fn generate(server_name: &str, provider: &CryptoProvider) -> Result<Self, Error> {
        let ca_key = KeyPair::generate().map_err(cert_err("CA"))?;
        let ca = CertifiedIssuer::self_signed(ca_params("faultline testbed CA"), ca_key)
            .map_err(cert_err("CA"))?;
        let rogue_key = KeyPair::generate().map_err(cert_err("untrusted CA"))?;
        let rogue_ca =
            CertifiedIssuer::self_signed(ca_params("faultline testbed UNTRUSTED CA"), rogue_key)
                .map_err(cert_err("untrusted CA"))?;

        let names = vec![
            server_name.to_owned(),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ];
        let good_params = leaf_params("leaf", server_name, names.clone())?;
        let default_params = leaf_params(
            "default",
            DEFAULT_CERT_CN,
            vec![DEFAULT_CERT_SAN.to_owned()],
        )?;
        let mut expired_params = leaf_params("expired", server_name, names)?;
        expired_params.not_before = date_time_ymd(2020, 1, 1);
        expired_params.not_after = date_time_ymd(2021, 1, 1);

        Ok(CertSet {
            ca_pem: ca.pem(),
            server_name: server_name.to_owned(),
            good: sign_leaf("leaf", &good_params, &ca, provider)?,
            default: sign_leaf("default", &default_params, &ca, provider)?,
            untrusted: sign_leaf("untrusted", &good_params, &rogue_ca, provider)?,
            expired: sign_leaf("expired", &expired_params, &ca, provider)?,
        })
    }

    /// The TLS configuration of a listener serving `fault`.
    pub(crate) fn server_config(
        self: &Arc<Self>,
        fault: &Fault,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Arc<rustls::ServerConfig>, Error> {
        let mode = match fault {
            Fault::WrongCert => Mode::AlwaysDefault,
            Fault::UntrustedCert => Mode::Untrusted,
            Fault::ExpiredCert => Mode::Expired,
            _ => Mode::BySni,
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|source| Error::Tls { source })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver {
                certs: self.clone(),
                mode,
            }));
        // RFC 7301: offer h2 first so clients that can speak it get it.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Like Traefik: the good leaf for the expected name (or no SNI), the default otherwise.
    BySni,
    AlwaysDefault,
    Untrusted,
    Expired,
}

#[derive(Debug)]
struct Resolver {
    certs: Arc<CertSet>,
    mode: Mode,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certs = &self.certs;
        let chosen = match self.mode {
            Mode::AlwaysDefault => &certs.default,
            Mode::Untrusted => &certs.untrusted,
            Mode::Expired => &certs.expired,
            // SNI carries DNS names only (RFC 6066 section 3), so a client connecting to
            // 127.0.0.1 sends none and gets the good leaf, whose SAN has the IP.
            Mode::BySni => match hello.server_name() {
                None => &certs.good,
                Some(sni) if sni.eq_ignore_ascii_case(&certs.server_name) => &certs.good,
                Some(sni) if sni.eq_ignore_ascii_case("localhost") => &certs.good,
                Some(_) => &certs.default,
            },
        };
        Some(chosen.clone())
    }
}
