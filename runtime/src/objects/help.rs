//! `--object help` and `--object TYPE,help`.
//!
//! QSD parses an `--object` argument as keyval with the implied key
//! `qom-type`; a bare `help` or `?` parameter anywhere asks for help, and
//! then nothing else of the argument matters (a missing id, unknown
//! parameters...) as long as it parses. With a `qom-type` that names a
//! type, the help lists that type's settable class properties; otherwise
//! (no type, or an unknown one) it lists the user-creatable types.
//!
//! Arguments that keyval would reject never ask for help: QSD reports the
//! parse error instead, which the command line parser does for us. JSON
//! arguments (`{...}`) have no help form.

use std::collections::HashMap;

use super::types;

/// The text QSD prints on standard output (then exits with status 0) when
/// the `--object` argument `arg` asks for help; `None` if it does not.
pub fn cli_object_help(arg: &str) -> Option<String> {
    if arg.starts_with('{') {
        return None;
    }
    let scan = scan(arg)?;
    if !scan.help {
        return None;
    }
    Some(
        scan.qom_type
            .as_deref()
            .and_then(class_help)
            .unwrap_or_else(types_help),
    )
}

/// `--object help`: the concrete user-creatable types, sorted.
pub fn types_help() -> String {
    let mut out = String::from("List of user creatable objects:\n");
    for name in types::user_creatable_sorted() {
        out.push_str(&format!("  {name}\n"));
    }
    out
}

/// `--object TYPE,help`: the settable properties of any known type
/// (`None` for an unknown type).
pub fn class_help(type_name: &str) -> Option<String> {
    let class = types::lookup(type_name)?;
    let mut lines: Vec<String> = class
        .class_props()
        .into_iter()
        .filter(|p| p.settable)
        .map(|p| format!("  {}=<{}>", p.name, p.type_))
        .collect();
    // QEMU sorts the formatted lines byte by byte.
    lines.sort();
    if lines.is_empty() {
        return Some(format!("There are no options for {type_name}.\n"));
    }
    let mut out = format!("{type_name} options:\n");
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    Some(out)
}

/// What matters of a keyval argument for help.
struct Scan {
    help: bool,
    /// `qom-type` when it is a plain string.
    qom_type: Option<String>,
}

/// Length of the QAPI name at the start of `s` (QEMU's `parse_qapi_name`
/// without `complete`), or 0 if there is none.
fn qapi_name_len(s: &[u8]) -> usize {
    let mut i = 0;
    if s.first() == Some(&b'_') {
        // A downstream extension prefix: __RFQDN_
        if s.get(1) != Some(&b'_') {
            return 0;
        }
        i = 2;
        while s
            .get(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.')
        {
            i += 1;
        }
        if s.get(i) != Some(&b'_') {
            return 0;
        }
        i += 1;
    }
    if !s.get(i).is_some_and(u8::is_ascii_alphabetic) {
        return 0;
    }
    i += 1;
    while s
        .get(i)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
    {
        i += 1;
    }
    i
}

/// Longest key fragment keyval accepts.
const MAX_FRAGMENT: usize = 127;

/// Splits a key into its fragments if keyval accepts it.
fn key_fragments(key: &str) -> Option<Vec<&str>> {
    let bytes = key.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let rest = &bytes[start..];
        let len = if start != 0 && rest.first().is_some_and(u8::is_ascii_digit) {
            rest.iter().take_while(|c| c.is_ascii_digit()).count()
        } else {
            qapi_name_len(rest)
        };
        if len == 0 || len > MAX_FRAGMENT {
            return None;
        }
        out.push(&key[start..start + len]);
        start += len;
        match bytes.get(start) {
            None => return Some(out),
            Some(b'.') => start += 1,
            Some(_) => return None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Scalar,
    Dict,
}

/// Parses `arg` as QEMU's keyval does, keeping only what help needs;
/// `None` where keyval reports an error.
fn scan(arg: &str) -> Option<Scan> {
    let mut kinds: HashMap<String, Kind> = HashMap::new();
    let mut put = |frags: &[&str]| -> Option<()> {
        for i in 1..=frags.len() {
            let kind = if i == frags.len() {
                Kind::Scalar
            } else {
                Kind::Dict
            };
            let path = frags[..i].join(".");
            match kinds.get(&path) {
                Some(&k) if k != kind => return None,
                _ => {
                    kinds.insert(path, kind);
                }
            }
        }
        Some(())
    };
    let mut help = false;
    let mut qom_type: Option<String> = None;
    let mut implied = true;
    let mut s = arg;
    while !s.is_empty() {
        let len = s.find(['=', ',']).unwrap_or(s.len());
        let (key, rest) = s.split_at(len);
        if len > 0 && !rest.starts_with('=') {
            if key == "help" || key == "?" {
                help = true;
            } else if implied {
                put(&["qom-type"])?;
                qom_type = Some(key.to_string());
            } else {
                // Expected '=' after parameter
                return None;
            }
            s = rest.strip_prefix(',').unwrap_or(rest);
            implied = false;
            continue;
        }
        let frags = key_fragments(key)?;
        // The value runs to the next single comma; ",," is a comma.
        let mut r = rest.strip_prefix('=')?;
        let mut value = String::new();
        loop {
            match r.find(',') {
                None => {
                    value.push_str(r);
                    r = "";
                    break;
                }
                Some(i) => {
                    value.push_str(&r[..i]);
                    if r[i + 1..].starts_with(',') {
                        value.push(',');
                        r = &r[i + 2..];
                    } else {
                        r = &r[i + 1..];
                        break;
                    }
                }
            }
        }
        put(&frags)?;
        if frags == ["qom-type"] {
            qom_type = Some(value);
        }
        s = r;
        implied = false;
    }
    if kinds.get("qom-type") == Some(&Kind::Dict) {
        qom_type = None;
    }
    Some(Scan { help, qom_type })
}

#[cfg(test)]
mod tests {
    use super::*;

    const IOTHREAD_HELP: &str = "iothread options:
  aio-max-batch=<int>
  poll-grow=<int>
  poll-max-ns=<int>
  poll-shrink=<int>
  thread-pool-max=<int>
  thread-pool-min=<int>
";

    #[test]
    fn help_forms() {
        let list = types_help();
        assert!(list.starts_with("List of user creatable objects:\n  authz-list\n"));
        assert_eq!(cli_object_help("help").as_deref(), Some(list.as_str()));
        assert_eq!(cli_object_help("?").as_deref(), Some(list.as_str()));
        assert_eq!(
            cli_object_help("nonexistent,help").as_deref(),
            Some(list.as_str())
        );
        assert_eq!(
            cli_object_help("iothread,help").as_deref(),
            Some(IOTHREAD_HELP)
        );
        assert_eq!(
            cli_object_help("iothread,?").as_deref(),
            Some(IOTHREAD_HELP)
        );
        assert_eq!(
            cli_object_help("iothread,help,id=").as_deref(),
            Some(IOTHREAD_HELP)
        );
        assert_eq!(
            cli_object_help("help,qom-type=iothread").as_deref(),
            Some(IOTHREAD_HELP)
        );
        assert_eq!(
            cli_object_help("container,help").as_deref(),
            Some("There are no options for container.\n")
        );
    }

    #[test]
    fn not_help() {
        for arg in [
            "iothread,id=x",
            "iothread,id=x,help=on",
            "help,iothread",
            "iothread,help,bogus",
            "iothread,0x=1,help",
            "iothread,a=1,a.b=2,help",
            r#"{"qom-type":"iothread","help":1}"#,
            "",
        ] {
            assert_eq!(cli_object_help(arg), None, "{arg}");
        }
    }

    #[test]
    fn values_with_commas() {
        assert_eq!(
            cli_object_help("help,id=a,,b,qom-type=secret").as_deref(),
            class_help("secret").as_deref()
        );
    }

    #[test]
    fn throttle_group_sorting() {
        let h = class_help("throttle-group").unwrap();
        let i = h.find("x-bps-read-max-length").unwrap();
        let j = h.find("x-bps-read-max=").unwrap();
        assert!(i < j);
    }
}
