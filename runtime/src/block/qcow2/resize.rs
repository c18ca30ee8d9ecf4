//! `block_resize` of a qcow2 node: growing extends the L1 table as
//! needed; shrinking (refused with internal snapshots, as in QEMU) drops
//! the clusters past the new end, empties the L1 entries beyond it and
//! cuts the image file after its last used cluster.

use std::io;
use std::sync::atomic::Ordering;

use super::child::{pflush, pwrite};
use super::header;
use super::meta::{Entry, FreeKind, OFFSET_MASK};
use super::Qcow2;
use crate::block::user_error;

impl Qcow2 {
    /// Changes the virtual size.
    pub(super) async fn do_truncate(&self, size: u64) -> io::Result<()> {
        self.usable()?;
        if !size.is_multiple_of(512) {
            return Err(user_error("The new size must be a multiple of 512"));
        }
        let old = self.size.load(Ordering::Acquire);
        let r = if size < old {
            if self.has_snapshots {
                return Err(user_error("Can't resize an image which has snapshots"));
            }
            self.shrink(size, old).await
        } else {
            self.grow(size).await
        };
        self.check(r).await
    }

    async fn grow(&self, size: u64) -> io::Result<()> {
        let f = self.file();
        let d = self.data();
        let mut m = self.meta.lock().await;
        let need = m.split(size.saturating_sub(1)).0 + 1;
        if need > i32::MAX as u64 {
            return Err(user_error("Image is too big"));
        }
        if size > 0 {
            m.grow_l1(&f, need).await?;
        }
        m.flush(&f, &d).await?;
        pwrite(&f, header::OFF_SIZE, &size.to_be_bytes()).await?;
        pflush(&f).await?;
        if self.geo.data_raw || self.geo.external_data {
            let ds = d.driver().size();
            if ds < size {
                d.driver().truncate(size).await?;
            }
        }
        self.size.store(size, Ordering::Release);
        Ok(())
    }

    async fn shrink(&self, size: u64, old: u64) -> io::Result<()> {
        let cs = self.geo.cs;
        let f = self.file();
        let d = self.data();
        let start = size.div_ceil(cs) * cs;
        let end = old.div_ceil(cs) * cs;
        let (c0, c1) = (start / cs, end / cs);
        let _g = self.locks.lock(c0, c1.max(c0 + 1), true).await;
        if start < end {
            self.remap(start, end, |_, e| {
                (e.raw != 0 || e.bitmap != 0).then_some((Entry { raw: 0, bitmap: 0 }, true))
            })
            .await?;
        }
        let mut m = self.meta.lock().await;
        // L2 tables wholly past the end go.
        let keep = if size == 0 {
            0
        } else {
            m.split(size - 1).0 + 1
        };
        for i in keep..m.l1.len() as u64 {
            let e = m.l1[i as usize];
            let l2 = e & OFFSET_MASK;
            if l2 == 0 {
                continue;
            }
            m.flush(&f, &d).await?;
            pwrite(&f, m.l1_offset + i * 8, &0u64.to_be_bytes()).await?;
            m.l1[i as usize] = 0;
            m.tables.l2.remove(&l2);
            let se = m.geo.slice_entries * m.geo.l2_entry_size;
            for s in 0..m.geo.l2_entries / m.geo.slice_entries {
                m.l2.remove(l2 + s * se);
            }
            m.l2_epoch += 1;
            m.free_later(l2, 1, FreeKind::Other);
        }
        m.flush(&f, &d).await?;
        pwrite(&f, header::OFF_SIZE, &size.to_be_bytes()).await?;
        pflush(&f).await?;
        self.size.store(size, Ordering::Release);
        // Cut the file after the last cluster in use.
        let last = m.last_used_cluster(&f).await?;
        let new_end = (last + 1) * cs;
        if new_end < f.driver().size() {
            f.driver().truncate(new_end).await?;
            m.file_end = m.file_end.min(new_end);
        }
        Ok(())
    }
}
