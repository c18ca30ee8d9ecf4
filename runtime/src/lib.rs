//! The qsd runtime: everything behind the command line.
//!
//! - [`qmp`]: the QMP monitor (greeting, negotiation, request checks,
//!   dispatch to the generated [`qapi::commands::dispatch`], events);
//! - [`chardev`]: character devices, the transports monitors run on;
//! - [`objects`]: the QOM object registry (`object-add`, `qom-*`);
//! - [`jobs`]: background jobs and the `job-*` commands;
//! - [`block`]: the block layer (for now: `blockdev-create`);
//! - [`daemon`]: the shared state and the implementation of the generated
//!   [`qapi::commands::Commands`] trait.

pub mod block;
pub mod chardev;
pub mod daemon;
pub mod jobs;
pub mod objects;
pub mod qmp;

pub use daemon::Daemon;
