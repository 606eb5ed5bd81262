//! Listening sockets: binding one per fault spec, accepting, and routing each connection to
//! TLS or plaintext, HTTP/1.1 or HTTP/2, on the same port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{Instrument, debug, warn};

use crate::error::Error;
use crate::faults::{ConnCtx, RstHandle, Shutdown};
use crate::spec::{Fault, ListenerSpec};
use crate::{http1, http2};

/// Connections served at once per listener; further ones wait in the accept queue.
const MAX_CONNECTIONS: usize = 10_000;
/// How long a connection may take to start and finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the bytes that tell h2c from HTTP/1.1 may take to arrive.
const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connection tasks get to finish at shutdown before they are aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How long a self-connect to the backlog-full socket may take before the SYN counts as
/// dropped. On loopback a handshake completes in microseconds.
const FILL_CONNECT_WAIT: Duration = Duration::from_millis(250);
/// Upper bound on self-connects while filling an accept queue.
const MAX_FILL_CONNECTS: usize = 64;
/// The backlog asked of listen(2) by `backlog-full`.
const BACKLOG_FULL_BACKLOG: i32 = 0;

/// The client connection preface of h2c with prior knowledge (RFC 9113 section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// First byte of a TLS record of type handshake (RFC 8446 section 5.1), i.e. ClientHello.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A bound listener and what keeps it alive.
#[derive(Debug)]
pub(crate) struct Bound {
    pub(crate) addr: SocketAddr,
    pub(crate) kind: Kind,
}

impl Bound {
    /// Connections the testbed queued itself to fill a `backlog-full` accept queue.
    pub(crate) fn self_queued(&self) -> Option<usize> {
        match &self.kind {
            Kind::BacklogFull { fillers, .. } => Some(fillers.len()),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub(crate) enum Kind {
    /// Accepting and serving HTTP.
    Serving(JoinHandle<()>),
    /// Listening, never accepting; `fillers` keep the accept queue full.
    BacklogFull {
        _socket: Socket,
        fillers: Vec<TcpStream>,
    },
    /// Bound, not listening.
    Refused { _socket: Socket },
}

/// Binds the listener for `spec` on `ip` and starts serving it.
pub(crate) async fn bind(
    spec: &ListenerSpec,
    ip: std::net::IpAddr,
    tls: Arc<rustls::ServerConfig>,
    shutdown: Shutdown,
) -> Result<Bound, Error> {
    let want = SocketAddr::new(ip, spec.port.unwrap_or(0));
    let bind_err = |source| Error::Bind {
        addr: want,
        spec: spec.to_string(),
        source,
    };
    let (addr, kind) = match spec.fault {
        Fault::Refused => {
            let socket = Socket::new(Domain::for_address(want), Type::STREAM, None)
                .and_then(|s| s.bind(&want.into()).map(|()| s))
                .map_err(bind_err)?;
            (
                local_addr(&socket).map_err(bind_err)?,
                Kind::Refused { _socket: socket },
            )
        }
        Fault::BacklogFull => {
            let socket = Socket::new(Domain::for_address(want), Type::STREAM, None)
                .and_then(|s| {
                    s.set_reuse_address(true)?;
                    s.bind(&want.into())?;
                    s.listen(BACKLOG_FULL_BACKLOG)?;
                    Ok(s)
                })
                .map_err(bind_err)?;
            let addr = local_addr(&socket).map_err(bind_err)?;
            let fillers = fill_accept_queue(addr)
                .await
                .map_err(|source| Error::BacklogFill { addr, source })?;
            debug!(%addr, queued = fillers.len(), "accept queue filled");
            (
                addr,
                Kind::BacklogFull {
                    _socket: socket,
                    fillers,
                },
            )
        }
        _ => {
            let listener = TcpListener::bind(want).await.map_err(bind_err)?;
            let addr = listener.local_addr().map_err(bind_err)?;
            let span = tracing::debug_span!("listener", %addr, spec = %spec);
            let task = accept_loop(listener, spec.fault.clone(), tls, shutdown).instrument(span);
            (addr, Kind::Serving(tokio::spawn(task)))
        }
    };
    Ok(Bound { addr, kind })
}

fn local_addr(socket: &Socket) -> std::io::Result<SocketAddr> {
    socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("socket has no inet address"))
}

/// Connects to `addr` until a connect hangs, and returns the connections that completed.
///
/// Linux admits a connection to the accept queue while it holds no more than the backlog
/// (`sk_acceptq_is_full` is `sk_ack_backlog > sk_max_ack_backlog`), so listen(0) queues one
/// connection; once full, `tcp_conn_request` drops further SYNs (counted as
/// ListenOverflows/ListenDrops) and clients retransmit them until their connect times out.
/// Measured on Linux 6.18: one self-connect completes and the second hangs (`ss -tl` shows
/// Recv-Q 1, Send-Q 0); a client then gets no SYN-ACK, and each of its SYNs (the first and
/// the retransmits at 1 s, 3 s, ...) adds one to ListenOverflows and ListenDrops.
async fn fill_accept_queue(addr: SocketAddr) -> std::io::Result<Vec<TcpStream>> {
    let mut fillers = Vec::new();
    for _ in 0..MAX_FILL_CONNECTS {
        match tokio::time::timeout(FILL_CONNECT_WAIT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            Ok(Err(err)) => return Err(err),
            // Our SYN was dropped: the queue is full. Dropping the pending connect closes
            // a socket in SYN_SENT, which sends nothing.
            Err(_) => return Ok(fillers),
        }
    }
    Err(std::io::Error::other(format!(
        "{MAX_FILL_CONNECTS} connects completed without the accept queue filling"
    )))
}

async fn accept_loop(
    listener: TcpListener,
    fault: Fault,
    tls: Arc<rustls::ServerConfig>,
    mut shutdown: Shutdown,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    let mut next_id = 0u64;
    loop {
        // Waiting for a permit before accepting leaves excess clients in the kernel's
        // accept queue, as mini-redis does, instead of accepting without bound.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.wait() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.wait() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(cause = %err, "accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        next_id += 1;
        let id = next_id;
        let fault = fault.clone();
        let acceptor = acceptor.clone();
        let shutdown = shutdown.clone();
        conns.spawn(
            async move {
                handle(tcp, id, fault, acceptor, shutdown).await;
                drop(permit);
            }
            .instrument(tracing::debug_span!("conn", id, %peer)),
        );
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        debug!(
            left = conns.len(),
            "aborting connections still open at shutdown"
        );
        conns.shutdown().await;
    }
}

/// Routes one accepted connection to its protocol.
async fn handle(
    tcp: TcpStream,
    id: u64,
    fault: Fault,
    acceptor: tokio_rustls::TlsAcceptor,
    mut shutdown: Shutdown,
) {
    if let Err(err) = tcp.set_nodelay(true) {
        debug!(cause = %err, "set TCP_NODELAY");
    }
    let rst = match RstHandle::new(&tcp) {
        Ok(rst) => rst,
        Err(err) => {
            warn!(cause = %err, "duplicate the connection's descriptor");
            return;
        }
    };
    let ctx = ConnCtx {
        id,
        fault,
        shutdown: shutdown.clone(),
        rst,
    };

    // A connection that never sends counts as idle for `close-idle`, as at a proxy.
    let idle_limit = ctx.idle_limit();
    let mut first = [0u8; 1];
    let peek = async {
        match idle_limit {
            Some(limit) => tokio::time::timeout(limit, tcp.peek(&mut first)).await,
            None => Ok(tcp.peek(&mut first).await),
        }
    };
    let peeked = tokio::select! {
        peeked = peek => peeked,
        () = shutdown.wait() => return,
    };
    match peeked {
        Ok(Ok(0)) => return,
        Ok(Ok(_)) => {}
        Ok(Err(err)) => {
            debug!(cause = %err, "peek first byte");
            return;
        }
        Err(_) => {
            debug!("idle before the first byte, closing with FIN");
            return;
        }
    }

    if first[0] == TLS_HANDSHAKE_RECORD {
        let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
        let tls = tokio::select! {
            tls = handshake => tls,
            () = shutdown.wait() => return,
        };
        let tls = match tls {
            Ok(Ok(tls)) => tls,
            // Certificate faults end here when the client rejects the certificate.
            Ok(Err(err)) => {
                debug!(cause = %err, "TLS handshake failed");
                return;
            }
            Err(_) => {
                debug!("TLS handshake timed out");
                return;
            }
        };
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        debug!(
            protocol = if h2 { "h2" } else { "http/1.1" },
            tls = true,
            "serving"
        );
        serve(tls, h2, ctx).await;
    } else {
        let h2c = tokio::select! {
            h2c = starts_with_h2_preface(&tcp) => h2c,
            () = shutdown.wait() => return,
        };
        let Some(h2c) = h2c else { return };
        debug!(
            protocol = if h2c { "h2c" } else { "http/1.1" },
            tls = false,
            "serving"
        );
        serve(tcp, h2c, ctx).await;
    }
}

async fn serve<S>(io: S, h2: bool, ctx: ConnCtx)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if h2 {
        http2::serve(io, ctx).await;
    } else {
        http1::serve(io, ctx).await;
    }
}

/// Whether the plaintext connection begins with the h2c preface; `None` if the client left
/// or never sent enough to tell.
async fn starts_with_h2_preface(tcp: &TcpStream) -> Option<bool> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let decide = async {
        loop {
            let seen = tcp.peek(&mut buf).await.ok()?;
            if seen == 0 {
                return None;
            }
            if buf[..seen] != H2_PREFACE[..seen] {
                return Some(false);
            }
            if seen == H2_PREFACE.len() {
                return Some(true);
            }
            // A prefix of the preface so far: peek returns at once while any byte is
            // unread, so wait a little for the rest instead of spinning.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(PREFACE_TIMEOUT, decide)
        .await
        .ok()
        .flatten()
}
