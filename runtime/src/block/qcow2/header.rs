//! The qcow2 image header and its extensions: parsing with the checks and
//! error texts of QEMU 10.0 (in QEMU's order, so the first problem found is
//! the one QEMU reports), and serialization for image creation.
//!
//! The driver never rewrites the header as a whole after creation: fields
//! that change (feature bits, size, table locations) are patched in place,
//! so header extensions it does not know survive untouched.

use super::QError;

/// "QFI\xfb".
pub const MAGIC: u32 = 0x5146_49fb;

/// Incompatible feature bits.
pub const INCOMPAT_DIRTY: u64 = 1;
pub const INCOMPAT_CORRUPT: u64 = 2;
pub const INCOMPAT_DATA_FILE: u64 = 4;
pub const INCOMPAT_COMPRESSION: u64 = 8;
pub const INCOMPAT_EXTL2: u64 = 16;
pub const INCOMPAT_MASK: u64 = 31;
/// Compatible feature bit: lazy refcounts.
pub const COMPAT_LAZY_REFCOUNTS: u64 = 1;
/// Autoclear feature bits.
pub const AUTOCLEAR_BITMAPS: u64 = 1;
pub const AUTOCLEAR_DATA_FILE_RAW: u64 = 2;
/// The autoclear bits this driver keeps when it writes to an image (it
/// marks persistent bitmaps in use rather than maintaining them, see
/// [`super::bitmaps`]).
pub const AUTOCLEAR_KEPT: u64 = AUTOCLEAR_DATA_FILE_RAW | AUTOCLEAR_BITMAPS;

/// Header extension types.
pub const EXT_END: u32 = 0;
pub const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
pub const EXT_FEATURE_TABLE: u32 = 0x6803_f857;
pub const EXT_BITMAPS: u32 = 0x2385_2875;
pub const EXT_CRYPTO: u32 = 0x0537_be77;
pub const EXT_DATA_FILE: u32 = 0x4441_5441;

/// Byte offsets of header fields patched in place.
pub const OFF_SIZE: u64 = 24;
pub const OFF_L1: u64 = 36;
pub const OFF_REFTABLE: u64 = 48;
pub const OFF_INCOMPAT: u64 = 72;
pub const OFF_AUTOCLEAR: u64 = 88;

/// QEMU's limits.
pub const MAX_L1_BYTES: u64 = 32 << 20;
pub const MAX_REFTABLE_BYTES: u64 = 8 << 20;
const SNAPSHOT_HEADER_SIZE: u64 = 40;
const MAX_SNAPSHOTS: u64 = 65536;
/// QEMU's `sizeof(bs->backing_format)`.
const BACKING_FORMAT_MAX: usize = 16;
/// QEMU's `sizeof(bs->backing_file)`.
const BACKING_FILE_MAX: u64 = 4096;

/// The fixed part of the header plus what the extensions say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub backing_file_offset: u64,
    pub backing_file_size: u32,
    pub cluster_bits: u32,
    pub size: u64,
    pub crypt_method: u32,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub nb_snapshots: u32,
    pub snapshots_offset: u64,
    pub incompatible: u64,
    pub compatible: u64,
    pub autoclear: u64,
    pub refcount_order: u32,
    pub header_length: u32,
    pub compression_type: u8,
    /// Backing file name from the header.
    pub backing_file: Option<String>,
    /// Backing format extension.
    pub backing_format: Option<String>,
    /// External data file name extension.
    pub data_file: Option<String>,
    /// Feature name table entries: (type, bit, name).
    pub feature_names: Vec<(u8, u8, String)>,
    /// Bitmaps extension present (and consistent per the autoclear bit).
    pub has_bitmaps: bool,
    /// The bitmap directory (offset, bytes, entries), when consistent.
    pub bitmap_dir: Option<(u64, u64, u32)>,
    /// Whether the bitmaps extension was present at all.
    pub bitmaps_ext_present: bool,
}

fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn be64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_be_bytes(a)
}

fn err(s: impl Into<String>) -> QError {
    QError::Open(s.into())
}

impl Header {
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    pub fn extended_l2(&self) -> bool {
        self.incompatible & INCOMPAT_EXTL2 != 0
    }

    /// Bytes per L2 entry.
    pub fn l2_entry_size(&self) -> u64 {
        if self.extended_l2() {
            16
        } else {
            8
        }
    }

    /// Number of entries in an L2 table.
    pub fn l2_entries(&self) -> u64 {
        self.cluster_size() / self.l2_entry_size()
    }

    /// L1 entries needed for `size` bytes.
    pub fn size_to_l1(&self, size: u64) -> u64 {
        let per_l1 = self.cluster_size() * self.l2_entries();
        size.div_ceil(per_l1)
    }
}

/// QEMU's `qcow2_validate_table`.
fn validate_table(
    offset: u64,
    entries: u64,
    entry_len: u64,
    max_bytes: u64,
    cluster_size: u64,
    what: &str,
) -> Result<(), QError> {
    if entries > max_bytes / entry_len {
        return Err(err(format!("{what} too large")));
    }
    let size = entries * entry_len;
    if (i64::MAX as u64) - size < offset || !offset.is_multiple_of(cluster_size) {
        return Err(err(format!("{what} offset invalid")));
    }
    Ok(())
}

/// Parses the header in `buf` (the first cluster of the image, or as much
/// of it as exists, zero-padded to at least 104 bytes). `read_write`
/// selects the corrupt-bit check.
pub fn parse(buf: &[u8], read_write: bool) -> Result<Header, QError> {
    let mut b = buf.to_vec();
    if b.len() < 112 {
        b.resize(112, 0);
    }
    if be32(&b, 0) != MAGIC {
        return Err(err("Image is not in qcow2 format"));
    }
    let mut h = Header {
        version: be32(&b, 4),
        backing_file_offset: be64(&b, 8),
        backing_file_size: be32(&b, 16),
        cluster_bits: be32(&b, 20),
        size: be64(&b, 24),
        crypt_method: be32(&b, 32),
        l1_size: be32(&b, 36),
        l1_table_offset: be64(&b, 40),
        refcount_table_offset: be64(&b, 48),
        refcount_table_clusters: be32(&b, 56),
        nb_snapshots: be32(&b, 60),
        snapshots_offset: be64(&b, 64),
        ..Header::default()
    };
    if !(2..=3).contains(&h.version) {
        return Err(err(format!("Unsupported qcow2 version {}", h.version)));
    }
    if !(9..=21).contains(&h.cluster_bits) {
        return Err(err(format!(
            "Unsupported cluster size: 2^{}",
            h.cluster_bits as i32
        )));
    }
    if h.version == 2 {
        h.refcount_order = 4;
        h.header_length = 72;
    } else {
        h.incompatible = be64(&b, 72);
        h.compatible = be64(&b, 80);
        h.autoclear = be64(&b, 88);
        h.refcount_order = be32(&b, 96);
        h.header_length = be32(&b, 100);
        if h.header_length < 104 {
            return Err(err("qcow2 header too short"));
        }
    }
    let cs = h.cluster_size();
    if u64::from(h.header_length) > cs {
        return Err(err("qcow2 header exceeds cluster size"));
    }
    if h.backing_file_offset > cs {
        return Err(err("Invalid backing file offset"));
    }
    let ext_end = if h.backing_file_offset != 0 {
        h.backing_file_offset
    } else {
        cs
    };
    if h.header_length > 104 {
        h.compression_type = b[104];
    }
    match h.compression_type {
        0 | 1 => {}
        t => return Err(err(format!("qcow2: unknown compression type: {t}"))),
    }
    if h.compression_type == 0 {
        if h.incompatible & INCOMPAT_COMPRESSION != 0 {
            return Err(err(
                "qcow2: Compression type incompatible feature bit must not be set",
            ));
        }
    } else if h.incompatible & INCOMPAT_COMPRESSION == 0 {
        return Err(err(
            "qcow2: Compression type incompatible feature bit must be set",
        ));
    }
    if h.incompatible & !INCOMPAT_MASK != 0 {
        // The feature table explains unknown bits, if the extensions parse.
        let mut names = Header {
            cluster_bits: h.cluster_bits,
            ..Header::default()
        };
        let _ = read_extensions(&b, h.header_length as u64, ext_end, &mut names);
        return Err(err(unsupported_features(
            &names.feature_names,
            h.incompatible & !INCOMPAT_MASK,
        )));
    }
    if h.incompatible & INCOMPAT_CORRUPT != 0 && read_write {
        return Err(err("qcow2: Image is corrupt; cannot be opened read/write"));
    }
    if h.extended_l2() && cs / 32 < 512 {
        return Err(err(format!("Unsupported subcluster size: {}", cs / 32)));
    }
    if h.refcount_order > 6 {
        return Err(err(
            "Reference count entry width too large; may not exceed 64 bits",
        ));
    }
    if h.refcount_table_clusters == 0 {
        return Err(err("Image does not contain a reference count table"));
    }
    validate_table(
        h.refcount_table_offset,
        h.refcount_table_clusters as u64,
        cs,
        MAX_REFTABLE_BYTES,
        cs,
        "Reference count table",
    )?;
    validate_table(
        h.snapshots_offset,
        h.nb_snapshots as u64,
        SNAPSHOT_HEADER_SIZE,
        SNAPSHOT_HEADER_SIZE * MAX_SNAPSHOTS,
        cs,
        "Snapshot table",
    )?;
    validate_table(
        h.l1_table_offset,
        h.l1_size as u64,
        8,
        MAX_L1_BYTES,
        cs,
        "Active L1 table",
    )?;
    let l1_needed = h.size_to_l1(h.size);
    if l1_needed > i32::MAX as u64 {
        return Err(err("Image is too big"));
    }
    if (h.l1_size as u64) < l1_needed {
        return Err(err("L1 table is too small"));
    }
    read_extensions(&b, h.header_length as u64, ext_end, &mut h)?;
    if h.backing_file_offset != 0 {
        let len = h.backing_file_size as u64;
        if len > 1023.min(cs - h.backing_file_offset) || len >= BACKING_FILE_MAX {
            return Err(err("Backing file name too long"));
        }
        let start = h.backing_file_offset as usize;
        let end = start + len as usize;
        if b.len() < end {
            b.resize(end, 0);
        }
        // QEMU keeps the name as a C string.
        let raw = &b[start..end];
        let raw = raw.split(|c| *c == 0).next().unwrap_or_default();
        h.backing_file = Some(String::from_utf8_lossy(raw).into_owned());
    }
    Ok(h)
}

/// QEMU's `report_unsupported_feature`.
fn unsupported_features(table: &[(u8, u8, String)], mut mask: u64) -> String {
    let mut out = String::new();
    for (ty, bit, name) in table {
        if *ty == 0 && *bit < 64 && mask & (1u64 << bit) != 0 {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(name);
            mask &= !(1u64 << bit);
        }
    }
    if mask != 0 {
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(&format!("Unknown incompatible feature: {mask:x}"));
    }
    format!("Unsupported qcow2 feature(s): {out}")
}

/// Walks the header extensions between `start` and `end`.
fn read_extensions(b: &[u8], start: u64, end: u64, h: &mut Header) -> Result<(), QError> {
    let mut off = start;
    let byte = |o: u64| -> u8 { b.get(o as usize).copied().unwrap_or(0) };
    let slice = |o: u64, n: u64| -> Vec<u8> { (0..n).map(|i| byte(o + i)).collect() };
    while off < end {
        let hdr = slice(off, 8);
        let ty = be32(&hdr, 0);
        let len = be32(&hdr, 4) as u64;
        off += 8;
        if off > end || len > end - off {
            return Err(err("Header extension too large"));
        }
        match ty {
            EXT_END => return Ok(()),
            EXT_BACKING_FORMAT => {
                if len as usize >= BACKING_FORMAT_MAX {
                    return Err(err(format!(
                        "ERROR: ext_backing_format: len={len} too large (>={BACKING_FORMAT_MAX})"
                    )));
                }
                let raw = slice(off, len);
                let raw = raw.split(|c| *c == 0).next().unwrap_or_default();
                h.backing_format = Some(String::from_utf8_lossy(raw).into_owned());
            }
            EXT_FEATURE_TABLE => {
                let raw = slice(off, len);
                for e in raw.chunks_exact(48) {
                    let name = e[2..48].split(|c| *c == 0).next().unwrap_or_default();
                    if name.is_empty() {
                        break;
                    }
                    h.feature_names
                        .push((e[0], e[1], String::from_utf8_lossy(name).into_owned()));
                }
            }
            EXT_CRYPTO if h.crypt_method != 2 => {
                return Err(err(
                    "CRYPTO header extension only expected with LUKS encryption method",
                ));
            }
            EXT_BITMAPS => {
                h.bitmaps_ext_present = true;
                if h.autoclear & AUTOCLEAR_BITMAPS != 0 {
                    if len != 24 {
                        return Err(err("bitmaps_ext: Invalid extension length: Success"));
                    }
                    let raw = slice(off, 24);
                    if be32(&raw, 4) != 0 {
                        return Err(err("bitmaps_ext: Reserved field is not zero: Success"));
                    }
                    let nb = be32(&raw, 0);
                    if nb > 65535 {
                        return Err(err(format!(
                            "bitmaps_ext: Image has {nb} bitmaps, exceeding the QEMU supported maximum of 65535"
                        )));
                    }
                    if nb == 0 {
                        return Err(err("found bitmaps extension with zero bitmaps"));
                    }
                    if !be64(&raw, 16).is_multiple_of(1u64 << h.cluster_bits) {
                        return Err(err("bitmaps_ext: invalid bitmap directory offset"));
                    }
                    h.has_bitmaps = true;
                    h.bitmap_dir = Some((be64(&raw, 16), be64(&raw, 8), nb));
                }
            }
            EXT_DATA_FILE => {
                let raw = slice(off, len);
                let raw = raw.split(|c| *c == 0).next().unwrap_or_default();
                h.data_file = Some(String::from_utf8_lossy(raw).into_owned());
            }
            _ => {}
        }
        off += (len + 7) & !7;
    }
    Ok(())
}

/// The feature name table this driver writes into new images (the names
/// QEMU uses, so tools show the same text).
pub fn feature_table() -> Vec<(u8, u8, &'static str)> {
    vec![
        (0, 0, "dirty bit"),
        (0, 1, "corrupt bit"),
        (0, 2, "external data file"),
        (0, 3, "compression type"),
        (0, 4, "extended L2 entries"),
        (1, 0, "lazy refcounts"),
        (2, 0, "bitmaps"),
        (2, 1, "raw external data"),
    ]
}

/// Serializes a complete header cluster for a new image.
pub fn serialize(h: &Header) -> Vec<u8> {
    let cs = h.cluster_size() as usize;
    let mut b = vec![0u8; cs];
    let p32 = |b: &mut Vec<u8>, o: usize, v: u32| b[o..o + 4].copy_from_slice(&v.to_be_bytes());
    let p64 = |b: &mut Vec<u8>, o: usize, v: u64| b[o..o + 8].copy_from_slice(&v.to_be_bytes());
    p32(&mut b, 0, MAGIC);
    p32(&mut b, 4, h.version);
    p32(&mut b, 20, h.cluster_bits);
    p64(&mut b, 24, h.size);
    p32(&mut b, 32, h.crypt_method);
    p32(&mut b, 36, h.l1_size);
    p64(&mut b, 40, h.l1_table_offset);
    p64(&mut b, 48, h.refcount_table_offset);
    p32(&mut b, 56, h.refcount_table_clusters);
    p32(&mut b, 60, h.nb_snapshots);
    p64(&mut b, 64, h.snapshots_offset);
    let mut off = 72;
    if h.version >= 3 {
        p64(&mut b, 72, h.incompatible);
        p64(&mut b, 80, h.compatible);
        p64(&mut b, 88, h.autoclear);
        p32(&mut b, 96, h.refcount_order);
        p32(&mut b, 100, 112);
        b[104] = h.compression_type;
        off = 112;
    }
    let mut ext = |b: &mut Vec<u8>, ty: u32, data: &[u8]| {
        p32(b, off, ty);
        p32(b, off + 4, data.len() as u32);
        b[off + 8..off + 8 + data.len()].copy_from_slice(data);
        off += 8 + data.len().div_ceil(8) * 8;
    };
    if let Some(f) = &h.backing_format {
        ext(&mut b, EXT_BACKING_FORMAT, f.as_bytes());
    }
    if let Some(f) = &h.data_file {
        ext(&mut b, EXT_DATA_FILE, f.as_bytes());
    }
    // QEMU leaves the table out of small clusters (room for the backing
    // file name).
    if h.version >= 3 && cs > 4096 {
        let mut t = Vec::new();
        for (ty, bit, name) in feature_table() {
            let mut e = [0u8; 48];
            e[0] = ty;
            e[1] = bit;
            e[2..2 + name.len()].copy_from_slice(name.as_bytes());
            t.extend_from_slice(&e);
        }
        ext(&mut b, EXT_FEATURE_TABLE, &t);
    }
    // End of extensions.
    off += 8;
    if let Some(name) = &h.backing_file {
        b[off..off + name.len()].copy_from_slice(name.as_bytes());
        p64(&mut b, 8, off as u64);
        p32(&mut b, 16, name.len() as u32);
    }
    b
}

/// Space the header of `h` needs (to check it fits one cluster).
pub fn serialized_len(h: &Header) -> usize {
    let mut n = if h.version >= 3 { 112 } else { 72 };
    let pad = |l: usize| 8 + l.div_ceil(8) * 8;
    if let Some(f) = &h.backing_format {
        n += pad(f.len());
    }
    if let Some(f) = &h.data_file {
        n += pad(f.len());
    }
    if h.version >= 3 && h.cluster_size() > 4096 {
        n += pad(48 * feature_table().len());
    }
    n += 8;
    n + h.backing_file.as_ref().map_or(0, |s| s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            version: 3,
            cluster_bits: 16,
            size: 1 << 30,
            l1_size: 2,
            l1_table_offset: 3 << 16,
            refcount_table_offset: 1 << 16,
            refcount_table_clusters: 1,
            refcount_order: 4,
            header_length: 112,
            backing_file: Some("base.qcow2".into()),
            backing_format: Some("qcow2".into()),
            ..Header::default()
        }
    }

    #[test]
    fn roundtrip() {
        let h = sample();
        let b = serialize(&h);
        let p = parse(&b, true).unwrap();
        assert_eq!(p.backing_file.as_deref(), Some("base.qcow2"));
        assert_eq!(p.backing_format.as_deref(), Some("qcow2"));
        assert_eq!(p.size, 1 << 30);
        assert_eq!(p.feature_names.len(), feature_table().len());
        assert!(serialized_len(&h) <= 65536);
    }

    #[test]
    fn errors() {
        let mut b = serialize(&sample());
        b[4..8].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(
            parse(&b, true).unwrap_err().to_string(),
            "Unsupported qcow2 version 7"
        );
        let mut b = serialize(&sample());
        b[72..80].copy_from_slice(&(1u64 << 40 | 1).to_be_bytes());
        assert_eq!(
            parse(&b, true).unwrap_err().to_string(),
            "Unsupported qcow2 feature(s): Unknown incompatible feature: 10000000000"
        );
        assert!(parse(&[], false).is_err());
    }
}
