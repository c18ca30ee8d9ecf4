//! Byte-at-a-time tokenizer with QEMU's token rules and error recovery.
//!
//! The lexer is a small state machine.  Each input byte either extends the
//! current token, completes it, or (for tokens that can only be recognised
//! by looking one byte past their end: numbers and keywords) completes the
//! previous token and is then looked at again from the start state.
//!
//! Lexical errors do not stop the stream.  The offending byte is appended to
//! the token text, the text is reported as a "stray" token, and the lexer
//! enters *recovery*: it drops input until it sees a structural character
//! (`[ ] { } : ,`), an ASCII control character other than TAB, or one of
//! the bytes `FE`/`FF`, none of which are consumed by recovery itself.
//! Note that a control character that ends recovery is then lexed from the
//! start state where (unless it is whitespace) it is an error in its own
//! right: `"\x01"` after an error yields a second "stray" error.

/// Longest token text the lexer accumulates; one byte more and it gives up
/// on the token (64 MiB, as QEMU).
pub(crate) const MAX_TOKEN_SIZE: usize = 64 << 20;

/// Kind of a token handed to the streamer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    LCurly,
    RCurly,
    LSquare,
    RSquare,
    Colon,
    Comma,
    Integer,
    Float,
    Keyword,
    /// A complete single- or double-quoted string, quotes included.
    String,
    /// Input that cannot start or continue a token (error + recovery).
    Stray,
    /// An unfinished token that grew past [`MAX_TOKEN_SIZE`].
    Oversized,
    /// End of input (only from [`Lexer::flush`]).
    EndOfInput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Recovery,
    /// Inside a string; `quote` is the delimiter (`"` or `'`).
    Str {
        quote: u8,
    },
    /// Right after a backslash inside a string.
    StrEscape {
        quote: u8,
    },
    /// `-` seen.
    Sign,
    /// `0` or `-0` seen.
    Zero,
    /// Integer part with a non-zero leading digit.
    Digits,
    /// `.` seen, needs a digit.
    Point,
    /// Digits after the decimal point.
    Fraction,
    /// `e`/`E` seen, needs a sign or digit.
    ExpMark,
    /// Exponent sign seen, needs a digit.
    ExpSign,
    /// Exponent digits.
    ExpDigits,
    /// Lower-case letters.
    Keyword,
}

/// What to do with the current byte (`None` at end of input).
enum Step {
    /// Append the byte to the token and continue in the given state.
    Extend(State),
    /// Append the byte; it completes a token of this kind.
    Complete(TokenKind),
    /// Drop the byte and continue in the given state.
    Drop(State),
    /// The token ended before this byte: report it, then look at the byte
    /// again from the start state.
    EndBefore(TokenKind),
    /// Leave recovery and look at the byte again from the start state.
    Resync,
    /// Lexical error: append the byte (if any), report a stray token, and
    /// enter recovery.
    Fail,
}

fn is_structural(b: u8) -> bool {
    matches!(b, b'[' | b']' | b'{' | b'}' | b':' | b',')
}

/// Characters allowed inside strings, after a backslash included.
fn is_string_byte(b: u8) -> bool {
    (0x20..=0xFD).contains(&b)
}

fn step(state: State, byte: Option<u8>) -> Step {
    use Step::*;
    use TokenKind as K;
    match state {
        State::Start => match byte {
            Some(q @ (b'"' | b'\'')) => Extend(State::Str { quote: q }),
            Some(b'0') => Extend(State::Zero),
            Some(b'1'..=b'9') => Extend(State::Digits),
            Some(b'-') => Extend(State::Sign),
            Some(b'a'..=b'z') => Extend(State::Keyword),
            Some(b'{') => Complete(K::LCurly),
            Some(b'}') => Complete(K::RCurly),
            Some(b'[') => Complete(K::LSquare),
            Some(b']') => Complete(K::RSquare),
            Some(b':') => Complete(K::Colon),
            Some(b',') => Complete(K::Comma),
            Some(b' ' | b'\t' | b'\r' | b'\n') => Drop(State::Start),
            // Never asked at end of input: nothing is pending in Start.
            _ => Fail,
        },
        State::Recovery => match byte {
            Some(b'\t') => Drop(State::Recovery),
            Some(b) if is_structural(b) || !(0x20..0xFE).contains(&b) => Resync,
            Some(_) => Drop(State::Recovery),
            None => Resync,
        },
        State::Str { quote } => match byte {
            Some(b) if b == quote => Complete(K::String),
            Some(b'\\') => Extend(State::StrEscape { quote }),
            Some(b) if is_string_byte(b) => Extend(state),
            _ => Fail,
        },
        State::StrEscape { quote } => match byte {
            Some(b) if is_string_byte(b) => Extend(State::Str { quote }),
            _ => Fail,
        },
        State::Sign => match byte {
            Some(b'0') => Extend(State::Zero),
            Some(b'1'..=b'9') => Extend(State::Digits),
            _ => Fail,
        },
        State::Zero => match byte {
            // "01" is not a number, and not two numbers either.
            Some(b'0'..=b'9') => Fail,
            Some(b'.') => Extend(State::Point),
            _ => EndBefore(K::Integer),
        },
        State::Digits => match byte {
            Some(b'0'..=b'9') => Extend(State::Digits),
            Some(b'.') => Extend(State::Point),
            Some(b'e' | b'E') => Extend(State::ExpMark),
            _ => EndBefore(K::Integer),
        },
        State::Point => match byte {
            Some(b'0'..=b'9') => Extend(State::Fraction),
            _ => Fail,
        },
        State::Fraction => match byte {
            Some(b'0'..=b'9') => Extend(State::Fraction),
            Some(b'e' | b'E') => Extend(State::ExpMark),
            _ => EndBefore(K::Float),
        },
        State::ExpMark => match byte {
            Some(b'+' | b'-') => Extend(State::ExpSign),
            Some(b'0'..=b'9') => Extend(State::ExpDigits),
            _ => Fail,
        },
        State::ExpSign => match byte {
            Some(b'0'..=b'9') => Extend(State::ExpDigits),
            _ => Fail,
        },
        State::ExpDigits => match byte {
            Some(b'0'..=b'9') => Extend(State::ExpDigits),
            _ => EndBefore(K::Float),
        },
        State::Keyword => match byte {
            Some(b'a'..=b'z') => Extend(State::Keyword),
            _ => EndBefore(K::Keyword),
        },
    }
}

/// A token: its kind and its exact text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    pub(crate) text: Vec<u8>,
}

/// The tokenizer.  Completed tokens are appended to a caller-supplied list.
#[derive(Debug)]
pub(crate) struct Lexer {
    state: State,
    text: Vec<u8>,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer {
            state: State::Start,
            text: Vec::new(),
        }
    }
}

impl Lexer {
    fn finish(&mut self, kind: TokenKind, out: &mut Vec<Token>) {
        out.push(Token {
            kind,
            text: std::mem::take(&mut self.text),
        });
    }

    /// Process a chunk of input.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Token>) {
        while let Some((&byte, rest)) = bytes.split_first() {
            if let State::Str { quote } = self.state {
                // Fast path: ordinary string content just accumulates.  The
                // run is cut where the size check could first fire, so the
                // outcome is the same as feeding byte by byte.
                let run = bytes
                    .iter()
                    .take_while(|&&b| b != quote && b != b'\\' && is_string_byte(b))
                    .count()
                    .min(MAX_TOKEN_SIZE + 1 - self.text.len());
                if run > 0 {
                    self.text.extend_from_slice(&bytes[..run]);
                    bytes = &bytes[run..];
                    self.check_size(out);
                    continue;
                }
            }
            self.feed_byte(byte, out);
            bytes = rest;
        }
    }

    fn check_size(&mut self, out: &mut Vec<Token>) {
        if self.text.len() > MAX_TOKEN_SIZE {
            // Give up on this token; lexing resumes in the start state with
            // the next byte, wherever that is (even inside a string).
            self.finish(TokenKind::Oversized, out);
            self.state = State::Start;
        }
    }

    /// Process one input byte.
    pub(crate) fn feed_byte(&mut self, byte: u8, out: &mut Vec<Token>) {
        loop {
            match step(self.state, Some(byte)) {
                Step::Extend(next) => {
                    self.text.push(byte);
                    self.state = next;
                    break;
                }
                Step::Complete(kind) => {
                    self.text.push(byte);
                    self.finish(kind, out);
                    self.state = State::Start;
                    break;
                }
                Step::Drop(next) => {
                    self.text.clear();
                    self.state = next;
                    break;
                }
                Step::EndBefore(kind) => {
                    self.finish(kind, out);
                    self.state = State::Start;
                }
                Step::Resync => {
                    self.text.clear();
                    self.state = State::Start;
                }
                Step::Fail => {
                    self.text.push(byte);
                    self.finish(TokenKind::Stray, out);
                    self.state = State::Recovery;
                    break;
                }
            }
        }
        self.check_size(out);
    }

    /// End of input: complete or reject whatever is pending, then report
    /// [`TokenKind::EndOfInput`].  The lexer can be fed again afterwards.
    pub(crate) fn flush(&mut self, out: &mut Vec<Token>) {
        while self.state != State::Start {
            match step(self.state, None) {
                Step::EndBefore(kind) => {
                    self.finish(kind, out);
                    self.state = State::Start;
                }
                Step::Fail => {
                    self.finish(TokenKind::Stray, out);
                    self.state = State::Recovery;
                }
                // Resync, and (unreachable at end of input) the rest.
                _ => {
                    self.text.clear();
                    self.state = State::Start;
                }
            }
        }
        self.finish(TokenKind::EndOfInput, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TokenKind as K;

    fn lex(input: &[u8], flush: bool) -> Vec<(TokenKind, String)> {
        let mut lexer = Lexer::default();
        let mut out = Vec::new();
        for &b in input {
            lexer.feed_byte(b, &mut out);
        }
        let mut bulk = Lexer::default();
        let mut bulk_out = Vec::new();
        bulk.feed(input, &mut bulk_out);
        if flush {
            lexer.flush(&mut out);
            bulk.flush(&mut bulk_out);
        }
        assert_eq!(out, bulk_out, "bulk and bytewise lexing differ");
        out.into_iter()
            .map(|t| (t.kind, String::from_utf8_lossy(&t.text).into_owned()))
            .collect()
    }

    fn t(kind: TokenKind, s: &str) -> (TokenKind, String) {
        (kind, s.to_string())
    }

    #[test]
    fn structural_and_whitespace() {
        assert_eq!(
            lex(b" {\t}\r[\n] : , ", false),
            vec![
                t(K::LCurly, "{"),
                t(K::RCurly, "}"),
                t(K::LSquare, "["),
                t(K::RSquare, "]"),
                t(K::Colon, ":"),
                t(K::Comma, ","),
            ]
        );
    }

    #[test]
    fn numbers_need_lookahead() {
        assert_eq!(lex(b"12", false), vec![]);
        assert_eq!(
            lex(b"12", true),
            vec![t(K::Integer, "12"), t(K::EndOfInput, "")]
        );
        assert_eq!(
            lex(b"-0,1.5e+3]0 ", false),
            vec![
                t(K::Integer, "-0"),
                t(K::Comma, ","),
                t(K::Float, "1.5e+3"),
                t(K::RSquare, "]"),
                t(K::Integer, "0"),
            ]
        );
        assert_eq!(
            lex(b"1E5 2.0", true)[..2],
            [t(K::Float, "1E5"), t(K::Float, "2.0")]
        );
    }

    #[test]
    fn number_errors() {
        // Leading zero: the digit is part of the stray token.
        assert_eq!(lex(b"01 ", false), vec![t(K::Stray, "01")]);
        assert_eq!(lex(b"-x", false), vec![t(K::Stray, "-x")]);
        assert_eq!(lex(b"1.e", false), vec![t(K::Stray, "1.e")]);
        assert_eq!(lex(b"1e+ ", false), vec![t(K::Stray, "1e+ ")]);
        // At end of input the missing byte is not part of the token.
        assert_eq!(
            lex(b"1.", true),
            vec![t(K::Stray, "1."), t(K::EndOfInput, "")]
        );
        // "+1", ".5" and upper-case keywords are not tokens at all.
        assert_eq!(lex(b"+1,", false), vec![t(K::Stray, "+"), t(K::Comma, ",")]);
        assert_eq!(
            lex(b"TRUE,", false),
            vec![t(K::Stray, "T"), t(K::Comma, ",")]
        );
    }

    #[test]
    fn keywords_are_lowercase_runs() {
        assert_eq!(
            lex(b"true nul1", false),
            vec![t(K::Keyword, "true"), t(K::Keyword, "nul"),]
        );
        assert_eq!(
            lex(b"abcD", false),
            vec![t(K::Keyword, "abc"), t(K::Stray, "D")]
        );
    }

    #[test]
    fn strings() {
        assert_eq!(lex(br#""a\"b""#, false), vec![t(K::String, r#""a\"b""#)]);
        assert_eq!(
            lex(br#"'a"b\'c'"#, false),
            vec![t(K::String, r#"'a"b\'c'"#)]
        );
        // Anything from 0x20 to 0xFD is accepted here; validation is the
        // parser's job.
        assert_eq!(lex(b"\"\\q\x7F\"", false).len(), 1);
        assert_eq!(lex(b"\"\xC3\xA9\"", false)[0].0, K::String);
    }

    #[test]
    fn string_errors_include_the_bad_byte() {
        assert_eq!(lex(b"\"ab\ncd\"", false), vec![t(K::Stray, "\"ab\n")]);
        assert_eq!(lex(b"\"ab\xFE", false), vec![t(K::Stray, "\"ab\u{FFFD}")]);
        assert_eq!(lex(b"\"\\\x01", false), vec![t(K::Stray, "\"\\\x01")]);
        assert_eq!(
            lex(b"\"ab", true),
            vec![t(K::Stray, "\"ab"), t(K::EndOfInput, "")]
        );
    }

    #[test]
    fn recovery_skips_to_structural_or_control() {
        // After "%" everything up to the comma is dropped, quotes included.
        assert_eq!(
            lex(b"%abc \"x\" ,1 ", false),
            vec![t(K::Stray, "%"), t(K::Comma, ","), t(K::Integer, "1")]
        );
        // TAB does not end recovery, LF does.
        assert_eq!(
            lex(b"%a\tb\nc ", false),
            vec![t(K::Stray, "%"), t(K::Keyword, "c")]
        );
        // A control character ends recovery and is then an error itself.
        assert_eq!(
            lex(b"%\x01", false),
            vec![t(K::Stray, "%"), t(K::Stray, "\x01")]
        );
        assert_eq!(
            lex(b"%\xFF", false),
            vec![t(K::Stray, "%"), t(K::Stray, "\u{FFFD}")]
        );
        // Non-ASCII bytes other than FE/FF are skipped.
        assert_eq!(
            lex(b"%\xC3\xA9]", false),
            vec![t(K::Stray, "%"), t(K::RSquare, "]")]
        );
    }

    #[test]
    fn flush_resets() {
        let mut lexer = Lexer::default();
        let mut out = Vec::new();
        for &b in b"%abc" {
            lexer.feed_byte(b, &mut out);
        }
        lexer.flush(&mut out);
        for &b in b"[" {
            lexer.feed_byte(b, &mut out);
        }
        let kinds: Vec<_> = out.iter().map(|t| t.kind).collect();
        assert_eq!(kinds, vec![K::Stray, K::EndOfInput, K::LSquare]);
    }
}
