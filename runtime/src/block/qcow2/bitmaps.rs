//! Persistent dirty bitmaps: the driver does not track writes in them.
//! Like a writer that has them loaded, it marks every bitmap "in use" in
//! the bitmap directory when it opens an image read-write (QEMU does the
//! same and clears the flag when it stores them on close; here they stay
//! in use, which tells QEMU they are no longer consistent). Queries show
//! the bitmaps as QEMU does, and refcount repair counts their clusters.

use std::io;

use qapi::types::{Qcow2BitmapInfo, Qcow2BitmapInfoFlags};

use super::child::{pflush, pread, pwrite};
use super::meta::OFFSET_MASK;
use crate::block::BlockNode;

const IN_USE: u32 = 1;
const AUTO: u32 = 2;
/// QEMU's limit on the directory.
const MAX_DIR_BYTES: u64 = 64 << 20;

/// One bitmap directory entry.
#[derive(Debug, Clone)]
pub struct Bitmap {
    /// Offset of the entry in the image file.
    pub entry_off: u64,
    pub table_offset: u64,
    pub table_size: u32,
    pub flags: u32,
    pub granularity_bits: u8,
    pub name: String,
}

/// Reads the bitmap directory `(offset, bytes, entries)`; a malformed
/// directory yields the entries that parse.
pub async fn read_dir(f: &BlockNode, dir: (u64, u64, u32)) -> io::Result<Vec<Bitmap>> {
    let (off, size, nb) = dir;
    let size = size.min(MAX_DIR_BYTES);
    let b = pread(f, off, size as usize).await?;
    let mut out = Vec::new();
    let mut p = 0usize;
    for _ in 0..nb {
        if p + 24 > b.len() {
            break;
        }
        let e = &b[p..p + 24];
        let be32 = |i: usize| u32::from_be_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
        let mut t = [0u8; 8];
        t.copy_from_slice(&e[0..8]);
        let name_size = u16::from_be_bytes([e[18], e[19]]) as usize;
        let extra = be32(20) as usize;
        let name_at = p + 24 + extra;
        if name_at + name_size > b.len() {
            break;
        }
        out.push(Bitmap {
            entry_off: off + p as u64,
            table_offset: u64::from_be_bytes(t),
            table_size: be32(8),
            flags: be32(12),
            granularity_bits: e[17],
            name: String::from_utf8_lossy(&b[name_at..name_at + name_size]).into_owned(),
        });
        p += (24 + extra + name_size).div_ceil(8) * 8;
    }
    Ok(out)
}

/// Marks every bitmap in use on disk.
pub async fn mark_in_use(f: &BlockNode, bitmaps: &mut [Bitmap]) -> io::Result<()> {
    let mut any = false;
    for b in bitmaps.iter_mut() {
        if b.flags & IN_USE == 0 {
            b.flags |= IN_USE;
            pwrite(f, b.entry_off + 12, &b.flags.to_be_bytes()).await?;
            any = true;
        }
    }
    if any {
        pflush(f).await?;
    }
    Ok(())
}

/// What `format-specific` shows of the bitmaps.
pub fn info(bitmaps: &[Bitmap]) -> Vec<Qcow2BitmapInfo> {
    bitmaps
        .iter()
        .map(|b| {
            let mut flags = Vec::new();
            if b.flags & IN_USE != 0 {
                flags.push(Qcow2BitmapInfoFlags::InUse);
            }
            if b.flags & AUTO != 0 {
                flags.push(Qcow2BitmapInfoFlags::Auto);
            }
            Qcow2BitmapInfo {
                name: b.name.clone(),
                granularity: 1u32.checked_shl(b.granularity_bits as u32).unwrap_or(0),
                flags,
            }
        })
        .collect()
}

/// The clusters the bitmaps use: (offset, bytes) ranges.
pub async fn clusters(
    f: &BlockNode,
    dir: (u64, u64),
    bitmaps: &[Bitmap],
    cs: u64,
) -> io::Result<Vec<(u64, u64)>> {
    let mut out = vec![(dir.0, dir.1.min(MAX_DIR_BYTES))];
    for b in bitmaps {
        let bytes = b.table_size as u64 * 8;
        if bytes == 0 || bytes > MAX_DIR_BYTES || !b.table_offset.is_multiple_of(cs) {
            continue;
        }
        out.push((b.table_offset, bytes));
        let t = pread(f, b.table_offset, bytes as usize).await?;
        for e in t.chunks_exact(8) {
            let mut a = [0u8; 8];
            a.copy_from_slice(e);
            let d = u64::from_be_bytes(a) & OFFSET_MASK;
            if d != 0 && d.is_multiple_of(cs) {
                out.push((d, cs));
            }
        }
    }
    Ok(out)
}
