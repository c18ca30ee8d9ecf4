//! QAPI schema parser and generators.
