//! QEMU's flavour of UTF-8 ("modified UTF-8").
//!
//! QEMU stores strings as NUL-terminated C strings, so U+0000 is kept as
//! the overlong two-byte form `C0 80`.  Its decoder additionally rejects
//! surrogates, noncharacters (U+FDD0..U+FDEF and every U+xxFFFE/U+xxFFFF)
//! and code points above U+10FFFF, and it re-synchronises after bad input
//! in a particular way (see [`decode_one`]).  Everything here reproduces
//! those rules, because they decide both which strings the parser accepts
//! and how many U+FFFD replacement characters the writer emits.

/// Whether QEMU considers `cp` a character it may store in a string.
pub(crate) fn is_valid_codepoint(cp: u32) -> bool {
    if cp > 0x10_FFFF {
        return false;
    }
    if (0xFDD0..=0xFDEF).contains(&cp) || (cp & 0xFFFE) == 0xFFFE {
        return false;
    }
    !(0xD800..=0xDFFF).contains(&cp)
}

/// Decode one character at the start of `bytes`.
///
/// Returns the code point (`None` for an invalid sequence) and the number
/// of bytes consumed, which is at least 1 for non-empty input.  Rules:
/// - a lone continuation byte or one of `FE`/`FF` consumes one byte;
/// - a lead byte announces 2..=6 bytes; if a continuation byte is missing,
///   everything up to (not including) the offending byte is consumed;
/// - a complete sequence that encodes an invalid code point, or an overlong
///   form other than `C0 80` (which means U+0000), consumes all its bytes.
///
/// Bytes past the end of the slice read as NUL, as in C.
pub(crate) fn decode_one(bytes: &[u8]) -> (Option<u32>, usize) {
    // Smallest code point that legitimately needs 2, 3, 4, 5, 6 bytes.
    const MIN_FOR_LEN: [u32; 5] = [0x80, 0x800, 0x1_0000, 0x20_0000, 0x400_0000];
    let Some(&lead) = bytes.first() else {
        return (None, 0);
    };
    if lead < 0x80 {
        return (Some(u32::from(lead)), 1);
    }
    if lead >= 0xFE || lead & 0x40 == 0 {
        return (None, 1);
    }
    let len = lead.leading_ones() as usize; // 2..=6 here
    let mut cp = u32::from(lead) & (0x7F >> len);
    for i in 1..len {
        let b = bytes.get(i).copied().unwrap_or(0);
        if b & 0xC0 != 0x80 {
            return (None, i);
        }
        cp = (cp << 6) | u32::from(b & 0x3F);
    }
    let overlong = cp < MIN_FOR_LEN[len - 2] && !(cp == 0 && len == 2);
    if !is_valid_codepoint(cp) || overlong {
        return (None, len);
    }
    (Some(cp), len)
}

/// Decode bytes the way QEMU's JSON writer reads a C string: stop at the
/// first NUL byte, and turn every invalid sequence into U+FFFD.
///
/// Running the result through [`crate::json::to_json`] yields exactly the
/// bytes QEMU would write for the original byte string.
pub(crate) fn decode_lossy(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let mut rest = &bytes[..end];
    let mut out = String::with_capacity(rest.len());
    while !rest.is_empty() {
        let (cp, used) = decode_one(rest);
        out.push(cp.and_then(char::from_u32).unwrap_or('\u{FFFD}'));
        rest = &rest[used.max(1)..];
    }
    out
}

/// Encode `s` the way QEMU stores it: UTF-8, except U+0000 as `C0 80`.
pub(crate) fn to_modified_utf8(s: &str) -> std::borrow::Cow<'_, [u8]> {
    if !s.contains('\0') {
        return std::borrow::Cow::Borrowed(s.as_bytes());
    }
    let mut out = Vec::with_capacity(s.len() + 4);
    for &b in s.as_bytes() {
        if b == 0 {
            out.extend_from_slice(&[0xC0, 0x80]);
        } else {
            out.push(b);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_and_multibyte() {
        assert_eq!(decode_one(b"A"), (Some(0x41), 1));
        assert_eq!(decode_one("é".as_bytes()), (Some(0xE9), 2));
        assert_eq!(decode_one("€".as_bytes()), (Some(0x20AC), 3));
        assert_eq!(decode_one("😀".as_bytes()), (Some(0x1F600), 4));
    }

    #[test]
    fn c0_80_is_nul_but_other_overlongs_are_not() {
        assert_eq!(decode_one(&[0xC0, 0x80]), (Some(0), 2));
        assert_eq!(decode_one(&[0xC1, 0x81]), (None, 2));
        assert_eq!(decode_one(&[0xE0, 0x80, 0x80]), (None, 3));
    }

    #[test]
    fn resynchronisation() {
        // Lone continuation, impossible bytes: one byte.
        assert_eq!(decode_one(&[0x80, 0x41]), (None, 1));
        assert_eq!(decode_one(&[0xFE]), (None, 1));
        assert_eq!(decode_one(&[0xFF]), (None, 1));
        // Missing continuation: stop before the offending byte.
        assert_eq!(decode_one(&[0xE2, 0x82, 0x41]), (None, 2));
        assert_eq!(decode_one(&[0xC3]), (None, 1));
        // Surrogates, noncharacters, beyond U+10FFFF: whole sequence.
        assert_eq!(decode_one(&[0xED, 0xA0, 0x80]), (None, 3));
        assert_eq!(decode_one(&[0xEF, 0xBF, 0xBF]), (None, 3));
        assert_eq!(decode_one(&[0xF4, 0x90, 0x80, 0x80]), (None, 4));
        assert_eq!(decode_one(&[0xF8, 0x88, 0x80, 0x80, 0x80]), (None, 5));
    }

    #[test]
    fn validity() {
        assert!(is_valid_codepoint(0));
        assert!(is_valid_codepoint(0xFFFD));
        assert!(!is_valid_codepoint(0xFFFE));
        assert!(!is_valid_codepoint(0x1FFFF));
        assert!(!is_valid_codepoint(0xFDD0));
        assert!(!is_valid_codepoint(0xDC00));
        assert!(!is_valid_codepoint(0x110000));
    }

    #[test]
    fn lossy() {
        assert_eq!(decode_lossy(b"a\xFFb\0c"), "a\u{FFFD}b");
        assert_eq!(decode_lossy(&[0xE2, 0x82, 0x41]), "\u{FFFD}A");
        assert_eq!(decode_lossy(&[0xC0, 0x80]), "\0");
    }

    #[test]
    fn modified_encoding() {
        assert_eq!(&*to_modified_utf8("a\0b"), &[b'a', 0xC0, 0x80, b'b']);
        assert_eq!(&*to_modified_utf8("ab"), b"ab");
    }
}
