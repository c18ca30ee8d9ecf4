//! `block_resize` of a qcow2 node: growing extends the L1 table as
//! needed; shrinking (refused with internal snapshots, as in QEMU) drops
//! the clusters past the new end, empties the L1 entries beyond it and
//! cuts the image file after its last used cluster.
//!
//! Two growing variants serve the FUSE export: one whose new area must
//! read as zeroes (QEMU's `BDRV_REQ_ZERO_WRITE`: the new clusters get the
//! zero flag on version 3 images), and one that also allocates it
//! (`preallocation=falloc`).

use std::io;
use std::sync::atomic::Ordering;

use super::child::{pflush, pwrite, pzero};
use super::header;
use super::meta::{Entry, FreeKind, COPIED, OFFSET_MASK};
use super::Qcow2;
use crate::block::{user_error, ZeroFlags};

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

    /// Changes the virtual size; a grown area reads as zeroes whatever
    /// the backing file or stale data in a partial last cluster holds.
    /// Version 3 images mark the new whole clusters with the zero flag
    /// (allocating L2 tables for them, as QEMU does); version 2 images
    /// write zeroes where the area would not read as zeroes.
    pub(super) async fn do_truncate_zero(&self, size: u64) -> io::Result<()> {
        let old = self.size.load(Ordering::Acquire);
        if size <= old {
            return self.do_truncate(size).await;
        }
        self.usable()?;
        if !size.is_multiple_of(512) {
            return Err(user_error("The new size must be a multiple of 512"));
        }
        let r = async {
            self.grow(size).await?;
            self.zero_new_area(old, size).await
        }
        .await;
        self.check(r).await
    }

    async fn zero_new_area(&self, old: u64, size: u64) -> io::Result<()> {
        let cs = self.geo.cs;
        if self.geo.version < 3 {
            return self
                .zeroes_inner(old, size - old, ZeroFlags::default())
                .await;
        }
        let start = (old.div_ceil(cs) * cs).min(size);
        if start > old {
            self.zeroes_inner(old, start - old, ZeroFlags::default())
                .await?;
        }
        if start < size {
            let end = size.div_ceil(cs) * cs;
            self.zero_clusters(start, end, false, true).await?;
            if self.geo.data_raw {
                pzero(&self.data(), start, size - start, false).await?;
            }
        }
        Ok(())
    }

    /// Grows the virtual size to `size` and allocates the new area, as
    /// QEMU's qcow2 resize with `preallocation=falloc`: every whole
    /// cluster past the old end without an L2 entry gets a host cluster
    /// (its own guest offset in an external data file) whose data is
    /// reserved and zeroed in the data file; entries already there stay.
    /// Shrinking is refused (EINVAL, as QEMU's "Preallocation can't be
    /// used for shrinking an image").
    pub(super) async fn do_truncate_falloc(&self, size: u64) -> io::Result<()> {
        self.usable()?;
        let old = self.size.load(Ordering::Acquire);
        if size < old {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        if !size.is_multiple_of(512) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        if size == old {
            return Ok(());
        }
        let cs = self.geo.cs;
        let (c0, c1) = (old.div_ceil(cs), size.div_ceil(cs));
        // Requests to the new area wait until it is mapped.
        let _g = self.locks.lock(c0, c1.max(c0 + 1), true).await;
        let r = async {
            self.grow(size).await?;
            if c0 < c1 {
                self.preallocate(c0, c1).await?;
            }
            Ok(())
        }
        .await;
        self.check(r).await
    }

    /// Maps the unmapped guest clusters `[c0, c1)` to new zeroed host
    /// clusters. Order: clusters and their refcounts, then the data
    /// reserved, then the L2 entries; the metadata flush writes refcounts
    /// before the tables that use them.
    async fn preallocate(&self, c0: u64, c1: u64) -> io::Result<()> {
        let cs = self.geo.cs;
        let f = self.file();
        let d = self.data();
        let per_l2 = self.geo.l2_entries;
        let external = self.geo.external_data;
        let mut c = c0;
        while c < c1 {
            let mut m = self.meta.lock().await;
            let batch_end = c1.min((c / per_l2 + 1) * per_l2);
            m.ensure_l2(&f, &d, c * cs).await?;
            while c < batch_end {
                // A run of clusters without entries.
                let mut run = 0;
                while c + run < batch_end {
                    let e = m.entry(&f, &d, (c + run) * cs).await?;
                    if e.is_some_and(|(_, e)| e.raw != 0 || e.bitmap != 0) {
                        break;
                    }
                    run += 1;
                }
                if run == 0 {
                    c += 1;
                    continue;
                }
                let host = if external {
                    c * cs
                } else {
                    m.alloc(&f, run).await?.0
                };
                if !external {
                    m.check_overlap(host, run * cs, false)?;
                }
                pzero(&d, host, run * cs, false).await?;
                for k in 0..run {
                    let e = Entry {
                        raw: (host + k * cs) | COPIED,
                        bitmap: if self.geo.ext_l2 { 0xffff_ffff } else { 0 },
                    };
                    m.set_entry(&f, &d, (c + k) * cs, e).await?;
                }
                c += run;
            }
            m.flush(&f, &d).await?;
        }
        pflush(&f).await?;
        if external {
            pflush(&d).await?;
        }
        Ok(())
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
            self.remap(start, end, false, |_, e| {
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
