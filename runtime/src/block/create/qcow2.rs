//! `blockdev-create` with `driver=qcow2`: checks the options with QEMU's
//! texts and order, takes the `file` (and `data-file`) nodes with write
//! and resize permissions, and formats the image
//! ([`crate::block::qcow2::create`]). Every error ends the job with its
//! text, as in QEMU (nothing is checked before the command's reply).

use std::sync::Arc;

use qapi::types::{
    BlockdevCreateOptionsQcow2, BlockdevQcow2Version, BlockdevRef, PreallocMode,
    Qcow2CompressionType,
};

use super::ImageCreator;
use crate::block::graph::ParentKind;
use crate::block::qcow2::create::{format, NewImage};
use crate::block::{BlockNode, Perm};
use crate::jobs::{JobContext, JobError, JobFuture};
use crate::Daemon;

/// Creates a qcow2 image from [`BlockdevCreateOptionsQcow2`].
pub struct Qcow2Creator {
    pub daemon: Daemon,
    pub options: BlockdevCreateOptionsQcow2,
}

impl ImageCreator for Qcow2Creator {
    fn create(self: Box<Self>, _ctx: JobContext) -> JobFuture {
        Box::pin(create(self.daemon, self.options))
    }
}

const V3: &str = "compatibility level 1.1 and above (use version=v3 or greater)";

/// QEMU's checks of the options, in its order.
fn validate(o: &BlockdevCreateOptionsQcow2) -> Result<NewImage, JobError> {
    let e = |s: String| Err(JobError(s));
    if !o.size.is_multiple_of(512) {
        return e("Image size must be a multiple of 512 bytes".into());
    }
    let version = match o.version {
        Some(BlockdevQcow2Version::V2) => 2,
        _ => 3,
    };
    let cs = o.cluster_size.unwrap_or(65536);
    if !cs.is_power_of_two() || !(512..=(2 << 20)).contains(&cs) {
        return e("Cluster size must be a power of two between 512 and 2048k".into());
    }
    let extended_l2 = o.extended_l2.unwrap_or(false);
    if extended_l2 {
        if version < 3 {
            return e(format!("Extended L2 entries are only supported with {V3}"));
        }
        if cs < 16384 {
            return e(
                "Extended L2 entries are only supported with cluster sizes of at least 16384 bytes"
                    .into(),
            );
        }
    }
    let prealloc = o.preallocation.unwrap_or(PreallocMode::Off);
    if o.backing_file.is_some() && prealloc != PreallocMode::Off && !extended_l2 {
        return e(
            "Backing file and preallocation can only be used at the same time if extended_l2 is on"
                .into(),
        );
    }
    if o.backing_fmt.is_some() && o.backing_file.is_none() {
        return e("Backing format cannot be used without backing file".into());
    }
    if o.encrypt.is_some() {
        return e("qcow2 encryption is not implemented by this daemon yet".into());
    }
    let rb = o.refcount_bits.unwrap_or(16);
    if !(1..=64).contains(&rb) || !(rb as u64).is_power_of_two() {
        return e("Refcount width must be a power of two and may not exceed 64 bits".into());
    }
    if version < 3 && rb != 16 {
        return e(format!(
            "Different refcount widths than 16 bits require {}",
            "compatibility level 1.1 or above (use version=v3 or greater)"
        ));
    }
    let lazy = o.lazy_refcounts.unwrap_or(false);
    if version < 3 && lazy {
        return e(format!("Lazy refcounts only supported with {V3}"));
    }
    if version < 3 && o.data_file.is_some() {
        return e(format!("External data files are only supported with {V3}"));
    }
    let data_raw = o.data_file_raw.unwrap_or(false);
    if data_raw && o.data_file.is_none() {
        return e("data-file-raw requires data-file".into());
    }
    if data_raw && o.backing_file.is_some() {
        return e("Backing file and data-file-raw cannot be used at the same time".into());
    }
    let compression = match o.compression_type {
        Some(Qcow2CompressionType::Zstd) => 1,
        _ => 0,
    };
    if compression != 0 && version < 3 {
        return e(format!(
            "Non-zlib compression type is only supported with {V3}"
        ));
    }
    Ok(NewImage {
        version,
        cluster_bits: cs.trailing_zeros(),
        refcount_order: (rb as u64).trailing_zeros(),
        size: o.size,
        lazy_refcounts: lazy,
        extended_l2,
        compression,
        backing_file: o.backing_file.clone(),
        backing_format: o.backing_fmt.as_ref().map(|f| f.as_str().to_string()),
        data_file: None,
        external_data: o.data_file.is_some(),
        data_raw,
        prealloc,
    })
}

/// Finds (or opens) the node `r`; returns it and whether it was opened
/// here (and must go again).
fn node_of(d: &Daemon, r: &BlockdevRef) -> Result<(Arc<BlockNode>, bool), JobError> {
    match r {
        BlockdevRef::Reference(name) => d.block.node(name).map(|n| (n, false)).ok_or_else(|| {
            JobError(format!(
                "Cannot find device='{name}' nor node-name='{name}'"
            ))
        }),
        BlockdevRef::Definition(o) => crate::block::open::open_node(d, (**o).clone())
            .map(|n| (n, true))
            .map_err(|e| JobError(e.desc)),
    }
}

async fn create(d: Daemon, o: BlockdevCreateOptionsQcow2) -> Result<(), JobError> {
    let mut img = validate(&o)?;
    let (file, file_new) = node_of(&d, &o.file)?;
    let data = match &o.data_file {
        Some(r) => match node_of(&d, r) {
            Ok(x) => Some(x),
            Err(e) => {
                if file_new {
                    d.block.remove(&file);
                }
                return Err(e);
            }
        },
        None => None,
    };
    let r = async {
        let kind = ParentKind::Backend {
            name: String::new(),
        };
        let perm = Perm::WRITE | Perm::RESIZE;
        let _fa = d
            .block
            .attach(&file, kind.clone(), "root", perm, Perm::ALL)
            .map_err(|e| JobError(e.desc))?;
        let _da = match &data {
            Some((n, _)) => Some(
                d.block
                    .attach(n, kind, "root", perm, Perm::ALL)
                    .map_err(|e| JobError(e.desc))?,
            ),
            None => None,
        };
        if let Some((n, _)) = &data {
            // QEMU records the data file's own file name.
            let f = crate::block::info::filename(n);
            img.data_file = Some(if f.exact.is_empty() {
                f.filename
            } else {
                f.exact
            });
        }
        format(&file, data.as_ref().map(|(n, _)| n.as_ref()), &img)
            .await
            .map_err(JobError)
    }
    .await;
    if file_new {
        d.block.remove(&file);
    }
    if let Some((n, true)) = &data {
        d.block.remove(n);
    }
    r
}
