//! Formatting a new qcow2 image (the work of `blockdev-create`).
//!
//! The layout is QEMU's: the header in cluster 0, the refcount table in
//! cluster 1, the first refcount block in cluster 2, then the L1 table
//! (only its entries are written), then, with preallocation, L2 tables
//! and data clusters as the allocator hands them out.

use std::io;

use qapi::types::PreallocMode;

use super::cache::Cache;
use super::child::{pflush, pwrite, pzero};
use super::header::{self, Header};
use super::meta::{Entry, Meta, COPIED};
use super::refcount::rc_set;
use super::Geo;
use crate::block::BlockNode;

/// What the new image looks like.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub version: u32,
    pub cluster_bits: u32,
    pub refcount_order: u32,
    pub size: u64,
    pub lazy_refcounts: bool,
    pub extended_l2: bool,
    /// 0 zlib, 1 zstd.
    pub compression: u8,
    pub backing_file: Option<String>,
    pub backing_format: Option<String>,
    /// Name of the external data file recorded in the header.
    pub data_file: Option<String>,
    pub external_data: bool,
    pub data_raw: bool,
    pub prealloc: PreallocMode,
}

/// Builds the metadata state of a freshly written image.
pub fn meta_for(h: &Header, l1: Vec<u64>, rt: Vec<u64>, file_end: u64) -> Meta {
    let cs = h.cluster_size();
    let geo = Geo {
        version: h.version,
        cluster_bits: h.cluster_bits,
        cs,
        ext_l2: h.extended_l2(),
        l2_entries: h.l2_entries(),
        l2_entry_size: h.l2_entry_size(),
        slice_entries: h.l2_entries(),
        refcount_order: h.refcount_order,
        rb_entries: cs * 8 / (1u64 << h.refcount_order),
        external_data: h.incompatible & header::INCOMPAT_DATA_FILE != 0,
        data_raw: h.autoclear & header::AUTOCLEAR_DATA_FILE_RAW != 0,
        compression: h.compression_type,
    };
    let mut m = Meta {
        geo,
        l1,
        l1_offset: h.l1_table_offset,
        rt,
        rt_offset: h.refcount_table_offset,
        rt_clusters: h.refcount_table_clusters as u64,
        l2: Cache::new(64, cs as usize),
        rb: Cache::new(16, cs as usize),
        pending: Vec::new(),
        free_hint: 0,
        file_end,
        incompat: h.incompatible,
        autoclear: h.autoclear,
        snap_table: (0, 0),
        l2_epoch: 0,
        pass_discard: (false, false),
        tables: Default::default(),
    };
    m.tables = super::meta::Tables::index(&m.l1, &m.rt);
    m
}

fn io_text(what: &str, e: &io::Error) -> String {
    format!("{what}: {}", crate::block::file::strerror(e))
}

/// Writes a new image on `file` (and `data`, the external data file).
pub async fn format(
    file: &BlockNode,
    data: Option<&BlockNode>,
    n: &NewImage,
) -> Result<(), String> {
    let cs = 1u64 << n.cluster_bits;
    let mut incompat = 0;
    if n.extended_l2 {
        incompat |= header::INCOMPAT_EXTL2;
    }
    if n.external_data {
        incompat |= header::INCOMPAT_DATA_FILE;
    }
    if n.compression != 0 {
        incompat |= header::INCOMPAT_COMPRESSION;
    }
    let mut h = Header {
        version: n.version,
        cluster_bits: n.cluster_bits,
        refcount_table_offset: cs,
        refcount_table_clusters: 1,
        incompatible: incompat,
        compatible: if n.lazy_refcounts {
            header::COMPAT_LAZY_REFCOUNTS
        } else {
            0
        },
        autoclear: if n.data_raw {
            header::AUTOCLEAR_DATA_FILE_RAW
        } else {
            0
        },
        refcount_order: n.refcount_order,
        header_length: if n.version >= 3 { 112 } else { 72 },
        compression_type: n.compression,
        backing_file: n.backing_file.clone(),
        backing_format: n.backing_format.clone(),
        data_file: n.data_file.clone(),
        ..Header::default()
    };
    if header::serialized_len(&h) > cs as usize {
        return Err(format!(
            "Could not write qcow2 header: {}",
            crate::block::file::strerror(&io::Error::from_raw_os_error(libc::ENOSPC))
        ));
    }
    let w = |e: io::Error| io_text("Could not write qcow2 header", &e);
    // The header as QEMU first writes it (no size, no L1), the refcount
    // table and its first block, counting clusters 0 to 2.
    let mut first = h.clone();
    first.backing_file = None;
    first.backing_format = None;
    first.data_file = None;
    pwrite(file, 0, &header::serialize(&first))
        .await
        .map_err(w)?;
    let mut tables = vec![0u8; 2 * cs as usize];
    tables[..8].copy_from_slice(&(2 * cs).to_be_bytes());
    for c in 0..3 {
        rc_set(&mut tables[cs as usize..], c, n.refcount_order, 1);
    }
    pwrite(file, cs, &tables)
        .await
        .map_err(|e| io_text("Could not write refcount table", &e))?;
    let mut rt = vec![0u64; (cs / 8) as usize];
    rt[0] = 2 * cs;
    let mut m = meta_for(&h, Vec::new(), rt, 3 * cs);
    let data_node = data.unwrap_or(file);
    let r: io::Result<()> = async {
        let l1 = h.size_to_l1(n.size);
        if l1 > 0 {
            m.grow_l1(file, l1).await?;
        }
        // A raw external data file needs every cluster mapped.
        let prealloc = if n.data_raw && n.prealloc == PreallocMode::Off {
            PreallocMode::Metadata
        } else {
            n.prealloc
        };
        if prealloc != PreallocMode::Off {
            let n = &NewImage {
                prealloc,
                ..n.clone()
            };
            preallocate(&mut m, file, data_node, n).await?;
        }
        m.flush(file, data_node).await?;
        Ok(())
    }
    .await;
    r.map_err(|e| {
        let t = if e.raw_os_error() == Some(libc::EFBIG) {
            "Failed to grow the L1 table: File too large".to_string()
        } else {
            crate::block::file::strerror(&e)
        };
        format!("Could not resize image: {t}")
    })?;
    h.size = n.size;
    h.l1_size = m.l1.len() as u32;
    h.l1_table_offset = m.l1_offset;
    h.refcount_table_offset = m.rt_offset;
    h.refcount_table_clusters = m.rt_clusters as u32;
    let mut b = header::serialize(&h);
    // Only the header part changes: keep the rest of cluster 0 as is.
    let used = header::serialized_len(&h).max(112);
    b.truncate(used.div_ceil(8) * 8);
    pwrite(file, 0, &b).await.map_err(w)?;
    pflush(file).await.map_err(w)?;
    if let Some(d) = data {
        if n.data_raw && d.driver().size() < n.size {
            d.driver()
                .truncate(n.size)
                .await
                .map_err(|e| io_text("Could not resize data file", &e))?;
        }
        pflush(d).await.map_err(w)?;
    }
    Ok(())
}

/// `preallocation=metadata|falloc|full`: every guest cluster gets its L2
/// entry and a host cluster (the data file's own offset with an external
/// data file); `falloc` and `full` also reserve or zero the data.
async fn preallocate(
    m: &mut Meta,
    file: &BlockNode,
    data: &BlockNode,
    n: &NewImage,
) -> io::Result<()> {
    let cs = m.geo.cs;
    let clusters = n.size.div_ceil(cs);
    let per_l2 = m.geo.l2_entries;
    let mut c = 0;
    while c < clusters {
        let guest = c * cs;
        m.ensure_l2(file, data, guest).await?;
        let run = (per_l2 - c % per_l2).min(clusters - c);
        let (host, _) = if m.geo.external_data {
            (guest, false)
        } else {
            m.alloc(file, run).await?
        };
        for k in 0..run {
            let h = host + k * cs;
            let e = if m.geo.ext_l2 {
                Entry {
                    raw: h | COPIED,
                    bitmap: if n.extended_l2 && n.backing_file.is_some() {
                        0
                    } else {
                        0xffff_ffff
                    },
                }
            } else {
                Entry {
                    raw: h | COPIED,
                    bitmap: 0,
                }
            };
            m.set_entry(file, data, guest + k * cs, e).await?;
        }
        let end = host + run * cs;
        match n.prealloc {
            PreallocMode::Full => pzero_full(data, host, run * cs).await?,
            PreallocMode::Falloc => pzero(data, host, run * cs, false).await?,
            _ => {
                // Make the data file cover the clusters.
                if data.driver().size() < end {
                    data.driver().truncate(end).await?;
                }
            }
        }
        c += run;
    }
    Ok(())
}

/// Writes zeroes for real (`preallocation=full`).
async fn pzero_full(n: &BlockNode, off: u64, len: u64) -> io::Result<()> {
    let chunk = 1u64 << 20;
    let mut p = off;
    while p < off + len {
        let l = chunk.min(off + len - p);
        pwrite(n, p, &vec![0u8; l as usize]).await?;
        p += l;
    }
    Ok(())
}
