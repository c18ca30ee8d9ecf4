//! virtio-blk requests: decoding a walked chain and running it on the
//! block node, with QSD's checks and status codes.
//!
//! Data moves between guest memory and the block layer through one
//! [`IoBuf`] per request (the block layer's I/O takes owned buffers);
//! large requests are cut into [`CHUNK`]-sized pieces so a guest cannot
//! make the daemon allocate more than that per request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use virtio_bindings::bindings::virtio_blk::{
    VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};

use super::chain::{gather, scatter, total_len, Chain, Seg};
use super::config::{MAX_DISCARD_SECTORS, MAX_WRITE_ZEROES_SECTORS, SECTOR_SHIFT};
use crate::block::{BlockNode, IoBuf, WriteFlags, ZeroFlags};

/// Largest piece of a request moved through one buffer.
pub const CHUNK: usize = 4 << 20;
/// QEMU's BDRV_REQUEST_MAX_SECTORS (INT_MAX >> 9).
const REQUEST_MAX_SECTORS: u64 = (i32::MAX as u64) >> SECTOR_SHIFT;
/// `VIRTIO_BLK_T_BARRIER`, ignored in the type.
const T_BARRIER: u32 = 0x8000_0000;
/// The serial number GET_ID answers.
pub const SERIAL: &[u8] = b"vhost_user_blk";

/// The disk behind an export, as requests see it.
pub struct Disk {
    pub node: Arc<BlockNode>,
    pub writable: bool,
    /// Logical block size (offsets must be multiples of it).
    pub blk_size: u32,
    /// The write cache is enabled (otherwise writes are FUA): the
    /// opposite of `writethrough`, then whatever the guest sets in `wce`.
    pub write_cache: AtomicBool,
}

impl Disk {
    /// QEMU's `virtio_blk_sect_range_ok`.
    fn range_ok(&self, sector: u64, size: u64) -> bool {
        if !size.is_multiple_of(512) {
            return false;
        }
        let nb = size >> SECTOR_SHIFT;
        if nb > REQUEST_MAX_SECTORS {
            return false;
        }
        if !sector
            .wrapping_shl(SECTOR_SHIFT)
            .is_multiple_of(u64::from(self.blk_size))
        {
            return false;
        }
        let total = self.node.size() >> SECTOR_SHIFT;
        sector <= total && nb <= total - sector
    }

    fn write_flags(&self) -> WriteFlags {
        WriteFlags {
            fua: !self.write_cache.load(Ordering::Relaxed),
        }
    }
}

/// What became of a request: the length to put in the used ring.
/// `0` for a chain too malformed to carry a status byte.
pub type UsedLen = u32;

/// Where the pieces of a decoded request are.
struct Parts {
    type_: u32,
    sector: u64,
    /// Readable buffers after the 16-byte header.
    out: Vec<Seg>,
    out_skip: u64,
    /// Writable buffers without the status byte.
    inn: Vec<Seg>,
    status: GuestAddress,
    /// Length of all writable buffers (what QSD reports as used).
    in_len: u32,
}

fn decode<M: GuestMemory>(mem: &M, chain: Chain) -> Option<Parts> {
    // QSD: "virtio-blk request missing headers", "outhdr too short",
    // "inhdr too short": the request is dropped.
    if chain.readable.is_empty() || chain.writable.is_empty() {
        return None;
    }
    let mut hdr = [0u8; 16];
    if gather(mem, &chain.readable, 0, &mut hdr) != hdr.len() {
        return None;
    }
    let mut inn = chain.writable;
    let in_len = u32::try_from(total_len(&inn)).ok()?;
    let last = inn.last_mut()?;
    if last.len == 0 {
        return None;
    }
    let status = last.addr.checked_add(u64::from(last.len) - 1)?;
    last.len -= 1;
    if last.len == 0 {
        inn.pop();
    }
    let type_ = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let mut s = [0u8; 8];
    s.copy_from_slice(&hdr[8..16]);
    Some(Parts {
        type_,
        sector: u64::from_le_bytes(s),
        out: chain.readable,
        out_skip: 16,
        inn,
        status,
        in_len,
    })
}

/// Runs the request of `chain`; writes its status byte into guest memory
/// and returns the used length.
pub async fn process<M: GuestMemory>(disk: &Disk, mem: &M, chain: Chain) -> UsedLen {
    let Some(p) = decode(mem, chain) else {
        return 0;
    };
    let status = execute(disk, mem, &p).await;
    // The status address was checked to be inside guest memory.
    let _ = mem.write_obj(status as u8, p.status);
    p.in_len
}

async fn execute<M: GuestMemory>(disk: &Disk, mem: &M, p: &Parts) -> u32 {
    let ok = |r: std::io::Result<()>| {
        if r.is_ok() {
            VIRTIO_BLK_S_OK
        } else {
            VIRTIO_BLK_S_IOERR
        }
    };
    match p.type_ & !T_BARRIER {
        VIRTIO_BLK_T_IN => {
            let size = total_len(&p.inn);
            if !disk.range_ok(p.sector, size) {
                return VIRTIO_BLK_S_IOERR;
            }
            ok(read(disk, mem, p.sector << SECTOR_SHIFT, &p.inn, size).await)
        }
        VIRTIO_BLK_T_OUT => {
            if !disk.writable {
                return VIRTIO_BLK_S_IOERR;
            }
            let size = total_len(&p.out) - p.out_skip;
            if !disk.range_ok(p.sector, size) {
                return VIRTIO_BLK_S_IOERR;
            }
            ok(write(
                disk,
                mem,
                p.sector << SECTOR_SHIFT,
                &p.out,
                p.out_skip,
                size,
            )
            .await)
        }
        VIRTIO_BLK_T_FLUSH => ok(disk.node.flush().await),
        VIRTIO_BLK_T_GET_ID => {
            let room = total_len(&p.inn).min(u64::from(VIRTIO_BLK_ID_BYTES)) as usize;
            let n = (SERIAL.len() + 1).min(room);
            let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
            id[..SERIAL.len()].copy_from_slice(SERIAL);
            scatter(mem, &p.inn, 0, &id[..n]);
            VIRTIO_BLK_S_OK
        }
        t @ (VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES) => {
            if !disk.writable {
                return VIRTIO_BLK_S_IOERR;
            }
            discard_write_zeroes(disk, mem, p, t == VIRTIO_BLK_T_WRITE_ZEROES).await
        }
        _ => VIRTIO_BLK_S_UNSUPP,
    }
}

/// QEMU's `virtio_blk_discard_write_zeroes`: one 16-byte segment
/// (sector, num_sectors, flags).
async fn discard_write_zeroes<M: GuestMemory>(
    disk: &Disk,
    mem: &M,
    p: &Parts,
    zeroes: bool,
) -> u32 {
    let size = total_len(&p.out) - p.out_skip;
    if size > 16 {
        return VIRTIO_BLK_S_UNSUPP;
    }
    let mut d = [0u8; 16];
    if gather(mem, &p.out, p.out_skip, &mut d) != 16 {
        return VIRTIO_BLK_S_IOERR;
    }
    let mut s = [0u8; 8];
    s.copy_from_slice(&d[0..8]);
    let sector = u64::from_le_bytes(s);
    let num = u32::from_le_bytes([d[8], d[9], d[10], d[11]]);
    let flags = u32::from_le_bytes([d[12], d[13], d[14], d[15]]);
    let max = if zeroes {
        MAX_WRITE_ZEROES_SECTORS
    } else {
        MAX_DISCARD_SECTORS
    };
    if num > max {
        return VIRTIO_BLK_S_IOERR;
    }
    let bytes = u64::from(num) << SECTOR_SHIFT;
    if !disk.range_ok(sector, bytes) {
        return VIRTIO_BLK_S_IOERR;
    }
    if flags & !VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0 {
        return VIRTIO_BLK_S_UNSUPP;
    }
    let offset = sector << SECTOR_SHIFT;
    let r = if zeroes {
        let zf = ZeroFlags {
            fua: disk.write_flags().fua,
            may_unmap: flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0,
            no_fallback: false,
        };
        disk.node.write_zeroes(offset, bytes, zf).await
    } else {
        if flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0 {
            return VIRTIO_BLK_S_UNSUPP;
        }
        disk.node.discard(offset, bytes).await
    };
    if r.is_ok() {
        VIRTIO_BLK_S_OK
    } else {
        VIRTIO_BLK_S_IOERR
    }
}

async fn read<M: GuestMemory>(
    disk: &Disk,
    mem: &M,
    offset: u64,
    segs: &[Seg],
    size: u64,
) -> std::io::Result<()> {
    let mut pos = 0u64;
    while pos < size {
        let n = (size - pos).min(CHUNK as u64) as usize;
        let buf = disk.node.read(offset + pos, n).await?;
        if scatter(mem, segs, pos, &buf) != n {
            return Err(std::io::Error::from_raw_os_error(libc::EFAULT));
        }
        pos += n as u64;
    }
    Ok(())
}

async fn write<M: GuestMemory>(
    disk: &Disk,
    mem: &M,
    offset: u64,
    segs: &[Seg],
    skip: u64,
    size: u64,
) -> std::io::Result<()> {
    let align = disk.node.mem_alignment();
    let flags = disk.write_flags();
    let mut pos = 0u64;
    while pos < size {
        let n = (size - pos).min(CHUNK as u64) as usize;
        let mut buf = IoBuf::new(n, align);
        if gather(mem, segs, skip + pos, &mut buf) != n {
            return Err(std::io::Error::from_raw_os_error(libc::EFAULT));
        }
        disk.node.write(offset + pos, buf, flags).await?;
        pos += n as u64;
    }
    Ok(())
}
