//! What each fault does to one request, shared by the HTTP/1.1 and HTTP/2 servers, and the
//! socket-level tools the faults need (abort with RST, the shutdown signal).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::spec::Fault;

/// Content-Length announced by the mid-response faults.
pub(crate) const MID_RESPONSE_LEN_BYTES: usize = 1024;
/// Body bytes sent before the mid-response faults cut the connection.
pub(crate) const MID_RESPONSE_SENT_BYTES: usize = 512;
/// Pause between the partial body and the RST, so that the client has the head and partial
/// body in hand before the reset and the failure lands in the body phase, as with a proxy
/// whose backend dies mid-response.
pub(crate) const BEFORE_RST: Duration = Duration::from_millis(50);

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Answer with `status` and `body` after `delay`; `close` ends the connection after
    /// the answer (HTTP/1.1 `Connection: close`).
    Respond {
        status: http::StatusCode,
        body: Bytes,
        delay: Duration,
        close: bool,
    },
    /// Abort the connection with RST instead of answering.
    Rst,
    /// Head and part of the body, then RST.
    RstMidResponse,
    /// Head and part of the body, then FIN.
    FinMidResponse,
    /// Never answer.
    Stall,
}

impl Action {
    fn ok(delay: Duration, close: bool) -> Action {
        Action::Respond {
            status: http::StatusCode::OK,
            body: body(2),
            delay,
            close,
        }
    }
}

/// The action for a request on a connection that has already answered `answered` requests.
///
/// HTTP/2-only faults (GOAWAY, RST_STREAM) are applied by the HTTP/2 server before it asks;
/// for HTTP/1.1 they map to their nearest equivalent or to a plain answer.
pub(crate) fn action(fault: &Fault, answered: usize) -> Action {
    match fault {
        Fault::Ok { body_bytes } => Action::Respond {
            status: http::StatusCode::OK,
            body: body(*body_bytes),
            delay: Duration::ZERO,
            close: false,
        },
        Fault::Status(status) => Action::Respond {
            status: *status,
            // The reason phrase as body, like most servers' error pages.
            body: Bytes::from_static(status.canonical_reason().unwrap_or("").as_bytes()),
            delay: Duration::ZERO,
            close: false,
        },
        // HTTP/1.1 has no GOAWAY; the closest a server can say is `Connection: close`
        // (RFC 9112 section 9.6) on the response after the allowed `after` ones.
        Fault::GoAway { after, .. } => Action::ok(Duration::ZERO, answered >= *after),
        Fault::Rst { after } if answered >= *after => Action::Rst,
        Fault::RstMidResponse => Action::RstMidResponse,
        Fault::FinMidResponse => Action::FinMidResponse,
        Fault::Stall => Action::Stall,
        Fault::Slow(delay) => Action::ok(*delay, false),
        _ => Action::ok(Duration::ZERO, false),
    }
}

/// The body of an answer: `okok...` cut to `len_bytes`.
pub(crate) fn body(len_bytes: usize) -> Bytes {
    if len_bytes == 2 {
        return Bytes::from_static(b"ok");
    }
    Bytes::from(
        b"ok"
            .iter()
            .copied()
            .cycle()
            .take(len_bytes)
            .collect::<Vec<u8>>(),
    )
}

/// A second descriptor of a connection's socket, kept to abort it with RST even when the
/// stream itself is buried inside TLS or the h2 connection.
#[derive(Debug)]
pub(crate) struct RstHandle(OwnedFd);

impl RstHandle {
    pub(crate) fn new(tcp: &tokio::net::TcpStream) -> io::Result<Self> {
        tcp.as_fd().try_clone_to_owned().map(RstHandle)
    }

    /// Sets SO_LINGER to zero so the close of the last descriptor sends RST instead of FIN
    /// (socket(7)). The caller must drop the stream too: the RST leaves when both are closed.
    pub(crate) fn abort(self) {
        if let Err(err) = socket2::SockRef::from(&self.0).set_linger(Some(Duration::ZERO)) {
            tracing::warn!(cause = %err, "set SO_LINGER 0 to abort a connection");
        }
    }
}

/// What a protocol server needs to know about its connection.
#[derive(Debug)]
pub(crate) struct ConnCtx {
    /// Per-listener connection number, for logs.
    pub(crate) id: u64,
    pub(crate) fault: Fault,
    pub(crate) shutdown: Shutdown,
    pub(crate) rst: RstHandle,
}

impl ConnCtx {
    /// The idle time after which `close-idle` closes a connection, if that is the fault.
    pub(crate) fn idle_limit(&self) -> Option<Duration> {
        match self.fault {
            Fault::CloseIdle(idle) => Some(idle),
            _ => None,
        }
    }
}

/// The testbed-wide shutdown signal: true once shutdown began (or the sender is gone).
#[derive(Debug, Clone)]
pub(crate) struct Shutdown(pub(crate) watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once shutdown began.
    pub(crate) async fn wait(&mut self) {
        // An error means the sender (the Testbed handle) was dropped: shut down as well.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rst_after_counts_answers() {
        let fault = Fault::Rst { after: 2 };
        assert!(matches!(action(&fault, 0), Action::Respond { .. }));
        assert!(matches!(action(&fault, 1), Action::Respond { .. }));
        assert_eq!(action(&fault, 2), Action::Rst);
    }

    #[test]
    fn goaway_closes_http1_after_allowed_answers() {
        let fault: Fault = "goaway:no_error:after=1".parse().unwrap();
        assert!(matches!(
            action(&fault, 0),
            Action::Respond { close: false, .. }
        ));
        assert!(matches!(
            action(&fault, 1),
            Action::Respond { close: true, .. }
        ));
    }

    #[test]
    fn body_has_requested_length() {
        assert_eq!(body(2), Bytes::from_static(b"ok"));
        assert_eq!(body(5), Bytes::from_static(b"okoko"));
        assert!(body(0).is_empty());
    }
}
