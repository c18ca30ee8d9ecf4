//! Opening a qcow2 node: runtime options (QEMU's checks and texts, in
//! its order), the tables, the external data file and the backing chain;
//! the [`BlockDriver`] implementation and what the queries show.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use qapi::types::{
    BlockdevOptions, BlockdevOptionsBranch, BlockdevOptionsQcow2, BlockdevRef, BlockdevRefOrNull,
    ImageInfoSpecific, ImageInfoSpecificBranch, ImageInfoSpecificQCow2,
    ImageInfoSpecificQCow2Wrapper, Qcow2CompressionType,
};
use qapi::QmpError;

use super::cache::Cache;
use super::child::pread;
use super::header::{self, Header};
use super::meta::Meta;
use super::{Geo, Info, Qcow2};
use crate::block::open::{OpenCx, Opened};
use crate::block::{
    AllocatedSize, BlockDriver, BlockNode, ChildPermCx, ChildRole, Extent, FormatInfo, IoBuf,
    IoFuture, Perm, ReopenRequest, ReopenState, WriteFlags, ZeroFlags,
};

/// QEMU's defaults and limits for the caches.
const DEFAULT_L2_CACHE_MAX: u64 = 32 << 20;
const MIN_L2_CACHE_ENTRIES: u64 = 2;
const MIN_REFCOUNT_CACHE_ENTRIES: u64 = 4;
const DEFAULT_CACHE_CLEAN_INTERVAL: u64 = 600;

/// Runs `fut` to completion from synchronous code (opening and closing
/// happen outside the data path), on a helper thread that enters the
/// daemon's runtime, or a runtime of its own when there is none (an
/// error if that cannot start).
pub fn run_sync<T: Send>(fut: impl Future<Output = T> + Send) -> Result<T, String> {
    let handle = tokio::runtime::Handle::try_current()
        .ok()
        .filter(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    std::thread::scope(|s| {
        let j = s.spawn(move || match handle {
            Some(h) => Ok(h.block_on(fut)),
            None => match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => Ok(rt.block_on(fut)),
                Err(e) => Err(format!("cannot start a runtime: {e}")),
            },
        });
        let wait = || j.join();
        let r = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        match r {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

fn gerr(s: impl Into<String>) -> QmpError {
    QmpError::generic(s.into())
}

/// Cache sizes as QEMU's `read_cache_sizes` computes them: (L2 entries,
/// L2 entry size, refcount blocks).
fn cache_sizes(o: &BlockdevOptionsQcow2, h: &Header) -> Result<(u64, u64, u64), QmpError> {
    for (name, v) in [
        ("cache-size", o.cache_size),
        ("l2-cache-size", o.l2_cache_size),
        ("l2-cache-entry-size", o.l2_cache_entry_size),
        ("refcount-cache-size", o.refcount_cache_size),
    ] {
        if let Some(v) = v.filter(|v| *v < 0) {
            return Err(gerr(format!(
                "Value '{v}' is out of range for parameter '{name}'"
            )));
        }
    }
    let cs = h.cluster_size();
    let virtual_size = h.size / 512 * 512;
    let max_l2_entries = virtual_size.div_ceil(cs);
    let max_l2_cache = (max_l2_entries * h.l2_entry_size()).div_ceil(cs) * cs;
    let min_refcount_cache = MIN_REFCOUNT_CACHE_ENTRIES * cs;
    let combined = o.cache_size.map(|v| v as u64);
    let l2_set = o.l2_cache_size.is_some();
    let rc_set = o.refcount_cache_size.is_some();
    let l2_max_setting = o.l2_cache_size.map_or(DEFAULT_L2_CACHE_MAX, |v| v as u64);
    let mut refcount = o.refcount_cache_size.map_or(0, |v| v as u64);
    let mut entry = o.l2_cache_entry_size.map_or(cs, |v| v as u64);
    let mut l2 = max_l2_cache.min(l2_max_setting);
    if let Some(combined) = combined {
        if l2_set && rc_set {
            return Err(gerr(
                "cache-size, l2-cache-size and refcount-cache-size may not be set at the same time",
            ));
        } else if l2_set && l2_max_setting > combined {
            return Err(gerr("l2-cache-size may not exceed cache-size"));
        } else if refcount > combined {
            return Err(gerr("refcount-cache-size may not exceed cache-size"));
        }
        if l2_set {
            refcount = combined - l2;
        } else if rc_set {
            l2 = combined - refcount;
        } else if combined >= max_l2_cache + min_refcount_cache {
            l2 = max_l2_cache;
            refcount = combined - l2;
        } else {
            refcount = combined.min(min_refcount_cache);
            l2 = combined - refcount;
        }
    }
    if l2 < max_l2_cache && o.l2_cache_entry_size.is_none() {
        entry = cs.min(4096);
    }
    if entry < 512 || entry > cs || !entry.is_power_of_two() {
        return Err(gerr(format!(
            "L2 cache entry size must be a power of two between 512 and the cluster size ({cs})"
        )));
    }
    let l2n = (l2 / entry).max(MIN_L2_CACHE_ENTRIES);
    if l2n > i32::MAX as u64 {
        return Err(gerr("L2 cache size too big"));
    }
    let rcn = (refcount / cs).max(MIN_REFCOUNT_CACHE_ENTRIES);
    if rcn > i32::MAX as u64 {
        return Err(gerr("Refcount cache size too big"));
    }
    Ok((l2n, entry, rcn))
}

/// Whether `name` has a protocol prefix (`proto:...` before any `/`).
fn has_protocol(name: &str) -> bool {
    match name.find(':') {
        Some(i) => !name[..i].contains('/'),
        None => false,
    }
}

/// `full-backing-filename`: the recorded name resolved against the
/// image's own file name.
pub fn full_backing_filename(image: &str, name: &str) -> String {
    resolve(image, name)
}

/// QEMU's `path_combine`: `name` relative to the directory of `base`.
fn resolve(base: &str, name: &str) -> String {
    if name.starts_with('/') || has_protocol(name) {
        return name.to_string();
    }
    match base.rfind('/') {
        Some(i) => format!("{}{}", &base[..=i], name),
        None => name.to_string(),
    }
}

/// The options of a node opening `path` with `driver` over a file.
fn file_node_options(
    driver: &str,
    path: &str,
    read_only: bool,
) -> Result<BlockdevOptions, QmpError> {
    let mut v = serde_json::json!({
        "driver": driver,
        "file": {"driver": "file", "filename": path},
    });
    if driver == "file" {
        v = serde_json::json!({"driver": "file", "filename": path});
    }
    if read_only {
        v["read-only"] = serde_json::Value::Bool(true);
    }
    qapi::visit::from_value::<BlockdevOptions>(&v, qapi::visit::Mode::Json)
        .map_err(|e| QmpError::generic(e.0))
}

/// Probes the format of a backing file that has none recorded.
fn probe_format(path: &str) -> &'static str {
    let mut magic = [0u8; 4];
    let ok = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok();
    if ok && u32::from_be_bytes(magic) == header::MAGIC {
        "qcow2"
    } else {
        "raw"
    }
}

/// Opens a `qcow2` node.
pub fn open(cx: &OpenCx<'_>) -> Result<Opened, QmpError> {
    let BlockdevOptionsBranch::Qcow2(o) = &cx.options.u else {
        return Err(gerr("not a qcow2 node"));
    };
    let file = cx
        .file
        .clone()
        .ok_or_else(|| gerr("A block device must be specified for \"file\""))?;
    let read_write = !cx.opts.read_only && cx.opts.active;
    // QEMU attaches `file` (taking its image locks) before it reads the
    // header: a lock conflict is the first error.
    let (perm, shared) = crate::block::default_child_perm(
        ChildRole::IMAGE_PRIMARY,
        ChildPermCx {
            perm: Perm::NONE,
            shared: Perm::ALL,
            writable: read_write,
            inactive: !cx.opts.active,
        },
    );
    file.driver().check_perm(perm, shared)?;
    file.driver().abort_perm();
    let (h, l1, rt, bitmaps) = run_sync(read_tables(&file, read_write)).map_err(gerr)??;
    let (l2n, entry, rcn) = cache_sizes(o, &h)?;
    let interval = o
        .cache_clean_interval
        .map_or(DEFAULT_CACHE_CLEAN_INTERVAL, |v| v as u64);
    if interval > u32::MAX as u64 {
        return Err(gerr("Cache clean interval too big"));
    }
    let lazy = o
        .lazy_refcounts
        .unwrap_or(h.compatible & header::COMPAT_LAZY_REFCOUNTS != 0);
    if lazy && h.version < 3 {
        return Err(gerr(
            "Lazy refcounts require a qcow2 image with at least qemu 1.1 compatibility level",
        ));
    }
    match h.crypt_method {
        0 => {
            if let Some(e) = &o.encrypt {
                let fmt = serde_json::to_value(e)
                    .ok()
                    .and_then(|v| v.get("format").and_then(|f| f.as_str().map(String::from)))
                    .unwrap_or_default();
                return Err(gerr(format!(
                    "No encryption in image header, but options specified format '{fmt}'"
                )));
            }
        }
        1 if o.encrypt.is_none() => {
            return Err(gerr(
                "Parameter 'encrypt.key-secret' is required for cipher",
            ))
        }
        1 | 2 => {
            if h.crypt_method == 2 && o.encrypt.is_none() {
                return Err(gerr("Missing CRYPTO header for crypt method 2"));
            }
            return Err(gerr(
                "qcow2 encryption is not implemented by this daemon yet",
            ));
        }
        m => return Err(gerr(format!("Unsupported encryption method {m}"))),
    }
    let external = h.incompatible & header::INCOMPAT_DATA_FILE != 0;
    let data_raw = h.autoclear & header::AUTOCLEAR_DATA_FILE_RAW != 0;
    if !external && o.data_file.is_none() && data_raw {
        return Err(gerr("data-file-raw requires a data file"));
    }
    let fname = crate::block::info::filename(&file).filename;
    let deferred = Children {
        external,
        data_ref: o.data_file.as_deref().cloned(),
        data_name: h.data_file.clone(),
        backing_ref: o.backing.as_deref().cloned(),
        backing_name: h.backing_file.clone(),
        backing_format: h.backing_format.clone(),
        image_name: fname,
        read_only: cx.opts.read_only,
    };
    let geo = Geo {
        version: h.version,
        cluster_bits: h.cluster_bits,
        cs: h.cluster_size(),
        ext_l2: h.extended_l2(),
        l2_entries: h.l2_entries(),
        l2_entry_size: h.l2_entry_size(),
        slice_entries: entry / h.l2_entry_size(),
        refcount_order: h.refcount_order,
        rb_entries: h.cluster_size() * 8 / (1u64 << h.refcount_order),
        external_data: external,
        data_raw,
        compression: h.compression_type,
    };
    let discard_unmap = cx.opts.discard_unmap;
    let snap_bytes = if h.nb_snapshots > 0 {
        h.cluster_size()
    } else {
        0
    };
    let file_end = file.driver().size().div_ceil(geo.cs) * geo.cs;
    let meta = Meta {
        geo,
        l1,
        l1_offset: h.l1_table_offset,
        rt,
        rt_offset: h.refcount_table_offset,
        rt_clusters: h.refcount_table_clusters as u64,
        l2: Cache::new(l2n as usize, entry as usize),
        rb: Cache::new(rcn as usize, geo.cs as usize),
        pending: Vec::new(),
        free_hint: 0,
        file_end,
        incompat: h.incompatible,
        autoclear: h.autoclear,
        snap_table: (h.snapshots_offset, snap_bytes),
        l2_epoch: 0,
        pass_discard: (
            o.pass_discard_request.unwrap_or(discard_unmap),
            o.pass_discard_other.unwrap_or(false),
        ),
        tables: Default::default(),
    };
    let mut meta = meta;
    meta.tables = super::meta::Tables::index(&meta.l1, &meta.rt);
    if read_write && h.incompatible & header::INCOMPAT_DIRTY != 0 {
        let f = file.clone();
        let hh = h.clone();
        meta = run_sync(async move {
            let mut m = meta;
            super::repair::repair(&mut m, &f, &f, &hh).await.map(|()| m)
        })
        .map_err(gerr)?
        .map_err(|e| gerr(format!("Could not repair dirty image: {e}")))?;
    }
    if read_write {
        let unknown = h.autoclear & !header::AUTOCLEAR_KEPT;
        if unknown != 0 {
            let v = h.autoclear & header::AUTOCLEAR_KEPT;
            let f = file.clone();
            run_sync(async move {
                super::child::pwrite(&f, header::OFF_AUTOCLEAR, &v.to_be_bytes()).await?;
                super::child::pflush(&f).await
            })
            .map_err(gerr)?
            .map_err(|e| gerr(format!("Could not update qcow2 header: {e}")))?;
        }
    }
    let info = Info {
        version: h.version,
        lazy_refcounts: h.compatible & header::COMPAT_LAZY_REFCOUNTS != 0,
        refcount_bits: 1 << h.refcount_order,
        data_file: h.data_file.clone(),
        data_raw,
        compression: h.compression_type,
        backing_file: h.backing_file.clone(),
        backing_format: h.backing_format.clone(),
        bitmaps,
    };
    let meta = Arc::new(tokio::sync::Mutex::new(meta));
    let cleaner = start_cleaner(&meta, interval);
    let drv = Qcow2 {
        daemon: cx.daemon.downgrade(),
        node_name: cx.node_name.clone(),
        file: RwLock::new(file.clone()),
        data: RwLock::new(None),
        backing: RwLock::new(None),
        geo,
        size: AtomicU64::new(h.size),
        meta,
        locks: Default::default(),
        broken: AtomicBool::new(false),
        signaled: AtomicBool::new(false),
        corrupt_bit: AtomicBool::new(h.incompatible & header::INCOMPAT_CORRUPT != 0),
        writable: AtomicBool::new(read_write),
        discard_no_unref: o.discard_no_unref.unwrap_or(false),
        has_snapshots: h.nb_snapshots > 0,
        info: Mutex::new(info),
        cleaner: Mutex::new(cleaner),
    };
    let file_role = if external {
        ChildRole {
            metadata: true,
            primary: true,
            ..ChildRole::default()
        }
    } else {
        ChildRole::IMAGE_PRIMARY
    };
    Ok(Opened {
        driver: Box::new(drv),
        children: vec![("file".into(), file_role, file)],
        fell_back_read_only: false,
        deferred: Some(Box::new(move |d, parent| deferred.open(d, parent))),
    })
}

fn backing_err(e: QmpError) -> QmpError {
    gerr(format!("Could not open backing file: {}", e.desc))
}

/// The children a qcow2 node opens once it is in the graph.
struct Children {
    external: bool,
    data_ref: Option<BlockdevRef>,
    data_name: Option<String>,
    backing_ref: Option<BlockdevRefOrNull>,
    backing_name: Option<String>,
    backing_format: Option<String>,
    image_name: String,
    read_only: bool,
}

type ChildList = Vec<(String, ChildRole, Arc<BlockNode>)>;

impl Children {
    fn open(self, d: &crate::Daemon, parent: &BlockdevOptions) -> Result<ChildList, QmpError> {
        let mut inline: Vec<Arc<BlockNode>> = Vec::new();
        let _opening = super::chain::Opening::enter(&self.image_name, !self.read_only);
        let r = self.open_all(d, parent, &mut inline);
        if r.is_err() {
            for n in &inline {
                d.block.remove(n);
            }
        }
        r
    }

    fn open_all(
        &self,
        d: &crate::Daemon,
        parent: &BlockdevOptions,
        inline: &mut Vec<Arc<BlockNode>>,
    ) -> Result<ChildList, QmpError> {
        let mut out: ChildList = Vec::new();
        let child = |r: &BlockdevRef, inline: &mut Vec<Arc<BlockNode>>| {
            let n = crate::block::open::open_ref(d, parent, r)?;
            if matches!(r, BlockdevRef::Definition(_)) {
                inline.push(n.clone());
            }
            Ok::<_, QmpError>(n)
        };
        if !self.external {
            if let Some(r) = &self.data_ref {
                // QEMU opens the child before it finds it has no use.
                child(r, inline)?;
                return Err(gerr(
                    "'data-file' can only be set for images with an external data file",
                ));
            }
        }
        if self.external {
            let node = match (&self.data_ref, &self.data_name) {
                (Some(r), _) => child(r, inline)?,
                // QEMU opens the recorded name as it is.
                (None, Some(name)) => {
                    let opts = file_node_options("file", name, self.read_only)?;
                    child(&BlockdevRef::Definition(Box::new(opts)), inline)?
                }
                (None, None) => return Err(gerr("'data-file' is required for this image")),
            };
            let role = ChildRole {
                data: true,
                ..ChildRole::default()
            };
            out.push(("data-file".into(), role, node));
        }
        let backing = match &self.backing_ref {
            Some(BlockdevRefOrNull::Null(_)) => None,
            Some(BlockdevRefOrNull::Reference(name)) => {
                Some(child(&BlockdevRef::Reference(name.clone()), inline).map_err(backing_err)?)
            }
            Some(BlockdevRefOrNull::Definition(opts)) => {
                Some(child(&BlockdevRef::Definition(opts.clone()), inline).map_err(backing_err)?)
            }
            None => match &self.backing_name {
                Some(name) if !name.is_empty() => {
                    let fname = &self.image_name;
                    if fname.starts_with("json:") && !name.starts_with('/') && !has_protocol(name) {
                        return Err(gerr(format!(
                            "Cannot use relative backing file names for '{fname}'"
                        )));
                    }
                    let path = resolve(fname, name);
                    let fmt = match &self.backing_format {
                        Some(f) => f.clone(),
                        None => probe_format(&path).to_string(),
                    };
                    let r = super::chain::check(&path)
                        .map_err(gerr)
                        .and_then(|()| file_node_options(&fmt, &path, true))
                        .and_then(|o| child(&BlockdevRef::Definition(Box::new(o)), inline));
                    Some(r.map_err(backing_err)?)
                }
                _ => None,
            },
        };
        if let Some(b) = backing {
            let role = ChildRole {
                cow: true,
                ..ChildRole::default()
            };
            out.push(("backing".into(), role, b));
        }
        Ok(out)
    }
}

/// Reads and checks the header, the L1 table and the refcount table.
async fn read_tables(
    file: &BlockNode,
    read_write: bool,
) -> Result<(Header, Vec<u64>, Vec<u64>, Vec<super::bitmaps::Bitmap>), QmpError> {
    let io = |what: &str, e: std::io::Error| {
        gerr(format!("{what}: {}", crate::block::file::strerror(&e)))
    };
    let first = pread(file, 0, 4096)
        .await
        .map_err(|e| io("Could not read qcow2 header", e))?;
    let mut buf = first.to_vec();
    let bits = u32::from_be_bytes([buf[20], buf[21], buf[22], buf[23]]);
    if (13..=21).contains(&bits)
        && u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) == header::MAGIC
    {
        let all = pread(file, 0, 1 << bits)
            .await
            .map_err(|e| io("Could not read qcow2 header", e))?;
        buf = all.to_vec();
    }
    let h = header::parse(&buf, read_write).map_err(|e| gerr(e.to_string()))?;
    let l1_bytes = h.l1_size as usize * 8;
    let l1b = pread(file, h.l1_table_offset, l1_bytes)
        .await
        .map_err(|e| io("Could not read L1 table", e))?;
    let l1 = l1b
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()))
        .collect();
    let rt_bytes = h.refcount_table_clusters as usize * h.cluster_size() as usize;
    let rtb = pread(file, h.refcount_table_offset, rt_bytes)
        .await
        .map_err(|e| io("Could not initialize refcount handling", e))?;
    let rt = rtb
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()))
        .collect();
    let mut bitmaps = match h.bitmap_dir {
        Some(dir) => super::bitmaps::read_dir(file, dir)
            .await
            .map_err(|e| io("Could not read bitmap directory", e))?,
        None => Vec::new(),
    };
    if read_write && h.incompatible & header::INCOMPAT_CORRUPT == 0 {
        super::bitmaps::mark_in_use(file, &mut bitmaps)
            .await
            .map_err(|e| io("Could not update bitmap directory", e))?;
    }
    Ok((h, l1, rt, bitmaps))
}

/// Starts the `cache-clean-interval` timer.
fn start_cleaner(
    meta: &Arc<tokio::sync::Mutex<Meta>>,
    interval: u64,
) -> Option<tokio::task::JoinHandle<()>> {
    if interval == 0 {
        return None;
    }
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let weak = Arc::downgrade(meta);
    Some(handle.spawn(async move {
        let mut t = tokio::time::interval(std::time::Duration::from_secs(interval));
        t.tick().await;
        loop {
            t.tick().await;
            let Some(m) = weak.upgrade() else { return };
            let mut m = m.lock().await;
            m.l2.clean_unused();
            m.rb.clean_unused();
        }
    }))
}

/// `format-specific` as QEMU's `qcow2_get_specific_info` fills it.
pub fn format_specific(i: &Info, corrupt: bool, ext_l2: bool) -> ImageInfoSpecific {
    let compression_type = if i.compression == 1 {
        Qcow2CompressionType::Zstd
    } else {
        Qcow2CompressionType::Zlib
    };
    let data = if i.version == 2 {
        ImageInfoSpecificQCow2 {
            compat: "0.10".into(),
            data_file: None,
            data_file_raw: None,
            extended_l2: None,
            lazy_refcounts: None,
            corrupt: None,
            refcount_bits: i.refcount_bits as i64,
            encrypt: None,
            bitmaps: None,
            compression_type,
        }
    } else {
        ImageInfoSpecificQCow2 {
            compat: "1.1".into(),
            data_file: i.data_file.clone(),
            data_file_raw: i.data_file.is_some().then_some(i.data_raw),
            extended_l2: Some(ext_l2),
            lazy_refcounts: Some(i.lazy_refcounts),
            corrupt: Some(corrupt),
            refcount_bits: i.refcount_bits as i64,
            encrypt: None,
            bitmaps: (!i.bitmaps.is_empty()).then(|| super::bitmaps::info(&i.bitmaps)),
            compression_type,
        }
    };
    ImageInfoSpecific {
        u: ImageInfoSpecificBranch::Qcow2(ImageInfoSpecificQCow2Wrapper { data }),
    }
}

/// QEMU's `bdrv_default_perms_for_cow`.
fn cow_perm(cx: ChildPermCx) -> (Perm, Perm) {
    let perm = cx.perm & Perm::CONSISTENT_READ;
    let mut shared = if cx.shared.contains(Perm::WRITE) {
        Perm::WRITE | Perm::RESIZE
    } else {
        Perm::NONE
    };
    shared |= Perm::CONSISTENT_READ | Perm::WRITE_UNCHANGED;
    (perm, shared)
}

impl BlockDriver for Qcow2 {
    fn driver_name(&self) -> &'static str {
        "qcow2"
    }

    /// QEMU counts whole sectors: a size that is not a multiple of 512
    /// is rounded down.
    fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire) / 512 * 512
    }

    fn read(&self, offset: u64, len: usize) -> IoFuture<'_, IoBuf> {
        Box::pin(self.do_read(offset, len))
    }

    fn write(&self, offset: u64, data: IoBuf, flags: WriteFlags) -> IoFuture<'_, ()> {
        Box::pin(self.do_write(offset, data, flags.fua))
    }

    fn write_zeroes(&self, offset: u64, len: u64, flags: ZeroFlags) -> IoFuture<'_, ()> {
        Box::pin(self.do_write_zeroes(offset, len, flags))
    }

    fn discard(&self, offset: u64, len: u64) -> IoFuture<'_, ()> {
        Box::pin(self.do_discard(offset, len))
    }

    fn flush(&self) -> IoFuture<'_, ()> {
        Box::pin(self.do_flush())
    }

    fn block_status(&self, offset: u64, len: u64) -> IoFuture<'_, Extent> {
        Box::pin(self.do_status(offset, len))
    }

    fn truncate(&self, size: u64) -> IoFuture<'_, ()> {
        Box::pin(self.do_truncate(size))
    }

    fn truncate_zero_write(&self, size: u64) -> IoFuture<'_, ()> {
        Box::pin(self.do_truncate_zero(size))
    }

    fn truncate_falloc(&self, size: u64) -> IoFuture<'_, ()> {
        Box::pin(self.do_truncate_falloc(size))
    }

    fn mem_alignment(&self) -> usize {
        self.file().mem_alignment()
    }

    fn child_perm(&self, child: &str, role: ChildRole, cx: ChildPermCx) -> (Perm, Perm) {
        if child == "backing" {
            return cow_perm(cx);
        }
        crate::block::default_child_perm(role, cx)
    }

    fn has_info(&self) -> bool {
        true
    }

    fn allocated_size(&self) -> AllocatedSize {
        AllocatedSize::SumOfChildren
    }

    fn format_specific(&self) -> Option<ImageInfoSpecific> {
        Some(self.specific())
    }

    fn format_info(&self) -> FormatInfo {
        let i = self.info.lock().unwrap_or_else(PoisonError::into_inner);
        FormatInfo {
            cluster_size: Some(self.geo.cs),
            backing_filename: i.backing_file.clone().filter(|b| !b.is_empty()),
            backing_format: i.backing_format.clone(),
        }
    }

    fn reopen_prepare(&self, req: &ReopenRequest) -> Result<Option<ReopenState>, QmpError> {
        let BlockdevOptionsBranch::Qcow2(_) = &req.options.u else {
            return Err(gerr("Cannot change the option 'driver'"));
        };
        Ok(Some(Box::new(!req.read_only)))
    }

    fn reopen_commit(&self, state: ReopenState) {
        if let Ok(w) = state.downcast::<bool>() {
            if !*w {
                // Leaving read-write: write cached metadata back first.
                self.flush_sync();
            }
            self.writable.store(*w, Ordering::Release);
        }
    }

    fn replace_child(&self, name: &str, node: Arc<BlockNode>) {
        match name {
            "file" => *self.file.write().unwrap_or_else(PoisonError::into_inner) = node,
            "data-file" => *self.data.write().unwrap_or_else(PoisonError::into_inner) = Some(node),
            "backing" => *self.backing.write().unwrap_or_else(PoisonError::into_inner) = Some(node),
            _ => {}
        }
    }
}
