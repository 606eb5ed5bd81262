//! Whether a connection failed, from its facts: TCP's word, the HTTP tally's, a TLS
//! handshake the client gave up, a request left unanswered, a dial dropped unused.
use super::{Closer, ConnRecord, Role};
use crate::{
    event::{
        TcpCounts,
        wire_fact::{HttpTally, WireFact},
    },
    names::TcpState,
};

/// How soon after establishment a client's close of a connection that sent only its
/// TLS ClientHello counts as a dropped dial rather than a wait given up
/// ([`ConnRecord::dial_dropped_at_hello`]). Clients' own timeouts are far longer (curl's
/// `-m`, k6's 60 s, vegeta's 30 s).
pub const DIAL_DROP_MAX_NS: u64 = 100_000_000;

/// How a client gave a TLS handshake up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GiveUp {
    /// An alert instead of its Finished (or a fatal plaintext alert).
    BeforeFinished,
    /// An alert-sized record right after its Finished, before the server closed.
    AfterHandshake,
}

impl ConnRecord {
    /// The connection failed from this host's point of view as the client: an RST either
    /// way, an errno delivered, a SYN never answered, or a failure only the wire shows (a
    /// fatal TLS alert, a TLS handshake the client gave up
    /// ([`Self::tls_handshake_abandoned`]), a certificate not valid for the SNI, an h2c
    /// GOAWAY with an error code or RST_STREAM, a suspect RST). Server sockets (this host's
    /// servers, e.g. the far end of a loopback test) and sockets of unknown role never
    /// count as failures; they stay as evidence.
    ///
    /// When the plaintext showed every HTTP exchange of the connection
    /// ([`Self::complete_http`]), its requests decide instead: a connection whose requests
    /// were all answered, with success statuses, did not fail, however it ended (a
    /// client trimming its pool resets connections with unread control frames).
    pub fn is_failed(&self) -> bool {
        if self.role == Role::Client
            && let Some(t) = self.complete_http()
        {
            return t.failed_requests() > 0;
        }
        self.failed_by_tcp() || self.tls_handshake_abandoned()
    }

    /// What TCP alone says: see [`Self::is_failed`].
    pub fn failed_by_tcp(&self) -> bool {
        let f = &self.facts;
        self.role == Role::Client
            && (f.rst_received > 0
                || self.wire.iter().any(WireFact::means_failure)
                || f.rst_sent > 0
                || f.errno.is_some()
                || self.connect_unanswered()
                || self.connect_without_port()
                || self.request_unanswered().is_some())
    }

    /// The HTTP tally, when it covers the whole connection: requests seen, no bytes
    /// missing from the capture.
    pub fn complete_http(&self) -> Option<&HttpTally> {
        // An HTTP/2 connection that carried no request (a pooled connection never used)
        // is complete too: nothing of it failed. Unless the wire shows the server refusing
        // it (a GOAWAY with an error code, a reset stream): then the client's request never
        // made it out (curl writing into the server's GOAWAY and close fails with EPIPE),
        // and TCP and the wire facts judge the connection.
        self.http.as_ref().filter(|t| {
            !t.incomplete
                && (t.requests > 0
                    || (t.protocol != "http/1.1" && !self.wire.iter().any(WireFact::means_failure)))
        })
    }

    /// All its requests were answered with success statuses, yet TCP shows an abnormal
    /// end (an RST either way, an error): counted apart, never as a failure.
    pub fn ended_abnormally_after_all_answered(&self) -> bool {
        self.role == Role::Client
            && self
                .complete_http()
                .is_some_and(|t| t.failed_requests() == 0)
            && self.failed_by_tcp()
    }

    /// A TLS handshake the client gave up itself: the wire shows its ClientHello and the
    /// server's answer (ServerHello, or TLS 1.3's encrypted flight), no HTTP request ever
    /// went out, and then an alert from the client in place of its Finished (encrypted,
    /// [`WireFact::TlsEncryptedAlert`], or a fatal one in plaintext: OpenSSL sends it
    /// before its keys change), or, the handshake completed, an encrypted alert before the
    /// server closed (curl 7.x checks the certificate's name only then). The usual
    /// reason is a certificate the client does not accept, which TLS 1.3 hides from the
    /// wire (the `tls_probe` module looks for itself). A failure ([`Self::is_failed`]).
    ///
    /// An alert right after a completed handshake is also how a client closes a pooled
    /// connection it never used (a close_notify is just as long), so that shape counts
    /// only when the certificate probe found a fault the client must have refused: a
    /// name that does not match, or dates out of range. Without it, it is
    /// [`Self::tls_handshake_maybe_abandoned`] only: kept for the probe, never a failure.
    pub fn tls_handshake_abandoned(&self) -> bool {
        match self.tls_give_up() {
            Some(GiveUp::BeforeFinished) => true,
            Some(GiveUp::AfterHandshake) => self.probed_cert_fault(),
            None => false,
        }
    }

    /// The client may have given the handshake up (see [`Self::tls_handshake_abandoned`]):
    /// what the certificate probe looks into.
    pub fn tls_handshake_maybe_abandoned(&self) -> bool {
        self.tls_give_up().is_some()
    }

    fn tls_give_up(&self) -> Option<GiveUp> {
        if self.role != Role::Client || self.http.as_ref().is_some_and(|t| t.requests > 0) {
            return None;
        }
        let (mut hello, mut answered, mut gave_up) = (false, false, None);
        for f in &self.wire {
            match f {
                WireFact::TlsClientHello { .. } => hello = true,
                WireFact::TlsServerHello { .. } | WireFact::TlsEncrypted { .. } => answered = true,
                WireFact::TlsEncryptedAlert {
                    from_server: false,
                    after_handshake: true,
                    ..
                } => {
                    gave_up.get_or_insert(GiveUp::AfterHandshake);
                }
                WireFact::TlsEncryptedAlert {
                    from_server: false, ..
                }
                | WireFact::TlsAlert {
                    from_server: false,
                    fatal: true,
                    ..
                } => gave_up = Some(GiveUp::BeforeFinished),
                WireFact::Http(t) if t.requests > 0 => return None,
                _ => {}
            }
        }
        gave_up.filter(|_| hello && answered)
    }

    /// The certificate probe found a certificate the client could not have accepted
    /// whatever its roots: not valid for the SNI, or outside its dates.
    fn probed_cert_fault(&self) -> bool {
        self.wire.iter().any(|f| match f {
            WireFact::TlsCertificate {
                probed_unix_s: Some(at),
                matches_sni,
                not_before_unix_s,
                not_after_unix_s,
                ..
            } => *matches_sni == Some(false) || at < not_before_unix_s || at > not_after_unix_s,
            _ => false,
        })
    }

    /// A client connection that carried data out and none back before it closed: the
    /// counters when the first FIN or RST closed it show payload sent
    /// (`data_segs_out` > 0) and none received (`data_segs_in` 0). Returns who closed and
    /// the counters. Whatever the protocol, a server that takes a request (or a TLS
    /// ClientHello, or an HTTP/2 preface) and answers nothing has failed it.
    ///
    /// Not when the client itself dropped a TLS dial right after its ClientHello
    /// ([`Self::dial_dropped_at_hello`]): nobody waited for that answer.
    pub fn request_unanswered(&self) -> Option<(Closer, TcpCounts)> {
        let f = &self.facts;
        let c = f.tcp_at_close?;
        (self.role == Role::Client
            && f.established_unix_ns.is_some()
            && c.data_segs_out > 0
            && c.data_segs_in == 0
            && !self.dial_dropped_at_hello())
        .then_some((f.closed_first?, c))
    }

    /// Bytes the server sent that the client never read before the connection ended:
    /// the kernel's `bytes_received` (at destroy, else at the first FIN or RST) less what
    /// the client's reads returned (eBPF capture). `None` without both numbers or when
    /// everything was read. Such bytes may hold the reason the server ended the
    /// connection (an HTTP/2 GOAWAY, an error answer) where nobody looked.
    pub fn unread_by_client(&self) -> Option<u64> {
        let read = self.http.as_ref()?.bytes_read?;
        let received = self
            .facts
            .tcp_last
            .or(self.facts.tcp_at_close)?
            .bytes_received;
        received.checked_sub(read).filter(|n| *n > 0)
    }

    /// The client closed (FIN) a connection within [`DIAL_DROP_MAX_NS`] of its
    /// establishment with only a TLS ClientHello sent and nothing received: a dial it no
    /// longer needed (Go's HTTP/2 transport drops a spare dial once another connection
    /// serves its request), not a server that failed to answer; no client timeout is
    /// that short.
    pub fn dial_dropped_at_hello(&self) -> bool {
        let f = &self.facts;
        let (Some(open), Some(fin)) = (f.established_unix_ns, f.local_fin_unix_ns) else {
            return false;
        };
        self.role == Role::Client
            && f.closed_first == Some(Closer::Local)
            && fin.saturating_sub(open) < DIAL_DROP_MAX_NS
            && f.tcp_at_close.is_some_and(|c| c.data_segs_in == 0)
            && self
                .wire
                .iter()
                .any(|w| matches!(w, WireFact::TlsClientHello { .. }))
            && self.http.as_ref().is_none_or(|t| t.requests == 0)
    }

    /// SYN sent, never established, no RST: the SYN went unanswered (retransmitted, or
    /// the socket was closed while waiting).
    pub fn connect_unanswered(&self) -> bool {
        let f = &self.facts;
        f.syn_sent_unix_ns.is_some()
            && f.established_unix_ns.is_none()
            && f.rst_received == 0
            && !self.connect_without_port()
            && (f.syn_retransmits > 0 || f.state == Some(TcpState::Close))
    }

    /// `connect()` gave up before a local port was chosen: SYN_SENT→CLOSE with local
    /// port 0 and nothing sent. `tcp_v4_connect` enters SYN_SENT before picking the port
    /// and returns to CLOSE when none is free (EADDRNOTAVAIL).
    pub fn connect_without_port(&self) -> bool {
        let f = &self.facts;
        f.syn_sent_unix_ns.is_some()
            && f.established_unix_ns.is_none()
            && f.state == Some(TcpState::Close)
            && f.syn_retransmits == 0
            && f.rst_received == 0
            && self.local.is_none_or(|l| l.port() == 0)
    }

    /// Worth keeping even when not failed: resets, retransmits, drops, errors.
    pub fn is_notable(&self) -> bool {
        let f = &self.facts;
        self.is_failed()
            || self.tls_handshake_maybe_abandoned()
            || f.rst_received > 0
            || f.rst_sent > 0
            || f.errno.is_some()
            || f.retransmits > 0
            || f.syn_retransmits > 0
            || !f.drops.is_empty()
            || f.peer_rst_sent.is_some()
    }
}
