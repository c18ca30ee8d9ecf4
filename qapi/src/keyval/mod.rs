//! QEMU's "keyval" command-line syntax (`key=value,a.b=value`), as parsed by
//! qemu-storage-daemon 10.0.2 for `--blockdev`, `--export`, `--monitor`,
//! `--nbd-server` and `--object`.
//!
//! [`parse`] turns the text into a tree of JSON strings, objects and arrays
//! exactly like QEMU's `keyval_parse()`; [`scalar`] converts the leaves to the
//! types the schema asks for with the keyval input visitor's messages.
//!
//! Everything below was checked against the installed `qemu-storage-daemon`
//! (`qapi/tests/keyval_differential.rs` keeps checking it). QSD prints an error
//! as `qemu-storage-daemon: --OPTION VALUE: MESSAGE` on stderr and exits with
//! status 1; `qsd` prints `qsd: --OPTION VALUE: MESSAGE`. The MESSAGE texts are
//! the `Display` of [`KeyvalError`] and the `Err` strings of [`scalar`].
//!
//! # Which option uses what
//!
//! | option | value starting with `{` | implied key | `help` / `?` |
//! |---|---|---|---|
//! | `--blockdev` | JSON | `driver` | error `Help is not available for this option` |
//! | `--export` | JSON | `type` | error, as above |
//! | `--monitor` | JSON | `chardev` | error, as above |
//! | `--nbd-server` | JSON | none | error, as above |
//! | `--object` | JSON | `qom-type` | allowed: prints object help, exit 0 |
//! | `--chardev` | no JSON | `backend` | see [`crate::qemuopts`] |
//!
//! Options with an error for help use [`parse_rejecting_help`], `--object` uses
//! [`parse`]; [`QsdOption`] bundles this table. A value starting with `{` is
//! JSON and never reaches this parser (JSON syntax errors read like
//! `JSON parse error, premature EOI`; they are not handled here).
//!
//! QEMU works on bytes; these functions take `&str`, so a caller holding a
//! non-UTF-8 argument must decide how to pass it (all syntax characters are
//! ASCII, so a lossless byte-to-char mapping keeps every decision the same).
//!
//! # Syntax
//!
//! * Pairs are separated by `,`; a value extends to the next single `,`, and `,,`
//!   stands for one `,` in a value. A trailing `,` ends the last value (`a=1,` is
//!   `a=1`; `a=1,,` is `a="1,"`).
//! * A key is fragments joined by `.`. The first fragment must be a QAPI name
//!   (ASCII letter, then letters, digits, `-`, `_`; or a downstream name
//!   `__RFQDN_name` whose RFQDN part may contain `.`); later fragments may also
//!   be decimal digits (a list index). At most 127 bytes per fragment.
//! * Implied key: when the *first* pair has no `=` before its first `,` and is
//!   not empty, its text up to that `,` is the value of the implied key. Here
//!   `,,` is *not* an escape: `file,,x` is `driver=file` followed by an empty key.
//! * `help` or `?` as a whole pair without `=` (anywhere) asks for help; the
//!   implied key is still only for the first pair (`help,file` is an error
//!   about `file`).
//! * The same key given twice: the last value wins, the key keeps its first
//!   position. There is no "duplicate key" error.
//! * Numeric fragments make the parent a list once the whole string is parsed:
//!   indexes may come in any order but must be `0..n` without gaps; leading
//!   zeros are allowed (`a.00` is index 0, and `a.0` and `a.00` collide: the one
//!   QEMU's `QDict` visits last wins). Indexes above `i32::MAX` count as
//!   `i32::MAX`.
//! * Errors are reported in this order: syntax errors of each pair from left to
//!   right (the first one stops), then the help check, then list errors. List
//!   errors are found depth-first in `QDict` iteration order (see
//!   [`crate::qdict::iteration_order`]), the first one found is reported.
//!
//! # Messages (situation → exact text)
//!
//! | situation | example | message |
//! |---|---|---|
//! | key empty, bad character, bad fragment | `,` / `a..b=1` / `1=x` / `a.-1=1` / `é=1` | `Invalid parameter 'a..b'` (whole key up to `=` or `,`) |
//! | fragment ≥ 128 bytes, key is one fragment | `aaa…=1` | `Parameter 'aaa…' is too long` |
//! | fragment ≥ 128 bytes in a dotted key | `x.aaa…=1` | `Parameter fragment 'aaa…' is too long` |
//! | no `=` after a key (not first pair, or no implied key) | `driver=file,b` | `Expected '=' after parameter 'b'` |
//! | a key is both scalar and object | `a=1,a.b=2` / `a.b=1,a=2` | `Parameters 'a.*' used inconsistently` |
//! | a key has both index and name children | `a.0=x,a.b=y` | `Parameters 'a.*' used inconsistently` |
//! | list index gap | `a.1=x` | `Parameter 'a.0' missing` |
//! | help where not available | `help` / `file,?` | `Help is not available for this option` |
//!
//! Type-level messages (produced while the tree is converted, paths are
//! dotted with list indexes as `.N`; "bare name" is the member's own name, or
//! `null` for a list element):
//!
//! | situation | message |
//! |---|---|
//! | required member absent | `Parameter 'addr.path' is missing` (full path) |
//! | member not in the schema | `Parameter 'addr.zzz' is unexpected` (full path) |
//! | object/list member given a string | `Invalid parameter type for 'addr', expected: object` (or `array`) |
//! | alternate member given the wrong kind | `Invalid parameter type for 'file', expected: BlockdevRef` (type name) |
//! | scalar member given nested keys | `Parameters 'addr.path.*' are unexpected` |
//! | bad enum value | `Parameter 'type' does not accept value 'bad'` (bare name) |
//! | bad int/uint/size/bool/number | see [`scalar`] |

pub mod scalar;

use serde_json::{Map, Value};

/// The longest key fragment QEMU accepts, in bytes.
const MAX_FRAGMENT: usize = 127;

/// The result of a successful parse.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The tree: leaves are `Value::String`, inner nodes objects or arrays, in
    /// the order QEMU first inserted the keys.
    pub value: Map<String, Value>,
    /// `help` or `?` appeared as a pair of its own.
    pub help: bool,
}

/// A keyval syntax error; `Display` is QEMU's exact message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyvalError {
    /// A key with an empty or malformed fragment; holds the whole key.
    #[error("Invalid parameter '{0}'")]
    InvalidParameter(String),
    /// A single-fragment key longer than 127 bytes; holds the key.
    #[error("Parameter '{0}' is too long")]
    ParameterTooLong(String),
    /// A fragment of a dotted key longer than 127 bytes; holds the fragment.
    #[error("Parameter fragment '{0}' is too long")]
    FragmentTooLong(String),
    /// A key not followed by `=`; holds the key.
    #[error("Expected '=' after parameter '{0}'")]
    ExpectedEquals(String),
    /// Conflicting uses of a key; `prefix` is the key followed by `.`
    /// (e.g. `a.b.`).
    #[error("Parameters '{prefix}*' used inconsistently")]
    Inconsistent {
        /// The dotted key of the conflicting node, with a trailing `.`.
        prefix: String,
    },
    /// A gap in list indexes; holds the missing element's key (e.g. `a.0`).
    #[error("Parameter '{0}' missing")]
    MissingListElement(String),
    /// `help`/`?` given to an option that offers no help.
    #[error("Help is not available for this option")]
    HelpNotAvailable,
}

/// The keyval options of qemu-storage-daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QsdOption {
    /// `--blockdev` (implied key `driver`).
    Blockdev,
    /// `--export` (implied key `type`).
    Export,
    /// `--monitor` (implied key `chardev`).
    Monitor,
    /// `--nbd-server` (no implied key).
    NbdServer,
    /// `--object` (implied key `qom-type`, help allowed).
    Object,
}

impl QsdOption {
    /// The key of a first pair written without `key=`.
    pub fn implied_key(self) -> Option<&'static str> {
        match self {
            QsdOption::Blockdev => Some("driver"),
            QsdOption::Export => Some("type"),
            QsdOption::Monitor => Some("chardev"),
            QsdOption::NbdServer => None,
            QsdOption::Object => Some("qom-type"),
        }
    }

    /// Whether `help`/`?` is accepted (only `--object`).
    pub fn help_allowed(self) -> bool {
        self == QsdOption::Object
    }

    /// Parse a keyval (non-JSON) value of this option as QSD does.
    pub fn parse(self, params: &str) -> Result<Parsed, KeyvalError> {
        if self.help_allowed() {
            parse(params, self.implied_key())
        } else {
            parse_rejecting_help(params, self.implied_key())
                .map(|value| Parsed { value, help: false })
        }
    }
}

/// Parse `params` like QEMU's `keyval_parse()` with a help flag (as `--object`
/// does): `help`/`?` sets [`Parsed::help`] and the rest is still parsed and
/// checked.
pub fn parse(params: &str, implied_key: Option<&str>) -> Result<Parsed, KeyvalError> {
    parse_impl(params, implied_key, true)
}

/// Parse `params` like QEMU's `keyval_parse()` without a help flag (as
/// `--blockdev`, `--export`, `--monitor`, `--nbd-server` do): `help`/`?` is
/// [`KeyvalError::HelpNotAvailable`], reported after syntax errors but before
/// list errors.
pub fn parse_rejecting_help(
    params: &str,
    implied_key: Option<&str>,
) -> Result<Map<String, Value>, KeyvalError> {
    parse_impl(params, implied_key, false).map(|p| p.value)
}

fn parse_impl(
    params: &str,
    implied_key: Option<&str>,
    help_allowed: bool,
) -> Result<Parsed, KeyvalError> {
    let mut root = Map::new();
    let mut help = false;
    let mut pos = 0;
    let mut implied = implied_key;
    while pos < params.len() {
        pos = parse_pair(&mut root, params, pos, implied, &mut help)?;
        implied = None;
    }
    if help && !help_allowed {
        return Err(KeyvalError::HelpNotAvailable);
    }
    let mut path = String::new();
    // The root's first fragments are names, never indexes, so it stays a map.
    listify(&mut root, &mut path)?;
    Ok(Parsed { value: root, help })
}

fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// Length of the QAPI name at the start of `b` (QEMU's `parse_qapi_name` with
/// `complete = false`), or 0 when there is none.
fn qapi_name_len(b: &[u8]) -> usize {
    let mut p = 0;
    if at(b, 0) == b'_' {
        // Downstream extension prefix `__RFQDN_`.
        if at(b, 1) != b'_' {
            return 0;
        }
        p = 2;
        while at(b, p).is_ascii_alphanumeric() || matches!(at(b, p), b'-' | b'.') {
            p += 1;
        }
        if at(b, p) != b'_' {
            return 0;
        }
        p += 1;
    }
    if !at(b, p).is_ascii_alphabetic() {
        return 0;
    }
    p += 1;
    while at(b, p).is_ascii_alphanumeric() || matches!(at(b, p), b'-' | b'_') {
        p += 1;
    }
    p
}

/// Number of leading decimal digits of `b`.
fn digits_len(b: &[u8]) -> usize {
    b.iter().take_while(|c| c.is_ascii_digit()).count()
}

/// The list index a whole key stands for, capped at `i32::MAX`, if it is all
/// decimal digits.
fn key_to_index(key: &str) -> Option<u32> {
    let b = key.as_bytes();
    if b.is_empty() || digits_len(b) != b.len() {
        return None;
    }
    let mut v: u64 = 0;
    for d in b {
        v = (v * 10 + u64::from(d - b'0')).min(i32::MAX as u64);
    }
    u32::try_from(v).ok()
}

/// Length of a `help`/`?` word at the start of `s` (QEMU's
/// `starts_with_help_option`).
fn help_prefix_len(s: &str) -> usize {
    if s.starts_with('?') {
        1
    } else if s.starts_with("help") {
        4
    } else {
        0
    }
}

/// Parse one pair starting at byte `start` of `params`; returns where the next
/// pair starts.
fn parse_pair(
    root: &mut Map<String, Value>,
    params: &str,
    start: usize,
    implied_key: Option<&str>,
    help: &mut bool,
) -> Result<usize, KeyvalError> {
    let rest = &params[start..];
    let rb = rest.as_bytes();
    let len = rb
        .iter()
        .position(|c| *c == b'=' || *c == b',')
        .unwrap_or(rb.len());
    let mut key = &rest[..len];
    let mut implied_value = None;
    if len > 0 && at(rb, len) != b'=' {
        if help_prefix_len(rest) == len {
            *help = true;
            let next = if at(rb, len) == b',' { len + 1 } else { len };
            return Ok(start + next);
        }
        if let Some(ik) = implied_key {
            key = ik;
            implied_value = Some(&rest[..len]);
        }
    }

    // Walk the fragments, creating intermediate objects as we go. A fragment is
    // validated before the object for the previous one is put in place.
    let kb = key.as_bytes();
    let key_end = kb.len();
    let mut cur: &mut Map<String, Value> = root;
    let mut s = 0;
    let mut prev: &str = "";
    loop {
        let tail = &kb[s..];
        let flen = if s != 0 && at(tail, 0).is_ascii_digit() {
            digits_len(tail)
        } else {
            qapi_name_len(tail)
        };
        if flen == 0 || (s + flen < key_end && kb[s + flen] != b'.') {
            return Err(KeyvalError::InvalidParameter(key.to_string()));
        }
        if flen > MAX_FRAGMENT {
            let fragment = key[s..s + flen].to_string();
            return Err(if s != 0 || s + flen != key_end {
                KeyvalError::FragmentTooLong(fragment)
            } else {
                KeyvalError::ParameterTooLong(fragment)
            });
        }
        if s != 0 {
            let node = cur
                .entry(prev.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(child) = node else {
                return Err(KeyvalError::Inconsistent {
                    prefix: format!("{}.", &key[..s - 1]),
                });
            };
            cur = child;
        }
        prev = &key[s..s + flen];
        s += flen;
        if at(kb, s) != b'.' {
            break;
        }
        s += 1;
    }

    let (value, next) = match implied_value {
        Some(v) => {
            let next = if at(rb, len) == b',' { len + 1 } else { len };
            (v.to_string(), next)
        }
        None => {
            if at(rb, len) != b'=' {
                return Err(KeyvalError::ExpectedEquals(key.to_string()));
            }
            read_value(rest, len + 1)
        }
    };

    if matches!(cur.get(prev), Some(Value::Object(_))) {
        return Err(KeyvalError::Inconsistent {
            prefix: format!("{key}."),
        });
    }
    cur.insert(prev.to_string(), Value::String(value));
    Ok(start + next)
}

/// Read a value starting at byte `from` of `s`: up to a single `,` (consumed),
/// with `,,` standing for `,`. Returns the value and the index after it.
fn read_value(s: &str, from: usize) -> (String, usize) {
    let b = s.as_bytes();
    let mut value = String::new();
    let mut i = from;
    loop {
        let seg_len = b[i..]
            .iter()
            .position(|c| *c == b',')
            .unwrap_or(b.len() - i);
        value.push_str(&s[i..i + seg_len]);
        i += seg_len;
        if i >= b.len() {
            return (value, i);
        }
        // At a comma: `,,` is an escaped comma, a single one ends the value.
        if at(b, i + 1) == b',' {
            value.push(',');
            i += 2;
        } else {
            return (value, i + 1);
        }
    }
}

/// Turn objects whose keys are all list indexes into arrays, recursively, in
/// `QDict` iteration order. `prefix` is the dotted path of `map` with a trailing
/// `.` (empty for the root). Returns the array `map` becomes, if any.
fn listify(
    map: &mut Map<String, Value>,
    prefix: &mut String,
) -> Result<Option<Vec<Value>>, KeyvalError> {
    let order: Vec<String> = crate::qdict::iteration_order(map.keys().map(String::as_str))
        .into_iter()
        .map(str::to_string)
        .collect();
    let mut has_index = false;
    let mut has_member = false;
    for key in &order {
        if key_to_index(key).is_some() {
            has_index = true;
        } else {
            has_member = true;
        }
        if let Some(Value::Object(child)) = map.get_mut(key.as_str()) {
            let saved = prefix.len();
            prefix.push_str(key);
            prefix.push('.');
            let list = listify(child, prefix)?;
            prefix.truncate(saved);
            if let Some(list) = list {
                map.insert(key.clone(), Value::Array(list));
            }
        }
    }
    if has_index && has_member {
        return Err(KeyvalError::Inconsistent {
            prefix: prefix.clone(),
        });
    }
    if !has_index {
        return Ok(None);
    }
    let n = map.len();
    let mut slots: Vec<Option<Value>> = vec![None; n];
    let mut max_index: i64 = -1;
    for key in &order {
        let Some(index) = key_to_index(key) else {
            continue;
        };
        max_index = max_index.max(i64::from(index));
        if let Some(slot) = slots.get_mut(index as usize) {
            *slot = map.get_mut(key.as_str()).map(std::mem::take);
        }
    }
    let limit = (n as i64 + 1).min(max_index + 1);
    let mut list = Vec::with_capacity(n);
    for i in 0..limit {
        match slots.get_mut(i as usize).and_then(Option::take) {
            Some(v) => list.push(v),
            None => return Err(KeyvalError::MissingListElement(format!("{prefix}{i}"))),
        }
    }
    Ok(Some(list))
}

#[cfg(test)]
mod tests;
