//! The iteration order of a QEMU `QDict`.
//!
//! QEMU 10.0.2 keeps a `QDict` in 512 hash buckets; it walks the buckets in
//! ascending order and, inside a bucket, from the most recently inserted key to
//! the oldest (new keys go to the head of the bucket's list; replacing a value
//! keeps the key where it is). The hash is the "tdb" hash of the key's bytes.
//!
//! Whenever QEMU reports only the *first* of several problems found while
//! walking a dictionary, that order decides which one is printed. The keyval
//! parser's list conversion is such a walk (see [`super`]); this module lets
//! us reproduce it from a map kept in insertion order.

/// Number of hash buckets of a `QDict`.
const BUCKETS: u32 = 512;

/// The `QDict` bucket of `key`.
pub fn bucket(key: &str) -> u32 {
    let bytes = key.as_bytes();
    // The length is folded in as a C `unsigned` (32 bits), as QEMU does.
    let mut value = 0x238F_13AFu32.wrapping_mul(bytes.len() as u32);
    for (i, b) in bytes.iter().enumerate() {
        let shift = (i * 5 % 24) as u32;
        value = value.wrapping_add(u32::from(*b) << shift);
    }
    1_103_515_243u32.wrapping_mul(value).wrapping_add(12345) % BUCKETS
}

/// Reorder keys given in insertion order (first insertion of each key) into the
/// order in which QEMU's `qdict_first`/`qdict_next` would visit them.
pub fn iteration_order<'a, I>(keys_in_insertion_order: I) -> Vec<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut keyed: Vec<(u32, usize, &'a str)> = keys_in_insertion_order
        .into_iter()
        .enumerate()
        .map(|(i, k)| (bucket(k), i, k))
        .collect();
    // Ascending bucket; inside a bucket the newest key first.
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    keyed.into_iter().map(|(_, _, k)| k).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_match_qemu() {
        // Values computed from QEMU's hash; the order they imply was checked
        // against qemu-storage-daemon's error messages.
        assert_eq!(bucket("a"), 233);
        assert_eq!(bucket("b"), 340);
        assert_eq!(bucket("x"), 134);
        assert_eq!(bucket("foo"), 490);
        assert_eq!(bucket("bar"), 254);
        assert_eq!(bucket("0"), 110);
        assert_eq!(bucket("00"), 147);
    }

    #[test]
    fn order() {
        assert_eq!(iteration_order(["a", "x", "b"]), vec!["x", "a", "b"]);
        assert_eq!(iteration_order(["foo", "bar"]), vec!["bar", "foo"]);
    }
}
