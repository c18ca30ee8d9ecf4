//! The QOM object model of the daemon: user-creatable objects (`object-add`,
//! `object-del`, `--object`), the composition tree the `qom-*` commands
//! walk, and QSD's type information.
//!
//! - [`types`]: QSD's QOM types and the properties of each class;
//! - [`tree`]: the composition tree (`/`, `/objects`, `/chardevs`,
//!   `/backend`), path resolution and property access;
//! - [`iothread`], [`event_loop`] (`main-loop`), [`secret`]: the object
//!   types we implement. Every other user-creatable type of QSD is known
//!   (listed, introspectable) but creating one answers an error naming it;
//! - [`help`]: `--object help` and `--object TYPE,help`;
//! - [`qmp`]: the QMP commands.
//!
//! # Creation
//!
//! As in QEMU, creating an object sets its properties one by one in the
//! iteration order of the QDict that holds them (so the first error
//! reported is QEMU's), then adds the object as child `<id>` of `/objects`,
//! then *completes* it (starts its thread, loads its value...). If
//! completion fails the child is removed again. These steps matter beyond
//! the error texts: `/objects` keeps its children in a GLib hash table, and
//! the add/remove history decides the order in which `qom-list` lists them.
//! We replay that history on a [`GHashTable`] model.
//!
//! The model borrows its keys for `'static`, so object ids are interned:
//! each distinct id ever used is kept in memory once (a few bytes per id).

pub mod event_loop;
pub mod help;
pub mod iothread;
pub mod qmp;
pub mod secret;
pub mod tree;
pub mod types;

mod base64;

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use qapi::ghash::GHashTable;
use qapi::types::ObjectOptions;
use qapi::QmpError;
use serde_json::Value;

use crate::Daemon;
pub use event_loop::{EventLoopParams, MainLoop};
pub use help::cli_object_help;
pub use iothread::{IoThread, PollParams};
pub use secret::Secret;
use types::{Prop, TypeInfo};

/// The hint QEMU prints on the command line after an invalid object id.
pub const ID_HINT: &str =
    "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.";

/// The behaviour of one kind of user-created object. Property metadata
/// (names, types, which are settable) comes from the class in [`types`];
/// the object only reads and writes values.
pub(crate) trait UserObject: Send + Sync + 'static {
    /// The object's QOM type.
    fn class(&self) -> &'static TypeInfo;
    /// Reads class property `prop` (never `type`).
    fn get(&self, prop: &Prop) -> Result<Value, QmpError>;
    /// Writes settable class property `prop` from a JSON value.
    fn set(&self, prop: &Prop, value: &Value) -> Result<(), QmpError>;
    /// Finishes creation once all properties are set and the object is
    /// in `/objects` (QEMU's `UserCreatable::complete`).
    fn complete(&self, reg: &Registry, id: &str) -> Result<(), QmpError>;
    /// Whether `object-del` may delete the object now.
    fn can_be_deleted(&self) -> bool {
        true
    }
    /// Called when the object leaves the tree (deleted, or failed to
    /// complete): releases what it runs.
    fn unparent(&self) {}
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// The error for a property a class lists but this daemon does not
/// provide (yet).
pub(crate) fn unhandled(class: &TypeInfo, prop: &Prop) -> QmpError {
    QmpError::generic(format!(
        "Property '{}.{}' is not implemented by this daemon yet",
        class.name, prop.name
    ))
}

/// An id made `'static` for the hash table model; each distinct id is
/// allocated once.
fn intern(s: &str) -> &'static str {
    static IDS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut ids = IDS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(k) = ids.get(s) {
        return k;
    }
    let k: &'static str = Box::leak(s.to_owned().into_boxed_str());
    ids.insert(k);
    k
}

/// QEMU's `id_wellformed`: a letter, then letters, digits, `-`, `.`, `_`.
pub fn id_wellformed(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

struct State {
    /// The child properties of `/objects`, as QEMU's hash table holds them.
    table: GHashTable<'static>,
    /// The objects, including one being completed.
    objects: HashMap<&'static str, Arc<dyn UserObject>>,
    /// A `main-loop` object was created (there can be only one, ever).
    main_loop_claimed: bool,
}

/// The user-created objects (the children of `/objects`).
pub struct Registry {
    state: Mutex<State>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Registry {
        Registry {
            state: Mutex::new(State {
                table: GHashTable::new(),
                objects: HashMap::new(),
                main_loop_claimed: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<dyn UserObject>> {
        self.lock().objects.get(id).cloned()
    }

    /// The ids and objects in `/objects`, in the iteration order of QEMU's
    /// hash table.
    pub(crate) fn children(&self) -> Vec<(&'static str, Arc<dyn UserObject>)> {
        let st = self.lock();
        st.table
            .iter()
            .filter_map(|k| st.objects.get(k).map(|o| (k, o.clone())))
            .collect()
    }

    /// The ids of the objects, in QEMU's iteration order.
    pub fn ids(&self) -> Vec<String> {
        self.children()
            .into_iter()
            .map(|(k, _)| k.to_string())
            .collect()
    }

    /// Records that the (single) `main-loop` object exists; false if one
    /// already did.
    pub(crate) fn claim_main_loop(&self) -> bool {
        !std::mem::replace(&mut self.lock().main_loop_claimed, true)
    }

    /// The iothread with id `id`.
    pub fn iothread(&self, id: &str) -> Option<Arc<IoThread>> {
        self.get(id)?.into_any().downcast::<IoThread>().ok()
    }

    /// The iothreads, in QEMU's iteration order of `/objects`.
    pub fn iothreads(&self) -> Vec<Arc<IoThread>> {
        self.children()
            .into_iter()
            .filter_map(|(_, o)| o.into_any().downcast::<IoThread>().ok())
            .collect()
    }

    /// The `main-loop` object, if one was created.
    pub fn main_loop(&self) -> Option<Arc<MainLoop>> {
        self.children()
            .into_iter()
            .find_map(|(_, o)| o.into_any().downcast::<MainLoop>().ok())
    }

    /// The value of secret `id`, with QEMU's errors
    /// (`qcrypto_secret_lookup`).
    pub fn secret_value(&self, id: &str) -> Result<Vec<u8>, QmpError> {
        let obj = self
            .get(id)
            .ok_or_else(|| QmpError::generic(format!("No secret with id '{id}'")))?;
        let secret = obj
            .into_any()
            .downcast::<Secret>()
            .map_err(|_| QmpError::generic(format!("Object with id '{id}' is not a secret")))?;
        secret
            .value()
            .ok_or_else(|| QmpError::generic(format!("Secret with id '{id}' has no data")))
    }

    /// Creates an object (`object-add`, `--object`).
    pub fn add(&self, opts: &ObjectOptions) -> Result<(), QmpError> {
        let qom_type = opts.u.discriminator().as_str();
        let id = opts.id.as_str();
        if !id_wellformed(id) {
            return Err(QmpError::generic("Parameter 'id' expects an identifier"));
        }
        let class = types::lookup(qom_type)
            .ok_or_else(|| QmpError::generic(format!("invalid object type: {qom_type}")))?;
        if !class.is_a(types::USER_CREATABLE) {
            return Err(QmpError::generic(format!(
                "object type '{qom_type}' isn't supported by object-add"
            )));
        }
        if class.abstract_ {
            return Err(QmpError::generic(format!(
                "object type '{qom_type}' is abstract"
            )));
        }
        let obj: Arc<dyn UserObject> = match qom_type {
            "iothread" => Arc::new(IoThread::new(class, id)),
            "main-loop" => Arc::new(MainLoop::new(class)),
            "secret" => Arc::new(Secret::new(class)),
            _ => {
                return Err(QmpError::generic(format!(
                    "object type '{qom_type}' is not implemented by this daemon yet"
                )))
            }
        };

        // The properties, in the order QEMU's QDict yields them.
        let mut props = match qapi::ser::to_return(opts)? {
            Value::Object(m) => m,
            _ => return Err(QmpError::generic("object options are not an object")),
        };
        props.shift_remove("qom-type");
        props.shift_remove("id");
        for name in qapi::qdict::order(&props) {
            let value = &props[name];
            tree::set_object_property(obj.as_ref(), name, value)?;
        }

        let key = intern(id);
        {
            let mut st = self.lock();
            if key == "type" || st.objects.contains_key(key) {
                return Err(QmpError::generic(format!(
                    "attempt to add duplicate property '{id}' to object (type 'container')"
                )));
            }
            st.table.insert(key);
            st.objects.insert(key, obj.clone());
        }
        if let Err(e) = obj.complete(self, id) {
            self.remove(key);
            obj.unparent();
            return Err(e);
        }
        tracing::debug!(id, qom_type, "object created");
        Ok(())
    }

    fn remove(&self, key: &str) {
        let mut st = self.lock();
        st.table.remove(key);
        st.objects.remove(key);
    }

    /// Deletes an object (`object-del`).
    pub fn delete(&self, id: &str) -> Result<(), QmpError> {
        let obj = {
            let mut st = self.lock();
            let obj = st
                .objects
                .get(id)
                .cloned()
                .ok_or_else(|| QmpError::generic(format!("object '{id}' not found")))?;
            if !obj.can_be_deleted() {
                return Err(QmpError::generic(format!(
                    "object '{id}' is in use, can not be deleted"
                )));
            }
            // QEMU unparents through a hash table iterator, which never
            // shrinks the table (unlike the removal after a failed
            // completion).
            st.table.remove_no_resize(id);
            st.objects.remove(id);
            obj
        };
        obj.unparent();
        tracing::debug!(id, "object deleted");
        Ok(())
    }

    /// Stops what the objects run (iothreads), for daemon shutdown.
    pub fn shutdown(&self) {
        for (_, obj) in self.children() {
            obj.unparent();
        }
    }
}

/// Creates the object an `--object` option describes; the option was
/// already parsed into `opts`. On error, [`cli_error_hint`] gives the line
/// QEMU prints after the message, if any.
pub fn create_from_cli(daemon: &Daemon, opts: ObjectOptions) -> Result<(), QmpError> {
    daemon.objects.add(&opts)
}

/// The hint QEMU prints on a line of its own after error `e` on the
/// command line (QMP replies do not carry hints).
pub fn cli_error_hint(e: &QmpError) -> Option<&'static str> {
    (e.desc == "Parameter 'id' expects an identifier").then_some(ID_HINT)
}

/// The value of secret `id`, e.g. a LUKS passphrase or a TLS key password;
/// errors are QEMU's (`No secret with id '...'`, ...).
pub fn secret_value(daemon: &Daemon, id: &str) -> Result<Vec<u8>, QmpError> {
    daemon.objects.secret_value(id)
}

/// The value of secret `id` as text; QEMU's error if it is not UTF-8.
pub fn secret_value_utf8(daemon: &Daemon, id: &str) -> Result<String, QmpError> {
    let invalid = || QmpError::generic(format!("Data from secret {id} is not valid UTF-8"));
    let bytes = secret_value(daemon, id)?;
    // GLib's validation also refuses NUL bytes.
    if bytes.contains(&0) {
        return Err(invalid());
    }
    String::from_utf8(bytes).map_err(|_| invalid())
}

/// The value of secret `id`, base64-encoded.
pub fn secret_value_base64(daemon: &Daemon, id: &str) -> Result<String, QmpError> {
    Ok(base64::encode(&secret_value(daemon, id)?))
}

#[cfg(test)]
mod tests;
