//! Syntax layer: turns the text of one schema file into raw expressions and
//! raw documentation blocks, each tagged with its line number.

use pest::Parser as _;
use pest_derive::Parser;

use crate::error::{Error, Loc};

#[derive(Parser)]
#[grammar = "parse/qapi.pest"]
struct QapiParser;

/// A value in a schema expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    Str(String),
    Bool(bool),
    List(Vec<RawNode>),
    Dict(RawDict),
}

/// A value with the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct RawNode {
    pub value: Raw,
    pub line: usize,
}

/// An object: keys in source order, duplicates already rejected.
pub type RawDict = Vec<(String, RawNode)>;

/// One top-level item of a schema file.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A `##` documentation block: the text of each line after `#`, with the
    /// line number of that line.
    Doc {
        line: usize,
        lines: Vec<(usize, String)>,
    },
    /// A top-level expression.
    Expr { line: usize, dict: RawDict },
}

/// Parses the text of schema file `file`.
pub fn parse_file(file: &str, text: &str) -> Result<Vec<Item>, Error> {
    let pairs = QapiParser::parse(Rule::file, text).map_err(|e| {
        let line = match e.line_col {
            pest::error::LineColLocation::Pos((l, _)) => l,
            pest::error::LineColLocation::Span((l, _), _) => l,
        };
        let msg = match &e.variant {
            pest::error::ErrorVariant::ParsingError { positives, .. } => {
                describe_expected(positives, text, &e.location)
            }
            pest::error::ErrorVariant::CustomError { message } => message.clone(),
        };
        Error::new(Loc::new(file, line), msg)
    })?;
    let mut items = Vec::new();
    for pair in pairs.flatten() {
        match pair.as_rule() {
            Rule::doc_block => {
                let line = pair.line_col().0;
                let lines = pair
                    .into_inner()
                    .filter(|p| p.as_rule() == Rule::doc_line)
                    .map(|p| {
                        let l = p.line_col().0;
                        let text = p.into_inner().next().map(|t| t.as_str()).unwrap_or("");
                        (l, text.trim_end_matches('\r').to_string())
                    })
                    .collect();
                items.push(Item::Doc { line, lines });
            }
            Rule::expr => {
                let line = pair.line_col().0;
                let obj = pair.into_inner().next().ok_or_else(|| {
                    Error::new(Loc::new(file, line), "expected an object".to_string())
                })?;
                let dict = convert_object(file, obj)?;
                items.push(Item::Expr { line, dict });
            }
            _ => {}
        }
    }
    Ok(items)
}

fn describe_expected(positives: &[Rule], text: &str, loc: &pest::error::InputLocation) -> String {
    let pos = match loc {
        pest::error::InputLocation::Pos(p) => *p,
        pest::error::InputLocation::Span((p, _)) => *p,
    };
    let found = text[pos..].chars().next();
    let what: Vec<&str> = positives
        .iter()
        .map(|r| match r {
            Rule::expr | Rule::object => "'{'",
            Rule::doc_block => "'##'",
            Rule::pair | Rule::string => "a string in single quotes",
            Rule::value => "a value",
            Rule::array => "'['",
            Rule::boolean => "'true' or 'false'",
            Rule::str_inner => "the end of the string",
            Rule::EOI => "end of file",
            Rule::file => "'{' or '##'",
            Rule::doc_line | Rule::doc_text => "a '#' line or the '##' that closes the doc block",
            _ => "more input",
        })
        .collect();
    if found == Some('\'') {
        // A string that failed as a whole: say why.
        let rest = &text[pos + 1..];
        let end = rest.find(['\'', '\\', '\n']);
        match end.map(|i| rest.as_bytes()[i]) {
            Some(b'\\') => return "backslash escapes are not allowed in schema strings".into(),
            Some(b'\n') | None => return "unterminated string".into(),
            _ => {}
        }
    }
    let found = match found {
        None => "end of file".to_string(),
        Some('\\') => "a backslash (escapes are not allowed in schema strings)".to_string(),
        Some('"') => "'\"' (schema strings use single quotes)".to_string(),
        Some('\n') | Some('\r') => "a line break".to_string(),
        Some(c) => format!("'{}'", c.escape_debug()),
    };
    if what.is_empty() {
        format!("unexpected {found}")
    } else {
        let mut w = what;
        w.dedup();
        format!("expected {}, found {found}", w.join(" or "))
    }
}

fn convert_object(file: &str, pair: pest::iterators::Pair<'_, Rule>) -> Result<RawDict, Error> {
    let mut dict: RawDict = Vec::new();
    for p in pair.into_inner() {
        let line = p.line_col().0;
        let mut inner = p.into_inner();
        let (Some(k), Some(v)) = (inner.next(), inner.next()) else {
            return Err(Error::new(Loc::new(file, line), "malformed member".into()));
        };
        let key = string_text(k);
        if dict.iter().any(|(x, _)| *x == key) {
            return Err(Error::new(
                Loc::new(file, line),
                format!("duplicate key '{key}'"),
            ));
        }
        dict.push((key, convert_value(file, v)?));
    }
    Ok(dict)
}

fn string_text(p: pest::iterators::Pair<'_, Rule>) -> String {
    p.into_inner()
        .next()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default()
}

fn convert_value(file: &str, pair: pest::iterators::Pair<'_, Rule>) -> Result<RawNode, Error> {
    let line = pair.line_col().0;
    let inner = pair
        .into_inner()
        .next()
        .ok_or_else(|| Error::new(Loc::new(file, line), "expected a value".into()))?;
    let value = match inner.as_rule() {
        Rule::object => Raw::Dict(convert_object(file, inner)?),
        Rule::array => Raw::List(
            inner
                .into_inner()
                .map(|v| convert_value(file, v))
                .collect::<Result<_, _>>()?,
        ),
        Rule::string => Raw::Str(string_text(inner)),
        Rule::boolean => Raw::Bool(inner.as_str() == "true"),
        _ => return Err(Error::new(Loc::new(file, line), "expected a value".into())),
    };
    Ok(RawNode { value, line })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Vec<Item>, Error> {
        parse_file("t.json", s)
    }

    #[test]
    fn expressions_and_comments() {
        let items = parse(
            "# a comment\n{ 'struct': 'A', # trailing\n  'data': { 'x': 'int', '*y': ['str'] } }\n{ 'enum': 'E', 'data': [], 'x': true }\n",
        )
        .unwrap();
        assert_eq!(items.len(), 2);
        let Item::Expr { line, dict } = &items[0] else {
            panic!()
        };
        assert_eq!(*line, 2);
        assert_eq!(dict[0].0, "struct");
        assert_eq!(dict[1].1.line, 3);
        let Item::Expr { dict, .. } = &items[1] else {
            panic!()
        };
        assert_eq!(dict[2].1.value, Raw::Bool(true));
    }

    #[test]
    fn doc_blocks_keep_lines() {
        let items =
            parse("##\n# @A:\n#\n# text here\n##\n{ 'struct': 'A', 'data': {} }\n").unwrap();
        let Item::Doc { line, lines } = &items[0] else {
            panic!()
        };
        assert_eq!(*line, 1);
        assert_eq!(lines[0], (2, " @A:".to_string()));
        assert_eq!(lines[1], (3, "".to_string()));
        assert_eq!(lines[2], (4, " text here".to_string()));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("{ 'a': 'b' }\n{ 'a': \"b\" }").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.json:2: expected a value, found '\"' (schema strings use single quotes)"
        );
        let e = parse("{ 'a': 'b\\n' }").unwrap_err();
        assert!(e.to_string().contains("backslash"), "{e}");
        let e = parse("{ 'a': 'b', 'a': 'c' }").unwrap_err();
        assert_eq!(e.to_string(), "t.json:1: duplicate key 'a'");
        let e = parse("{ 'a': 'b' ").unwrap_err();
        assert!(e.to_string().starts_with("t.json:1: expected"), "{e}");
        let e = parse("[ 'a' ]").unwrap_err();
        assert!(e.to_string().contains("expected '{'"), "{e}");
        let e = parse("{ 'a': 1 }").unwrap_err();
        assert!(e.to_string().contains("found '1'"), "{e}");
        let e = parse("{ 'a': 'b\nc' }").unwrap_err();
        assert!(e.to_string().starts_with("t.json:1:"), "{e}");
    }

    #[test]
    fn unterminated_doc_block() {
        assert!(parse("##\n# @A:\n{ 'a': 'b' }\n").is_err());
    }
}
