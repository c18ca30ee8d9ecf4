//! Generators: each takes a checked [`crate::Schema`] and returns text.
pub mod docs;
pub mod facts;
pub mod introspect;
pub mod rust;
