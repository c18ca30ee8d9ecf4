//! Walking a descriptor chain of a split virtqueue into guest buffers.
//!
//! virtio-queue pops heads from the available ring; the chain behind a
//! head is walked here (also for heads resubmitted from the inflight
//! region, which virtio-queue cannot build a chain for), with every
//! malformed case reported instead of silently cutting the chain short:
//! an index outside the table, a loop (more descriptors than the table
//! holds), an indirect table inside an indirect table or with `NEXT`
//! set, a readable buffer after a writable one, a chain longer than
//! 4 GiB, and buffers that are not entirely inside guest memory. A
//! walked chain therefore only names bytes the guest owns.

use std::mem::size_of;

use virtio_queue::desc::split::Descriptor;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, Permissions};

/// Most descriptors one chain may have (the largest queue size; an
/// indirect table may be larger in principle but QEMU caps it likewise).
pub const MAX_CHAIN_LEN: usize = 1024;

/// One guest buffer of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seg {
    pub addr: GuestAddress,
    pub len: u32,
}

/// A walked chain: the device-readable buffers, then the device-writable
/// ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    pub head: u16,
    pub readable: Vec<Seg>,
    pub writable: Vec<Seg>,
}

/// Why a chain cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("descriptor index {0} is outside the table")]
    IndexOutOfRange(u16),
    #[error("descriptor chain loops or is too long")]
    Loop,
    #[error("descriptor table at {0:#x} is not in guest memory")]
    TableUnreadable(u64),
    #[error("nested indirect descriptor table")]
    NestedIndirect,
    #[error("malformed indirect descriptor table")]
    BadIndirectTable,
    #[error("device-readable descriptor after a device-writable one")]
    Order,
    #[error("descriptor chain longer than 4 GiB")]
    TooLong,
    #[error("buffer at {addr:#x} ({len} bytes) is not in guest memory")]
    BufferOutOfRange { addr: u64, len: u32 },
}

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;

/// Walks the chain starting at `head` of the descriptor table at
/// `table` with `size` entries.
pub fn walk<M: GuestMemory>(
    mem: &M,
    table: GuestAddress,
    size: u16,
    head: u16,
) -> Result<Chain, ChainError> {
    let mut chain = Chain {
        head,
        ..Chain::default()
    };
    let mut cur_table = table;
    let mut cur_size = size;
    let mut index = head;
    let mut indirect = false;
    let mut total: u32 = 0;
    let mut count = 0usize;
    loop {
        if index >= cur_size {
            return Err(ChainError::IndexOutOfRange(index));
        }
        count += 1;
        if count > MAX_CHAIN_LEN.max(usize::from(cur_size)) + 1 {
            return Err(ChainError::Loop);
        }
        let at = cur_table
            .checked_add(u64::from(index) * size_of::<Descriptor>() as u64)
            .ok_or(ChainError::TableUnreadable(cur_table.raw_value()))?;
        let d: Descriptor = mem
            .read_obj(at)
            .map_err(|_| ChainError::TableUnreadable(at.raw_value()))?;
        let flags = d.flags();
        if flags & F_INDIRECT != 0 {
            if indirect {
                return Err(ChainError::NestedIndirect);
            }
            if flags & F_NEXT != 0 || d.len() == 0 || !d.len().is_multiple_of(16) {
                return Err(ChainError::BadIndirectTable);
            }
            let n = d.len() / 16;
            if n > u32::from(u16::MAX) || n as usize > MAX_CHAIN_LEN {
                return Err(ChainError::BadIndirectTable);
            }
            if !mem.check_range(d.addr(), d.len() as usize, Permissions::Read) {
                return Err(ChainError::TableUnreadable(d.addr().raw_value()));
            }
            // Only the head may point to an indirect table (besides, a
            // direct chain leading to one is allowed by QEMU as long as it
            // is the last descriptor: NEXT is not set).
            indirect = true;
            cur_table = d.addr();
            cur_size = n as u16;
            index = 0;
            count = 0;
            continue;
        }
        let seg = Seg {
            addr: d.addr(),
            len: d.len(),
        };
        total = total.checked_add(seg.len).ok_or(ChainError::TooLong)?;
        let perm = if flags & F_WRITE != 0 {
            Permissions::Write
        } else {
            Permissions::Read
        };
        if seg.len > 0 && !mem.check_range(seg.addr, seg.len as usize, perm) {
            return Err(ChainError::BufferOutOfRange {
                addr: seg.addr.raw_value(),
                len: seg.len,
            });
        }
        if flags & F_WRITE != 0 {
            chain.writable.push(seg);
        } else if chain.writable.is_empty() {
            chain.readable.push(seg);
        } else {
            return Err(ChainError::Order);
        }
        if flags & F_NEXT == 0 {
            return Ok(chain);
        }
        index = d.next();
    }
}

/// Total length of `segs`.
pub fn total_len(segs: &[Seg]) -> u64 {
    segs.iter().map(|s| u64::from(s.len)).sum()
}

/// Copies from the guest buffers `segs`, starting `skip` bytes in, into
/// `dst`; returns how many bytes were copied (less than `dst.len()` if
/// the buffers are shorter).
pub fn gather<M: GuestMemory>(mem: &M, segs: &[Seg], mut skip: u64, dst: &mut [u8]) -> usize {
    let mut done = 0usize;
    for s in segs {
        if done == dst.len() {
            break;
        }
        let len = u64::from(s.len);
        if skip >= len {
            skip -= len;
            continue;
        }
        let n = ((len - skip) as usize).min(dst.len() - done);
        let Some(addr) = s.addr.checked_add(skip) else {
            break;
        };
        if mem.read_slice(&mut dst[done..done + n], addr).is_err() {
            break;
        }
        done += n;
        skip = 0;
    }
    done
}

/// Copies `src` into the guest buffers `segs`, starting `skip` bytes in;
/// returns how many bytes were copied. Only bytes inside `segs` are
/// written.
pub fn scatter<M: GuestMemory>(mem: &M, segs: &[Seg], mut skip: u64, src: &[u8]) -> usize {
    let mut done = 0usize;
    for s in segs {
        if done == src.len() {
            break;
        }
        let len = u64::from(s.len);
        if skip >= len {
            skip -= len;
            continue;
        }
        let n = ((len - skip) as usize).min(src.len() - done);
        let Some(addr) = s.addr.checked_add(skip) else {
            break;
        };
        if mem.write_slice(&src[done..done + n], addr).is_err() {
            break;
        }
        done += n;
        skip = 0;
    }
    done
}
