//! Metadata contexts: matching `NBD_OPT_{LIST,SET}_META_CONTEXT` queries
//! against what an export offers, the context ids, and the reply list.
//!
//! An export offers `base:allocation` always, `qemu:allocation-depth` if
//! enabled, and `qemu:dirty-bitmap:NAME` per exported bitmap. Ids are
//! QEMU's: 0 for `base:allocation`, 1 for `qemu:allocation-depth`, 2 + i for
//! the i-th bitmap. Query rules (QEMU's):
//! - `base:` selects `base:allocation` on LIST only; `base:allocation`
//!   selects it; other `base:` leaves are ignored;
//! - `qemu:` on LIST selects every `qemu:` context; on SET nothing;
//! - `qemu:allocation-depth` selects it if the export enables it;
//! - `qemu:dirty-bitmap:` on LIST selects every bitmap; on SET nothing;
//! - `qemu:dirty-bitmap:NAME` selects that bitmap if exported;
//! - anything else (other namespaces, unknown leaves, no colon) is ignored;
//! - LIST with no query at all selects everything.

/// Name of the `base:allocation` context.
pub const BASE_ALLOCATION: &str = "base:allocation";
/// Name of the `qemu:allocation-depth` context.
pub const ALLOCATION_DEPTH: &str = "qemu:allocation-depth";
/// Prefix of dirty bitmap contexts.
pub const DIRTY_BITMAP_PREFIX: &str = "qemu:dirty-bitmap:";
/// Context id of `base:allocation`.
pub const ID_BASE_ALLOCATION: u32 = 0;
/// Context id of `qemu:allocation-depth`.
pub const ID_ALLOCATION_DEPTH: u32 = 1;
/// Context id of the first dirty bitmap (bitmap i has id 2 + i).
pub const ID_DIRTY_BITMAP: u32 = 2;

/// What an export offers for block status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportContexts<'a> {
    /// Whether `qemu:allocation-depth` is exported.
    pub allocation_depth: bool,
    /// Names of the exported dirty bitmaps, in export order.
    pub bitmaps: &'a [String],
}

/// A set of selected contexts of one export.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContextSet {
    /// `base:allocation` is selected.
    pub base_allocation: bool,
    /// `qemu:allocation-depth` is selected.
    pub allocation_depth: bool,
    /// Per exported bitmap, whether it is selected.
    pub bitmaps: Vec<bool>,
}

/// One selected context: its id and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Context id (QEMU's numbering).
    pub id: u32,
    /// Context name.
    pub name: String,
}

impl ContextSet {
    /// An empty selection sized for `exp`.
    pub fn empty(exp: &ExportContexts<'_>) -> ContextSet {
        ContextSet {
            base_allocation: false,
            allocation_depth: false,
            bitmaps: vec![false; exp.bitmaps.len()],
        }
    }

    /// Everything `exp` offers (LIST with no query).
    pub fn all(exp: &ExportContexts<'_>) -> ContextSet {
        ContextSet {
            base_allocation: true,
            allocation_depth: exp.allocation_depth,
            bitmaps: vec![true; exp.bitmaps.len()],
        }
    }

    /// Number of selected contexts.
    pub fn count(&self) -> usize {
        usize::from(self.base_allocation)
            + usize::from(self.allocation_depth)
            + self.bitmaps.iter().filter(|&&b| b).count()
    }

    /// Whether nothing is selected.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Applies one query; `list` is true for `LIST_META_CONTEXT`.
    pub fn apply_query(&mut self, exp: &ExportContexts<'_>, query: &[u8], list: bool) {
        if let Some(leaf) = query.strip_prefix(b"base:") {
            if (leaf.is_empty() && list) || leaf == b"allocation" {
                self.base_allocation = true;
            }
        } else if let Some(leaf) = query.strip_prefix(b"qemu:") {
            if leaf.is_empty() {
                if list {
                    self.allocation_depth = exp.allocation_depth;
                    self.bitmaps.iter_mut().for_each(|b| *b = true);
                }
            } else if leaf == b"allocation-depth" {
                self.allocation_depth = exp.allocation_depth;
            } else if let Some(name) = leaf.strip_prefix(b"dirty-bitmap:") {
                if name.is_empty() {
                    if list {
                        self.bitmaps.iter_mut().for_each(|b| *b = true);
                    }
                } else if let Some(i) = exp.bitmaps.iter().position(|b| b.as_bytes() == name) {
                    self.bitmaps[i] = true;
                }
            }
        }
    }

    /// The selected contexts in reply order (base, depth, bitmaps), with
    /// QEMU's ids.
    pub fn contexts(&self, exp: &ExportContexts<'_>) -> Vec<Context> {
        let mut v = Vec::with_capacity(self.count());
        if self.base_allocation {
            v.push(Context {
                id: ID_BASE_ALLOCATION,
                name: BASE_ALLOCATION.to_string(),
            });
        }
        if self.allocation_depth {
            v.push(Context {
                id: ID_ALLOCATION_DEPTH,
                name: ALLOCATION_DEPTH.to_string(),
            });
        }
        for (i, (sel, name)) in self.bitmaps.iter().zip(exp.bitmaps).enumerate() {
            if *sel {
                v.push(Context {
                    id: ID_DIRTY_BITMAP + i as u32,
                    name: format!("{DIRTY_BITMAP_PREFIX}{name}"),
                });
            }
        }
        v
    }

    /// Whether the context with `id` is selected.
    pub fn has_id(&self, id: u32) -> bool {
        match id {
            ID_BASE_ALLOCATION => self.base_allocation,
            ID_ALLOCATION_DEPTH => self.allocation_depth,
            _ => self
                .bitmaps
                .get((id - ID_DIRTY_BITMAP) as usize)
                .copied()
                .unwrap_or(false),
        }
    }

    /// Selects the context with `id` (ids outside the set are ignored).
    fn set_id(&mut self, id: u32) {
        match id {
            ID_BASE_ALLOCATION => self.base_allocation = true,
            ID_ALLOCATION_DEPTH => self.allocation_depth = true,
            _ => {
                if let Some(b) = self.bitmaps.get_mut((id - ID_DIRTY_BITMAP) as usize) {
                    *b = true;
                }
            }
        }
    }

    /// The subset named by a `BLOCK_STATUS` payload's id list, as QEMU
    /// accepts it: every id must be negotiated (in `self`) and appear once.
    /// `None` if the list is empty or breaks a rule.
    pub fn subset(&self, ids: &[u32]) -> Option<ContextSet> {
        if ids.is_empty() {
            return None;
        }
        let mut out = ContextSet {
            base_allocation: false,
            allocation_depth: false,
            bitmaps: vec![false; self.bitmaps.len()],
        };
        for &id in ids {
            if !self.has_id(id) || out.has_id(id) {
                return None;
            }
            out.set_id(id);
        }
        Some(out)
    }
}

/// Runs a list of queries against an export and returns the selection.
/// `none_given` marks a request with zero queries (LIST then selects all).
pub fn select<'q>(
    exp: &ExportContexts<'_>,
    queries: impl IntoIterator<Item = &'q [u8]>,
    none_given: bool,
    list: bool,
) -> ContextSet {
    if list && none_given {
        return ContextSet::all(exp);
    }
    let mut set = ContextSet::empty(exp);
    for q in queries {
        set.apply_query(exp, q, list);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(set: &ContextSet, exp: &ExportContexts<'_>) -> Vec<(u32, String)> {
        set.contexts(exp)
            .into_iter()
            .map(|c| (c.id, c.name))
            .collect()
    }

    #[test]
    fn list_and_set_queries_match_qemu() {
        let bitmaps = vec!["b0".to_string(), "b1".to_string()];
        let exp = ExportContexts {
            allocation_depth: true,
            bitmaps: &bitmaps,
        };
        let run = |qs: &[&str], list: bool| {
            let s = select(&exp, qs.iter().map(|q| q.as_bytes()), qs.is_empty(), list);
            names(&s, &exp)
        };
        let all = vec![
            (0, "base:allocation".to_string()),
            (1, "qemu:allocation-depth".to_string()),
            (2, "qemu:dirty-bitmap:b0".to_string()),
            (3, "qemu:dirty-bitmap:b1".to_string()),
        ];
        assert_eq!(run(&[], true), all);
        assert_eq!(run(&[], false), vec![]);
        assert_eq!(run(&["qemu:"], true), all[1..].to_vec());
        assert_eq!(run(&["qemu:"], false), vec![]);
        assert_eq!(run(&["base:"], true), all[..1].to_vec());
        assert_eq!(run(&["base:"], false), vec![]);
        assert_eq!(run(&["qemu:dirty-bitmap:"], true), all[2..].to_vec());
        assert_eq!(run(&["qemu:dirty-bitmap:"], false), vec![]);
        assert_eq!(run(&["qemu:dirty-bitmap:b1"], false), all[3..].to_vec());
        assert_eq!(run(&["qemu:dirty-bitmap:nope", "qemu:bogus"], true), vec![]);
        assert_eq!(run(&["other:thing", "noColon", "base:other"], true), vec![]);
        assert_eq!(
            run(&["base:allocation", "base:allocation"], false),
            all[..1].to_vec()
        );
        assert_eq!(
            run(
                &[
                    "qemu:dirty-bitmap:b0",
                    "qemu:allocation-depth",
                    "base:allocation"
                ],
                false
            ),
            all[..3].to_vec()
        );
    }

    #[test]
    fn allocation_depth_needs_the_export_to_offer_it() {
        let exp = ExportContexts {
            allocation_depth: false,
            bitmaps: &[],
        };
        let s = select(&exp, [&b"qemu:allocation-depth"[..]], false, false);
        assert!(s.is_empty());
        let s = select(&exp, [&b"qemu:"[..]], false, true);
        assert!(s.is_empty());
        assert_eq!(ContextSet::all(&exp).count(), 1);
    }

    #[test]
    fn payload_subsets() {
        let bitmaps = vec!["b0".to_string()];
        let exp = ExportContexts {
            allocation_depth: true,
            bitmaps: &bitmaps,
        };
        let mut neg = ContextSet::empty(&exp);
        neg.apply_query(&exp, b"base:allocation", false);
        neg.apply_query(&exp, b"qemu:dirty-bitmap:b0", false);
        assert!(neg.has_id(0) && !neg.has_id(1) && neg.has_id(2) && !neg.has_id(3));
        let sub = neg.subset(&[2]).unwrap();
        assert_eq!(names(&sub, &exp), vec![(2, "qemu:dirty-bitmap:b0".into())]);
        assert_eq!(neg.subset(&[0, 2]).unwrap().count(), 2);
        assert_eq!(neg.subset(&[]), None);
        assert_eq!(neg.subset(&[1]), None, "offered but not negotiated");
        assert_eq!(neg.subset(&[0, 0]), None, "duplicate");
        assert_eq!(neg.subset(&[7]), None);
        assert_eq!(neg.subset(&[u32::MAX]), None);
    }
}
