//! Where to attach uprobes in a Go binary: `crypto/tls.(*Conn).Write` and `Read` (or any
//! function by name), found through the pc-line table so that stripped release builds
//! (vegeta, k6: `-ldflags '-s -w'`, no `.symtab`) work, with the entry and every return
//! instruction as file offsets, and the Go version the kernel side picks offsets by.
//!
//! Facts the kernel side relies on (Go 1.17+ on x86-64, ABIInternal,
//! src/cmd/compile/abi-internal.md; checked on Go 1.19 by `go tool objdump`):
//! - at the entry of `(*Conn).Write(b []byte) (int, error)` and `Read`: the receiver
//!   `*tls.Conn` is in RAX, `b`'s data pointer in RBX, its length in RCX (capacity RDI);
//! - at each RET: `n` in RAX (the error's itab and data in RBX and RCX); the receiver is
//!   gone from RAX, so the entry probe must keep what the return probe needs;
//! - R14 holds the current goroutine (`g`) at entry and at every RET, and a goroutine can
//!   move to another thread while it blocks inside Read: key the entry state by `g`, not
//!   by thread id.
use std::path::{Path, PathBuf};

use super::{
    buildinfo::{self, GoVersion},
    elf::{self, Image},
    error::UprobeError,
    gopclntab::{self, PclnTab},
    ret,
};

/// `crypto/tls.(*Conn).Write`: plaintext leaving the client.
pub const TLS_WRITE: &str = "crypto/tls.(*Conn).Write";
/// `crypto/tls.(*Conn).Read`: plaintext arriving, valid in the buffer once it returns.
pub const TLS_READ: &str = "crypto/tls.(*Conn).Read";

/// The uprobe sites of one Go function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoProbe {
    pub function: String,
    /// Virtual address of the first instruction.
    pub entry_vaddr: u64,
    /// File offset of the first instruction: the entry uprobe.
    pub entry_offset: u64,
    /// Virtual address just past the function.
    pub end_vaddr: u64,
    /// File offset of every RET in the body, ascending: the return uprobes (Go code must
    /// not get uretprobes).
    pub return_offsets: Vec<u64>,
}

/// Where to attach in one Go binary for TLS plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoTlsTargets {
    pub path: PathBuf,
    pub go_version: GoVersion,
    pub write: GoProbe,
    pub read: GoProbe,
}

/// Byte offsets the kernel side follows from the `*tls.Conn` receiver to the socket's
/// file descriptor, on a 64-bit target: `Conn.conn` (a `net.Conn` interface: itab word,
/// then data word) → the data word, a `*net.TCPConn` when the itab is
/// `*net.TCPConn,net.Conn` → `TCPConn.conn.fd` (`*net.netFD`) → `netFD.pfd.Sysfd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoConnLayout {
    /// Offset of `conn net.Conn` in `crypto/tls.Conn`.
    pub tls_conn_conn: u64,
    /// Offset of the data word in an interface value (`runtime.iface{tab, data}`).
    pub iface_data: u64,
    /// Offset of `fd *netFD` in `net.TCPConn` (through its embedded `net.conn`).
    pub tcp_conn_fd: u64,
    /// Offset of `pfd.Sysfd int` in `net.netFD`.
    pub net_fd_sysfd: u64,
}

impl GoConnLayout {
    /// The layout for binaries of `version`. Read from the DWARF of a Go 1.19 build and
    /// checked against the installed toolchain by reflection in this module's tests; the
    /// fields involved have kept their place since `internal/poll.FD` appeared (Go 1.9):
    /// `fdmu fdMutex` (16 bytes) then `Sysfd`. `None` before the register ABI (1.17),
    /// where the rest of the kernel side's facts do not hold either.
    pub fn for_version(version: &GoVersion) -> Option<Self> {
        version.register_abi_x86_64().then_some(Self {
            tls_conn_conn: 0,
            iface_data: 8,
            tcp_conn_fd: 0,
            net_fd_sysfd: 16,
        })
    }
}

/// The uprobe sites of `crypto/tls.(*Conn).Write` and `Read` in the Go binary at `path`,
/// and its Go version.
pub fn go_tls_targets(path: &Path) -> Result<GoTlsTargets, UprobeError> {
    let data = elf::read(path)?;
    let go = GoBinary::parse(path, &data)?;
    Ok(GoTlsTargets {
        path: path.to_owned(),
        go_version: go.version()?,
        write: go.probe(TLS_WRITE)?,
        read: go.probe(TLS_READ)?,
    })
}

/// The uprobe sites of any function of the Go binary at `path`, by its symbol name as
/// `go tool nm` prints it (`net/http.(*persistConn).readLoop`).
pub fn go_probe(path: &Path, function: &str) -> Result<GoProbe, UprobeError> {
    let data = elf::read(path)?;
    GoBinary::parse(path, &data)?.probe(function)
}

/// The Go version the binary at `path` was built with.
pub fn go_version(path: &Path) -> Result<GoVersion, UprobeError> {
    let data = elf::read(path)?;
    let image = Image::parse(path, &data)?;
    version(&image)
}

/// Whether `path` is an ELF file with a Go pc-line table (what every Go binary has,
/// stripped or not).
pub fn is_go_binary(path: &Path) -> bool {
    let Ok(data) = elf::read(path) else {
        return false;
    };
    Image::parse(path, &data).is_ok_and(|image| pclntab(&image).is_ok())
}

/// A Go binary read once: its ELF image and pc-line table.
#[derive(Debug)]
struct GoBinary<'d> {
    image: Image<'d>,
    pcln: PclnTab<'d>,
}

impl<'d> GoBinary<'d> {
    fn parse(path: &'d Path, data: &'d [u8]) -> Result<Self, UprobeError> {
        let image = Image::parse(path, data)?;
        let pcln = pclntab(&image)?;
        Ok(Self { image, pcln })
    }

    fn version(&self) -> Result<GoVersion, UprobeError> {
        version(&self.image)
    }

    fn probe(&self, function: &str) -> Result<GoProbe, UprobeError> {
        let path = self.image.path;
        let func = self
            .pcln
            .find(function)
            .map_err(|source| UprobeError::PclnTab {
                path: path.to_owned(),
                source,
            })?
            .ok_or_else(|| UprobeError::FunctionNotFound {
                path: path.to_owned(),
                function: function.to_owned(),
            })?;
        let entry = self
            .image
            .locate(func.entry)
            .filter(|m| m.executable)
            .ok_or_else(|| {
                self.image
                    .not_mapped(&format!("code of {function}"), func.entry)
            })?;
        let code = self
            .image
            .bytes_at(func.entry, func.end.saturating_sub(func.entry))
            .ok_or_else(|| {
                self.image
                    .not_mapped(&format!("end of {function}"), func.end)
            })?;
        let arch = object::Object::architecture(&self.image.file);
        let returns = ret::return_addresses(arch, code, func.entry).map_err(|source| {
            UprobeError::Returns {
                path: path.to_owned(),
                function: function.to_owned(),
                source,
            }
        })?;
        // The body is contiguous in one segment, so every return shifts like the entry.
        let return_offsets = returns
            .iter()
            .map(|r| entry.file_offset + (r - func.entry))
            .collect();
        Ok(GoProbe {
            function: function.to_owned(),
            entry_vaddr: func.entry,
            entry_offset: entry.file_offset,
            end_vaddr: func.end,
            return_offsets,
        })
    }
}

/// The pc-line table: the `.gopclntab` section (`.data.rel.ro.gopclntab` in
/// position-independent builds), else a table found in a non-executable segment whose
/// first and last functions start in executable code (section headers stripped too).
fn pclntab<'d>(image: &Image<'d>) -> Result<PclnTab<'d>, UprobeError> {
    let text = image.section(&[".text"]).map(|(addr, _)| addr);
    if let Some((_, bytes)) = image.section(&[".gopclntab", ".data.rel.ro.gopclntab"]) {
        return PclnTab::parse(bytes, text).map_err(|source| UprobeError::PclnTab {
            path: image.path.to_owned(),
            source,
        });
    }
    let in_code = |t: &PclnTab<'_>| {
        [0, t.len() - 1].iter().all(|&i| {
            t.func(i)
                .is_ok_and(|f| image.locate(f.entry).is_some_and(|m| m.executable))
        })
    };
    image
        .segments()
        .filter(|s| !s.executable)
        .find_map(|s| gopclntab::scan(s.bytes, text, in_code))
        .ok_or_else(|| UprobeError::NoPclnTab {
            path: image.path.to_owned(),
        })
}

/// The version from `.go.buildinfo`, else from the start of the first writable data
/// segment (where the linker puts the blob; Go's reader looks at its first 64 KiB too).
fn version(image: &Image<'_>) -> Result<GoVersion, UprobeError> {
    const SEARCH_LEN: usize = 64 * 1024;
    let data = image
        .section(&[".go.buildinfo"])
        .map(|(_, b)| b)
        .or_else(|| {
            image
                .segments()
                .find(|s| s.writable && !s.executable)
                .map(|s| &s.bytes[..s.bytes.len().min(SEARCH_LEN)])
        });
    let raw = data
        .and_then(|d| buildinfo::version(d, |addr, len| image.bytes_at(addr, len)))
        .ok_or_else(|| UprobeError::NoBuildInfo {
            path: image.path.to_owned(),
        })?;
    GoVersion::parse(&raw).ok_or_else(|| UprobeError::GoVersion {
        path: image.path.to_owned(),
        version: raw,
    })
}
