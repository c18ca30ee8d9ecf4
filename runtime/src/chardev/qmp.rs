//! Chardev QMP commands.

use qapi::types::*;
use qapi::QmpError;

use crate::Daemon;

pub fn query_chardev(_d: &Daemon) -> Result<Vec<ChardevInfo>, QmpError> {
    Err(QmpError::not_implemented("query-chardev"))
}

pub fn query_chardev_backends(_d: &Daemon) -> Result<Vec<ChardevBackendInfo>, QmpError> {
    Err(QmpError::not_implemented("query-chardev-backends"))
}

pub fn ringbuf_write(_d: &Daemon, _args: RingbufWriteArgs) -> Result<(), QmpError> {
    Err(QmpError::not_implemented("ringbuf-write"))
}

pub fn ringbuf_read(_d: &Daemon, _args: RingbufReadArgs) -> Result<String, QmpError> {
    Err(QmpError::not_implemented("ringbuf-read"))
}

pub fn chardev_add(_d: &Daemon, _args: ChardevAddArgs) -> Result<ChardevReturn, QmpError> {
    Err(QmpError::not_implemented("chardev-add"))
}

pub fn chardev_change(_d: &Daemon, _args: ChardevChangeArgs) -> Result<ChardevReturn, QmpError> {
    Err(QmpError::not_implemented("chardev-change"))
}

pub fn chardev_remove(_d: &Daemon, _args: ChardevRemoveArgs) -> Result<(), QmpError> {
    Err(QmpError::not_implemented("chardev-remove"))
}

pub fn chardev_send_break(_d: &Daemon, _args: ChardevSendBreakArgs) -> Result<(), QmpError> {
    Err(QmpError::not_implemented("chardev-send-break"))
}
