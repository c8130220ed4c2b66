//! Model identifiers: the id of one trained version ([`ModelId`], UUID v7) and the name its versions
//! share ([`ModelName`]).

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::{RegistryError, Result};

/// The id of one registered model version: a UUID v7, so ids sort by registration time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelId(Uuid);

impl ModelId {
    /// A fresh id (UUID v7 from the system clock and the OS CSPRNG).
    pub(crate) fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps 16 stored bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(bytes))
    }

    /// The 16 bytes, as stored in keys.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The id as a UUID.
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Debug for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModelId({})", self.0)
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for ModelId {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self> {
        Uuid::parse_str(s).map(Self).map_err(|_| RegistryError::InvalidModelId)
    }
}

/// The name shared by the versions of one model, such as `engagement`, `recs-itemknn`, `recs-als`
/// or `content`: 1 to 64 bytes, a lowercase letter first, then lowercase letters, digits and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelName(String);

impl ModelName {
    /// Longest accepted name, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Parses a name.
    ///
    /// # Errors
    /// [`RegistryError::InvalidModelName`] for anything outside `[a-z][a-z0-9-]{0,63}`.
    pub fn parse(raw: &str) -> Result<Self> {
        let mut chars = raw.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if first_ok && rest_ok && raw.len() <= Self::MAX_LEN {
            Ok(Self(raw.to_owned()))
        } else {
            Err(RegistryError::InvalidModelName)
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ModelName {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_at_the_edge() {
        for ok in ["engagement", "recs-itemknn", "recs-als", "content", "a", "m2"] {
            assert_eq!(ModelName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "Engagement", "2fast", "-x", "recs_als", "recs als", "é", &"x".repeat(65)] {
            assert!(ModelName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_are_time_ordered_and_round_trip() {
        let a = ModelId::generate();
        let b = ModelId::generate();
        assert!(a < b);
        assert_eq!(a.to_string().parse::<ModelId>().unwrap(), a);
        assert_eq!(ModelId::from_bytes(*a.as_bytes()), a);
        assert!("not-a-uuid".parse::<ModelId>().is_err());
    }
}
