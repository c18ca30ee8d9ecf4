//! The QMP interface of qsd, generated from the QAPI schema in `schema/`.

pub mod json;
