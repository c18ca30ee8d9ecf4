//! QMP errors: a class and a human-readable description.

use crate::visit::VisitError;

/// QEMU's error classes (the `class` member of an error reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    GenericError,
    CommandNotFound,
    DeviceNotActive,
    DeviceNotFound,
    KVMMissingCap,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::CommandNotFound => "CommandNotFound",
            ErrorClass::DeviceNotActive => "DeviceNotActive",
            ErrorClass::DeviceNotFound => "DeviceNotFound",
            ErrorClass::KVMMissingCap => "KVMMissingCap",
        }
    }
}

/// An error a command returns to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{desc}")]
pub struct QmpError {
    pub class: ErrorClass,
    pub desc: String,
}

impl QmpError {
    /// A `GenericError` with text `desc`.
    pub fn generic(desc: impl Into<String>) -> QmpError {
        QmpError {
            class: ErrorClass::GenericError,
            desc: desc.into(),
        }
    }

    pub fn new(class: ErrorClass, desc: impl Into<String>) -> QmpError {
        QmpError {
            class,
            desc: desc.into(),
        }
    }

    /// The error of a command that is in the schema but not implemented by
    /// this daemon yet.
    pub fn not_implemented(command: &str) -> QmpError {
        QmpError::generic(format!(
            "Command '{command}' is not implemented by this daemon yet"
        ))
    }
}

impl From<VisitError> for QmpError {
    fn from(e: VisitError) -> QmpError {
        QmpError::generic(e.0)
    }
}
