//! QOM QMP commands.

use qapi::types::*;
use qapi::QmpError;

use crate::Daemon;

pub fn qom_list(_d: &Daemon, _args: QomListArgs) -> Result<Vec<ObjectPropertyInfo>, QmpError> {
    Err(QmpError::not_implemented("qom-list"))
}

pub fn qom_get(_d: &Daemon, _args: QomGetArgs) -> Result<serde_json::Value, QmpError> {
    Err(QmpError::not_implemented("qom-get"))
}

pub fn qom_set(_d: &Daemon, _args: QomSetArgs) -> Result<(), QmpError> {
    Err(QmpError::not_implemented("qom-set"))
}

pub fn qom_list_types(
    _d: &Daemon,
    _args: QomListTypesArgs,
) -> Result<Vec<ObjectTypeInfo>, QmpError> {
    Err(QmpError::not_implemented("qom-list-types"))
}

pub fn qom_list_properties(
    _d: &Daemon,
    _args: QomListPropertiesArgs,
) -> Result<Vec<ObjectPropertyInfo>, QmpError> {
    Err(QmpError::not_implemented("qom-list-properties"))
}

pub fn object_add(_d: &Daemon, _args: ObjectOptions) -> Result<(), QmpError> {
    Err(QmpError::not_implemented("object-add"))
}

pub fn object_del(_d: &Daemon, _args: ObjectDelArgs) -> Result<(), QmpError> {
    Err(QmpError::not_implemented("object-del"))
}
