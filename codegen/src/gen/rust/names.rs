//! Rust names for schema names.

use proc_macro2::{Ident, Span};

const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub",
    "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

pub fn ident(s: &str) -> Ident {
    Ident::new(s, Span::call_site())
}

/// `snake_case` for members and commands; keywords get a trailing `_`.
pub fn snake(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| match c {
            '-' | '.' | '+' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    if KEYWORDS.contains(&s.as_str()) {
        s.push('_');
    }
    s
}

/// `UpperCamelCase` for enum values, event names and implicit types.
pub fn camel(name: &str) -> String {
    let mut out = String::new();
    for part in name.split(['-', '_', '.', '+']) {
        let mut chars = part.chars();
        if let Some(f) = chars.next() {
            out.push(f.to_ascii_uppercase());
            out.extend(chars.map(|c| c.to_ascii_lowercase()));
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) || out.is_empty() {
        out.insert(0, 'V');
    }
    if KEYWORDS.contains(&out.as_str()) {
        out.push('_');
    }
    out
}

/// The Rust type name of a schema type. Implicit types are named after
/// what they belong to: `q_obj_blockdev-del-arg` becomes `BlockdevDelArgs`,
/// `q_obj_JOB_STATUS_CHANGE-arg` becomes `JobStatusChangeData`.
pub fn type_name(name: &str, is_event_arg: bool) -> String {
    if let Some(rest) = name.strip_prefix("q_obj_") {
        if let Some(owner) = rest.strip_suffix("-arg") {
            return format!(
                "{}{}",
                camel(owner),
                if is_event_arg { "Data" } else { "Args" }
            );
        }
        if let Some(owner) = rest.strip_suffix("-base") {
            return format!("{owner}Base");
        }
    }
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(snake("node-name"), "node_name");
        assert_eq!(snake("type"), "type_");
        assert_eq!(snake("grab_all"), "grab_all");
        assert_eq!(snake("x-check-cache-dropped"), "x_check_cache_dropped");
        assert_eq!(camel("nvme-io_uring"), "NvmeIoUring");
        assert_eq!(camel("JOB_STATUS_CHANGE"), "JobStatusChange");
        assert_eq!(camel("1"), "V1");
        assert_eq!(camel("self"), "Self_");
        assert_eq!(
            type_name("q_obj_blockdev-del-arg", false),
            "BlockdevDelArgs"
        );
        assert_eq!(
            type_name("q_obj_BLOCK_IO_ERROR-arg", true),
            "BlockIoErrorData"
        );
        assert_eq!(type_name("BlockdevOptions", false), "BlockdevOptions");
    }
}
