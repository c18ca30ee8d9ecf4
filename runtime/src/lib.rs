//! The qsd runtime.
