//! PEM files for the foreign servers: one CA, a leaf for the name clients ask for
//! ([`SERVER_NAME`], `localhost`, `127.0.0.1`) and a reverse proxy's default
//! certificate for [`DEFAULT_CERT_NAME`] only, all signed by that CA. A client trusting
//! the CA and asking for [`SERVER_NAME`] from the default certificate therefore fails
//! on the name alone.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use super::error::Error;
use super::process::TempDir;

/// The name (SNI) clients ask the foreign servers for.
pub const SERVER_NAME: &str = "api.test";
/// The only name on the default certificate; `.invalid` never resolves (RFC 2606
/// section 2).
pub const DEFAULT_CERT_NAME: &str = "default.invalid";

/// Where the PEM files were written.
#[derive(Debug, Clone)]
pub(crate) struct CertFiles {
    pub(crate) ca: PathBuf,
    pub(crate) leaf: PathBuf,
    pub(crate) leaf_key: PathBuf,
    pub(crate) default: PathBuf,
    pub(crate) default_key: PathBuf,
}

fn cert_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> Error {
    move |source| Error::Certificate { what, source }
}

fn leaf_params(what: &'static str, names: &[&str]) -> Result<CertificateParams, Error> {
    let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(sans).map_err(cert_err(what))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// Generates the CA and both leaves and writes them into `dir`.
pub(crate) fn write(dir: &TempDir) -> Result<CertFiles, Error> {
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "faultline foreign servers CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(cert_err("CA"))?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(cert_err("CA"))?;

    let leaf = |what: &'static str, names: &[&str]| -> Result<(String, String), Error> {
        let key = KeyPair::generate().map_err(cert_err(what))?;
        let cert = leaf_params(what, names)?
            .signed_by(&key, &ca)
            .map_err(cert_err(what))?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (leaf_pem, leaf_key) = leaf("leaf", &[SERVER_NAME, "localhost", "127.0.0.1"])?;
    let (default_pem, default_key) = leaf("default", &[DEFAULT_CERT_NAME])?;
    Ok(CertFiles {
        ca: dir.write("ca.pem", ca.pem().as_bytes())?,
        leaf: dir.write("leaf.pem", leaf_pem.as_bytes())?,
        leaf_key: dir.write("leaf.key", leaf_key.as_bytes())?,
        default: dir.write("default.pem", default_pem.as_bytes())?,
        default_key: dir.write("default.key", default_key.as_bytes())?,
    })
}
