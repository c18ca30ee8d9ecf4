//! QAPI schema front end and generators for qsd.
//!
//! - [`parse`]: the pest grammar and the syntax layer (raw expressions and
//!   doc blocks with line numbers);
//! - [`model`]: loading (includes, pragmas) and QAPI's semantic rules, giving
//!   a checked [`model::Schema`];
//! - [`gen`]: generators for Rust code, introspection data and docs.

pub mod error;
pub mod gen;
pub mod model;
pub mod parse;

pub use error::{Error, Errors, Loc};
pub use model::{load, Profile, Schema};
