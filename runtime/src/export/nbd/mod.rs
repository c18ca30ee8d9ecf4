//! The NBD export.
//!
//! - [`proto`]: the NBD wire protocol as a pure, I/O-free codec (handshake,
//!   transmission, and a handshake state machine that decides like QEMU's
//!   server does).

pub mod proto;
