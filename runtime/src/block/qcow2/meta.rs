//! The metadata state of an open image: the L1 table, the L2 and refcount
//! caches, and the rules for changing them so that the image on disk is
//! consistent whenever the process dies (leaks are allowed, references
//! to free clusters never):
//!
//! - a new cluster gets its refcount in the refcount cache before anything
//!   points to it; dirty refcount blocks always reach the disk (and are
//!   flushed) before dirty L2 tables;
//! - guest data is written before the L2 entry that points to it changes;
//! - a new L2 table (or refcount block, or table) is written out before the
//!   L1 entry (or refcount table entry, or header field) that points to it;
//! - a cluster that goes out of use is not decremented at once: the
//!   decrement waits in `pending` until the metadata that no longer
//!   refers to it is on disk.
//!
//! [`Meta`] lives behind the driver's asynchronous mutex; its methods may
//! do metadata I/O but never guest data I/O.

use std::io;

use super::cache::Cache;
use super::child::{pflush, pread, pwrite};
use super::{corruption, hx, Geo};
use crate::block::BlockNode;

/// L1/L2 entry bits.
pub const COPIED: u64 = 1 << 63;
pub const COMPRESSED: u64 = 1 << 62;
pub const ZERO: u64 = 1;
pub const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;

/// Why a cluster is released (which `pass-discard-*` option applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeKind {
    /// A discard request.
    Request,
    /// Anything else (copy-on-write, replaced tables).
    Other,
}

/// How a guest cluster (or subcluster) is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Not allocated here: read from the backing chain.
    Unalloc,
    /// Reads as zeroes.
    Zero,
    /// Data at this host offset (of the start of the range).
    Data(u64),
    /// A compressed cluster: the raw L2 entry.
    Compressed(u64),
}

/// A run of guest bytes with one mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seg {
    pub off: u64,
    pub len: u64,
    pub kind: Kind,
}

/// What the read path's lookup found.
pub enum Lookup {
    /// The mapping of the whole range.
    Done(Vec<Seg>),
    /// The mapping of a first part of the range; the L2 slice at this
    /// offset must be loaded for the rest.
    Need(Vec<Seg>, u64),
}

/// Appends `s` to `segs`, merging it with the last one when they join.
pub fn append_seg(segs: &mut Vec<Seg>, s: Seg) {
    if let Some(last) = segs.last_mut() {
        let merge = match (last.kind, s.kind) {
            (Kind::Unalloc, Kind::Unalloc) | (Kind::Zero, Kind::Zero) => true,
            (Kind::Data(a), Kind::Data(b)) => a + last.len == b,
            _ => false,
        };
        if merge && last.off + last.len == s.off {
            last.len += s.len;
            return;
        }
    }
    segs.push(s);
}

/// The L2 entry of one guest cluster, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub raw: u64,
    pub bitmap: u64,
}

impl Entry {
    pub fn host(&self) -> u64 {
        self.raw & OFFSET_MASK
    }
    pub fn compressed(&self) -> bool {
        self.raw & COMPRESSED != 0
    }
    pub fn copied(&self) -> bool {
        self.raw & COPIED != 0
    }
}

/// See the module documentation.
pub struct Meta {
    pub geo: Geo,
    pub l1: Vec<u64>,
    pub l1_offset: u64,
    pub rt: Vec<u64>,
    pub rt_offset: u64,
    pub rt_clusters: u64,
    pub l2: Cache,
    pub rb: Cache,
    /// Decrements waiting for the metadata that dropped the reference to
    /// reach the disk: (host offset, clusters, why).
    pub pending: Vec<(u64, u64, FreeKind)>,
    /// Clusters below this index are known to be in use.
    pub free_hint: u64,
    /// Host clusters at or past this offset were never written.
    pub file_end: u64,
    /// Current incompatible feature bits.
    pub incompat: u64,
    pub autoclear: u64,
    /// Snapshot table (offset, bytes) for overlap checks.
    pub snap_table: (u64, u64),
    /// Changes when L2 slices are written back or dropped (read-path
    /// loads outside the lock check it).
    pub l2_epoch: u64,
    /// Pass discards of freed clusters on to the file: (request, other).
    pub pass_discard: (bool, bool),
    /// Offsets of the refcount blocks and active L2 tables, for the
    /// overlap checks of new allocations.
    pub tables: Tables,
}

/// See [`Meta::tables`].
#[derive(Debug, Default)]
pub struct Tables {
    pub blocks: std::collections::HashSet<u64>,
    pub l2: std::collections::HashSet<u64>,
}

impl Tables {
    /// The tables of an L1 table and a refcount table.
    pub fn index(l1: &[u64], rt: &[u64]) -> Tables {
        Tables {
            blocks: rt.iter().map(|e| e & !0x1ff).filter(|o| *o != 0).collect(),
            l2: l1
                .iter()
                .map(|e| e & OFFSET_MASK)
                .filter(|o| *o != 0)
                .collect(),
        }
    }
}

pub(super) fn be64(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i * 8..i * 8 + 8]);
    u64::from_be_bytes(a)
}

pub(super) fn put64(b: &mut [u8], i: usize, v: u64) {
    b[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
}

impl Meta {
    pub(super) fn cs(&self) -> u64 {
        self.geo.cs
    }

    /// Guest offset → (L1 index, index in the L2 table).
    pub fn split(&self, guest: u64) -> (u64, u64) {
        let c = guest >> self.geo.cluster_bits;
        (c / self.geo.l2_entries, c % self.geo.l2_entries)
    }

    /// The L2 table offset of L1 entry `l1i` (0: none), checked.
    pub fn l2_table(&self, l1i: u64) -> io::Result<u64> {
        let e = self.l1.get(l1i as usize).copied().unwrap_or(0);
        let off = e & OFFSET_MASK;
        if !off.is_multiple_of(self.cs()) {
            return Err(corruption(
                format!(
                    "L2 table offset {} unaligned (L1 index: {})",
                    hx(off),
                    hx(l1i)
                ),
                None,
            ));
        }
        Ok(off)
    }

    /// Cache key of the slice holding entry `idx` of the table at `l2`,
    /// and the index within the slice.
    pub fn slice_of(&self, l2: u64, idx: u64) -> (u64, usize) {
        let se = self.geo.slice_entries;
        let s = idx / se;
        (l2 + s * se * self.geo.l2_entry_size, (idx % se) as usize)
    }

    /// Entry `i` of a cached slice.
    fn entry_in(&mut self, key: u64, i: usize) -> Option<Entry> {
        let ext = self.geo.ext_l2;
        self.l2.get(key).map(|b| {
            if ext {
                Entry {
                    raw: be64(b, 2 * i),
                    bitmap: be64(b, 2 * i + 1),
                }
            } else {
                Entry {
                    raw: be64(b, i),
                    bitmap: 0,
                }
            }
        })
    }

    /// Loads the slice `key` into the cache (making room first).
    pub async fn load_slice(
        &mut self,
        f: &BlockNode,
        data: &BlockNode,
        key: u64,
    ) -> io::Result<()> {
        if self.l2.contains(key) {
            return Ok(());
        }
        let b = pread(f, key, self.l2.entry_size).await?;
        self.insert_slice(f, data, key, b.to_vec()).await
    }

    /// Adds a slice read from disk, making room in the cache.
    pub async fn insert_slice(
        &mut self,
        f: &BlockNode,
        data: &BlockNode,
        key: u64,
        bytes: Vec<u8>,
    ) -> io::Result<()> {
        if self.l2.contains(key) {
            return Ok(());
        }
        if !self.l2.make_room() {
            self.write_back(f, data).await?;
            self.l2.make_room();
        }
        self.l2.insert(key, bytes, false);
        Ok(())
    }

    /// The entry of guest cluster `gc` for the write path (loads its
    /// slice); `None` if there is no L2 table.
    pub async fn entry(
        &mut self,
        f: &BlockNode,
        data: &BlockNode,
        guest: u64,
    ) -> io::Result<Option<(u64, Entry)>> {
        let (l1i, l2i) = self.split(guest);
        let l2 = self.l2_table(l1i)?;
        if l2 == 0 {
            return Ok(None);
        }
        let (key, i) = self.slice_of(l2, l2i);
        self.load_slice(f, data, key).await?;
        Ok(self.entry_in(key, i).map(|e| (l2, e)))
    }

    /// Sets the entry of guest cluster `guest`, whose L2 table must exist
    /// (see [`Meta::ensure_l2`]).
    pub async fn set_entry(
        &mut self,
        f: &BlockNode,
        data: &BlockNode,
        guest: u64,
        e: Entry,
    ) -> io::Result<()> {
        let (l1i, l2i) = self.split(guest);
        let l2 = self.l2_table(l1i)?;
        let (key, i) = self.slice_of(l2, l2i);
        self.load_slice(f, data, key).await?;
        let ext = self.geo.ext_l2;
        if let Some(b) = self.l2.get_mut(key) {
            if ext {
                put64(b, 2 * i, e.raw);
                put64(b, 2 * i + 1, e.bitmap);
            } else {
                put64(b, i, e.raw);
            }
        }
        Ok(())
    }

    /// Maps `[off, off+len)` from cached tables only (the read path);
    /// asks for a slice load on a miss.
    pub fn lookup(&mut self, off: u64, len: u64) -> io::Result<Lookup> {
        self.lookup_ext(off, len, false)
    }

    /// [`Meta::lookup`]; with `first_only`, stops once the mapping changes
    /// between data, zero and unallocated (block status needs no more).
    pub fn lookup_ext(&mut self, off: u64, len: u64, first_only: bool) -> io::Result<Lookup> {
        let class = |k: Kind| match k {
            Kind::Data(_) | Kind::Compressed(_) => 0,
            Kind::Zero => 1,
            Kind::Unalloc => 2,
        };
        let changed = |segs: &[Seg]| {
            first_only && segs.len() > 1 && class(segs[0].kind) != class(segs[segs.len() - 1].kind)
        };
        let mut segs: Vec<Seg> = Vec::new();
        let mut pos = off;
        let end = off + len;
        let cs = self.cs();
        let per_l2 = cs * self.geo.l2_entries;
        let ext = self.geo.ext_l2;
        while pos < end {
            let (l1i, l2i) = self.split(pos);
            let region_end = end.min((pos / per_l2 + 1) * per_l2);
            let l2 = if (l1i as usize) < self.l1.len() {
                self.l2_table(l1i)?
            } else {
                0
            };
            if l2 == 0 {
                // No table: the whole region is unallocated.
                match segs.last_mut() {
                    Some(l) if l.kind == Kind::Unalloc && l.off + l.len == pos => {
                        l.len += region_end - pos
                    }
                    _ => segs.push(Seg {
                        off: pos,
                        len: region_end - pos,
                        kind: Kind::Unalloc,
                    }),
                }
                pos = region_end;
                if changed(&segs) {
                    break;
                }
                continue;
            }
            let (key, _) = self.slice_of(l2, l2i);
            if !self.l2.contains(key) {
                return Ok(Lookup::Need(segs, key));
            }
            self.l2.touch(key);
            let se = self.geo.slice_entries;
            let slice_end = region_end.min(((pos / cs) / se + 1) * se * cs);
            let b = self.l2.peek(key).unwrap_or_default();
            while pos < slice_end {
                let cstart = pos & !(cs - 1);
                let cend = (cstart + cs).min(end);
                let (_, l2i) = self.split(pos);
                let i = (l2i % se) as usize;
                let entry = if ext {
                    Entry {
                        raw: be64(b, 2 * i),
                        bitmap: be64(b, 2 * i + 1),
                    }
                } else {
                    Entry {
                        raw: be64(b, i),
                        bitmap: 0,
                    }
                };
                self.classify(entry, l2, l2i, cstart, pos, cend, &mut segs)?;
                pos = cend;
                if changed(&segs) {
                    return Ok(Lookup::Done(segs));
                }
            }
        }
        Ok(Lookup::Done(segs))
    }

    /// Appends the segments of `[pos, cend)` inside the guest cluster at
    /// `cstart` mapped by `e`.
    #[allow(clippy::too_many_arguments)]
    pub fn classify(
        &self,
        e: Entry,
        l2: u64,
        l2i: u64,
        cstart: u64,
        pos: u64,
        cend: u64,
        segs: &mut Vec<Seg>,
    ) -> io::Result<()> {
        let cs = self.cs();
        let push = |segs: &mut Vec<Seg>, off: u64, len: u64, kind: Kind| {
            if let Some(last) = segs.last_mut() {
                let merge = match (last.kind, kind) {
                    (Kind::Unalloc, Kind::Unalloc) | (Kind::Zero, Kind::Zero) => true,
                    (Kind::Data(a), Kind::Data(b)) => a + last.len == b,
                    _ => false,
                };
                if merge && last.off + last.len == off {
                    last.len += len;
                    return;
                }
            }
            segs.push(Seg { off, len, kind });
        };
        let bad = |what: &str| {
            corruption(
                format!("{what} (L2 offset: {}, L2 index: {})", hx(l2), hx(l2i)),
                None,
            )
        };
        if e.compressed() {
            if self.geo.external_data {
                return Err(bad(
                    "Compressed cluster entry found in image with external data file",
                ));
            }
            if e.bitmap != 0 && self.geo.ext_l2 {
                return Err(bad("Invalid cluster entry found "));
            }
            push(segs, pos, cend - pos, Kind::Compressed(e.raw));
            return Ok(());
        }
        let host = e.host();
        if !host.is_multiple_of(cs) {
            return Err(corruption(
                format!(
                    "Cluster allocation offset {} unaligned (L2 offset: {}, L2 index: {})",
                    hx(host),
                    hx(l2),
                    hx(l2i)
                ),
                None,
            ));
        }
        let data_ok = host != 0 || (self.geo.external_data && e.copied());
        if !self.geo.ext_l2 {
            let kind = if self.geo.version >= 3 && e.raw & ZERO != 0 {
                Kind::Zero
            } else if data_ok {
                Kind::Data(host + (pos - cstart))
            } else if e.raw != 0 {
                return Err(bad("Invalid cluster entry found "));
            } else {
                Kind::Unalloc
            };
            push(segs, pos, cend - pos, kind);
            return Ok(());
        }
        if e.raw & ZERO != 0 || (e.bitmap & (e.bitmap >> 32) & 0xffff_ffff) != 0 {
            return Err(bad("Invalid cluster entry found "));
        }
        let scs = cs / 32;
        let mut p = pos;
        while p < cend {
            let sc = (p - cstart) / scs;
            let send = (cstart + (sc + 1) * scs).min(cend);
            let kind = if e.bitmap & (1 << sc) != 0 {
                if !data_ok {
                    return Err(bad("Invalid cluster entry found "));
                }
                Kind::Data(host + (p - cstart))
            } else if e.bitmap & (1 << (sc + 32)) != 0 {
                Kind::Zero
            } else {
                Kind::Unalloc
            };
            push(segs, p, send - p, kind);
            p = send;
        }
        Ok(())
    }

    /// Queues the release of `n` clusters at `off` (see the module
    /// documentation).
    pub fn free_later(&mut self, off: u64, n: u64, kind: FreeKind) {
        if n > 0 {
            self.pending.push((off, n, kind));
        }
    }

    /// The host clusters a compressed L2 entry uses: (first offset, count).
    pub fn compressed_span(&self, raw: u64) -> (u64, u64) {
        let (off, len) = self.geo.compressed_range(raw);
        let cs = self.cs();
        let first = off & !(cs - 1);
        let last = (off + len - 1) & !(cs - 1);
        (first, (last - first) / cs + 1)
    }

    /// Drops the data reference of an L2 entry that is being replaced.
    pub fn release_entry(&mut self, e: Entry, kind: FreeKind) {
        if self.geo.external_data {
            return;
        }
        if e.compressed() {
            let (first, n) = self.compressed_span(e.raw);
            for k in 0..n {
                self.free_later(first + k * self.cs(), 1, kind);
            }
        } else if e.host() != 0 {
            self.free_later(e.host(), 1, kind);
        }
    }

    /// Writes back all dirty metadata in dependency order, then applies
    /// the pending decrements (which stay dirty in the refcount cache).
    pub async fn write_back(&mut self, f: &BlockNode, data: &BlockNode) -> io::Result<()> {
        let l2_dirty = self.l2.has_dirty();
        if self.write_blocks(f).await? || l2_dirty {
            pflush(f).await?;
        }
        if l2_dirty && !std::ptr::eq(f, data) {
            pflush(data).await?;
        }
        let d = self.l2.dirty();
        if !d.is_empty() {
            self.l2_epoch += 1;
        }
        for (off, b) in d {
            pwrite(f, off, &b).await?;
            self.l2.mark_clean(off, &b);
        }
        if !self.pending.is_empty() {
            pflush(f).await?;
            let pending = std::mem::take(&mut self.pending);
            let cs = self.cs();
            for (off, n, kind) in pending {
                for k in 0..n {
                    let c = off / cs + k;
                    let v = self.add_refcount(f, c, -1).await?;
                    if v == 0 {
                        self.free_hint = self.free_hint.min(c);
                        let pass = match kind {
                            FreeKind::Request => self.pass_discard.0,
                            FreeKind::Other => self.pass_discard.1,
                        };
                        if pass {
                            let _ =
                                super::child::pdiscard(data_for(f, data, self), c * cs, cs).await;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether nothing waits in the caches to be written back.
    pub fn is_clean(&self) -> bool {
        self.pending.is_empty() && !self.l2.has_dirty() && !self.rb.has_dirty()
    }

    /// Writes everything back and flushes the file (a guest flush).
    pub async fn flush(&mut self, f: &BlockNode, data: &BlockNode) -> io::Result<()> {
        self.write_back(f, data).await?;
        self.write_blocks(f).await?;
        pflush(f).await?;
        if !std::ptr::eq(f, data) {
            pflush(data).await?;
        }
        Ok(())
    }

    /// Makes sure guest cluster `guest` has an L2 table with refcount 1
    /// (allocating or copying one); returns its offset.
    pub async fn ensure_l2(
        &mut self,
        f: &BlockNode,
        data: &BlockNode,
        guest: u64,
    ) -> io::Result<u64> {
        let (l1i, _) = self.split(guest);
        if l1i as usize >= self.l1.len() {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let old = self.l2_table(l1i)?;
        let cur = self.l1[l1i as usize];
        if old != 0 && cur & COPIED != 0 {
            return Ok(old);
        }
        let cs = self.cs();
        let (new, _) = self.alloc(f, 1).await?;
        self.check_overlap(new, cs, true)?;
        let mut t = vec![0u8; cs as usize];
        if old != 0 {
            // Copy the shared table; its data clusters keep their counts.
            let se = self.geo.slice_entries;
            let slices = self.geo.l2_entries / se;
            for s in 0..slices {
                let key = old + s * se * self.geo.l2_entry_size;
                self.load_slice(f, data, key).await?;
                let b = self.l2.get(key).map(|b| b.to_vec()).unwrap_or_default();
                let start = (key - old) as usize;
                t[start..start + b.len()].copy_from_slice(&b);
            }
            for s in 0..slices {
                self.l2.remove(old + s * se * self.geo.l2_entry_size);
            }
            self.l2_epoch += 1;
        }
        // Refcount first, then the table, then the L1 entry.
        if self.write_blocks(f).await? {
            pflush(f).await?;
        }
        pwrite(f, new, &t).await?;
        pflush(f).await?;
        let e = new | COPIED;
        pwrite(f, self.l1_offset + l1i * 8, &e.to_be_bytes()).await?;
        self.l1[l1i as usize] = e;
        self.tables.l2.insert(new);
        if old != 0 {
            self.tables.l2.remove(&old);
            self.free_later(old, 1, FreeKind::Other);
        }
        let se_bytes = (self.geo.slice_entries * self.geo.l2_entry_size) as usize;
        for (k, chunk) in t.chunks(se_bytes).enumerate() {
            let key = new + (k * se_bytes) as u64;
            self.insert_slice(f, data, key, chunk.to_vec()).await?;
        }
        Ok(new)
    }

    /// QEMU's metadata overlap check for a write of `len` bytes at host
    /// offset `off` in the image file: an error naming the structure hit.
    pub fn check_overlap(&self, off: u64, len: u64, full: bool) -> io::Result<()> {
        let cs = self.cs();
        let hit = |a: u64, l: u64| l > 0 && off < a.saturating_add(l) && a < off + len;
        let what = if hit(0, cs) {
            Some("qcow2_header")
        } else if hit(self.l1_offset, self.l1.len() as u64 * 8) {
            Some("active L1 table")
        } else if hit(self.rt_offset, self.rt_clusters * cs) {
            Some("refcount table")
        } else if hit(self.snap_table.0, self.snap_table.1) {
            Some("snapshot table")
        } else if full && self.any_table(&self.tables.blocks, off, len) {
            Some("refcount block")
        } else if full && self.any_table(&self.tables.l2, off, len) {
            Some("active L2 table")
        } else {
            None
        };
        match what {
            Some(w) => Err(corruption(
                format!("Preventing invalid write on metadata (overlaps with {w})"),
                Some((off, len)),
            )),
            None => Ok(()),
        }
    }

    /// Whether a cluster of `[off, off+len)` is in `set`.
    fn any_table(&self, set: &std::collections::HashSet<u64>, off: u64, len: u64) -> bool {
        let cs = self.cs();
        let mut c = off & !(cs - 1);
        while c < off + len {
            if set.contains(&c) {
                return true;
            }
            c += cs;
        }
        false
    }

    /// Grows the L1 table to `entries` (copying it to new clusters).
    pub async fn grow_l1(&mut self, f: &BlockNode, entries: u64) -> io::Result<()> {
        if entries <= self.l1.len() as u64 {
            return Ok(());
        }
        if entries * 8 > super::header::MAX_L1_BYTES {
            return Err(io::Error::from_raw_os_error(libc::EFBIG));
        }
        let cs = self.cs();
        let n = (entries * 8).div_ceil(cs);
        let (new, _) = self.alloc(f, n).await?;
        // Only the entries are written (the rest of the clusters is unused).
        let mut t = vec![0u8; (entries * 8) as usize];
        for (i, e) in self.l1.iter().enumerate() {
            put64(&mut t, i, *e);
        }
        if self.write_blocks(f).await? {
            pflush(f).await?;
        }
        pwrite(f, new, &t).await?;
        pflush(f).await?;
        let mut h = [0u8; 12];
        h[..4].copy_from_slice(&(entries as u32).to_be_bytes());
        h[4..].copy_from_slice(&new.to_be_bytes());
        pwrite(f, super::header::OFF_L1, &h).await?;
        pflush(f).await?;
        let old = (self.l1_offset, (self.l1.len() as u64 * 8).div_ceil(cs));
        self.l1.resize(entries as usize, 0);
        self.l1_offset = new;
        if old.0 != 0 && old.1 > 0 {
            self.free_later(old.0, old.1, FreeKind::Other);
        }
        Ok(())
    }
}

/// The node that holds guest data clusters.
fn data_for<'a>(f: &'a BlockNode, data: &'a BlockNode, m: &Meta) -> &'a BlockNode {
    if m.geo.external_data {
        data
    } else {
        f
    }
}
