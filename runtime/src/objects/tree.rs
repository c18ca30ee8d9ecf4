//! The QOM composition tree as QSD has it:
//!
//! ```text
//! /            container, children chardevs, objects, backend
//! /chardevs    one child per chardev (chardev-socket, ...)
//! /objects     one child per user-created object
//! /backend     empty
//! ```
//!
//! Each node has *instance* properties (its children, `child<TYPE>`, kept in
//! a per-object GLib hash table) and *class* properties (see [`types`]).
//! QEMU iterates the instance table first, then the class tables from the
//! most derived class up; `qom-list` prepends while iterating, so replies
//! list class properties of `object` (`type`) first and the last-iterated
//! child last.
//!
//! Paths are resolved like QEMU's `object_resolve_path`: an absolute path
//! (leading `/`, empty components skipped) walks child properties from the
//! root; a partial path matches wherever it resolves below any node, and is
//! ambiguous if that happens more than once.

use std::sync::Arc;

use qapi::ghash::GHashTable;
use qapi::QmpError;
use serde_json::Value;

use super::types::{self, Prop, TypeInfo};
use super::{unhandled, UserObject};
use crate::chardev::Chardev;
use crate::Daemon;

/// The containers under the root, in the order QEMU adds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Container {
    Chardevs,
    Objects,
    Backend,
}

const ROOT_CONTAINERS: [Container; 3] =
    [Container::Chardevs, Container::Objects, Container::Backend];

impl Container {
    fn name(self) -> &'static str {
        match self {
            Container::Chardevs => "chardevs",
            Container::Objects => "objects",
            Container::Backend => "backend",
        }
    }
}

/// A node of the tree.
#[derive(Clone)]
pub(crate) enum Node {
    Root,
    Container(Container),
    Object {
        id: &'static str,
        obj: Arc<dyn UserObject>,
    },
    Chardev(Arc<Chardev>),
}

/// The class called `name`, which the static type table has.
fn known_class(name: &str) -> &'static TypeInfo {
    types::lookup(name).expect("class missing from the static type table")
}

/// The QOM type of a chardev: `chardev-` and its backend kind.
fn chardev_class(dev: &Chardev) -> &'static TypeInfo {
    serde_json::to_value(&dev.backend)
        .ok()
        .and_then(|v| {
            v.get("type")
                .and_then(Value::as_str)
                .and_then(|kind| types::lookup(&format!("chardev-{kind}")))
        })
        .unwrap_or_else(|| known_class("chardev"))
}

impl Node {
    pub(crate) fn class(&self) -> &'static TypeInfo {
        match self {
            Node::Root | Node::Container(_) => known_class("container"),
            Node::Object { obj, .. } => obj.class(),
            Node::Chardev(dev) => chardev_class(dev),
        }
    }

    fn canonical_path(&self) -> String {
        match self {
            Node::Root => "/".to_string(),
            Node::Container(c) => format!("/{}", c.name()),
            Node::Object { id, .. } => format!("/objects/{id}"),
            Node::Chardev(dev) => format!("/chardevs/{}", dev.id),
        }
    }

    /// The child properties, in the iteration order of the node's instance
    /// property table.
    pub(crate) fn children(&self, d: &Daemon) -> Vec<(String, Node)> {
        match self {
            Node::Root => {
                let mut t = GHashTable::new();
                for c in ROOT_CONTAINERS {
                    t.insert(c.name());
                }
                t.iter()
                    .filter_map(|n| ROOT_CONTAINERS.into_iter().find(|c| c.name() == n))
                    .map(|c| (c.name().to_string(), Node::Container(c)))
                    .collect()
            }
            Node::Container(Container::Objects) => d
                .objects
                .children()
                .into_iter()
                .map(|(id, obj)| (id.to_string(), Node::Object { id, obj }))
                .collect(),
            Node::Container(Container::Chardevs) => {
                // Chardevs are only ever added so far, so replaying the
                // insertions in registry order rebuilds QEMU's table.
                let devs = d.chardevs.list();
                let mut t = GHashTable::new();
                for dev in &devs {
                    t.insert(dev.id.as_str());
                }
                t.iter()
                    .filter_map(|id| devs.iter().find(|dev| dev.id == id))
                    .map(|dev| (dev.id.clone(), Node::Chardev(dev.clone())))
                    .collect()
            }
            Node::Container(Container::Backend) | Node::Object { .. } | Node::Chardev(_) => {
                Vec::new()
            }
        }
    }

    fn child(&self, d: &Daemon, name: &str) -> Option<Node> {
        self.children(d)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, node)| node)
    }
}

/// The outcome of resolving a path.
pub(crate) enum Resolved {
    Found(Node),
    NotFound,
    Ambiguous,
}

fn resolve_abs(d: &Daemon, node: Node, parts: &[&str]) -> Option<Node> {
    let mut node = node;
    for part in parts.iter().filter(|p| !p.is_empty()) {
        node = node.child(d, part)?;
    }
    Some(node)
}

fn resolve_partial(d: &Daemon, node: &Node, parts: &[&str], ambiguous: &mut bool) -> Option<Node> {
    let mut found = resolve_abs(d, node.clone(), parts);
    for (_, child) in node.children(d) {
        if let Some(f) = resolve_partial(d, &child, parts, ambiguous) {
            if found.is_some() {
                *ambiguous = true;
                return None;
            }
            found = Some(f);
        }
        if *ambiguous {
            return None;
        }
    }
    found
}

/// Resolves `path` (absolute or partial).
pub(crate) fn resolve(d: &Daemon, path: &str) -> Resolved {
    // GLib splits "" into no components at all.
    let parts: Vec<&str> = if path.is_empty() {
        Vec::new()
    } else {
        path.split('/').collect()
    };
    let found = match parts.first() {
        Some(&"") => resolve_abs(d, Node::Root, &parts[1..]),
        _ => {
            let mut ambiguous = false;
            let found = resolve_partial(d, &Node::Root, &parts, &mut ambiguous);
            if ambiguous {
                return Resolved::Ambiguous;
            }
            found
        }
    };
    found.map_or(Resolved::NotFound, Resolved::Found)
}

/// One property of a node.
pub(crate) enum Property {
    Child(String, Node),
    Class(&'static Prop),
}

impl Property {
    pub(crate) fn name(&self) -> &str {
        match self {
            Property::Child(n, _) => n,
            Property::Class(p) => p.name,
        }
    }

    pub(crate) fn type_(&self) -> String {
        match self {
            Property::Child(_, node) => format!("child<{}>", node.class().name),
            Property::Class(p) => p.type_.to_string(),
        }
    }
}

/// All properties of `node`, in QEMU's iteration order.
pub(crate) fn properties(d: &Daemon, node: &Node) -> Vec<Property> {
    let mut v: Vec<Property> = node
        .children(d)
        .into_iter()
        .map(|(n, c)| Property::Child(n, c))
        .collect();
    v.extend(node.class().class_props().into_iter().map(Property::Class));
    v
}

fn find_property(d: &Daemon, node: &Node, name: &str) -> Result<Property, QmpError> {
    if let Some(child) = node.child(d, name) {
        return Ok(Property::Child(name.to_string(), child));
    }
    node.class()
        .find_prop(name)
        .map(Property::Class)
        .ok_or_else(|| not_found(node.class(), name))
}

fn not_found(class: &TypeInfo, name: &str) -> QmpError {
    QmpError::generic(format!("Property '{}.{name}' not found", class.name))
}

fn not_writable(class: &TypeInfo, name: &str) -> QmpError {
    QmpError::generic(format!("Property '{}.{name}' is not writable", class.name))
}

/// `qom-get` of property `name` of `node`.
pub(crate) fn get(d: &Daemon, node: &Node, name: &str) -> Result<Value, QmpError> {
    let prop = match find_property(d, node, name)? {
        Property::Child(_, child) => return Ok(Value::from(child.canonical_path())),
        Property::Class(p) => p,
    };
    if prop.name == "type" {
        return Ok(Value::from(node.class().name));
    }
    match node {
        Node::Object { obj, .. } => obj.get(prop),
        Node::Chardev(dev) => chardev_get(dev, node.class(), prop),
        Node::Root | Node::Container(_) => Err(not_found(node.class(), name)),
    }
}

/// `qom-set` of property `name` of `node`.
pub(crate) fn set(d: &Daemon, node: &Node, name: &str, value: &Value) -> Result<(), QmpError> {
    let class = node.class();
    match find_property(d, node, name)? {
        Property::Class(p) if p.settable => match node {
            Node::Object { obj, .. } => obj.set(p, value),
            _ => Err(not_writable(class, name)),
        },
        _ => Err(not_writable(class, name)),
    }
}

/// Sets class property `name` of an object being created.
pub(crate) fn set_object_property(
    obj: &dyn UserObject,
    name: &str,
    value: &Value,
) -> Result<(), QmpError> {
    let class = obj.class();
    let prop = class
        .find_prop(name)
        .ok_or_else(|| not_found(class, name))?;
    if !prop.settable {
        return Err(not_writable(class, name));
    }
    obj.set(prop, value)
}

/// Chardev properties: `addr` of socket chardevs (the address as a flat
/// `SocketAddress`).
fn chardev_get(dev: &Chardev, class: &TypeInfo, prop: &Prop) -> Result<Value, QmpError> {
    match prop.name {
        "addr" => {
            let addr = dev.socket_address().ok_or_else(|| {
                QmpError::generic(format!("chardev '{}' has no socket address", dev.id))
            })?;
            serde_json::to_value(&addr)
                .map_err(|e| QmpError::generic(format!("cannot show the socket address: {e}")))
        }
        // `connected` needs connection state the chardev layer does not
        // expose yet.
        _ => Err(unhandled(class, prop)),
    }
}
