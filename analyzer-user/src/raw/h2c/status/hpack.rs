//! An HPACK decoder (RFC 7541) that keeps only what reading statuses needs: the dynamic
//! table, and each field of a block handed to a callback as borrowed bytes.
//!
//! It follows loona-hpack 0.4.3's decoder, which the analyzer used before, rule for rule
//! (its tests check the two agree, field by field, on random and mutated blocks): fields
//! are opaque octets, never checked as HTTP; a dynamic table size update may come
//! anywhere in a block but not last; integers take at most 5 octets. What differs is the
//! cost: loona-hpack builds its Huffman decoder, a `HashMap` of the 257 codes, anew for
//! every Huffman-coded string, and copies every string; this one decodes with tables built
//! once ([`huffman`]), borrows raw strings from the block, and decodes Huffman strings
//! into two buffers it keeps.
use std::collections::VecDeque;

mod huffman;
#[cfg(test)]
mod tests;

pub use huffman::HuffmanError;

/// Why a header block does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("index {index} is past the table's end (section 2.3.3)")]
    IndexOutOfBounds { index: usize },
    #[error("an integer runs past the block's end (section 5.1)")]
    IntegerTruncated,
    #[error("an integer takes more than 5 octets (section 5.1)")]
    IntegerTooLong,
    #[error("a string runs past the block's end (section 5.2)")]
    StringTruncated,
    #[error(transparent)]
    Huffman(#[from] HuffmanError),
    #[error("a table size update to {size} bytes, over the {max_bytes} followed (section 6.3)")]
    TableSizeOverMax { size: usize, max_bytes: usize },
    #[error("the block ends with a table size update (section 4.2)")]
    SizeUpdateAtEnd,
}

/// The size an entry counts for in the dynamic table (RFC 7541 section 4.1).
const ENTRY_OVERHEAD_BYTES: usize = 32;
/// The dynamic table's size until the first update (RFC 9113 section 6.5.2: the initial
/// SETTINGS_HEADER_TABLE_SIZE).
pub const INITIAL_TABLE_BYTES: usize = 4096;

/// The decoding state of one direction.
#[derive(Debug)]
pub struct Decoder {
    table: DynamicTable,
    /// The largest size update accepted.
    max_table_bytes: usize,
    /// Huffman-decoded names and values of the field being decoded.
    name_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl Decoder {
    /// A decoder with an empty table of [`INITIAL_TABLE_BYTES`], which size updates may
    /// grow up to `max_table_bytes`.
    pub fn new(max_table_bytes: usize) -> Self {
        Decoder {
            table: DynamicTable {
                entries: VecDeque::new(),
                size: 0,
                max_size: INITIAL_TABLE_BYTES,
            },
            max_table_bytes,
            name_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    /// Decodes one whole header block (RFC 7541 section 3), calling `on_field` with each
    /// field's name and value in order. On an error the table may hold part of the
    /// block's changes: the caller must not decode further blocks.
    pub fn decode(
        &mut self,
        block: &[u8],
        mut on_field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let mut at = 0;
        let mut last_was_size_update = false;
        while let Some(&first) = block.get(at) {
            let rest = &block[at..];
            last_was_size_update = false;
            at += if first & 0x80 != 0 {
                // Indexed header field (section 6.1).
                let (index, len) = integer(rest, 7)?;
                let (name, value) = self.table.get(index)?;
                on_field(name, value);
                len
            } else if first & 0x40 != 0 {
                // Literal with incremental indexing (section 6.2.1).
                self.literal(rest, 6, true, &mut on_field)?
            } else if first & 0x20 != 0 {
                // Dynamic table size update (section 6.3).
                last_was_size_update = true;
                let (size, len) = integer(rest, 5)?;
                if size > self.max_table_bytes {
                    return Err(HpackError::TableSizeOverMax {
                        size,
                        max_bytes: self.max_table_bytes,
                    });
                }
                self.table.set_max_size(size);
                len
            } else {
                // Literal without indexing (0000) or never indexed (0001): sections
                // 6.2.2 and 6.2.3, the same to a decoder.
                self.literal(rest, 4, false, &mut on_field)?
            };
        }
        if last_was_size_update {
            return Err(HpackError::SizeUpdateAtEnd);
        }
        Ok(())
    }

    /// Decodes the literal field at the start of `rest` (RFC 7541 section 6.2), whose
    /// name index has a `prefix`-bit prefix; returns its length in octets.
    fn literal(
        &mut self,
        rest: &[u8],
        prefix: u8,
        index: bool,
        on_field: &mut impl FnMut(&[u8], &[u8]),
    ) -> Result<usize, HpackError> {
        let Decoder {
            table,
            name_buf,
            value_buf,
            ..
        } = self;
        let (name_index, mut len) = integer(rest, prefix)?;
        let name = if name_index == 0 {
            let (name, name_len) = string(&rest[len..], name_buf)?;
            len += name_len;
            name
        } else {
            table.get(name_index)?.0
        };
        let (value, value_len) = string(&rest[len..], value_buf)?;
        len += value_len;
        on_field(name, value);
        if index {
            let entry = Entry::new(name, value);
            table.insert(entry);
        }
        Ok(len)
    }
}

/// The integer at the start of `buf` with a `prefix`-bit prefix (RFC 7541 section 5.1),
/// and its length in octets. As in loona-hpack, an integer may take 5 octets at most,
/// so its value stays under 2^28 + 2^8.
fn integer(buf: &[u8], prefix: u8) -> Result<(usize, usize), HpackError> {
    const MAX_OCTETS: usize = 5;
    let mask = (1u16 << prefix) - 1;
    let first = buf.first().ok_or(HpackError::IntegerTruncated)?;
    let mut value = usize::from(u16::from(*first) & mask);
    if value < usize::from(mask) {
        return Ok((value, 1));
    }
    for (i, &b) in buf.iter().enumerate().skip(1) {
        value += usize::from(b & 0x7f) << (7 * (i - 1));
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
        if i + 1 == MAX_OCTETS {
            return Err(HpackError::IntegerTooLong);
        }
    }
    Err(HpackError::IntegerTruncated)
}

/// The string literal at the start of `buf` (RFC 7541 section 5.2) and its length in
/// octets: borrowed from `buf` when raw, decoded into `scratch` when Huffman-coded.
fn string<'a>(buf: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<(&'a [u8], usize), HpackError> {
    let (len, prefix_len) = integer(buf, 7)?;
    let coded = buf
        .get(prefix_len..prefix_len + len)
        .ok_or(HpackError::StringTruncated)?;
    if buf[0] & 0x80 == 0 {
        return Ok((coded, prefix_len + len));
    }
    scratch.clear();
    huffman::decode(coded, scratch)?;
    Ok((scratch, prefix_len + len))
}

/// One dynamic table entry: name and value in one allocation.
#[derive(Debug)]
struct Entry {
    bytes: Box<[u8]>,
    name_len: usize,
}

impl Entry {
    fn new(name: &[u8], value: &[u8]) -> Self {
        Entry {
            bytes: [name, value].concat().into_boxed_slice(),
            name_len: name.len(),
        }
    }

    fn field(&self) -> (&[u8], &[u8]) {
        self.bytes.split_at(self.name_len)
    }

    fn size(&self) -> usize {
        self.bytes.len() + ENTRY_OVERHEAD_BYTES
    }
}

/// The dynamic table (RFC 7541 section 2.3.2): newest entry first.
#[derive(Debug)]
struct DynamicTable {
    entries: VecDeque<Entry>,
    /// The sum of the entries' sizes (section 4.1).
    size: usize,
    max_size: usize,
}

impl DynamicTable {
    /// The field at `index` of the one index space: the static table at 1-61, then the
    /// dynamic table (section 2.3.3).
    fn get(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        let dynamic = index.checked_sub(STATIC_TABLE.len() + 1);
        match (index, dynamic) {
            (0, _) => None,
            (_, None) => STATIC_TABLE.get(index - 1).copied(),
            (_, Some(i)) => self.entries.get(i).map(Entry::field),
        }
        .ok_or(HpackError::IndexOutOfBounds { index })
    }

    /// Adds `entry`, evicting the oldest entries until the table fits (section 4.4): an
    /// entry larger than the table empties it and is not kept.
    fn insert(&mut self, entry: Entry) {
        self.size += entry.size();
        self.entries.push_front(entry);
        self.evict();
    }

    /// Section 4.3: a smaller maximum evicts entries.
    fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict();
    }

    fn evict(&mut self) {
        while self.size > self.max_size {
            let Some(oldest) = self.entries.pop_back() else {
                break;
            };
            self.size -= oldest.size();
        }
    }
}

/// RFC 7541 Appendix A.
static STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];
