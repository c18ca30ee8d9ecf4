//! One QMP request: QEMU's checks on the request object, command lookup,
//! dispatch, and the reply.
//!
//! The checks and their texts follow qemu-storage-daemon 10.0.2:
//! members are examined in QDict order and the first bad one is reported;
//! then a missing command or `execute`/`exec-oob` clash; then the command
//! lookup (during negotiation every command but `qmp_capabilities` answers
//! `Expecting capabilities negotiation with 'qmp_capabilities'`).

use qapi::commands::{command_flags, dispatch};
use qapi::qdict::order as qdict_order;
use qapi::{ErrorClass, QmpError};
use serde_json::{Map, Value};

use super::CommandContext;
use crate::Daemon;

/// The reply to a request that failed.
pub fn error_reply(e: &QmpError, id: Option<&Value>) -> Value {
    let mut err = Map::new();
    err.insert("class".into(), Value::from(e.class.as_str()));
    err.insert("desc".into(), Value::from(e.desc.clone()));
    let mut m = Map::new();
    m.insert("error".into(), Value::Object(err));
    if let Some(id) = id {
        m.insert("id".into(), id.clone());
    }
    Value::Object(m)
}

fn success_reply(ret: Value, id: Option<&Value>) -> Value {
    let mut m = Map::new();
    m.insert("return".into(), ret);
    if let Some(id) = id {
        m.insert("id".into(), id.clone());
    }
    Value::Object(m)
}

/// Checks the members of a request object. Returns the command name and
/// whether it asks for out-of-band execution.
fn check_request(dict: &Map<String, Value>, oob_enabled: bool) -> Result<(&str, bool), QmpError> {
    for key in qdict_order(dict) {
        let v = &dict[key];
        match key {
            "execute" => {
                if !v.is_string() {
                    return Err(QmpError::generic(
                        "QMP input member 'execute' must be a string",
                    ));
                }
            }
            "exec-oob" => {
                if !oob_enabled {
                    return Err(QmpError::generic(
                        "QMP input member 'exec-oob' is unexpected",
                    ));
                }
                if !v.is_string() {
                    return Err(QmpError::generic(
                        "QMP input member 'exec-oob' must be a string",
                    ));
                }
            }
            "arguments" => {
                if !v.is_object() {
                    return Err(QmpError::generic(
                        "QMP input member 'arguments' must be an object",
                    ));
                }
            }
            "id" => {}
            _ => {
                return Err(QmpError::generic(format!(
                    "QMP input member '{key}' is unexpected"
                )))
            }
        }
    }
    match (
        dict.get("execute").and_then(Value::as_str),
        dict.get("exec-oob").and_then(Value::as_str),
    ) {
        (Some(_), Some(_)) => Err(QmpError::generic(
            "QMP input member 'execute' clashes with 'exec-oob'",
        )),
        (Some(c), None) => Ok((c, false)),
        (None, Some(c)) => Ok((c, true)),
        (None, None) => Err(QmpError::generic("QMP input lacks member 'execute'")),
    }
}

/// Handles one parsed request. Returns the reply to send, if any.
pub async fn handle_request(
    d: &Daemon,
    req: Value,
    cx: &CommandContext,
    oob_enabled: bool,
) -> Option<Value> {
    handle_request_locked(d, req, cx, oob_enabled).await.0
}

/// [`handle_request`], returning with the command lock still held when the
/// command ran in-band: the caller queues the reply, then drops the guard,
/// so work waiting for the lock (job completions and their events) comes
/// after the reply, as in QEMU.
pub async fn handle_request_locked<'a>(
    d: &'a Daemon,
    req: Value,
    cx: &CommandContext,
    oob_enabled: bool,
) -> (Option<Value>, Option<tokio::sync::MutexGuard<'a, ()>>) {
    let Value::Object(dict) = req else {
        let e = QmpError::generic("QMP input must be a JSON object");
        return (Some(error_reply(&e, None)), None);
    };
    let id = dict.get("id");
    let (name, oob) = match check_request(&dict, oob_enabled) {
        Ok(x) => x,
        Err(e) => return (Some(error_reply(&e, id)), None),
    };
    let flags = match command_flags(name) {
        Some(f) if !cx.negotiating || name == "qmp_capabilities" => f,
        _ => {
            let desc = if cx.negotiating {
                "Expecting capabilities negotiation with 'qmp_capabilities'".to_string()
            } else {
                format!("The command {name} has not been found")
            };
            let e = QmpError::new(ErrorClass::CommandNotFound, desc);
            return (Some(error_reply(&e, id)), None);
        }
    };
    if oob && !flags.allow_oob {
        let e = QmpError::generic(format!("The command {name} does not support OOB"));
        return (Some(error_reply(&e, id)), None);
    }
    let empty = Value::Object(Map::new());
    let args = dict.get("arguments").unwrap_or(&empty);
    let mut big_lock = None;
    let result = if oob {
        dispatch(d, cx, name, args).await
    } else {
        big_lock = Some(d.command_lock.lock().await);
        dispatch(d, cx, name, args).await
    };
    let result = result.unwrap_or_else(|| {
        Err(QmpError::new(
            ErrorClass::CommandNotFound,
            format!("The command {name} has not been found"),
        ))
    });
    let reply = match result {
        Ok(_) if !flags.success_response => None,
        Ok(ret) => Some(success_reply(ret, id)),
        Err(e) => Some(error_reply(&e, id)),
    };
    (reply, big_lock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value, oob: bool) -> Result<(String, bool), String> {
        let Value::Object(m) = v else { panic!() };
        check_request(&m, oob)
            .map(|(c, o)| (c.to_string(), o))
            .map_err(|e| e.desc)
    }

    #[test]
    fn request_checks() {
        assert_eq!(
            check(json!({"execute": "x"}), false),
            Ok(("x".into(), false))
        );
        assert_eq!(
            check(json!({"exec": 1}), false).unwrap_err(),
            "QMP input member 'exec' is unexpected"
        );
        assert_eq!(
            check(json!({}), false).unwrap_err(),
            "QMP input lacks member 'execute'"
        );
        assert_eq!(
            check(json!({"execute": 1}), false).unwrap_err(),
            "QMP input member 'execute' must be a string"
        );
        assert_eq!(
            check(json!({"execute": "q", "arguments": []}), false).unwrap_err(),
            "QMP input member 'arguments' must be an object"
        );
        assert_eq!(
            check(json!({"exec-oob": "q"}), false).unwrap_err(),
            "QMP input member 'exec-oob' is unexpected"
        );
        assert_eq!(
            check(json!({"exec-oob": "q"}), true),
            Ok(("q".into(), true))
        );
        assert_eq!(
            check(json!({"exec-oob": "q", "execute": "x"}), true).unwrap_err(),
            "QMP input member 'execute' clashes with 'exec-oob'"
        );
    }
}
