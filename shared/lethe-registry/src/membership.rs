//! Which subjects a model was trained on, answerable without storing who they are.
//!
//! Each model draws a random 32-byte [`MembershipSalt`]. A subject's *tag* is the first 16 bytes of
//! HMAC-SHA256(salt, pseudonym bytes); a [`Membership`] keeps the salt and the sorted, distinct tags
//! of its training subjects. [`Membership::contains`] recomputes the tag of a pseudonym and binary
//! searches for it: a member is always found; a non-member is found only if its 128-bit tag collides
//! with one of the model's, with probability at most `n · 2^-128` for `n` members. Neither
//! identifiers nor pseudonyms are kept: a tag is useless without the pseudonym it came from, and
//! tags under one salt cannot be linked to tags under another.
//!
//! The same HMAC places every subject, member or not, in a *shard*: its first 8 bytes, read as a
//! big-endian `u64`, modulo the shard count. A shard depends only on the salt and the pseudonym, so
//! a retrain that reuses the salt ([`Membership::build`] with [`Membership::salt`]) keeps every
//! subject in its shard, and unlearning one subject retrains one shard.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use lethe_domain::Pseudonym;
use sha2::Sha256;

/// Length of a membership tag in bytes.
pub const TAG_LEN: usize = 16;

/// A membership tag: the truncated HMAC of one pseudonym under one model's salt.
pub(crate) type Tag = [u8; TAG_LEN];

/// The random salt of one model's membership. Not a secret (it is stored beside the tags), but
/// fresh per model so that tags of different models cannot be linked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MembershipSalt([u8; 32]);

impl MembershipSalt {
    /// A fresh salt from the OS CSPRNG.
    pub fn random() -> Self {
        Self(lethe_crypto::random_bytes())
    }

    /// Wraps stored bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The salt's bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac(&self, p: &Pseudonym) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(p.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn tag(&self, p: &Pseudonym) -> Tag {
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&self.mac(p)[..TAG_LEN]);
        tag
    }
}

impl fmt::Debug for MembershipSalt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MembershipSalt(..)")
    }
}

/// The shard of a tag (or of a full HMAC): its first 8 bytes, big-endian, modulo `shards`.
fn shard_of_tag(tag: &[u8], shards: u32) -> u32 {
    let mut head = [0u8; 8];
    head.copy_from_slice(&tag[..8]);
    // The remainder is below `shards`, which is a u32.
    (u64::from_be_bytes(head) % u64::from(shards)) as u32
}

/// One shard of a model's subjects: its index and how many training subjects fall in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardInfo {
    /// The shard's index, `0..shards`.
    pub index: u32,
    /// The number of the model's subjects in this shard.
    pub subjects: u64,
}

/// The training subjects of one model, as salted tags (see the module docs). After the model is
/// retired the tags and salt are dropped and only the fact that they were is kept
/// ([`Membership::is_scrubbed`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Membership {
    held: Option<Held>,
}

#[derive(Clone, PartialEq, Eq)]
struct Held {
    salt: MembershipSalt,
    /// Sorted ascending, no duplicates.
    tags: Vec<Tag>,
}

impl Membership {
    /// The membership of `subjects` under a fresh random salt. Duplicates count once.
    pub fn new<'a>(subjects: impl IntoIterator<Item = &'a Pseudonym>) -> Self {
        Self::build(MembershipSalt::random(), subjects)
    }

    /// The membership of `subjects` under a given salt: pass the salt of the model being retrained
    /// to keep its shard assignment. Duplicates count once.
    pub fn build<'a>(salt: MembershipSalt, subjects: impl IntoIterator<Item = &'a Pseudonym>) -> Self {
        let mut tags: Vec<Tag> = subjects.into_iter().map(|p| salt.tag(p)).collect();
        tags.sort_unstable();
        tags.dedup();
        Self { held: Some(Held { salt, tags }) }
    }

    /// Rebuilds a stored membership; `tags` must be sorted strictly ascending.
    pub(crate) fn from_stored(salt: MembershipSalt, tags: Vec<Tag>) -> Self {
        debug_assert!(tags.windows(2).all(|w| w[0] < w[1]));
        Self { held: Some(Held { salt, tags }) }
    }

    /// The membership of a retired model: no salt, no tags.
    pub(crate) const fn scrubbed() -> Self {
        Self { held: None }
    }

    /// Whether the subject was one of the model's training subjects. Always `false` once scrubbed.
    pub fn contains(&self, p: &Pseudonym) -> bool {
        self.held.as_ref().is_some_and(|h| h.tags.binary_search(&h.salt.tag(p)).is_ok())
    }

    /// The number of distinct subjects (0 once scrubbed).
    pub fn len(&self) -> u64 {
        self.held.as_ref().map_or(0, |h| h.tags.len() as u64)
    }

    /// Whether no subject is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the tags were dropped because the model was retired.
    pub const fn is_scrubbed(&self) -> bool {
        self.held.is_none()
    }

    /// The salt, to build a successor's membership with the same shards; `None` once scrubbed.
    pub fn salt(&self) -> Option<&MembershipSalt> {
        self.held.as_ref().map(|h| &h.salt)
    }

    /// The shard, among `shards`, of any subject (member or not); `None` once scrubbed or when
    /// `shards` is 0. Stable: it depends only on the salt and the pseudonym.
    pub fn shard_of(&self, p: &Pseudonym, shards: u32) -> Option<u32> {
        let h = self.held.as_ref()?;
        (shards > 0).then(|| shard_of_tag(&h.salt.mac(p), shards))
    }

    /// The partition of the members into `shards` shards, with each shard's count: what
    /// [`crate::Manifest::shards`] must hold for a sharded model. Empty once scrubbed, or when
    /// `shards` is 0 or above [`crate::MAX_SHARDS`].
    pub fn shard_counts(&self, shards: u32) -> Vec<ShardInfo> {
        let Some(h) = self.held.as_ref().filter(|_| shards > 0 && shards as usize <= crate::MAX_SHARDS) else {
            return Vec::new();
        };
        let mut counts = vec![0u64; shards as usize];
        for tag in &h.tags {
            counts[shard_of_tag(tag, shards) as usize] += 1;
        }
        counts.into_iter().zip(0u32..).map(|(subjects, index)| ShardInfo { index, subjects }).collect()
    }

    pub(crate) fn tags(&self) -> &[Tag] {
        self.held.as_ref().map_or(&[], |h| &h.tags)
    }

    /// Whether a stored, sorted tag list contains the subject's tag under `salt`, without copying it.
    pub(crate) fn stored_contains(salt: &MembershipSalt, sorted_tags: &[u8], p: &Pseudonym) -> bool {
        let tag = salt.tag(p);
        let n = sorted_tags.len() / TAG_LEN;
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match sorted_tags[mid * TAG_LEN..(mid + 1) * TAG_LEN].cmp(&tag[..]) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }
}

impl fmt::Debug for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.held {
            Some(h) => write!(f, "Membership({} subjects)", h.tags.len()),
            None => f.write_str("Membership(scrubbed)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(i: u8) -> Pseudonym {
        Pseudonym::from_bytes([i; 32])
    }

    #[test]
    fn members_are_found_and_duplicates_count_once() {
        let m = Membership::new(&[p(1), p(2), p(2), p(3)]);
        assert_eq!(m.len(), 3);
        assert!(m.contains(&p(2)));
        assert!(!m.contains(&p(4)));
        let salt = *m.salt().unwrap();
        let raw: Vec<u8> = m.tags().concat();
        assert!(Membership::stored_contains(&salt, &raw, &p(3)));
        assert!(!Membership::stored_contains(&salt, &raw, &p(9)));
    }

    #[test]
    fn the_same_salt_gives_the_same_shards() {
        let salt = MembershipSalt::from_bytes([5; 32]);
        let a = Membership::build(salt, &[p(1)]);
        let b = Membership::build(salt, &[p(2), p(3)]);
        for i in 0..50 {
            assert_eq!(a.shard_of(&p(i), 7), b.shard_of(&p(i), 7));
        }
        assert_eq!(a.shard_of(&p(1), 0), None);
        let counts = b.shard_counts(4);
        assert_eq!(counts.len(), 4);
        assert_eq!(counts.iter().map(|s| s.subjects).sum::<u64>(), 2);
        for s in [p(2), p(3)] {
            let k = b.shard_of(&s, 4).unwrap();
            assert!(counts[k as usize].subjects >= 1);
        }
    }

    #[test]
    fn scrubbed_holds_nothing() {
        let m = Membership::scrubbed();
        assert!(m.is_scrubbed() && m.is_empty());
        assert!(!m.contains(&p(1)));
        assert_eq!(m.shard_of(&p(1), 4), None);
        assert!(m.shard_counts(4).is_empty());
        assert_eq!(format!("{m:?}"), "Membership(scrubbed)");
        assert!(Membership::new(&[p(1)]).shard_counts(u32::MAX).is_empty());
    }
}
