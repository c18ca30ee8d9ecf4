//! Keyval scalar conversions (placeholder until the keyval module lands).

use super::{Result, VisitError};

pub fn to_bool(path: &str, s: &str) -> Result<bool> {
    match s {
        "on" | "yes" | "true" | "y" => Ok(true),
        "off" | "no" | "false" | "n" => Ok(false),
        _ => Err(VisitError(format!(
            "Parameter '{path}' expects 'on' or 'off'"
        ))),
    }
}

pub fn to_int(path: &str, s: &str) -> Result<i64> {
    s.parse()
        .map_err(|_| VisitError(format!("Parameter '{path}' expects int64")))
}

pub fn to_uint(path: &str, s: &str) -> Result<u64> {
    s.parse()
        .map_err(|_| VisitError(format!("Parameter '{path}' expects uint64")))
}

pub fn to_size(path: &str, s: &str) -> Result<u64> {
    s.parse().map_err(|_| {
        VisitError(format!(
            "Parameter '{path}' expects a non-negative number below 2^64"
        ))
    })
}

pub fn to_number(path: &str, s: &str) -> Result<f64> {
    s.parse()
        .map_err(|_| VisitError(format!("Parameter '{path}' expects a number")))
}
