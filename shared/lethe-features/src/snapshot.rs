//! The canonical snapshot of a projection and the sealed checkpoint built on it.
//!
//! **Snapshot** ([`Projector::snapshot_bytes`]): `"LETHE-FV"`, format version (u16 LE), then a
//! postcard body: the gate (purpose, whether it needs consent), the category, item, location and
//! segment tables (only strings in use, in byte order, so ids are renumbered 1, 2, … in that order
//! and do not depend on the order strings were first seen), the catalog items in id order, and
//! the subjects in pseudonym order with their views and ledgers. Item statistics are not stored:
//! they are the sums of the ledgers and are rebuilt on restore. The same state always gives the
//! same bytes, so a SHA-256 of them ([`Projector::snapshot_digest`]) proves that a rebuild from the
//! log gives byte-identical views. Format changes bump [`SNAPSHOT_VERSION`]; readers refuse
//! versions they do not know (a checkpoint of an older build is rebuilt from the log instead).
//!
//! **Checkpoint** ([`Projector::checkpoint`]): `"LETHE-FC"`, version (u16 LE), the log position
//! the snapshot covers (u64 LE), a random 96-bit nonce, then the snapshot sealed with AES-256-GCM
//! under the caller's key, the first 18 bytes (magic, version, position) as associated data. A
//! restart restores it and replays only the events after the position
//! ([`Projector::catch_up`]).
//!
//! **Hazards (invariant 5).**
//! - A checkpoint taken before an erasure still holds the erased subject, sealed. After each
//!   erasure the caller must write a new checkpoint under a **new key** and destroy the old key:
//!   destroying the key is what makes the old checkpoint's bytes unreadable, wherever copies of
//!   them went (deleting a file or a sled record does not). Restoring an older checkpoint and
//!   catching up forgets the subject again in memory (its fence lies after the checkpoint's
//!   position), but does nothing to the old checkpoint's bytes.
//! - Plaintext snapshots must never be written to disk: sled (and most file systems) keep removed
//!   and overwritten bytes, so nothing written in clear can be taken back. Sealed checkpoints may
//!   be stored anywhere, because destroying their key is what erases them; keep that key apart
//!   from them (in the key store, under the master secret).
//! - Nonces are random: a key must seal fewer than 2^32 checkpoints (rotating the key at every
//!   erasure keeps that far away).

use lethe_crypto::{DataKey, SecretBytes, NONCE_LEN};
use lethe_domain::{Position, Pseudonym, Purpose};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::catalog::{Item, ItemCatalog, Touch, LEDGER_CAP, MAX_CATEGORIES, MAX_ITEMS};
use crate::projector::{Projector, ProjectorConfig, Subject, MAX_SMALL_VOCAB};
use crate::view::{FeatureView, IdMaps};
use crate::vocab::Interner;
use crate::{FeatureError, Result};

/// Magic bytes of a snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"LETHE-FV";
/// The snapshot format this build writes and reads.
pub const SNAPSHOT_VERSION: u16 = 1;
/// Magic bytes of a checkpoint.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"LETHE-FC";
/// The checkpoint format this build writes and reads.
pub const CHECKPOINT_VERSION: u16 = 1;
/// Magic, version and position: the checkpoint's associated data.
const HEADER_LEN: usize = 8 + 2 + 8;

#[derive(Serialize)]
struct SnapshotOut<'a> {
    purpose: &'a str,
    requires_consent: bool,
    categories: Vec<String>,
    items: Vec<String>,
    locations: Vec<String>,
    segments: Vec<String>,
    catalog: Vec<CatalogItem>,
    subjects: SubjectsOut<'a>,
}

#[derive(Deserialize)]
struct SnapshotIn {
    purpose: String,
    requires_consent: bool,
    categories: Vec<String>,
    items: Vec<String>,
    locations: Vec<String>,
    segments: Vec<String>,
    catalog: Vec<CatalogItem>,
    subjects: Vec<SubjectRecord>,
}

#[derive(Serialize, Deserialize)]
struct CatalogItem {
    item: u32,
    entry: Item,
}

#[derive(Serialize, Deserialize)]
struct SubjectRecord {
    pseudonym: [u8; 32],
    since: i64,
    view: FeatureView,
    ledger: Vec<Touch>,
}

/// The subjects, serialized one by one in pseudonym order with canonical ids (no copy of the
/// whole set).
struct SubjectsOut<'a> {
    projector: &'a Projector,
    order: Vec<(Pseudonym, u32)>,
    maps: IdMaps<'a>,
}

impl Serialize for SubjectsOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.order.len()))?;
        for (pseudonym, slot) in &self.order {
            let Some(Some(subject)) = self.projector.slots.get(*slot as usize) else {
                return Err(serde::ser::Error::custom("index names an empty slot"));
            };
            let mut view = subject.view;
            let mut ledger = subject.ledger.clone();
            let mapped = view.remap(&mut self.maps.reborrow()).is_some()
                && ledger.iter_mut().all(|t| self.maps.item(t.item).map(|i| t.item = i).is_some());
            if !mapped {
                return Err(serde::ser::Error::custom("an id escaped the vocabulary marks"));
            }
            seq.serialize_element(&SubjectRecord {
                pseudonym: *pseudonym.as_bytes(),
                since: subject.since,
                view,
                ledger,
            })?;
        }
        seq.end()
    }
}

impl<'a> IdMaps<'a> {
    fn reborrow(&self) -> IdMaps<'a> {
        IdMaps { categories: self.categories, items: self.items, locations: self.locations, segments: self.segments }
    }
}

impl Projector {
    /// The canonical serialization of the projection (see the module docs): subjects in pseudonym
    /// order, vocabularies renumbered in string order, statistics and counters left out. The same
    /// state always gives the same bytes. **Plaintext personal data:** keep it in memory, or seal
    /// it ([`Self::checkpoint`]).
    #[must_use]
    pub fn snapshot_bytes(&self) -> Vec<u8> {
        let [cats, items, locs, segs] = self.marks();
        let (categories, cat_map) = self.catalog.categories.canonical(&cats);
        let (item_names, item_map) = self.catalog.items.canonical(&items);
        let (locations, loc_map) = self.locations.canonical(&locs);
        let (segments, seg_map) = self.segments.canonical(&segs);
        let maps = IdMaps { categories: &cat_map, items: &item_map, locations: &loc_map, segments: &seg_map };
        let mut catalog: Vec<CatalogItem> = self
            .catalog
            .entries
            .iter()
            .filter_map(|(id, item)| {
                let mut entry = item.clone();
                if entry.category != 0 {
                    entry.category = maps.category(entry.category)?;
                }
                Some(CatalogItem { item: maps.item(*id)?, entry })
            })
            .collect();
        catalog.sort_unstable_by_key(|c| c.item);
        let mut order: Vec<(Pseudonym, u32)> = self
            .index
            .iter()
            .filter(|(_, slot)| matches!(self.slots.get(**slot as usize), Some(Some(_))))
            .map(|(p, s)| (*p, *s))
            .collect();
        order.sort_unstable_by_key(|(p, _)| *p);
        let snapshot = SnapshotOut {
            purpose: self.config.purpose().as_str(),
            requires_consent: self.config.requires_consent(),
            categories,
            items: item_names,
            locations,
            segments,
            catalog,
            subjects: SubjectsOut { projector: self, order, maps: maps.reborrow() },
        };
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        // Serializing owned, validated values into a vector fails only if a subject's ids escaped
        // the marks, which `marks` rules out; an empty body would then fail to restore loudly.
        postcard::to_extend(&snapshot, out).unwrap_or_default()
    }

    /// SHA-256 of [`Self::snapshot_bytes`].
    #[must_use]
    pub fn snapshot_digest(&self) -> [u8; 32] {
        let bytes = Zeroizing::new(self.snapshot_bytes());
        Sha256::digest(&*bytes).into()
    }

    /// Rebuilds a projector from [`Self::snapshot_bytes`]. Its position is 0 and its counters
    /// are zero; [`Self::restore`] sets the position from the checkpoint.
    ///
    /// # Errors
    /// [`FeatureError::CheckpointFormat`] (not a snapshot), [`FeatureError::CheckpointVersion`],
    /// [`FeatureError::SnapshotCorrupt`] (the body does not decode, is not canonical, or names an
    /// id out of range).
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self> {
        let corrupt = FeatureError::SnapshotCorrupt;
        if bytes.len() < 10 || bytes[..8] != SNAPSHOT_MAGIC {
            return Err(FeatureError::CheckpointFormat);
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != SNAPSHOT_VERSION {
            return Err(FeatureError::CheckpointVersion(version));
        }
        let (snap, rest): (SnapshotIn, _) =
            postcard::take_from_bytes(&bytes[10..]).map_err(|_| corrupt("the body does not decode"))?;
        if !rest.is_empty() {
            return Err(corrupt("trailing bytes"));
        }
        let purpose = Purpose::parse(&snap.purpose).map_err(|_| corrupt("the purpose is not a purpose name"))?;
        for table in [&snap.categories, &snap.items, &snap.locations, &snap.segments] {
            if !table.windows(2).all(|w| w[0] < w[1]) {
                return Err(corrupt("a vocabulary is not in canonical order"));
            }
        }
        let identity = |n: usize| (0..=u32::try_from(n).unwrap_or(u32::MAX)).collect::<Vec<u32>>();
        let (cat_map, item_map) = (identity(snap.categories.len()), identity(snap.items.len()));
        let (loc_map, seg_map) = (identity(snap.locations.len()), identity(snap.segments.len()));
        let maps = IdMaps { categories: &cat_map, items: &item_map, locations: &loc_map, segments: &seg_map };
        let mut p = Self::new(ProjectorConfig::new(purpose, snap.requires_consent));
        p.catalog = ItemCatalog {
            categories: Interner::from_names("category", MAX_CATEGORIES, snap.categories)?,
            items: Interner::from_names("item", MAX_ITEMS, snap.items)?,
            ..ItemCatalog::new()
        };
        p.locations = Interner::from_names("location", MAX_SMALL_VOCAB, snap.locations)?;
        p.segments = Interner::from_names("segment", MAX_SMALL_VOCAB, snap.segments)?;
        let mut last_item = 0;
        for c in snap.catalog {
            let category_ok = c.entry.category == 0 || maps.category(c.entry.category).is_some();
            if maps.item(c.item).is_none() || !category_ok || c.item <= last_item {
                return Err(corrupt("a catalog item is out of range or out of order"));
            }
            last_item = c.item;
            p.catalog.entries.insert(c.item, c.entry);
        }
        let mut last: Option<[u8; 32]> = None;
        p.slots.reserve_exact(snap.subjects.len());
        for mut s in snap.subjects {
            if last.is_some_and(|l| l >= s.pseudonym) {
                return Err(corrupt("subjects are not in pseudonym order"));
            }
            last = Some(s.pseudonym);
            if s.view.remap(&mut maps.reborrow()).is_none() {
                return Err(corrupt("a view names an id out of range"));
            }
            let ledger_ok = s.ledger.len() <= LEDGER_CAP
                && s.ledger
                    .iter()
                    .enumerate()
                    .all(|(i, t)| maps.item(t.item).is_some() && s.ledger[..i].iter().all(|u| u.item != t.item));
            if !ledger_ok {
                return Err(corrupt("a ledger is too long, repeats an item or names an id out of range"));
            }
            for t in &s.ledger {
                p.catalog.add(*t);
            }
            let slot = u32::try_from(p.slots.len()).map_err(|_| corrupt("too many subjects"))?;
            p.slots.push(Some(Subject { since: s.since, view: s.view, ledger: s.ledger }));
            p.index.insert(Pseudonym::from_bytes(s.pseudonym), slot);
        }
        Ok(p)
    }

    /// Seals the snapshot and the log position it covers with AES-256-GCM under `key` (see the
    /// module docs for the format and for what the caller must do after an erasure).
    #[must_use]
    pub fn checkpoint(&self, key: &[u8; 32]) -> Vec<u8> {
        let snapshot = Zeroizing::new(self.snapshot_bytes());
        let header = header(self.position);
        let nonce: [u8; NONCE_LEN] = lethe_crypto::random_bytes();
        let sealed = DataKey::new(&SecretBytes::new(*key)).seal(&nonce, &header, &snapshot);
        let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + sealed.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a checkpoint: the projector and the log position it covers. Catch up from there
    /// ([`Self::catch_up`]) to replay only the events after it.
    ///
    /// # Errors
    /// [`FeatureError::CheckpointTruncated`], [`FeatureError::CheckpointFormat`],
    /// [`FeatureError::CheckpointVersion`]; [`FeatureError::CheckpointTampered`] when the key is
    /// wrong or any byte (header included) was altered; [`FeatureError::SnapshotCorrupt`].
    pub fn restore(bytes: &[u8], key: &[u8; 32]) -> Result<(Self, Position)> {
        if bytes.len() < HEADER_LEN + NONCE_LEN {
            return Err(FeatureError::CheckpointTruncated { len: bytes.len() });
        }
        if bytes[..8] != CHECKPOINT_MAGIC {
            return Err(FeatureError::CheckpointFormat);
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != CHECKPOINT_VERSION {
            return Err(FeatureError::CheckpointVersion(version));
        }
        let mut pos = [0u8; 8];
        pos.copy_from_slice(&bytes[10..HEADER_LEN]);
        let position = Position(u64::from_le_bytes(pos));
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[HEADER_LEN..HEADER_LEN + NONCE_LEN]);
        let snapshot = Zeroizing::new(
            DataKey::new(&SecretBytes::new(*key))
                .open(&nonce, &bytes[..HEADER_LEN], &bytes[HEADER_LEN + NONCE_LEN..])
                .map_err(|_| FeatureError::CheckpointTampered)?,
        );
        let mut p = Self::from_snapshot(&snapshot)?;
        p.position = position;
        Ok((p, position))
    }
}

fn header(position: Position) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&CHECKPOINT_MAGIC);
    h[8..10].copy_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    h[10..].copy_from_slice(&position.0.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Projector {
        Projector::new(ProjectorConfig::new(Purpose::parse("personalization").unwrap(), true))
    }

    #[test]
    fn an_empty_projection_round_trips() {
        let p = empty();
        let bytes = p.snapshot_bytes();
        assert_eq!(&bytes[..8], b"LETHE-FV");
        let q = Projector::from_snapshot(&bytes).unwrap();
        assert_eq!(q.snapshot_bytes(), bytes);
    }

    #[test]
    fn snapshots_refuse_other_formats_and_trailing_bytes() {
        let mut bytes = empty().snapshot_bytes();
        assert_eq!(Projector::from_snapshot(b"nope").unwrap_err().code(), "checkpoint_format");
        bytes[8] = 9;
        assert_eq!(Projector::from_snapshot(&bytes).unwrap_err().code(), "checkpoint_version");
        bytes[8] = 1;
        bytes.push(0);
        assert_eq!(Projector::from_snapshot(&bytes).unwrap_err().code(), "snapshot_corrupt");
    }

    #[test]
    fn truncated_and_foreign_checkpoints_are_refused() {
        let key = [3u8; 32];
        let c = empty().checkpoint(&key);
        assert_eq!(Projector::restore(&c[..20], &key).unwrap_err().code(), "checkpoint_truncated");
        let mut other = c.clone();
        other[0] = b'X';
        assert_eq!(Projector::restore(&other, &key).unwrap_err().code(), "checkpoint_format");
        assert_eq!(Projector::restore(&c, &[4u8; 32]).unwrap_err().code(), "checkpoint_tampered");
        let mut moved = c.clone();
        moved[10] ^= 1; // the position is authenticated
        assert_eq!(Projector::restore(&moved, &key).unwrap_err().code(), "checkpoint_tampered");
        assert_ne!(empty().checkpoint(&key), c, "nonces are fresh");
    }
}
