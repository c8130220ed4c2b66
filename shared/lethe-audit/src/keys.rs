//! Checkpoint signing: the [`AuditSigner`] (an Ed25519 key with a key id), the [`AuditVerifier`] (the
//! trusted public keys, by key id) and the signed [`Checkpoint`].

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::codec::{self, Hash, StoredCheckpoint};
use crate::{AuditError, Result};

/// Longest key id accepted.
pub const MAX_KEY_ID_LEN: usize = 64;
/// Most signature checks an [`AuditVerifier`] remembers before it starts over.
const MAX_REMEMBERED: usize = 1 << 16;

/// The key that signs checkpoints, with its key id. Persist it with [`AuditSigner::to_bytes`], sealed
/// (encrypted) by the caller.
///
/// `Debug` prints the key id only.
#[derive(Clone)]
pub struct AuditSigner {
    key: SigningKey,
    key_id: String,
}

impl fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSigner").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl AuditSigner {
    /// A fresh key from the operating system's generator; its key id is
    /// [`key_id_for`]`(public key)`.
    ///
    /// # Errors
    /// [`AuditError::KeyGeneration`] when the random generator fails.
    pub fn generate() -> Result<Self> {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.try_fill_bytes(seed.as_mut()).map_err(|_| AuditError::KeyGeneration)?;
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id_for(&key.verifying_key());
        Ok(Self { key, key_id })
    }

    /// The key with this 32-byte secret seed and key id.
    ///
    /// # Errors
    /// [`AuditError::InvalidKey`] when `key_id` is empty, longer than [`MAX_KEY_ID_LEN`] or holds
    /// anything but `A-Z a-z 0-9 . _ -`.
    pub fn from_bytes(secret: &[u8; 32], key_id: impl Into<String>) -> Result<Self> {
        let key_id = key_id.into();
        check_key_id(&key_id)?;
        Ok(Self { key: SigningKey::from_bytes(secret), key_id })
    }

    /// The 32-byte secret seed, for the caller to seal.
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// The key id written into checkpoints.
    #[must_use]
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key that verifies this signer's checkpoints.
    #[must_use]
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// A verifier trusting this signer's key only.
    #[must_use]
    pub fn verifier(&self) -> AuditVerifier {
        let mut keys = BTreeMap::new();
        keys.insert(self.key_id.clone(), self.verifying_key());
        AuditVerifier { keys, ..AuditVerifier::default() }
    }

    pub(crate) fn sign(&self, seq: u64, hash: &Hash, time_micros: i64) -> StoredCheckpoint {
        let signature = self.key.sign(&codec::checkpoint_message(seq, hash, time_micros)).to_bytes();
        StoredCheckpoint { seq, hash: *hash, time_micros, key_id: self.key_id.clone(), signature }
    }
}

/// The key id [`AuditSigner::generate`] gives a key: `audit-` + hex of the first 8 bytes of SHA-256 over
/// the public key.
#[must_use]
pub fn key_id_for(key: &VerifyingKey) -> String {
    format!("audit-{}", hex::encode(&codec::sha256(key.as_bytes())[..8]))
}

fn check_key_id(key_id: &str) -> Result<()> {
    let ok = (1..=MAX_KEY_ID_LEN).contains(&key_id.len())
        && key_id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(AuditError::InvalidKey("key id must be 1 to 64 of A-Z, a-z, 0-9, '.', '_' and '-'"))
    }
}

/// The public keys trusted to sign checkpoints, by key id. Keep retired signers' keys here so that their
/// checkpoints keep verifying after a rotation.
///
/// It remembers the signatures it has accepted (by a SHA-256 over key, message and signature, shared by
/// clones), so verifying an unchanged checkpoint again costs a hash instead of an Ed25519 verification;
/// a changed byte in the checkpoint changes the digest and is verified in full.
#[derive(Clone, Default)]
pub struct AuditVerifier {
    keys: BTreeMap<String, VerifyingKey>,
    accepted: Arc<Mutex<HashSet<[u8; 32]>>>,
}

impl PartialEq for AuditVerifier {
    fn eq(&self, other: &Self) -> bool {
        self.keys == other.keys
    }
}

impl Eq for AuditVerifier {}

impl fmt::Debug for AuditVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditVerifier").field("key_ids", &self.keys.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl AuditVerifier {
    /// A verifier trusting no key (every checkpoint fails; entries still verify as a hash chain).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `key` under `key_id`. Trusting the same pair twice is a no-op.
    ///
    /// # Errors
    /// [`AuditError::InvalidKey`] for a malformed key id, or one already trusted with a different key.
    pub fn trust(&mut self, key_id: impl Into<String>, key: VerifyingKey) -> Result<()> {
        let key_id = key_id.into();
        check_key_id(&key_id)?;
        match self.keys.get(&key_id) {
            Some(existing) if *existing != key => {
                Err(AuditError::InvalidKey("key id already trusted with a different key"))
            }
            Some(_) => Ok(()),
            None => {
                self.keys.insert(key_id, key);
                Ok(())
            }
        }
    }

    /// A verifier from raw 32-byte Ed25519 public keys.
    ///
    /// # Errors
    /// [`AuditError::InvalidKey`] for bytes that are not a public key, a malformed key id, or a key id
    /// given twice with different keys.
    pub fn from_public_keys<I, S>(keys: I) -> Result<Self>
    where
        I: IntoIterator<Item = (S, [u8; 32])>,
        S: Into<String>,
    {
        let mut v = Self::new();
        for (key_id, bytes) in keys {
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| AuditError::InvalidKey("not an ed25519 key"))?;
            v.trust(key_id, key)?;
        }
        Ok(v)
    }

    /// Adds every key of `other`.
    ///
    /// # Errors
    /// [`AuditError::InvalidKey`] when a key id is trusted by both with different keys.
    pub fn extend(&mut self, other: &Self) -> Result<()> {
        for (id, key) in &other.keys {
            self.trust(id.clone(), *key)?;
        }
        Ok(())
    }

    /// The key trusted under `key_id`.
    #[must_use]
    pub fn key(&self, key_id: &str) -> Option<&VerifyingKey> {
        self.keys.get(key_id)
    }

    /// Every trusted (key id, key), ordered by key id.
    pub fn keys(&self) -> impl Iterator<Item = (&str, &VerifyingKey)> {
        self.keys.iter().map(|(id, k)| (id.as_str(), k))
    }

    /// How many keys are trusted.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is trusted.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks a checkpoint's key and signature (not that its hash is the chain's).
    pub(crate) fn check(&self, cp: &StoredCheckpoint) -> std::result::Result<(), String> {
        let key =
            self.keys.get(&cp.key_id).ok_or_else(|| format!("checkpoint signed by untrusted key {:?}", cp.key_id))?;
        let message = codec::checkpoint_message(cp.seq, &cp.hash, cp.time_micros);
        let tag = codec::sha256(&[key.as_bytes(), &message[..], &cp.signature].concat());
        if self.remembered().contains(&tag) {
            return Ok(());
        }
        key.verify_strict(&message, &Signature::from_bytes(&cp.signature))
            .map_err(|_| "checkpoint signature is invalid".to_owned())?;
        let mut accepted = self.remembered();
        if accepted.len() >= MAX_REMEMBERED {
            accepted.clear();
        }
        accepted.insert(tag);
        Ok(())
    }

    /// The accepted-signature set. Nothing panics while it is held, and a set that lost an insert is only
    /// smaller, so a poisoned lock is taken over.
    fn remembered(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.accepted.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A signed statement "the chain's entry `seq` has hash `hash`", made at `time_micros` by key `key_id`.
///
/// `signature` is hex Ed25519 over `"lethe-audit-checkpoint-v1\0" || seq (u64 BE) || hash (32 bytes) ||
/// time_micros (i64 BE)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The entry the checkpoint covers (and, through the hash chain, every entry before it).
    pub seq: u64,
    /// Hex hash of entry `seq`.
    pub hash: String,
    /// UTC microseconds since the Unix epoch when it was signed.
    pub time_micros: i64,
    /// The signing key's id.
    pub key_id: String,
    /// Hex Ed25519 signature (128 characters).
    pub signature: String,
}

impl Checkpoint {
    /// Checks the signature with the trusted keys (not that the hash is the chain's: that is
    /// [`AuditChain::verify`](crate::AuditChain::verify)'s job).
    ///
    /// # Errors
    /// [`AuditError::Tampered`] at `seq` for malformed hex, an untrusted key id or a bad signature.
    pub fn verify(&self, verifier: &AuditVerifier) -> Result<()> {
        let stored = self.to_stored()?;
        verifier.check(&stored).map_err(|reason| AuditError::tampered(self.seq, reason))
    }

    pub(crate) fn from_stored(cp: &StoredCheckpoint) -> Self {
        Self {
            seq: cp.seq,
            hash: hex::encode(cp.hash),
            time_micros: cp.time_micros,
            key_id: cp.key_id.clone(),
            signature: hex::encode(cp.signature),
        }
    }

    pub(crate) fn to_stored(&self) -> Result<StoredCheckpoint> {
        let hash = codec::parse_hash(&self.hash)
            .ok_or_else(|| AuditError::tampered(self.seq, "checkpoint hash is not hex"))?;
        let signature = codec::parse_lower_hex::<64>(&self.signature)
            .ok_or_else(|| AuditError::tampered(self.seq, "checkpoint signature is not hex"))?;
        Ok(StoredCheckpoint {
            seq: self.seq,
            hash,
            time_micros: self.time_micros,
            key_id: self.key_id.clone(),
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signer_round_trips_through_its_bytes() {
        let s = AuditSigner::generate().expect("generate");
        let back = AuditSigner::from_bytes(&s.to_bytes(), s.key_id()).expect("from_bytes");
        assert_eq!(back.verifying_key(), s.verifying_key());
        assert_eq!(s.key_id(), key_id_for(&s.verifying_key()));
        assert!(!format!("{s:?}").contains(&hex::encode(*s.to_bytes())));
    }

    #[test]
    fn signatures_verify_with_the_right_key_only() {
        let (a, b) = (AuditSigner::generate().expect("a"), AuditSigner::generate().expect("b"));
        let cp = Checkpoint::from_stored(&a.sign(5, &[1; 32], 9));
        assert!(cp.verify(&a.verifier()).is_ok());
        assert!(matches!(cp.verify(&b.verifier()), Err(AuditError::Tampered { seq: 5, .. })));
        let forged = Checkpoint { key_id: b.key_id().to_owned(), ..cp.clone() };
        assert!(matches!(forged.verify(&b.verifier()), Err(AuditError::Tampered { seq: 5, .. })));
        let later = Checkpoint { time_micros: 10, ..cp };
        assert!(later.verify(&a.verifier()).is_err());
    }

    #[test]
    fn a_key_id_cannot_be_trusted_with_two_keys() {
        let (a, b) = (AuditSigner::generate().expect("a"), AuditSigner::generate().expect("b"));
        let mut v = a.verifier();
        assert!(v.trust(a.key_id(), a.verifying_key()).is_ok());
        assert!(matches!(v.trust(a.key_id(), b.verifying_key()), Err(AuditError::InvalidKey(_))));
        assert!(AuditSigner::from_bytes(&[0; 32], "bad id").is_err());
        assert!(AuditSigner::from_bytes(&[0; 32], "").is_err());
    }
}
