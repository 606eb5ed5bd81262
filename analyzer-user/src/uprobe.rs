//! Where to attach uprobes for TLS plaintext in foreign clients, without their
//! cooperation: OpenSSL 3's `SSL_write`/`SSL_read` (and `_ex`) in the system's libssl, and
//! Go's `crypto/tls.(*Conn).Write`/`Read` in static, possibly stripped, Go binaries (the
//! entry and every return instruction: Go code must not get uretprobes). Everything here
//! reads files; attaching is the caller's, with aya's `UProbe::attach` and a file offset.
//!
//! Entry points: [`go_tls_targets`], [`go_probe`] and [`is_go_binary`] for Go;
//! [`system_openssl_targets`] and [`openssl_targets`] for OpenSSL; [`symbol_offsets`] for
//! any ELF symbol. Inside: ELF mechanics (a symbol's file offset through its `PT_LOAD`),
//! Go's pc-line table and build info, and the x86-64 return finder. It depends on nothing
//! else of this crate.

mod buildinfo;
mod elf;
mod error;
mod go;
mod gopclntab;
mod openssl;
mod ret;
#[cfg(test)]
mod tests;

pub use buildinfo::GoVersion;
pub use elf::{SymbolOffset, find_library, find_library_in, library_dirs, symbol_offsets};
pub use error::UprobeError;
pub use go::{
    GoConnLayout, GoProbe, GoTlsTargets, TLS_READ, TLS_WRITE, go_probe, go_tls_targets, go_version,
    is_go_binary,
};
pub use gopclntab::{GoFunc, PclnError, PclnTab, PclnVersion};
pub use openssl::{LIBSSL, OpenSslTargets, openssl_targets, system_openssl_targets};
pub use ret::{RetError, return_addresses};
