//! QEMU's block permissions: what a user of a node does with it (`perm`)
//! and what it lets other users do at the same time (`shared`).

use qapi::types::BlockPermission;

/// A set of block permissions (QEMU's `BLK_PERM_*` bits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Perm(u8);

impl Perm {
    /// Reads return what was last written (not a stale cache).
    pub const CONSISTENT_READ: Perm = Perm(0x1);
    /// Writes that change the content.
    pub const WRITE: Perm = Perm(0x2);
    /// Writes that keep the content (copy-on-read, for instance).
    pub const WRITE_UNCHANGED: Perm = Perm(0x4);
    /// Changing the size.
    pub const RESIZE: Perm = Perm(0x8);
    /// No permission.
    pub const NONE: Perm = Perm(0);
    /// Every permission.
    pub const ALL: Perm = Perm(0xf);

    /// Number of permission bits.
    pub const COUNT: usize = 4;

    /// The raw bits.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The set with bit number `i` only.
    pub fn bit(i: usize) -> Perm {
        Perm((1u8 << i) & Self::ALL.0)
    }

    pub fn contains(self, other: Perm) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn intersects(self, other: Perm) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// QEMU's names, joined with ", " in bit order (`bdrv_perm_names`):
    /// "consistent read", "write", "write unchanged", "resize".
    pub fn names(self) -> String {
        const NAMES: [&str; Perm::COUNT] =
            ["consistent read", "write", "write unchanged", "resize"];
        NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.contains(Perm::bit(*i)))
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The QAPI list, highest bit first as `x-debug-query-block-graph`
    /// prints it.
    pub fn to_qapi(self) -> Vec<BlockPermission> {
        const QAPI: [BlockPermission; Perm::COUNT] = [
            BlockPermission::ConsistentRead,
            BlockPermission::Write,
            BlockPermission::WriteUnchanged,
            BlockPermission::Resize,
        ];
        (0..Perm::COUNT)
            .rev()
            .filter(|i| self.contains(Perm::bit(*i)))
            .map(|i| QAPI[i])
            .collect()
    }
}

impl std::ops::BitOr for Perm {
    type Output = Perm;
    fn bitor(self, o: Perm) -> Perm {
        Perm(self.0 | o.0)
    }
}

impl std::ops::BitOrAssign for Perm {
    fn bitor_assign(&mut self, o: Perm) {
        self.0 |= o.0;
    }
}

impl std::ops::BitAnd for Perm {
    type Output = Perm;
    fn bitand(self, o: Perm) -> Perm {
        Perm(self.0 & o.0)
    }
}

impl std::ops::BitAndAssign for Perm {
    fn bitand_assign(&mut self, o: Perm) {
        self.0 &= o.0;
    }
}

impl std::ops::Not for Perm {
    type Output = Perm;
    fn not(self) -> Perm {
        Perm(!self.0 & Perm::ALL.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_lists() {
        assert_eq!(
            Perm::ALL.names(),
            "consistent read, write, write unchanged, resize"
        );
        assert_eq!((Perm::WRITE | Perm::RESIZE).names(), "write, resize");
        assert_eq!(
            Perm::ALL.to_qapi(),
            vec![
                BlockPermission::Resize,
                BlockPermission::WriteUnchanged,
                BlockPermission::Write,
                BlockPermission::ConsistentRead
            ]
        );
        assert_eq!(!Perm::RESIZE, Perm(0x7));
    }
}
