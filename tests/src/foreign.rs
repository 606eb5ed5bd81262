//! Real third-party servers and foreign clients for the analyzer's tests: the analyzer
//! must name the cause of a failure for any client without its cooperation, against
//! the servers people actually run.
//!
//! Servers ([`Nginx`], [`Haproxy`], [`GoServer`]) run as child processes on free
//! loopback ports, each with its configuration and certificates in a fresh temporary
//! directory; `start` returns once they accept connections and dropping them kills and
//! reaps the process. Clients ([`curl`], [`nghttp`], [`h2load`], [`PythonGet`],
//! [`GoClient`]) run to their end under a wall-clock bound. The Go programs under
//! `tests/go/` are built on first use with Debian's Go and cached under the target
//! directory. A missing program is an [`Error::Missing`] naming its Debian package.
//!
//! Every TLS server's certificate is signed by a CA written beside it (`ca_path`); the
//! name clients ask for is [`SERVER_NAME`].

mod certs;
mod clients;
mod error;
mod go;
mod gobuild;
mod haproxy;
mod nginx;
mod process;

pub use certs::{DEFAULT_CERT_NAME, SERVER_NAME};
pub use clients::{CLIENT_TIMEOUT, PythonGet, curl, h2load, nghttp};
pub use error::Error;
pub use go::{GoClient, GoServer, GoSummary};
pub use haproxy::Haproxy;
pub use nginx::{NGINX_KEEPALIVE_REQUESTS, Nginx};
pub use process::ClientRun;
