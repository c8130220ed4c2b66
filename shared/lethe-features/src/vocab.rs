//! Interned vocabularies: category names, item ids, coarse locations and segment names become
//! small integer ids ([`CategoryId`], [`ItemId`], [`LocationId`], [`SegmentId`]) so that a feature
//! view stays fixed-size. Ids are internal to one process: they depend on the order strings were
//! first seen and on reuse after garbage collection, so nothing may depend on their values, and the
//! canonical snapshot renumbers them in string order ([`Interner::canonical`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{FeatureError, Result};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $int:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub(crate) $int);

        impl $name {
            /// The raw id (valid only in the projector that gave it out; never stored).
            #[must_use]
            pub const fn get(self) -> $int {
                self.0
            }
        }
    };
}

id_type!(
    /// An interned item category.
    CategoryId,
    u16
);
id_type!(
    /// An interned catalog item id.
    ItemId,
    u32
);
id_type!(
    /// An interned coarse location (`country` or `country/region`).
    LocationId,
    u16
);
id_type!(
    /// An interned segment name.
    SegmentId,
    u16
);

/// A string table. Id 0 means "none" and is never given out; ids start at 1.
#[derive(Debug, Clone)]
pub(crate) struct Interner {
    kind: &'static str,
    max: u32,
    /// `names[id - 1]`; `None` for an id freed by [`Self::retain`].
    names: Vec<Option<Arc<str>>>,
    ids: HashMap<Arc<str>, u32>,
    /// Freed ids, reused lowest first.
    free: BTreeSet<u32>,
}

impl Interner {
    /// An empty table whose ids go up to `max`.
    pub(crate) fn new(kind: &'static str, max: u32) -> Self {
        Self { kind, max, names: Vec::new(), ids: HashMap::new(), free: BTreeSet::new() }
    }

    /// The id of a string, if interned.
    pub(crate) fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    /// The id of a string, interning it if new.
    ///
    /// # Errors
    /// [`FeatureError::VocabularyFull`] when every id up to the table's maximum is taken.
    pub(crate) fn intern(&mut self, s: &str) -> Result<u32> {
        if let Some(id) = self.ids.get(s) {
            return Ok(*id);
        }
        let name: Arc<str> = Arc::from(s);
        let id = if let Some(id) = self.free.pop_first() {
            if let Some(slot) = self.names.get_mut(id as usize - 1) {
                *slot = Some(name.clone());
            }
            id
        } else {
            let next = u32::try_from(self.names.len() + 1).unwrap_or(u32::MAX);
            if next > self.max {
                return Err(FeatureError::VocabularyFull(self.kind));
            }
            self.names.push(Some(name.clone()));
            next
        };
        self.ids.insert(name, id);
        Ok(id)
    }

    /// The string of an id.
    pub(crate) fn resolve(&self, id: u32) -> Option<&str> {
        let i = usize::try_from(id).ok()?.checked_sub(1)?;
        self.names.get(i)?.as_deref()
    }

    /// The number of slots (live or freed); valid ids are `1..=slots()`.
    #[cfg(test)]
    pub(crate) fn slots(&self) -> usize {
        self.names.len()
    }

    /// The number of live strings.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// A "referenced" mark per id, all false (index 0 unused).
    pub(crate) fn marks(&self) -> Vec<bool> {
        vec![false; self.names.len() + 1]
    }

    /// Drops every string whose mark is false; their ids become free. Returns how many went.
    pub(crate) fn retain(&mut self, marks: &[bool]) -> usize {
        let mut removed = 0;
        for (i, slot) in self.names.iter_mut().enumerate() {
            let id = i + 1;
            if slot.is_some() && !marks.get(id).copied().unwrap_or(false) {
                if let Some(name) = slot.take() {
                    self.ids.remove(&name);
                }
                self.free.insert(u32::try_from(id).unwrap_or(u32::MAX));
                removed += 1;
            }
        }
        // Trailing free ids shrink the table, so a table emptied by erasures holds nothing.
        while matches!(self.names.last(), Some(None)) {
            let last = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
            self.names.pop();
            self.free.remove(&last);
        }
        removed
    }

    /// The canonical numbering of the marked strings: the marked names in byte order (their
    /// canonical ids are 1, 2, … in that order), and a map from each current id to its canonical id
    /// (0 for an unmarked or freed id).
    pub(crate) fn canonical(&self, marks: &[bool]) -> (Vec<String>, Vec<u32>) {
        let mut live: Vec<(&str, usize)> = self
            .names
            .iter()
            .enumerate()
            .filter(|(i, _)| marks.get(i + 1).copied().unwrap_or(false))
            .filter_map(|(i, n)| n.as_deref().map(|n| (n, i + 1)))
            .collect();
        live.sort_unstable();
        let mut remap = vec![0u32; self.names.len() + 1];
        for (canonical, (_, id)) in live.iter().enumerate() {
            remap[*id] = u32::try_from(canonical + 1).unwrap_or(u32::MAX);
        }
        (live.into_iter().map(|(n, _)| n.to_owned()).collect(), remap)
    }

    /// A table whose ids are 1..=n in the order given (a canonical snapshot's order).
    ///
    /// # Errors
    /// Too many names, or a name given twice.
    pub(crate) fn from_names(kind: &'static str, max: u32, names: Vec<String>) -> Result<Self> {
        let mut t = Self::new(kind, max);
        for name in names {
            let before = t.len();
            t.intern(&name)?;
            if t.len() == before {
                return Err(FeatureError::SnapshotCorrupt("a vocabulary names a string twice"));
            }
        }
        Ok(t)
    }

    /// Bytes held: the slot vector, the hash table (estimated from its capacity) and the strings
    /// (counted once: both sides share one allocation).
    pub(crate) fn heap_bytes(&self) -> usize {
        let strings: usize = self.ids.keys().map(|k| k.len() + 2 * std::mem::size_of::<usize>()).sum();
        self.names.capacity() * std::mem::size_of::<Option<Arc<str>>>()
            + crate::memory::hash_map_bytes::<Arc<str>, u32>(self.ids.capacity())
            + self.free.len() * 2 * std::mem::size_of::<u32>()
            + strings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_start_at_one_are_stable_and_full_tables_refuse() {
        let mut t = Interner::new("test", 2);
        assert_eq!(t.intern("b").unwrap(), 1);
        assert_eq!(t.intern("a").unwrap(), 2);
        assert_eq!(t.intern("b").unwrap(), 1);
        assert_eq!(t.intern("c").unwrap_err().code(), "vocabulary_full");
        assert_eq!(t.resolve(2), Some("a"));
        assert_eq!(t.resolve(0), None);
        assert_eq!(t.resolve(3), None);
    }

    #[test]
    fn retain_frees_ids_and_canonical_order_ignores_history() {
        let mut t = Interner::new("test", 10);
        for s in ["z", "x", "y"] {
            t.intern(s).unwrap();
        }
        let mut marks = t.marks();
        marks[1] = true; // z
        marks[3] = true; // y
        assert_eq!(t.retain(&marks), 1);
        assert_eq!(t.get("x"), None);
        assert_eq!(t.intern("w").unwrap(), 2, "freed ids are reused");
        let mut marks = t.marks();
        marks[1] = true;
        marks[2] = true;
        marks[3] = true;
        let (names, remap) = t.canonical(&marks);
        assert_eq!(names, ["w", "y", "z"]);
        assert_eq!(remap, [0, 3, 1, 2]);
        let mut none = t.marks();
        none[0] = false;
        t.retain(&none);
        assert_eq!((t.len(), t.slots()), (0, 0), "an emptied table holds nothing");
    }
}
