//! Opening nodes: `blockdev-add` and `--blockdev`.
//!
//! The steps and their order follow QEMU's `bdrv_open`, so that the first
//! error reported is QEMU's: `force-share` needs `read-only`; a format's
//! `file` child is opened (or looked up) first; `detect-zeroes=unmap`
//! needs `discard=unmap`; the node name is checked (or generated); the
//! driver opens; the node takes its place in the graph and its edges take
//! their permissions.
//!
//! Drivers are found by name in [`DRIVERS`]. A driver the schema knows but
//! we do not implement yet fails, after the generic checks, with "driver
//! 'X' is not implemented yet".

use std::sync::Arc;

use qapi::types::{
    BlockdevCacheOptions, BlockdevDetectZeroesOptions, BlockdevDiscardOptions, BlockdevOptions,
    BlockdevOptionsBranch, BlockdevRef,
};
use qapi::QmpError;
use serde_json::{Map, Value};

use super::file::{FileDriver, OpenFlags};
use super::graph::BlockGraph;
use super::node::{BlockNode, NodeOpts, NodeState};
use super::null::NullDriver;
use super::raw::RawDriver;
use super::{BlockDriver, ChildRole};
use crate::Daemon;

/// What a driver's open function gets.
pub struct OpenCx<'a> {
    pub daemon: &'a Daemon,
    pub graph: &'a BlockGraph,
    /// The options of the node being opened (children inherit from them).
    pub options: &'a BlockdevOptions,
    /// The node's generic settings.
    pub opts: NodeOpts,
    /// The `file` child, opened before the driver.
    pub file: Option<Arc<BlockNode>>,
    /// The name the node gets (given or generated).
    pub node_name: String,
}

impl OpenCx<'_> {
    /// Opens (or looks up) another child given as a `BlockdevRef`, as a
    /// child of the node being opened (e.g. `backing`).
    pub fn open_child(&self, r: &BlockdevRef) -> Result<Arc<BlockNode>, QmpError> {
        open_ref(self.daemon, self.options, r)
    }
}

/// A driver instance and the children it uses, with their roles.
pub struct Opened {
    pub driver: Box<dyn BlockDriver>,
    pub children: Vec<(String, ChildRole, Arc<BlockNode>)>,
    /// The image could only be opened read-only (`auto-read-only`).
    pub fell_back_read_only: bool,
    /// Children opened once the node is in the graph (QEMU opens a
    /// format's backing and data files after the node itself); they are
    /// handed to the driver with [`BlockDriver::replace_child`].
    pub deferred: Option<DeferredOpen>,
}

/// See [`Opened::deferred`].
pub type DeferredOpen = Box<
    dyn FnOnce(
        &Daemon,
        &BlockdevOptions,
    ) -> Result<Vec<(String, ChildRole, Arc<BlockNode>)>, QmpError>,
>;

/// A driver's open function.
pub type OpenFn = fn(&OpenCx<'_>) -> Result<Opened, QmpError>;

/// The drivers we implement, by QAPI name.
pub static DRIVERS: &[(&str, OpenFn)] = &[
    ("file", open_file),
    ("host_device", open_file),
    ("raw", open_raw),
    ("qcow2", super::qcow2::open),
    ("null-co", open_null),
    ("null-aio", open_null),
];

fn open_file(cx: &OpenCx<'_>) -> Result<Opened, QmpError> {
    let (name, o) = match &cx.options.u {
        BlockdevOptionsBranch::File(o) => ("file", o),
        BlockdevOptionsBranch::HostDevice(o) => ("host_device", o),
        _ => return Err(QmpError::generic("not a file driver")),
    };
    if let Some(pr) = &o.pr_manager {
        return Err(QmpError::generic(format!(
            "No persistent reservation manager with id '{pr}'"
        )));
    }
    let (drv, fell_back) = FileDriver::open(
        name,
        o,
        OpenFlags {
            read_only: cx.opts.read_only,
            auto_read_only: cx.opts.auto_read_only,
            direct: cx.opts.direct,
        },
    )?;
    Ok(Opened {
        driver: Box::new(drv),
        children: Vec::new(),
        fell_back_read_only: fell_back,
        deferred: None,
    })
}

fn open_raw(cx: &OpenCx<'_>) -> Result<Opened, QmpError> {
    let BlockdevOptionsBranch::Raw(o) = &cx.options.u else {
        return Err(QmpError::generic("not a raw node"));
    };
    let file = cx
        .file
        .clone()
        .ok_or_else(|| QmpError::generic("A block device must be specified for \"file\""))?;
    let drv = RawDriver::open(o, file.clone())?;
    Ok(Opened {
        driver: Box::new(drv),
        children: vec![("file".into(), RawDriver::file_role(o), file)],
        fell_back_read_only: false,
        deferred: None,
    })
}

fn open_null(cx: &OpenCx<'_>) -> Result<Opened, QmpError> {
    let (name, o) = match &cx.options.u {
        BlockdevOptionsBranch::NullCo(o) => ("null-co", o),
        BlockdevOptionsBranch::NullAio(o) => ("null-aio", o),
        _ => return Err(QmpError::generic("not a null driver")),
    };
    Ok(Opened {
        driver: Box::new(NullDriver::open(name, o)?),
        children: Vec::new(),
        fell_back_read_only: false,
        deferred: None,
    })
}

/// `blockdev-add`: opens the node tree `opts` describes; the top node must
/// be named and belongs to the monitor until `blockdev-del`. Also used for
/// `--blockdev`.
pub fn blockdev_add(daemon: &Daemon, opts: BlockdevOptions) -> Result<(), QmpError> {
    if opts.node_name.is_none() {
        return Err(QmpError::generic(
            "'node-name' must be specified for the root node",
        ));
    }
    let node = open_node(daemon, opts)?;
    node.lock().monitor_owned = true;
    Ok(())
}

/// The options as a JSON object (QAPI output order).
pub(crate) fn options_json(opts: &BlockdevOptions) -> Map<String, Value> {
    match serde_json::to_value(opts) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// Fills what an inline child inherits from its parent
/// (`bdrv_inherited_options`): cache mode, force-share, read-only and
/// auto-read-only when not set, and `discard=unmap` by default.
pub(crate) fn inherit(child: &mut BlockdevOptions, parent: &BlockdevOptions) {
    let pc = parent.cache.clone().unwrap_or(BlockdevCacheOptions {
        direct: None,
        no_flush: None,
    });
    let cc = child.cache.get_or_insert(BlockdevCacheOptions {
        direct: None,
        no_flush: None,
    });
    if cc.direct.is_none() {
        cc.direct = pc.direct;
    }
    if cc.no_flush.is_none() {
        cc.no_flush = pc.no_flush;
    }
    if cc.direct.is_none() && cc.no_flush.is_none() {
        child.cache = None;
    }
    if child.force_share.is_none() {
        child.force_share = parent.force_share;
    }
    if child.read_only.is_none() {
        child.read_only = parent.read_only;
    }
    if child.auto_read_only.is_none() {
        child.auto_read_only = parent.auto_read_only;
    }
    if child.discard.is_none() {
        child.discard = Some(BlockdevDiscardOptions::Unmap);
    }
}

/// Opens or looks up the child `r` of a node with options `parent`.
pub(crate) fn open_ref(
    daemon: &Daemon,
    parent: &BlockdevOptions,
    r: &BlockdevRef,
) -> Result<Arc<BlockNode>, QmpError> {
    match r {
        BlockdevRef::Reference(name) => daemon.block.node(name).ok_or_else(|| {
            QmpError::generic(format!(
                "Cannot find device='{name}' nor node-name='{name}'"
            ))
        }),
        BlockdevRef::Definition(o) => {
            let explicit = (**o).clone();
            let mut o = explicit.clone();
            inherit(&mut o, parent);
            let n = open_node(daemon, o)?;
            n.lock().explicit = explicit;
            Ok(n)
        }
    }
}

/// The `file` child of formats we do not implement, found through their
/// JSON form.
fn generic_file_ref(opts: &BlockdevOptions) -> Result<Option<BlockdevRef>, QmpError> {
    let m = options_json(opts);
    let Some(f) = m.get("file") else {
        return Ok(None);
    };
    qapi::visit::from_value::<BlockdevRef>(f, qapi::visit::Mode::Json)
        .map(Some)
        .map_err(|e| QmpError::generic(e.0))
}

pub(crate) fn node_opts(o: &BlockdevOptions) -> NodeOpts {
    let cache = o.cache.as_ref();
    NodeOpts {
        read_only: o.read_only.unwrap_or(false),
        auto_read_only: o.auto_read_only.unwrap_or(false),
        force_share: o.force_share.unwrap_or(false),
        discard_unmap: o.discard == Some(BlockdevDiscardOptions::Unmap),
        detect_zeroes: o.detect_zeroes.unwrap_or(BlockdevDetectZeroesOptions::Off),
        direct: cache.and_then(|c| c.direct).unwrap_or(false),
        no_flush: cache.and_then(|c| c.no_flush).unwrap_or(false),
        active: o.active.unwrap_or(true),
    }
}

/// Checks the generic options of `o` that do not depend on the driver.
pub(crate) fn check_generic(opts: &NodeOpts) -> Result<(), QmpError> {
    if opts.detect_zeroes == BlockdevDetectZeroesOptions::Unmap && !opts.discard_unmap {
        return Err(QmpError::generic(
            "setting detect-zeroes to unmap is not allowed without setting discard operation to unmap",
        ));
    }
    Ok(())
}

/// Opens one node (and its inline children).
pub(crate) fn open_node(
    daemon: &Daemon,
    options: BlockdevOptions,
) -> Result<Arc<BlockNode>, QmpError> {
    let graph = &daemon.block;
    let opts = node_opts(&options);
    if opts.force_share && !opts.read_only {
        return Err(QmpError::generic(
            "force-share=on can only be used with read-only images",
        ));
    }
    let driver_name = options.u.discriminator().as_str();
    let factory = DRIVERS
        .iter()
        .find(|(n, _)| *n == driver_name)
        .map(|(_, f)| *f);
    let file_ref = match &options.u {
        BlockdevOptionsBranch::Raw(o) => Some((*o.file).clone()),
        BlockdevOptionsBranch::Qcow2(o) => Some((*o.file).clone()),
        _ if factory.is_none() => generic_file_ref(&options)?,
        _ => None,
    };
    let file = match &file_ref {
        Some(r) => Some(open_ref(daemon, &options, r)?),
        None => None,
    };
    // From here on, an inline child just opened must go again on failure.
    let release = |file: &Option<Arc<BlockNode>>| {
        if let (Some(f), Some(BlockdevRef::Definition(_))) = (file, &file_ref) {
            graph.remove(f);
        }
    };
    let r = open_rest(daemon, options, opts, file.clone(), factory);
    match &r {
        Err(_) => release(&file),
        Ok(node) => {
            if let (Some(f), Some(BlockdevRef::Definition(_))) = (&file, &file_ref) {
                f.lock().inherits_from = Some(node.name().to_string());
            }
        }
    }
    r
}

fn open_rest(
    daemon: &Daemon,
    options: BlockdevOptions,
    mut opts: NodeOpts,
    file: Option<Arc<BlockNode>>,
    factory: Option<OpenFn>,
) -> Result<Arc<BlockNode>, QmpError> {
    let graph = &daemon.block;
    check_generic(&opts)?;
    let name = match &options.node_name {
        Some(n) => {
            graph.check_new_name(n)?;
            n.clone()
        }
        None => graph.generate_name(),
    };
    let Some(factory) = factory else {
        return Err(QmpError::generic(format!(
            "driver '{}' is not implemented yet",
            options.u.discriminator().as_str()
        )));
    };
    let opened = factory(&OpenCx {
        daemon,
        graph,
        options: &options,
        opts: opts.clone(),
        file,
        node_name: name.clone(),
    })?;
    if opened.fell_back_read_only {
        opts.read_only = true;
    }
    let json = options_json(&options);
    let mut given = Map::new();
    for k in ["driver", "filename"]
        .iter()
        .chain(opened.driver.strong_runtime_opts())
    {
        if let Some(v) = json.get(*k) {
            given.insert((*k).to_string(), v.clone());
        }
    }
    let parent_options = options.clone();
    let state = NodeState {
        opts,
        explicit: options.clone(),
        inherits_from: None,
        writable_before_reopen: None,
        options,
        given,
        children: Vec::new(),
        parents: Vec::new(),
        monitor_owned: false,
        blockers: Vec::new(),
    };
    let node = Arc::new(BlockNode::new(
        name,
        opened.driver,
        state,
        graph.0.events.clone(),
    ));
    graph.insert(node.clone());
    let mut children = opened.children;
    if let Some(open_more) = opened.deferred {
        match open_more(daemon, &parent_options) {
            Ok(more) => {
                for (cname, _, child) in &more {
                    node.driver().replace_child(cname, child.clone());
                }
                children.extend(more);
            }
            Err(e) => {
                graph.remove(&node);
                return Err(e);
            }
        }
    }
    for (cname, role, child) in children {
        if let Err(e) = graph.attach_child(&node, &child, &cname, role) {
            graph.remove(&node);
            return Err(e);
        }
    }
    if let Err(e) = graph.refresh(&node) {
        graph.remove(&node);
        return Err(e);
    }
    Ok(node)
}
