//! An entry point for fuzzing the on-disk structures without I/O: the
//! bytes of an image are parsed (header and extensions, for read-only and
//! read-write opening), and if that succeeds, the L1 table, L2 tables and
//! refcount blocks found in the same bytes are walked the way the driver
//! maps guest ranges and reads refcounts. Nothing may panic or loop.

use super::cache::Cache;
use super::create::meta_for;
use super::header;
use super::meta::{Lookup, OFFSET_MASK};
use super::refcount::rc_get;

/// Bytes of `data` at `off` (zeroes past the end, as the file driver
/// reads them).
fn bytes_at(data: &[u8], off: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    if let Ok(start) = usize::try_from(off) {
        if start < data.len() {
            let n = len.min(data.len() - start);
            v[..n].copy_from_slice(&data[start..start + n]);
        }
    }
    v
}

/// Parses and walks an image held in memory (see the module
/// documentation).
pub fn walk_image(data: &[u8]) {
    let _ = header::parse(data, true);
    let Ok(h) = header::parse(data, false) else {
        return;
    };
    // Bound what is examined, as a fuzzer's inputs are small anyway.
    let l1_len = (h.l1_size as usize).min(4096);
    let l1: Vec<u64> = bytes_at(data, h.l1_table_offset, l1_len * 8)
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()))
        .collect();
    let rt_len = ((h.refcount_table_clusters as u64 * h.cluster_size()) / 8).min(4096) as usize;
    let rt: Vec<u64> = bytes_at(data, h.refcount_table_offset, rt_len * 8)
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()))
        .collect();
    let mut m = meta_for(&h, l1, rt.clone(), data.len() as u64);
    m.l2 = Cache::new(8, m.geo.cs as usize);
    let cs = m.geo.cs;
    let size = h.size.min(64 << 20);
    let mut off = 0;
    let mut steps = 0;
    while off < size && steps < 256 {
        steps += 1;
        let len = (size - off).min(4 * cs);
        match m.lookup(off, len) {
            Ok(Lookup::Done(segs)) => {
                for s in segs {
                    if let super::meta::Kind::Compressed(raw) = s.kind {
                        let (o, l) = m.geo.compressed_range(raw);
                        let input = bytes_at(data, o, (l as usize).min(1 << 22));
                        let mut out = vec![0u8; cs as usize];
                        let _ = super::compress::decompress(m.geo.compression, &input, &mut out);
                    }
                }
                off += len;
            }
            Ok(Lookup::Need(_, key)) => {
                let b = bytes_at(data, key, m.l2.entry_size);
                m.l2.make_room();
                m.l2.insert(key, b, false);
            }
            Err(_) => off += cs,
        }
    }
    // Refcounts of the first clusters, through the table.
    let per_block = m.geo.rb_entries;
    for c in 0..(data.len() as u64 / cs).min(1024) {
        let Some(e) = rt.get((c / per_block) as usize) else {
            break;
        };
        let b = e & OFFSET_MASK;
        if b == 0 {
            continue;
        }
        let block = bytes_at(data, b, cs as usize);
        let _ = rc_get(&block, c % per_block, m.geo.refcount_order);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_created_and_mutated_headers() {
        let h = header::Header {
            version: 3,
            cluster_bits: 9,
            size: 1 << 20,
            l1_size: 32,
            l1_table_offset: 3 * 512,
            refcount_table_offset: 512,
            refcount_table_clusters: 1,
            refcount_order: 4,
            header_length: 112,
            ..header::Header::default()
        };
        let mut img = header::serialize(&h);
        img.resize(64 * 512, 0);
        img[3 * 512..3 * 512 + 8]
            .copy_from_slice(&(0x8000_0000_0000_0000u64 | (8 * 512)).to_be_bytes());
        img[8 * 512..8 * 512 + 8].copy_from_slice(&(0x4000_0000_0000_1234u64).to_be_bytes());
        walk_image(&img);
        let mut x = 1u64;
        for _ in 0..2000 {
            let mut m = img.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x % m.len() as u64) as usize;
                m[i] = (x >> 32) as u8;
            }
            walk_image(&m);
        }
    }
}
