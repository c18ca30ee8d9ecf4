//! The QOM QMP commands: `qom-list`, `qom-get`, `qom-set`,
//! `qom-list-types`, `qom-list-properties`, `object-add`, `object-del`.

use qapi::types::*;
use qapi::{ErrorClass, QmpError};

use super::tree::{self, Property, Resolved};
use super::types;
use crate::Daemon;

fn device_not_found(path: &str) -> QmpError {
    QmpError::new(
        ErrorClass::DeviceNotFound,
        format!("Device '{path}' not found"),
    )
}

/// Resolves the path of `qom-get`/`qom-set`, which do not report ambiguity.
fn resolve_quiet(d: &Daemon, path: &str) -> Result<tree::Node, QmpError> {
    match tree::resolve(d, path) {
        Resolved::Found(n) => Ok(n),
        Resolved::NotFound | Resolved::Ambiguous => Err(device_not_found(path)),
    }
}

/// Lists properties in reply order: QEMU prepends while iterating.
fn infos(props: Vec<Property>) -> Vec<ObjectPropertyInfo> {
    props
        .iter()
        .rev()
        .map(|p| ObjectPropertyInfo {
            name: p.name().to_string(),
            type_: p.type_(),
            description: None,
            default_value: None,
        })
        .collect()
}

pub fn qom_list(d: &Daemon, args: QomListArgs) -> Result<Vec<ObjectPropertyInfo>, QmpError> {
    let node = match tree::resolve(d, &args.path) {
        Resolved::Found(n) => n,
        Resolved::Ambiguous => {
            return Err(QmpError::generic(format!(
                "Path '{}' is ambiguous",
                args.path
            )))
        }
        Resolved::NotFound => return Err(device_not_found(&args.path)),
    };
    Ok(infos(tree::properties(d, &node)))
}

pub fn qom_get(d: &Daemon, args: QomGetArgs) -> Result<serde_json::Value, QmpError> {
    let node = resolve_quiet(d, &args.path)?;
    tree::get(d, &node, &args.property)
}

pub fn qom_set(d: &Daemon, args: QomSetArgs) -> Result<(), QmpError> {
    let node = resolve_quiet(d, &args.path)?;
    tree::set(d, &node, &args.property, &args.value)
}

pub fn qom_list_types(
    _d: &Daemon,
    args: QomListTypesArgs,
) -> Result<Vec<ObjectTypeInfo>, QmpError> {
    Ok(
        types::list_types(args.implements.as_deref(), args.abstract_.unwrap_or(false))
            .into_iter()
            .map(|t| ObjectTypeInfo {
                name: t.name.to_string(),
                abstract_: t.abstract_.then_some(true),
                parent: t.parent.map(str::to_string),
            })
            .collect(),
    )
}

pub fn qom_list_properties(
    _d: &Daemon,
    args: QomListPropertiesArgs,
) -> Result<Vec<ObjectPropertyInfo>, QmpError> {
    let class = types::lookup(&args.typename).ok_or_else(|| {
        QmpError::new(
            ErrorClass::DeviceNotFound,
            format!("Class '{}' not found", args.typename),
        )
    })?;
    if !class.is_a("object") {
        return Err(QmpError::generic("Parameter 'typename' expects a QOM type"));
    }
    // A fresh instance of any of QSD's types has no instance properties,
    // so concrete and abstract types both list their class properties.
    Ok(infos(
        class
            .class_props()
            .into_iter()
            .map(Property::Class)
            .collect(),
    ))
}

pub fn object_add(d: &Daemon, args: ObjectOptions) -> Result<(), QmpError> {
    d.objects.add(&args)
}

pub fn object_del(d: &Daemon, args: ObjectDelArgs) -> Result<(), QmpError> {
    d.objects.delete(&args.id)
}
