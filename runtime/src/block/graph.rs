//! The graph registry: every node, the users attached to nodes, node
//! names, permissions and op blockers.
//!
//! Permissions follow QEMU's model. Every edge into a node (from a parent
//! node, an export's block backend or a job) carries the permissions the
//! user takes (`perm`) and those it lets others take (`shared`). A change
//! is checked over the whole affected subgraph before it is applied: users
//! of a node must not conflict with each other, write permissions need a
//! writable node, and the drivers must agree (a file takes its image locks
//! then). If anything fails, every node returns to its previous state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use qapi::QmpError;

use super::node::{BlockNode, EventSink};
use super::{ChildPermCx, ChildRole, Perm};

/// Who uses a node, as QEMU describes it in permission errors and in
/// `x-debug-query-block-graph`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentKind {
    /// Another node (the edge is one of its children).
    Node(String),
    /// A block backend, as exports use (name empty for exports).
    Backend { name: String },
    /// A block job.
    Job { job_type: String, id: String },
}

impl ParentKind {
    /// QEMU's description of the user (`bdrv_child_user_desc`).
    pub fn desc(&self) -> String {
        match self {
            ParentKind::Node(n) => format!("node '{n}'"),
            ParentKind::Backend { name } if name.is_empty() => "an unnamed block device".into(),
            ParentKind::Backend { name } => format!("block device '{name}'"),
            ParentKind::Job { job_type, id } => format!("{job_type} job '{id}'"),
        }
    }
}

/// One user of a node: an edge seen from the child.
#[derive(Debug, Clone)]
pub(crate) struct ParentLink {
    pub id: u64,
    pub kind: ParentKind,
    /// The name of the edge (`file`, `root`, ...).
    pub child_name: String,
    pub perm: Perm,
    pub shared: Perm,
}

/// An edge seen from the parent node.
#[derive(Debug, Clone)]
pub(crate) struct Edge {
    pub name: String,
    pub role: ChildRole,
    pub node: Arc<BlockNode>,
    /// The id of the matching [`ParentLink`] in `node`.
    pub link: u64,
}

/// Operations that block jobs can forbid on a node (QEMU's
/// `BlockOpType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockOp {
    BackupSource,
    BackupTarget,
    Change,
    CommitSource,
    CommitTarget,
    DriveDel,
    Eject,
    ExternalSnapshot,
    InternalSnapshot,
    InternalSnapshotDelete,
    MirrorSource,
    MirrorTarget,
    Resize,
    Stream,
    Replace,
}

/// A reason why operations on a node are forbidden, e.g. "block device is
/// in use by block job: mirror". Errors read "Node 'X' is busy: REASON".
#[derive(Debug)]
pub struct OpBlocker {
    /// The operations blocked; empty means all.
    pub ops: Vec<BlockOp>,
    pub reason: String,
}

impl OpBlocker {
    fn blocks(&self, op: BlockOp) -> bool {
        self.ops.is_empty() || self.ops.contains(&op)
    }
}

struct UserEntry {
    id: u64,
    kind: ParentKind,
    node: Arc<BlockNode>,
}

struct GraphState {
    /// All nodes, in creation order.
    nodes: Vec<Arc<BlockNode>>,
    /// Block backends and jobs attached, in creation order.
    users: Vec<UserEntry>,
    /// Counter of generated node names.
    generated: u64,
    rng: u64,
}

pub(crate) struct GraphInner {
    state: Mutex<GraphState>,
    pub(crate) events: EventSink,
    next_id: AtomicU64,
}

/// The block graph of a daemon; cheap to clone.
#[derive(Clone)]
pub struct BlockGraph(pub(crate) Arc<GraphInner>);

/// A user's hold on a node with permissions; dropping it detaches the user
/// and releases what it held (image locks included).
pub struct Attachment {
    graph: Arc<GraphInner>,
    node: Arc<BlockNode>,
    id: u64,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Attachment({} #{})", self.node.name(), self.id)
    }
}

/// Pending changes of a permission update, undone on failure.
#[derive(Default)]
struct Tran {
    /// Nodes whose driver was asked `check_perm`, with the cumulative
    /// permissions to commit.
    checked: Vec<(Arc<BlockNode>, Perm, Perm)>,
    /// Links changed: (child, link id, old perm, old shared).
    links: Vec<(Arc<BlockNode>, u64, Perm, Perm)>,
}

/// Whether `name` is a valid QEMU identifier (`id_wellformed`).
pub fn id_wellformed(name: &str) -> bool {
    let mut it = name.chars();
    match it.next() {
        Some(c) if c.is_ascii_alphabetic() => {}
        _ => return false,
    }
    it.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

impl BlockGraph {
    /// An empty graph whose nodes send their events to `events`.
    pub fn new(events: EventSink) -> BlockGraph {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        BlockGraph(Arc::new(GraphInner {
            state: Mutex::new(GraphState {
                nodes: Vec::new(),
                users: Vec::new(),
                generated: 0,
                rng: seed,
            }),
            events,
            next_id: AtomicU64::new(1),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, GraphState> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.0.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<Arc<BlockNode>> {
        self.lock().nodes.iter().find(|n| n.name() == name).cloned()
    }

    /// Every node, oldest first.
    pub fn nodes(&self) -> Vec<Arc<BlockNode>> {
        self.lock().nodes.clone()
    }

    /// Block backends and jobs attached: (kind, edge name, node, perm,
    /// shared), oldest first.
    pub fn users(&self) -> Vec<(ParentKind, String, Arc<BlockNode>, Perm, Perm)> {
        let users: Vec<(u64, ParentKind, Arc<BlockNode>)> = self
            .lock()
            .users
            .iter()
            .map(|u| (u.id, u.kind.clone(), u.node.clone()))
            .collect();
        users
            .into_iter()
            .filter_map(|(id, kind, node)| {
                let st = node.lock();
                let l = st.parents.iter().find(|l| l.id == id)?;
                let (name, perm, shared) = (l.child_name.clone(), l.perm, l.shared);
                drop(st);
                Some((kind, name, node, perm, shared))
            })
            .collect()
    }

    /// The nodes that have `n` as a child.
    pub fn parent_nodes(&self, n: &Arc<BlockNode>) -> Vec<Arc<BlockNode>> {
        self.nodes()
            .into_iter()
            .filter(|p| p.lock().children.iter().any(|e| Arc::ptr_eq(&e.node, n)))
            .collect()
    }

    /// A generated node name, `#block` + counter + two random digits.
    pub(crate) fn generate_name(&self) -> String {
        let mut st = self.lock();
        let n = st.generated;
        st.generated += 1;
        // xorshift64
        let mut x = st.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        st.rng = x;
        format!("#block{n}{:02}", x % 100)
    }

    /// QEMU's `bdrv_assign_node_name` checks.
    pub(crate) fn check_new_name(&self, name: &str) -> Result<(), QmpError> {
        if !id_wellformed(name) {
            return Err(QmpError::generic(format!("Invalid node-name: '{name}'")));
        }
        if self.node(name).is_some() {
            return Err(QmpError::generic(format!(
                "Duplicate nodes with node-name='{name}'"
            )));
        }
        if name.len() >= 32 {
            return Err(QmpError::generic("Node name too long"));
        }
        Ok(())
    }

    pub(crate) fn insert(&self, node: Arc<BlockNode>) {
        self.lock().nodes.push(node);
    }

    /// Attaches a user of kind `kind` (a block backend or a job) to `node`
    /// through an edge called `child_name` (`root` for a backend) with
    /// permissions `perm`, sharing `shared`. Fails with QEMU's texts when
    /// the permissions conflict with other users, with the node's state, or
    /// with another process's image locks.
    pub fn attach(
        &self,
        node: &Arc<BlockNode>,
        kind: ParentKind,
        child_name: &str,
        perm: Perm,
        shared: Perm,
    ) -> Result<Attachment, QmpError> {
        let id = self.add_link(node, kind.clone(), child_name, perm, shared)?;
        self.lock().users.push(UserEntry {
            id,
            kind,
            node: node.clone(),
        });
        Ok(Attachment {
            graph: self.0.clone(),
            node: node.clone(),
            id,
        })
    }

    /// Adds a parent link and refreshes permissions; removes it again on
    /// failure.
    fn add_link(
        &self,
        node: &Arc<BlockNode>,
        kind: ParentKind,
        child_name: &str,
        perm: Perm,
        shared: Perm,
    ) -> Result<u64, QmpError> {
        let id = self.next_id();
        let shared = if node.lock().opts.force_share {
            Perm::ALL
        } else {
            shared
        };
        node.lock().parents.insert(
            0,
            ParentLink {
                id,
                kind,
                child_name: child_name.to_string(),
                perm,
                shared,
            },
        );
        if let Err(e) = refresh_perms(node) {
            node.lock().parents.retain(|l| l.id != id);
            let _ = refresh_perms(node);
            return Err(e);
        }
        Ok(id)
    }

    /// Makes `child` the child `name` of `parent` with role `role`,
    /// taking the permissions `parent`'s driver wants on it.
    pub(crate) fn attach_child(
        &self,
        parent: &Arc<BlockNode>,
        child: &Arc<BlockNode>,
        name: &str,
        role: ChildRole,
    ) -> Result<(), QmpError> {
        let id = self.add_link(
            child,
            ParentKind::Node(parent.name().to_string()),
            name,
            Perm::NONE,
            Perm::ALL,
        )?;
        parent.lock().children.insert(
            0,
            super::graph::Edge {
                name: name.to_string(),
                role,
                node: child.clone(),
                link: id,
            },
        );
        if let Err(e) = refresh_perms(parent) {
            self.detach_children(parent);
            return Err(e);
        }
        Ok(())
    }

    /// Replaces the child `name` of `parent` by `new` (a reopen).
    pub(crate) fn replace_child(
        &self,
        parent: &Arc<BlockNode>,
        name: &str,
        new: &Arc<BlockNode>,
        role: ChildRole,
    ) -> Result<(), QmpError> {
        let id = self.add_link(
            new,
            ParentKind::Node(parent.name().to_string()),
            name,
            Perm::NONE,
            Perm::ALL,
        )?;
        let old = {
            let mut st = parent.lock();
            let old = st
                .children
                .iter()
                .position(|e| e.name == name)
                .map(|i| st.children.remove(i));
            st.children.insert(
                0,
                Edge {
                    name: name.to_string(),
                    role,
                    node: new.clone(),
                    link: id,
                },
            );
            old
        };
        parent.driver().replace_child(name, new.clone());
        if let Some(e) = old {
            e.node.lock().parents.retain(|l| l.id != e.link);
            let _ = refresh_perms(&e.node);
            self.collect(&e.node);
        }
        refresh_perms(parent)
    }

    /// Removes all children of `parent` (closing it), deleting children
    /// that nobody else holds.
    pub(crate) fn detach_children(&self, parent: &Arc<BlockNode>) {
        let edges = std::mem::take(&mut parent.lock().children);
        for e in edges {
            e.node.lock().parents.retain(|l| l.id != e.link);
            let _ = refresh_perms(&e.node);
            self.collect(&e.node);
        }
    }

    /// Deletes `node` if it is neither monitor-owned nor used.
    fn collect(&self, node: &Arc<BlockNode>) {
        let unused = {
            let st = node.lock();
            !st.monitor_owned && st.parents.is_empty()
        };
        if unused {
            self.remove(node);
        }
    }

    /// Takes `node` out of the graph and releases its children.
    pub(crate) fn remove(&self, node: &Arc<BlockNode>) {
        self.lock().nodes.retain(|n| !Arc::ptr_eq(n, node));
        self.detach_children(node);
    }

    /// `blockdev-del`: removes the monitor-owned node `name` unless it is
    /// in use.
    pub fn delete(&self, name: &str) -> Result<(), QmpError> {
        let Some(node) = self.node(name) else {
            return Err(QmpError::generic(format!(
                "Failed to find node with node-name='{name}'"
            )));
        };
        {
            let st = node.lock();
            if st
                .parents
                .iter()
                .any(|l| matches!(l.kind, ParentKind::Backend { .. }))
            {
                return Err(QmpError::generic(format!("Node {name} is in use")));
            }
        }
        node.check_op(BlockOp::DriveDel)?;
        let st = node.lock();
        if !st.monitor_owned {
            return Err(QmpError::generic(format!(
                "Node {name} is not owned by the monitor"
            )));
        }
        if !st.parents.is_empty() {
            return Err(QmpError::generic(format!("Block device {name} is in use")));
        }
        drop(st);
        node.lock().monitor_owned = false;
        self.remove(&node);
        Ok(())
    }

    /// Recomputes the permissions of `node` and below (after a change of
    /// its state, e.g. read-only or inactive).
    pub(crate) fn refresh(&self, node: &Arc<BlockNode>) -> Result<(), QmpError> {
        refresh_perms(node)
    }
}

impl BlockNode {
    /// Fails with QEMU's "Node 'X' is busy: ..." if a blocker forbids `op`.
    pub fn check_op(&self, op: BlockOp) -> Result<(), QmpError> {
        let st = self.lock();
        match st.blockers.iter().find(|b| b.blocks(op)) {
            Some(b) => Err(QmpError::generic(format!(
                "Node '{}' is busy: {}",
                self.name(),
                b.reason
            ))),
            None => Ok(()),
        }
    }

    /// Adds an op blocker (jobs do while they run); remove it with
    /// [`BlockNode::remove_blocker`].
    pub fn add_blocker(&self, b: Arc<OpBlocker>) {
        self.lock().blockers.push(b);
    }

    pub fn remove_blocker(&self, b: &Arc<OpBlocker>) {
        self.lock().blockers.retain(|x| !Arc::ptr_eq(x, b));
    }
}

impl Attachment {
    /// The node attached to.
    pub fn node(&self) -> &Arc<BlockNode> {
        &self.node
    }

    /// The permissions held and shared.
    pub fn perm(&self) -> (Perm, Perm) {
        let st = self.node.lock();
        st.parents
            .iter()
            .find(|l| l.id == self.id)
            .map(|l| (l.perm, l.shared))
            .unwrap_or((Perm::NONE, Perm::ALL))
    }

    /// Changes the permissions held; on failure nothing changes.
    pub fn set_perm(&self, perm: Perm, shared: Perm) -> Result<(), QmpError> {
        let old = self.perm();
        let force = self.node.lock().opts.force_share;
        set_link(
            &self.node,
            self.id,
            perm,
            if force { Perm::ALL } else { shared },
        );
        if let Err(e) = refresh_perms(&self.node) {
            set_link(&self.node, self.id, old.0, old.1);
            let _ = refresh_perms(&self.node);
            return Err(e);
        }
        Ok(())
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.node.lock().parents.retain(|l| l.id != self.id);
        if let Err(e) = refresh_perms(&self.node) {
            tracing::warn!("releasing permissions on {}: {}", self.node.name(), e.desc);
        }
        self.graph
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .users
            .retain(|u| u.id != self.id);
    }
}

fn set_link(node: &BlockNode, id: u64, perm: Perm, shared: Perm) {
    let mut st = node.lock();
    if let Some(l) = st.parents.iter_mut().find(|l| l.id == id) {
        l.perm = perm;
        l.shared = shared;
    }
}

/// Refreshes the permissions of `node` and its subtree as one transaction.
pub(crate) fn refresh_perms(node: &Arc<BlockNode>) -> Result<(), QmpError> {
    let mut tran = Tran::default();
    match refresh_node(node, &mut tran) {
        Ok(()) => {
            for (n, perm, shared) in &tran.checked {
                n.driver().set_perm(*perm, *shared);
                n.store_perm(*perm);
            }
            Ok(())
        }
        Err(e) => {
            for (child, id, perm, shared) in tran.links.iter().rev() {
                set_link(child, *id, *perm, *shared);
            }
            for (n, _, _) in tran.checked.iter().rev() {
                n.driver().abort_perm();
            }
            Err(e)
        }
    }
}

/// QEMU's `bdrv_parent_perms_conflict`: does some user take what another
/// does not share?
fn parents_conflict(node: &BlockNode, parents: &[ParentLink]) -> Result<(), QmpError> {
    for a in parents {
        for b in parents {
            if a.id == b.id || b.perm & a.shared == b.perm {
                continue;
            }
            let name = node.name();
            return Err(QmpError::generic(format!(
                "Permission conflict on node '{name}': permissions '{}' are both required by {} (uses node '{name}' as '{}' child) and unshared by {} (uses node '{name}' as '{}' child).",
                (b.perm & !a.shared).names(),
                b.kind.desc(),
                b.child_name,
                a.kind.desc(),
                a.child_name,
            )));
        }
    }
    Ok(())
}

fn refresh_node(node: &Arc<BlockNode>, tran: &mut Tran) -> Result<(), QmpError> {
    let (parents, children, opts, before) = {
        let st = node.lock();
        (
            st.parents.clone(),
            st.children.clone(),
            st.opts.clone(),
            st.writable_before_reopen,
        )
    };
    parents_conflict(node, &parents)?;
    let mut perm = Perm::NONE;
    let mut shared = Perm::ALL;
    for l in &parents {
        perm |= l.perm;
        shared &= l.shared;
    }
    let writable = !opts.read_only && opts.active;
    if perm.intersects(Perm::WRITE | Perm::WRITE_UNCHANGED) && !writable {
        return Err(QmpError::generic(if before != Some(true) {
            "Block node is read-only".to_string()
        } else {
            format!(
                "Read-only block node '{}' cannot support read-write users",
                node.name()
            )
        }));
    }
    if !opts.active && perm.contains(Perm::RESIZE) {
        return Err(QmpError::generic(
            "Permission 'resize' unavailable on inactive node",
        ));
    }
    if perm.intersects(Perm::WRITE | Perm::WRITE_UNCHANGED)
        && !perm.contains(Perm::RESIZE)
        && !node.size().is_multiple_of(node.request_alignment().max(1))
    {
        return Err(QmpError::generic(
            "Cannot get 'write' permission without 'resize': Image size is not a multiple of request alignment",
        ));
    }
    let (drv_perm, drv_shared) = if opts.active {
        (perm, shared)
    } else {
        // An inactive node holds no locks.
        (Perm::NONE, Perm::ALL)
    };
    node.driver().check_perm(drv_perm, drv_shared)?;
    tran.checked.push((node.clone(), drv_perm, drv_shared));
    let cx = ChildPermCx {
        perm,
        shared,
        writable,
        inactive: !opts.active,
    };
    for e in children {
        let (mut cp, mut cs) = node.driver().child_perm(&e.name, e.role, cx);
        if e.node.lock().opts.force_share {
            cs = Perm::ALL;
        }
        cp &= Perm::ALL;
        let old = {
            let mut st = e.node.lock();
            st.parents.iter_mut().find(|l| l.id == e.link).map(|l| {
                let old = (l.perm, l.shared);
                l.perm = cp;
                l.shared = cs;
                old
            })
        };
        if let Some((op, os)) = old {
            tran.links.push((e.node.clone(), e.link, op, os));
        }
        refresh_node(&e.node, tran)?;
    }
    Ok(())
}

/// A weak handle, for drivers that need to find their node again.
pub type WeakNode = Weak<BlockNode>;
