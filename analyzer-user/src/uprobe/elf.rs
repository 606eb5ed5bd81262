//! ELF mechanics shared by the OpenSSL and Go finders: read a file once, translate a
//! virtual address to the file offset a uprobe is attached at (through the `PT_LOAD`
//! program header that maps it), and look up symbols, sections and segments.
//!
//! The kernel attaches a uprobe at an offset into the file (`uprobe_events`' `PATH:OFFSET`,
//! Documentation/trace/uprobetracer.rst), not at a virtual address: for a symbol at
//! virtual address `v` inside a `PT_LOAD` with `p_vaddr`/`p_offset`, the offset is
//! `v - p_vaddr + p_offset`. Program headers are used rather than section headers
//! because a loaded file always has them; section headers may be stripped.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SegmentFlags};

use super::error::UprobeError;

/// Where a symbol of a file lies, as a uprobe needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymbolOffset {
    /// The symbol's value: its link-time virtual address.
    pub vaddr: u64,
    /// The offset into the file to attach the uprobe at.
    pub file_offset: u64,
    /// Whether the `PT_LOAD` holding it is executable (`PF_X`): a uprobe on code needs it.
    pub executable: bool,
}

/// The defined symbols among `names` in `path`'s `.dynsym` and `.symtab` (when present),
/// each with its file offset; names the file does not define are absent from the map.
pub fn symbol_offsets(
    path: &Path,
    names: &[&str],
) -> Result<BTreeMap<String, SymbolOffset>, UprobeError> {
    let data = read(path)?;
    let image = Image::parse(path, &data)?;
    let mut out = BTreeMap::new();
    for (name, vaddr) in image.symbol_vaddrs(names) {
        let mapped = image
            .locate(vaddr)
            .ok_or_else(|| image.not_mapped(&name, vaddr))?;
        out.insert(
            name,
            SymbolOffset {
                vaddr,
                file_offset: mapped.file_offset,
                executable: mapped.executable,
            },
        );
    }
    Ok(out)
}

/// The whole file, read once: every finder borrows from this buffer.
pub(super) fn read(path: &Path) -> Result<Vec<u8>, UprobeError> {
    std::fs::read(path).map_err(|source| UprobeError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Where a virtual address lies in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mapped {
    pub file_offset: u64,
    pub executable: bool,
}

/// One loadable segment (`PT_LOAD`): its address, the bytes the file holds for it, and
/// its permissions.
#[derive(Debug, Clone, Copy)]
pub(super) struct Segment<'d> {
    pub vaddr: u64,
    pub bytes: &'d [u8],
    pub executable: bool,
    pub writable: bool,
}

/// A parsed ELF file and the path it came from (for errors).
#[derive(Debug)]
pub(super) struct Image<'d> {
    pub path: &'d Path,
    pub file: object::File<'d>,
}

impl<'d> Image<'d> {
    pub fn parse(path: &'d Path, data: &'d [u8]) -> Result<Self, UprobeError> {
        let file = object::File::parse(data).map_err(|source| UprobeError::Elf {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self { path, file })
    }

    /// The error for an address no segment maps.
    pub fn not_mapped(&self, what: &str, vaddr: u64) -> UprobeError {
        UprobeError::NotMapped {
            path: self.path.to_owned(),
            what: what.to_owned(),
            vaddr,
        }
    }

    /// The loadable segments, in program header order.
    pub fn segments(&self) -> impl Iterator<Item = Segment<'d>> + '_ {
        self.file.segments().filter_map(|s| {
            let (executable, writable) = match s.flags() {
                SegmentFlags::Elf { p_flags } => (
                    p_flags & object::elf::PF_X != 0,
                    p_flags & object::elf::PF_W != 0,
                ),
                _ => (false, false),
            };
            Some(Segment {
                vaddr: s.address(),
                bytes: s.data().ok()?,
                executable,
                writable,
            })
        })
    }

    /// Where `vaddr` lies in the file: inside the file-backed part of a `PT_LOAD`
    /// (`p_filesz`, not `p_memsz`: `.bss` has no bytes to probe).
    pub fn locate(&self, vaddr: u64) -> Option<Mapped> {
        self.file.segments().find_map(|s| {
            let (offset, file_size) = s.file_range();
            let delta = vaddr.checked_sub(s.address())?;
            (delta < file_size).then(|| Mapped {
                file_offset: offset + delta,
                executable: matches!(s.flags(), SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0),
            })
        })
    }

    /// `len` bytes of the file mapped from `vaddr` on, when one segment holds them all.
    pub fn bytes_at(&self, vaddr: u64, len: u64) -> Option<&'d [u8]> {
        self.segments().find_map(|s| {
            let start = usize::try_from(vaddr.checked_sub(s.vaddr)?).ok()?;
            let end = start.checked_add(usize::try_from(len).ok()?)?;
            s.bytes.get(start..end)
        })
    }

    /// The address and bytes of the first section present among `names`.
    pub fn section(&self, names: &[&str]) -> Option<(u64, &'d [u8])> {
        names.iter().find_map(|name| {
            let s = self.file.section_by_name(name)?;
            Some((s.address(), s.data().ok()?))
        })
    }

    /// The virtual address of each defined symbol among `names`, from `.dynsym` then
    /// `.symtab` (the first definition wins). Versioned names (`SSL_write@@OPENSSL_3.0.0`)
    /// match their bare name: the version lives in `.gnu.version`, not in the name.
    pub fn symbol_vaddrs(&self, names: &[&str]) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for sym in self.file.dynamic_symbols().chain(self.file.symbols()) {
            if !sym.is_definition() {
                continue;
            }
            let Ok(name) = sym.name() else { continue };
            if names.contains(&name) && !out.contains_key(name) {
                out.insert(name.to_owned(), sym.address());
            }
        }
        out
    }
}

/// The directories searched for a shared library by file name, most specific first: the
/// Debian multiarch directories of this machine's architecture, then the generic ones
/// (the loader's defaults, ld.so(8)). `/etc/ld.so.cache` is not read; on Debian its
/// entries for system libraries are in these directories.
pub fn library_dirs() -> Vec<PathBuf> {
    let triplet = if cfg!(target_arch = "aarch64") {
        "aarch64-linux-gnu"
    } else {
        "x86_64-linux-gnu"
    };
    [
        format!("/usr/lib/{triplet}"),
        format!("/lib/{triplet}"),
        "/usr/local/lib".into(),
        "/usr/lib64".into(),
        "/lib64".into(),
        "/usr/lib".into(),
        "/lib".into(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

/// The first `dirs/name` that is a file.
pub fn find_library_in(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// The path of the shared library `name` (for example `libssl.so.3`) in
/// [`library_dirs`].
pub fn find_library(name: &str) -> Result<PathBuf, UprobeError> {
    let dirs = library_dirs();
    find_library_in(&dirs, name).ok_or_else(|| UprobeError::LibraryNotFound {
        name: name.to_owned(),
        searched: dirs,
    })
}
