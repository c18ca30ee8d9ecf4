//! What the queries show about nodes: file names (QEMU's
//! `bdrv_refresh_filename`, `json:{...}` included), image information
//! (`query-named-block-nodes`) and statistics (`query-blockstats`).

use std::sync::Arc;

use qapi::types::{BlockDeviceInfo, BlockDeviceStats, BlockStats, BlockdevCacheInfo, ImageInfo};
use serde_json::{Map, Value};

use super::{AllocatedSize, BlockNode};

/// A node's file names: `filename` is what QEMU shows; `exact` is empty
/// when the node cannot be described by a plain file name.
#[derive(Debug, Clone)]
pub struct Filename {
    pub filename: String,
    pub exact: String,
    /// The options that recreate the node (`full_open_options`).
    pub full: Map<String, Value>,
}

/// QEMU's file name buffer holds 4095 bytes.
const PATH_MAX: usize = 4096;

fn clip(s: &str, max: usize) -> String {
    if s.len() < max {
        return s.to_string();
    }
    let mut end = max - 1;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// QEMU's `bdrv_refresh_filename` for `node`.
pub fn filename(node: &BlockNode) -> Filename {
    let (given, children) = {
        let st = node.lock();
        (
            st.given.clone(),
            st.children
                .iter()
                .map(|e| (e.name.clone(), e.role, e.node.clone()))
                .collect::<Vec<_>>(),
        )
    };
    let drv = node.driver();
    let mut full = Map::new();
    for k in ["driver", "filename"] {
        if let Some(v) = given.get(k) {
            full.insert(k.to_string(), v.clone());
        }
    }
    let mut found_any = false;
    for k in drv.strong_runtime_opts() {
        if let Some(v) = given.get(*k) {
            full.insert((*k).to_string(), v.clone());
            found_any = true;
        }
    }
    if !full.contains_key("driver") {
        full.insert("driver".into(), Value::from(drv.driver_name()));
    }
    let mut child_names = Vec::new();
    for (name, role, child) in &children {
        let f = filename(child);
        full.insert(name.clone(), Value::Object(f.full.clone()));
        child_names.push((role.primary, child.clone(), f));
    }
    let initial = match given.get("filename") {
        Some(Value::String(s)) => clip(s, PATH_MAX),
        _ => String::new(),
    };
    let exact = if let Some(own) = drv.refresh_filename(&full) {
        own.unwrap_or_default()
    } else if let Some((_, child, f)) = child_names.iter().find(|(p, _, _)| *p) {
        if !f.exact.is_empty() && child.driver().protocol_name().is_some() && !found_any {
            f.exact.clone()
        } else {
            String::new()
        }
    } else {
        initial
    };
    let filename = if exact.is_empty() {
        let json = format!(
            "json:{}",
            qapi::json::to_json(&Value::Object(full.clone()), false)
        );
        if json.len() >= PATH_MAX {
            format!("{}...", clip(&json, PATH_MAX - 3))
        } else {
            json
        }
    } else {
        exact.clone()
    };
    Filename {
        filename,
        exact,
        full,
    }
}

/// `actual-size` (QEMU's `bdrv_get_allocated_file_size`).
pub fn allocated_size(node: &BlockNode) -> Option<u64> {
    match node.driver().allocated_size() {
        AllocatedSize::Known(n) => Some(n),
        AllocatedSize::Unknown => None,
        AllocatedSize::SumOfChildren => {
            let children: Vec<(super::ChildRole, Arc<BlockNode>)> = node
                .lock()
                .children
                .iter()
                .map(|e| (e.role, e.node.clone()))
                .collect();
            let mut sum = 0;
            for (role, c) in children {
                if role.data || role.metadata || role.filtered {
                    sum += allocated_size(&c)?;
                }
            }
            Some(sum)
        }
    }
}

/// The image part of the node information (with the backing chain's,
/// as `backing-image`).
pub fn image_info(node: &BlockNode, f: &Filename) -> ImageInfo {
    let drv = node.driver();
    let fi = drv.format_info();
    let backing = node.child("backing").map(|b| {
        let bf = filename(&b);
        Box::new(image_info(&b, &bf))
    });
    let full_backing = fi
        .backing_filename
        .as_ref()
        .map(|name| super::qcow2::open::full_backing_filename(&f.filename, name));
    ImageInfo {
        filename: f.filename.clone(),
        format: drv.driver_name().to_string(),
        dirty_flag: drv.has_info().then_some(false),
        actual_size: allocated_size(node).map(|n| n as i64),
        virtual_size: node.refresh_size() as i64,
        cluster_size: fi.cluster_size.map(|c| c as i64),
        encrypted: None,
        compressed: None,
        backing_filename: fi.backing_filename.clone(),
        full_backing_filename: full_backing,
        backing_filename_format: fi.backing_format.clone(),
        snapshots: None,
        format_specific: drv.format_specific(),
        backing_image: backing,
    }
}

/// The length of the node's backing chain.
fn backing_depth(node: &BlockNode) -> i64 {
    match node.child("backing") {
        Some(b) => 1 + backing_depth(&b),
        None => 0,
    }
}

/// One element of `query-named-block-nodes`.
pub fn block_device_info(node: &BlockNode) -> BlockDeviceInfo {
    let f = filename(node);
    let o = node.opts();
    BlockDeviceInfo {
        file: f.filename.clone(),
        node_name: Some(node.name().to_string()),
        ro: o.read_only,
        drv: node.driver_name().to_string(),
        backing_file: node.child("backing").map(|b| filename(&b).filename),
        backing_file_depth: backing_depth(node),
        active: o.active,
        encrypted: false,
        detect_zeroes: o.detect_zeroes,
        bps: 0,
        bps_rd: 0,
        bps_wr: 0,
        iops: 0,
        iops_rd: 0,
        iops_wr: 0,
        image: image_info(node, &f),
        bps_max: None,
        bps_rd_max: None,
        bps_wr_max: None,
        iops_max: None,
        iops_rd_max: None,
        iops_wr_max: None,
        bps_max_length: None,
        bps_rd_max_length: None,
        bps_wr_max_length: None,
        iops_max_length: None,
        iops_rd_max_length: None,
        iops_wr_max_length: None,
        iops_size: None,
        group: None,
        cache: BlockdevCacheInfo {
            writeback: true,
            direct: o.direct,
            no_flush: o.no_flush,
        },
        write_threshold: node.write_threshold() as i64,
        dirty_bitmaps: None,
    }
}

/// Node-level statistics (`query-blockstats` with `query-nodes`): QEMU
/// keeps request counters per block backend only, so a node shows zeroes
/// there, its highest written offset, its driver's statistics, and the
/// statistics of its data child as `parent`.
pub fn node_stats(node: &BlockNode) -> BlockStats {
    let parent = {
        let st = node.lock();
        st.children
            .iter()
            .find(|e| e.role.primary && (e.role.data || e.role.filtered))
            .or_else(|| {
                let data: Vec<_> = st.children.iter().filter(|e| e.role.data).collect();
                (data.len() == 1).then(|| data[0])
            })
            .map(|e| e.node.clone())
    };
    BlockStats {
        device: None,
        qdev: None,
        node_name: Some(node.name().to_string()),
        stats: BlockDeviceStats {
            wr_highest_offset: node.wr_highest_offset() as i64,
            ..zero_stats()
        },
        driver_specific: node.driver().specific_stats(),
        parent: parent.map(|p| Box::new(node_stats(&p))),
        backing: None,
    }
}

fn zero_stats() -> BlockDeviceStats {
    BlockDeviceStats {
        rd_bytes: 0,
        wr_bytes: 0,
        zone_append_bytes: 0,
        unmap_bytes: 0,
        rd_operations: 0,
        wr_operations: 0,
        zone_append_operations: 0,
        flush_operations: 0,
        unmap_operations: 0,
        rd_total_time_ns: 0,
        wr_total_time_ns: 0,
        zone_append_total_time_ns: 0,
        flush_total_time_ns: 0,
        unmap_total_time_ns: 0,
        wr_highest_offset: 0,
        rd_merged: 0,
        wr_merged: 0,
        zone_append_merged: 0,
        unmap_merged: 0,
        idle_time_ns: None,
        failed_rd_operations: 0,
        failed_wr_operations: 0,
        failed_zone_append_operations: 0,
        failed_flush_operations: 0,
        failed_unmap_operations: 0,
        invalid_rd_operations: 0,
        invalid_wr_operations: 0,
        invalid_zone_append_operations: 0,
        invalid_flush_operations: 0,
        invalid_unmap_operations: 0,
        account_invalid: false,
        account_failed: false,
        timed_stats: Vec::new(),
        rd_latency_histogram: None,
        wr_latency_histogram: None,
        zone_append_latency_histogram: None,
        flush_latency_histogram: None,
    }
}
