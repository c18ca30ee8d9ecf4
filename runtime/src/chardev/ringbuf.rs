//! The `ringbuf` (and its old alias `memory`) backend: a fixed-size byte ring
//! that keeps the most recent output of its frontend, read and written with
//! the `ringbuf-read` and `ringbuf-write` commands.
//!
//! Storage grows with the data actually written (up to the configured
//! size), so a large `size` costs nothing until it is used.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use qapi::types::DataFormat;
use tokio::io::AsyncWrite;

/// The default size, 64 KiB.
pub const DEFAULT_SIZE: i64 = 65536;

/// The error for a size that is not a power of two.
pub const BAD_SIZE: &str = "size of ringbuf chardev must be power of two";

/// A ring of bytes; the oldest bytes are overwritten when it is full.
pub struct Ringbuf {
    state: Mutex<Ring>,
}

struct Ring {
    /// Capacity in bytes: a power of two, or 0 (keeps nothing).
    size: u64,
    /// Total bytes ever written and ever consumed; `prod - cons` is the fill.
    prod: u64,
    cons: u64,
    data: Vec<u8>,
}

impl Ringbuf {
    /// A ring of `size` bytes (`None`: 64 KiB). QEMU reads the size as an
    /// unsigned machine word, so a negative value is checked as the huge
    /// number it becomes.
    pub fn new(size: Option<i64>) -> Result<Ringbuf, &'static str> {
        let size = size.unwrap_or(DEFAULT_SIZE) as u64;
        if size & size.wrapping_sub(1) != 0 {
            return Err(BAD_SIZE);
        }
        Ok(Ringbuf {
            state: Mutex::new(Ring {
                size,
                prod: 0,
                cons: 0,
                data: Vec::new(),
            }),
        })
    }

    /// Appends `bytes`, dropping the oldest data when the ring is full.
    pub fn write(&self, bytes: &[u8]) {
        let Ok(mut r) = self.state.lock() else { return };
        if r.size == 0 {
            return;
        }
        let mask = r.size - 1;
        for &b in bytes {
            let i = (r.prod & mask) as usize;
            if i < r.data.len() {
                r.data[i] = b;
            } else {
                r.data.push(b);
            }
            r.prod += 1;
            if r.prod - r.cons > r.size {
                r.cons = r.prod - r.size;
            }
        }
    }

    /// Removes and returns up to `max` of the oldest bytes.
    pub fn read(&self, max: u64) -> Vec<u8> {
        let Ok(mut r) = self.state.lock() else {
            return Vec::new();
        };
        let n = max.min(r.prod - r.cons);
        let mask = r.size.wrapping_sub(1);
        let out = (0..n)
            .map(|k| r.data[((r.cons + k) & mask) as usize])
            .collect();
        r.cons += n;
        out
    }
}

/// The bytes `ringbuf-write` stores for `data` in `format`.
///
/// UTF-8 data is stored as QEMU holds the string: a NUL character becomes
/// the two bytes C0 80. Base64 data must consist of base64 characters, `=`
/// and newlines only, and is then decoded as leniently as GLib does.
pub fn write_bytes(data: &str, format: Option<DataFormat>) -> Result<Vec<u8>, &'static str> {
    match format {
        Some(DataFormat::Base64) => base64_decode(data),
        _ => {
            let mut out = Vec::with_capacity(data.len());
            for c in data.chars() {
                if c == '\0' {
                    out.extend_from_slice(&[0xC0, 0x80]);
                } else {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
            Ok(out)
        }
    }
}

/// The string `ringbuf-read` returns for `bytes` in `format`.
///
/// Base64 is standard padded base64. UTF-8 is what QEMU makes of the raw
/// bytes: the text ends at the first NUL byte, and every byte sequence that
/// is not valid (modified) UTF-8, including a character cut off by `size`,
/// noncharacters and surrogates, reads as U+FFFD; C0 80 reads as U+0000.
pub fn read_string(bytes: &[u8], format: Option<DataFormat>) -> String {
    match format {
        Some(DataFormat::Base64) => base64_encode(bytes),
        _ => decode_mod_utf8(bytes),
    }
}

/// Decodes modified UTF-8 up to the first NUL byte, one U+FFFD per invalid
/// sequence.
fn decode_mod_utf8(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let s = &bytes[..end];
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let (cp, len) = codepoint(&s[i..]);
        out.push(cp.and_then(char::from_u32).unwrap_or('\u{FFFD}'));
        i += len;
    }
    out
}

/// The code point starting `s` (non-empty, no NUL) and the bytes it spans;
/// `None` for an invalid sequence. An incomplete sequence spans only the
/// bytes up to the first missing continuation byte.
fn codepoint(s: &[u8]) -> (Option<u32>, usize) {
    let first = s[0];
    if first < 0x80 {
        return (Some(u32::from(first)), 1);
    }
    if first >= 0xFE || first & 0x40 == 0 {
        // Impossible byte, or a continuation byte without a lead byte.
        return (None, 1);
    }
    let len = first.leading_ones() as usize;
    let mut cp = u32::from(first) & (0x7F >> len);
    for i in 1..len {
        match s.get(i) {
            Some(&b) if b & 0xC0 == 0x80 => cp = (cp << 6) | u32::from(b & 0x3F),
            _ => return (None, i),
        }
    }
    const MIN: [u32; 5] = [0x80, 0x800, 0x10000, 0x200000, 0x4000000];
    let valid = cp <= 0x10FFFF
        && !(0xFDD0..=0xFDEF).contains(&cp)
        && cp & 0xFFFE != 0xFFFE
        && !(0xD800..=0xDFFF).contains(&cp)
        && (cp >= MIN[len - 2] || (cp == 0 && len == 2));
    (valid.then_some(cp), len)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(B64[(v >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// QEMU's check of base64 input followed by GLib's lenient decoder: `=`
/// counts as a zero digit, a group of four digits yields three bytes minus
/// one for each of its last two digits that is `=`, and an incomplete last
/// group is dropped.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, &'static str> {
    let valid = |c: u8| c.is_ascii_alphanumeric() || b"+/=\n".contains(&c);
    if !text.bytes().all(valid) {
        return Err("Base64 data contains invalid characters");
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut v, mut n) = (0u32, 0);
    let mut last = [0u8; 2];
    for c in text.bytes() {
        let rank = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => 0,
            _ => continue,
        };
        last = [c, last[0]];
        v = (v << 6) | u32::from(rank);
        n += 1;
        if n == 4 {
            out.push((v >> 16) as u8);
            if last[1] != b'=' {
                out.push((v >> 8) as u8);
            }
            if last[0] != b'=' {
                out.push(v as u8);
            }
            n = 0;
        }
    }
    Ok(out)
}

/// The frontend's output channel into a ring.
pub struct RingWriter(pub Arc<Ringbuf>);

impl AsyncWrite for RingWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_must_be_power_of_two() {
        assert!(Ringbuf::new(None).is_ok());
        assert!(Ringbuf::new(Some(0)).is_ok());
        assert!(Ringbuf::new(Some(1)).is_ok());
        assert_eq!(Ringbuf::new(Some(3)).err(), Some(BAD_SIZE));
        assert_eq!(Ringbuf::new(Some(-1)).err(), Some(BAD_SIZE));
        assert!(Ringbuf::new(Some(1 << 40)).is_ok());
    }

    #[test]
    fn keeps_the_newest_bytes() {
        let r = Ringbuf::new(Some(8)).unwrap();
        r.write(b"0123456789abc");
        assert_eq!(r.read(3), b"567");
        assert_eq!(r.read(100), b"89abc");
        assert_eq!(r.read(100), b"");
        r.write(b"xy");
        assert_eq!(r.read(100), b"xy");
    }

    #[test]
    fn size_zero_keeps_nothing() {
        let r = Ringbuf::new(Some(0)).unwrap();
        r.write(b"abc");
        assert_eq!(r.read(10), b"");
    }

    #[test]
    fn utf8_reading_as_qemu() {
        // A cut-off character: continuation byte, then a lead byte whose
        // continuation is missing.
        assert_eq!(decode_mod_utf8(&[0xA9, 0xE2]), "\u{FFFD}\u{FFFD}");
        // Stops at NUL.
        assert_eq!(
            decode_mod_utf8(&[0xFF, 0xEF, 0x00, 0x80]),
            "\u{FFFD}\u{FFFD}"
        );
        // Noncharacter U+FFFF.
        assert_eq!(decode_mod_utf8(&[0xEF, 0xBF, 0xBF]), "\u{FFFD}");
        // Modified UTF-8 NUL.
        assert_eq!(decode_mod_utf8(b"a\xC0\x80b"), "a\0b");
        // Overlong and surrogate.
        assert_eq!(decode_mod_utf8(&[0xC1, 0x81]), "\u{FFFD}");
        assert_eq!(decode_mod_utf8(&[0xED, 0xA0, 0x80]), "\u{FFFD}");
        assert_eq!(decode_mod_utf8("é€𝄞".as_bytes()), "é€𝄞");
    }

    #[test]
    fn utf8_writing_as_qemu() {
        assert_eq!(write_bytes("a\0b", None).unwrap(), b"a\xC0\x80b");
    }

    #[test]
    fn base64_as_glib() {
        let d = |s| base64_decode(s).unwrap();
        assert_eq!(d("QQ"), b"");
        assert_eq!(d("QQ=="), b"A");
        assert_eq!(d("Q=Q="), [0x40, 0x04]);
        assert_eq!(d("QUJD\nRA=="), b"ABCD");
        assert_eq!(
            base64_decode("QU*JD"),
            Err("Base64 data contains invalid characters")
        );
        assert_eq!(base64_encode(b"ABCD"), "QUJDRA==");
        assert_eq!(base64_encode(b"a\xC0\x80b"), "YcCAYg==");
        assert_eq!(base64_encode(b""), "");
    }
}
