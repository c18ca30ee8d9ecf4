//! Splits the token stream into top-level values and enforces the limits.

use serde_json::Value;

use super::lexer::{Lexer, Token, TokenKind, MAX_TOKEN_SIZE};
use super::parser::parse;
use super::JsonError;

/// Most tokens one value may have (2 Mi).
pub(crate) const MAX_TOKEN_COUNT: usize = 2 << 20;
/// Deepest nesting of `[` and `{` (together) one value may have.
pub(crate) const MAX_NESTING: i64 = 1 << 10;

/// Incremental parser for a stream of JSON values, as QEMU's QMP monitor
/// reads its input.
///
/// Bytes can be fed in chunks of any size; every value (or error) is
/// reported as soon as the input determines it, in input order, and the
/// result never depends on how the input was split.  A value is complete
/// when the brackets opened since the last value are all closed, or as
/// soon as a closing bracket has no match; numbers and keywords need the
/// byte after them (a top-level `42` is reported once a delimiter such as a
/// newline arrives).
///
/// An error inside a value discards everything buffered for that value;
/// parsing resumes with the next token (lexical errors first skip input,
/// see the [module docs](super)).  The remaining bytes of a value in
/// which a grammar error was found are therefore parsed as new values.
///
/// ```
/// use qapi::json::{JsonError, JsonStreamParser};
/// let mut p = JsonStreamParser::new();
/// let out = p.feed(b"{\"execute\": \"quit\"}\n[1, 2");
/// assert_eq!(out.len(), 1);
/// assert_eq!(p.feed(b"]"), vec![Ok(serde_json::json!([1, 2]))]);
/// assert_eq!(p.feed(b"nul!"), vec![Err(JsonError::InvalidKeyword("invalid keyword 'nul'".into())),
///                                  Err(JsonError::Stray(b"!".to_vec()))]);
/// ```
#[derive(Debug, Default)]
pub struct JsonStreamParser {
    lexer: Lexer,
    /// Tokens of the value being collected.
    tokens: Vec<Token>,
    /// Total text length of `tokens`.
    token_size: usize,
    /// Open `{` minus `}` since the last value.
    braces: i64,
    /// Open `[` minus `]` since the last value.
    brackets: i64,
    /// Scratch list for tokens coming out of the lexer.
    lexed: Vec<Token>,
}

impl JsonStreamParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed more input; returns the values and errors it completes.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Result<Value, JsonError>> {
        let mut out = Vec::new();
        self.lexer.feed(bytes, &mut self.lexed);
        self.drain_lexed(&mut out);
        out
    }

    /// Signal end of input: a number or keyword at the very end is
    /// completed, an unterminated token becomes a "stray" error, and an
    /// unfinished value is parsed as it is (typically giving
    /// `JSON parse error, premature EOI`).  The parser is ready for a new
    /// stream afterwards.
    ///
    /// QEMU's QMP monitor never does this: when a client disconnects it
    /// simply discards the parser state (use a new parser for a new
    /// connection).  It matters for [`from_str`](super::from_str).
    pub fn flush(&mut self) -> Vec<Result<Value, JsonError>> {
        let mut out = Vec::new();
        self.lexer.flush(&mut self.lexed);
        self.drain_lexed(&mut out);
        out
    }

    fn drain_lexed(&mut self, out: &mut Vec<Result<Value, JsonError>>) {
        if self.lexed.is_empty() {
            return;
        }
        let mut lexed = std::mem::take(&mut self.lexed);
        for token in lexed.drain(..) {
            if let Some(result) = self.push_token(token) {
                out.push(result);
            }
        }
        // Keep the allocation for the next byte.
        self.lexed = lexed;
    }

    fn reset(&mut self) {
        self.tokens.clear();
        self.token_size = 0;
        self.braces = 0;
        self.brackets = 0;
    }

    /// Take one token; returns a result when a value ends here.
    fn push_token(&mut self, token: Token) -> Option<Result<Value, JsonError>> {
        match token.kind {
            TokenKind::LCurly => self.braces += 1,
            TokenKind::RCurly => self.braces -= 1,
            TokenKind::LSquare => self.brackets += 1,
            TokenKind::RSquare => self.brackets -= 1,
            TokenKind::Stray => {
                self.reset();
                return Some(Err(JsonError::Stray(token.text)));
            }
            TokenKind::EndOfInput => {
                if self.tokens.is_empty() {
                    return None;
                }
                let result = parse(&self.tokens);
                self.reset();
                return Some(result);
            }
            _ => {}
        }
        // Limits.  An oversized token always fails the size check.
        let error = if self.token_size + token.text.len() + 1 > MAX_TOKEN_SIZE {
            Some(JsonError::TokenSizeLimit)
        } else if self.tokens.len() + 1 > MAX_TOKEN_COUNT {
            Some(JsonError::TokenCountLimit)
        } else if self.braces + self.brackets > MAX_NESTING {
            Some(JsonError::NestingLimit)
        } else {
            None
        };
        if let Some(error) = error {
            self.reset();
            return Some(Err(error));
        }
        self.token_size += token.text.len();
        self.tokens.push(token);
        let open = self.braces > 0 || self.brackets > 0;
        if open && self.braces >= 0 && self.brackets >= 0 {
            return None;
        }
        let result = parse(&self.tokens);
        self.reset();
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feed(input: &[u8]) -> Vec<Result<Value, String>> {
        let mut p = JsonStreamParser::new();
        p.feed(input)
            .into_iter()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect()
    }

    fn err(s: &str) -> Result<Value, String> {
        Err(format!("JSON parse error, {s}"))
    }

    #[test]
    fn values_are_reported_when_complete() {
        assert_eq!(
            feed(b"{\"a\": [1, 2.5, 'x', true, null]}"),
            vec![Ok(json!({"a": [1, 2.5, "x", true, null]}))]
        );
        assert_eq!(
            feed(b"[] {} \"s\" 1"),
            vec![Ok(json!([])), Ok(json!({})), Ok(json!("s"))]
        );
        assert_eq!(feed(b"1 "), vec![Ok(json!(1))]);
        assert_eq!(feed(b""), vec![]);
        assert_eq!(feed(b" \t\r\n"), vec![]);
    }

    #[test]
    fn stray_closers() {
        assert_eq!(feed(b"}"), vec![err("expecting value")]);
        assert_eq!(
            feed(b"]]"),
            vec![err("expecting value"), err("expecting value")]
        );
        // A mismatched closer ends the value at once.
        assert_eq!(feed(b"[}"), vec![err("expecting value")]);
        assert_eq!(feed(b"{]"), vec![err("expecting value")]);
        assert_eq!(feed(b"{\"a\":1]"), vec![err("expected separator in dict")]);
    }

    #[test]
    fn grammar_error_leaves_rest_of_value_as_new_input() {
        // The value ends at the first '}' (brace count back to zero)
        // although it is malformed; the rest is a new value.
        assert_eq!(
            feed(b"{\"a\" 1} {\"b\":2}"),
            vec![err("missing : in object pair"), Ok(json!({"b": 2}))]
        );
        // Error inside a nested value: the outer value is cut short when
        // the counts return to zero, which happens later.
        assert_eq!(feed(b"[[1 2], 3]"), vec![err("expected separator in list")]);
    }

    #[test]
    fn lexical_error_discards_pending_tokens() {
        assert_eq!(
            feed(b"[1, %x, 2]\n{}"),
            vec![
                Err("JSON parse error, stray '%'".into()),
                // Recovery skipped "x"; the comma is a value of its own.
                err("expecting value"),
                Ok(json!(2)),
                err("expecting value"),
                Ok(json!({}))
            ]
        );
        assert_eq!(
            feed(b"{\"a\": \"b\n\"}"),
            vec![
                Err("JSON parse error, stray '\"b\n'".into()),
                err("expecting value")
            ]
        );
        assert_eq!(feed(b"\0"), vec![Err("JSON parse error, stray ''".into())]);
        assert_eq!(
            feed(b"\"ab\0"),
            vec![Err("JSON parse error, stray '\"ab'".into())]
        );
        assert_eq!(
            feed(b"\xFF"),
            vec![Err("JSON parse error, stray '\u{FFFD}'".into())]
        );
    }

    #[test]
    fn duplicate_keys() {
        assert_eq!(feed(b"{\"a\":1,\"a\":2}"), vec![err("duplicate key")]);
        assert_eq!(feed(b"{\"a\":1,'a':x}"), vec![err("invalid keyword 'x'")]);
    }

    #[test]
    fn nesting_limit() {
        let mut input = vec![b'['; 1024];
        input.extend(vec![b']'; 1024]);
        assert_eq!(feed(&input).len(), 1);
        assert!(feed(&input)[0].is_ok());
        let mut input = vec![b'['; 1025];
        input.extend(vec![b']'; 3]);
        let out = feed(&input);
        assert_eq!(out[0], Err("JSON nesting depth limit exceeded".into()));
        // The brackets after the error are new input; each ']' fails alone.
        assert_eq!(out.len(), 4);
        assert_eq!(out[3], err("expecting value"));
    }

    fn token(kind: TokenKind, text: Vec<u8>) -> Token {
        Token { kind, text }
    }

    fn big_string(len: usize) -> Token {
        let mut text = vec![b'a'; len];
        text[0] = b'"';
        text[len - 1] = b'"';
        token(TokenKind::String, text)
    }

    #[test]
    fn token_size_limit() {
        let mut p = JsonStreamParser::new();
        let ok = p.push_token(big_string(MAX_TOKEN_SIZE - 1));
        assert!(matches!(ok, Some(Ok(Value::String(_)))));
        let too_big = p.push_token(big_string(MAX_TOKEN_SIZE));
        assert_eq!(too_big, Some(Err(JsonError::TokenSizeLimit)));
        // The limit is on the sum of a value's tokens, checked per token.
        assert_eq!(p.push_token(token(TokenKind::LSquare, b"[".to_vec())), None);
        assert_eq!(p.push_token(big_string(MAX_TOKEN_SIZE - 2)), None);
        let closing = p.push_token(token(TokenKind::RSquare, b"]".to_vec()));
        assert_eq!(closing, Some(Err(JsonError::TokenSizeLimit)));
        // An abandoned (oversized) token always fails.
        let oversized = token(TokenKind::Oversized, vec![b'a'; MAX_TOKEN_SIZE + 1]);
        assert_eq!(
            p.push_token(oversized),
            Some(Err(JsonError::TokenSizeLimit))
        );
    }

    #[test]
    fn token_count_limit() {
        let mut p = JsonStreamParser::new();
        assert_eq!(p.push_token(token(TokenKind::LSquare, b"[".to_vec())), None);
        for _ in 1..MAX_TOKEN_COUNT {
            assert_eq!(p.push_token(token(TokenKind::Comma, b",".to_vec())), None);
        }
        let last = p.push_token(token(TokenKind::RSquare, b"]".to_vec()));
        assert_eq!(last, Some(Err(JsonError::TokenCountLimit)));
        assert!(p.tokens.is_empty());
    }

    #[test]
    fn overlong_string_is_abandoned_and_its_rest_lexed_anew() {
        let mut input = vec![b'"'];
        input.extend(vec![b'a'; MAX_TOKEN_SIZE + 1]);
        input.extend(b"\"\n");
        let out = JsonStreamParser::new().feed(&input);
        assert_eq!(
            out,
            vec![
                Err(JsonError::TokenSizeLimit),
                Err(JsonError::InvalidKeyword("invalid keyword 'a'".into())),
                Err(JsonError::Stray(b"\"\n".to_vec())),
            ]
        );
    }

    #[test]
    fn flush_completes_or_fails() {
        let mut p = JsonStreamParser::new();
        assert_eq!(p.feed(b"12"), vec![]);
        assert_eq!(p.flush(), vec![Ok(json!(12))]);
        assert_eq!(p.feed(b"[1,"), vec![]);
        assert_eq!(p.flush(), vec![Err(JsonError::PrematureEoi)]);
        assert_eq!(p.feed(b"[\"ab"), vec![]);
        assert_eq!(p.flush(), vec![Err(JsonError::Stray(b"\"ab".to_vec()))]);
        assert_eq!(p.flush(), vec![]);
        assert_eq!(p.feed(b"{}"), vec![Ok(json!({}))]);
    }

    #[test]
    fn chunking_does_not_matter() {
        let input = b"{\"execute\": 'x', \"id\": [1.5e3, -0, \"\\u00e9\"]} 17 %% ] {\"a\":tru}\n";
        let whole = JsonStreamParser::new().feed(input);
        let mut p = JsonStreamParser::new();
        let mut bytewise = Vec::new();
        for b in input {
            bytewise.extend(p.feed(std::slice::from_ref(b)));
        }
        assert_eq!(whole, bytewise);
    }
}
