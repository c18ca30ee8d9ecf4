//! The request paths of the qcow2 driver.

use super::child::{pdiscard, pread, pwrite_buf, pzero};
use super::meta::{append_seg, Entry, FreeKind, Kind, Lookup, Meta, Seg, COPIED, ZERO};
use super::{compress, zero_buf, Qcow2};
use crate::block::{Extent, IoBuf, ZeroFlags};
use std::io;

/// The work planned for one guest cluster of an allocating write.
struct Plan {
    /// Guest offset of the cluster.
    guest: u64,
    /// Host offset of the cluster.
    host: u64,
    /// The cluster was allocated for this request.
    new: bool,
    /// Guest range written into the cluster.
    wstart: u64,
    wend: u64,
    /// Parts of `[wstart, wend)` outside the request: their current
    /// content is copied (copy-on-write); `zero_fill` says it is zero.
    zero_fill: bool,
    old: Entry,
    new_entry: Entry,
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

impl Qcow2 {
    fn cluster_range(&self, off: u64, len: u64) -> (u64, u64) {
        let b = self.geo.cluster_bits;
        (off >> b, (off + len).div_ceil(1 << b))
    }

    /// Maps a guest range, loading L2 slices outside the metadata lock.
    pub(super) async fn map(&self, off: u64, len: u64) -> io::Result<Vec<Seg>> {
        self.map_ext(off, len, false).await
    }

    /// [`Qcow2::map`]; with `first_only`, up to the first change of kind.
    async fn map_ext(&self, off: u64, len: u64, first_only: bool) -> io::Result<Vec<Seg>> {
        let f = self.file();
        let d = self.data();
        let mut out: Vec<Seg> = Vec::new();
        let mut pos = off;
        let end = off + len;
        let mut misses = 0;
        loop {
            let mut m = self.meta.lock().await;
            let key = loop {
                let (segs, need) = match m.lookup_ext(pos, end - pos, first_only)? {
                    Lookup::Done(s) => (s, None),
                    Lookup::Need(s, key) => (s, Some(key)),
                };
                pos += segs.iter().map(|s| s.len).sum::<u64>();
                for s in segs {
                    append_seg(&mut out, s);
                }
                let Some(key) = need else {
                    return Ok(out);
                };
                misses += 1;
                if misses <= 3 {
                    break key;
                }
                // Loads keep being overtaken by evictions: load under the
                // lock and go on with it held, which guarantees progress.
                m.load_slice(&f, &d, key).await?;
            };
            let epoch = m.l2_epoch;
            let size = m.l2.entry_size;
            drop(m);
            let b = pread(&f, key, size).await?;
            let mut m = self.meta.lock().await;
            if m.l2_epoch == epoch {
                m.insert_slice(&f, &d, key, b.to_vec()).await?;
            }
        }
    }

    /// Reads a compressed cluster whole.
    async fn read_compressed(&self, raw: u64) -> io::Result<Vec<u8>> {
        let (off, len) = self.geo.compressed_range(raw);
        let f = self.file();
        let input = pread(&f, off, len as usize).await?;
        let mut out = vec![0u8; self.geo.cs as usize];
        if !compress::decompress(self.geo.compression, &input, &mut out) {
            return Err(eio());
        }
        Ok(out)
    }

    /// Reads guest data (the internal read path, also used for
    /// copy-on-write).
    pub(super) async fn read_guest(&self, off: u64, len: usize) -> io::Result<IoBuf> {
        let segs = self.map(off, len as u64).await?;
        let d = self.data();
        if let [Seg {
            kind: Kind::Data(h),
            ..
        }] = segs[..]
        {
            return pread(&d, h, len).await;
        }
        let mut out = zero_buf(len, self.align());
        for s in segs {
            let at = (s.off - off) as usize;
            let dst = &mut out[at..at + s.len as usize];
            match s.kind {
                Kind::Zero => {}
                Kind::Data(h) => {
                    let b = pread(&d, h, s.len as usize).await?;
                    dst.copy_from_slice(&b);
                }
                Kind::Compressed(raw) => {
                    let c = self.read_compressed(raw).await?;
                    let inner = (s.off & (self.geo.cs - 1)) as usize;
                    dst.copy_from_slice(&c[inner..inner + s.len as usize]);
                }
                Kind::Unalloc => {
                    if let Some(b) = self.backing() {
                        let bsize = b.size();
                        if s.off < bsize {
                            let n = s.len.min(bsize - s.off);
                            let r = b.read(s.off, n as usize).await?;
                            dst[..n as usize].copy_from_slice(&r);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    pub(super) async fn do_read(&self, off: u64, len: usize) -> io::Result<IoBuf> {
        self.usable()?;
        let r = self.read_guest(off, len).await;
        self.check(r).await
    }

    pub(super) async fn do_write(&self, off: u64, buf: IoBuf, fua: bool) -> io::Result<()> {
        self.usable()?;
        let r = self.write_inner(off, buf, fua).await;
        self.check(r).await
    }

    async fn write_inner(&self, off: u64, buf: IoBuf, fua: bool) -> io::Result<()> {
        let len = buf.len() as u64;
        let (c0, c1) = self.cluster_range(off, len);
        let d = self.data();
        {
            let _g = self.locks.lock(c0, c1, false).await;
            if let Some(hosts) = self.plan_in_place(off, len).await? {
                if let [(_, h, _)] = hosts[..] {
                    pwrite_buf(&d, h, buf, fua).await?;
                } else {
                    for (g, h, n) in hosts {
                        let at = (g - off) as usize;
                        let part = IoBuf::from_slice(&buf[at..at + n as usize], self.align());
                        pwrite_buf(&d, h, part, fua).await?;
                    }
                }
                // The mapping itself may still be only in the cache.
                if fua && !self.meta.lock().await.is_clean() {
                    self.flush_inner().await?;
                }
                return Ok(());
            }
        }
        let _g = self.locks.lock(c0, c1, true).await;
        self.write_alloc(off, buf).await?;
        if fua {
            self.flush_inner().await?;
        }
        Ok(())
    }

    /// The host ranges of a write that only touches allocated clusters
    /// owned by this image alone: (guest, host, len); `None` if anything
    /// must be allocated.
    async fn plan_in_place(&self, off: u64, len: u64) -> io::Result<Option<Vec<(u64, u64, u64)>>> {
        let f = self.file();
        let d = self.data();
        let cs = self.geo.cs;
        let mut m = self.meta.lock().await;
        let mut out: Vec<(u64, u64, u64)> = Vec::new();
        let mut pos = off;
        let end = off + len;
        while pos < end {
            let cstart = pos & !(cs - 1);
            let cend = (cstart + cs).min(end);
            let Some((_, e)) = m.entry(&f, &d, pos).await? else {
                return Ok(None);
            };
            if e.compressed() || !e.copied() || (e.host() == 0 && !self.geo.external_data) {
                return Ok(None);
            }
            if self.geo.ext_l2 {
                let scs = cs / 32;
                let s0 = (pos - cstart) / scs;
                let s1 = (cend - cstart).div_ceil(scs);
                let mask = ((1u64 << s1) - 1) & !((1u64 << s0) - 1);
                if e.bitmap & mask != mask {
                    return Ok(None);
                }
            } else if self.geo.version >= 3 && e.raw & ZERO != 0 {
                return Ok(None);
            }
            let h = e.host() + (pos - cstart);
            match out.last_mut() {
                Some(last) if last.1 + last.2 == h => last.2 += cend - pos,
                _ => out.push((pos, h, cend - pos)),
            }
            pos = cend;
        }
        for (_, h, n) in &out {
            if !self.geo.external_data {
                m.check_overlap(*h, *n, false)?;
            }
        }
        Ok(Some(out))
    }

    /// Plans one cluster of an allocating write of `[a, b)`.
    fn plan_cluster(&self, m: &Meta, guest: u64, a: u64, b: u64, e: Entry) -> (Plan, bool) {
        let cs = self.geo.cs;
        let cend = guest + cs;
        let has_backing = self.backing().is_some();
        let mut p = Plan {
            guest,
            host: e.host(),
            new: false,
            wstart: a,
            wend: b,
            zero_fill: false,
            old: e,
            new_entry: e,
        };
        let owned = !e.compressed() && e.copied() && (e.host() != 0 || self.geo.external_data);
        let _ = m;
        if !self.geo.ext_l2 {
            let zero_flag = self.geo.version >= 3 && !e.compressed() && e.raw & ZERO != 0;
            if owned && !zero_flag {
                return (p, false);
            }
            let old_zero = zero_flag || (e.raw == 0 && !has_backing);
            p.zero_fill = old_zero;
            p.wstart = guest;
            p.wend = cend;
            if owned {
                // A preallocated zero cluster: write it whole.
                p.new_entry = Entry {
                    raw: e.host() | COPIED,
                    bitmap: 0,
                };
                return (p, false);
            }
            p.new = true;
            return (p, true);
        }
        let scs = cs / 32;
        let s0 = (a - guest) / scs;
        let s1 = (b - guest).div_ceil(scs);
        let touched = ((1u64 << s1) - 1) & !((1u64 << s0) - 1);
        let alloc = e.bitmap & 0xffff_ffff;
        let zeros = e.bitmap >> 32;
        let sc_start = guest + s0 * scs;
        let sc_end = guest + s1 * scs;
        if owned {
            p.wstart = if alloc & (1 << s0) != 0 { a } else { sc_start };
            p.wend = if alloc & (1 << (s1 - 1)) != 0 {
                b
            } else {
                sc_end
            };
            p.new_entry = Entry {
                raw: e.raw,
                bitmap: (alloc | touched) | ((zeros & !touched) << 32),
            };
            return (p, false);
        }
        p.new = true;
        if e.compressed() {
            p.wstart = guest;
            p.wend = cend;
            p.new_entry = Entry {
                raw: 0,
                bitmap: 0xffff_ffff,
            };
        } else if alloc != 0 {
            // Shared with a snapshot: copy the whole cluster.
            p.wstart = guest;
            p.wend = cend;
            p.new_entry = Entry {
                raw: 0,
                bitmap: (alloc | touched) | ((zeros & !touched) << 32),
            };
        } else {
            p.wstart = sc_start;
            p.wend = sc_end;
            p.zero_fill = !has_backing || (zeros & touched) == touched;
            p.new_entry = Entry {
                raw: 0,
                bitmap: touched | ((zeros & !touched) << 32),
            };
        }
        (p, true)
    }

    /// An allocating write (the caller holds the clusters exclusively).
    async fn write_alloc(&self, off: u64, buf: IoBuf) -> io::Result<()> {
        let f = self.file();
        let d = self.data();
        let cs = self.geo.cs;
        let end = off + buf.len() as u64;
        let mut plans = Vec::new();
        {
            let mut m = self.meta.lock().await;
            let mut pos = off;
            while pos < end {
                let guest = pos & !(cs - 1);
                let b = (guest + cs).min(end);
                m.ensure_l2(&f, &d, guest).await?;
                let (_, e) = m.entry(&f, &d, guest).await?.ok_or_else(eio)?;
                let (p, _) = self.plan_cluster(&m, guest, pos, b, e);
                plans.push(p);
                pos = b;
            }
            // Allocate host clusters, contiguous where possible.
            let span = (self.geo.rb_entries / 2).clamp(1, 1024);
            let mut i = 0;
            while i < plans.len() {
                if !plans[i].new {
                    i += 1;
                    continue;
                }
                let mut j = i;
                while j < plans.len() && plans[j].new && ((j - i) as u64) < span {
                    j += 1;
                }
                let n = (j - i) as u64;
                let (host, fresh) = if self.geo.external_data {
                    (plans[i].guest, plans[i].guest >= d.driver().size())
                } else {
                    let r = m.alloc(&f, n).await?;
                    m.check_overlap(r.0, n * cs, true)?;
                    r
                };
                for (k, p) in plans[i..j].iter_mut().enumerate() {
                    p.host = if self.geo.external_data {
                        p.guest
                    } else {
                        host + k as u64 * cs
                    };
                    p.new_entry.raw = p.host | COPIED;
                    // A never-written cluster is zero already: only the
                    // request itself must be written.
                    if fresh && p.zero_fill && !self.geo.ext_l2 {
                        p.wstart = p.wstart.max(off);
                        p.wend = p.wend.min(end);
                    }
                }
                i = j;
            }
        }
        let r = self.write_plans(off, buf, &plans).await;
        let mut m = self.meta.lock().await;
        if let Err(e) = r {
            for p in plans.iter().filter(|p| p.new && !self.geo.external_data) {
                m.free_later(p.host, 1, FreeKind::Other);
            }
            return Err(e);
        }
        for p in &plans {
            if p.new_entry != p.old {
                m.set_entry(&f, &d, p.guest, p.new_entry).await?;
                if p.new && p.old.host() != p.host {
                    m.release_entry(p.old, FreeKind::Other);
                }
            }
        }
        Ok(())
    }

    /// Writes the data of the plans, merging contiguous host ranges.
    async fn write_plans(&self, off: u64, buf: IoBuf, plans: &[Plan]) -> io::Result<()> {
        let d = self.data();
        let end = off + buf.len() as u64;
        // One contiguous run that is exactly the request: write the
        // caller's buffer as it is.
        if let (Some(first), Some(last)) = (plans.first(), plans.last()) {
            let host_at = |p: &Plan| p.host + (p.wstart - p.guest);
            let contiguous = plans.windows(2).all(|w| {
                host_at(&w[0]) + (w[0].wend - w[0].wstart) == host_at(&w[1])
                    && w[0].wend == w[1].wstart
            });
            if contiguous && first.wstart == off && last.wend == end {
                return pwrite_buf(&d, host_at(first), buf, false).await;
            }
        }
        let mut i = 0;
        while i < plans.len() {
            let mut j = i + 1;
            let host_at = |p: &Plan| p.host + (p.wstart - p.guest);
            while j < plans.len()
                && host_at(&plans[j - 1]) + (plans[j - 1].wend - plans[j - 1].wstart)
                    == host_at(&plans[j])
                && plans[j - 1].wend == plans[j].wstart
            {
                j += 1;
            }
            let gstart = plans[i].wstart;
            let gend = plans[j - 1].wend;
            let host = host_at(&plans[i]);
            let mut out = zero_buf((gend - gstart) as usize, self.align());
            // Copy-on-write parts first, then the new data over them.
            for p in &plans[i..j] {
                if p.zero_fill {
                    continue;
                }
                for (s, e) in [(p.wstart, off.max(p.wstart)), (end.min(p.wend), p.wend)] {
                    if s < e {
                        let old = self.read_guest(s, (e - s) as usize).await?;
                        let at = (s - gstart) as usize;
                        out[at..at + old.len()].copy_from_slice(&old);
                    }
                }
            }
            let rs = off.max(gstart);
            let re = end.min(gend);
            if rs < re {
                let at = (rs - gstart) as usize;
                out[at..at + (re - rs) as usize]
                    .copy_from_slice(&buf[(rs - off) as usize..(re - off) as usize]);
            }
            pwrite_buf(&d, host, out, false).await?;
            i = j;
        }
        Ok(())
    }

    pub(super) async fn flush_inner(&self) -> io::Result<()> {
        let f = self.file();
        let d = self.data();
        let mut m = self.meta.lock().await;
        m.flush(&f, &d).await
    }

    pub(super) async fn do_flush(&self) -> io::Result<()> {
        self.usable()?;
        if !self.writable.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        let r = self.flush_inner().await;
        self.check(r).await
    }

    /// Whether guest range `[off, off+len)` reads as zeroes (cheaply: from
    /// the mapping, and the backing chain's block status).
    async fn reads_zero(&self, off: u64, len: u64) -> io::Result<bool> {
        let mut pos = off;
        let end = off + len;
        while pos < end {
            let e = self.status(pos, end - pos).await?;
            if !e.zero {
                return Ok(false);
            }
            pos += e.len.max(1);
        }
        Ok(true)
    }

    pub(super) async fn do_write_zeroes(
        &self,
        off: u64,
        len: u64,
        flags: ZeroFlags,
    ) -> io::Result<()> {
        self.usable()?;
        let r = self.zeroes_inner(off, len, flags).await;
        self.check(r).await
    }

    pub(super) async fn zeroes_inner(
        &self,
        off: u64,
        len: u64,
        flags: ZeroFlags,
    ) -> io::Result<()> {
        let cs = self.geo.cs;
        // Clusters at the end of the image count as whole.
        let size_end = self.size.load(std::sync::atomic::Ordering::Acquire);
        let end = off + len;
        let mut astart = off.div_ceil(cs) * cs;
        let mut aend = end / cs * cs;
        if end >= size_end {
            aend = end.div_ceil(cs) * cs;
        }
        if astart > aend {
            astart = aend;
        }
        let zero_flag = self.geo.version >= 3;
        let partial = |s: u64, e: u64| (s < e).then_some((s, e));
        let mut parts = Vec::new();
        if zero_flag && astart < aend {
            parts.extend(partial(off, astart.min(end)));
            parts.extend(partial(aend.max(off), end));
        } else {
            parts.push((off, end));
            astart = 0;
            aend = 0;
        }
        for (s, e) in parts {
            let cstart = s & !(cs - 1);
            let cend = (e.div_ceil(cs) * cs).min(size_end.div_ceil(512) * 512);
            if self.reads_zero(s, e - s).await? || self.reads_zero(cstart, cend - cstart).await? {
                continue;
            }
            if flags.no_fallback {
                return Err(io::Error::from_raw_os_error(libc::ENOTSUP));
            }
            // Write zero buffers in bounded pieces.
            let mut p = s;
            while p < e {
                let n = (e - p).min(1 << 20);
                self.write_inner(p, zero_buf(n as usize, self.align()), false)
                    .await?;
                p += n;
            }
        }
        if astart < aend {
            self.zero_clusters(astart, aend, flags.may_unmap, false)
                .await?;
            let zend = aend.min(size_end);
            if self.geo.data_raw && astart < zend {
                pzero(&self.data(), astart, zend - astart, flags.may_unmap).await?;
            }
        }
        if flags.fua {
            self.flush_inner().await?;
        }
        Ok(())
    }

    /// Sets whole clusters `[start, end)` to read as zeroes (v3). With
    /// `all`, clusters without an L2 table get zero entries too (what a
    /// zero-writing resize leaves behind).
    pub(super) async fn zero_clusters(
        &self,
        start: u64,
        end: u64,
        unmap: bool,
        all: bool,
    ) -> io::Result<()> {
        let (c0, c1) = self.cluster_range(start, end - start);
        let _g = self.locks.lock(c0, c1, true).await;
        self.remap(start, end, all, |q, e| {
            let owned = !e.compressed() && e.copied() && e.host() != 0;
            let keep = owned && !unmap;
            if q.geo.ext_l2 {
                let raw = if keep { e.raw } else { 0 };
                Some((
                    Entry {
                        raw,
                        bitmap: 0xffff_ffff << 32,
                    },
                    !keep,
                ))
            } else {
                let raw = if keep { e.host() | COPIED | ZERO } else { ZERO };
                Some((Entry { raw, bitmap: 0 }, !keep))
            }
        })
        .await
    }

    /// Changes the L2 entries of whole clusters `[start, end)` with `f`,
    /// which returns the new entry and whether the old data reference is
    /// dropped; `None` leaves the entry. Clusters that read as zeroes
    /// without a table and without backing are skipped unless `all`.
    pub(super) async fn remap(
        &self,
        start: u64,
        end: u64,
        all: bool,
        f: impl Fn(&Qcow2, Entry) -> Option<(Entry, bool)>,
    ) -> io::Result<()> {
        let file = self.file();
        let d = self.data();
        let cs = self.geo.cs;
        let has_backing = self.backing().is_some();
        let per_l2 = cs * self.geo.l2_entries;
        let mut pos = start;
        while pos < end {
            let mut m = self.meta.lock().await;
            // Bounded batches, so requests in between get the lock.
            let batch_end = end.min((pos / per_l2 + 1) * per_l2);
            let (l1i, _) = m.split(pos);
            if !all && !has_backing && m.l2_table(l1i)? == 0 {
                pos = batch_end;
                continue;
            }
            while pos < batch_end {
                let e = match m.entry(&file, &d, pos).await? {
                    Some((_, e)) => e,
                    None => Entry { raw: 0, bitmap: 0 },
                };
                if let Some((ne, drop_old)) = f(self, e) {
                    if ne != e {
                        m.ensure_l2(&file, &d, pos).await?;
                        m.set_entry(&file, &d, pos, ne).await?;
                        if drop_old {
                            m.release_entry(e, FreeKind::Request);
                        }
                    }
                }
                pos += cs;
            }
            if m.pending.len() > 4096 {
                m.write_back(&file, &d).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn do_discard(&self, off: u64, len: u64) -> io::Result<()> {
        self.usable()?;
        let r = self.discard_inner(off, len).await;
        self.check(r).await
    }

    async fn discard_inner(&self, off: u64, len: u64) -> io::Result<()> {
        let cs = self.geo.cs;
        let size_end = self.size.load(std::sync::atomic::Ordering::Acquire);
        let start = off.div_ceil(cs) * cs;
        let mut end = (off + len) / cs * cs;
        if off + len >= size_end {
            end = (off + len).div_ceil(cs) * cs;
        }
        if start >= end {
            return Ok(());
        }
        let no_unref = self.discard_no_unref;
        let has_backing = self.backing().is_some();
        let pass_request = self.meta.lock().await.pass_discard.0;
        let (c0, c1) = self.cluster_range(start, end - start);
        let _g = self.locks.lock(c0, c1, true).await;
        let kept = std::sync::Mutex::new(Vec::new());
        self.remap(start, end, false, |q, e| {
            let allocated = e.raw != 0 || e.bitmap & 0xffff_ffff != 0;
            if !allocated && !has_backing {
                return None;
            }
            let owned = !e.compressed() && e.copied() && e.host() != 0;
            if no_unref && owned {
                kept.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(e.host());
                return Some(if q.geo.ext_l2 {
                    (
                        Entry {
                            raw: e.raw,
                            bitmap: 0xffff_ffff << 32,
                        },
                        false,
                    )
                } else if q.geo.version >= 3 {
                    (
                        Entry {
                            raw: e.host() | COPIED | ZERO,
                            bitmap: 0,
                        },
                        false,
                    )
                } else {
                    (e, false)
                });
            }
            Some(if q.geo.ext_l2 {
                (
                    Entry {
                        raw: 0,
                        bitmap: 0xffff_ffff << 32,
                    },
                    true,
                )
            } else if q.geo.version >= 3 {
                (
                    Entry {
                        raw: ZERO,
                        bitmap: 0,
                    },
                    true,
                )
            } else {
                (Entry { raw: 0, bitmap: 0 }, true)
            })
        })
        .await?;
        if self.geo.data_raw {
            // The raw data file must read as the disk does: zeroes.
            let zend = end.min(size_end);
            if start < zend {
                pzero(&self.data(), start, zend - start, true).await?;
            }
        }
        if pass_request {
            let d = self.data();
            let hosts = kept.into_inner().unwrap_or_else(|p| p.into_inner());
            for h in hosts {
                let _ = pdiscard(&d, h, cs).await;
            }
        }
        Ok(())
    }

    /// Block status of the range at `off` (its first extent).
    pub(super) async fn status(&self, off: u64, len: u64) -> io::Result<Extent> {
        let cs = self.geo.cs;
        let per_l2 = cs * self.geo.l2_entries;
        // Look at most to the end of the L2 table.
        let lim = len.min((off / per_l2 + 1) * per_l2 - off);
        let segs = self.map_ext(off, lim, true).await?;
        let first = segs.first().copied().ok_or_else(eio)?;
        let class = |k: Kind| match k {
            Kind::Data(_) | Kind::Compressed(_) => 0,
            Kind::Zero => 1,
            Kind::Unalloc => 2,
        };
        let mut n = 0;
        for s in &segs {
            if class(s.kind) != class(first.kind) {
                break;
            }
            n += s.len;
        }
        Ok(match first.kind {
            Kind::Data(_) | Kind::Compressed(_) => Extent {
                len: n,
                zero: false,
                data: true,
                depth: 1,
            },
            Kind::Zero => Extent {
                len: n,
                zero: true,
                data: false,
                depth: 1,
            },
            Kind::Unalloc => match self.backing() {
                Some(b) if off < b.size() => {
                    let e = b.block_status(off, n.min(b.size() - off)).await?;
                    Extent {
                        depth: if e.depth > 0 { e.depth + 1 } else { 0 },
                        ..e
                    }
                }
                _ => Extent {
                    len: n,
                    zero: true,
                    data: false,
                    depth: 0,
                },
            },
        })
    }

    pub(super) async fn do_status(&self, off: u64, len: u64) -> io::Result<Extent> {
        self.usable()?;
        let r = self.status(off, len).await;
        self.check(r).await
    }
}
