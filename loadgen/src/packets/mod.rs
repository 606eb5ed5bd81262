//! `loadgen packets`: the packet-level tools. `syn` sends raw TCP SYNs at an exact rate
//! and says per target whether the port is open, closed, behind a full listen queue or
//! filtered; `inject` sends one crafted RST or FIN into a live connection (chaos
//! testing). The `wire` crate parses and builds the packets, for these tools and the analyzer.
pub mod classify;
pub mod evidence;
pub mod firewall;
pub mod inject;
pub mod net;
pub mod report;
pub mod syn;

use std::{io, net::IpAddr};

/// Everything the packet tools can fail at.
#[derive(Debug, thiserror::Error)]
pub enum PacketsError {
    #[error("{what}: {source}{}", root_hint(.source))]
    Privileged {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("no interface of this namespace holds {via}, the route's source address to {target}")]
    NoInterface { target: IpAddr, via: IpAddr },
    #[error("interface {iface} has link type {arphrd} (ARPHRD_*), which the capture cannot parse")]
    LinkType { iface: String, arphrd: u16 },
    #[error(transparent)]
    Firewall(#[from] firewall::FirewallError),
    #[error(transparent)]
    Wire(#[from] wire::packet::WireError),
    #[error(
        "no segment of {client} <-> {server} seen within {waited_ms} ms (is the connection \
         open, and on this host?)"
    )]
    ConnectionNotSeen {
        client: std::net::SocketAddr,
        server: std::net::SocketAddr,
        waited_ms: u64,
    },
}

fn root_hint(e: &io::Error) -> &'static str {
    if e.kind() == io::ErrorKind::PermissionDenied {
        " (raw sockets, AF_PACKET and nftables need root: CAP_NET_RAW and CAP_NET_ADMIN)"
    } else {
        ""
    }
}

impl PacketsError {
    /// Maps an I/O error of a privileged operation, adding the root hint on EPERM.
    pub fn privileged(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| Self::Privileged { what, source }
    }
}
