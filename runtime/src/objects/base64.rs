//! Base64 as QEMU's secrets decode it.
//!
//! QEMU first checks the text (no NUL byte inside, only characters of the
//! standard alphabet, `=` and newline) and then hands it to GLib's decoder,
//! which is lenient: newlines are skipped, `=` counts as a zero digit
//! wherever it appears and only removes output bytes when it ends a group of
//! four, and a trailing incomplete group is dropped. A strict decoder would
//! reject inputs QSD accepts (`"AAA"` decodes to nothing, `"A=AA"` to three
//! bytes), so this module reproduces GLib's behaviour.

use qapi::QmpError;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The value of a base64 digit; `=` counts as 0. `None` for characters the
/// decoder skips.
fn rank(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        b'=' => Some(0),
        _ => None,
    }
}

/// GLib's `g_base64_decode` on `text` (which it reads up to the first NUL).
pub fn glib_decode(text: &[u8]) -> Vec<u8> {
    let text = text.split(|&b| b == 0).next().unwrap_or_default();
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut v: u32 = 0;
    let mut n = 0;
    // The last two digits seen, most recent first.
    let mut last = [0u8; 2];
    for &c in text {
        let Some(r) = rank(c) else { continue };
        last[1] = last[0];
        last[0] = c;
        v = (v << 6) | r;
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
    out
}

/// QEMU's `qbase64_decode` for input of known length: the checks, then
/// GLib's decoder.
pub fn qemu_decode(input: &[u8]) -> Result<Vec<u8>, QmpError> {
    if input.contains(&0) {
        return Err(QmpError::generic(
            "Base64 data contains embedded NUL characters",
        ));
    }
    let valid = |c: &u8| ALPHABET.contains(c) || *c == b'=' || *c == b'\n';
    if !input.iter().all(valid) {
        return Err(QmpError::generic("Base64 data contains invalid characters"));
    }
    Ok(glib_decode(input))
}

/// QEMU's `qbase64_decode` for a C string: the text ends at its first NUL.
pub fn qemu_decode_str(input: &str) -> Result<Vec<u8>, QmpError> {
    let bytes = input.as_bytes();
    qemu_decode(bytes.split(|&b| b == 0).next().unwrap_or_default())
}

/// Standard base64 with padding (GLib's `g_base64_encode`).
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let v = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(v >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_standard_base64() {
        assert_eq!(glib_decode(b"YWJj"), b"abc");
        assert_eq!(glib_decode(b"YWI="), b"ab");
        assert_eq!(glib_decode(b"YQ=="), b"a");
        assert_eq!(glib_decode(b"YW\nJj"), b"abc");
        assert_eq!(glib_decode(b""), b"");
    }

    #[test]
    fn lenient_like_glib() {
        // Incomplete trailing group: dropped.
        assert_eq!(glib_decode(b"AAA"), b"");
        assert_eq!(glib_decode(b"YWJjZA"), b"abc");
        // '=' inside a group is a zero digit.
        assert_eq!(glib_decode(b"A=AA").len(), 3);
        // Every complete group yields at least one byte.
        assert_eq!(glib_decode(b"====").len(), 1);
    }

    #[test]
    fn qemu_checks() {
        assert_eq!(
            qemu_decode(b"YW Jj").unwrap_err().desc,
            "Base64 data contains invalid characters"
        );
        assert_eq!(
            qemu_decode(b"YW\0Jj").unwrap_err().desc,
            "Base64 data contains embedded NUL characters"
        );
        assert_eq!(qemu_decode_str("YWJj\0!!").unwrap(), b"abc");
    }

    #[test]
    fn encodes() {
        for (plain, enc) in [("", ""), ("a", "YQ=="), ("ab", "YWI="), ("abc", "YWJj")] {
            assert_eq!(encode(plain.as_bytes()), enc);
            assert_eq!(glib_decode(enc.as_bytes()), plain.as_bytes());
        }
    }
}
