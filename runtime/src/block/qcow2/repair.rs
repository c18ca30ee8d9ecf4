//! Refcount repair of an image whose dirty bit is set (left open by a
//! writer using lazy refcounts): when such an image is opened read-write,
//! every reference is counted from the metadata (header, active and
//! snapshot L1 tables, their L2 tables and data clusters, the refcount
//! structures, the snapshot table) and the refcounts are set to what was
//! counted, as QEMU's check with repair does. Then the dirty bit goes.

use std::io;

use super::child::{pflush, pread, pwrite};
use super::header::{self, Header};
use super::meta::{be64, Meta, COMPRESSED, OFFSET_MASK};
use super::refcount::rc_get;
use crate::block::BlockNode;

/// References counted per host cluster.
struct Refs(Vec<u32>);

impl Refs {
    fn add(&mut self, cs: u64, off: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = off / cs;
        let last = (off + len - 1) / cs;
        // Bound what a corrupt table can make us allocate.
        if last > (1 << 32) {
            return;
        }
        if self.0.len() <= last as usize {
            self.0.resize(last as usize + 1, 0);
        }
        for c in first..=last {
            self.0[c as usize] = self.0[c as usize].saturating_add(1);
        }
    }

    fn get(&self, c: u64) -> u64 {
        self.0.get(c as usize).copied().unwrap_or(0) as u64
    }
}

/// Counts the references of one L1 table (its clusters, L2 tables and
/// data clusters).
async fn count_l1(
    m: &Meta,
    f: &BlockNode,
    refs: &mut Refs,
    l1_off: u64,
    l1_size: u64,
) -> io::Result<()> {
    let cs = m.geo.cs;
    refs.add(cs, l1_off, l1_size * 8);
    let l1 = pread(f, l1_off, (l1_size * 8) as usize).await?;
    let esz = m.geo.l2_entry_size as usize;
    for i in 0..l1_size as usize {
        let l2 = be64(&l1, i) & OFFSET_MASK;
        if l2 == 0 || !l2.is_multiple_of(cs) {
            continue;
        }
        refs.add(cs, l2, cs);
        let t = pread(f, l2, cs as usize).await?;
        for e in t.chunks_exact(esz) {
            let raw = be64(e, 0);
            if raw & COMPRESSED != 0 {
                let (o, l) = m.geo.compressed_range(raw);
                refs.add(cs, o & !511, (o & 511) + l);
            } else if !m.geo.external_data {
                let host = raw & OFFSET_MASK;
                if host != 0 && host.is_multiple_of(cs) {
                    refs.add(cs, host, cs);
                }
            }
        }
    }
    Ok(())
}

/// Repairs the refcounts of `m`'s image and clears the dirty bit.
pub async fn repair(m: &mut Meta, f: &BlockNode, data: &BlockNode, h: &Header) -> io::Result<()> {
    let cs = m.geo.cs;
    let mut refs = Refs(Vec::new());
    refs.add(cs, 0, cs);
    count_l1(m, f, &mut refs, m.l1_offset, m.l1.len() as u64).await?;
    refs.add(cs, m.rt_offset, m.rt_clusters * cs);
    for e in m.rt.clone() {
        let b = e & !0x1ff;
        if b != 0 {
            refs.add(cs, b, cs);
        }
    }
    // Internal snapshots: the table and every snapshot's L1 tree.
    if h.nb_snapshots > 0 {
        let mut off = h.snapshots_offset;
        let start = off;
        for _ in 0..h.nb_snapshots {
            let e = pread(f, off, 40).await?;
            let l1_off = be64(&e, 0);
            let l1_size = u32::from_be_bytes([e[8], e[9], e[10], e[11]]) as u64;
            let id = u16::from_be_bytes([e[12], e[13]]) as u64;
            let name = u16::from_be_bytes([e[14], e[15]]) as u64;
            let extra = u32::from_be_bytes([e[36], e[37], e[38], e[39]]) as u64;
            if l1_size * 8 <= header::MAX_L1_BYTES && l1_off.is_multiple_of(cs) {
                count_l1(m, f, &mut refs, l1_off, l1_size).await?;
            }
            off += (40 + extra + id + name).div_ceil(8) * 8;
        }
        refs.add(cs, start, off - start);
    }
    // Persistent bitmaps.
    if let Some(dir) = h.bitmap_dir {
        let list = super::bitmaps::read_dir(f, dir).await?;
        for (o, l) in super::bitmaps::clusters(f, (dir.0, dir.1), &list, cs).await? {
            refs.add(cs, o, l);
        }
    }
    // New refcount blocks must not land on anything referenced.
    let beyond = refs.0.len() as u64;
    m.free_hint = m.free_hint.max(beyond);
    m.file_end = m.file_end.max(beyond * cs);
    // Existing blocks: set every count to what was counted.
    let span = m.geo.rb_entries;
    let order = m.geo.refcount_order;
    for (i, e) in m.rt.clone().into_iter().enumerate() {
        let b = e & !0x1ff;
        if b == 0 || !b.is_multiple_of(cs) {
            continue;
        }
        let block = pread(f, b, cs as usize).await?;
        for j in 0..span {
            let c = i as u64 * span + j;
            let want = refs.get(c);
            if rc_get(&block, j, order) != want {
                m.set_refcount_any(f, c, want).await?;
            }
        }
    }
    // Referenced clusters in spans without a block.
    for c in 0..beyond {
        let want = refs.get(c);
        if want > 0 && m.refcount(f, c).await? != want {
            m.set_refcount_any(f, c, want).await?;
        }
    }
    m.flush(f, data).await?;
    m.incompat &= !header::INCOMPAT_DIRTY;
    pwrite(f, header::OFF_INCOMPAT, &m.incompat.to_be_bytes()).await?;
    pflush(f).await
}
