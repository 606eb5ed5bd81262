//! Opening a connection for an origin: TCP, then TLS when the origin is https, with the
//! `opened`, `tls`, `ready` and (on failure) `closed` lifecycle lines, and the failure
//! with whatever connection facts exist (the cookie of a refused socket joins with the
//! kernel's RST).
use std::time::Instant;

use super::{
    config::ProtoChoice,
    conn::{self, DialError, Dialed, Stream},
    state::{Ctx, Origin},
};
use crate::record::{ConnState, Failure};
use events::model::{Class, CloseHow, ConnFacts, ConnStep, Phase, Proto};

/// A connection that is open and ready for HTTP.
#[derive(Debug)]
pub struct Opened {
    pub stream: Stream,
    pub state: ConnState,
    /// True when ALPN (or --h2c) selected HTTP/2.
    pub h2: bool,
}

/// Why a connection did not open: the facts of the connection so far, and the failure.
pub type OpenError = (ConnFacts, Failure);

/// Opens a connection for `origin`; see the module docs.
pub async fn open(ctx: &Ctx, origin: &Origin) -> Result<Opened, OpenError> {
    let opening = Opening {
        ctx,
        origin,
        conn_id: ctx.conn_id(),
        started: Instant::now(),
    };
    let dialed = opening.dial().await?;
    let state = ConnState {
        conn_id: opening.conn_id,
        sock_cookie: dialed.sock_cookie,
        local: Some(dialed.local),
        remote: origin.dest.addr,
        opened: opening.started,
        requests: 0,
        last_active: Instant::now(),
    };
    let (stream, h2) = if origin.dest.tls {
        opening.tls(dialed).await?
    } else {
        (
            Stream::Plain(dialed.stream),
            origin.dest.proto == ProtoChoice::H2c,
        )
    };
    let proto = match (h2, origin.dest.tls) {
        (true, true) => Proto::H2,
        (true, false) => Proto::H2c,
        (false, _) => Proto::Http1,
    };
    opening.step(ConnStep::Ready { proto }).await;
    Ok(Opened { stream, state, h2 })
}

/// One connection being opened: what its lifecycle lines need.
struct Opening<'a> {
    ctx: &'a Ctx,
    origin: &'a Origin,
    conn_id: u64,
    started: Instant,
}

impl Opening<'_> {
    /// Records a lifecycle line stamped now.
    async fn step(&self, step: ConnStep) {
        self.ctx.rec.conn(self.conn_id, Instant::now(), step).await;
    }

    /// Records the `closed` line of a connection that failed to open.
    async fn closed_failed(&self, error: String) {
        self.step(ConnStep::Closed {
            how: CloseHow::Failed,
            error,
            requests: 0,
            age_us: self.started.elapsed().as_micros() as u64,
        })
        .await;
    }

    /// The failure of a connection that did not open, with its facts.
    fn failure(&self, e: DialError) -> OpenError {
        let facts = ConnFacts {
            conn_id: self.conn_id,
            sock_cookie: e.sock_cookie,
            local: e.local,
            remote: Some(self.origin.dest.addr),
            ..ConnFacts::default()
        };
        let failure = Failure {
            class: e.class,
            phase: e.phase,
            error: e.error,
        };
        (facts, failure)
    }

    /// The TCP connection, with its `opened` line (and `closed`, when it failed).
    async fn dial(&self) -> Result<Dialed, OpenError> {
        let remote = self.origin.dest.addr;
        let connect_timeout = self.ctx.cfg.connect_timeout;
        match conn::dial(remote, self.ctx.local_ip(), connect_timeout).await {
            Ok(dialed) => {
                let opened = ConnStep::Opened {
                    sock_cookie: dialed.sock_cookie,
                    local: Some(dialed.local),
                    remote,
                    connect_us: dialed.connect_us,
                };
                self.ctx.rec.conn(self.conn_id, self.started, opened).await;
                Ok(dialed)
            }
            Err(e) => {
                let opened = ConnStep::Opened {
                    sock_cookie: e.sock_cookie,
                    local: e.local,
                    remote,
                    connect_us: self.started.elapsed().as_micros() as u64,
                };
                self.ctx.rec.conn(self.conn_id, self.started, opened).await;
                self.closed_failed(e.error.clone()).await;
                Err(self.failure(e))
            }
        }
    }

    /// The TLS handshake, with its `tls` line; the stream and whether ALPN chose h2.
    async fn tls(&self, dialed: Dialed) -> Result<(Stream, bool), OpenError> {
        let config = self
            .ctx
            .tls
            .clone()
            .expect("TLS config exists for https origins");
        let tls_started = Instant::now();
        let handshake_us = || tls_started.elapsed().as_micros() as u64;
        let (sock_cookie, local) = (dialed.sock_cookie, Some(dialed.local));
        let shaken = conn::handshake(
            dialed.stream,
            config,
            &self.origin.dest.sni,
            self.ctx.cfg.timeout,
        )
        .await;
        match shaken {
            Ok((s, facts)) => {
                let h2 = facts.alpn.as_deref() == Some("h2");
                let handshake_us = handshake_us();
                self.step(ConnStep::Tls {
                    tls: facts,
                    handshake_us,
                })
                .await;
                if self.origin.dest.proto == ProtoChoice::H2 && !h2 {
                    let error = "ALPN: the server did not agree to h2 (--http2)".to_owned();
                    self.closed_failed(error.clone()).await;
                    return Err(self.failure(DialError {
                        class: Class::ProtocolError,
                        phase: Phase::Tls,
                        error,
                        sock_cookie,
                        local,
                    }));
                }
                Ok((Stream::Tls(Box::new(s)), h2))
            }
            Err((mut e, facts)) => {
                let handshake_us = handshake_us();
                self.step(ConnStep::Tls {
                    tls: facts,
                    handshake_us,
                })
                .await;
                self.closed_failed(e.error.clone()).await;
                e.sock_cookie = sock_cookie;
                e.local = local;
                Err(self.failure(e))
            }
        }
    }
}
