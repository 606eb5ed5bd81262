//! The TPACKET_V3 receive ring of a capture socket (Documentation/networking/packet_mmap.rst):
//! the kernel writes packets into fixed-size blocks of a memory-mapped area and hands a
//! block over when it is full or when its timeout retires it; the reader walks the
//! block's `tpacket3_hdr` list and gives the whole block back by setting its status to
//! `TP_STATUS_KERNEL`. One wakeup and no copy per block, instead of one `recvfrom` (a
//! syscall and a copy) per packet.
//!
//! Everything read out of a block is checked against the block's bounds before it is
//! used: a header whose offsets point past the block makes the block "bad", counted and
//! given back, never a panic or a read outside the mapping.
use std::{
    io,
    mem::offset_of,
    os::fd::RawFd,
    ptr::NonNull,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

/// The ring's geometry and how long the kernel may keep a partly filled block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingSize {
    /// Bytes per block: a multiple of the page size, larger than the largest frame kept
    /// (a longer frame is cut to fit).
    pub block_bytes: u32,
    /// Blocks in the ring: `block_bytes × blocks` is what the kernel can hold while the
    /// reader is busy, past which it drops (and counts) packets.
    pub blocks: u32,
    /// The kernel hands over a block that has packets after this long even when it is
    /// not full (`tp_retire_blk_tov`), so a quiet link still delivers promptly.
    pub block_timeout: Duration,
}

impl Default for RingSize {
    /// 32 × 1 MiB (the 32 MiB socket buffer the capture used before the ring), blocks
    /// retired after 10 ms (the raw backend flushes its events every 10 ms).
    fn default() -> Self {
        Self {
            block_bytes: 1 << 20,
            blocks: 32,
            block_timeout: Duration::from_millis(10),
        }
    }
}

/// `tp_frame_size`: TPACKET_V3 packs packets of any length into a block, so this only
/// has to satisfy the kernel's checks (at least the header, dividing the block).
const FRAME_BYTES: u32 = 2048;

/// Where one packet lies in a block, checked against the block's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PacketLoc {
    /// Offset of the link-layer frame in the block, and its captured length.
    pub data: usize,
    pub snaplen: usize,
    /// The length on the wire (larger than `snaplen` when the frame was cut).
    pub wire_len: u32,
    /// Kernel receive time, CLOCK_REALTIME nanoseconds.
    pub ts_unix_ns: u64,
    /// Offset of the next packet's header (0 for the last).
    pub next: usize,
}

/// A block header or packet header that does not fit its block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BadBlock;

fn u32_at(b: &[u8], at: usize) -> Result<u32, BadBlock> {
    let bytes = b
        .get(at..at.checked_add(4).ok_or(BadBlock)?)
        .ok_or(BadBlock)?;
    Ok(u32::from_ne_bytes(bytes.try_into().map_err(|_| BadBlock)?))
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, BadBlock> {
    let bytes = b
        .get(at..at.checked_add(2).ok_or(BadBlock)?)
        .ok_or(BadBlock)?;
    Ok(u16::from_ne_bytes(bytes.try_into().map_err(|_| BadBlock)?))
}

/// Offset of `tpacket_hdr_v1` in a block (the `hdr` union, whose only member is `bh1`).
const BH1: usize = offset_of!(libc::tpacket_block_desc, hdr);
/// `block_status` in the block descriptor: the word the kernel and the reader hand the
/// block over with.
const BLOCK_STATUS: usize = BH1 + offset_of!(libc::tpacket_hdr_v1, block_status);

/// A block's packet count and first packet's offset (`tpacket_hdr_v1`).
pub(super) fn block_header(block: &[u8]) -> Result<(u32, usize), BadBlock> {
    let num = u32_at(block, BH1 + offset_of!(libc::tpacket_hdr_v1, num_pkts))?;
    let first = u32_at(
        block,
        BH1 + offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt),
    )?;
    let first = usize::try_from(first).map_err(|_| BadBlock)?;
    if num > 0 && first < size_of::<libc::tpacket_block_desc>() {
        return Err(BadBlock);
    }
    Ok((num, first))
}

/// The packet whose `tpacket3_hdr` starts at `off` in `block`.
pub(super) fn packet_at(block: &[u8], off: usize) -> Result<PacketLoc, BadBlock> {
    let end = off
        .checked_add(size_of::<libc::tpacket3_hdr>())
        .ok_or(BadBlock)?;
    let hdr = block.get(off..end).ok_or(BadBlock)?;
    let field = |o| u32_at(hdr, o);
    let next = field(offset_of!(libc::tpacket3_hdr, tp_next_offset))?;
    let sec = field(offset_of!(libc::tpacket3_hdr, tp_sec))?;
    let nsec = field(offset_of!(libc::tpacket3_hdr, tp_nsec))?;
    let snaplen = field(offset_of!(libc::tpacket3_hdr, tp_snaplen))?;
    let wire_len = field(offset_of!(libc::tpacket3_hdr, tp_len))?;
    let mac = u16_at(hdr, offset_of!(libc::tpacket3_hdr, tp_mac))?;
    let data = off.checked_add(usize::from(mac)).ok_or(BadBlock)?;
    let snaplen = usize::try_from(snaplen).map_err(|_| BadBlock)?;
    if data.checked_add(snaplen).is_none_or(|e| e > block.len()) {
        return Err(BadBlock);
    }
    let next = if next == 0 {
        0
    } else {
        let n = off
            .checked_add(usize::try_from(next).map_err(|_| BadBlock)?)
            .ok_or(BadBlock)?;
        if n >= block.len() {
            return Err(BadBlock);
        }
        n
    };
    Ok(PacketLoc {
        data,
        snaplen,
        wire_len,
        ts_unix_ns: u64::from(sec) * 1_000_000_000 + u64::from(nsec),
        next,
    })
}

/// The reader's place in the block it holds.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    /// Offset of the next packet's header.
    off: usize,
    /// Packets of the block not read yet.
    left: u32,
}

/// The mapped ring and the reader's place in it.
#[derive(Debug)]
pub(super) struct Ring {
    map: NonNull<u8>,
    map_len: usize,
    block_bytes: usize,
    blocks: usize,
    /// The block read next (or being read, while `held` is set).
    cur: usize,
    held: Option<Cursor>,
    pub bad_blocks: u64,
    pub blocks_read: u64,
}

// SAFETY: the mapping belongs to this ring alone (it is unmapped on drop) and is touched
// only through `&mut self`; moving the ring to another thread moves that ownership.
unsafe impl Send for Ring {}

impl Ring {
    /// The `PACKET_RX_RING` request for `size` (block size rounded up to whole pages).
    pub fn request(size: RingSize) -> libc::tpacket_req3 {
        let page = 4096u32;
        let block_bytes = size.block_bytes.max(page).next_multiple_of(page);
        let blocks = size.blocks.max(1);
        libc::tpacket_req3 {
            tp_block_size: block_bytes,
            tp_block_nr: blocks,
            tp_frame_size: FRAME_BYTES,
            tp_frame_nr: block_bytes / FRAME_BYTES * blocks,
            tp_retire_blk_tov: u32::try_from(size.block_timeout.as_millis())
                .unwrap_or(u32::MAX)
                .max(1),
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        }
    }

    /// Maps the ring the kernel allocated on `fd` for `req` (set with PACKET_RX_RING).
    pub fn map(fd: RawFd, req: &libc::tpacket_req3) -> io::Result<Self> {
        let (block_bytes, blocks) = (req.tp_block_size, req.tp_block_nr);
        let map_len = block_bytes as usize * blocks as usize;
        // SAFETY: a fresh shared mapping of the ring the kernel just allocated for `fd`;
        // the result is checked before use and unmapped in `Drop`.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave 0"))?;
        Ok(Self {
            map,
            map_len,
            block_bytes: block_bytes as usize,
            blocks: blocks as usize,
            cur: 0,
            held: None,
            bad_blocks: 0,
            blocks_read: 0,
        })
    }

    /// The status word of block `i`, shared with the kernel.
    fn status(&self, i: usize) -> &AtomicU32 {
        debug_assert!(i < self.blocks);
        // SAFETY: block `i` starts `i × block_bytes` into the mapping (i < blocks), and
        // its status word lies inside the block descriptor, 4-byte aligned (blocks are
        // page-aligned). The kernel reads and writes it concurrently, hence an atomic.
        unsafe {
            AtomicU32::from_ptr(
                self.map
                    .as_ptr()
                    .add(i * self.block_bytes + BLOCK_STATUS)
                    .cast(),
            )
        }
    }

    /// Block `i`'s bytes. Only for a block the reader holds (status TP_STATUS_USER): the
    /// kernel does not write to it until it is given back.
    fn block(&self, i: usize) -> &[u8] {
        // SAFETY: in bounds of the mapping (i < blocks); held blocks are not written by
        // the kernel (the status handover has acquire/release ordering), and `&self`
        // keeps `release` (which takes `&mut self`) from running while this is alive.
        unsafe {
            std::slice::from_raw_parts(
                self.map.as_ptr().add(i * self.block_bytes),
                self.block_bytes,
            )
        }
    }

    /// Whether the kernel has handed over the next block.
    pub fn ready(&self) -> bool {
        self.held.is_some()
            || self.status(self.cur).load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }

    /// Gives the held block back to the kernel and moves on to the next.
    fn release(&mut self) {
        self.status(self.cur)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.held = None;
        self.cur = (self.cur + 1) % self.blocks;
    }

    /// The next packet of the blocks already handed over, or `None` when the reader has
    /// caught up with the kernel (then poll the socket). Bad blocks are counted and
    /// skipped.
    pub fn next_loc(&mut self) -> Option<PacketLoc> {
        // Each pass either returns or gives back a block: bounded by the ring's size.
        for _ in 0..=self.blocks {
            let cursor = match self.held {
                Some(c) => c,
                None => {
                    if !self.ready() {
                        return None;
                    }
                    self.blocks_read += 1;
                    match block_header(self.block(self.cur)) {
                        Ok((left, off)) => {
                            let c = Cursor { off, left };
                            self.held = Some(c);
                            c
                        }
                        Err(BadBlock) => {
                            self.bad_blocks += 1;
                            self.release();
                            continue;
                        }
                    }
                }
            };
            if cursor.left == 0 {
                self.release();
                continue;
            }
            match packet_at(self.block(self.cur), cursor.off) {
                Ok(loc) if loc.next != 0 || cursor.left == 1 => {
                    self.held = Some(Cursor {
                        off: loc.next,
                        left: cursor.left - 1,
                    });
                    return Some(loc);
                }
                // A packet that is not the last must name the next one.
                Ok(_) | Err(BadBlock) => {
                    self.bad_blocks += 1;
                    self.release();
                }
            }
        }
        None
    }

    /// The frame bytes of a packet `next_loc` returned (its block is still held).
    pub fn data(&self, loc: &PacketLoc) -> &[u8] {
        &self.block(self.cur)[loc.data..loc.data + loc.snaplen]
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of this length, unmapped once.
        unsafe { libc::munmap(self.map.as_ptr().cast(), self.map_len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HDR: usize = size_of::<libc::tpacket3_hdr>();

    fn put(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }

    /// A block with one packet header per `(offset, next, mac, snaplen)`.
    fn block(n: u32, first: u32, pkts: &[(usize, u32, u16, u32)]) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        put(&mut b, BH1 + offset_of!(libc::tpacket_hdr_v1, num_pkts), n);
        put(
            &mut b,
            BH1 + offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt),
            first,
        );
        for &(off, next, mac, snap) in pkts {
            put(
                &mut b,
                off + offset_of!(libc::tpacket3_hdr, tp_next_offset),
                next,
            );
            put(&mut b, off + offset_of!(libc::tpacket3_hdr, tp_sec), 2);
            put(&mut b, off + offset_of!(libc::tpacket3_hdr, tp_nsec), 5);
            put(
                &mut b,
                off + offset_of!(libc::tpacket3_hdr, tp_snaplen),
                snap,
            );
            put(
                &mut b,
                off + offset_of!(libc::tpacket3_hdr, tp_len),
                snap + 1,
            );
            let m = off + offset_of!(libc::tpacket3_hdr, tp_mac);
            b[m..m + 2].copy_from_slice(&mac.to_ne_bytes());
        }
        b
    }

    #[test]
    fn walks_a_consistent_block() {
        let b = block(2, 48, &[(48, 128, 80, 40), (176, 0, 80, 60)]);
        assert_eq!(block_header(&b), Ok((2, 48)));
        let p = packet_at(&b, 48).unwrap();
        assert_eq!((p.data, p.snaplen, p.wire_len, p.next), (128, 40, 41, 176));
        assert_eq!(p.ts_unix_ns, 2_000_000_005);
        let q = packet_at(&b, p.next).unwrap();
        assert_eq!((q.data, q.snaplen, q.next), (256, 60, 0));
    }

    #[test]
    fn offsets_past_the_block_are_bad_not_a_panic() {
        // Frame runs past the end.
        let b = block(1, 48, &[(48, 0, 80, 5000)]);
        assert_eq!(packet_at(&b, 48), Err(BadBlock));
        // Header itself past the end, and at usize::MAX.
        assert_eq!(packet_at(&b, 4096 - HDR + 1), Err(BadBlock));
        assert_eq!(packet_at(&b, usize::MAX), Err(BadBlock));
        // Next offset past the end.
        let b = block(2, 48, &[(48, 9000, 80, 40)]);
        assert_eq!(packet_at(&b, 48), Err(BadBlock));
        // First packet inside the block descriptor.
        let b = block(1, 4, &[]);
        assert_eq!(block_header(&b), Err(BadBlock));
        // A block too short for its descriptor.
        assert_eq!(block_header(&[0u8; 8]), Err(BadBlock));
    }
}
