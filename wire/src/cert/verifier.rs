//! A rustls server-certificate verifier that records what the server presented before it
//! judges it, once for both tools: loadgen wraps the real WebPKI verifier with it (the
//! certificate of a failed handshake is otherwise lost with the connection), and the
//! analyzer's certificate probe accepts any chain with it and judges the chain itself.
//!
//! Only the certificate check is wrapped: handshake signatures are always checked with
//! the crypto provider's algorithms, so a server that cannot sign with its certificate's
//! key still fails the handshake, whatever the recording verifier decides.
use std::{
    fmt::Debug,
    sync::{Arc, Mutex, PoisonError},
};

use rustls::{
    DigitallySignedStruct, Error as TlsError, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
};

/// Where a [`RecordingVerifier`] puts what it is shown. rustls shares one verifier
/// between all the connections of a configuration and calls it synchronously inside the
/// poll of the handshake, so a recorder shared across connections must find its slot
/// from the caller's context (loadgen: a task-local).
pub trait Record: Debug + Send + Sync {
    /// Called once per certificate check, before the check, with the chain as presented.
    fn record(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]);
}

/// Records the presented chain with `R`, then verifies it with `inner`, or accepts it
/// when there is none (`--insecure`, or a probe that judges the chain afterwards).
#[derive(Debug)]
pub struct RecordingVerifier<R> {
    recorder: R,
    inner: Option<Arc<dyn ServerCertVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl<R: Record> RecordingVerifier<R> {
    /// Records into `recorder`; checks certificates with `inner` (None: accept any) and
    /// handshake signatures with `provider`'s algorithms.
    pub fn new(
        recorder: R,
        inner: Option<Arc<dyn ServerCertVerifier>>,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        Self {
            recorder,
            inner,
            provider,
        }
    }

    /// The recorder, to read what was recorded.
    pub fn recorder(&self) -> &R {
        &self.recorder
    }
}

impl<R: Record> ServerCertVerifier for RecordingVerifier<R> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        self.recorder.record(end_entity, intermediates);
        match &self.inner {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A [`Record`] keeping the last chain shown (leaf first), for a verifier that serves
/// one handshake.
#[derive(Debug, Default)]
pub struct LastChain(Mutex<Vec<CertificateDer<'static>>>);

impl LastChain {
    /// The chain recorded last (empty when none was), leaving the slot empty.
    pub fn take(&self) -> Vec<CertificateDer<'static>> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Record for LastChain {
    fn record(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = chain;
    }
}

#[cfg(test)]
mod tests {
    use rustls::CertificateError;

    use super::*;

    /// A certificate verifier that rejects everything, standing for the real one.
    #[derive(Debug)]
    struct Reject;

    impl ServerCertVerifier for Reject {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, TlsError> {
            Err(TlsError::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))
        }

        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, TlsError> {
            unreachable!()
        }

        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, TlsError> {
            unreachable!()
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            vec![]
        }
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn verify<R: Record>(v: &RecordingVerifier<R>) -> Result<ServerCertVerified, TlsError> {
        let name = ServerName::try_from("api.test").unwrap();
        v.verify_server_cert(
            &CertificateDer::from(b"leaf".to_vec()),
            &[CertificateDer::from(b"ca".to_vec())],
            &name,
            &[],
            UnixTime::now(),
        )
    }

    #[test]
    fn without_an_inner_verifier_any_chain_is_accepted_and_kept_leaf_first() {
        let v = RecordingVerifier::new(LastChain::default(), None, provider());
        assert!(verify(&v).is_ok());
        let chain = v.recorder().take();
        let bytes: Vec<&[u8]> = chain.iter().map(|c| c.as_ref()).collect();
        assert_eq!(bytes, [b"leaf".as_slice(), b"ca".as_slice()]);
        assert!(v.recorder().take().is_empty(), "take empties the slot");
    }

    #[test]
    fn the_inner_verifiers_verdict_stands_and_the_chain_is_still_recorded() {
        let v = RecordingVerifier::new(LastChain::default(), Some(Arc::new(Reject)), provider());
        assert_eq!(
            verify(&v).unwrap_err(),
            TlsError::InvalidCertificate(CertificateError::UnknownIssuer)
        );
        assert_eq!(v.recorder().take().len(), 2);
    }

    #[test]
    fn signature_schemes_are_the_providers() {
        let v = RecordingVerifier::new(LastChain::default(), None, provider());
        assert!(!v.supported_verify_schemes().is_empty());
        assert_eq!(
            v.supported_verify_schemes(),
            provider()
                .signature_verification_algorithms
                .supported_schemes()
        );
    }
}
