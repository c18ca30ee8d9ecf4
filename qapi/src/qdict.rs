//! The iteration order of QEMU's QDict, which decides the order in which QEMU
//! prints object keys and which unexpected member it reports first.
//!
//! A QDict is a hash table of 512 buckets; each bucket is a list to which new
//! entries are prepended. Iteration walks the buckets in ascending order, so
//! keys come out sorted by bucket, and within one bucket the key inserted
//! last comes first.

use serde_json::{Map, Value};

/// Number of buckets of a QDict.
pub const QDICT_BUCKETS: u32 = 512;

/// The string hash QEMU uses for QDict keys (the classic TDB hash).
pub fn tdb_hash(key: &str) -> u32 {
    let bytes = key.as_bytes();
    let mut v = 0x238F_13AFu32.wrapping_mul(bytes.len() as u32);
    for (i, b) in bytes.iter().enumerate() {
        v = v.wrapping_add(u32::from(*b) << ((i as u32 * 5) % 24));
    }
    1_103_515_243u32.wrapping_mul(v).wrapping_add(12345)
}

/// The bucket of `key`.
pub fn bucket(key: &str) -> u32 {
    tdb_hash(key) % QDICT_BUCKETS
}

/// Keys of `m` in QDict iteration order, given that they were inserted in
/// the map's order.
pub fn order(m: &Map<String, Value>) -> Vec<&str> {
    let mut keys: Vec<(u32, usize, &str)> = m
        .keys()
        .enumerate()
        .map(|(i, k)| (bucket(k), i, k.as_str()))
        .collect();
    // Ascending bucket; within a bucket, later insertion first.
    keys.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    keys.into_iter().map(|(_, _, k)| k).collect()
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
}
