//! The chardevs by id, listed in QEMU's order.
//!
//! QEMU keeps chardevs as children of its `/chardevs` container, whose
//! properties live in a GLib hash table; `query-chardev` walks that table
//! and prepends each entry to the result. To list in the same order we
//! replay every addition and removal on a model of the table
//! ([`qapi::ghash::GHashTable`]) and reverse its iteration order. The
//! history grows by one entry per `chardev-add`/`chardev-remove`.

use std::sync::{Arc, Mutex};

use qapi::ghash::GHashTable;
use qapi::QmpError;

use super::Chardev;

/// All chardevs, by id.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    devs: Vec<Arc<Chardev>>,
    /// Additions (true) and removals (false) of ids, in order.
    history: Vec<(bool, String)>,
}

impl Registry {
    /// The chardev `id`, if any.
    pub fn get(&self, id: &str) -> Option<Arc<Chardev>> {
        self.inner
            .lock()
            .ok()?
            .devs
            .iter()
            .find(|c| c.id == id)
            .cloned()
    }

    /// Adds `dev`; a duplicate id fails with QEMU's text for adding a
    /// second child of that name to the container.
    pub fn insert(&self, dev: Arc<Chardev>) -> Result<(), QmpError> {
        let mut g = self
            .inner
            .lock()
            .map_err(|_| QmpError::generic("chardev registry poisoned"))?;
        if g.devs.iter().any(|c| c.id == dev.id) {
            return Err(QmpError::generic(format!(
                "attempt to add duplicate property '{}' to object (type 'container')",
                dev.id
            )));
        }
        g.history.push((true, dev.id.clone()));
        g.devs.push(dev);
        Ok(())
    }

    /// Removes and returns chardev `id`. It is closed when the last handle
    /// on it goes away.
    pub fn remove(&self, id: &str) -> Option<Arc<Chardev>> {
        let mut g = self.inner.lock().ok()?;
        let i = g.devs.iter().position(|c| c.id == id)?;
        g.history.push((false, id.to_string()));
        Some(g.devs.remove(i))
    }

    /// All chardevs in `query-chardev` order.
    pub fn list(&self) -> Vec<Arc<Chardev>> {
        let Ok(g) = self.inner.lock() else {
            return Vec::new();
        };
        order(&g.history)
            .into_iter()
            .filter_map(|id| g.devs.iter().find(|c| c.id == id).cloned())
            .collect()
    }

    /// Removes every chardev, closing them (socket files are unlinked, the
    /// terminal is restored), as QEMU does at exit.
    pub fn close_all(&self) {
        let devs = match self.inner.lock() {
            Ok(mut g) => std::mem::take(&mut g.devs),
            Err(_) => return,
        };
        drop(devs);
    }
}

/// The ids present after `history`, in QEMU's listing order.
fn order(history: &[(bool, String)]) -> Vec<String> {
    let mut table = GHashTable::new();
    for (add, id) in history {
        if *add {
            table.insert(id);
        } else {
            table.remove(id);
        }
    }
    let mut ids: Vec<String> = table.iter().map(str::to_string).collect();
    ids.reverse();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adds(ids: &[&str]) -> Vec<(bool, String)> {
        ids.iter().map(|i| (true, i.to_string())).collect()
    }

    #[test]
    fn order_matches_qsd() {
        // Observed on QSD 10.0.2: chardevs added in this order ...
        let h = adds(&["m", "a", "r", "r3", "s", "s2", "t", "p", "f"]);
        // ... are listed as
        assert_eq!(order(&h), ["r3", "p", "r", "f", "s", "m", "t", "a", "s2"]);
    }

    #[test]
    fn removal_and_readd_keep_the_slot() {
        let mut h = adds(&["m", "a", "r", "r3", "s", "s2", "t", "p", "f"]);
        h.push((false, "a".into()));
        h.push((true, "a".into()));
        assert_eq!(order(&h), ["r3", "p", "r", "f", "s", "m", "t", "a", "s2"]);
    }
}
