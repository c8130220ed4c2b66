//! Identifiers and free-text values carried by a request: its id, the subject digest that replaces any
//! subject reference, the role of whoever acted, and an operator's note.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{DsrError, Result};

/// A request's id: a UUID version 7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(Uuid);

impl RequestId {
    /// A fresh id from the current clock.
    #[must_use]
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// Parses the hyphenated (or simple) text form.
    ///
    /// # Errors
    /// [`DsrError::InvalidRequestId`] when the text is not a UUID or not version 7.
    pub fn parse(raw: &str) -> Result<Self> {
        Uuid::try_parse(raw).map_err(|_| DsrError::InvalidRequestId).and_then(Self::try_from)
    }

    /// The 16 bytes, big-endian as in the text form (storage keys sort by time).
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The wrapped UUID.
    #[must_use]
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl TryFrom<Uuid> for RequestId {
    type Error = DsrError;

    fn try_from(uuid: Uuid) -> Result<Self> {
        if uuid.get_version_num() == 7 {
            Ok(Self(uuid))
        } else {
            Err(DsrError::InvalidRequestId)
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl Serialize for RequestId {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Lowercase hex SHA-256 of a subject's pseudonym bytes: the only subject reference this crate keeps.
///
/// Pass `Pseudonym::as_bytes()` from `lethe-domain`; the result equals the digest `lethe-eventlog` writes
/// into erasure receipts, so a request and its receipt can be matched without storing the pseudonym.
#[must_use]
pub fn subject_digest(pseudonym_bytes: &[u8]) -> String {
    SubjectDigest::of_pseudonym(pseudonym_bytes).to_string()
}

/// The SHA-256 of a subject's pseudonym, shown and stored as 64 lowercase hex characters.
///
/// A request never stores an identifier or a pseudonym, only this digest. A pseudonym carries 256 bits
/// of keyed randomness, so the digest cannot be reversed; whoever holds the pseudonym can recompute it
/// to find the subject's requests.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubjectDigest([u8; 32]);

impl SubjectDigest {
    /// Digests the pseudonym bytes.
    #[must_use]
    pub fn of_pseudonym(pseudonym_bytes: &[u8]) -> Self {
        Self(Sha256::digest(pseudonym_bytes).into())
    }

    /// Parses the 64-character lowercase hex form.
    ///
    /// # Errors
    /// [`DsrError::InvalidSubjectDigest`] for any other text (uppercase included, so one digest has one
    /// spelling).
    pub fn parse(raw: &str) -> Result<Self> {
        let lowercase = raw.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let mut out = [0u8; 32];
        if !lowercase || hex::decode_to_slice(raw, &mut out).is_err() {
            return Err(DsrError::InvalidSubjectDigest);
        }
        Ok(Self(out))
    }

    /// The raw digest bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for SubjectDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SubjectDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectDigest({}…)", hex::encode(&self.0[..6]))
    }
}

impl Serialize for SubjectDigest {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SubjectDigest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The role of whoever moved a request (`privacy_officer`, `system`, `subject`): a role, never a person,
/// so the history names no one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ActorRole(String);

impl ActorRole {
    /// Longest accepted role, in bytes.
    pub const MAX_LEN: usize = 32;

    /// Parses a role: 1 to [`Self::MAX_LEN`] characters of `a-z`, `0-9` and `_`, starting with a letter.
    ///
    /// # Errors
    /// [`DsrError::InvalidActorRole`] for anything else (which keeps emails and names out).
    pub fn parse(raw: &str) -> Result<Self> {
        let mut bytes = raw.bytes();
        let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase());
        let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if first_ok && rest_ok && raw.len() <= Self::MAX_LEN {
            Ok(Self(raw.to_owned()))
        } else {
            Err(DsrError::InvalidActorRole)
        }
    }

    /// The role as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ActorRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ActorRole {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ActorRole {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A short operator note on a transition. Callers must keep identifiers and personal data out of it;
/// this type only bounds its size and refuses control characters. `Debug` does not print the text.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Note(String);

impl Note {
    /// Longest accepted note, in bytes.
    pub const MAX_LEN: usize = 1024;

    /// Parses a note: at most [`Self::MAX_LEN`] bytes, no control characters except newline and tab.
    ///
    /// # Errors
    /// [`DsrError::InvalidNote`] for anything else.
    pub fn parse(raw: &str) -> Result<Self> {
        let clean = !raw.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
        if clean && raw.len() <= Self::MAX_LEN {
            Ok(Self(raw.to_owned()))
        } else {
            Err(DsrError::InvalidNote { max: Self::MAX_LEN })
        }
    }

    /// The note's text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Note({} bytes)", self.0.len())
    }
}

impl Serialize for Note {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Note {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_lowercase_sha256_hex() {
        // SHA-256 of the empty string.
        let d = subject_digest(b"");
        assert_eq!(d, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(SubjectDigest::parse(&d).unwrap().to_string(), d);
        assert!(SubjectDigest::parse(&d.to_uppercase()).is_err());
        assert!(SubjectDigest::parse(&d[..63]).is_err());
        assert!(SubjectDigest::parse("").is_err());
        assert!(SubjectDigest::parse("é").is_err());
    }

    #[test]
    fn request_id_must_be_v7() {
        let id = RequestId::generate();
        assert_eq!(RequestId::parse(&id.to_string()).unwrap(), id);
        assert!(RequestId::parse("67e55044-10b1-426f-9247-bb680e5fe0c8").is_err()); // v4
        assert!(RequestId::parse("nope").is_err());
    }

    #[test]
    fn actor_roles_and_notes() {
        assert!(ActorRole::parse("privacy_officer").is_ok());
        for bad in ["", "Admin", "a@b.c", "_x", "a b", &"a".repeat(33)] {
            assert!(ActorRole::parse(bad).is_err(), "{bad}");
        }
        assert!(Note::parse("line one\nline two\t!").is_ok());
        assert!(Note::parse("bell\u{7}").is_err());
        assert!(Note::parse(&"x".repeat(1025)).is_err());
        assert_eq!(format!("{:?}", Note::parse("secret").unwrap()), "Note(6 bytes)");
    }
}
