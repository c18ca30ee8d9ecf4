//! Conversions of keyval leaves (strings) to schema types, with the messages of
//! QEMU 10.0.2's keyval input visitor (`qobject_input_visitor_new_keyval`).
//!
//! Two kinds of names appear in the messages:
//!
//! * `path`: the member's full dotted path from the option's root, with list
//!   elements as `.N`: `size`, `addr.path`, `node-affinity.0`,
//!   `file.server.path`.
//! * `name`: the member's own name (`Some("max-connections")`), or `None` for a
//!   list element, printed as `null`. Only the range checks of the sized integer
//!   types and enum errors use it (QEMU passes the bare name there).
//!
//! | schema type | accepted | message on error |
//! |---|---|---|
//! | `int`, `int64` | `strtoll` base 0: `-5`, `+5`, ` 5`, `0x1F`, `010` (octal) | `Parameter '<path>' expects integer` |
//! | `int8`…`int32` | as `int64`, then range | syntax: as above; range: `Parameter '<name>' expects int8_t` (`int16_t`, `int32_t`) |
//! | `uint64` | `strtoull` base 0; `-1` wraps to 2^64-1 | `Parameter '<path>' expects integer` |
//! | `uint8`…`uint32` | as `uint64`, then range (so `-1` is out of range) | range: `Parameter '<name>' expects uint8_t` (`uint16_t`, `uint32_t`) |
//! | `size` | [`crate::cutils::qemu_strtosz`]: `1.5G`, `0x200`, `1e` (= 1 EiB) | `Parameter '<path>' expects size` |
//! | `bool` | `on`, `yes`, `true`, `y` / `off`, `no`, `false`, `n` (case-sensitive) | `Parameter '<path>' expects 'on' or 'off'` |
//! | `number` | `strtod`, finite, no underflow | `Invalid parameter type for '<path>', expected: number` |
//! | `str` | anything | none |
//! | scalar given nested keys (`path.x=1`) | | `Parameters '<path>.*' are unexpected` |
//! | enum value not in the enum | | `Parameter '<name>' does not accept value '<value>'` |
//!
//! No member is ever checked for white space: `5 ` is not an integer, ` 5` is.

use serde_json::{Map, Value};

use crate::cutils::{qemu_strtod_finite, qemu_strtoi64, qemu_strtosz, qemu_strtou64};

/// A signed QAPI integer type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntKind {
    /// `int8`
    Int8,
    /// `int16`
    Int16,
    /// `int32`
    Int32,
    /// `int` or `int64` (no range check beyond 64 bits).
    Int64,
}

/// An unsigned QAPI integer type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UintKind {
    /// `uint8`
    Uint8,
    /// `uint16`
    Uint16,
    /// `uint32`
    Uint32,
    /// `uint64` (no range check beyond 64 bits).
    Uint64,
}

fn bare(name: Option<&str>) -> &str {
    name.unwrap_or("null")
}

/// Convert a keyval string to a signed integer of QAPI type `kind`.
///
/// Syntax is C's `strtoll` with base 0 on the whole string (leading white space
/// and sign allowed, `0x` hex, leading-`0` octal, no trailing characters).
///
/// Errors:
/// * not a number, or outside `i64`: `Parameter '<path>' expects integer`
/// * outside the range of `kind`: `Parameter '<name>' expects int8_t`
///   (`int16_t`, `int32_t`), with `name` `None` printed as `null`.
pub fn to_int(path: &str, name: Option<&str>, s: &str, kind: IntKind) -> Result<i64, String> {
    let v = qemu_strtoi64(s, 0).map_err(|_| format!("Parameter '{path}' expects integer"))?;
    let (min, max, ty) = match kind {
        IntKind::Int8 => (i64::from(i8::MIN), i64::from(i8::MAX), "int8_t"),
        IntKind::Int16 => (i64::from(i16::MIN), i64::from(i16::MAX), "int16_t"),
        IntKind::Int32 => (i64::from(i32::MIN), i64::from(i32::MAX), "int32_t"),
        IntKind::Int64 => return Ok(v),
    };
    if v < min || v > max {
        return Err(format!("Parameter '{}' expects {ty}", bare(name)));
    }
    Ok(v)
}

/// Convert a keyval string to an unsigned integer of QAPI type `kind`.
///
/// Syntax is C's `strtoull` with base 0 on the whole string; a leading `-`
/// negates modulo 2^64 (`-1` is `u64::MAX`, `-18446744073709551615` is 1).
///
/// Errors:
/// * not a number, or magnitude above `u64::MAX`:
///   `Parameter '<path>' expects integer`
/// * above the maximum of `kind` (including wrapped negatives):
///   `Parameter '<name>' expects uint8_t` (`uint16_t`, `uint32_t`), with `name`
///   `None` printed as `null`.
pub fn to_uint(path: &str, name: Option<&str>, s: &str, kind: UintKind) -> Result<u64, String> {
    let v = qemu_strtou64(s, 0).map_err(|_| format!("Parameter '{path}' expects integer"))?;
    let (max, ty) = match kind {
        UintKind::Uint8 => (u64::from(u8::MAX), "uint8_t"),
        UintKind::Uint16 => (u64::from(u16::MAX), "uint16_t"),
        UintKind::Uint32 => (u64::from(u32::MAX), "uint32_t"),
        UintKind::Uint64 => return Ok(v),
    };
    if v > max {
        return Err(format!("Parameter '{}' expects {ty}", bare(name)));
    }
    Ok(v)
}

/// Convert a keyval string to a QAPI `size` (see
/// [`crate::cutils::qemu_strtosz`] for the accepted syntax).
///
/// Error: `Parameter '<path>' expects size`.
pub fn to_size(path: &str, s: &str) -> Result<u64, String> {
    qemu_strtosz(s).map_err(|_| format!("Parameter '{path}' expects size"))
}

/// Convert a keyval string to a QAPI `bool`: `on`, `yes`, `true`, `y` are true;
/// `off`, `no`, `false`, `n` are false; nothing else (case matters, no white
/// space).
///
/// Error: `Parameter '<path>' expects 'on' or 'off'`.
pub fn to_bool(path: &str, s: &str) -> Result<bool, String> {
    parse_bool(s).ok_or_else(|| format!("Parameter '{path}' expects 'on' or 'off'"))
}

/// QEMU's `qapi_bool_parse` spellings.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "on" | "yes" | "true" | "y" => Some(true),
        "off" | "no" | "false" | "n" => Some(false),
        _ => None,
    }
}

/// Convert a keyval string to a QAPI `number` (double) with C's `strtod` on the
/// whole string: decimal or hex floats, leading white space; `inf`, `nan`,
/// overflow and underflow (a non-zero value rounding to zero or to an inexact
/// subnormal) are rejected.
///
/// Error: `Invalid parameter type for '<path>', expected: number`.
pub fn to_number(path: &str, s: &str) -> Result<f64, String> {
    qemu_strtod_finite(s)
        .map_err(|_| format!("Invalid parameter type for '{path}', expected: number"))
}

/// The string of a leaf visited as a scalar (any scalar type, including `str`
/// and enums).
///
/// Errors:
/// * the keyval tree has an object or array there (the user wrote
///   `path.x=...`): `Parameters '<path>.*' are unexpected`
/// * anything else that is not a string (cannot come from keyval):
///   `Internal error: parameter <path> invalid`
pub fn scalar_str<'a>(path: &str, v: &'a Value) -> Result<&'a str, String> {
    match v {
        Value::String(s) => Ok(s),
        Value::Object(_) | Value::Array(_) => Err(format!("Parameters '{path}.*' are unexpected")),
        _ => Err(format!("Internal error: parameter {path} invalid")),
    }
}

/// The map of a member of struct or union type.
///
/// Error: `Invalid parameter type for '<path>', expected: object`.
pub fn expect_object<'a>(path: &str, v: &'a Value) -> Result<&'a Map<String, Value>, String> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(wrong_type(path, "object")),
    }
}

/// The elements of a member of list type.
///
/// Error: `Invalid parameter type for '<path>', expected: array`.
pub fn expect_array<'a>(path: &str, v: &'a Value) -> Result<&'a [Value], String> {
    match v {
        Value::Array(a) => Ok(a),
        _ => Err(wrong_type(path, "array")),
    }
}

/// `Invalid parameter type for '<path>', expected: <what>`; `what` is `object`,
/// `array`, `number`, or an alternate's type name (e.g. `BlockdevRef` when a
/// list is given for an alternate of a struct and `str`).
pub fn wrong_type(path: &str, what: &str) -> String {
    format!("Invalid parameter type for '{path}', expected: {what}")
}

/// `Parameter '<path>' is missing`: a required member is absent.
pub fn missing(path: &str) -> String {
    format!("Parameter '{path}' is missing")
}

/// `Parameter '<path>' is unexpected`: a key the schema does not have. When a
/// struct has several, QEMU reports the first left in the visitor's GLib hash
/// table (GLib 2.74 `g_str_hash` order after the visited keys were removed);
/// that choice is not reproduced here.
pub fn unexpected(path: &str) -> String {
    format!("Parameter '{path}' is unexpected")
}

/// `Parameter '<name>' does not accept value '<value>'`: an enum value (or union
/// discriminator) that does not exist; `name` is the bare member name, `None`
/// for a list element (printed as `null`).
pub fn bad_enum(name: Option<&str>, value: &str) -> String {
    format!("Parameter '{}' does not accept value '{value}'", bare(name))
}

/// The path of member `member` of the node at `parent` (`""` for the root).
pub fn member_path(parent: &str, member: &str) -> String {
    if parent.is_empty() {
        member.to_string()
    } else {
        format!("{parent}.{member}")
    }
}

/// The path of element `index` of the list at `parent`.
pub fn element_path(parent: &str, index: usize) -> String {
    format!("{parent}.{index}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ints() {
        assert_eq!(to_int("a", Some("a"), "0x10", IntKind::Int64), Ok(16));
        assert_eq!(to_int("a", Some("a"), "010", IntKind::Int64), Ok(8));
        assert_eq!(to_int("a", Some("a"), "-1", IntKind::Int64), Ok(-1));
        assert_eq!(
            to_int("x.a", Some("a"), "08", IntKind::Int64),
            Err("Parameter 'x.a' expects integer".into())
        );
        assert_eq!(
            to_int("x.a", Some("a"), "9223372036854775808", IntKind::Int64),
            Err("Parameter 'x.a' expects integer".into())
        );
        assert_eq!(
            to_int("x.serial", Some("serial"), "2147483648", IntKind::Int32),
            Err("Parameter 'serial' expects int32_t".into())
        );
        assert_eq!(
            to_int("l.0", None, "-129", IntKind::Int8),
            Err("Parameter 'null' expects int8_t".into())
        );
        assert_eq!(to_int("a", Some("a"), "-32768", IntKind::Int16), Ok(-32768));
        assert_eq!(
            to_int("a", Some("a"), "32768", IntKind::Int16),
            Err("Parameter 'a' expects int16_t".into())
        );
    }

    #[test]
    fn uints() {
        let m = "max-connections";
        assert_eq!(
            to_uint(m, Some(m), "4294967295", UintKind::Uint32),
            Ok(4_294_967_295)
        );
        assert_eq!(
            to_uint(m, Some(m), "-1", UintKind::Uint32),
            Err("Parameter 'max-connections' expects uint32_t".into())
        );
        assert_eq!(
            to_uint(m, Some(m), "-18446744073709551615", UintKind::Uint32),
            Ok(1)
        );
        assert_eq!(
            to_uint(m, Some(m), "18446744073709551616", UintKind::Uint32),
            Err("Parameter 'max-connections' expects integer".into())
        );
        assert_eq!(to_uint(m, Some(m), "-1", UintKind::Uint64), Ok(u64::MAX));
        assert_eq!(
            to_uint("n.0", None, "70000", UintKind::Uint16),
            Err("Parameter 'null' expects uint16_t".into())
        );
        assert_eq!(
            to_uint("n.0", None, "256", UintKind::Uint8),
            Err("Parameter 'null' expects uint8_t".into())
        );
        assert_eq!(
            to_uint("n.0", None, "x", UintKind::Uint8),
            Err("Parameter 'n.0' expects integer".into())
        );
    }

    #[test]
    fn sizes_bools_numbers() {
        assert_eq!(to_size("size", "1.5k"), Ok(1536));
        assert_eq!(
            to_size("size", "1.5"),
            Err("Parameter 'size' expects size".into())
        );
        for t in ["on", "yes", "true", "y"] {
            assert_eq!(to_bool("b", t), Ok(true));
        }
        for f in ["off", "no", "false", "n"] {
            assert_eq!(to_bool("b", f), Ok(false));
        }
        for bad in ["ON", "Y", "1", "0", "", " on", "on "] {
            assert_eq!(
                to_bool("a.b", bad),
                Err("Parameter 'a.b' expects 'on' or 'off'".into())
            );
        }
        assert_eq!(to_number("n", "1.5e3"), Ok(1500.0));
        assert_eq!(
            to_number("x.n", "inf"),
            Err("Invalid parameter type for 'x.n', expected: number".into())
        );
    }

    #[test]
    fn structure() {
        let leaf = json!("v");
        let obj = json!({"x": "1"});
        let arr = json!(["1"]);
        assert_eq!(scalar_str("a", &leaf), Ok("v"));
        assert_eq!(
            scalar_str("a.b", &obj),
            Err("Parameters 'a.b.*' are unexpected".into())
        );
        assert_eq!(
            scalar_str("a.b", &arr),
            Err("Parameters 'a.b.*' are unexpected".into())
        );
        assert!(expect_object("a", &obj).is_ok());
        assert_eq!(
            expect_object("addr", &leaf).err(),
            Some("Invalid parameter type for 'addr', expected: object".into())
        );
        assert_eq!(
            expect_array("node-affinity", &obj).err(),
            Some("Invalid parameter type for 'node-affinity', expected: array".into())
        );
        assert_eq!(missing("addr.path"), "Parameter 'addr.path' is missing");
        assert_eq!(unexpected("addr.zzz"), "Parameter 'addr.zzz' is unexpected");
        assert_eq!(
            bad_enum(Some("type"), "bad"),
            "Parameter 'type' does not accept value 'bad'"
        );
        assert_eq!(
            bad_enum(None, "bad"),
            "Parameter 'null' does not accept value 'bad'"
        );
        assert_eq!(member_path("", "a"), "a");
        assert_eq!(member_path("a", "b"), "a.b");
        assert_eq!(element_path("a", 3), "a.3");
    }
}
