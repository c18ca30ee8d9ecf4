//! The QOM types of qemu-storage-daemon 10.0.2: names, parents, whether
//! they are abstract or user-creatable, and the properties each class adds.
//!
//! # Why a table, and in this order
//!
//! QEMU keeps its types in a GLib hash table keyed by name; `qom-list-types`
//! walks that table and prepends each entry to its reply, so QSD answers in
//! the reverse of the table's slot order. The slot order depends on the
//! names (hash values, which [`qapi::ghash`] models) *and* on the order of
//! insertion wherever two names collide, and that insertion order is the
//! order in which the linker laid out the module constructors of QSD's
//! build: a fact about one binary that nothing in the schema or the source
//! text determines. Neither alphabetical nor any other order we can derive
//! reproduces the reply (12 of the 47 positions come out differently), so
//! [`TYPES`] records QSD's types directly in the table's iteration order.
//!
//! Class properties are a different matter: each class has its own small
//! hash table, filled by its `class_init` in source order. For those we
//! record the insertion order and let [`qapi::ghash::GHashTable`] compute
//! the iteration order, which reproduces QSD's `qom-list-properties` and
//! `qom-list` replies for every type (checked by the unit tests below and
//! the black-box tests against the live daemon).
//!
//! There are no property descriptions or default values in QSD's build,
//! which is why [`Prop`] has neither.

use qapi::ghash::GHashTable;

/// One property a class adds.
#[derive(Debug, PartialEq, Eq)]
pub struct Prop {
    /// The property name.
    pub name: &'static str,
    /// The QOM type string (`int`, `string`, a QAPI type name...).
    pub type_: &'static str,
    /// Whether the property has a setter (read-only otherwise).
    pub settable: bool,
}

/// One QOM type.
#[derive(Debug, PartialEq, Eq)]
pub struct TypeInfo {
    pub name: &'static str,
    pub parent: Option<&'static str>,
    /// Abstract types cannot be instantiated.
    pub abstract_: bool,
    /// The class (or an ancestor) implements the `user-creatable`
    /// interface, so `object-add` may create it if it is concrete.
    pub user_creatable: bool,
    /// Properties this class adds, in the order its `class_init` adds them.
    pub props: &'static [Prop],
}

const fn p(name: &'static str, type_: &'static str) -> Prop {
    Prop {
        name,
        type_,
        settable: true,
    }
}

const fn ro(name: &'static str, type_: &'static str) -> Prop {
    Prop {
        name,
        type_,
        settable: false,
    }
}

const fn ty(
    name: &'static str,
    parent: Option<&'static str>,
    abstract_: bool,
    user_creatable: bool,
    props: &'static [Prop],
) -> TypeInfo {
    TypeInfo {
        name,
        parent,
        abstract_,
        user_creatable,
        props,
    }
}

/// The name of the interface user-creatable types implement.
pub const USER_CREATABLE: &str = "user-creatable";

/// Every type of QSD 10.0.2, in the iteration order of QEMU's type table.
pub static TYPES: &[TypeInfo] = &[
    ty(
        "throttle-group",
        Some("object"),
        false,
        true,
        &[
            p("x-iops-total", "int"),
            p("x-iops-total-max", "int"),
            p("x-iops-total-max-length", "int"),
            p("x-iops-read", "int"),
            p("x-iops-read-max", "int"),
            p("x-iops-read-max-length", "int"),
            p("x-iops-write", "int"),
            p("x-iops-write-max", "int"),
            p("x-iops-write-max-length", "int"),
            p("x-bps-total", "int"),
            p("x-bps-total-max", "int"),
            p("x-bps-total-max-length", "int"),
            p("x-bps-read", "int"),
            p("x-bps-read-max", "int"),
            p("x-bps-read-max-length", "int"),
            p("x-bps-write", "int"),
            p("x-bps-write-max", "int"),
            p("x-bps-write-max-length", "int"),
            p("x-iops-size", "int"),
            p("limits", "ThrottleLimits"),
        ],
    ),
    ty(
        "secret_keyring",
        Some("secret_common"),
        false,
        true,
        &[p("serial", "int32_t")],
    ),
    ty(
        "thread-context",
        Some("object"),
        false,
        true,
        &[
            ro("thread-id", "int"),
            p("cpu-affinity", "int"),
            p("node-affinity", "int"),
        ],
    ),
    ty("chardev-pty", Some("chardev"), false, false, &[]),
    ty("chardev-file", Some("chardev-fd"), false, false, &[]),
    ty(
        "tls-creds-x509",
        Some("tls-creds"),
        false,
        true,
        &[p("sanity-check", "bool"), p("passwordid", "string")],
    ),
    ty("chardev-udp", Some("chardev"), false, false, &[]),
    ty("object", None, true, false, &[ro("type", "string")]),
    ty("qio-channel-buffer", Some("qio-channel"), false, false, &[]),
    ty("chardev-memory", Some("chardev-ringbuf"), false, false, &[]),
    ty("chardev-stdio", Some("chardev-fd"), false, false, &[]),
    ty(
        "chardev-socket",
        Some("chardev"),
        false,
        false,
        &[ro("connected", "bool"), ro("addr", "SocketAddress")],
    ),
    ty("user-creatable", Some("interface"), true, false, &[]),
    ty("chardev", Some("object"), true, false, &[]),
    ty("chardev-fd", Some("chardev"), true, false, &[]),
    ty(
        "event-loop-base",
        Some("object"),
        true,
        true,
        &[
            p("aio-max-batch", "int"),
            p("thread-pool-min", "int"),
            p("thread-pool-max", "int"),
        ],
    ),
    ty("qio-dns-resolver", Some("object"), false, false, &[]),
    ty(
        "authz-list",
        Some("authz"),
        false,
        true,
        &[
            p("policy", "QAuthZListPolicy"),
            p("rules", "QAuthZListRule"),
        ],
    ),
    ty("chardev-ringbuf", Some("chardev"), false, false, &[]),
    ty("chardev-null", Some("chardev"), false, false, &[]),
    ty("pr-manager", Some("object"), true, true, &[]),
    ty("qio-net-listener", Some("object"), false, false, &[]),
    ty(
        "authz-list-file",
        Some("authz"),
        false,
        true,
        &[p("filename", "string"), p("refresh", "bool")],
    ),
    ty("qio-channel-tls", Some("qio-channel"), false, false, &[]),
    ty("chardev-parallel", Some("chardev"), false, false, &[]),
    ty("main-loop", Some("event-loop-base"), false, true, &[]),
    ty("chardev-pipe", Some("chardev-fd"), false, false, &[]),
    ty(
        "qio-channel-websock",
        Some("qio-channel"),
        false,
        false,
        &[],
    ),
    ty(
        "qio-channel-command",
        Some("qio-channel"),
        false,
        false,
        &[],
    ),
    ty("qio-channel-file", Some("qio-channel"), false, false, &[]),
    ty(
        "tls-creds",
        Some("object"),
        true,
        false,
        &[
            p("verify-peer", "bool"),
            p("dir", "string"),
            p("endpoint", "QCryptoTLSCredsEndpoint"),
            p("priority", "string"),
        ],
    ),
    ty(
        "tls-creds-psk",
        Some("tls-creds"),
        false,
        true,
        &[p("username", "string")],
    ),
    ty("chardev-mux", Some("chardev"), false, false, &[]),
    ty("qio-channel", Some("object"), true, false, &[]),
    ty("chardev-serial", Some("chardev-fd"), false, false, &[]),
    ty("authz", Some("object"), true, false, &[]),
    ty(
        "secret",
        Some("secret_common"),
        false,
        true,
        &[p("data", "string"), p("file", "string")],
    ),
    ty(
        "iothread",
        Some("event-loop-base"),
        false,
        true,
        &[
            p("poll-max-ns", "int"),
            p("poll-grow", "int"),
            p("poll-shrink", "int"),
        ],
    ),
    ty(
        "pr-manager-helper",
        Some("pr-manager"),
        false,
        true,
        &[p("path", "string")],
    ),
    ty("tls-creds-anon", Some("tls-creds"), false, true, &[]),
    ty("chardev-hub", Some("chardev"), false, false, &[]),
    ty("interface", None, true, false, &[]),
    ty("container", Some("object"), false, false, &[]),
    ty(
        "secret_common",
        Some("object"),
        true,
        true,
        &[
            p("format", "QCryptoSecretFormat"),
            p("keyid", "string"),
            p("iv", "string"),
        ],
    ),
    ty("qio-channel-socket", Some("qio-channel"), false, false, &[]),
    ty(
        "authz-simple",
        Some("authz"),
        false,
        true,
        &[p("identity", "string")],
    ),
    ty("qio-channel-null", Some("qio-channel"), false, false, &[]),
];

/// The type called `name`.
pub fn lookup(name: &str) -> Option<&'static TypeInfo> {
    TYPES.iter().find(|t| t.name == name)
}

impl TypeInfo {
    /// The parent type.
    pub fn parent_info(&self) -> Option<&'static TypeInfo> {
        self.parent.and_then(lookup)
    }

    /// This type, then its parent, and so on up to the root.
    pub fn ancestors(&'static self) -> impl Iterator<Item = &'static TypeInfo> {
        std::iter::successors(Some(self), |t| t.parent_info())
    }

    /// QEMU's `object_class_dynamic_cast`: whether this type is `name`,
    /// derives from it, or implements it (or an ancestor of it) as an
    /// interface.
    pub fn is_a(&'static self, name: &str) -> bool {
        if self.ancestors().any(|t| t.name == name) {
            return true;
        }
        self.ancestors().any(|t| t.user_creatable)
            && lookup(USER_CREATABLE).is_some_and(|i| i.ancestors().any(|t| t.name == name))
    }

    /// The properties this class adds, in the iteration order of its
    /// property hash table.
    pub fn own_props(&self) -> Vec<&'static Prop> {
        let props: &'static [Prop] = self.props;
        let mut table = GHashTable::new();
        for prop in props {
            table.insert(prop.name);
        }
        table
            .iter()
            .filter_map(|n| props.iter().find(|p| p.name == n))
            .collect()
    }

    /// All class properties in QEMU's iteration order: this class's table,
    /// then each ancestor's.
    pub fn class_props(&'static self) -> Vec<&'static Prop> {
        self.ancestors().flat_map(|t| t.own_props()).collect()
    }

    /// The class property `name`, looked up from this class upwards.
    pub fn find_prop(&'static self, name: &str) -> Option<&'static Prop> {
        self.ancestors()
            .find_map(|t| t.props.iter().find(|p| p.name == name))
    }
}

/// `qom-list-types`: the types that are (or implement) `implements`,
/// abstract ones only if `include_abstract`, in QSD's reply order.
pub fn list_types(implements: Option<&str>, include_abstract: bool) -> Vec<&'static TypeInfo> {
    TYPES
        .iter()
        .filter(|t| implements.is_none_or(|i| t.is_a(i)))
        .filter(|t| include_abstract || !t.abstract_)
        .rev()
        .collect()
}

/// The concrete user-creatable types, sorted by name ignoring case, as
/// `--object help` prints them.
pub fn user_creatable_sorted() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = TYPES
        .iter()
        .filter(|t| !t.abstract_ && t.is_a(USER_CREATABLE))
        .map(|t| t.name)
        .collect();
    v.sort_by_key(|n| n.to_ascii_lowercase());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&TypeInfo]) -> Vec<&'static str> {
        v.iter().map(|t| t.name).collect()
    }

    /// `qom-list-types` of QSD 10.0.2 with `abstract: true`, names only.
    const QSD_ALL: &str = "qio-channel-null authz-simple qio-channel-socket secret_common container \
        interface chardev-hub tls-creds-anon pr-manager-helper iothread secret authz chardev-serial \
        qio-channel chardev-mux tls-creds-psk tls-creds qio-channel-file qio-channel-command \
        qio-channel-websock chardev-pipe main-loop chardev-parallel qio-channel-tls authz-list-file \
        qio-net-listener pr-manager chardev-null chardev-ringbuf authz-list qio-dns-resolver \
        event-loop-base chardev-fd chardev user-creatable chardev-socket chardev-stdio \
        chardev-memory qio-channel-buffer object chardev-udp tls-creds-x509 chardev-file \
        chardev-pty thread-context secret_keyring throttle-group";

    #[test]
    fn all_types_in_qsd_order() {
        let want: Vec<&str> = QSD_ALL.split_whitespace().collect();
        assert_eq!(names(&list_types(None, true)), want);
        let concrete: Vec<&str> = want
            .iter()
            .copied()
            .filter(|n| lookup(n).is_some_and(|t| !t.abstract_))
            .collect();
        assert_eq!(names(&list_types(None, false)), concrete);
    }

    #[test]
    fn parents_exist() {
        for t in TYPES {
            if let Some(p) = t.parent {
                assert!(lookup(p).is_some(), "{}: parent {p} missing", t.name);
            }
        }
    }

    #[test]
    fn implements_filters() {
        assert_eq!(
            names(&list_types(Some("secret_common"), true)),
            ["secret_common", "secret", "secret_keyring"]
        );
        assert_eq!(names(&list_types(Some("iothread"), false)), ["iothread"]);
        assert!(list_types(Some("nonexistent"), true).is_empty());
        // Classes implementing user-creatable also implement "interface".
        let uc = names(&list_types(Some(USER_CREATABLE), true));
        let iface = names(&list_types(Some("interface"), true));
        assert_eq!(iface.len(), uc.len() + 1);
        assert!(uc.contains(&"user-creatable") && !uc.contains(&"authz"));
    }

    fn prop_names(t: &str) -> Vec<&'static str> {
        let t = lookup(t).unwrap();
        // qom-list-properties prepends, so the reply is reversed.
        t.class_props().iter().rev().map(|p| p.name).collect()
    }

    #[test]
    fn property_order_matches_qsd() {
        assert_eq!(
            prop_names("iothread"),
            [
                "type",
                "thread-pool-min",
                "aio-max-batch",
                "thread-pool-max",
                "poll-max-ns",
                "poll-grow",
                "poll-shrink"
            ]
        );
        assert_eq!(
            prop_names("secret"),
            ["type", "iv", "keyid", "format", "file", "data"]
        );
        assert_eq!(
            prop_names("tls-creds-x509"),
            [
                "type",
                "endpoint",
                "dir",
                "verify-peer",
                "priority",
                "sanity-check",
                "passwordid"
            ]
        );
        assert_eq!(
            prop_names("throttle-group")[..6],
            [
                "type",
                "x-bps-write-max-length",
                "x-iops-total-max-length",
                "x-iops-size",
                "limits",
                "x-bps-total"
            ]
        );
        assert_eq!(prop_names("chardev-socket"), ["type", "connected", "addr"]);
    }

    #[test]
    fn user_creatable_list() {
        assert_eq!(
            user_creatable_sorted(),
            [
                "authz-list",
                "authz-list-file",
                "authz-simple",
                "iothread",
                "main-loop",
                "pr-manager-helper",
                "secret",
                "secret_keyring",
                "thread-context",
                "throttle-group",
                "tls-creds-anon",
                "tls-creds-psk",
                "tls-creds-x509"
            ]
        );
    }
}
