//! QEMU's JSON output format, byte for byte.

use std::fmt::Write as _;

use serde_json::{Map, Number, Value};

use super::utf8::is_valid_codepoint;

/// Keys of `m` in the order QEMU iterates a QDict holding the same
/// members inserted in the map's order (see [`crate::qdict`]).
///
/// ```
/// let m = serde_json::json!({"execute": "x", "id": 1, "arguments": {}});
/// let order = qapi::json::qdict_order(m.as_object().unwrap());
/// assert_eq!(order, ["execute", "arguments", "id"]);
/// ```
pub fn qdict_order(m: &Map<String, Value>) -> Vec<&str> {
    crate::qdict::order(m)
}

/// Serialize `v` exactly as QEMU's QMP monitor does.
///
/// - Object members in [`qdict_order`]; `", "` between items and `": "`
///   after keys; empty containers as `{}` and `[]`.
/// - Strings: `"` and `\` escaped, `\b \f \n \r \t` as such, any other
///   character below U+0020 or from U+007F up as `\uXXXX` with upper-case
///   hex (a surrogate pair above U+FFFF); `/` is not escaped.  Characters
///   QEMU refuses to store (noncharacters such as U+FFFF) come out as
///   `\uFFFD`, as QEMU does for undecodable bytes.
/// - Integers in decimal; other numbers as C's `%.17g` (`100`, `-0`,
///   `1e+20`, `9.9999999999999995e-08`).
/// - `pretty`: every member or element on its own line, indented by four
///   spaces per level; the closing bracket on its own line at the
///   enclosing level, also for empty containers (`{\n}` at top level,
///   `{\n    }` one level down).  Lines are separated by `\n`; the QMP
///   monitor turns every `\n` it sends into `\r\n`.
///
/// There is no trailing newline.
pub fn to_json(v: &Value, pretty: bool) -> String {
    let mut w = Writer {
        out: String::new(),
        pretty,
    };
    w.value(v, 0);
    w.out
}

struct Writer {
    out: String,
    pretty: bool,
}

impl Writer {
    fn newline(&mut self, depth: usize) {
        if self.pretty {
            self.out.push('\n');
            self.out.extend(std::iter::repeat_n(' ', depth * 4));
        }
    }

    /// Separator before the `index`-th item of a container at `depth`.
    fn separator(&mut self, index: usize, depth: usize) {
        if index > 0 {
            self.out.push(',');
            if !self.pretty {
                self.out.push(' ');
            }
        }
        self.newline(depth + 1);
    }

    fn value(&mut self, v: &Value, depth: usize) {
        match v {
            Value::Null => self.out.push_str("null"),
            Value::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => self.out.push_str(&format_number(n)),
            Value::String(s) => quote_into(&mut self.out, s),
            Value::Array(items) => {
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    self.separator(i, depth);
                    self.value(item, depth + 1);
                }
                self.newline(depth);
                self.out.push(']');
            }
            Value::Object(map) => {
                self.out.push('{');
                for (i, key) in qdict_order(map).into_iter().enumerate() {
                    self.separator(i, depth);
                    quote_into(&mut self.out, key);
                    self.out.push_str(": ");
                    if let Some(item) = map.get(key) {
                        self.value(item, depth + 1);
                    }
                }
                self.newline(depth);
                self.out.push('}');
            }
        }
    }
}

fn quote_into(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(ch),
            _ => {
                let mut cp = u32::from(ch);
                if !is_valid_codepoint(cp) {
                    cp = 0xFFFD;
                }
                if cp > 0xFFFF {
                    let v = cp - 0x10000;
                    let _ = write!(
                        out,
                        "\\u{:04X}\\u{:04X}",
                        0xD800 + (v >> 10),
                        0xDC00 + (v & 0x3FF)
                    );
                } else {
                    let _ = write!(out, "\\u{cp:04X}");
                }
            }
        }
    }
    out.push('"');
}

fn format_number(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        format_double(n.as_f64().unwrap_or(0.0))
    }
}

/// C's `printf("%.17g", x)` in the C locale.
pub(crate) fn format_double(x: f64) -> String {
    const PRECISION: i32 = 17;
    if x.is_nan() {
        return if x.is_sign_negative() { "-nan" } else { "nan" }.to_string();
    }
    if x.is_infinite() {
        return if x < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Rust's exact formatting rounds correctly (ties to even), as glibc.
    let sci = format!("{:.*e}", (PRECISION - 1) as usize, x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::from(sign);
    if !(-4..PRECISION).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        let rest = rest.trim_end_matches('0');
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    } else if exp >= 0 {
        let (int, frac) = digits.split_at(exp as usize + 1);
        out.push_str(int);
        let frac = frac.trim_end_matches('0');
        if !frac.is_empty() {
            out.push('.');
            out.push_str(frac);
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(digits.trim_end_matches('0'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::utf8::to_modified_utf8;
    use crate::qdict::{tdb_hash, QDICT_BUCKETS};
    use serde_json::json;

    #[test]
    fn hash_and_order() {
        // Reply members as QSD prints them.
        let m = json!({"return": {}, "id": 1});
        assert_eq!(qdict_order(m.as_object().unwrap()), ["return", "id"]);
        let m = json!({"error": {"class": "c", "desc": "d"}});
        assert_eq!(
            to_json(&m, false),
            r#"{"error": {"class": "c", "desc": "d"}}"#
        );
        let m = json!({"major": 10, "minor": 0, "micro": 2});
        assert_eq!(
            qdict_order(m.as_object().unwrap()),
            ["micro", "minor", "major"]
        );
        assert_eq!(tdb_hash(b""), 12345);
    }

    #[test]
    fn same_bucket_later_insertion_first() {
        // Only bytes whose shift is below 9 reach the bucket number, so
        // "k10" and "k11" (third byte shifted by 10) share a bucket.
        let bucket = |k: &str| tdb_hash(k.as_bytes()) % QDICT_BUCKETS;
        let (first, second) = ("k10".to_string(), "k11".to_string());
        assert_eq!(bucket(&first), bucket(&second));
        let mut m = Map::new();
        m.insert(first.clone(), json!(1));
        m.insert(second.clone(), json!(2));
        assert_eq!(qdict_order(&m), [second.as_str(), first.as_str()]);
    }

    #[test]
    fn nul_in_keys_hashes_as_c0_80() {
        assert_eq!(
            tdb_hash(&to_modified_utf8("a\0")),
            tdb_hash(&[b'a', 0xC0, 0x80])
        );
    }

    #[test]
    fn strings() {
        let s = json!("\0\u{1}\u{1f}\u{7f}\u{80}é€😀/\"\\\u{8}\u{c}\n\r\t\u{ffff}\u{fdd0}");
        assert_eq!(
            to_json(&s, false),
            r#""\u0000\u0001\u001F\u007F\u0080\u00E9\u20AC\uD83D\uDE00/\"\\\b\f\n\r\t\uFFFD\uFFFD""#
        );
    }

    #[test]
    fn numbers() {
        let cases: &[(Value, &str)] = &[
            (json!(0), "0"),
            (json!(-5), "-5"),
            (json!(u64::MAX), "18446744073709551615"),
            (json!(i64::MIN), "-9223372036854775808"),
            (json!(100.0), "100"),
            (json!(-0.0), "-0"),
            (json!(1.5), "1.5"),
            (json!(0.1), "0.10000000000000001"),
            (json!(1e-7), "9.9999999999999995e-08"),
            (json!(1e-4), "0.0001"),
            (json!(1e20), "1e+20"),
            (json!(1e16), "10000000000000000"),
            (json!(1e17), "1e+17"),
            (json!(123456789012345678.0), "1.2345678901234568e+17"),
            (json!(18446744073709551616.0), "1.8446744073709552e+19"),
            (json!(5e-324), "4.9406564584124654e-324"),
            (json!(f64::MAX), "1.7976931348623157e+308"),
            (json!(1.0 + 2f64.powi(-17)), "1.0000076293945312"),
        ];
        for (v, want) in cases {
            assert_eq!(to_json(v, false), *want, "{v:?}");
        }
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(f64::NEG_INFINITY), "-inf");
        assert_eq!(format_double(f64::NAN), "nan");
    }

    #[test]
    fn compact_layout() {
        assert_eq!(to_json(&json!({}), false), "{}");
        assert_eq!(to_json(&json!([]), false), "[]");
        assert_eq!(
            to_json(&json!([1, [true, null], {}]), false),
            "[1, [true, null], {}]"
        );
        assert_eq!(to_json(&json!("x"), false), "\"x\"");
    }

    #[test]
    fn pretty_layout() {
        assert_eq!(to_json(&json!({}), true), "{\n}");
        assert_eq!(to_json(&json!([]), true), "[\n]");
        assert_eq!(to_json(&json!(1), true), "1");
        let v = json!({"a": {}, "b": [], "c": [1, {"x": []}], "": null});
        assert_eq!(
            to_json(&v, true),
            "{\n    \"\": null,\n    \"a\": {\n    },\n    \"b\": [\n    ],\n    \"c\": [\n        1,\n        {\n            \"x\": [\n            ]\n        }\n    ]\n}"
        );
    }
}
