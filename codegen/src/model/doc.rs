//! Documentation blocks: structure of the `##` comments (see qapi/README.md).

use crate::error::{Error, Loc};

/// A named section of a doc block: a member, enum value or feature.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DocItem {
    pub name: String,
    /// The text, continuation lines joined, paragraphs separated by "\n\n".
    pub text: String,
    pub loc: Loc,
}

/// A tagged section such as `Returns:`, `Errors:` or `Since:`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DocSection {
    pub tag: String,
    pub text: String,
    pub loc: Loc,
}

/// A parsed documentation block.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Doc {
    pub loc: Loc,
    /// The definition this block documents (`@Name:` on its first line), or
    /// `None` for a free block.
    pub symbol: Option<String>,
    /// For free blocks starting with `= Title`: the level (number of `=`) and
    /// title.
    pub heading: Option<(usize, String)>,
    /// Paragraphs before the first section.
    pub body: Vec<String>,
    pub members: Vec<DocItem>,
    pub features: Vec<DocItem>,
    pub sections: Vec<DocSection>,
}

impl Doc {
    /// The text documenting member (or enum value) `name`.
    pub fn member(&self, name: &str) -> Option<&DocItem> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The text documenting feature `name`.
    pub fn feature(&self, name: &str) -> Option<&DocItem> {
        self.features.iter().find(|m| m.name == name)
    }

    /// The text of the tagged section `tag` (e.g. "Since").
    pub fn section(&self, tag: &str) -> Option<&str> {
        self.sections
            .iter()
            .find(|s| s.tag == tag)
            .map(|s| s.text.as_str())
    }
}

/// Section tags recognised at the start of a line.
const TAGS: &[&str] = &[
    "Returns", "Errors", "Since", "Note", "Notes", "Example", "Examples",
];

enum Current {
    Body,
    Member,
    Feature,
    Section,
}

/// Parses the raw lines of a `##` block (each the text after `#`).
pub fn parse_doc(file: &str, line: usize, lines: &[(usize, String)]) -> Result<Doc, Error> {
    let mut doc = Doc {
        loc: Loc::new(file, line),
        ..Doc::default()
    };
    let mut text_lines = Vec::with_capacity(lines.len());
    for (l, raw) in lines {
        let t = if raw.is_empty() {
            ""
        } else if let Some(t) = raw.strip_prefix(' ') {
            t
        } else {
            return Err(Error::new(
                Loc::new(file, *l),
                "a doc comment line must be '#' alone or '#' followed by a space".into(),
            ));
        };
        text_lines.push((*l, t.trim_end()));
    }
    let mut i = 0;
    // First line: symbol or heading.
    if let Some((l, first)) = text_lines.first() {
        if let Some(rest) = first.strip_prefix('@') {
            let Some(name) = rest.strip_suffix(':') else {
                return Err(Error::new(
                    Loc::new(file, *l),
                    "the first line of a definition's doc block must be '@Name:'".into(),
                ));
            };
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(Error::new(
                    Loc::new(file, *l),
                    format!("invalid doc symbol '@{name}:'"),
                ));
            }
            doc.symbol = Some(name.to_string());
            i = 1;
        } else if first.starts_with('=') {
            let level = first.chars().take_while(|c| *c == '=').count();
            let title = first[level..].trim();
            if title.is_empty() {
                return Err(Error::new(
                    Loc::new(file, *l),
                    "heading without a title".into(),
                ));
            }
            doc.heading = Some((level, title.to_string()));
            i = 1;
        }
    }
    let mut cur = Current::Body;
    let mut in_features = false;
    let mut para: Vec<&str> = Vec::new();
    // Whether the previous line was blank (a section ends at a blank line
    // unless the next text is indented).
    let mut blank = false;
    while i < text_lines.len() {
        let (l, t) = text_lines[i];
        i += 1;
        if t.is_empty() {
            blank = true;
            continue;
        }
        let indented = t.starts_with("    ");
        if let Some(rest) = t.strip_prefix('@') {
            if let Some(colon) = rest.find(':') {
                let name = &rest[..colon];
                if !name.is_empty() && !name.contains(char::is_whitespace) {
                    flush(&mut doc, &cur, &mut para);
                    let item = DocItem {
                        name: name.to_string(),
                        text: String::new(),
                        loc: Loc::new(file, l),
                    };
                    para.push(rest[colon + 1..].trim());
                    if in_features {
                        if doc.feature(name).is_some() {
                            return Err(Error::new(
                                Loc::new(file, l),
                                format!("feature '{name}' is documented twice"),
                            ));
                        }
                        doc.features.push(item);
                        cur = Current::Feature;
                    } else {
                        if doc.member(name).is_some() {
                            return Err(Error::new(
                                Loc::new(file, l),
                                format!("member '{name}' is documented twice"),
                            ));
                        }
                        doc.members.push(item);
                        cur = Current::Member;
                    }
                    blank = false;
                    continue;
                }
            }
        }
        if t == "Features:" {
            flush(&mut doc, &cur, &mut para);
            if in_features {
                return Err(Error::new(
                    Loc::new(file, l),
                    "duplicate 'Features:' section".into(),
                ));
            }
            in_features = true;
            cur = Current::Body;
            blank = false;
            continue;
        }
        if let Some(tag) = TAGS
            .iter()
            .find(|tag| t.strip_prefix(**tag).is_some_and(|r| r.starts_with(':')))
        {
            flush(&mut doc, &cur, &mut para);
            doc.sections.push(DocSection {
                tag: tag.to_string(),
                text: String::new(),
                loc: Loc::new(file, l),
            });
            para.push(t[tag.len() + 1..].trim());
            cur = Current::Section;
            blank = false;
            continue;
        }
        match cur {
            Current::Body => {
                if in_features {
                    return Err(Error::new(
                        Loc::new(file, l),
                        "text in 'Features:' must be '@feature: description'".into(),
                    ));
                }
                if blank && !para.is_empty() {
                    para.push("");
                }
                para.push(t.trim());
            }
            Current::Member | Current::Feature | Current::Section => {
                if blank && !indented {
                    // A new body paragraph after the sections.
                    flush(&mut doc, &cur, &mut para);
                    if in_features {
                        return Err(Error::new(
                            Loc::new(file, l),
                            "text in 'Features:' must be '@feature: description'".into(),
                        ));
                    }
                    cur = Current::Body;
                    para.push(t.trim());
                } else {
                    if blank {
                        para.push("");
                    }
                    para.push(t.trim());
                }
            }
        }
        blank = false;
    }
    flush(&mut doc, &cur, &mut para);
    Ok(doc)
}

/// Joins lines into text: lines of one paragraph joined by spaces,
/// paragraphs (separated by an empty entry) by "\n\n".
fn join(lines: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in lines {
        if l.is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(l);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn flush(doc: &mut Doc, cur: &Current, para: &mut Vec<&str>) {
    if para.is_empty() {
        return;
    }
    let paras = join(para);
    para.clear();
    match cur {
        Current::Body => doc.body.extend(paras),
        Current::Member => {
            if let Some(m) = doc.members.last_mut() {
                m.text = paras.join("\n\n");
            }
        }
        Current::Feature => {
            if let Some(m) = doc.features.last_mut() {
                m.text = paras.join("\n\n");
            }
        }
        Current::Section => {
            if let Some(s) = doc.sections.last_mut() {
                s.text = paras.join("\n\n");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<(usize, String)> {
        s.lines()
            .enumerate()
            .map(|(i, l)| (i + 2, l.strip_prefix('#').unwrap().to_string()))
            .collect()
    }

    #[test]
    fn definition_doc() {
        let d = parse_doc(
            "f.json",
            1,
            &lines(
                "# @Foo:\n#\n# Summary line\n# continues.\n#\n# Second paragraph.\n#\n# @a: first member\n#     continued\n#\n# @b: second\n#\n# Features:\n#\n# @deprecated: do not use\n#\n# Returns: a thing\n#\n# Since: 2.9",
            ),
        )
        .unwrap();
        assert_eq!(d.symbol.as_deref(), Some("Foo"));
        assert_eq!(d.body, vec!["Summary line continues.", "Second paragraph."]);
        assert_eq!(d.members.len(), 2);
        assert_eq!(d.members[0].text, "first member continued");
        assert_eq!(d.members[0].loc.line, 9);
        assert_eq!(d.features[0].name, "deprecated");
        assert_eq!(d.section("Returns"), Some("a thing"));
        assert_eq!(d.section("Since"), Some("2.9"));
    }

    #[test]
    fn heading_block() {
        let d = parse_doc("f.json", 1, &lines("# = Block devices\n#\n# Intro text.")).unwrap();
        assert_eq!(d.heading, Some((1, "Block devices".into())));
        assert_eq!(d.body, vec!["Intro text."]);
    }

    #[test]
    fn errors() {
        assert!(parse_doc("f.json", 1, &lines("#@Foo:")).is_err());
        assert!(parse_doc("f.json", 1, &lines("# @Foo")).is_err());
        let e = parse_doc("f.json", 1, &lines("# @Foo:\n#\n# @a: x\n# @a: y")).unwrap_err();
        assert_eq!(e.to_string(), "f.json:5: member 'a' is documented twice");
        assert!(parse_doc("f.json", 1, &lines("# @Foo:\n# Features:\n# junk")).is_err());
    }
}
