//! The iteration order of QEMU's QDict, which decides the order in which QEMU
//! prints object keys and which of several problems it reports first.
//!
//! A QDict is a hash table of 512 buckets; each bucket is a list to which new
//! entries are prepended (replacing a value keeps the key where it is).
//! Iteration walks the buckets in ascending order, so keys come out sorted by
//! bucket, and within one bucket the key inserted last comes first. The hash
//! is the TDB hash of the key's bytes as QEMU stores them (U+0000 as the
//! two bytes `C0 80`).

use serde_json::{Map, Value};

use crate::json::utf8::to_modified_utf8;

/// Number of buckets of a QDict.
pub const QDICT_BUCKETS: u32 = 512;

/// The hash QEMU uses for QDict keys (the Samba TDB hash), over `key`'s bytes.
pub fn tdb_hash(key: &[u8]) -> u32 {
    // The length is a size_t folded into a 32-bit unsigned, as in C.
    let mut v = 0x238F_13AFu32.wrapping_mul(key.len() as u32);
    for (i, b) in key.iter().enumerate() {
        v = v.wrapping_add(u32::from(*b) << ((i as u32 * 5) % 24));
    }
    1_103_515_243u32.wrapping_mul(v).wrapping_add(12345)
}

/// The bucket of `key`.
pub fn bucket(key: &str) -> u32 {
    tdb_hash(&to_modified_utf8(key)) % QDICT_BUCKETS
}

/// Keys given in insertion order (first insertion of each key), reordered
/// into the order in which QEMU visits them.
pub fn iteration_order<'a, I>(keys_in_insertion_order: I) -> Vec<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut keyed: Vec<(u32, usize, &'a str)> = keys_in_insertion_order
        .into_iter()
        .enumerate()
        .map(|(i, k)| (bucket(k), i, k))
        .collect();
    // Ascending bucket; within a bucket, later insertion first.
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    keyed.into_iter().map(|(_, _, k)| k).collect()
}

/// Keys of `m` in QDict iteration order, given that they were inserted in
/// the map's order.
pub fn order(m: &Map<String, Value>) -> Vec<&str> {
    iteration_order(m.keys().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_key_order() {
        // QSD prints {"micro": 2, "minor": 0, "major": 10} for a dict built
        // major, minor, micro.
        let mut m = Map::new();
        for k in ["major", "minor", "micro"] {
            m.insert(k.to_string(), Value::Null);
        }
        assert_eq!(order(&m), vec!["micro", "minor", "major"]);
    }

    #[test]
    fn buckets_of_known_keys() {
        assert_eq!(bucket("x"), 134);
        assert_eq!(bucket("id"), 486);
    }
}
