//! A bounded write-back cache of metadata tables (L2 table slices or
//! refcount blocks), keyed by their offset in the image file.
//!
//! Entries are raw on-disk bytes. Dirty entries are written back by the
//! owner ([`super::meta::Meta`]), which knows the order in which tables
//! must reach the disk; the cache only picks victims, least recently used
//! first, among clean entries.

use std::collections::HashMap;

struct Slot {
    data: Vec<u8>,
    dirty: bool,
    used: u64,
}

/// See the module documentation.
pub struct Cache {
    map: HashMap<u64, Slot>,
    /// Maximum number of entries.
    cap: usize,
    tick: u64,
    /// Bytes per entry.
    pub entry_size: usize,
    /// The tick at the last clean-interval pass.
    clean_mark: u64,
}

impl Cache {
    pub fn new(cap: usize, entry_size: usize) -> Cache {
        Cache {
            map: HashMap::new(),
            cap: cap.max(2),
            tick: 0,
            entry_size,
            clean_mark: 0,
        }
    }

    /// The entry at `off`, marking it used.
    pub fn get(&mut self, off: u64) -> Option<&[u8]> {
        self.tick += 1;
        let t = self.tick;
        self.map.get_mut(&off).map(|s| {
            s.used = t;
            &s.data[..]
        })
    }

    /// The entry at `off` without marking it used (see [`Cache::touch`]).
    pub fn peek(&self, off: u64) -> Option<&[u8]> {
        self.map.get(&off).map(|s| &s.data[..])
    }

    /// Marks the entry at `off` used.
    pub fn touch(&mut self, off: u64) {
        self.tick += 1;
        let t = self.tick;
        if let Some(s) = self.map.get_mut(&off) {
            s.used = t;
        }
    }

    /// Whether `off` is cached.
    pub fn contains(&self, off: u64) -> bool {
        self.map.contains_key(&off)
    }

    /// Mutable access to the entry at `off`; marks it dirty.
    pub fn get_mut(&mut self, off: u64) -> Option<&mut Vec<u8>> {
        self.tick += 1;
        let t = self.tick;
        self.map.get_mut(&off).map(|s| {
            s.used = t;
            s.dirty = true;
            &mut s.data
        })
    }

    /// Adds (or replaces) an entry.
    pub fn insert(&mut self, off: u64, data: Vec<u8>, dirty: bool) {
        self.tick += 1;
        self.map.insert(
            off,
            Slot {
                data,
                dirty,
                used: self.tick,
            },
        );
    }

    /// Drops the entry at `off` (its table went away).
    pub fn remove(&mut self, off: u64) {
        self.map.remove(&off);
    }

    /// Whether the cache must shrink before another entry comes in.
    pub fn full(&self) -> bool {
        self.map.len() >= self.cap
    }

    /// Evicts clean entries, least recently used first, until there is room
    /// for one more; returns false if only dirty entries are left.
    pub fn make_room(&mut self) -> bool {
        while self.map.len() >= self.cap {
            let victim = self
                .map
                .iter()
                .filter(|(_, s)| !s.dirty)
                .min_by_key(|(_, s)| s.used)
                .map(|(k, _)| *k);
            match victim {
                Some(k) => {
                    self.map.remove(&k);
                }
                None => return false,
            }
        }
        true
    }

    /// Copies of the dirty entries, by offset (ascending).
    pub fn dirty(&self) -> Vec<(u64, Vec<u8>)> {
        let mut v: Vec<(u64, Vec<u8>)> = self
            .map
            .iter()
            .filter(|(_, s)| s.dirty)
            .map(|(k, s)| (*k, s.data.clone()))
            .collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    pub fn has_dirty(&self) -> bool {
        self.map.values().any(|s| s.dirty)
    }

    /// Marks `off` clean if its content is still `data` (it was written
    /// back).
    pub fn mark_clean(&mut self, off: u64, data: &[u8]) {
        if let Some(s) = self.map.get_mut(&off) {
            if s.data == data {
                s.dirty = false;
            }
        }
    }

    /// Drops clean entries that were not used since the previous call
    /// (`cache-clean-interval`).
    pub fn clean_unused(&mut self) {
        let mark = self.clean_mark;
        self.map.retain(|_, s| s.dirty || s.used > mark);
        self.clean_mark = self.tick;
    }

    /// Offsets of all cached entries.
    pub fn keys(&self) -> Vec<u64> {
        self.map.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_and_dirty() {
        let mut c = Cache::new(2, 8);
        c.insert(0, vec![0; 8], false);
        c.insert(8, vec![1; 8], true);
        assert!(c.full());
        assert!(c.make_room());
        assert!(!c.contains(0));
        c.insert(16, vec![2; 8], true);
        assert!(!c.make_room());
        let d = c.dirty();
        assert_eq!(d.len(), 2);
        for (k, v) in d {
            c.mark_clean(k, &v);
        }
        assert!(c.make_room());
        c.clean_unused();
        c.clean_unused();
        assert!(c.keys().is_empty());
    }
}
