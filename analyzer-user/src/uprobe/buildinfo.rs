//! The Go version a binary was built with, from its build info blob (`.go.buildinfo`),
//! which stripping keeps: the kernel side picks struct offsets and the calling
//! convention by version.
//!
//! Format, as Go's reader has it (src/debug/buildinfo/buildinfo.go, `readRawBuildInfo`):
//! a 32-byte header aligned to 16 bytes, starting with the 14-byte magic
//! `"\xff Go buildinf:"`, then the pointer size and a flags byte. With flag bit 2 (Go
//! 1.18+) the version and module strings follow the header inline, each prefixed with
//! its length as a uvarint. Before, bit 1 gave the byte order and bytes 16.. held two
//! pointers, each to a Go string header `(data pointer, length)`: `runtime.buildVersion`
//! then `runtime.modinfo`.

/// The header's magic.
pub const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const HEADER_LEN: usize = 32;
const ALIGN: usize = 16;
const FLAG_BIG_ENDIAN: u8 = 1;
const FLAG_INLINE_STRINGS: u8 = 2;

/// A Go release, parsed from the version string the toolchain stamps (`go1.19.8`,
/// `go1.21rc2`, `go1.22.0 X:boringcrypto`, `devel go1.23-abcdef`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoVersion {
    /// The string as stamped.
    pub raw: String,
    pub major: u32,
    pub minor: u32,
    /// 0 for `go1.20`, a release candidate or a development build.
    pub patch: u32,
}

impl GoVersion {
    /// `None` when `raw` is not `go<major>.<minor>...` (after an optional `devel `).
    pub fn parse(raw: &str) -> Option<Self> {
        let rest = raw
            .strip_prefix("devel ")
            .unwrap_or(raw)
            .strip_prefix("go")?;
        let mut numbers = rest.split('.').map(|part| {
            let digits = part.len() - part.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            part[..digits].parse::<u32>().ok()
        });
        let major = numbers.next()??;
        let minor = numbers.next()??;
        let patch = numbers.next().flatten().unwrap_or(0);
        Some(Self {
            raw: raw.to_owned(),
            major,
            minor,
            patch,
        })
    }

    /// Whether this release is `major.minor` or later.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// Whether Go code of this release takes its arguments in registers on x86-64
    /// (ABIInternal, Go 1.17; arm64 followed in 1.18). Before, everything was on the
    /// stack and the register facts of the kernel side do not hold.
    pub fn register_abi_x86_64(&self) -> bool {
        self.at_least(1, 17)
    }
}

/// The version string in the build info blob at the start of `data` (or at the first
/// 16-byte-aligned magic in it: without a `.go.buildinfo` section the blob is near the
/// start of the data segment). `read` returns `len` bytes at a virtual address, for the
/// pre-1.18 pointer form.
pub fn version<'d>(data: &'d [u8], read: impl Fn(u64, u64) -> Option<&'d [u8]>) -> Option<String> {
    let start = (0..data.len())
        .step_by(ALIGN)
        .find(|&i| data[i..].starts_with(MAGIC))?;
    let blob = data.get(start..start + HEADER_LEN)?;
    let ptr_size = usize::from(blob[14]);
    let flags = blob[15];
    if flags & FLAG_INLINE_STRINGS != 0 {
        let (len, used) = uvarint(data.get(start + HEADER_LEN..)?)?;
        let at = start + HEADER_LEN + used;
        let bytes = data.get(at..at.checked_add(usize::try_from(len).ok()?)?)?;
        return String::from_utf8(bytes.to_vec())
            .ok()
            .filter(|v| !v.is_empty());
    }
    let big_endian = flags & FLAG_BIG_ENDIAN != 0;
    let pointer = |bytes: &[u8]| -> Option<u64> {
        let mut buf = [0u8; 8];
        match (ptr_size, big_endian) {
            (4 | 8, false) => buf[..ptr_size].copy_from_slice(bytes.get(..ptr_size)?),
            (4 | 8, true) => buf[8 - ptr_size..].copy_from_slice(bytes.get(..ptr_size)?),
            _ => return None,
        }
        Some(if big_endian {
            u64::from_be_bytes(buf)
        } else {
            u64::from_le_bytes(buf)
        })
    };
    let header_addr = pointer(&blob[16..])?;
    let header = read(header_addr, 2 * ptr_size as u64)?;
    let (str_addr, str_len) = (pointer(header)?, pointer(&header[ptr_size..])?);
    let bytes = read(str_addr, str_len)?;
    String::from_utf8(bytes.to_vec())
        .ok()
        .filter(|v| !v.is_empty())
}

/// A uvarint (encoding/binary): the value and how many bytes it took.
fn uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(flags: u8) -> Vec<u8> {
        let mut h = MAGIC.to_vec();
        h.extend_from_slice(&[8, flags]);
        h.resize(HEADER_LEN, 0);
        h
    }

    #[test]
    fn inline_strings_of_go_1_18_and_later() {
        let mut data = vec![0u8; 16];
        data.extend(header(FLAG_INLINE_STRINGS));
        data.push(8);
        data.extend_from_slice(b"go1.19.8");
        data.extend_from_slice(&[3, b'm', b'o', b'd']);
        assert_eq!(version(&data, |_, _| None).as_deref(), Some("go1.19.8"));
        // A magic off the 16-byte alignment is not a header.
        let mut shifted = vec![0u8; 4];
        shifted.extend_from_slice(&data[16..]);
        assert_eq!(version(&shifted, |_, _| None), None);
    }

    #[test]
    fn pointers_to_a_string_header_before_go_1_18() {
        let mut data = header(0);
        data[16..24].copy_from_slice(&0x1000u64.to_le_bytes());
        let mut memory = Vec::new();
        memory.extend_from_slice(&0x2000u64.to_le_bytes());
        memory.extend_from_slice(&9u64.to_le_bytes());
        let text = b"go1.16.15";
        let read = |addr: u64, len: u64| -> Option<&[u8]> {
            match addr {
                0x1000 => memory.get(..len as usize),
                0x2000 => text.get(..len as usize),
                _ => None,
            }
        };
        assert_eq!(version(&data, read).as_deref(), Some("go1.16.15"));
        assert_eq!(version(&data, |_, _| None), None);
    }

    #[test]
    fn truncated_blobs_give_none() {
        let mut data = header(FLAG_INLINE_STRINGS);
        data.push(0x80);
        assert_eq!(version(&data, |_, _| None), None);
        data.truncate(20);
        assert_eq!(version(&data, |_, _| None), None);
    }

    #[test]
    fn versions_parse() {
        let v = GoVersion::parse("go1.19.8").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 19, 8));
        assert!(v.at_least(1, 17) && v.register_abi_x86_64() && !v.at_least(1, 20));
        let v = GoVersion::parse("go1.21rc2").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 21, 0));
        let v = GoVersion::parse("go1.22.0 X:boringcrypto").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 22, 0));
        let v = GoVersion::parse("devel go1.23-abcdef Tue").unwrap();
        assert_eq!((v.major, v.minor), (1, 23));
        assert!(!GoVersion::parse("go1.16").unwrap().register_abi_x86_64());
        assert_eq!(GoVersion::parse("1.19"), None);
        assert_eq!(GoVersion::parse("go"), None);
    }
}
