//! Output side of the generated types: serialization in schema member order
//! (base members first, then branch members), `Deserialize` through the QAPI
//! input visitor, and JSON Schema building blocks.

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serializer};
use serde_json::{json, Map, Value};

use crate::visit::{Mode, Path, Visit};

/// Object types write their members into an open map, so that a union can
/// write its base members and then its branch's members into one object.
pub trait SerializeMembers {
    fn serialize_members<M: SerializeMap>(&self, m: &mut M) -> Result<(), M::Error>;
}

/// Serializes an object type as a map of its members.
pub fn serialize_object<T: SerializeMembers, S: Serializer>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(None)?;
    v.serialize_members(&mut m)?;
    m.end()
}

/// `Deserialize` for generated types: QMP's input rules and error texts.
pub fn deserialize<'de, T: Visit, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    let v = Value::deserialize(d)?;
    T::visit(&v, &Path::root(Mode::Json)).map_err(serde::de::Error::custom)
}

/// A schema from generated JSON text.
pub fn schema_from_json(text: &str) -> schemars::Schema {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| schemars::Schema::try_from(v).ok())
        .unwrap_or_default()
}

/// An object schema from (name, schema, required) triples.
pub fn object_schema(
    description: &str,
    props: Vec<(&str, schemars::Schema, bool)>,
) -> schemars::Schema {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (name, schema, req) in props {
        properties.insert(name.to_string(), schema.to_value());
        if req {
            required.push(Value::String(name.to_string()));
        }
    }
    let mut v = json!({ "type": "object", "properties": properties });
    if !required.is_empty() {
        v["required"] = Value::Array(required);
    }
    if !description.is_empty() {
        v["description"] = Value::String(description.to_string());
    }
    schemars::Schema::try_from(v).unwrap_or_default()
}

/// Adds a union's branches: one `oneOf` entry per discriminator value, with
/// the branch type's members where there is one.
pub fn add_union_branches(
    s: &mut schemars::Schema,
    discriminator: &str,
    branches: Vec<(&str, Option<schemars::Schema>)>,
) {
    let one_of: Vec<Value> = branches
        .into_iter()
        .map(|(value, schema)| {
            let mut b = json!({
                "properties": { discriminator: { "const": value } },
                "required": [discriminator],
            });
            if let Some(schema) = schema {
                b["allOf"] = json!([schema.to_value()]);
            }
            b
        })
        .collect();
    s.insert("oneOf".to_string(), Value::Array(one_of));
}

/// A `oneOf` schema for alternates.
pub fn one_of_schema(description: &str, branches: Vec<schemars::Schema>) -> schemars::Schema {
    let mut v = json!({ "oneOf": branches.into_iter().map(|b| b.to_value()).collect::<Vec<_>>() });
    if !description.is_empty() {
        v["description"] = Value::String(description.to_string());
    }
    schemars::Schema::try_from(v).unwrap_or_default()
}

/// The `return` value of a command: its result serialized in member order.
pub fn to_return<T: serde::Serialize>(r: &T) -> Result<Value, crate::QmpError> {
    serde_json::to_value(r)
        .map_err(|e| crate::QmpError::generic(format!("Cannot serialize the result: {e}")))
}
