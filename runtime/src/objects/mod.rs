//! The QOM object registry: user-creatable objects (`object-add`,
//! `--object`) and the `qom-*` commands.

pub mod qmp;

/// Objects created by the user, by id.
#[derive(Default)]
pub struct Registry {}

impl Registry {
    pub fn new() -> Registry {
        Registry {}
    }
}
