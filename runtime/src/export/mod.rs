//! Block exports: servers that make block nodes reachable from outside.
//!
//! - [`nbd`]: the NBD (Network Block Device) export.

pub mod nbd;
