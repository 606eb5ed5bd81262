//! Response statuses of one server-to-client HTTP/2 direction: every header block of the
//! direction goes, in order, through one HPACK decoder (RFC 7541), and the `:status`
//! pseudo-header of each is read (RFC 9113 section 8.3.2).
//!
//! HPACK's dynamic table (RFC 7541 section 2.3.2) is built from every block before: once
//! one block is missed or does not decode, later ones may name entries this decoder never
//! saw. Then reading stops for the direction, and every later block counts as lost:
//! statuses are never guessed.
//!
//! The decoder is our own ([`hpack`]), for cost. loona-hpack 0.4.3, used before, builds a
//! `HashMap` of the 257 Huffman codes for every Huffman-coded string: with the full
//! capture of an h2load run that was about 70% of the analyzer's CPU, ~100 us per
//! response (BENCHMARKS.md, "HPACK status decoding"). No maintained crate serves instead
//! (checked 2026-12-07): `h2` 0.4.20 keeps its decoder (a static Huffman state table)
//! in a private module even with its `unstable` feature, which exposes only `frame`,
//! `proto` and `Codec`, and it checks every field as HTTP (a `:status` that is not a
//! status, an unknown pseudo-header or a bad header name fails the whole block, where a
//! fault analyzer must read past them); fluke-hpack is loona-hpack's own predecessor,
//! with the same per-string `HashMap`; `hpack` 0.3 is unmaintained, with a RustSec
//! advisory for a decoder that panics on input such as `[0x3f]`; httlib-hpack (last
//! release 2020) indexes past the end of a truncated integer. Decoding only needs
//! integers, strings, the two tables and the Huffman code (RFC 7541 sections 2-6,
//! Appendix B); [`hpack`] follows loona-hpack's rules exactly, its tests check the two
//! agree on random blocks, and so does the `hpack` fuzz target on statuses.
use std::fmt;

use hpack::Decoder;

mod hpack;

/// The largest dynamic table the decoder follows, in bytes (RFC 7541 section 4.1 size).
/// A server starts at 4096 (RFC 9113 section 6.5.2) and may grow it by a size update
/// (RFC 7541 section 6.3) up to the client's SETTINGS_HEADER_TABLE_SIZE: 65536 at most
/// in the clients we know (Chrome, Firefox; curl and Go keep 4096). The client's setting
/// is not read here: a conforming server announces every change in-band, and the update
/// alone says what the table holds. A larger update ends reading, as a lost block does.
pub const MAX_TABLE_BYTES: usize = 64 * 1024;

/// Why statuses stopped being read in a direction.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HpackLoss {
    #[error(
        "the header block on stream {stream_id} is {len_bytes} bytes, over the {max_bytes}-byte cap: it was not kept"
    )]
    TooLarge {
        stream_id: u32,
        len_bytes: u64,
        max_bytes: usize,
    },
    #[error("bytes of the header block on stream {stream_id} are missing from the capture")]
    Gap { stream_id: u32 },
    #[error("the header block on stream {stream_id} does not decode: {what} (RFC 7541)")]
    Decode { stream_id: u32, what: String },
}

/// What one header block said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockStatus {
    /// The block's `:status`, a number of three digits.
    Status(u16),
    /// Decoded, without a usable `:status`: trailers, a PUSH_PROMISE's request.
    NoStatus,
    /// Not decoded: the HPACK state is lost (by this block or one before).
    Lost,
}

/// The HPACK decoder of one direction, until its state is lost.
pub struct StatusReader {
    decoder: Option<Decoder>,
    lost: Option<HpackLoss>,
    /// The frame decoder's cap: longer blocks come without their bytes.
    max_block_bytes: usize,
}

impl fmt::Debug for StatusReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusReader")
            .field("decoding", &self.decoder.is_some())
            .field("lost", &self.lost)
            .finish()
    }
}

impl StatusReader {
    /// A reader at the start of the direction, given blocks of at most `max_block_bytes`.
    pub fn new(max_block_bytes: usize) -> Self {
        StatusReader {
            decoder: Some(Decoder::new(MAX_TABLE_BYTES)),
            lost: None,
            max_block_bytes,
        }
    }

    /// Why reading stopped, if it did.
    pub fn lost(&self) -> Option<&HpackLoss> {
        self.lost.as_ref()
    }

    /// Stops reading: the blocks from here on cannot be decoded. The first cause is kept.
    pub fn lose(&mut self, why: HpackLoss) {
        self.decoder = None;
        self.lost.get_or_insert(why);
    }

    /// Decodes the next complete header block of the direction (`block`: `None` when it
    /// was over the cap) and returns its status.
    pub fn read(&mut self, stream_id: u32, block: Option<&[u8]>, len_bytes: u64) -> BlockStatus {
        let Some(decoder) = self.decoder.as_mut() else {
            return BlockStatus::Lost;
        };
        let Some(block) = block else {
            self.lose(HpackLoss::TooLarge {
                stream_id,
                len_bytes,
                max_bytes: self.max_block_bytes,
            });
            return BlockStatus::Lost;
        };
        let mut status = None;
        // Every field is decoded, though only `:status` is kept: each may change the
        // dynamic table.
        let result = decoder.decode(block, |name, value| {
            if status.is_none() && name == b":status" {
                status = Some(parse_status(value));
            }
        });
        match (result, status.flatten()) {
            (Err(e), _) => {
                let what = e.to_string();
                self.lose(HpackLoss::Decode { stream_id, what });
                BlockStatus::Lost
            }
            (Ok(()), Some(s)) => BlockStatus::Status(s),
            (Ok(()), None) => BlockStatus::NoStatus,
        }
    }
}

/// RFC 9110 section 15: a status code is three digits, from 100; anything else is no
/// status.
fn parse_status(value: &[u8]) -> Option<u16> {
    let digits: &[u8; 3] = value.try_into().ok()?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let status = digits.iter().fold(0, |n, d| n * 10 + u16::from(d - b'0'));
    (status >= 100).then_some(status)
}
