//! JSON as QEMU 10.0.2 reads and writes it on QMP.
//!
//! [`JsonStreamParser`] splits a byte stream into values like QEMU's QMP
//! monitor, with the same extensions, limits, error messages and error
//! recovery; [`from_str`] parses one value like QEMU's JSON command-line
//! options; [`to_json`] writes a value byte for byte as the monitor does,
//! and [`qdict_order`] gives the order in which QEMU iterates an object's
//! members.  Values are [`serde_json::Value`] (with `preserve_order`, so an
//! object's map order is its insertion order, which [`qdict_order`] needs).
//!
//! # What QEMU accepts
//!
//! - Strings in double or single quotes; `\'` is an escape in both, and the
//!   other quote character needs no escape.  Raw bytes `20`..=`FD` are
//!   allowed inside strings (so DEL is, but control characters are not);
//!   the content must be valid UTF-8 in QEMU's sense: no surrogates, no
//!   noncharacters (U+FDD0..U+FDEF, U+xxFFFE, U+xxFFFF), and `C0 80` is
//!   accepted as U+0000.  `\u0000` is accepted too.
//! - `\uXXXX` escapes: a high surrogate followed by a low one combine;
//!   any other surrogate or a noncharacter is rejected with a message
//!   quoting the escape as written (six bytes, or twelve for a pair that
//!   combines into a noncharacter).
//! - Numbers as in RFC 8259.  An integer literal is an `i64` if it fits,
//!   else a `u64` if it is not negative and fits, else a double; `-0` is
//!   the integer 0.  Literals with a fraction or exponent are doubles.
//! - The keywords are `true`, `false` and `null`; any other run of
//!   lower-case letters is an "invalid keyword".
//! - Duplicate object keys are an error.
//!
//! # How the stream is split
//!
//! A value ends when the brackets (`{`/`[` together) opened since the
//! previous value are closed again, or as soon as a closing bracket of
//! either kind has no match.  Scalars at top level end with the next byte
//! that cannot extend them.  The tokens of the value are then parsed; if
//! that fails, everything collected is dropped and parsing goes on with
//! the next token, so the rest of a malformed value is read as new values
//! (`}` alone gives "expecting value", once per stray closer).
//!
//! Lexical errors ("stray") are reported at once and discard the value
//! collected so far.  The reported text is the partial token including the
//! offending byte (cut at a NUL byte, as QEMU passes it through C string
//! formatting).  The lexer then skips input up to a structural character,
//! an ASCII control character other than TAB, or a byte `FE`/`FF`; those
//! are not skipped.  A control character that ends the skipping is then
//! lexed normally, so unless it is whitespace it is another error:
//! `%\x01` gives two "stray" errors.  Inside a string, `FE`, `FF` and
//! control characters (newline included) are lexical errors too, so a
//! string that runs over a line break fails at the line break.
//!
//! # Limits (with their messages)
//!
//! - A token may be up to 64 MiB - 1 bytes long; and the tokens of one
//!   value up to 64 MiB - 1 bytes in total: `JSON token size limit
//!   exceeded`.  A single unfinished token (a string) that grows beyond
//!   64 MiB is abandoned by the lexer, which then resumes lexing in the
//!   start state *inside* the string content.
//! - 2 Mi (2 097 152) tokens per value: `JSON token count limit exceeded`.
//! - Nesting depth 1024 (brackets and braces together); the 1025th opening
//!   bracket gives `JSON nesting depth limit exceeded`, and each closing
//!   bracket after that is then a stray closer.
//!
//! # Error messages
//!
//! All messages are [`JsonError`]'s `Display` output.  Parser messages are
//! formatted by QEMU into a 1024-byte buffer, so an `invalid keyword`
//! message is cut after 1023 bytes (the closing quote is lost for long
//! keywords); "stray" messages are not cut.  Bytes that are not valid
//! UTF-8 in a "stray" message are shown as U+FFFD, one per undecodable
//! sequence in QEMU's counting, which is what QEMU's writer prints for
//! them.
//!
//! # Output order
//!
//! QEMU prints (and checks) an object's members in the iteration order of
//! its hash table, see [`qdict_order`].  Besides the key's length, only
//! the bytes whose shift in the hash is below 9 reach the bucket number
//! (positions 0, 1, 5, 6, 10, 11, 15, 16, 20, 24, 25, ...; those shifted
//! by 5 to 8 only with their low bits), so collisions are common: `"minor"` and
//! `"micro"` of `query-version` share a bucket, as do `"k10"` and
//! `"k11"`.  Within a bucket the later-inserted key comes first, so
//! parsing QEMU's output and writing it again swaps such keys; the reply
//! builder has to insert members in QEMU's order, not in printed order.
//! Keys are hashed as QEMU stores them, with U+0000 as the bytes `C0 80`.
//!
//! # Known deviation
//!
//! QEMU turns out-of-range doubles such as `1e999` into infinities and
//! prints them as `inf`/`-inf` (not valid JSON).  `serde_json::Value`
//! cannot hold infinities, so they are clamped to `±f64::MAX` and echo
//! as `1.7976931348623157e+308`.

mod lexer;
mod parser;
mod streamer;
pub(crate) mod utf8;
mod writer;

pub use streamer::JsonStreamParser;
pub use writer::{qdict_order, to_json};

use serde_json::Value;

/// A JSON input error, displayed exactly as QEMU words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Bytes that are not (part of) a token.  Holds the token text up to
    /// and including the offending byte.
    #[error("JSON parse error, stray '{}'", utf8::decode_lossy(.0))]
    Stray(Vec<u8>),
    /// A token, or the tokens of one value, would exceed 64 MiB.
    #[error("JSON token size limit exceeded")]
    TokenSizeLimit,
    /// One value would have more than 2 Mi tokens.
    #[error("JSON token count limit exceeded")]
    TokenCountLimit,
    /// Brackets nested more than 1024 deep.
    #[error("JSON nesting depth limit exceeded")]
    NestingLimit,
    /// The value ended (end of input) before it was complete.
    #[error("JSON parse error, premature EOI")]
    PrematureEoi,
    /// A value was needed but a structural character came.
    #[error("JSON parse error, expecting value")]
    ExpectingValue,
    /// An object key that is not a string.
    #[error("JSON parse error, key is not a string in object")]
    KeyNotString,
    /// An object key not followed by `:`.
    #[error("JSON parse error, missing : in object pair")]
    MissingColon,
    /// An object member not followed by `,` or `}`.
    #[error("JSON parse error, expected separator in dict")]
    ExpectedObjectSeparator,
    /// An array element not followed by `,` or `]`.
    #[error("JSON parse error, expected separator in list")]
    ExpectedArraySeparator,
    /// The same key twice in one object.
    #[error("JSON parse error, duplicate key")]
    DuplicateKey,
    /// A run of lower-case letters that is not `true`, `false` or `null`.
    /// Holds the whole message after the prefix (`invalid keyword 'x'`),
    /// already cut to 1023 bytes like QEMU's.
    #[error("JSON parse error, {0}")]
    InvalidKeyword(String),
    /// A backslash followed by something other than `"'\/bfnrtu`.
    #[error("JSON parse error, invalid escape sequence in string")]
    InvalidEscape,
    /// A `\u` escape that is malformed or gives a character QEMU rejects.
    /// Holds the escape as written.
    #[error(
        "JSON parse error, {} is not a valid Unicode character",
        utf8::decode_lossy(.0)
    )]
    InvalidUnicodeEscape(Vec<u8>),
    /// Raw string content that is not valid (modified) UTF-8.
    #[error("JSON parse error, invalid UTF-8 sequence in string")]
    InvalidUtf8,
    /// [`from_str`]: more input after the first value.
    #[error("Expecting at most one JSON value")]
    TrailingInput,
    /// [`from_str`]: no value at all.
    #[error("Expecting a JSON value")]
    NoValue,
}

/// Parse exactly one JSON value, the way QEMU parses a JSON command-line
/// argument (`qobject_from_json`).
///
/// The text is read up to its first NUL character, as a C string.  The
/// first error, if any, is the result, whatever follows it.  A successful
/// first value followed by anything that yields another value or error
/// (except pure whitespace) gives `Expecting at most one JSON value`.
/// Empty or all-whitespace input gives `Expecting a JSON value`.
///
/// ```
/// use qapi::json::from_str;
/// assert_eq!(from_str("{'a': 1}").unwrap(), serde_json::json!({"a": 1}));
/// assert_eq!(from_str("{} }").unwrap_err().to_string(), "Expecting at most one JSON value");
/// assert_eq!(from_str("[1").unwrap_err().to_string(), "JSON parse error, premature EOI");
/// ```
pub fn from_str(s: &str) -> Result<Value, JsonError> {
    let bytes = s.as_bytes();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let mut parser = JsonStreamParser::new();
    let mut results = parser.feed(&bytes[..end]);
    results.extend(parser.flush());
    let mut results = results.into_iter();
    match results.next() {
        None => Err(JsonError::NoValue),
        Some(Err(e)) => Err(e),
        Some(Ok(v)) => match results.next() {
            None => Ok(v),
            Some(_) => Err(JsonError::TrailingInput),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn from_str_rules() {
        assert_eq!(from_str(" 42 "), Ok(json!(42)));
        assert_eq!(from_str("42"), Ok(json!(42)));
        assert_eq!(from_str("'x'"), Ok(json!("x")));
        assert_eq!(from_str(""), Err(JsonError::NoValue));
        assert_eq!(from_str(" \n"), Err(JsonError::NoValue));
        assert_eq!(from_str("1 2"), Err(JsonError::TrailingInput));
        assert_eq!(from_str("{} %"), Err(JsonError::TrailingInput));
        assert_eq!(from_str("{}{"), Err(JsonError::TrailingInput));
        assert_eq!(from_str("%} {}"), Err(JsonError::Stray(b"%".to_vec())));
        assert_eq!(from_str("{\"a\" 1}"), Err(JsonError::MissingColon));
        assert_eq!(from_str("[1,"), Err(JsonError::PrematureEoi));
        assert_eq!(from_str("\"ab"), Err(JsonError::Stray(b"\"ab".to_vec())));
        assert_eq!(
            from_str("1.").map_err(|e| e.to_string()),
            Err("JSON parse error, stray '1.'".into())
        );
        assert_eq!(from_str("[1]\0garbage"), Ok(json!([1])));
        assert_eq!(from_str("\0"), Err(JsonError::NoValue));
    }

    #[test]
    fn messages() {
        assert_eq!(
            JsonError::InvalidKeyword("invalid keyword 'abc'".into()).to_string(),
            "JSON parse error, invalid keyword 'abc'"
        );
        assert_eq!(
            JsonError::Stray(b"\"a\xC3\x01".to_vec()).to_string(),
            "JSON parse error, stray '\"a\u{FFFD}\u{1}'"
        );
        assert_eq!(
            JsonError::NestingLimit.to_string(),
            "JSON nesting depth limit exceeded"
        );
    }

    #[test]
    fn round_trip_through_writer() {
        let v = from_str(r#"{"b": [1, 2.5, "\u00e9"], "a": {"c": null}}"#).unwrap();
        assert_eq!(
            to_json(&v, false),
            r#"{"a": {"c": null}, "b": [1, 2.5, "\u00E9"]}"#
        );
    }
}
