//! Number parsing with the exact acceptance rules of QEMU 10.0.2's `util/cutils.c`
//! wrappers around the C library (`qemu_strtoi64`, `qemu_strtou64`, `qemu_strtosz`,
//! `qemu_strtod_finite`), as built against glibc in the C locale.
//!
//! The command-line parsers of `qsd` must accept and reject exactly the strings
//! QSD does, so these functions mimic `strtoll`/`strtoull`/`strtod` byte by byte
//! rather than using Rust's own (stricter) number parsers:
//!
//! * leading C white space (`' '`, `\t`, `\n`, `\v`, `\f`, `\r`) is skipped,
//!   trailing white space is not;
//! * an optional `+` or `-` sign;
//! * with base 0, a `0x`/`0X` prefix followed by a hex digit selects base 16 and a
//!   leading `0` selects base 8 (so `010` is 8 and `08` is invalid); there is no
//!   `0b` prefix (the installed QSD is built against a glibc without C23 `0b`);
//! * unsigned parsing accepts a minus sign and negates modulo 2^64, like
//!   `strtoull` (`-1` is `18446744073709551615`).
//!
//! Each function reports [`StrtoError::Invalid`] where QEMU returns `-EINVAL` and
//! [`StrtoError::Range`] where it returns `-ERANGE`; some callers print different
//! messages for the two.

/// Why a conversion failed, mirroring QEMU's `-EINVAL` / `-ERANGE` results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrtoError {
    /// No number, trailing characters, or a malformed number (`-EINVAL`).
    Invalid,
    /// The number does not fit (`-ERANGE`).
    Range,
}

/// White space as C's `isspace()` sees it in the C locale.
pub(crate) fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn digit_value(b: u8) -> Option<u32> {
    match b {
        b'0'..=b'9' => Some(u32::from(b - b'0')),
        b'a'..=b'z' => Some(u32::from(b - b'a') + 10),
        b'A'..=b'Z' => Some(u32::from(b - b'A') + 10),
        _ => None,
    }
}

fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

/// What `strtoull`/`strtoll` found at the start of a string.
struct IntScan {
    /// Absolute value, saturated at `u64::MAX` when `overflow`.
    magnitude: u64,
    /// The digits did not fit in 64 bits.
    overflow: bool,
    /// A minus sign preceded the digits.
    negative: bool,
    /// Index just past the last digit; 0 when nothing was converted.
    end: usize,
}

/// Scan an integer the way glibc's `strtoull` does. `base` is 0, 8, 10 or 16.
fn scan_int(s: &[u8], base: u32) -> IntScan {
    let mut i = 0;
    while is_c_space(at(s, i)) {
        i += 1;
    }
    let mut negative = false;
    if at(s, i) == b'+' || at(s, i) == b'-' {
        negative = at(s, i) == b'-';
        i += 1;
    }
    let hex_prefix =
        at(s, i) == b'0' && matches!(at(s, i + 1), b'x' | b'X') && at(s, i + 2).is_ascii_hexdigit();
    let mut radix = base;
    if (base == 0 || base == 16) && hex_prefix {
        radix = 16;
        i += 2;
    } else if base == 0 {
        radix = if at(s, i) == b'0' { 8 } else { 10 };
    }
    let start = i;
    let mut magnitude: u64 = 0;
    let mut overflow = false;
    while let Some(d) = digit_value(at(s, i)).filter(|d| *d < radix) {
        match magnitude
            .checked_mul(u64::from(radix))
            .and_then(|m| m.checked_add(u64::from(d)))
        {
            Some(m) => magnitude = m,
            None => overflow = true,
        }
        i += 1;
    }
    if i == start {
        return IntScan {
            magnitude: 0,
            overflow: false,
            negative: false,
            end: 0,
        };
    }
    IntScan {
        magnitude: if overflow { u64::MAX } else { magnitude },
        overflow,
        negative,
        end: i,
    }
}

/// `strtoull` with an end index: (result, end). `end` is 0 when nothing was
/// converted; the result is `Range` on overflow.
pub(crate) fn strtou64_prefix(s: &[u8], base: u32) -> (Result<u64, StrtoError>, usize) {
    let scan = scan_int(s, base);
    if scan.end == 0 {
        return (Err(StrtoError::Invalid), 0);
    }
    if scan.overflow {
        return (Err(StrtoError::Range), scan.end);
    }
    let v = if scan.negative {
        scan.magnitude.wrapping_neg()
    } else {
        scan.magnitude
    };
    (Ok(v), scan.end)
}

/// `strtoll` with an end index, like [`strtou64_prefix`].
fn strtoi64_prefix(s: &[u8], base: u32) -> (Result<i64, StrtoError>, usize) {
    let scan = scan_int(s, base);
    if scan.end == 0 {
        return (Err(StrtoError::Invalid), 0);
    }
    let limit = if scan.negative {
        1u64 << 63
    } else {
        i64::MAX.unsigned_abs()
    };
    if scan.overflow || scan.magnitude > limit {
        return (Err(StrtoError::Range), scan.end);
    }
    let v = if scan.negative {
        0i64.wrapping_sub_unsigned(scan.magnitude)
    } else {
        i64::try_from(scan.magnitude).unwrap_or(i64::MAX)
    };
    (Ok(v), scan.end)
}

/// Apply QEMU's "the whole string must be consumed" rule (endptr == NULL).
fn whole<T>(s: &[u8], (r, end): (Result<T, StrtoError>, usize)) -> Result<T, StrtoError> {
    if end == 0 {
        return Err(StrtoError::Invalid);
    }
    if end < s.len() {
        return Err(StrtoError::Invalid);
    }
    r
}

/// `qemu_strtoi64(s, NULL, base)`: the whole string must be a `strtoll` number.
/// Trailing characters are `Invalid` even when the number also overflows.
pub fn qemu_strtoi64(s: &str, base: u32) -> Result<i64, StrtoError> {
    whole(s.as_bytes(), strtoi64_prefix(s.as_bytes(), base))
}

/// `qemu_strtou64(s, NULL, base)`: the whole string must be a `strtoull` number;
/// negative numbers wrap (`-1` gives `u64::MAX`), overflow of the magnitude is
/// `Range`.
pub fn qemu_strtou64(s: &str, base: u32) -> Result<u64, StrtoError> {
    whole(s.as_bytes(), strtou64_prefix(s.as_bytes(), base))
}

/// QEMU's `parse_uint()` in base 10 with an end pointer: like `strtoull`, but a
/// negative number is `Range`.
fn parse_uint_prefix(s: &[u8]) -> (Result<u64, StrtoError>, usize) {
    let (r, end) = strtou64_prefix(s, 10);
    if end == 0 {
        return (Err(StrtoError::Invalid), 0);
    }
    if r == Err(StrtoError::Range) {
        return (r, end);
    }
    let first = s.iter().position(|b| !is_c_space(*b)).unwrap_or(0);
    if at(s, first) == b'-' {
        return (Err(StrtoError::Range), end);
    }
    (r, end)
}

fn suffix_mul(c: u8) -> Option<u64> {
    let unit: u64 = 1024;
    match c.to_ascii_uppercase() {
        b'B' => Some(1),
        b'K' => Some(unit),
        b'M' => Some(unit.pow(2)),
        b'G' => Some(unit.pow(3)),
        b'T' => Some(unit.pow(4)),
        b'P' => Some(unit.pow(5)),
        b'E' => Some(unit.pow(6)),
        _ => None,
    }
}

/// `qemu_strtosz(s, NULL, &result)`: a byte size with optional binary suffix.
///
/// Accepted syntax (all facts of QEMU 10.0.2, checked against the real binary):
/// * a decimal integer, optionally with a fraction: `1`, `1.5`, `.5`, `1.`
///   (leading white space and `+` allowed, any `-` is `Range`);
/// * optionally one suffix letter, case-insensitive: `B` (1), `K` (2^10), `M`,
///   `G`, `T`, `P`, `E` (2^60); nothing may follow it (`1kB`, `1KiB` are invalid);
/// * a fraction requires a suffix other than `B` (`1.5` and `1.5B` are invalid,
///   `1.0` and `1.0B` are fine since the fraction is zero); the scaled value is
///   rounded to nearest, halves upward (`0.4999999k` is 512);
/// * `e`/`E` is the exabyte suffix, never an exponent (`1e3` is invalid);
/// * hexadecimal `0x...` is accepted only without fraction or suffix (`0x10` is
///   16, `0x10k` is invalid);
/// * a result of 2^64 or more is `Range` (`16E`), as are negative numbers
///   (`-1`, `-.5`), but trailing garbage turns any error into `Invalid`
///   (`-1k`, `16Ex`).
pub fn qemu_strtosz(s: &str) -> Result<u64, StrtoError> {
    let b = s.as_bytes();
    let (r, end) = strtosz_prefix(b);
    if end < b.len() {
        return Err(StrtoError::Invalid);
    }
    r
}

/// The body of `do_strtosz`: result and end index (the end is 0 for errors that
/// QEMU reports with the end pointer reset to the start).
fn strtosz_prefix(s: &[u8]) -> (Result<u64, StrtoError>, usize) {
    let (parsed, mut end) = parse_uint_prefix(s);
    if parsed == Err(StrtoError::Range) {
        return (parsed, end);
    }
    let mut val = parsed.unwrap_or(0);
    let mut valf: u64 = 0;
    let mut retval = parsed.map(|_| ());
    if parsed == Ok(0) && matches!(at(s, end), b'x' | b'X') {
        // Looks like hex: reparse, and refuse a fraction or a suffix.
        let (hex, hex_end) = strtou64_prefix(s, 16);
        end = hex_end;
        match hex {
            Err(e) => return (Err(e), end),
            Ok(v) => val = v,
        }
        if at(s, end) == b'.' || suffix_mul(at(s, end)).is_some() {
            return (Err(StrtoError::Invalid), 0);
        }
    } else if at(s, end) == b'.' || (end == 0 && s.contains(&b'.')) {
        // A fraction. `e`/`E` mean exabytes here, so the fraction is parsed
        // from a copy cut at the first of them.
        let mut fraction = 0.0f64;
        if retval.is_ok() && at(s, end) == b'.' && !at(s, end + 1).is_ascii_digit() {
            end += 1;
        } else {
            let rest = &s[end..];
            let cut = rest
                .iter()
                .position(|c| *c == b'e' || *c == b'E')
                .unwrap_or(rest.len());
            let (fr, tail, value) = strtod_finite_prefix(&rest[..cut]);
            fraction = value;
            retval = fr.map(|_| ());
            end += tail;
            if fraction.is_sign_negative() {
                return (Err(StrtoError::Range), end);
            }
        }
        if fraction == 1.0 {
            if val == u64::MAX {
                return (Err(StrtoError::Range), end);
            }
            val += 1;
        } else if retval == Err(StrtoError::Range) {
            // Underflow: a non-zero fraction too small for a double.
            valf = 1;
            retval = Ok(());
        } else if fraction.is_finite() {
            // Truncation into 0.64 fixed point; any non-zero fraction counts.
            valf = (fraction * 18_446_744_073_709_551_616.0) as u64;
            if valf == 0 && fraction > 0.0 {
                valf = 1;
            }
        }
    }
    if let Err(e) = retval {
        return (Err(e), end);
    }
    let mul = match suffix_mul(at(s, end)) {
        Some(m) => {
            end += 1;
            m
        }
        None => 1,
    };
    if mul == 1 {
        if valf != 0 {
            return (Err(StrtoError::Invalid), 0);
        }
        return (Ok(val), end);
    }
    // Exact 64.64 fixed point times the multiplier, rounding halves upward.
    let frac = u128::from(valf) * u128::from(mul);
    let total = u128::from(val) * u128::from(mul) + (frac >> 64) + ((frac >> 63) & 1);
    match u64::try_from(total) {
        Ok(v) => (Ok(v), end),
        Err(_) => (Err(StrtoError::Range), end),
    }
}

/// `qemu_strtod_finite(s, NULL, &result)`: the whole string must be a `strtod`
/// number that is finite (`inf`, `nan` and overflow are `Invalid`) and does not
/// underflow (an inexact result in the subnormal range, or a non-zero number
/// rounding to zero, is `Range`).
pub fn qemu_strtod_finite(s: &str) -> Result<f64, StrtoError> {
    let b = s.as_bytes();
    let (r, end, _) = strtod_finite_prefix(b);
    if end == 0 {
        return Err(StrtoError::Invalid);
    }
    if end < b.len() {
        return Err(StrtoError::Invalid);
    }
    r
}

/// `qemu_strtod_finite` with an end pointer: (result, end, raw value). A
/// non-finite value resets the end to 0, as QEMU does.
fn strtod_finite_prefix(s: &[u8]) -> (Result<f64, StrtoError>, usize, f64) {
    let d = crate::strtod::strtod(s);
    if !d.value.is_finite() {
        return (Err(StrtoError::Invalid), 0, d.value);
    }
    if d.end == 0 {
        return (Err(StrtoError::Invalid), 0, d.value);
    }
    if d.erange {
        return (Err(StrtoError::Range), d.end, d.value);
    }
    (Ok(d.value), d.end, d.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtoi64_bases_and_syntax() {
        assert_eq!(qemu_strtoi64("10", 0), Ok(10));
        assert_eq!(qemu_strtoi64("0x10", 0), Ok(16));
        assert_eq!(qemu_strtoi64("0X1f", 0), Ok(31));
        assert_eq!(qemu_strtoi64("010", 0), Ok(8));
        assert_eq!(qemu_strtoi64("08", 0), Err(StrtoError::Invalid));
        assert_eq!(qemu_strtoi64("0x", 0), Err(StrtoError::Invalid));
        assert_eq!(qemu_strtoi64("0b1", 0), Err(StrtoError::Invalid));
        assert_eq!(qemu_strtoi64(" \t+5", 0), Ok(5));
        assert_eq!(qemu_strtoi64("5 ", 0), Err(StrtoError::Invalid));
        assert_eq!(qemu_strtoi64("", 0), Err(StrtoError::Invalid));
        assert_eq!(qemu_strtoi64("-", 0), Err(StrtoError::Invalid));
        assert_eq!(qemu_strtoi64("-0", 0), Ok(0));
        assert_eq!(qemu_strtoi64("1e3", 0), Err(StrtoError::Invalid));
    }

    #[test]
    fn strtoi64_limits() {
        assert_eq!(qemu_strtoi64("9223372036854775807", 0), Ok(i64::MAX));
        assert_eq!(
            qemu_strtoi64("9223372036854775808", 0),
            Err(StrtoError::Range)
        );
        assert_eq!(qemu_strtoi64("-9223372036854775808", 0), Ok(i64::MIN));
        assert_eq!(
            qemu_strtoi64("-9223372036854775809", 0),
            Err(StrtoError::Range)
        );
        assert_eq!(
            qemu_strtoi64("0xffffffffffffffff", 0),
            Err(StrtoError::Range)
        );
        assert_eq!(
            qemu_strtoi64("99999999999999999999x", 0),
            Err(StrtoError::Invalid)
        );
    }

    #[test]
    fn strtou64_wraps_negative() {
        assert_eq!(qemu_strtou64("-1", 0), Ok(u64::MAX));
        assert_eq!(qemu_strtou64("-18446744073709551615", 0), Ok(1));
        assert_eq!(
            qemu_strtou64("-18446744073709551616", 0),
            Err(StrtoError::Range)
        );
        assert_eq!(qemu_strtou64("18446744073709551615", 0), Ok(u64::MAX));
        assert_eq!(
            qemu_strtou64("18446744073709551616", 0),
            Err(StrtoError::Range)
        );
        assert_eq!(qemu_strtou64(" 0x5", 0), Ok(5));
    }

    #[test]
    fn strtosz_accepts() {
        let ok = |s: &str| qemu_strtosz(s).ok();
        assert_eq!(ok("1"), Some(1));
        assert_eq!(ok("1k"), Some(1024));
        assert_eq!(ok("1K"), Some(1024));
        assert_eq!(ok("1b"), Some(1));
        assert_eq!(ok("1.5G"), Some(1_610_612_736));
        assert_eq!(ok("1e"), Some(1 << 60));
        assert_eq!(ok(".5k"), Some(512));
        assert_eq!(ok("1.k"), Some(1024));
        assert_eq!(ok("1."), Some(1));
        assert_eq!(ok("1.0"), Some(1));
        assert_eq!(ok("1.0B"), Some(1));
        assert_eq!(ok("0x200"), Some(512));
        assert_eq!(ok("0x0"), Some(0));
        assert_eq!(ok(" 512"), Some(512));
        assert_eq!(ok("+512"), Some(512));
        assert_eq!(ok("0.5000000001k"), Some(512));
        assert_eq!(ok("0.499999999999k"), Some(512));
        assert_eq!(ok("15.9999E"), Some(18_446_628_781_559_090_944));
        assert_eq!(ok("18446744073709551615"), Some(u64::MAX));
        assert_eq!(ok("0.00000000001k"), Some(0));
        assert_eq!(ok("05.k"), Some(5120));
    }

    #[test]
    fn strtosz_rejects() {
        use StrtoError::{Invalid, Range};
        let err = |s: &str| qemu_strtosz(s).err();
        assert_eq!(err("1.5"), Some(Invalid));
        assert_eq!(err("1.5B"), Some(Invalid));
        assert_eq!(err("1e3"), Some(Invalid));
        assert_eq!(err("1kB"), Some(Invalid));
        assert_eq!(err("0x10k"), Some(Invalid));
        assert_eq!(err("0x.8k"), Some(Invalid));
        assert_eq!(err("0x"), Some(Invalid));
        assert_eq!(err("00x1"), Some(Invalid));
        assert_eq!(err(""), Some(Invalid));
        assert_eq!(err("inf"), Some(Invalid));
        assert_eq!(err("nan"), Some(Invalid));
        assert_eq!(err("1 k"), Some(Invalid));
        assert_eq!(err("1.5e1k"), Some(Invalid));
        assert_eq!(err("-1"), Some(Range));
        assert_eq!(err("-.5"), Some(Range));
        assert_eq!(err("-1k"), Some(Invalid));
        assert_eq!(err("-.5k"), Some(Invalid));
        assert_eq!(err("16E"), Some(Range));
        assert_eq!(err("16Ex"), Some(Invalid));
        assert_eq!(err("18446744073709551616"), Some(Range));
        assert_eq!(err("99999999999999999999k"), Some(Invalid));
        assert_eq!(err("0x1ffffffffffffffff"), Some(Range));
        assert_eq!(
            err("18446744073709551615.99999999999999999999"),
            Some(Range)
        );
        assert_eq!(err("18446744073709551615.4"), Some(Invalid));
    }

    #[test]
    fn strtod_finite() {
        use StrtoError::{Invalid, Range};
        assert_eq!(qemu_strtod_finite("1.5"), Ok(1.5));
        assert_eq!(qemu_strtod_finite(" -2e3"), Ok(-2000.0));
        assert_eq!(qemu_strtod_finite("0x1p3"), Ok(8.0));
        assert_eq!(qemu_strtod_finite("inf"), Err(Invalid));
        assert_eq!(qemu_strtod_finite("nan"), Err(Invalid));
        assert_eq!(qemu_strtod_finite("1e999"), Err(Invalid));
        assert_eq!(qemu_strtod_finite("1e-400"), Err(Range));
        assert_eq!(qemu_strtod_finite("1e-310"), Err(Range));
        assert_eq!(qemu_strtod_finite("0x1p-1074"), Ok(f64::from_bits(1)));
        assert_eq!(qemu_strtod_finite("0e-999"), Ok(0.0));
        assert_eq!(qemu_strtod_finite("1.5 "), Err(Invalid));
        assert_eq!(qemu_strtod_finite(""), Err(Invalid));
        assert_eq!(qemu_strtod_finite("."), Err(Invalid));
    }
}
