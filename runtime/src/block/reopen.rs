//! `blockdev-reopen`: changes the options of nodes in one transaction.
//!
//! As in QEMU, each listed node gets a complete new option set: options
//! left out return to their defaults. Generic options (`read-only`,
//! `auto-read-only`, `discard`, `detect-zeroes`, `cache.*`) may change;
//! the driver takes the options it can change (raw: `offset`, `size`);
//! `file` may name another node. Every other option must keep its value
//! ("Cannot change the option 'X'"), and an option given at creation may
//! only be left out if it can return to its default ("Option 'X' cannot be
//! reset to its default value"). Inline children created with a node are
//! reopened with it, inheriting its new options.

use std::sync::Arc;

use qapi::types::{BlockdevOptions, BlockdevOptionsBranch, BlockdevRef, BlockdevReopenArgs};
use qapi::QmpError;
use serde_json::{Map, Value};

use super::node::NodeOpts;
use super::open::{check_generic, inherit, node_opts, options_json};
use super::{BlockNode, ChildRole, ReopenRequest, ReopenState};
use crate::Daemon;

/// Options every driver handles in a reopen.
const COMMON: &[&str] = &[
    "node-name",
    "discard",
    "cache.direct",
    "cache.no-flush",
    "read-only",
    "auto-read-only",
    "detect-zeroes",
];

/// Driver options that may change (QEMU's `mutable_opts`).
fn mutable_opts(driver: &str) -> &'static [&'static str] {
    match driver {
        "raw" => &["offset", "size"],
        "file" | "host_device" => &["x-check-cache-dropped", "drop-cache"],
        _ => &[],
    }
}

/// QEMU's `qdict_flatten`: nested objects become `a.b` keys.
fn flatten(m: &Map<String, Value>) -> Map<String, Value> {
    fn go(prefix: &str, v: &Value, out: &mut Map<String, Value>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    go(&format!("{prefix}{k}."), v, out);
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    go(&format!("{prefix}{i}."), v, out);
                }
            }
            _ => {
                out.insert(prefix.trim_end_matches('.').to_string(), v.clone());
            }
        }
    }
    let mut out = Map::new();
    for (k, v) in m {
        match v {
            Value::Object(_) | Value::Array(_) => go(&format!("{k}."), v, &mut out),
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

/// The options a node holds after opening (QEMU's `bs->options`): its
/// own, flattened, with each child as its node name.
fn current_options(node: &BlockNode) -> Map<String, Value> {
    let st = node.lock();
    let mut m = options_json(&st.options);
    for e in &st.children {
        m.insert(e.name.clone(), Value::String(e.node.name().to_string()));
    }
    flatten(&m)
}

struct Entry {
    node: Arc<BlockNode>,
    explicit: BlockdevOptions,
    options: BlockdevOptions,
    /// The node's `file` becomes another node.
    new_file: Option<Arc<BlockNode>>,
    /// The `file.*` options went to the inline child.
    child_queued: bool,
    opts: NodeOpts,
    state: Option<ReopenState>,
}

fn file_ref(o: &BlockdevOptions) -> Option<&BlockdevRef> {
    match &o.u {
        BlockdevOptionsBranch::Raw(r) => Some(&r.file),
        _ => None,
    }
}

/// Adds `node` with new options (and its inline children) to the queue.
fn queue(
    q: &mut Vec<Entry>,
    node: Arc<BlockNode>,
    explicit: BlockdevOptions,
    options: BlockdevOptions,
) -> Result<(), QmpError> {
    let mut child_queued = false;
    let children = node.children();
    let idx = q.len();
    q.push(Entry {
        node: node.clone(),
        explicit,
        options: options.clone(),
        new_file: None,
        child_queued: false,
        opts: node_opts(&options),
        state: None,
    });
    for (cname, child) in children {
        let inherits = child.lock().inherits_from.as_deref() == Some(node.name());
        if cname != "file" || !inherits {
            continue;
        }
        let child_explicit = match file_ref(&options) {
            Some(BlockdevRef::Definition(def)) => {
                child_queued = true;
                (**def).clone()
            }
            Some(BlockdevRef::Reference(n)) if n == child.name() => child.lock().explicit.clone(),
            _ => continue,
        };
        let mut eff = child_explicit.clone();
        inherit(&mut eff, &options);
        queue(q, child, child_explicit, eff)?;
    }
    q[idx].child_queued = child_queued;
    Ok(())
}

fn prepare(d: &Daemon, e: &mut Entry) -> Result<(), QmpError> {
    let node = e.node.clone();
    let new = flatten(&options_json(&e.options));
    check_generic(&e.opts)?;
    let old = current_options(&node);
    let driver = node.driver_name();
    let mutable = mutable_opts(driver);
    for k in qapi::qdict::order(&old) {
        if !new.contains_key(k)
            && !COMMON.contains(&k)
            && !mutable.contains(&k)
            && k != "file"
            && !k.starts_with("file.")
        {
            return Err(QmpError::generic(format!(
                "Option '{k}' cannot be reset to its default value"
            )));
        }
    }
    if e.options.u.discriminator() == node.options_driver() {
        e.state = node.driver().reopen_prepare(&ReopenRequest {
            options: e.options.clone(),
            read_only: e.opts.read_only,
            direct: e.opts.direct,
        })?;
    }
    if let Some(BlockdevRef::Reference(name)) = file_ref(&e.options) {
        let cur = node.child("file");
        if cur.as_ref().map(|c| c.name()) != Some(name.as_str()) {
            let Some(n) = d.block.node(name) else {
                return Err(QmpError::generic(format!(
                    "Cannot find device='' nor node-name='{name}'"
                )));
            };
            e.new_file = Some(n);
        }
    }
    for k in qapi::qdict::order(&new) {
        if COMMON.contains(&k) || mutable.contains(&k) || k == "active" || k == "file" {
            continue;
        }
        if e.child_queued && k.starts_with("file.") {
            continue;
        }
        if old.get(k) != new.get(k) {
            return Err(QmpError::generic(format!("Cannot change the option '{k}'")));
        }
    }
    Ok(())
}

/// `blockdev-reopen`.
pub fn blockdev_reopen(d: &Daemon, args: BlockdevReopenArgs) -> Result<(), QmpError> {
    let mut q = Vec::new();
    for o in args.options {
        let Some(name) = o.node_name.clone() else {
            return Err(QmpError::generic("node-name not specified"));
        };
        let Some(node) = d.block.node(&name) else {
            return Err(QmpError::generic(format!(
                "Failed to find node with node-name='{name}'"
            )));
        };
        queue(&mut q, node, o.clone(), o)?;
    }
    for e in q.iter_mut() {
        prepare(d, e)?;
    }
    // Apply the new settings, then check the permissions of the new graph;
    // undo everything if they do not fit.
    let mut undo = Vec::new();
    for e in &q {
        let was = e.node.is_writable();
        let mut opts = e.opts.clone();
        opts.active = e.node.opts().active;
        undo.push((e.node.clone(), e.node.opts()));
        e.node.lock().writable_before_reopen = Some(was);
        e.node.set_opts(opts);
        if let Some(f) = &e.new_file {
            replace_file(d, &e.node, f)?;
        }
    }
    let mut failed = None;
    for e in &q {
        if let Err(err) = d.block.refresh(&e.node) {
            failed = Some(err);
            break;
        }
    }
    for e in &q {
        e.node.lock().writable_before_reopen = None;
    }
    if let Some(err) = failed {
        for (n, o) in undo {
            n.set_opts(o);
            let _ = d.block.refresh(&n);
        }
        return Err(err);
    }
    for e in q {
        if let Some(s) = e.state {
            e.node.driver().reopen_commit(s);
        }
        let mut st = e.node.lock();
        st.options = e.options;
        st.explicit = e.explicit;
    }
    Ok(())
}

/// Makes `new` the `file` child of `node`.
fn replace_file(d: &Daemon, node: &Arc<BlockNode>, new: &Arc<BlockNode>) -> Result<(), QmpError> {
    let role = node
        .lock()
        .children
        .iter()
        .find(|e| e.name == "file")
        .map(|e| e.role)
        .unwrap_or(ChildRole::FILTERED_PRIMARY);
    d.block.replace_child(node, "file", new, role)
}

impl BlockNode {
    fn options_driver(&self) -> qapi::types::BlockdevDriver {
        self.lock().options.u.discriminator()
    }
}
