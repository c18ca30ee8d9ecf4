//! `if` conditions and build profiles.

use std::collections::BTreeSet;

/// A condition on a definition, member, branch, value or feature.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Cond {
    /// No condition: always present.
    #[default]
    Always,
    /// A configuration symbol such as `CONFIG_LINUX`.
    Name(String),
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
}

impl Cond {
    /// Whether this condition holds in `profile`.
    pub fn eval(&self, profile: &Profile) -> bool {
        match self {
            Cond::Always => true,
            Cond::Name(n) => profile.enabled.contains(n),
            Cond::All(v) => v.iter().all(|c| c.eval(profile)),
            Cond::Any(v) => v.iter().any(|c| c.eval(profile)),
            Cond::Not(c) => !c.eval(profile),
        }
    }

    pub fn is_always(&self) -> bool {
        matches!(self, Cond::Always)
    }

    /// Human-readable form used in the generated documentation.
    pub fn describe(&self) -> String {
        match self {
            Cond::Always => String::new(),
            Cond::Name(n) => n.clone(),
            Cond::All(v) => v
                .iter()
                .map(|c| c.describe_nested())
                .collect::<Vec<_>>()
                .join(" and "),
            Cond::Any(v) => v
                .iter()
                .map(|c| c.describe_nested())
                .collect::<Vec<_>>()
                .join(" or "),
            Cond::Not(c) => format!("not {}", c.describe_nested()),
        }
    }

    fn describe_nested(&self) -> String {
        match self {
            Cond::All(_) | Cond::Any(_) => format!("({})", self.describe()),
            _ => self.describe(),
        }
    }
}

/// The set of configuration symbols that are true in a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub enabled: BTreeSet<String>,
}

/// The symbols true in Debian's build of qemu-storage-daemon 10.0.2.
pub const QSD_10_0_2_DEBIAN: &[&str] = &[
    "CONFIG_LINUX",
    "CONFIG_POSIX",
    "HAVE_HOST_BLOCK_DEVICE",
    "CONFIG_REPLICATION",
    "CONFIG_VDUSE_BLK_EXPORT",
    "CONFIG_VHOST_USER_BLK_SERVER",
    "CONFIG_FUSE",
    "CONFIG_VHOST_CRYPTO",
    "CONFIG_SECRET_KEYRING",
    "HAVE_CHARDEV_SERIAL",
    "HAVE_CHARDEV_PARALLEL",
    "CONFIG_BRLAPI",
    "CONFIG_SPICE",
    "CONFIG_SPICE_PROTOCOL",
    "CONFIG_DBUS_DISPLAY",
    "CONFIG_LIBPMEM",
    "CONFIG_LINUX_IO_URING",
    "HAVE_IPPROTO_MPTCP",
    "CONFIG_ZSTD",
];

impl Profile {
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(enabled: I) -> Profile {
        Profile {
            enabled: enabled.into_iter().map(Into::into).collect(),
        }
    }
}

impl Default for Profile {
    /// The default profile reproduces Debian's QSD 10.0.2 build.
    fn default() -> Profile {
        Profile::new(QSD_10_0_2_DEBIAN.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation() {
        let p = Profile::new(["A", "B"]);
        let n = |s: &str| Cond::Name(s.into());
        assert!(Cond::Always.eval(&p));
        assert!(n("A").eval(&p));
        assert!(!n("C").eval(&p));
        assert!(Cond::All(vec![n("A"), n("B")]).eval(&p));
        assert!(!Cond::All(vec![n("A"), n("C")]).eval(&p));
        assert!(Cond::Any(vec![n("C"), n("B")]).eval(&p));
        assert!(Cond::Not(Box::new(n("C"))).eval(&p));
        let c = Cond::All(vec![
            n("A"),
            Cond::Any(vec![n("B"), Cond::Not(Box::new(n("C")))]),
        ]);
        assert_eq!(c.describe(), "A and (B or not C)");
        assert!(Profile::default().enabled.contains("CONFIG_FUSE"));
        assert!(!Profile::default().enabled.contains("CONFIG_BLKIO"));
    }
}
