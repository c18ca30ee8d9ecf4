//! Input conversion: from a JSON tree (QMP arguments, JSON command-line
//! options) or a keyval tree (command-line `a=b,c.d=e`) to the generated
//! types, with QEMU's exact error texts.
//!
//! The generated code calls these functions member by member, in schema
//! order, so the first error reported is the one QEMU reports. Rules
//! (checked against qemu-storage-daemon 10.0.2):
//!
//! | situation | message |
//! |---|---|
//! | mandatory member absent | `Parameter 'PATH' is missing` |
//! | member not in the schema | `Parameter 'PATH' is unexpected` (the leftover QEMU's GHashTable of unvisited members yields first, see [`crate::ghash`]) |
//! | wrong JSON type | `Invalid parameter type for 'PATH', expected: T` with T one of string, integer, number, boolean, null, object, array, or an alternate's name |
//! | integer not representable as int64 (int types) | wrong JSON type, `expected: integer` |
//! | number that is neither uint64 nor int64 (uint types, size) | `Parameter 'PATH' expects uint64` |
//! | int8..int32, uint8..uint32 out of range | `Parameter 'NAME' expects int8_t` (etc.) |
//! | unknown enum value | `Parameter 'NAME' does not accept value 'V'` |
//!
//! PATH is the full member path (`options[0].cache.direct`), NAME the member's
//! own name (`null` for list elements). Negative integers are accepted for
//! unsigned types and wrap, as QEMU does.

use serde_json::{Map, Value};

use crate::keyval::scalar as kv;
use crate::qdict::order as qdict_order;

/// An input conversion error; its text is what QMP reports as `desc`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct VisitError(pub String);

pub type Result<T> = std::result::Result<T, VisitError>;

/// Which input visitor semantics apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// QMP / JSON: scalars have JSON types.
    Json,
    /// Command-line keyval: every scalar is a string converted by the schema
    /// type.
    Keyval,
}

#[derive(Debug, Clone, Copy)]
enum Seg<'a> {
    Root,
    Member(&'a str),
    Index(usize),
}

/// The position of a value in the input, for error messages.
#[derive(Debug, Clone, Copy)]
pub struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    seg: Seg<'a>,
    mode: Mode,
}

impl<'a> Path<'a> {
    /// The top level (the arguments object itself).
    pub fn root(mode: Mode) -> Path<'static> {
        Path {
            parent: None,
            seg: Seg::Root,
            mode,
        }
    }

    /// The member `name` of the object at this path.
    pub fn member<'b>(&'b self, name: &'b str) -> Path<'b> {
        Path {
            parent: Some(self),
            seg: Seg::Member(name),
            mode: self.mode,
        }
    }

    /// Element `i` of the list at this path.
    pub fn index(&'a self, i: usize) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Seg::Index(i),
            mode: self.mode,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The full dotted path, as QEMU's `full_name()` renders it.
    pub fn full(&self) -> String {
        let mut segs = Vec::new();
        let mut cur = Some(self);
        while let Some(p) = cur {
            segs.push(p.seg);
            cur = p.parent;
        }
        let mut out = String::new();
        for s in segs.iter().rev() {
            match s {
                Seg::Root => {}
                Seg::Member(n) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(n);
                }
                Seg::Index(i) => match self.mode {
                    Mode::Json => out.push_str(&format!("[{i}]")),
                    Mode::Keyval => out.push_str(&format!(".{i}")),
                },
            }
        }
        if out.is_empty() {
            "null".to_string()
        } else {
            out
        }
    }

    /// The member's own name, or `null` for list elements and the root.
    pub fn name(&self) -> &str {
        match self.seg {
            Seg::Member(n) => n,
            _ => "null",
        }
    }
}

/// `Invalid parameter type for 'PATH', expected: WHAT`.
pub fn invalid_type(p: &Path, what: &str) -> VisitError {
    VisitError(format!(
        "Invalid parameter type for '{}', expected: {what}",
        p.full()
    ))
}

/// `Parameter 'PATH' is missing`.
pub fn missing(p: &Path) -> VisitError {
    VisitError(format!("Parameter '{}' is missing", p.full()))
}

/// The members of one object being visited; tracks which keys were used so
/// that leftovers can be reported.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    used: Vec<&'a str>,
    path: &'a Path<'a>,
}

impl<'a> Fields<'a> {
    /// Starts visiting the object `v` found at `path`.
    pub fn start(v: &'a Value, path: &'a Path<'a>) -> Result<Fields<'a>> {
        match v {
            Value::Object(map) => Ok(Fields {
                map,
                used: Vec::with_capacity(map.len()),
                path,
            }),
            _ => Err(invalid_type(path, "object")),
        }
    }

    fn take(&mut self, name: &str) -> Option<&'a Value> {
        let (k, v) = self.map.get_key_value(name)?;
        self.used.push(k.as_str());
        Some(v)
    }

    /// A mandatory member.
    pub fn req<T>(&mut self, name: &str, f: impl FnOnce(&Value, &Path) -> Result<T>) -> Result<T> {
        let child = self.path.member(name);
        match self.take(name) {
            Some(v) => f(v, &child),
            None => Err(missing(&child)),
        }
    }

    /// An optional member.
    pub fn opt<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&Value, &Path) -> Result<T>,
    ) -> Result<Option<T>> {
        let child = self.path.member(name);
        match self.take(name) {
            Some(v) => f(v, &child).map(Some),
            None => Ok(None),
        }
    }

    /// Whether member `name` is present (without consuming it).
    pub fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// Ends the visit: any member not consumed is unexpected. The first one
    /// in QEMU's dictionary order is reported.
    pub fn finish(self) -> Result<()> {
        if self.used.len() == self.map.len() {
            return Ok(());
        }
        // QEMU tracks unvisited members in a GHashTable filled in QDict
        // order and reports whichever leftover that table yields first.
        let mut table = crate::ghash::GHashTable::new();
        for key in qdict_order(self.map) {
            table.insert(key);
        }
        for key in &self.used {
            table.remove(key);
        }
        let first = table.iter().next();
        match first {
            Some(key) => {
                let child = self.path.member(key);
                Err(VisitError(format!(
                    "Parameter '{}' is unexpected",
                    child.full()
                )))
            }
            None => Ok(()),
        }
    }
}

/// Types that can be read from input.
pub trait Visit: Sized {
    /// Reads a value of this type found at `p`.
    fn visit(v: &Value, p: &Path) -> Result<Self>;
}

/// Object types whose members can be read into an open [`Fields`] (used for
/// bases and union branches, which share their parent's object).
pub trait VisitMembers: Sized {
    fn visit_members(f: &mut Fields) -> Result<Self>;
}

/// Reads an object type: members, then the check for unexpected members.
pub fn object<T: VisitMembers>(v: &Value, p: &Path) -> Result<T> {
    let mut f = Fields::start(v, p)?;
    let r = T::visit_members(&mut f)?;
    f.finish()?;
    Ok(r)
}

/// Reads a list, element by element.
pub fn list<T>(v: &Value, p: &Path, f: impl Fn(&Value, &Path) -> Result<T>) -> Result<Vec<T>> {
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| f(item, &p.index(i)))
            .collect(),
        _ => Err(invalid_type(p, "array")),
    }
}

/// The string of a keyval leaf; nested keys under a scalar are reported as
/// QEMU does (`Parameters 'PATH.*' are unexpected`).
fn keyval_str<'v>(v: &'v Value, p: &Path) -> Result<&'v str> {
    kv::scalar_str(&p.full(), v).map_err(VisitError)
}

/// A JSON string, or any keyval scalar.
pub fn string(v: &Value, p: &Path) -> Result<String> {
    match (v, p.mode) {
        (Value::String(s), _) => Ok(s.clone()),
        (_, Mode::Keyval) => keyval_str(v, p).map(String::from),
        _ => Err(invalid_type(p, "string")),
    }
}

/// `bool`.
pub fn boolean(v: &Value, p: &Path) -> Result<bool> {
    match (v, p.mode) {
        (Value::Bool(b), Mode::Json) => Ok(*b),
        (_, Mode::Keyval) => kv::to_bool(&p.full(), keyval_str(v, p)?).map_err(VisitError),
        _ => Err(invalid_type(p, "boolean")),
    }
}

fn keyval_name<'p>(p: &'p Path) -> Option<&'p str> {
    match p.seg {
        Seg::Member(n) => Some(n),
        _ => None,
    }
}

fn int_kind(v: &Value, p: &Path, kind: kv::IntKind, cname: &str) -> Result<i64> {
    match (v, p.mode) {
        (Value::Number(n), Mode::Json) => {
            let wide = n.as_i64().ok_or_else(|| invalid_type(p, "integer"))?;
            let ok = match kind {
                kv::IntKind::Int8 => i8::try_from(wide).is_ok(),
                kv::IntKind::Int16 => i16::try_from(wide).is_ok(),
                kv::IntKind::Int32 => i32::try_from(wide).is_ok(),
                kv::IntKind::Int64 => true,
            };
            if ok {
                Ok(wide)
            } else {
                Err(range_error(p, cname))
            }
        }
        (_, Mode::Keyval) => {
            kv::to_int(&p.full(), keyval_name(p), keyval_str(v, p)?, kind).map_err(VisitError)
        }
        _ => Err(invalid_type(p, "integer")),
    }
}

fn uint_kind(v: &Value, p: &Path, kind: kv::UintKind, cname: &str) -> Result<u64> {
    match (v, p.mode) {
        (Value::Number(n), Mode::Json) => {
            let wide = n
                .as_u64()
                .or_else(|| n.as_i64().map(|i| i as u64))
                .ok_or_else(|| VisitError(format!("Parameter '{}' expects uint64", p.full())))?;
            let ok = match kind {
                kv::UintKind::Uint8 => u8::try_from(wide).is_ok(),
                kv::UintKind::Uint16 => u16::try_from(wide).is_ok(),
                kv::UintKind::Uint32 => u32::try_from(wide).is_ok(),
                kv::UintKind::Uint64 => true,
            };
            if ok {
                Ok(wide)
            } else {
                Err(range_error(p, cname))
            }
        }
        (_, Mode::Keyval) => {
            kv::to_uint(&p.full(), keyval_name(p), keyval_str(v, p)?, kind).map_err(VisitError)
        }
        _ => Err(invalid_type(p, "integer")),
    }
}

/// `int`, `int64`.
pub fn int64(v: &Value, p: &Path) -> Result<i64> {
    int_kind(v, p, kv::IntKind::Int64, "int64_t")
}

/// `uint64`.
pub fn uint64(v: &Value, p: &Path) -> Result<u64> {
    uint_kind(v, p, kv::UintKind::Uint64, "uint64_t")
}

/// `size`.
pub fn size(v: &Value, p: &Path) -> Result<u64> {
    match p.mode {
        Mode::Keyval => kv::to_size(&p.full(), keyval_str(v, p)?).map_err(VisitError),
        Mode::Json => uint64(v, p),
    }
}

fn range_error(p: &Path, ty: &str) -> VisitError {
    VisitError(format!("Parameter '{}' expects {ty}", p.name()))
}

/// `int8`.
pub fn int8(v: &Value, p: &Path) -> Result<i8> {
    int_kind(v, p, kv::IntKind::Int8, "int8_t").map(|x| x as i8)
}

/// `int16`.
pub fn int16(v: &Value, p: &Path) -> Result<i16> {
    int_kind(v, p, kv::IntKind::Int16, "int16_t").map(|x| x as i16)
}

/// `int32`.
pub fn int32(v: &Value, p: &Path) -> Result<i32> {
    int_kind(v, p, kv::IntKind::Int32, "int32_t").map(|x| x as i32)
}

/// `uint8`.
pub fn uint8(v: &Value, p: &Path) -> Result<u8> {
    uint_kind(v, p, kv::UintKind::Uint8, "uint8_t").map(|x| x as u8)
}

/// `uint16`.
pub fn uint16(v: &Value, p: &Path) -> Result<u16> {
    uint_kind(v, p, kv::UintKind::Uint16, "uint16_t").map(|x| x as u16)
}

/// `uint32`.
pub fn uint32(v: &Value, p: &Path) -> Result<u32> {
    uint_kind(v, p, kv::UintKind::Uint32, "uint32_t").map(|x| x as u32)
}

/// `number` (a double; integers are accepted).
pub fn number(v: &Value, p: &Path) -> Result<f64> {
    match (v, p.mode) {
        (Value::Number(n), Mode::Json) => n.as_f64().ok_or_else(|| invalid_type(p, "number")),
        (_, Mode::Keyval) => kv::to_number(&p.full(), keyval_str(v, p)?).map_err(VisitError),
        _ => Err(invalid_type(p, "number")),
    }
}

/// `null`.
pub fn null(v: &Value, p: &Path) -> Result<crate::Null> {
    match v {
        Value::Null => Ok(crate::Null),
        _ => Err(invalid_type(p, "null")),
    }
}

/// `any`: accepted as is.
pub fn any(v: &Value, _p: &Path) -> Result<Value> {
    Ok(v.clone())
}

/// An enum value, given the enum's parser.
pub fn enumeration<T>(v: &Value, p: &Path, parse: fn(&str) -> Option<T>) -> Result<T> {
    let s = match (v, p.mode) {
        (Value::String(s), _) => s.as_str(),
        (_, Mode::Keyval) => keyval_str(v, p)?,
        _ => return Err(invalid_type(p, "string")),
    };
    parse(s).ok_or_else(|| {
        VisitError(format!(
            "Parameter '{}' does not accept value '{s}'",
            p.name()
        ))
    })
}

/// An alternate got a value of no branch's type. QEMU names the member
/// itself here, not its full path.
pub fn invalid_alternate(p: &Path, alternate: &str) -> VisitError {
    VisitError(format!(
        "Invalid parameter type for '{}', expected: {alternate}",
        p.name()
    ))
}

/// The JSON type class of a value, used to pick an alternate's branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonClass {
    String,
    Number,
    Boolean,
    Null,
    Object,
    Array,
}

/// The class of `v` for choosing an alternate branch. In keyval mode every
/// scalar is a string.
pub fn json_class(v: &Value) -> JsonClass {
    match v {
        Value::String(_) => JsonClass::String,
        Value::Number(_) => JsonClass::Number,
        Value::Bool(_) => JsonClass::Boolean,
        Value::Null => JsonClass::Null,
        Value::Object(_) => JsonClass::Object,
        Value::Array(_) => JsonClass::Array,
    }
}

/// Parses a whole QMP arguments object (or absent arguments) as type `T`.
pub fn from_value<T: Visit>(v: &Value, mode: Mode) -> Result<T> {
    T::visit(v, &Path::root(mode))
}

/// An empty object, for commands without arguments.
pub fn no_arguments(v: &Value, p: &Path) -> Result<()> {
    let f = Fields::start(v, p)?;
    f.finish()
}

impl<T: Visit> Visit for Vec<T> {
    fn visit(v: &Value, p: &Path) -> Result<Self> {
        list(v, p, T::visit)
    }
}

impl Visit for String {
    fn visit(v: &Value, p: &Path) -> Result<Self> {
        string(v, p)
    }
}

impl Visit for Value {
    fn visit(v: &Value, p: &Path) -> Result<Self> {
        any(v, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        let r = Path::root(Mode::Json);
        let a = r.member("options");
        let b = a.index(0);
        let c = b.member("cache");
        let d = c.member("direct");
        assert_eq!(d.full(), "options[0].cache.direct");
        assert_eq!(d.name(), "direct");
        assert_eq!(b.name(), "null");
        assert_eq!(r.full(), "null");
    }

    #[test]
    fn scalars() {
        let r = Path::root(Mode::Json);
        let p = r.member("x");
        assert_eq!(int64(&json!(5), &p), Ok(5));
        assert_eq!(
            int64(&json!(1.5), &p).unwrap_err().0,
            "Invalid parameter type for 'x', expected: integer"
        );
        assert_eq!(
            int64(&json!(9223372036854775808u64), &p).unwrap_err().0,
            "Invalid parameter type for 'x', expected: integer"
        );
        assert_eq!(uint64(&json!(-1), &p), Ok(u64::MAX));
        assert_eq!(
            uint64(&json!(1.5), &p).unwrap_err().0,
            "Parameter 'x' expects uint64"
        );
        assert_eq!(
            uint16(&json!(70000), &p).unwrap_err().0,
            "Parameter 'x' expects uint16_t"
        );
        assert_eq!(
            int32(&json!(3000000000u64), &p).unwrap_err().0,
            "Parameter 'x' expects int32_t"
        );
        assert_eq!(number(&json!(3), &p), Ok(3.0));
        assert_eq!(
            boolean(&json!("on"), &p).unwrap_err().0,
            "Invalid parameter type for 'x', expected: boolean"
        );
        assert_eq!(
            string(&json!(null), &p).unwrap_err().0,
            "Invalid parameter type for 'x', expected: string"
        );
    }

    #[test]
    fn fields_report_the_leftover_qemu_reports() {
        // Captured from QSD: blockdev-create options with two unknown keys.
        let v = json!({"filename": "a", "zzz": 1, "aaa": 2, "driver": "file", "size": 5});
        let r = Path::root(Mode::Json);
        let o = r.member("options");
        let mut f = Fields::start(&v, &o).unwrap();
        assert_eq!(f.req("driver", string), Ok("file".to_string()));
        assert_eq!(f.req("filename", string), Ok("a".to_string()));
        assert_eq!(f.req("size", size), Ok(5));
        assert_eq!(
            f.finish().unwrap_err().0,
            "Parameter 'options.aaa' is unexpected"
        );
        let v = json!({});
        let mut f = Fields::start(&v, &o).unwrap();
        assert_eq!(
            f.req("driver", string).unwrap_err().0,
            "Parameter 'options.driver' is missing"
        );
    }
}
