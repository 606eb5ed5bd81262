//! The uprobe targets in OpenSSL 3's libssl: `SSL_write`, `SSL_read` and their `_ex`
//! forms, whose buffer arguments hold the plaintext of every client linked against it
//! (curl, Python's ssl module, nghttp2's tools).
//!
//! aya's `UProbe::attach` also accepts these names and resolves them the same way
//! (`.dynsym` then `.symtab`, through the section holding the symbol). The offsets are
//! computed here anyway so the analyzer can tell before attaching which of the four the
//! library defines (the `_ex` forms are OpenSSL 1.1.1+), check they are code, and report
//! the exact place it attached to.
use std::path::{Path, PathBuf};

use super::{
    elf::{find_library, symbol_offsets},
    error::UprobeError,
};

/// The file name the dynamic loader looks for: OpenSSL 3's ABI.
pub const LIBSSL: &str = "libssl.so.3";

/// Where to attach in one libssl: the file offset of each function, `None` when the
/// library does not define it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSslTargets {
    pub path: PathBuf,
    /// `int SSL_write(SSL *ssl, const void *buf, int num)`.
    pub ssl_write: Option<u64>,
    /// `int SSL_read(SSL *ssl, void *buf, int num)`.
    pub ssl_read: Option<u64>,
    /// `int SSL_write_ex(SSL *s, const void *buf, size_t num, size_t *written)`.
    pub ssl_write_ex: Option<u64>,
    /// `int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes)`.
    pub ssl_read_ex: Option<u64>,
}

impl OpenSslTargets {
    /// Each function's name with its offset, in a fixed order.
    pub fn functions(&self) -> [(&'static str, Option<u64>); 4] {
        [
            ("SSL_write", self.ssl_write),
            ("SSL_read", self.ssl_read),
            ("SSL_write_ex", self.ssl_write_ex),
            ("SSL_read_ex", self.ssl_read_ex),
        ]
    }
}

/// The four functions' offsets in the libssl at `path`. A symbol that is defined but not
/// in an executable segment counts as absent: a uprobe there would never fire.
pub fn openssl_targets(path: &Path) -> Result<OpenSslTargets, UprobeError> {
    let found = symbol_offsets(
        path,
        &["SSL_write", "SSL_read", "SSL_write_ex", "SSL_read_ex"],
    )?;
    let code = |name: &str| {
        found
            .get(name)
            .filter(|s| s.executable)
            .map(|s| s.file_offset)
    };
    Ok(OpenSslTargets {
        path: path.to_owned(),
        ssl_write: code("SSL_write"),
        ssl_read: code("SSL_read"),
        ssl_write_ex: code("SSL_write_ex"),
        ssl_read_ex: code("SSL_read_ex"),
    })
}

/// The targets in the system's `libssl.so.3`, found as [`find_library`] does.
pub fn system_openssl_targets() -> Result<OpenSslTargets, UprobeError> {
    openssl_targets(&find_library(LIBSSL)?)
}
