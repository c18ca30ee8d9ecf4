//! Reading schema files: includes (each file once, loops are errors),
//! pragmas, and pairing doc blocks with the expressions they document.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::define::Builder;
use super::*;
use crate::error::{Error, Errors, Loc};
use crate::parse::{parse_file, Item, Raw, RawDict, RawNode};

pub(super) struct Expr {
    pub(super) dict: RawDict,
    pub(super) loc: Loc,
    pub(super) doc: Option<Doc>,
    pub(super) module: usize,
}

struct Loader {
    base_dir: PathBuf,
    modules: Vec<Module>,
    seen: HashSet<PathBuf>,
    stack: Vec<PathBuf>,
    exprs: Vec<Expr>,
    pragma: Pragma,
    errors: Vec<Error>,
}

/// Reads the schema whose main file is `main`, following includes, and checks
/// it. All errors found are returned together.
pub fn load(main: &Path, profile: Profile) -> Result<Schema, Errors> {
    let base_dir = main.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut l = Loader {
        base_dir,
        modules: Vec::new(),
        seen: HashSet::new(),
        stack: Vec::new(),
        exprs: Vec::new(),
        pragma: Pragma::default(),
        errors: Vec::new(),
    };
    l.include(main, None)?;
    if !l.errors.is_empty() {
        return Err(Errors(l.errors));
    }
    let mut b = Builder {
        entities: Vec::new(),
        index: HashMap::new(),
        pragma: l.pragma,
        errors: Vec::new(),
        modules: l.modules,
    };
    for e in l.exprs {
        b.define(e);
    }
    b.check();
    if !b.errors.is_empty() {
        return Err(Errors(b.errors));
    }
    Ok(Schema::new(b.modules, b.entities, b.pragma, profile))
}

pub(super) fn str_of(n: &RawNode) -> Option<&str> {
    match &n.value {
        Raw::Str(s) => Some(s),
        _ => None,
    }
}

pub(super) fn bool_of(n: &RawNode) -> Option<bool> {
    match &n.value {
        Raw::Bool(b) => Some(*b),
        _ => None,
    }
}

impl Loader {
    fn include(&mut self, path: &Path, from: Option<&Loc>) -> Result<(), Errors> {
        let canon = std::fs::canonicalize(path).map_err(|e| {
            let msg = format!("can't read '{}': {e}", path.display());
            Error::new(
                from.cloned()
                    .unwrap_or_else(|| Loc::new(&path.display().to_string(), 0)),
                msg,
            )
        })?;
        if self.stack.contains(&canon) {
            let loc = from.cloned().unwrap_or_default();
            self.errors.push(Error::new(
                loc,
                format!(
                    "inclusion loop: '{}' is already being included",
                    path.display()
                ),
            ));
            return Ok(());
        }
        if !self.seen.insert(canon.clone()) {
            return Ok(());
        }
        let text = std::fs::read_to_string(&canon).map_err(|e| {
            let msg = format!("can't read '{}': {e}", path.display());
            Error::new(from.cloned().unwrap_or_default(), msg)
        })?;
        let name = canon
            .strip_prefix(std::fs::canonicalize(&self.base_dir).unwrap_or_default())
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| path.display().to_string());
        let module = self.modules.len();
        self.modules.push(Module {
            name: name.clone(),
            items: Vec::new(),
        });
        let items = parse_file(&name, &text)?;
        self.stack.push(canon.clone());
        let mut pending: Option<Doc> = None;
        for item in items {
            match item {
                Item::Doc { line, lines } => {
                    let doc = match parse_doc(&name, line, &lines) {
                        Ok(d) => d,
                        Err(e) => {
                            self.errors.push(e);
                            continue;
                        }
                    };
                    if let Some(p) = pending.take() {
                        self.errors.push(Error::new(
                            p.loc.clone(),
                            format!(
                                "doc block for '{}' is not followed by its definition",
                                p.symbol.unwrap_or_default()
                            ),
                        ));
                    }
                    if doc.symbol.is_some() {
                        pending = Some(doc);
                    } else {
                        self.modules[module].items.push(ModuleItem::Doc(doc));
                    }
                }
                Item::Expr { line, dict } => {
                    let loc = Loc::new(&name, line);
                    let first = dict.first().map(|(k, _)| k.as_str());
                    if first == Some("include") || first == Some("pragma") {
                        if let Some(p) = pending.take() {
                            self.errors.push(Error::new(
                                p.loc,
                                "a doc block can't document an include or pragma".into(),
                            ));
                        }
                        if dict.len() != 1 {
                            self.errors.push(Error::new(
                                loc,
                                format!(
                                    "'{}' must be the only key of its expression",
                                    first.unwrap_or("")
                                ),
                            ));
                            continue;
                        }
                        let v = &dict[0].1;
                        if first == Some("include") {
                            match str_of(v) {
                                Some(f) => {
                                    let dir =
                                        canon.parent().map(Path::to_path_buf).unwrap_or_default();
                                    self.include(&dir.join(f), Some(&loc))?;
                                }
                                None => self.errors.push(Error::new(
                                    loc,
                                    "'include' takes a file name string".into(),
                                )),
                            }
                        } else {
                            self.pragma(v, &loc);
                        }
                        continue;
                    }
                    let doc = pending.take();
                    self.exprs.push(Expr {
                        dict,
                        loc,
                        doc,
                        module,
                    });
                }
            }
        }
        if let Some(p) = pending.take() {
            self.errors.push(Error::new(
                p.loc,
                format!(
                    "doc block for '{}' is not followed by its definition",
                    p.symbol.unwrap_or_default()
                ),
            ));
        }
        self.stack.pop();
        Ok(())
    }

    fn pragma(&mut self, v: &RawNode, loc: &Loc) {
        let Raw::Dict(d) = &v.value else {
            self.errors
                .push(Error::new(loc.clone(), "'pragma' takes an object".into()));
            return;
        };
        for (k, v) in d {
            let list = |errors: &mut Vec<Error>| -> Vec<String> {
                match &v.value {
                    Raw::List(items) if items.iter().all(|i| str_of(i).is_some()) => items
                        .iter()
                        .filter_map(|i| str_of(i).map(String::from))
                        .collect(),
                    _ => {
                        errors.push(Error::new(
                            Loc::new(&loc.file, v.line),
                            format!("pragma '{k}' takes a list of strings"),
                        ));
                        Vec::new()
                    }
                }
            };
            match k.as_str() {
                "doc-required" => match bool_of(v) {
                    Some(b) => self.pragma.doc_required = b,
                    None => self.errors.push(Error::new(
                        Loc::new(&loc.file, v.line),
                        "pragma 'doc-required' takes true or false".into(),
                    )),
                },
                "command-name-exceptions" => {
                    let l = list(&mut self.errors);
                    self.pragma.command_name_exceptions.extend(l)
                }
                "command-returns-exceptions" => {
                    let l = list(&mut self.errors);
                    self.pragma.command_returns_exceptions.extend(l)
                }
                "documentation-exceptions" => {
                    let l = list(&mut self.errors);
                    self.pragma.documentation_exceptions.extend(l)
                }
                "member-name-exceptions" => {
                    let l = list(&mut self.errors);
                    self.pragma.member_name_exceptions.extend(l)
                }
                _ => self.errors.push(Error::new(
                    Loc::new(&loc.file, v.line),
                    format!("unknown pragma '{k}'"),
                )),
            }
        }
    }
}
