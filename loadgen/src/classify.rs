//! Turning errors into the failure taxonomy (shared/DESIGN.md): one place that decides
//! which [`Class`] an I/O, hyper or h2 error is, so HTTP/1.1 and HTTP/2 agree.
use std::{error::Error as StdError, io};

use events::model::{Class, CloseHow, Phase};

/// The class of an I/O error seen in `phase`.
pub fn classify_io(e: &io::Error, phase: Phase) -> Class {
    match e.raw_os_error() {
        Some(libc::EADDRNOTAVAIL) => return Class::LocalPortExhausted,
        Some(libc::EMFILE | libc::ENFILE) => return Class::FdExhausted,
        _ => {}
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Class::ConnectRefused,
        // EPIPE on a TCP socket means the connection was torn down under us, which on
        // Linux follows an RST (a FIN alone leaves writes working).
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => Class::TcpReset,
        io::ErrorKind::UnexpectedEof => match phase {
            Phase::Tls => Class::TlsHandshakeEof,
            _ => Class::PeerEof,
        },
        io::ErrorKind::TimedOut => match phase {
            Phase::Connect => Class::ConnectTimeout,
            _ => Class::Timeout,
        },
        io::ErrorKind::AddrNotAvailable => Class::LocalPortExhausted,
        _ => Class::Other,
    }
}

/// The first `io::Error` in an error's source chain.
pub fn find_io<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a io::Error> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

/// The class of a hyper (HTTP/1.1) error in `phase`.
pub fn classify_hyper(e: &hyper::Error, phase: Phase) -> Class {
    if let Some(io) = find_io(e) {
        return classify_io(io, phase);
    }
    if e.is_incomplete_message() {
        // The connection closed before the response was complete: a FIN (an RST
        // would have surfaced as an I/O error above).
        return Class::PeerEof;
    }
    if e.is_parse() || e.is_parse_status() {
        return Class::ProtocolError;
    }
    if e.is_timeout() {
        return Class::Timeout;
    }
    Class::Other
}

/// The class of an h2 error. GOAWAY and RST_STREAM from the server are their own classes;
/// I/O errors follow the socket rules.
pub fn classify_h2(e: &h2::Error, phase: Phase) -> Class {
    if e.is_go_away() && e.is_remote() {
        return Class::H2Goaway;
    }
    if e.is_reset() && e.is_remote() {
        return Class::H2RstStream;
    }
    if let Some(io) = e.get_io() {
        return classify_io(io, phase);
    }
    if let Some(io) = find_io(e) {
        return classify_io(io, phase);
    }
    if e.is_go_away() {
        // A GOAWAY we sent: only in reply to a protocol violation by the server.
        return Class::ProtocolError;
    }
    Class::Other
}

/// How a connection ended, from the class of the failure that ended it.
pub fn close_how(class: Class) -> CloseHow {
    match class {
        Class::TcpReset => CloseHow::PeerRst,
        Class::PeerEof => CloseHow::PeerFin,
        Class::H2Goaway => CloseHow::Goaway,
        Class::HttpStatus => CloseHow::Local,
        _ => CloseHow::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_classes() {
        let os = |code| io::Error::from_raw_os_error(code);
        assert_eq!(
            classify_io(&os(libc::ECONNREFUSED), Phase::Connect),
            Class::ConnectRefused
        );
        assert_eq!(
            classify_io(&os(libc::ECONNRESET), Phase::Body),
            Class::TcpReset
        );
        assert_eq!(classify_io(&os(libc::EPIPE), Phase::Write), Class::TcpReset);
        assert_eq!(
            classify_io(&os(libc::EADDRNOTAVAIL), Phase::Connect),
            Class::LocalPortExhausted
        );
        assert_eq!(
            classify_io(&os(libc::EMFILE), Phase::Connect),
            Class::FdExhausted
        );
        assert_eq!(
            classify_io(&os(libc::ETIMEDOUT), Phase::Connect),
            Class::ConnectTimeout
        );
        assert_eq!(
            classify_io(&os(libc::ETIMEDOUT), Phase::Body),
            Class::Timeout
        );
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(classify_io(&eof, Phase::Tls), Class::TlsHandshakeEof);
        assert_eq!(classify_io(&eof, Phase::AwaitHeaders), Class::PeerEof);
        assert_eq!(
            classify_io(&os(libc::EHOSTUNREACH), Phase::Connect),
            Class::Other
        );
    }

    #[test]
    fn io_error_is_found_in_a_source_chain() {
        #[derive(Debug)]
        struct Wrap(io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl StdError for Wrap {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let w = Wrap(io::Error::from_raw_os_error(libc::ECONNRESET));
        assert_eq!(find_io(&w).unwrap().raw_os_error(), Some(libc::ECONNRESET));
    }

    #[test]
    fn h2_remote_goaway_and_reset_are_their_own_classes() {
        let rst: h2::Error = h2::Reason::REFUSED_STREAM.into();
        // A Reason converted locally is not remote: it must not be blamed on the server.
        assert_ne!(classify_h2(&rst, Phase::AwaitHeaders), Class::H2RstStream);
    }
}
