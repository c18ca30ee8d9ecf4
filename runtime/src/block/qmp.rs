//! The block layer's QMP commands, with QEMU's rules and error texts.

use std::sync::Arc;

use qapi::types::{
    BlockDeviceInfo, BlockInfo, BlockResizeArgs, BlockSetWriteThresholdArgs, BlockStats,
    BlockdevDelArgs, BlockdevSetActiveArgs, QueryBlockstatsArgs, QueryNamedBlockNodesArgs,
    XDbgBlockGraph, XDbgBlockGraphEdge, XDbgBlockGraphNode, XDbgBlockGraphNodeType,
};
use qapi::QmpError;

use super::graph::{BlockOp, ParentKind};
use super::{info, BlockNode, Perm};
use crate::Daemon;

pub use super::open::blockdev_add;
pub use super::reopen::blockdev_reopen;

/// `blockdev-del`.
pub fn blockdev_del(d: &Daemon, args: BlockdevDelArgs) -> Result<(), QmpError> {
    d.block.delete(&args.node_name)
}

/// `query-named-block-nodes`: every node, newest first. `flat` only
/// matters for backing chains, which our drivers do not have yet.
pub fn query_named_block_nodes(
    d: &Daemon,
    _args: QueryNamedBlockNodesArgs,
) -> Result<Vec<BlockDeviceInfo>, QmpError> {
    Ok(d.block
        .nodes()
        .iter()
        .rev()
        .map(|n| info::block_device_info(n))
        .collect())
}

/// `query-block`: the daemon has no named block backends.
pub fn query_block(_d: &Daemon) -> Result<Vec<BlockInfo>, QmpError> {
    Ok(Vec::new())
}

/// `query-blockstats`: per named backend (none in the daemon), or with
/// `query-nodes` per node, oldest first.
pub fn query_blockstats(
    d: &Daemon,
    args: QueryBlockstatsArgs,
) -> Result<Vec<BlockStats>, QmpError> {
    if args.query_nodes != Some(true) {
        return Ok(Vec::new());
    }
    Ok(d.block
        .nodes()
        .iter()
        .map(|n| info::node_stats(n))
        .collect())
}

/// `x-debug-query-block-graph`: block backends, then jobs, then nodes get
/// numbers in the order QEMU visits them (a child first seen through an
/// edge gets its number then); both lists come out newest first.
pub fn x_debug_query_block_graph(d: &Daemon) -> Result<XDbgBlockGraph, QmpError> {
    struct Builder {
        ids: Vec<(usize, u64)>,
        nodes: Vec<XDbgBlockGraphNode>,
        edges: Vec<XDbgBlockGraphEdge>,
    }
    impl Builder {
        fn id(&mut self, key: usize) -> u64 {
            if let Some((_, id)) = self.ids.iter().find(|(k, _)| *k == key) {
                return *id;
            }
            let id = self.ids.len() as u64 + 1;
            self.ids.push((key, id));
            id
        }
        fn node(&mut self, key: usize, t: XDbgBlockGraphNodeType, name: String) {
            let id = self.id(key);
            self.nodes.push(XDbgBlockGraphNode { id, type_: t, name });
        }
        fn edge(
            &mut self,
            parent: usize,
            child: &Arc<BlockNode>,
            name: String,
            perm: Perm,
            shared: Perm,
        ) {
            let parent = self.id(parent);
            let child = self.id(Arc::as_ptr(child) as usize);
            self.edges.push(XDbgBlockGraphEdge {
                parent,
                child,
                name,
                perm: perm.to_qapi(),
                shared_perm: shared.to_qapi(),
            });
        }
    }
    let mut b = Builder {
        ids: Vec::new(),
        nodes: Vec::new(),
        edges: Vec::new(),
    };
    let users = d.block.users();
    // Keys for users: distinct from node pointers (odd numbers).
    let mut jobs: Vec<(String, usize)> = Vec::new();
    for (i, (kind, name, node, perm, shared)) in users.iter().enumerate() {
        if let ParentKind::Backend { name: bname } = kind {
            let key = 2 * i + 1;
            b.node(key, XDbgBlockGraphNodeType::BlockBackend, bname.clone());
            b.edge(key, node, name.clone(), *perm, *shared);
        } else if let ParentKind::Job { id, .. } = kind {
            if !jobs.iter().any(|(j, _)| j == id) {
                jobs.push((id.clone(), 2 * i + 1));
            }
        }
    }
    for (job, key) in &jobs {
        b.node(*key, XDbgBlockGraphNodeType::BlockJob, job.clone());
        for (kind, name, node, perm, shared) in &users {
            if matches!(kind, ParentKind::Job { id, .. } if id == job) {
                b.edge(*key, node, name.clone(), *perm, *shared);
            }
        }
    }
    for n in d.block.nodes() {
        let key = Arc::as_ptr(&n) as usize;
        b.node(
            key,
            XDbgBlockGraphNodeType::BlockDriver,
            n.name().to_string(),
        );
        let edges: Vec<(String, Arc<BlockNode>, u64)> = n
            .lock()
            .children
            .iter()
            .map(|e| (e.name.clone(), e.node.clone(), e.link))
            .collect();
        for (name, child, link) in edges {
            let (perm, shared) = child
                .lock()
                .parents
                .iter()
                .find(|l| l.id == link)
                .map(|l| (l.perm, l.shared))
                .unwrap_or((Perm::NONE, Perm::ALL));
            b.edge(key, &child, name, perm, shared);
        }
    }
    b.nodes.reverse();
    b.edges.reverse();
    Ok(XDbgBlockGraph {
        nodes: b.nodes,
        edges: b.edges,
    })
}

/// `block_resize`: only `node-name` can match in the daemon (no named
/// backends). Takes the `resize` permission for the duration, so users
/// that do not share it make the command fail.
pub async fn block_resize(d: &Daemon, args: BlockResizeArgs) -> Result<(), QmpError> {
    let node = args.node_name.as_deref().and_then(|n| d.block.node(n));
    let Some(node) = node else {
        return Err(QmpError::generic(format!(
            "Cannot find device='{}' nor node-name='{}'",
            args.device.as_deref().unwrap_or(""),
            args.node_name.as_deref().unwrap_or("")
        )));
    };
    if args.size < 0 {
        return Err(QmpError::generic("Parameter 'size' expects a >0 size"));
    }
    if node.check_op(BlockOp::Resize).is_err() {
        return Err(QmpError::generic(format!(
            "Device '{}' is in use",
            args.device.as_deref().unwrap_or("(null)")
        )));
    }
    let hold = d.block.attach(
        &node,
        ParentKind::Backend {
            name: String::new(),
        },
        "root",
        Perm::RESIZE,
        Perm::ALL,
    )?;
    let r = node.co_truncate(args.size as u64).await;
    drop(hold);
    r
}

/// `block-set-write-threshold`.
pub fn block_set_write_threshold(
    d: &Daemon,
    args: BlockSetWriteThresholdArgs,
) -> Result<(), QmpError> {
    let Some(node) = d.block.node(&args.node_name) else {
        return Err(QmpError::generic(format!(
            "Device '{}' not found",
            args.node_name
        )));
    };
    node.set_write_threshold(args.write_threshold);
    Ok(())
}

/// `blockdev-set-active`: without a node name, every node.
pub fn blockdev_set_active(d: &Daemon, args: BlockdevSetActiveArgs) -> Result<(), QmpError> {
    let g = &d.block;
    match &args.node_name {
        None => {
            let nodes = g.nodes();
            if args.active {
                for n in &nodes {
                    activate(d, n)?;
                }
            } else {
                for n in nodes.iter().filter(|n| !has_node_parent(g, n, false)) {
                    if inactivate(d, n, true).is_err() {
                        return Err(QmpError::generic(
                            "Failed to inactivate all nodes: Operation not permitted",
                        ));
                    }
                }
            }
            Ok(())
        }
        Some(name) => {
            let Some(n) = g.node(name) else {
                return Err(QmpError::generic(format!(
                    "Failed to find node with node-name='{name}'"
                )));
            };
            if args.active {
                activate(d, &n)
            } else {
                if has_node_parent(g, &n, true) {
                    return Err(QmpError::generic("Node has active parent node"));
                }
                inactivate(d, &n, true)
            }
        }
    }
}

/// Whether a parent node (optionally: an active one) uses `n`.
fn has_node_parent(g: &super::BlockGraph, n: &Arc<BlockNode>, only_active: bool) -> bool {
    g.parent_nodes(n)
        .iter()
        .any(|p| !only_active || p.is_active())
}

fn activate(d: &Daemon, n: &Arc<BlockNode>) -> Result<(), QmpError> {
    for (_, c) in n.children() {
        activate(d, &c)?;
    }
    let mut o = n.opts();
    if o.active {
        return Ok(());
    }
    o.active = true;
    let old = n.opts();
    n.set_opts(o);
    if let Err(e) = d.block.refresh(n) {
        n.set_opts(old);
        let _ = d.block.refresh(n);
        return Err(e);
    }
    Ok(())
}

fn inactivate(d: &Daemon, n: &Arc<BlockNode>, top: bool) -> Result<(), QmpError> {
    let mut o = n.opts();
    if !o.active {
        return Ok(());
    }
    if !top && has_node_parent(&d.block, n, true) {
        return Ok(());
    }
    if n.cumulative_perm()
        .intersects(Perm::WRITE | Perm::WRITE_UNCHANGED)
    {
        return Err(QmpError::generic(
            "Failed to inactivate node: Operation not permitted",
        ));
    }
    o.active = false;
    n.set_opts(o);
    let _ = d.block.refresh(n);
    for (_, c) in n.children() {
        inactivate(d, &c, false)?;
    }
    Ok(())
}
