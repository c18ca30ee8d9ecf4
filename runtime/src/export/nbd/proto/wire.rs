//! Small helpers shared by the encoders and decoders: big-endian field
//! access on fixed arrays, a bounds-checked reader over a payload, and the
//! byte-string type used for names and queries.

use std::fmt;

/// A protocol string as received: bytes, not necessarily UTF-8 (QEMU
/// compares and echoes names byte for byte, so we keep them as bytes).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct WireString(pub Vec<u8>);

impl WireString {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// The string if it is valid UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for WireString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(&self.0), f)
    }
}

impl fmt::Display for WireString {
    /// Lossy: invalid UTF-8 shows as U+FFFD.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl From<&str> for WireString {
    fn from(s: &str) -> WireString {
        WireString(s.as_bytes().to_vec())
    }
}

impl From<&[u8]> for WireString {
    fn from(s: &[u8]) -> WireString {
        WireString(s.to_vec())
    }
}

impl PartialEq<str> for WireString {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for WireString {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

/// Reads a big-endian u16 at `at` of a fixed array (no bounds failure:
/// callers pass constant offsets inside the array).
pub(crate) fn be16<const N: usize>(b: &[u8; N], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads a big-endian u32 at `at` of a fixed array.
pub(crate) fn be32<const N: usize>(b: &[u8; N], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads a big-endian u64 at `at` of a fixed array.
pub(crate) fn be64<const N: usize>(b: &[u8; N], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

/// Writes `v` big-endian at `at` of a fixed array.
pub(crate) fn put16<const N: usize>(b: &mut [u8; N], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes `v` big-endian at `at` of a fixed array.
pub(crate) fn put32<const N: usize>(b: &mut [u8; N], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Writes `v` big-endian at `at` of a fixed array.
pub(crate) fn put64<const N: usize>(b: &mut [u8; N], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// A forward-only reader over a payload; every read reports `None` when
/// fewer bytes remain than asked for, and then consumes nothing.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }
    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// Bytes read so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.remaining() {
            return None;
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Some(s)
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.bytes(8).map(|b| {
            let mut x = [0u8; 8];
            x.copy_from_slice(b);
            u64::from_be_bytes(x)
        })
    }
    /// The rest of the payload.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_bounds() {
        let mut r = Reader::new(&[0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(r.u16(), Some(1));
        assert_eq!(r.u64(), None);
        assert_eq!(r.position(), 2);
        assert_eq!(r.u32(), Some(0x0203_0405));
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.u16(), None);
        assert_eq!(r.rest(), &[6]);
        assert_eq!(r.bytes(0), Some(&[][..]));
    }

    #[test]
    fn fixed_fields() {
        let mut b = [0u8; 16];
        put16(&mut b, 0, 0x0102);
        put32(&mut b, 2, 0x0304_0506);
        put64(&mut b, 6, 0x0708_090a_0b0c_0d0e);
        assert_eq!(be16(&b, 0), 0x0102);
        assert_eq!(be32(&b, 2), 0x0304_0506);
        assert_eq!(be64(&b, 6), 0x0708_090a_0b0c_0d0e);
    }

    #[test]
    fn wire_string() {
        let s = WireString::from("abc");
        assert_eq!(s, "abc");
        assert_eq!(s.to_str(), Some("abc"));
        assert_eq!(s.len(), 3);
        assert!(!s.is_empty());
        let bad = WireString(vec![0xff, b'a']);
        assert_eq!(bad.to_str(), None);
        assert_eq!(bad.to_string(), "\u{fffd}a");
        assert_eq!(format!("{bad:?}"), "\"\u{fffd}a\"");
        assert_eq!(WireString::from(&b"x"[..]).as_bytes(), b"x");
    }
}
