//! Turns the tokens of one top-level value into a [`Value`].
//!
//! Grammar errors are reported at the first point of failure; later
//! problems in the same value are never mentioned.

use serde_json::{Map, Number, Value};

use super::lexer::{Token, TokenKind};
use super::utf8::{decode_one, is_valid_codepoint};
use super::JsonError;

/// QEMU formats parser messages into a 1024-byte buffer, so a message is
/// cut to this many bytes (before the "JSON parse error, " prefix).
const MESSAGE_MAX: usize = 1023;

struct Cursor<'a> {
    tokens: &'a [Token],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<&'a Token> {
        let token = self.tokens.get(self.pos);
        if token.is_some() {
            self.pos += 1;
        }
        token
    }
}

/// Parse one value from `tokens`.  The streamer only hands over token
/// lists that end where a value could end (or that went unbalanced), so
/// any tokens left over after a successful parse would be a bug; they are
/// ignored here.
pub(crate) fn parse(tokens: &[Token]) -> Result<Value, JsonError> {
    let mut cursor = Cursor { tokens, pos: 0 };
    parse_value(&mut cursor)
}

fn parse_value(c: &mut Cursor<'_>) -> Result<Value, JsonError> {
    let Some(token) = c.peek() else {
        return Err(JsonError::PrematureEoi);
    };
    match token.kind {
        TokenKind::LCurly => parse_object(c),
        TokenKind::LSquare => parse_array(c),
        TokenKind::String => {
            c.pos += 1;
            parse_string(&token.text).map(Value::String)
        }
        TokenKind::Integer => {
            c.pos += 1;
            Ok(parse_integer(&token.text))
        }
        TokenKind::Float => {
            c.pos += 1;
            Ok(number_from_f64(parse_double(&token.text)))
        }
        TokenKind::Keyword => {
            c.pos += 1;
            parse_keyword(&token.text)
        }
        // Structural tokens that cannot start a value.  (Stray, oversized
        // and end-of-input tokens never reach the parser.)
        _ => Err(JsonError::ExpectingValue),
    }
}

fn parse_object(c: &mut Cursor<'_>) -> Result<Value, JsonError> {
    c.next(); // the '{'
    let mut map = Map::new();
    match c.peek() {
        None => return Err(JsonError::PrematureEoi),
        Some(t) if t.kind == TokenKind::RCurly => {
            c.next();
            return Ok(Value::Object(map));
        }
        Some(_) => {}
    }
    loop {
        parse_member(c, &mut map)?;
        match c.next() {
            None => return Err(JsonError::PrematureEoi),
            Some(t) if t.kind == TokenKind::RCurly => return Ok(Value::Object(map)),
            Some(t) if t.kind == TokenKind::Comma => {}
            Some(_) => return Err(JsonError::ExpectedObjectSeparator),
        }
    }
}

fn parse_member(c: &mut Cursor<'_>, map: &mut Map<String, Value>) -> Result<(), JsonError> {
    if c.peek().is_none() {
        return Err(JsonError::PrematureEoi);
    }
    let Value::String(key) = parse_value(c)? else {
        return Err(JsonError::KeyNotString);
    };
    match c.next() {
        None => return Err(JsonError::PrematureEoi),
        Some(t) if t.kind == TokenKind::Colon => {}
        Some(_) => return Err(JsonError::MissingColon),
    }
    let value = parse_value(c)?;
    // The value is parsed (and its errors reported) before the duplicate
    // check, so `{"a":1,"a":x}` complains about the keyword.
    if map.contains_key(&key) {
        return Err(JsonError::DuplicateKey);
    }
    map.insert(key, value);
    Ok(())
}

fn parse_array(c: &mut Cursor<'_>) -> Result<Value, JsonError> {
    c.next(); // the '['
    let mut list = Vec::new();
    match c.peek() {
        None => return Err(JsonError::PrematureEoi),
        Some(t) if t.kind == TokenKind::RSquare => {
            c.next();
            return Ok(Value::Array(list));
        }
        Some(_) => {}
    }
    loop {
        list.push(parse_value(c)?);
        match c.next() {
            None => return Err(JsonError::PrematureEoi),
            Some(t) if t.kind == TokenKind::RSquare => return Ok(Value::Array(list)),
            Some(t) if t.kind == TokenKind::Comma => {}
            Some(_) => return Err(JsonError::ExpectedArraySeparator),
        }
    }
}

fn parse_keyword(text: &[u8]) -> Result<Value, JsonError> {
    match text {
        b"true" => Ok(Value::Bool(true)),
        b"false" => Ok(Value::Bool(false)),
        b"null" => Ok(Value::Null),
        _ => {
            // Keywords are lower-case ASCII letters, so this is lossless,
            // and cutting the message at a byte boundary is safe.
            let mut msg = format!("invalid keyword '{}'", String::from_utf8_lossy(text));
            msg.truncate(MESSAGE_MAX);
            Err(JsonError::InvalidKeyword(msg))
        }
    }
}

/// An integer token becomes an i64 if it fits, else a u64 if it is
/// non-negative and fits, else a double (so `-0` is the integer 0 and
/// 2^64 is 1.8446744073709552e+19).
fn parse_integer(text: &[u8]) -> Value {
    let s = std::str::from_utf8(text).unwrap_or("");
    if let Ok(i) = s.parse::<i64>() {
        return Value::Number(i.into());
    }
    if !s.starts_with('-') {
        if let Ok(u) = s.parse::<u64>() {
            return Value::Number(u.into());
        }
    }
    number_from_f64(parse_double(text))
}

/// Correctly rounded conversion, like glibc's strtod; overflow gives an
/// infinity and underflow zero or a subnormal.
fn parse_double(text: &[u8]) -> f64 {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// Store a double.  `serde_json` cannot hold infinities, which QEMU
/// produces for out-of-range literals such as `1e999` (and then writes as
/// `inf`); they are clamped to the largest finite double of the same sign.
pub(crate) fn number_from_f64(x: f64) -> Value {
    let x = if x.is_infinite() {
        f64::MAX.copysign(x)
    } else {
        x
    };
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// Value of a hex digit.
fn hex_value(b: u8) -> Option<u32> {
    char::from(b).to_digit(16)
}

/// The four hex digits at `bytes[at..]`, or `None` if any is missing or
/// not a hex digit.
fn four_hex(bytes: &[u8], at: usize) -> Option<u32> {
    let mut cp = 0;
    for i in 0..4 {
        cp = (cp << 4) | hex_value(*bytes.get(at + i)?)?;
    }
    Some(cp)
}

/// Decode the text of a string token (quotes included).
fn parse_string(text: &[u8]) -> Result<String, JsonError> {
    let quote = text.first().copied().unwrap_or(b'"');
    // The lexer guarantees the token ends with the same quote character
    // and that no unescaped quote occurs before it.
    let body = &text[1.min(text.len())..];
    let mut out = String::with_capacity(body.len());
    let mut i = 0;
    loop {
        let Some(&b) = body.get(i) else {
            // Cannot happen for a lexed string token; be lenient.
            return Ok(out);
        };
        if b == quote {
            return Ok(out);
        }
        if b != b'\\' {
            let (cp, used) = decode_one(&body[i..]);
            match cp.and_then(char::from_u32) {
                Some(ch) => out.push(ch),
                None => return Err(JsonError::InvalidUtf8),
            }
            i += used;
            continue;
        }
        let start = i;
        let escape = body.get(i + 1).copied().unwrap_or(0);
        i += 2;
        let simple = match escape {
            b'"' => '"',
            b'\'' => '\'',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let (cp, len) = unicode_escape(body, start);
                i = start + len;
                match cp
                    .filter(|&cp| is_valid_codepoint(cp))
                    .and_then(char::from_u32)
                {
                    Some(ch) => {
                        out.push(ch);
                        continue;
                    }
                    None => {
                        // The message quotes the escape as written: six
                        // bytes (twelve for a pair), cut short by the end
                        // of the token.
                        let end = (start + len).min(body.len());
                        return Err(JsonError::InvalidUnicodeEscape(body[start..end].to_vec()));
                    }
                }
            }
            _ => return Err(JsonError::InvalidEscape),
        };
        out.push(simple);
    }
}

/// Decode `\uXXXX` (optionally followed by a low-surrogate `\uXXXX`) at
/// `body[at..]`.  Returns the code point (`None` if malformed or an
/// unpaired surrogate) and the length of the escape as QEMU counts it: 12
/// for a well-formed pair, else 6 (even when fewer hex digits follow).
fn unicode_escape(body: &[u8], at: usize) -> (Option<u32>, usize) {
    let Some(cp) = four_hex(body, at + 2) else {
        return (None, 6);
    };
    if !(0xD800..=0xDBFF).contains(&cp) || body.get(at + 6..at + 8) != Some(&b"\\u"[..]) {
        // Lone surrogates fail the validity check in the caller.
        return (Some(cp), 6);
    }
    match four_hex(body, at + 8) {
        Some(low @ 0xDC00..=0xDFFF) => (Some(0x10000 + ((cp & 0x3FF) << 10) + (low & 0x3FF)), 12),
        _ => (None, 6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(kind: TokenKind, s: &str) -> Token {
        Token {
            kind,
            text: s.as_bytes().to_vec(),
        }
    }

    fn string(s: &[u8]) -> Result<String, JsonError> {
        parse_string(s)
    }

    #[test]
    fn simple_escapes() {
        assert_eq!(
            string(br#""\"\'\\\/\b\f\n\r\t""#).unwrap(),
            "\"'\\/\u{8}\u{c}\n\r\t"
        );
        assert_eq!(string(br#"'\'"'"#).unwrap(), "'\"");
        assert_eq!(string(br#""\a""#), Err(JsonError::InvalidEscape));
        assert_eq!(string(b"\"\\\xC3\xA9\""), Err(JsonError::InvalidEscape));
    }

    #[test]
    fn unicode_escapes() {
        assert_eq!(string(br#""\u0041\u00e9\u20AC""#).unwrap(), "Aé€");
        assert_eq!(string(br#""\u0000""#).unwrap(), "\0");
        assert_eq!(string(br#""\ud83d\ude00""#).unwrap(), "😀");
        let bad = |s: &[u8]| match string(s) {
            Err(e) => e.to_string(),
            Ok(v) => panic!("accepted {v:?}"),
        };
        assert_eq!(
            bad(br#""\uD800""#),
            r"JSON parse error, \uD800 is not a valid Unicode character"
        );
        assert_eq!(
            bad(br#""\uD800\u0041""#),
            r"JSON parse error, \uD800 is not a valid Unicode character"
        );
        assert_eq!(
            bad(br#""\udc00\ud800""#),
            r"JSON parse error, \udc00 is not a valid Unicode character"
        );
        assert_eq!(
            bad(br#""\uFFFF""#),
            r"JSON parse error, \uFFFF is not a valid Unicode character"
        );
        assert_eq!(
            bad(br#""\uD83F\uDFFF""#),
            r"JSON parse error, \uD83F\uDFFF is not a valid Unicode character"
        );
        assert_eq!(
            bad(br#""\u12""#),
            r#"JSON parse error, \u12" is not a valid Unicode character"#
        );
        assert_eq!(
            bad(br#""\u""#),
            r#"JSON parse error, \u" is not a valid Unicode character"#
        );
        assert_eq!(
            bad(br#""\u12x4abc""#),
            r"JSON parse error, \u12x4 is not a valid Unicode character"
        );
    }

    #[test]
    fn raw_utf8() {
        assert_eq!(string(b"\"\xC3\xA9\xC0\x80\"").unwrap(), "é\0");
        for bad in [
            &b"\"\xC3\""[..],
            b"\"\x80\"",
            b"\"\xED\xA0\x80\"",
            b"\"\xEF\xBF\xBF\"",
        ] {
            assert_eq!(string(bad), Err(JsonError::InvalidUtf8));
        }
    }

    #[test]
    fn integers() {
        let n = |s: &str| parse_integer(s.as_bytes());
        assert_eq!(n("-0"), Value::from(0));
        assert_eq!(n("9223372036854775807"), Value::from(i64::MAX));
        assert_eq!(n("-9223372036854775808"), Value::from(i64::MIN));
        assert_eq!(n("9223372036854775808"), Value::from(1u64 << 63));
        assert_eq!(n("18446744073709551615"), Value::from(u64::MAX));
        assert_eq!(
            n("18446744073709551616"),
            Value::from(18446744073709551616.0)
        );
        assert_eq!(
            n("-9223372036854775809"),
            Value::from(-9223372036854775808.0)
        );
        assert!(n("1").as_f64().is_some() && n("1").is_i64());
    }

    #[test]
    fn doubles_and_infinity() {
        assert_eq!(number_from_f64(parse_double(b"1.5")), Value::from(1.5));
        assert!(number_from_f64(parse_double(b"100.0")).is_f64());
        assert_eq!(
            number_from_f64(parse_double(b"1e999")),
            Value::from(f64::MAX)
        );
        assert_eq!(
            number_from_f64(parse_double(b"-1e999")),
            Value::from(f64::MIN)
        );
        let neg_zero = number_from_f64(parse_double(b"-0.0"));
        assert!(neg_zero
            .as_f64()
            .is_some_and(|x| x == 0.0 && x.is_sign_negative()));
    }

    #[test]
    fn keywords() {
        assert_eq!(parse_keyword(b"true"), Ok(Value::Bool(true)));
        assert_eq!(parse_keyword(b"false"), Ok(Value::Bool(false)));
        assert_eq!(parse_keyword(b"null"), Ok(Value::Null));
        assert_eq!(
            parse_keyword(b"abc").map_err(|e| e.to_string()),
            Err("JSON parse error, invalid keyword 'abc'".to_string())
        );
        let long = vec![b'a'; 2000];
        let msg = parse_keyword(&long).unwrap_err().to_string();
        assert_eq!(msg.len(), "JSON parse error, ".len() + 1023);
        assert!(msg.ends_with('a'));
    }

    #[test]
    fn grammar_errors() {
        use TokenKind as K;
        let p = |toks: &[(K, &str)]| {
            let toks: Vec<Token> = toks.iter().map(|&(k, s)| tok(k, s)).collect();
            parse(&toks)
        };
        assert_eq!(p(&[]), Err(JsonError::PrematureEoi));
        assert_eq!(p(&[(K::RCurly, "}")]), Err(JsonError::ExpectingValue));
        assert_eq!(p(&[(K::LCurly, "{")]), Err(JsonError::PrematureEoi));
        assert_eq!(
            p(&[(K::LCurly, "{"), (K::Integer, "1"), (K::Colon, ":")]),
            Err(JsonError::KeyNotString)
        );
        assert_eq!(
            p(&[(K::LCurly, "{"), (K::String, "'a'"), (K::Comma, ",")]),
            Err(JsonError::MissingColon)
        );
        assert_eq!(
            p(&[(K::LSquare, "["), (K::Integer, "1"), (K::Integer, "2")]),
            Err(JsonError::ExpectedArraySeparator)
        );
        assert_eq!(
            p(&[
                (K::LSquare, "["),
                (K::Integer, "1"),
                (K::Comma, ","),
                (K::RSquare, "]")
            ]),
            Err(JsonError::ExpectingValue)
        );
        assert_eq!(
            p(&[
                (K::LCurly, "{"),
                (K::String, "\"a\""),
                (K::Colon, ":"),
                (K::Integer, "1"),
                (K::String, "\"b\""),
            ]),
            Err(JsonError::ExpectedObjectSeparator)
        );
    }
}
