//! The block layer. For now only image creation (`blockdev-create`) lives
//! here; nodes, drivers and exports come later.

pub mod create;
