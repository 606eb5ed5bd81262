//! Small clients for the testbed tests: TLS with a certificate-recording verifier, a
//! byte-level HTTP/1.1 client and an h2 client, all with bounded waits.

#![allow(
    dead_code,
    reason = "each test file uses a different subset of the helpers"
)]

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use testbed::{Config, Testbed};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The bound on every wait that should finish quickly.
pub const WAIT: Duration = Duration::from_secs(5);

/// Starts a testbed with the given specs on loopback.
pub async fn start(specs: &[&str]) -> Testbed {
    let config = Config::with_specs(specs).expect("specs parse");
    Testbed::start(config).await.expect("testbed starts")
}

/// `fut`, or a panic naming `what` after [`WAIT`].
pub async fn bounded<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {WAIT:?}"))
}

pub async fn connect(addr: SocketAddr) -> TcpStream {
    bounded("connect", TcpStream::connect(addr))
        .await
        .expect("connect")
}

/// The certificates a server presented, recorded by [`RecordingVerifier`].
pub type Presented = Arc<Mutex<Vec<CertificateDer<'static>>>>;

/// Verifies like webpki, and records the end-entity certificate it was shown first.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    presented: Presented,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.presented
            .lock()
            .unwrap()
            .push(end_entity.clone().into_owned());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A rustls client trusting only the testbed CA, offering `alpn`, recording the
/// certificates it is shown.
pub fn tls_client(testbed: &Testbed, alpn: &[&[u8]]) -> (tokio_rustls::TlsConnector, Presented) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(testbed.ca_pem().as_bytes()).expect("CA PEM parses");
    roots.add(ca).expect("CA is a valid trust anchor");
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .expect("verifier builds");
    let presented = Presented::default();
    let verifier = RecordingVerifier {
        inner,
        presented: presented.clone(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (
        tokio_rustls::TlsConnector::from(Arc::new(config)),
        presented,
    )
}

/// TLS to `addr` with SNI/verification name `name`.
pub async fn tls_connect(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    name: &str,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = connect(addr).await;
    let name = ServerName::try_from(name.to_owned()).expect("valid server name");
    bounded("TLS handshake", connector.connect(name, tcp)).await
}

/// The rustls error inside an I/O error from tokio-rustls.
pub fn rustls_error(err: &io::Error) -> &rustls::Error {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("expected a rustls error, got {err:?}"))
}

/// The common name and DNS SANs of a DER certificate.
pub fn names(der: &CertificateDer<'_>) -> (String, Vec<String>) {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("certificate parses");
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    let sans = cert
        .subject_alternative_name()
        .expect("SAN extension parses")
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    (cn, sans)
}

/// Sends `GET /` with `extra` header lines (each ending in CRLF).
pub async fn send_get<S: AsyncWrite + Unpin>(io: &mut S, extra: &str) {
    let request = format!("GET / HTTP/1.1\r\nhost: testbed\r\n{extra}\r\n");
    bounded("write request", io.write_all(request.as_bytes()))
        .await
        .expect("write request");
}

/// An HTTP/1.1 response head.
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub content_length: usize,
    pub close: bool,
}

/// Reads one response head; bytes after it stay in `buf`.
pub async fn read_head<S: AsyncRead + Unpin>(io: &mut S, buf: &mut Vec<u8>) -> io::Result<Head> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(len) = response.parse(buf).expect("valid response head") {
            let header = |name: &str| {
                response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            let head = Head {
                status: response.code.expect("status"),
                content_length: header("content-length")
                    .map(|v| v.parse().expect("numeric content-length"))
                    .unwrap_or(0),
                close: header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")),
            };
            buf.drain(..len);
            return Ok(head);
        }
        let mut chunk = [0u8; 4096];
        let read = io.read(&mut chunk).await?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..read]);
    }
}

/// Reads up to `len_bytes` of body: the bytes read, and how reading ended (`Ok` when all
/// arrived, the error otherwise, `UnexpectedEof` for a clean EOF before the end).
pub async fn read_body<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
    len_bytes: usize,
) -> (Vec<u8>, io::Result<()>) {
    let mut body: Vec<u8> = buf.drain(..len_bytes.min(buf.len())).collect();
    while body.len() < len_bytes {
        let mut chunk = vec![0u8; len_bytes - body.len()];
        match io.read(&mut chunk).await {
            Ok(0) => return (body, Err(io::ErrorKind::UnexpectedEof.into())),
            Ok(read) => body.extend_from_slice(&chunk[..read]),
            Err(err) => return (body, Err(err)),
        }
    }
    (body, Ok(()))
}

/// One `GET /` with a full response: status and body.
pub async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
) -> io::Result<(Head, Vec<u8>)> {
    send_get(io, "").await;
    let head = bounded("response head", read_head(io, buf)).await?;
    let (body, end) = bounded("response body", read_body(io, buf, head.content_length)).await;
    end.map(|()| (head, body))
}

/// An h2 client over `io`; the connection is driven by a task whose result is returned.
pub async fn h2_client<S>(
    io: S,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = bounded("h2 handshake", h2::client::handshake(io))
        .await
        .expect("h2 handshake");
    (send, tokio::spawn(conn))
}

/// Sends `GET /` on `send` and returns the response future, or the error sending it.
pub async fn h2_send(
    send: &mut h2::client::SendRequest<Bytes>,
) -> Result<h2::client::ResponseFuture, h2::Error> {
    let ready = bounded("h2 ready", send.clone().ready()).await?;
    *send = ready;
    let request = http::Request::get("https://testbed.faultline.test/")
        .body(())
        .unwrap();
    send.send_request(request, true)
        .map(|(response, _)| response)
}

/// One `GET /` over h2: status and body.
pub async fn h2_get(
    send: &mut h2::client::SendRequest<Bytes>,
) -> Result<(http::StatusCode, Vec<u8>), h2::Error> {
    let response = bounded("h2 response", h2_send(send).await?).await?;
    let status = response.status();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = bounded("h2 body", body.data()).await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    Ok((status, bytes))
}
