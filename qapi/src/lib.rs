//! The QMP interface of qsd, generated from the QAPI schema in `schema/`.
//!
//! - [`types`]: one Rust type per schema type (structs, enums, unions with a
//!   `u` branch field, alternates), readable from QMP JSON and command-line
//!   keyval input with QEMU's error texts ([`visit`]), serializable in schema
//!   member order ([`ser`]), describable as JSON Schema;
//! - [`commands`]: the [`commands::Commands`] trait the runtime implements,
//!   the command table and the dispatcher;
//! - [`events`]: the [`events::Event`] enum;
//! - [`introspect`]: the `query-qmp-schema` data;
//! - [`keyval`], [`qemuopts`], [`cutils`]: the command-line syntaxes of QSD's
//!   options and QEMU's number parsing.

pub mod cutils;
pub mod error;
pub mod ghash;
pub mod json;
pub mod keyval;
pub mod qdict;
pub mod qemuopts;
pub mod ser;
mod strtod;
pub mod visit;

pub use error::{ErrorClass, QmpError};

/// The QAPI `null` type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Null;

impl serde::Serialize for Null {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

impl<'de> serde::Deserialize<'de> for Null {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ser::deserialize(d)
    }
}

impl visit::Visit for Null {
    fn visit(v: &serde_json::Value, p: &visit::Path) -> visit::Result<Self> {
        visit::null(v, p)
    }
}

impl schemars::JsonSchema for Null {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "null".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "null" })
    }
}

/// Every type of the schema.
#[allow(clippy::all, missing_docs)]
pub mod types {
    include!(concat!(env!("OUT_DIR"), "/types.rs"));
}

/// Commands: the trait the runtime implements and the dispatcher.
#[allow(clippy::all)]
pub mod commands {
    include!(concat!(env!("OUT_DIR"), "/commands.rs"));
}

/// Events.
#[allow(clippy::all)]
pub mod events {
    include!(concat!(env!("OUT_DIR"), "/events.rs"));
}

/// The `query-qmp-schema` data.
pub mod introspect {
    include!(concat!(env!("OUT_DIR"), "/introspect.rs"));
}
