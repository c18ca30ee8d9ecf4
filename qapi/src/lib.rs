//! The QMP interface of qsd, generated from the QAPI schema in `schema/`, and
//! the parsers of QSD's command-line option syntaxes.

pub mod cutils;
pub mod keyval;
pub mod qemuopts;
mod strtod;
