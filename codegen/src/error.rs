//! Errors of the schema front end: every one names a file and line.

use std::fmt;

/// A position in a schema file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Loc {
    pub file: String,
    pub line: usize,
}

impl Loc {
    pub fn new(file: &str, line: usize) -> Loc {
        Loc {
            file: file.to_string(),
            line,
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A schema error: where, and what is wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{loc}: {msg}")]
pub struct Error {
    pub loc: Loc,
    pub msg: String,
}

impl Error {
    pub fn new(loc: Loc, msg: String) -> Error {
        Error { loc, msg }
    }
}

/// Several schema errors found in one pass, reported together.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Errors(pub Vec<Error>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl From<Error> for Errors {
    fn from(e: Error) -> Errors {
        Errors(vec![e])
    }
}
