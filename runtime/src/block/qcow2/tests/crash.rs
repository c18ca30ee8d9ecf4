//! Crash safety (filled in below).
