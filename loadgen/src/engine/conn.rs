//! Opening connections: TCP with the socket cookie stamped on it (the join key with the
//! analyzer), an optional TLS handshake that records what the server presented, and
//! the one stream type the HTTP clients run over.
use std::{
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use rustls::{ClientConfig, pki_types::ServerName};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpSocket, TcpStream},
};
use tokio_rustls::{TlsConnector, client::TlsStream};

use crate::{classify::classify_io, tls};
use events::model::{Class, Phase, TlsFacts};

/// A failure to get a usable connection.
#[derive(Clone, Debug)]
pub struct DialError {
    pub class: Class,
    pub phase: Phase,
    pub error: String,
    pub sock_cookie: Option<u64>,
    pub local: Option<SocketAddr>,
}

/// A TCP connection, made.
#[derive(Debug)]
pub struct Dialed {
    pub stream: TcpStream,
    pub sock_cookie: Option<u64>,
    pub local: SocketAddr,
    pub connect_us: u64,
}

/// Connects to `remote`, from `local_ip` if given, within `timeout`.
pub async fn dial(
    remote: SocketAddr,
    local_ip: Option<IpAddr>,
    timeout: Duration,
) -> Result<Dialed, DialError> {
    let fail = |class, error: String, sock_cookie, local| DialError {
        class,
        phase: Phase::Connect,
        error,
        sock_cookie,
        local,
    };
    let socket = match remote {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| {
        fail(
            classify_io(&e, Phase::Connect),
            format!("socket: {e}"),
            None,
            None,
        )
    })?;
    // Take the cookie before connecting: if the connect fails, the kernel's RST event
    // still carries it, and this is how the two are joined.
    let cookie = wire::sock::cookie(&socket).ok();
    if let Some(ip) = local_ip {
        socket.bind(SocketAddr::new(ip, 0)).map_err(|e| {
            fail(
                classify_io(&e, Phase::Connect),
                format!("bind {ip}: {e}"),
                cookie,
                None,
            )
        })?;
    }
    // Disable Nagle: requests are small and latency is what we measure.
    let _ = socket.set_nodelay(true);
    let started = Instant::now();
    let stream = match tokio::time::timeout(timeout, socket.connect(remote)).await {
        Err(_) => {
            return Err(fail(
                Class::ConnectTimeout,
                format!("connect {remote}: no answer within {timeout:?}"),
                cookie,
                None,
            ));
        }
        Ok(Err(e)) => {
            return Err(fail(
                classify_io(&e, Phase::Connect),
                format!("connect {remote}: {e}"),
                cookie,
                None,
            ));
        }
        Ok(Ok(s)) => s,
    };
    let local = stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0));
    Ok(Dialed {
        stream,
        sock_cookie: cookie,
        local,
        connect_us: started.elapsed().as_micros() as u64,
    })
}

/// Runs the TLS handshake on a connected stream.
pub async fn handshake(
    tcp: TcpStream,
    config: Arc<ClientConfig>,
    sni: &str,
    timeout: Duration,
) -> Result<(TlsStream<TcpStream>, TlsFacts), (DialError, TlsFacts)> {
    let mut facts = TlsFacts::default();
    let fail = |class, error: String| DialError {
        class,
        phase: Phase::Tls,
        error,
        sock_cookie: None,
        local: None,
    };
    let server_name = match ServerName::try_from(sni.to_owned()) {
        Ok(n) => n,
        Err(e) => {
            return Err((
                fail(Class::Other, format!("invalid server name {sni:?}: {e}")),
                facts,
            ));
        }
    };
    if matches!(server_name, ServerName::DnsName(_)) {
        facts.sni = Some(sni.to_owned());
    }
    let connector = TlsConnector::from(config);
    let (res, cert) = tls::capture_cert(tokio::time::timeout(
        timeout,
        connector.connect(server_name, tcp),
    ))
    .await;
    facts.cert = cert;
    match res {
        Err(_) => Err((
            fail(
                Class::Timeout,
                format!("TLS handshake: no answer within {timeout:?}"),
            ),
            facts,
        )),
        Ok(Err(e)) => {
            let (mut class, msg) = classify_handshake_error(&e);
            // rustls checks the chain before the name: a proxy's self-signed default
            // certificate fails as untrusted first. When the certificate presented does
            // not even name the SNI sent, the name is the finding that matters.
            if matches!(class, Class::TlsCertUntrusted | Class::TlsCertExpired)
                && let (Some(sni), Some(cert)) = (facts.sni.as_deref(), facts.cert.as_ref())
                && !wire::cert::names_cover(&cert.names, sni)
            {
                class = Class::TlsCertNameMismatch;
            }
            facts.error = Some(msg.clone());
            Err((fail(class, msg), facts))
        }
        Ok(Ok(stream)) => {
            let (_, conn) = stream.get_ref();
            facts.alpn = conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned());
            facts.version = conn.protocol_version().map(|v| format!("{v:?}"));
            Ok((stream, facts))
        }
    }
}

/// Classifies an error from `TlsConnector::connect`: a rustls error inside the io::Error
/// is a TLS verdict; an EOF is the peer closing mid-handshake; the rest is the socket's.
fn classify_handshake_error(e: &io::Error) -> (Class, String) {
    if let Some(tls_err) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        let class = tls::classify_tls_error(tls_err).unwrap_or(Class::Other);
        return (class, format!("TLS handshake: {tls_err}"));
    }
    let class = match e.kind() {
        io::ErrorKind::UnexpectedEof => Class::TlsHandshakeEof,
        _ => classify_io(e, Phase::Tls),
    };
    (class, format!("TLS handshake: {e}"))
}

/// A TCP or TLS stream: what the HTTP clients run over.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
