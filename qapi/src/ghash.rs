//! A model of GLib's `GHashTable` slot layout for string keys.
//!
//! QEMU's input visitor keeps the members of an object it has not visited
//! yet in a GHashTable: every key is inserted (in QDict order), each member
//! the schema visits is removed, and whatever the table yields first on
//! iteration is reported as `Parameter '...' is unexpected`. To report the
//! same member, we replay those operations on a model of the table and read
//! off the first occupied slot.
//!
//! The model follows GLib 2.74's open addressing: `g_str_hash` (djb2 over
//! signed chars), slot = `hash * 11 % prime(shift)`, quadratic probing on a
//! power-of-two array, tombstones on removal, and resizing (with in-place
//! relocation through eviction) when the table gets too full or too empty.

const MIN_SHIFT: u32 = 3;
const UNUSED: u32 = 0;
const TOMBSTONE: u32 = 1;

/// Largest prime below each power of two (GLib's `prime_mod`).
const PRIME_MOD: [u32; 32] = [
    1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
    262139, 524287, 1048573, 2097143, 4194301, 8388593, 16777213, 33554393, 67108859, 134217689,
    268435399, 536870909, 1073741789, 2147483647,
];

/// GLib's `g_str_hash`.
pub fn g_str_hash(s: &str) -> u32 {
    let mut h: u32 = 5381;
    for &b in s.as_bytes() {
        // The bytes are read as signed chars.
        h = (h << 5).wrapping_add(h).wrapping_add(b as i8 as i32 as u32);
    }
    h
}

/// A GHashTable holding string keys.
pub struct GHashTable<'a> {
    size: usize,
    modulo: u32,
    mask: usize,
    nnodes: usize,
    noccupied: usize,
    hashes: Vec<u32>,
    keys: Vec<Option<&'a str>>,
}

impl Default for GHashTable<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> GHashTable<'a> {
    pub fn new() -> Self {
        let mut t = GHashTable {
            size: 0,
            modulo: 0,
            mask: 0,
            nnodes: 0,
            noccupied: 0,
            hashes: Vec::new(),
            keys: Vec::new(),
        };
        t.set_shift(MIN_SHIFT);
        t.hashes = vec![UNUSED; t.size];
        t.keys = vec![None; t.size];
        t
    }

    fn set_shift(&mut self, shift: u32) {
        self.size = 1 << shift;
        self.modulo = PRIME_MOD[shift as usize];
        self.mask = self.size - 1;
    }

    fn set_shift_from_size(&mut self, size: usize) {
        let mut n = size;
        let mut shift = 0;
        while n != 0 {
            n >>= 1;
            shift += 1;
        }
        self.set_shift(shift.max(MIN_SHIFT));
    }

    fn hash_to_index(&self, hash: u32) -> usize {
        (hash.wrapping_mul(11) % self.modulo) as usize
    }

    fn key_hash(key: &str) -> u32 {
        let h = g_str_hash(key);
        if h < 2 {
            2
        } else {
            h
        }
    }

    fn lookup_node(&self, key: &str, hash: u32) -> usize {
        let mut index = self.hash_to_index(hash);
        let mut first_tombstone = None;
        let mut step = 0;
        while self.hashes[index] != UNUSED {
            let h = self.hashes[index];
            if h == hash {
                if self.keys[index] == Some(key) {
                    return index;
                }
            } else if h == TOMBSTONE && first_tombstone.is_none() {
                first_tombstone = Some(index);
            }
            step += 1;
            index = (index + step) & self.mask;
        }
        first_tombstone.unwrap_or(index)
    }

    /// Adds `key` (no-op if present).
    pub fn insert(&mut self, key: &'a str) {
        let hash = Self::key_hash(key);
        let i = self.lookup_node(key, hash);
        let old = self.hashes[i];
        if old >= 2 {
            return;
        }
        self.hashes[i] = hash;
        self.keys[i] = Some(key);
        self.nnodes += 1;
        if old == UNUSED {
            self.noccupied += 1;
            self.maybe_resize();
        }
    }

    /// Removes `key` if present.
    pub fn remove(&mut self, key: &str) {
        let hash = Self::key_hash(key);
        let i = self.lookup_node(key, hash);
        if self.hashes[i] < 2 {
            return;
        }
        self.hashes[i] = TOMBSTONE;
        self.keys[i] = None;
        self.nnodes -= 1;
        self.maybe_resize();
    }

    /// Removes `key` if present without resizing the table, as removing
    /// through an iterator (`g_hash_table_iter_remove`) does: the slot
    /// becomes a tombstone even when the table is now mostly empty.
    pub fn remove_no_resize(&mut self, key: &str) {
        let hash = Self::key_hash(key);
        let i = self.lookup_node(key, hash);
        if self.hashes[i] < 2 {
            return;
        }
        self.hashes[i] = TOMBSTONE;
        self.keys[i] = None;
        self.nnodes -= 1;
    }

    fn maybe_resize(&mut self) {
        let (size, occ) = (self.size, self.noccupied);
        if (size > self.nnodes * 4 && size > 1 << MIN_SHIFT) || size <= occ + occ / 16 {
            self.resize();
        }
    }

    fn resize(&mut self) {
        let old_size = self.size;
        // GLib computes nnodes * 1.333 in floating point and truncates.
        self.set_shift_from_size((self.nnodes as f64 * 1.333) as usize);
        let bitmap_len = self.size.max(old_size);
        if self.size > old_size {
            self.hashes.resize(self.size, UNUSED);
            self.keys.resize(self.size, None);
        }
        let mut relocated = vec![false; bitmap_len];
        for i in 0..old_size {
            let node_hash = self.hashes[i];
            if node_hash < 2 {
                self.hashes[i] = UNUSED;
                continue;
            }
            if relocated[i] {
                continue;
            }
            self.hashes[i] = UNUSED;
            let mut key = self.keys[i].take();
            let mut node_hash = node_hash;
            loop {
                let mut idx = self.hash_to_index(node_hash);
                let mut step = 0;
                while relocated[idx] {
                    step += 1;
                    idx = (idx + step) & self.mask;
                }
                relocated[idx] = true;
                let replaced = self.hashes[idx];
                self.hashes[idx] = node_hash;
                if replaced < 2 {
                    self.keys[idx] = key;
                    break;
                }
                node_hash = replaced;
                key = std::mem::replace(&mut self.keys[idx], key);
            }
        }
        if self.size < old_size {
            self.hashes.truncate(self.size);
            self.keys.truncate(self.size);
        }
        self.noccupied = self.nnodes;
    }

    /// The keys in iteration order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.hashes
            .iter()
            .zip(&self.keys)
            .filter(|(h, _)| **h >= 2)
            .filter_map(|(_, k)| *k)
    }

    pub fn len(&self) -> usize {
        self.nnodes
    }

    pub fn is_empty(&self) -> bool {
        self.nnodes == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_hash() {
        assert_eq!(g_str_hash(""), 5381);
        assert_eq!(g_str_hash("a"), 5381 * 33 + 97);
    }

    #[test]
    fn remove_no_resize_keeps_the_size() {
        let keys: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
        let mut a = GHashTable::new();
        let mut b = GHashTable::new();
        for k in &keys {
            a.insert(k);
            b.insert(k);
        }
        for k in &keys[..35] {
            a.remove(k);
            b.remove_no_resize(k);
        }
        assert_eq!(a.len(), 5);
        assert_eq!(b.len(), 5);
        assert!(b.size > a.size);
        let mut rest: Vec<&str> = b.iter().collect();
        rest.sort();
        let mut want: Vec<&str> = keys[35..].iter().map(String::as_str).collect();
        want.sort();
        assert_eq!(rest, want);
    }

    #[test]
    fn insert_remove_iterate() {
        let keys: Vec<String> = (0..100).map(|i| format!("key{i}")).collect();
        let mut t = GHashTable::new();
        for k in &keys {
            t.insert(k);
        }
        assert_eq!(t.len(), 100);
        let mut seen: Vec<&str> = t.iter().collect();
        seen.sort();
        let mut want: Vec<&str> = keys.iter().map(String::as_str).collect();
        want.sort();
        assert_eq!(seen, want);
        for k in keys.iter().take(95) {
            t.remove(k);
        }
        assert_eq!(t.len(), 5);
        let mut rest: Vec<&str> = t.iter().collect();
        rest.sort();
        let mut want: Vec<&str> = keys[95..].iter().map(String::as_str).collect();
        want.sort();
        assert_eq!(rest, want);
    }
}
