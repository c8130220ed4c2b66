//! Identifiers: the external subject id (never stored), its keyed pseudonym, event types and purposes.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{DomainError, Result};

/// An identifier given by a site or CMS (a user id, an anonymous id). It crosses the collection
/// boundary only as a [`Pseudonym`]; it is never stored, and its `Debug` output is redacted so that
/// it cannot leak through logs.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SubjectId(String);

impl SubjectId {
    /// Longest accepted identifier, in bytes.
    pub const MAX_LEN: usize = 256;

    /// Parses an external identifier.
    ///
    /// # Errors
    /// Empty, longer than [`Self::MAX_LEN`] bytes, or containing control characters.
    pub fn parse(raw: &str) -> Result<Self> {
        let ok = !raw.is_empty() && raw.len() <= Self::MAX_LEN && !raw.chars().any(char::is_control);
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(DomainError::InvalidSubjectId { max: Self::MAX_LEN })
        }
    }

    /// The identifier's bytes, for keyed hashing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectId(<redacted>)")
    }
}

/// A keyed pseudonym (HMAC-SHA256 of a [`SubjectId`] under the pseudonym secret). It is the only
/// subject reference that is stored in plaintext anywhere (R-PSEUDO-1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pseudonym([u8; 32]);

impl Pseudonym {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// Wraps the output of the pseudonym function.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 hexadecimal characters.
    ///
    /// # Errors
    /// Anything that is not exactly 32 hex-encoded bytes.
    pub fn from_hex(s: &str) -> Result<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| DomainError::InvalidPseudonym)?;
        Ok(Self(out))
    }

    /// Lowercase hexadecimal form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pseudonym({}…)", &self.to_hex()[..12])
    }
}

impl fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Pseudonym {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Pseudonym {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Self::from_hex(&s).map_err(serde::de::Error::custom)
        } else {
            let bytes: &[u8] = serde::Deserialize::deserialize(d)?;
            let arr: [u8; 32] = bytes.try_into().map_err(|_| serde::de::Error::custom("pseudonym must be 32 bytes"))?;
            Ok(Self(arr))
        }
    }
}

fn is_name(s: &str, extra: &[char]) -> bool {
    (1..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(&c))
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $extra:expr, $err:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses a name.
            ///
            /// # Errors
            /// Empty, longer than 64 characters, or with characters outside the allowed set.
            pub fn parse(raw: &str) -> Result<Self> {
                if is_name(raw, $extra) {
                    Ok(Self(raw.to_owned()))
                } else {
                    Err(DomainError::$err(raw.chars().take(80).collect()))
                }
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// The type of a stored event, such as `page.viewed` or `consent.changed`.
    EventType,
    &['.', '_', '-', ':'],
    InvalidEventType
);
name_type!(
    /// A processing purpose declared in `policies/purposes.toml`, such as `analytics`.
    Purpose,
    &['_', '-'],
    InvalidPurpose
);

impl Purpose {
    /// The purpose of processing that needs no consent (strictly necessary).
    pub fn necessary() -> Self {
        Self("necessary".to_owned())
    }
}

/// Which generation of a subject's data key sealed a payload. Generation 0 is the subject's first
/// key; later generations serve retention periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct KeyId(pub u32);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn subject_id_debug_is_redacted() {
        let id = SubjectId::parse("alice@example.com").unwrap();
        assert_eq!(format!("{id:?}"), "SubjectId(<redacted>)");
    }

    #[test]
    fn subject_id_rejects_empty_long_and_control() {
        assert!(SubjectId::parse("").is_err());
        assert!(SubjectId::parse(&"x".repeat(257)).is_err());
        assert!(SubjectId::parse("a\nb").is_err());
        assert!(SubjectId::parse(&"x".repeat(256)).is_ok());
    }

    #[test]
    fn event_type_and_purpose_parse_at_deserialization() {
        let ok: EventType = serde_json::from_str("\"page.viewed\"").unwrap();
        assert_eq!(ok.as_str(), "page.viewed");
        assert!(serde_json::from_str::<EventType>("\"Page Viewed\"").is_err());
        assert!(serde_json::from_str::<Purpose>("\"sale.share\"").is_err());
    }

    proptest! {
        #[test]
        fn pseudonym_hex_round_trips(bytes in any::<[u8; 32]>()) {
            let p = Pseudonym::from_bytes(bytes);
            prop_assert_eq!(Pseudonym::from_hex(&p.to_hex()).unwrap(), p);
        }

        #[test]
        fn subject_id_parse_never_panics(s in ".*") {
            let _ = SubjectId::parse(&s);
        }

        #[test]
        fn event_type_accepts_only_its_alphabet(s in "[a-z0-9._:-]{1,64}") {
            prop_assert!(EventType::parse(&s).is_ok());
        }
    }
}
