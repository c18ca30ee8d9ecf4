//! TEMPORARY stand-in for the QEMU-compatible JSON layer (being written on
//! the `json` branch): a naive stream splitter and a QDict-order writer.

use serde_json::Value;

/// A JSON parse error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JSON parse error, {0}")]
pub struct JsonError(pub String);

/// Splits a byte stream into top-level JSON values.
#[derive(Default)]
pub struct JsonStreamParser {
    buf: Vec<u8>,
}

impl JsonStreamParser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn flush(&mut self) -> Vec<Result<Value, JsonError>> {
        self.buf.clear();
        Vec::new()
    }

    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Result<Value, JsonError>> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let text = String::from_utf8_lossy(&self.buf).to_string();
            let mut it = serde_json::Deserializer::from_str(&text).into_iter::<Value>();
            match it.next() {
                Some(Ok(v)) => {
                    let off = it.byte_offset();
                    self.buf.drain(..off);
                    out.push(Ok(v));
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    self.buf.clear();
                    out.push(Err(JsonError(e.to_string())));
                    break;
                }
                None => {
                    self.buf.clear();
                    break;
                }
            }
        }
        out
    }
}

/// Parses one JSON value.
pub fn from_str(s: &str) -> Result<Value, JsonError> {
    serde_json::from_str(s).map_err(|e| JsonError(e.to_string()))
}

/// QEMU's rendering of `v`.
pub fn to_json(v: &Value, pretty: bool) -> String {
    let mut s = String::new();
    write(&mut s, v, pretty, 0);
    s
}

fn write(s: &mut String, v: &Value, pretty: bool, level: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            s.push('{');
            for (i, k) in crate::qdict::order(m).into_iter().enumerate() {
                if i > 0 {
                    s.push(',');
                    if !pretty {
                        s.push(' ');
                    }
                }
                if pretty {
                    s.push('\n');
                    s.push_str(&"    ".repeat(level + 1));
                }
                string(s, k);
                s.push_str(": ");
                write(s, &m[k], pretty, level + 1);
            }
            if pretty {
                s.push('\n');
                s.push_str(&"    ".repeat(level));
            }
            s.push('}');
        }
        Value::Array(a) if !a.is_empty() => {
            s.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                    if !pretty {
                        s.push(' ');
                    }
                }
                if pretty {
                    s.push('\n');
                    s.push_str(&"    ".repeat(level + 1));
                }
                write(s, x, pretty, level + 1);
            }
            if pretty {
                s.push('\n');
                s.push_str(&"    ".repeat(level));
            }
            s.push(']');
        }
        Value::Object(_) => s.push_str("{}"),
        Value::Array(_) => s.push_str("[]"),
        Value::String(x) => string(s, x),
        other => s.push_str(&other.to_string()),
    }
}

fn string(s: &mut String, x: &str) {
    s.push('"');
    for c in x.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) >= 0x7f => {
                let mut b = [0u16; 2];
                for u in c.encode_utf16(&mut b) {
                    s.push_str(&format!("\\u{:04X}", u));
                }
            }
            c => s.push(c),
        }
    }
    s.push('"');
}
