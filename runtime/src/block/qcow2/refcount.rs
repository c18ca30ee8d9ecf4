//! Refcounts: reading and changing them, finding free clusters,
//! creating refcount blocks (a block inside its own span counts itself)
//! and growing the refcount table (new table and blocks go to a fresh,
//! span-aligned area past the end of the image that describes itself).

use std::io;

use super::child::{pflush, pread, pwrite};
use super::meta::{be64, put64, FreeKind, Meta};
use super::{corruption, hx};
use crate::block::BlockNode;

/// Reads refcount `i` of a block with entries of `1 << order` bits.
pub fn rc_get(b: &[u8], i: u64, order: u32) -> u64 {
    let i = i as usize;
    match order {
        0..=2 => {
            let bits = 1usize << order;
            let pos = i * bits;
            ((b[pos / 8] >> (pos % 8)) as u64) & ((1u64 << bits) - 1)
        }
        3 => b[i] as u64,
        4 => u16::from_be_bytes([b[2 * i], b[2 * i + 1]]) as u64,
        5 => u32::from_be_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]) as u64,
        _ => be64(b, i),
    }
}

/// Sets refcount `i` (the caller checked the value fits).
pub fn rc_set(b: &mut [u8], i: u64, order: u32, v: u64) {
    let i = i as usize;
    match order {
        0..=2 => {
            let bits = 1usize << order;
            let pos = i * bits;
            let mask = (((1u16 << bits) - 1) as u8) << (pos % 8);
            b[pos / 8] = (b[pos / 8] & !mask) | (((v as u8) << (pos % 8)) & mask);
        }
        3 => b[i] = v as u8,
        4 => b[2 * i..2 * i + 2].copy_from_slice(&(v as u16).to_be_bytes()),
        5 => b[4 * i..4 * i + 4].copy_from_slice(&(v as u32).to_be_bytes()),
        _ => put64(b, i, v),
    }
}

impl Meta {
    pub(super) fn rb_span(&self) -> u64 {
        self.geo.rb_entries
    }

    /// The refcount block of cluster `c` (0: none), checked.
    pub(super) fn block_of(&self, c: u64) -> io::Result<u64> {
        let i = c / self.rb_span();
        let e = self.rt.get(i as usize).copied().unwrap_or(0);
        if e & 0x1ff != 0 || (e & !0x1ff) % self.cs() != 0 {
            return Err(corruption(
                format!(
                    "Refblock offset {} unaligned (reftable index: {})",
                    hx(e),
                    hx(i)
                ),
                None,
            ));
        }
        Ok(e)
    }

    pub(super) async fn load_block(&mut self, f: &BlockNode, off: u64) -> io::Result<()> {
        if self.rb.contains(off) {
            return Ok(());
        }
        if !self.rb.make_room() {
            self.write_blocks(f).await?;
            self.rb.make_room();
        }
        let b = pread(f, off, self.cs() as usize).await?;
        self.rb.insert(off, b.to_vec(), false);
        Ok(())
    }

    /// The refcount of host cluster `c`.
    pub async fn refcount(&mut self, f: &BlockNode, c: u64) -> io::Result<u64> {
        let b = self.block_of(c)?;
        if b == 0 {
            return Ok(0);
        }
        self.load_block(f, b).await?;
        let order = self.geo.refcount_order;
        let i = c % self.rb_span();
        Ok(self.rb.get(b).map_or(0, |d| rc_get(d, i, order)))
    }

    /// Sets the refcount of cluster `c`, whose block exists.
    pub(super) async fn set_refcount(&mut self, f: &BlockNode, c: u64, v: u64) -> io::Result<()> {
        let b = self.block_of(c)?;
        if b == 0 {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.load_block(f, b).await?;
        let order = self.geo.refcount_order;
        let i = c % self.rb_span();
        if let Some(d) = self.rb.get_mut(b) {
            rc_set(d, i, order, v);
        }
        Ok(())
    }

    pub(super) fn max_refcount(&self) -> u64 {
        let bits = 1u32 << self.geo.refcount_order;
        if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        }
    }

    /// Sets the refcount of cluster `c`, creating its block if needed
    /// (past everything in use), clamped to the largest count.
    pub(super) async fn set_refcount_any(
        &mut self,
        f: &BlockNode,
        c: u64,
        v: u64,
    ) -> io::Result<()> {
        let s = c / self.rb_span();
        if self.block_of(c)? == 0 {
            if v == 0 {
                return Ok(());
            }
            let from = self.free_hint;
            self.give_block(f, s, from).await?;
        }
        let v = v.min(self.max_refcount());
        self.set_refcount(f, c, v).await
    }

    /// The last host cluster with a nonzero refcount.
    pub(super) async fn last_used_cluster(&mut self, f: &BlockNode) -> io::Result<u64> {
        let span = self.rb_span();
        let order = self.geo.refcount_order;
        for i in (0..self.rt.len()).rev() {
            let b = self.block_of(i as u64 * span)?;
            if b == 0 {
                continue;
            }
            self.load_block(f, b).await?;
            let d = self.rb.get(b).map(|d| d.to_vec()).unwrap_or_default();
            for j in (0..span).rev() {
                if rc_get(&d, j, order) != 0 {
                    return Ok(i as u64 * span + j);
                }
            }
        }
        Ok(0)
    }

    /// Adds `delta` to the refcount of cluster `c`.
    pub async fn add_refcount(&mut self, f: &BlockNode, c: u64, delta: i64) -> io::Result<u64> {
        let cur = self.refcount(f, c).await?;
        let new = if delta < 0 {
            cur.checked_sub(delta.unsigned_abs())
        } else {
            cur.checked_add(delta as u64)
                .filter(|v| *v <= self.max_refcount())
        };
        let Some(new) = new else {
            return Err(corruption(
                format!(
                    "Refcount of cluster {} out of range while changing it by {delta}",
                    hx(c * self.cs())
                ),
                None,
            ));
        };
        self.set_refcount(f, c, new).await?;
        Ok(new)
    }

    /// The first free cluster at or after `from`.
    pub(super) async fn find_free(&mut self, f: &BlockNode, from: u64) -> io::Result<u64> {
        let mut c = from;
        let span = self.rb_span();
        loop {
            let b = self.block_of(c)?;
            if b == 0 {
                return Ok(c);
            }
            self.load_block(f, b).await?;
            let order = self.geo.refcount_order;
            let d = self.rb.get(b).map(|d| d.to_vec()).unwrap_or_default();
            let mut i = c % span;
            while i < span {
                if rc_get(&d, i, order) == 0 {
                    return Ok(c - c % span + i);
                }
                i += 1;
            }
            c = c - c % span + span;
        }
    }

    /// Creates the (empty) refcount block of span `i` at cluster `at`. A
    /// block inside its own span counts itself; elsewhere, `at` must be
    /// described by an existing block already.
    pub(super) async fn create_block(&mut self, f: &BlockNode, i: u64, at: u64) -> io::Result<()> {
        if i as usize >= self.rt.len() {
            self.grow_reftable(f, i).await?;
            if self.rt.get(i as usize).copied().unwrap_or(0) != 0 {
                return Ok(());
            }
        }
        let cs = self.cs();
        let span = self.rb_span();
        let off = at * cs;
        let mut d = vec![0u8; cs as usize];
        if at / span == i {
            rc_set(&mut d, at % span, self.geo.refcount_order, 1);
        } else {
            self.set_refcount(f, at, 1).await?;
            if self.write_blocks(f).await? {
                pflush(f).await?;
            }
        }
        pwrite(f, off, &d).await?;
        pflush(f).await?;
        pwrite(f, self.rt_offset + i * 8, &off.to_be_bytes()).await?;
        self.rt[i as usize] = off;
        self.tables.blocks.insert(off);
        self.file_end = self.file_end.max(off + cs);
        if !self.rb.make_room() {
            self.write_blocks(f).await?;
            self.rb.make_room();
        }
        self.rb.insert(off, d, false);
        Ok(())
    }

    /// Gives span `s` a refcount block, placed at the first free cluster
    /// from `from` on (outside a run being allocated).
    pub(super) async fn give_block(&mut self, f: &BlockNode, s: u64, from: u64) -> io::Result<()> {
        let span = self.rb_span();
        loop {
            if self.block_of(s * span)? != 0 {
                return Ok(());
            }
            let b = self.find_free(f, from).await?;
            let bs = b / span;
            if bs != s && self.block_of(b)? == 0 {
                // The block's own span needs a block first: it describes
                // itself there.
                self.create_block(f, bs, b).await?;
                continue;
            }
            return self.create_block(f, s, b).await;
        }
    }

    /// Allocates `n` contiguous clusters (refcount 1 each); returns the
    /// host offset of the first and whether they were never written.
    /// Refcount blocks that the run needs go after it.
    pub async fn alloc(&mut self, f: &BlockNode, n: u64) -> io::Result<(u64, bool)> {
        let span = self.rb_span();
        let cs = self.cs();
        let mut from = self.free_hint;
        'search: loop {
            let c = self.find_free(f, from).await?;
            if (c + n).checked_mul(cs).is_none_or(|e| e > (1u64 << 56)) {
                return Err(io::Error::from_raw_os_error(libc::EFBIG));
            }
            for k in 1..n {
                if self.refcount(f, c + k).await? != 0 {
                    from = c + k + 1;
                    continue 'search;
                }
            }
            let fresh = c * cs >= self.file_end;
            self.file_end = self.file_end.max((c + n) * cs);
            let mut s = c / span;
            while s <= (c + n - 1) / span {
                if self.block_of(s * span)? == 0 {
                    self.give_block(f, s, c + n).await?;
                }
                s += 1;
            }
            // Blocks may have landed inside the run (table growth): check.
            for k in 0..n {
                if self.refcount(f, c + k).await? != 0 {
                    from = c + k + 1;
                    continue 'search;
                }
            }
            for k in 0..n {
                self.set_refcount(f, c + k, 1).await?;
            }
            if n == 1 || c == self.free_hint {
                self.free_hint = c + n;
            }
            return Ok((c * cs, fresh));
        }
    }

    /// Grows the refcount table to cover span `need`: new blocks for the
    /// area holding the new table go next to it, past the end of the
    /// image, aligned to a span so that the area describes itself.
    pub(super) async fn grow_reftable(&mut self, f: &BlockNode, need: u64) -> io::Result<()> {
        let cs = self.cs();
        let span = self.rb_span();
        let span_bytes = span * cs;
        let per_cluster = cs / 8;
        let mut entries = (need + 1).max(self.rt.len() as u64 * 3 / 2);
        let area = self.file_end.div_ceil(span_bytes) * span_bytes;
        let area_span = area / span_bytes;
        let (mut nb, mut tc);
        loop {
            tc = entries.div_ceil(per_cluster);
            nb = (tc + 1).div_ceil(span).max(1);
            while nb * span < nb + tc {
                nb += 1;
            }
            if entries >= area_span + nb {
                break;
            }
            entries = area_span + nb;
        }
        if tc * cs > super::header::MAX_REFTABLE_BYTES {
            return Err(io::Error::from_raw_os_error(libc::EFBIG));
        }
        let total = nb + tc;
        let order = self.geo.refcount_order;
        let mut blocks = Vec::new();
        for k in 0..nb {
            let mut d = vec![0u8; cs as usize];
            for j in 0..span {
                let idx = k * span + j;
                if idx >= total {
                    break;
                }
                rc_set(&mut d, j, order, 1);
            }
            pwrite(f, area + k * cs, &d).await?;
            blocks.push(d);
        }
        let table_off = area + nb * cs;
        let mut t = vec![0u8; (tc * cs) as usize];
        for (i, e) in self.rt.iter().enumerate() {
            put64(&mut t, i, *e);
        }
        for k in 0..nb {
            put64(&mut t, (area_span + k) as usize, area + k * cs);
        }
        pwrite(f, table_off, &t).await?;
        pflush(f).await?;
        let mut h = [0u8; 12];
        h[..8].copy_from_slice(&table_off.to_be_bytes());
        h[8..].copy_from_slice(&(tc as u32).to_be_bytes());
        pwrite(f, super::header::OFF_REFTABLE, &h).await?;
        pflush(f).await?;
        let old = (self.rt_offset, self.rt_clusters);
        self.rt = (0..(tc * per_cluster) as usize)
            .map(|i| be64(&t, i))
            .collect();
        self.rt_offset = table_off;
        self.rt_clusters = tc;
        self.file_end = self.file_end.max(area + total * cs);
        for k in 0..nb {
            self.tables.blocks.insert(area + k * cs);
        }
        for (k, d) in blocks.into_iter().enumerate() {
            if !self.rb.make_room() {
                self.write_blocks(f).await?;
                self.rb.make_room();
            }
            self.rb.insert(area + k as u64 * cs, d, false);
        }
        self.pending.push((old.0, old.1, FreeKind::Other));
        Ok(())
    }

    /// Writes the dirty refcount blocks.
    pub async fn write_blocks(&mut self, f: &BlockNode) -> io::Result<bool> {
        let d = self.rb.dirty();
        let any = !d.is_empty();
        for (off, b) in d {
            pwrite(f, off, &b).await?;
            self.rb.mark_clean(off, &b);
        }
        Ok(any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refcount_widths() {
        for order in 0..=6u32 {
            let bits = 1u32 << order;
            let entries = 64 * 8 / bits as u64;
            let mut b = vec![0u8; 64];
            let max = if bits == 64 {
                u64::MAX
            } else {
                (1 << bits) - 1
            };
            for i in 0..entries {
                rc_set(&mut b, i, order, (i * 7) & max);
            }
            for i in 0..entries {
                assert_eq!(rc_get(&b, i, order), (i * 7) & max, "order {order} i {i}");
            }
        }
        // 1-bit refcounts: least significant bit first.
        let mut b = vec![0u8; 1];
        rc_set(&mut b, 0, 0, 1);
        assert_eq!(b[0], 1);
    }
}
