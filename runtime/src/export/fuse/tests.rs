//! Unit tests of the FUSE export operations.
