//! A `strtod` work-alike for the C locale, as glibc implements it: which prefix
//! of a string is a number, its correctly rounded value, and whether glibc would
//! set `errno` to `ERANGE`.
//!
//! Syntax: optional white space, optional sign, then `inf`/`infinity`, `nan` or
//! `nan(chars)` (case-insensitive), a hexadecimal float `0x1.8p3` (binary exponent
//! optional), or a decimal float `1.5e3` (at least one digit; the exponent is only
//! taken when digits follow the `e`).
//!
//! `ERANGE` is reported on overflow (the value becomes infinite) and on underflow:
//! a non-zero number whose rounded value is zero or subnormal and not exact.
//! (glibc detects tininess after rounding; inputs rounding up to exactly
//! `f64::MIN_POSITIVE` are treated as not tiny here.)

use crate::cutils::is_c_space;

/// The outcome of [`strtod`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Strtod {
    /// The converted value (0.0 when nothing was converted).
    pub value: f64,
    /// Index just past the number; 0 when nothing was converted.
    pub end: usize,
    /// glibc would set `errno = ERANGE`.
    pub erange: bool,
}

fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

fn starts_with_ci(s: &[u8], i: usize, word: &[u8]) -> bool {
    s.get(i..i + word.len())
        .is_some_and(|w| w.eq_ignore_ascii_case(word))
}

const NONE: Strtod = Strtod {
    value: 0.0,
    end: 0,
    erange: false,
};

/// Convert the longest number at the start of `s`, like C's `strtod`.
pub(crate) fn strtod(s: &[u8]) -> Strtod {
    let mut i = 0;
    while is_c_space(at(s, i)) {
        i += 1;
    }
    let negative = at(s, i) == b'-';
    if matches!(at(s, i), b'+' | b'-') {
        i += 1;
    }
    let sign = |v: f64| if negative { -v } else { v };
    if starts_with_ci(s, i, b"inf") {
        let end = if starts_with_ci(s, i, b"infinity") {
            i + 8
        } else {
            i + 3
        };
        return Strtod {
            value: sign(f64::INFINITY),
            end,
            erange: false,
        };
    }
    if starts_with_ci(s, i, b"nan") {
        let mut end = i + 3;
        if at(s, end) == b'(' {
            let mut j = end + 1;
            while at(s, j).is_ascii_alphanumeric() || at(s, j) == b'_' {
                j += 1;
            }
            if at(s, j) == b')' {
                end = j + 1;
            }
        }
        return Strtod {
            value: sign(f64::NAN),
            end,
            erange: false,
        };
    }
    let hex = at(s, i) == b'0'
        && matches!(at(s, i + 1), b'x' | b'X')
        && (at(s, i + 2).is_ascii_hexdigit()
            || (at(s, i + 2) == b'.' && at(s, i + 3).is_ascii_hexdigit()));
    let r = if hex {
        hex_float(s, i + 2)
    } else {
        decimal_float(s, i)
    };
    match r {
        Some(d) => Strtod {
            value: sign(d.value),
            ..d
        },
        None => NONE,
    }
}

/// Parse decimal digits of an exponent, saturating far beyond any useful range.
fn exponent(s: &[u8], mut i: usize) -> Option<(i64, usize)> {
    let neg = at(s, i) == b'-';
    if matches!(at(s, i), b'+' | b'-') {
        i += 1;
    }
    if !at(s, i).is_ascii_digit() {
        return None;
    }
    let mut e: i64 = 0;
    while at(s, i).is_ascii_digit() {
        e = (e * 10 + i64::from(at(s, i) - b'0')).min(1_000_000_000);
        i += 1;
    }
    Some((if neg { -e } else { e }, i))
}

fn decimal_float(s: &[u8], start: usize) -> Option<Strtod> {
    let mut i = start;
    let mut digits: Vec<u8> = Vec::new();
    while at(s, i).is_ascii_digit() {
        digits.push(at(s, i));
        i += 1;
    }
    let mut frac_len: i64 = 0;
    if at(s, i) == b'.' {
        i += 1;
        while at(s, i).is_ascii_digit() {
            digits.push(at(s, i));
            frac_len += 1;
            i += 1;
        }
    }
    if digits.is_empty() {
        return None;
    }
    let mut exp10: i64 = 0;
    if matches!(at(s, i), b'e' | b'E') {
        if let Some((e, end)) = exponent(s, i + 1) {
            exp10 = e;
            i = end;
        }
    }
    // Let Rust's correctly rounded parser compute the value from the digits.
    let first = digits.iter().position(|d| *d != b'0');
    let Some(first) = first else {
        return Some(Strtod {
            value: 0.0,
            end: i,
            erange: false,
        });
    };
    let last = digits.iter().rposition(|d| *d != b'0').unwrap_or(first);
    let sig = &digits[first..=last];
    // value = sig * 10^e, with sig an integer without trailing zeros.
    let trailing = (digits.len() - 1 - last) as i64;
    let e = exp10.saturating_sub(frac_len).saturating_add(trailing);
    let text = format!("{}e{}", String::from_utf8_lossy(sig), e);
    let value: f64 = text.parse().unwrap_or(0.0);
    // Overflow, or underflow: zero or an inexact subnormal from non-zero digits.
    let erange = value.is_infinite()
        || value == 0.0
        || (value.abs() < f64::MIN_POSITIVE && !exact_subnormal(sig, e));
    Some(Strtod {
        value,
        end: i,
        erange,
    })
}

/// Whether `sig * 10^e` (a number in the subnormal range) is a multiple of
/// 2^-1074, i.e. exactly representable.
fn exact_subnormal(sig: &[u8], e: i64) -> bool {
    if e >= 0 {
        return true;
    }
    let k = e.unsigned_abs();
    // sig * 2^1074 / (2^k * 5^k) must be an integer.
    let twos = k.saturating_sub(1074);
    // A multiple of 5^k has at least about 0.699*k digits.
    if (sig.len() as f64) < (k as f64) * 0.698 {
        return false;
    }
    let mut n: Vec<u8> = sig.iter().map(|d| d - b'0').collect();
    divisible_repeatedly(&mut n, 5, k) && divisible_repeatedly(&mut n, 2, twos)
}

/// Divide the decimal digit vector `n` by `d` `times` times; false as soon as a
/// division leaves a remainder.
fn divisible_repeatedly(n: &mut Vec<u8>, d: u8, times: u64) -> bool {
    for _ in 0..times {
        let mut rem: u32 = 0;
        for digit in n.iter_mut() {
            let cur = rem * 10 + u32::from(*digit);
            *digit = (cur / u32::from(d)) as u8;
            rem = cur % u32::from(d);
        }
        if rem != 0 {
            return false;
        }
        let lead = n.iter().position(|x| *x != 0).unwrap_or(n.len());
        n.drain(..lead);
        if n.is_empty() {
            return false;
        }
    }
    true
}

fn hex_float(s: &[u8], start: usize) -> Option<Strtod> {
    let mut i = start;
    let mut mant: u64 = 0;
    let mut exp2: i64 = 0;
    let mut sticky = false;
    let mut any = false;
    let mut push = |d: u8, fractional: bool, mant: &mut u64, exp2: &mut i64| {
        let v = u64::from(char::from(d).to_digit(16).unwrap_or(0));
        if *mant >> 60 == 0 {
            *mant = *mant * 16 + v;
            if fractional {
                *exp2 -= 4;
            }
        } else {
            sticky |= v != 0;
            if !fractional {
                *exp2 += 4;
            }
        }
    };
    while at(s, i).is_ascii_hexdigit() {
        push(at(s, i), false, &mut mant, &mut exp2);
        any = true;
        i += 1;
    }
    if at(s, i) == b'.' {
        i += 1;
        while at(s, i).is_ascii_hexdigit() {
            push(at(s, i), true, &mut mant, &mut exp2);
            any = true;
            i += 1;
        }
    }
    if !any {
        return None;
    }
    if matches!(at(s, i), b'p' | b'P') {
        if let Some((e, end)) = exponent(s, i + 1) {
            exp2 = exp2.saturating_add(e);
            i = end;
        }
    }
    let (value, inexact, tiny, overflow) = compose(mant, sticky, exp2);
    Some(Strtod {
        value,
        end: i,
        erange: overflow || (tiny && inexact),
    })
}

/// Round `(mant + sticky) * 2^exp2` to a double, nearest-even. Returns the value,
/// whether it is inexact, whether it is tiny (zero or subnormal), and whether it
/// overflowed.
fn compose(mant: u64, sticky: bool, exp2: i64) -> (f64, bool, bool, bool) {
    if mant == 0 {
        return (0.0, sticky, true, false);
    }
    let msb = 63 - i64::from(mant.leading_zeros());
    let e = msb + exp2;
    if e > 1023 {
        return (f64::INFINITY, true, false, true);
    }
    let subnormal = e < -1022;
    let mut lsb = if subnormal { -1074 } else { e - 52 };
    let shift = lsb - exp2;
    let (mut kept, inexact) = if shift <= 0 {
        (u128::from(mant) << (-shift).min(64), sticky)
    } else if shift >= 66 {
        (0, true)
    } else {
        let m = u128::from(mant);
        let kept = m >> shift;
        let rem = m & ((1u128 << shift) - 1);
        let half = 1u128 << (shift - 1);
        let up = rem > half || (rem == half && (sticky || kept & 1 == 1));
        (kept + u128::from(up), rem != 0 || sticky)
    };
    if subnormal {
        let bits = u64::try_from(kept).unwrap_or(0);
        return (f64::from_bits(bits), inexact, true, false);
    }
    if kept == 1u128 << 53 {
        kept >>= 1;
        lsb += 1;
    }
    let biased = lsb + 52 + 1023;
    if biased > 2046 {
        return (f64::INFINITY, true, false, true);
    }
    let frac = u64::try_from(kept).unwrap_or(0) & ((1u64 << 52) - 1);
    let bits = (u64::try_from(biased).unwrap_or(0) << 52) | frac;
    (f64::from_bits(bits), inexact, false, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(s: &str) -> (f64, usize, bool) {
        let d = strtod(s.as_bytes());
        (d.value, d.end, d.erange)
    }

    #[test]
    fn decimal() {
        assert_eq!(conv("1.5"), (1.5, 3, false));
        assert_eq!(conv("  -1.5x"), (-1.5, 6, false));
        assert_eq!(conv("1."), (1.0, 2, false));
        assert_eq!(conv(".5"), (0.5, 2, false));
        assert_eq!(conv("1e"), (1.0, 1, false));
        assert_eq!(conv("1e+"), (1.0, 1, false));
        assert_eq!(conv("1e+2"), (100.0, 4, false));
        assert_eq!(conv("1.e2"), (100.0, 4, false));
        assert_eq!(conv("0x"), (0.0, 1, false));
        assert_eq!(conv("."), (0.0, 0, false));
        assert_eq!(conv("e5"), (0.0, 0, false));
        assert_eq!(conv("0.1").0, 0.1);
        assert!(!conv("1e308").2);
        assert_eq!(conv("1e309"), (f64::INFINITY, 5, true));
        assert_eq!(conv("1e-400"), (0.0, 6, true));
        assert!(conv("4e-320").2);
        assert_eq!(conv("0e-400"), (0.0, 6, false));
        assert_eq!(conv("1e99999999999999999999").0, f64::INFINITY);
    }

    #[test]
    fn exact_subnormals_do_not_set_erange() {
        // 2^-1074 written out exactly needs 751 significant digits.
        let mut n: Vec<u8> = vec![1];
        for _ in 0..1074 {
            // multiply by 5
            let mut carry = 0u32;
            for d in n.iter_mut().rev() {
                let v = u32::from(*d) * 5 + carry;
                *d = (v % 10) as u8;
                carry = v / 10;
            }
            while carry > 0 {
                n.insert(0, (carry % 10) as u8);
                carry /= 10;
            }
        }
        let digits: String = n.iter().map(|d| char::from(b'0' + d)).collect();
        let text = format!("{digits}e-1074");
        let d = strtod(text.as_bytes());
        assert_eq!(d.value, f64::from_bits(1));
        assert!(!d.erange);
        let inexact = format!("{digits}1e-1075");
        assert!(strtod(inexact.as_bytes()).erange);
    }

    #[test]
    fn special() {
        assert_eq!(conv("inf").1, 3);
        assert_eq!(conv("-Infinity").0, f64::NEG_INFINITY);
        assert_eq!(conv("-Infinity").1, 9);
        assert_eq!(conv("infinit").1, 3);
        assert!(conv("nan").0.is_nan());
        assert_eq!(conv("nan(abc_1)x").1, 10);
        assert_eq!(conv("nan(abc").1, 3);
    }

    #[test]
    fn hexadecimal() {
        assert_eq!(conv("0x1p3"), (8.0, 5, false));
        assert_eq!(conv("0x1.8"), (1.5, 5, false));
        assert_eq!(conv("0x.8p1"), (1.0, 6, false));
        assert_eq!(conv("0x1p"), (1.0, 3, false));
        assert_eq!(conv("0X10"), (16.0, 4, false));
        assert_eq!(conv("0x1p-1074"), (f64::from_bits(1), 9, false));
        assert_eq!(conv("0x1p-1075"), (0.0, 9, true));
        assert_eq!(conv("0x1.8p-1074"), (f64::from_bits(2), 11, true));
        assert_eq!(conv("0x1p1024"), (f64::INFINITY, 8, true));
        assert_eq!(conv("0x1.fffffffffffff8p1023").0, f64::INFINITY);
        assert_eq!(conv("0x1.fffffffffffff7p1023").0, f64::MAX);
        assert_eq!(conv("0x123456789abcdef0123").0, 5.373_003_642_731_685e21);
    }
}
