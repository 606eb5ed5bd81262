//! Go's pc-line table (`.gopclntab`): the runtime's own map from program counters to
//! functions, kept in every Go binary because tracebacks and the garbage collector need
//! it, so it survives `go build -ldflags '-s -w'` (which drops `.symtab` and DWARF).
//! From it: each function's name, entry PC and end PC.
//!
//! Layouts, as Go's own reader has them (src/debug/gosym/pclntab.go, `parsePclnTab`, and
//! src/runtime/symtab.go, `pcHeader`): a header of magic (4 bytes), two zero bytes, the
//! instruction quantum and the pointer size, then pointer-sized words:
//! - 1.18 (`0xfffffff0`, also 1.19) and 1.20+ (`0xfffffff1`): `nfunc, nfiles, textStart,
//!   funcnameOffset, cuOffset, filetabOffset, pctabOffset, pclnOffset`. The function
//!   table at `pclnOffset` is `nfunc + 1` pairs of u32 `(entryoff, funcoff)`, entry PCs
//!   relative to `textStart`; `funcoff` is relative to `pclnOffset` and points at a
//!   `_func` whose second u32 is the name's offset into the name table.
//! - 1.16 (`0xfffffffa`): `nfunc, nfiles, funcnameOffset, cuOffset, filetabOffset,
//!   pctabOffset, pclnOffset`; pairs of pointer-sized `(entry, funcoff)`, absolute PCs;
//!   `_func` starts with a pointer-sized entry, then the u32 name offset.
//! - 1.2 (`0xfffffffb`, Go 1.2 to 1.15): `nfunc`, then the pairs right after it; names
//!   and `_func`s are at offsets from the table's start.
//!
//! A function ends where the next one in the table begins (the last pair's PC is the end
//! of the text); the gap holds the linker's INT3 padding.
use thiserror::Error;

/// The magic numbers, by the Go release that introduced each layout.
pub const GO12_MAGIC: u32 = 0xffff_fffb;
pub const GO116_MAGIC: u32 = 0xffff_fffa;
pub const GO118_MAGIC: u32 = 0xffff_fff0;
pub const GO120_MAGIC: u32 = 0xffff_fff1;

/// Which layout a table has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PclnVersion {
    Go12,
    Go116,
    Go118,
    Go120,
}

impl PclnVersion {
    fn from_magic(magic: u32) -> Option<Self> {
        match magic {
            GO12_MAGIC => Some(Self::Go12),
            GO116_MAGIC => Some(Self::Go116),
            GO118_MAGIC => Some(Self::Go118),
            GO120_MAGIC => Some(Self::Go120),
            _ => None,
        }
    }

    /// 1.18 made entry PCs u32 offsets from `textStart`.
    fn relative_pcs(self) -> bool {
        matches!(self, Self::Go118 | Self::Go120)
    }
}

/// Why a table could not be read.
#[derive(Debug, Error)]
pub enum PclnError {
    #[error("unknown magic {0:#010x}")]
    Magic(u32),
    #[error("bad header: {0}")]
    Header(&'static str),
    #[error("{what} at offset {offset:#x} is past the table's end ({len:#x} bytes)")]
    OutOfBounds {
        what: &'static str,
        offset: u64,
        len: usize,
    },
    #[error("function name at offset {0:#x} is not NUL-terminated UTF-8")]
    Name(u64),
    #[error("the table's text start is 0 and there is no .text section to take it from")]
    NoTextStart,
}

/// One function of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoFunc<'a> {
    /// The symbol name, as `go tool nm` prints it: `crypto/tls.(*Conn).Write`.
    pub name: &'a str,
    /// Virtual address of the first instruction.
    pub entry: u64,
    /// Virtual address just past the function (the next function's entry).
    pub end: u64,
}

/// A parsed table, borrowing the section's bytes.
#[derive(Debug, Clone)]
pub struct PclnTab<'a> {
    data: &'a [u8],
    version: PclnVersion,
    big_endian: bool,
    ptr_size: usize,
    nfunc: usize,
    /// Added to every entry PC: `textStart` for 1.18+, 0 before (absolute PCs).
    text_start: u64,
    funcnametab: usize,
    functab: usize,
    funcdata: usize,
}

impl<'a> PclnTab<'a> {
    /// Reads the header of the table starting at `data[0]`. `text_section` is the `.text`
    /// address, used for 1.18+ when the header's `textStart` is 0 (an unrelocated
    /// position-independent build; Go's debug/gosym always uses `.text`, the runtime
    /// uses the header).
    pub fn parse(data: &'a [u8], text_section: Option<u64>) -> Result<Self, PclnError> {
        let head: [u8; 8] = data
            .get(..8)
            .and_then(|h| h.try_into().ok())
            .ok_or(PclnError::Header("shorter than the 8-byte header"))?;
        let le = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let be = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let (version, big_endian) = match (PclnVersion::from_magic(le), PclnVersion::from_magic(be))
        {
            (Some(v), _) => (v, false),
            (None, Some(v)) => (v, true),
            (None, None) => return Err(PclnError::Magic(le)),
        };
        if head[4] != 0 || head[5] != 0 {
            return Err(PclnError::Header("bytes 4 and 5 are not zero"));
        }
        if ![1, 2, 4].contains(&head[6]) {
            return Err(PclnError::Header("instruction quantum is not 1, 2 or 4"));
        }
        if ![4, 8].contains(&head[7]) {
            return Err(PclnError::Header("pointer size is not 4 or 8"));
        }
        let mut t = Self {
            data,
            version,
            big_endian,
            ptr_size: usize::from(head[7]),
            nfunc: 0,
            text_start: 0,
            funcnametab: 0,
            functab: 0,
            funcdata: 0,
        };
        t.read_offsets(text_section)?;
        Ok(t)
    }

    /// Fills the counts and offsets from the header words, then checks they fit.
    fn read_offsets(&mut self, text_section: Option<u64>) -> Result<(), PclnError> {
        let word = |t: &Self, i: usize| {
            t.uint(8 + i * t.ptr_size, t.ptr_size, "header word")
                .and_then(|v| t.offset(v))
        };
        self.nfunc = word(self, 0)?;
        match self.version {
            PclnVersion::Go118 | PclnVersion::Go120 => {
                let text_start = self.uint(8 + 2 * self.ptr_size, self.ptr_size, "textStart")?;
                self.text_start = match (text_start, text_section) {
                    (0, Some(t)) => t,
                    (0, None) => return Err(PclnError::NoTextStart),
                    (t, _) => t,
                };
                self.funcnametab = word(self, 3)?;
                self.functab = word(self, 7)?;
                self.funcdata = self.functab;
            }
            PclnVersion::Go116 => {
                self.funcnametab = word(self, 2)?;
                self.functab = word(self, 6)?;
                self.funcdata = self.functab;
            }
            PclnVersion::Go12 => self.functab = 8 + self.ptr_size,
        }
        if self.nfunc == 0 {
            return Err(PclnError::Header("no functions"));
        }
        let table_len = (2 * self.nfunc + 1)
            .checked_mul(self.field_size())
            .ok_or(PclnError::Header("function count overflows"))?;
        self.offset((self.functab + table_len) as u64)?;
        self.offset(self.funcnametab as u64)?;
        Ok(())
    }

    pub fn version(&self) -> PclnVersion {
        self.version
    }

    /// How many functions the table lists.
    pub fn len(&self) -> usize {
        self.nfunc
    }

    pub fn is_empty(&self) -> bool {
        self.nfunc == 0
    }

    /// The `i`th function, in address order.
    pub fn func(&self, i: usize) -> Result<GoFunc<'a>, PclnError> {
        let name_off = self.name_offset(i)?;
        let name = self.name_bytes(name_off)?;
        let name = std::str::from_utf8(name).map_err(|_| PclnError::Name(name_off as u64))?;
        Ok(GoFunc {
            name,
            entry: self.pc(i)?,
            end: self.pc(i + 1)?,
        })
    }

    /// Every function, in address order.
    pub fn funcs(&self) -> impl Iterator<Item = Result<GoFunc<'a>, PclnError>> + '_ {
        (0..self.nfunc).map(|i| self.func(i))
    }

    /// The function named `name` (the name as `go tool nm` prints it), if present.
    pub fn find(&self, name: &str) -> Result<Option<GoFunc<'a>>, PclnError> {
        for i in 0..self.nfunc {
            // Compare bytes first: one odd name elsewhere must not fail the lookup.
            if self.name_bytes(self.name_offset(i)?)? == name.as_bytes() {
                return self.func(i).map(Some);
            }
        }
        Ok(None)
    }

    /// Bytes of each functab field: u32 offsets since 1.18, pointers before.
    fn field_size(&self) -> usize {
        if self.version.relative_pcs() {
            4
        } else {
            self.ptr_size
        }
    }

    /// The entry PC of function `i` (`i == nfunc` gives the end of the last one).
    fn pc(&self, i: usize) -> Result<u64, PclnError> {
        let size = self.field_size();
        let raw = self.uint(self.functab + 2 * i * size, size, "function table entry")?;
        Ok(raw.wrapping_add(self.text_start))
    }

    /// Where function `i`'s name is, as an offset into the table's bytes.
    fn name_offset(&self, i: usize) -> Result<usize, PclnError> {
        let size = self.field_size();
        let funcoff = self.uint(self.functab + (2 * i + 1) * size, size, "function offset")?;
        let func = self.funcdata + self.offset(funcoff)?;
        // `_func` starts with the entry (u32 since 1.18, a pointer before), then nameOff.
        let entry_size = if self.version.relative_pcs() {
            4
        } else {
            self.ptr_size
        };
        let nameoff = self.uint(func + entry_size, 4, "function name offset")?;
        Ok(self.funcnametab + self.offset(nameoff)?)
    }

    fn name_bytes(&self, at: usize) -> Result<&'a [u8], PclnError> {
        let rest = self.data.get(at..).ok_or(PclnError::Name(at as u64))?;
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(PclnError::Name(at as u64))?;
        Ok(&rest[..len])
    }

    /// `v` as an offset into the table, checked to lie inside it.
    fn offset(&self, v: u64) -> Result<usize, PclnError> {
        usize::try_from(v)
            .ok()
            .filter(|&o| o <= self.data.len())
            .ok_or(PclnError::OutOfBounds {
                what: "offset",
                offset: v,
                len: self.data.len(),
            })
    }

    /// The unsigned integer of `size` bytes (4 or 8) at `at`, in the table's byte order.
    fn uint(&self, at: usize, size: usize, what: &'static str) -> Result<u64, PclnError> {
        let bytes = at
            .checked_add(size)
            .and_then(|end| self.data.get(at..end))
            .ok_or(PclnError::OutOfBounds {
                what,
                offset: at as u64,
                len: self.data.len(),
            })?;
        let mut buf = [0u8; 8];
        if self.big_endian {
            buf[8 - size..].copy_from_slice(bytes);
            Ok(u64::from_be_bytes(buf))
        } else {
            buf[..size].copy_from_slice(bytes);
            Ok(u64::from_le_bytes(buf))
        }
    }
}

/// Finds a table inside `data` (a segment's bytes) when the section headers are gone:
/// the first 4-byte-aligned position holding a magic that parses and that `accept` (the
/// caller's check that the PCs land in code) agrees with. The linker aligns the table to
/// at least 4 bytes.
pub fn scan<'a>(
    data: &'a [u8],
    text_section: Option<u64>,
    accept: impl Fn(&PclnTab<'a>) -> bool,
) -> Option<PclnTab<'a>> {
    (0..data.len().saturating_sub(8))
        .step_by(4)
        .filter(|&i| {
            let m = [data[i], data[i + 1], data[i + 2], data[i + 3]];
            data[i + 4] == 0
                && data[i + 5] == 0
                && (PclnVersion::from_magic(u32::from_le_bytes(m)).is_some()
                    || PclnVersion::from_magic(u32::from_be_bytes(m)).is_some())
        })
        .filter_map(|i| PclnTab::parse(&data[i..], text_section).ok())
        .find(|t| t.func(0).is_ok() && accept(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic little-endian table of `version` with `funcs` (name, entry PC) and the
    /// text ending at `end`, laid out as the Go linker lays it out.
    fn table(version: PclnVersion, text_start: u64, funcs: &[(&str, u64)], end: u64) -> Vec<u8> {
        let magic = match version {
            PclnVersion::Go12 => GO12_MAGIC,
            PclnVersion::Go116 => GO116_MAGIC,
            PclnVersion::Go118 => GO118_MAGIC,
            PclnVersion::Go120 => GO120_MAGIC,
        };
        let header_words = match version {
            PclnVersion::Go12 => 1,
            PclnVersion::Go116 => 7,
            _ => 8,
        };
        let relative = version.relative_pcs();
        let field = if relative { 4 } else { 8 };
        let mut names = Vec::new();
        let mut name_offs = Vec::new();
        for (name, _) in funcs {
            name_offs.push(names.len() as u64);
            names.extend_from_slice(name.as_bytes());
            names.push(0);
        }
        let header_len = 8 + 8 * header_words;
        let func_size = 16;
        let functab_len = (2 * funcs.len() + 1) * field;
        // 1.2 has the function table right after the header, the names after the
        // `_func`s, and every offset from the table's start; later layouts have the names
        // first and offsets from the name table and the function table.
        let (names_at, functab_at, funcs_at, func_base, name_base) = match version {
            PclnVersion::Go12 => {
                let funcs_at = header_len + functab_len;
                let names_at = funcs_at + funcs.len() * func_size;
                (names_at, header_len, funcs_at, 0, names_at as u64)
            }
            _ => {
                let functab_at = (header_len + names.len()).next_multiple_of(8);
                let funcs_at = functab_at + functab_len;
                (header_len, functab_at, funcs_at, functab_at as u64, 0)
            }
        };
        let mut out = vec![0u8; (funcs_at + funcs.len() * func_size).max(names_at + names.len())];
        out[..4].copy_from_slice(&magic.to_le_bytes());
        out[6] = 1;
        out[7] = 8;
        let mut put = |at: usize, v: u64, size: usize| {
            out[at..at + size].copy_from_slice(&v.to_le_bytes()[..size]);
        };
        put(8, funcs.len() as u64, 8);
        match version {
            PclnVersion::Go12 => {}
            PclnVersion::Go116 => {
                put(8 + 2 * 8, names_at as u64, 8);
                put(8 + 6 * 8, functab_at as u64, 8);
            }
            _ => {
                put(8 + 2 * 8, text_start, 8);
                put(8 + 3 * 8, names_at as u64, 8);
                put(8 + 7 * 8, functab_at as u64, 8);
            }
        }
        let pc = |v: u64| if relative { v - text_start } else { v };
        for (i, (_, entry)) in funcs.iter().enumerate() {
            let func = funcs_at + i * func_size;
            put(functab_at + 2 * i * field, pc(*entry), field);
            put(
                functab_at + (2 * i + 1) * field,
                func as u64 - func_base,
                field,
            );
            put(func, pc(*entry), field);
            put(func + field, name_offs[i] + name_base, 4);
        }
        put(functab_at + 2 * funcs.len() * field, pc(end), field);
        out[names_at..names_at + names.len()].copy_from_slice(&names);
        out
    }

    const FUNCS: &[(&str, u64)] = &[
        ("runtime.main", 0x40_1000),
        ("crypto/tls.(*Conn).Write", 0x40_1040),
        ("crypto/tls.(*Conn).Read", 0x40_1100),
    ];

    #[test]
    fn every_layout_gives_names_entries_and_ends() {
        for version in [
            PclnVersion::Go12,
            PclnVersion::Go116,
            PclnVersion::Go118,
            PclnVersion::Go120,
        ] {
            let data = table(version, 0x40_1000, FUNCS, 0x40_1180);
            let t = PclnTab::parse(&data, None).unwrap();
            assert_eq!(t.version(), version);
            assert_eq!(t.len(), 3);
            let write = t.find("crypto/tls.(*Conn).Write").unwrap().unwrap();
            assert_eq!(
                (write.entry, write.end),
                (0x40_1040, 0x40_1100),
                "{version:?}"
            );
            let read = t.find("crypto/tls.(*Conn).Read").unwrap().unwrap();
            assert_eq!(
                (read.entry, read.end),
                (0x40_1100, 0x40_1180),
                "{version:?}"
            );
            assert_eq!(t.find("crypto/tls.(*Conn).Close").unwrap(), None);
            let names: Vec<_> = t.funcs().map(|f| f.unwrap().name).collect();
            assert_eq!(
                names,
                [
                    "runtime.main",
                    "crypto/tls.(*Conn).Write",
                    "crypto/tls.(*Conn).Read"
                ]
            );
        }
    }

    #[test]
    fn zero_text_start_takes_the_text_section() {
        let mut data = table(PclnVersion::Go118, 0x1000, FUNCS, 0x40_1180);
        data[24..32].fill(0);
        assert!(matches!(
            PclnTab::parse(&data, None),
            Err(PclnError::NoTextStart)
        ));
        let t = PclnTab::parse(&data, Some(0x40_0000)).unwrap();
        assert_eq!(t.func(0).unwrap().entry, 0x40_0000 + 0x40_1000 - 0x1000);
    }

    #[test]
    fn bad_headers_and_truncation_are_errors_not_panics() {
        let data = table(PclnVersion::Go118, 0x40_1000, FUNCS, 0x40_1180);
        assert!(matches!(
            PclnTab::parse(&data[..6], None),
            Err(PclnError::Header(_))
        ));
        let mut bad = data.clone();
        bad[0] = 0;
        assert!(matches!(
            PclnTab::parse(&bad, None),
            Err(PclnError::Magic(_))
        ));
        let mut bad = data.clone();
        bad[7] = 3;
        assert!(matches!(
            PclnTab::parse(&bad, None),
            Err(PclnError::Header(_))
        ));
        for cut in 8..data.len() {
            if let Ok(t) = PclnTab::parse(&data[..cut], None) {
                let _ = t.find("crypto/tls.(*Conn).Read");
                let _ = t.funcs().count();
            }
        }
    }

    #[test]
    fn scan_finds_a_table_after_other_bytes() {
        let data = table(PclnVersion::Go120, 0x40_1000, FUNCS, 0x40_1180);
        let mut segment = vec![0xffu8; 64];
        segment.extend_from_slice(&data);
        let t = scan(&segment, None, |t| {
            t.func(0).is_ok_and(|f| f.entry == 0x40_1000)
        })
        .unwrap();
        assert_eq!(t.len(), 3);
        assert!(scan(&segment, None, |_| false).is_none());
    }
}
