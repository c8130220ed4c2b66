//! Identifiers: the external subject id (never stored), its keyed pseudonym, event types and purposes.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smol_str::SmolStr;

use crate::event::UtcMicros;
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

/// A hash map keyed by pseudonyms. A pseudonym is a keyed HMAC, which no one without the secret
/// can steer, so the maps on the request path hash it with foldhash (seeded per process) instead of
/// SipHash.
pub type PseudonymMap<V> = std::collections::HashMap<Pseudonym, V, foldhash::fast::RandomState>;

/// A hash set of pseudonyms (see [`PseudonymMap`]).
pub type PseudonymSet = std::collections::HashSet<Pseudonym, foldhash::fast::RandomState>;

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
        ///
        /// Held inline when it fits (every declared name so far): a copy allocates nothing, and a
        /// map keyed by it compares bytes that sit in its own nodes, not behind a pointer each.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(SmolStr);

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl $name {
            /// Parses a name.
            ///
            /// # Errors
            /// Empty, longer than 64 characters, or with characters outside the allowed set.
            pub fn parse(raw: &str) -> Result<Self> {
                if is_name(raw, $extra) {
                    Ok(Self(SmolStr::new(raw)))
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

        /// Read as text, checked as [`Self::parse`] checks it, with one allocation: a borrowed or
        /// transient text is copied once, an owned one is kept (every stored event's type and
        /// purpose are read this way).
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("a valid ", stringify!($name)))
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<$name, E> {
                        $name::parse(s).map_err(E::custom)
                    }
                    fn visit_string<E: serde::de::Error>(self, s: String) -> std::result::Result<$name, E> {
                        if is_name(&s, $extra) {
                            Ok($name(SmolStr::from(s)))
                        } else {
                            $name::parse(&s).map_err(E::custom)
                        }
                    }
                }
                d.deserialize_string(Visitor)
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
        Self(SmolStr::new_static("necessary"))
    }
}

/// Which of a subject's data keys sealed a payload.
///
/// Key 0 is the subject's permanent key: it lives until the subject is erased. Every other key id
/// names a retention period (R-RETAIN-1): bit 31 is set, bits 30..16 hold the retention in days and
/// bits 15..0 the period, counted in periods of [`KeyId::period_days`] since the Unix epoch. All
/// events of a subject whose data is kept `d` days and whose time falls in one period share one
/// key, and that key is destroyed when the period leaves the retention window, at
/// [`KeyId::expires_at`]. Retention is enforced by destroying keys, never by scanning data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct KeyId(pub u32);

const RETENTION_BIT: u32 = 1 << 31;
const MICROS_PER_DAY: i64 = 86_400_000_000;

impl KeyId {
    /// The permanent key: destroyed only by the subject's erasure.
    pub const PERMANENT: Self = Self(0);
    /// Longest retention a key id can express, in days (about 89 years).
    pub const MAX_RETENTION_DAYS: u16 = 0x7fff;

    /// The key for an event at `time` whose data is kept `retention_days` (at least 1).
    ///
    /// # Errors
    /// A retention of 0 days or above [`Self::MAX_RETENTION_DAYS`], or a time before 1970 or past
    /// the last period a key id can name.
    pub fn for_retention(retention_days: u16, time: UtcMicros) -> Result<Self> {
        if retention_days == 0 || retention_days > Self::MAX_RETENTION_DAYS {
            return Err(DomainError::InvalidRetention(retention_days));
        }
        let day = time.0.div_euclid(MICROS_PER_DAY);
        // Negative days and periods past u16 fail the conversion.
        let period = u16::try_from(day.div_euclid(i64::from(Self::period_days_for(retention_days))))
            .map_err(|_| DomainError::InvalidRetention(retention_days))?;
        Ok(Self(RETENTION_BIT | (u32::from(retention_days) << 16) | u32::from(period)))
    }

    /// The length of one key period for a retention: a tenth of the retention, between 1 and 30
    /// days. Data is therefore kept at least its retention and at most one period longer.
    pub const fn period_days_for(retention_days: u16) -> u16 {
        let p = retention_days / 10;
        if p == 0 {
            1
        } else if p > 30 {
            30
        } else {
            p
        }
    }

    /// The retention in days of a period key; `None` for the permanent key.
    pub const fn retention_days(self) -> Option<u16> {
        if self.0 & RETENTION_BIT == 0 {
            None
        } else {
            Some(((self.0 >> 16) & 0x7fff) as u16)
        }
    }

    /// The length of this key's period in days; `None` for the permanent key.
    pub const fn period_days(self) -> Option<u16> {
        match self.retention_days() {
            Some(d) => Some(Self::period_days_for(d)),
            None => None,
        }
    }

    /// When this key must be destroyed: the end of its period plus the retention. `None` for the
    /// permanent key.
    pub fn expires_at(self) -> Option<UtcMicros> {
        let days = self.retention_days()?;
        let period = i64::from(self.0 & 0xffff);
        let end_day = (period + 1) * i64::from(Self::period_days_for(days)) + i64::from(days);
        Some(UtcMicros(end_day * MICROS_PER_DAY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: i64 = 86_400_000_000;

    #[test]
    fn retention_keys_name_their_period_and_expiry() {
        // R-RETAIN-1: 2026-01-10 (day 20,463), kept 395 days in periods of 30 days.
        let t = UtcMicros(20_463 * DAY + 5);
        let k = KeyId::for_retention(395, t).unwrap();
        assert_eq!(k.retention_days(), Some(395));
        assert_eq!(k.period_days(), Some(30));
        // Period 682 covers days 20,460..20,490; the key dies 395 days after its end.
        assert_eq!(k.expires_at(), Some(UtcMicros((20_490 + 395) * DAY)));
        // Every time of the same period shares the key; the next period has another one.
        assert_eq!(KeyId::for_retention(395, UtcMicros(20_489 * DAY)).unwrap(), k);
        assert_ne!(KeyId::for_retention(395, UtcMicros(20_490 * DAY)).unwrap(), k);
        // Another retention never shares a key.
        assert_ne!(KeyId::for_retention(730, t).unwrap(), k);
        assert_eq!(KeyId::PERMANENT.expires_at(), None);
        assert_eq!(KeyId::PERMANENT.retention_days(), None);
    }

    #[test]
    fn unkeyable_retentions_are_refused() {
        assert!(KeyId::for_retention(0, UtcMicros(0)).is_err());
        assert!(KeyId::for_retention(KeyId::MAX_RETENTION_DAYS + 1, UtcMicros(0)).is_err());
        assert!(KeyId::for_retention(30, UtcMicros(-DAY)).is_err());
        // Periods of one day run out in the year 2149.
        assert!(KeyId::for_retention(5, UtcMicros(70_000 * DAY)).is_err());
    }

    proptest! {
        #[test]
        fn data_is_kept_its_retention_and_at_most_one_period_more(days in 1u16..4000, day in 0i64..40_000) {
            let t = UtcMicros(day * DAY);
            let k = KeyId::for_retention(days, t).unwrap();
            let expiry = k.expires_at().unwrap().0;
            let keep = expiry - t.0;
            prop_assert!(keep > i64::from(days) * DAY);
            prop_assert!(keep <= (i64::from(days) + i64::from(KeyId::period_days_for(days))) * DAY);
        }
    }

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
        // An owned text (from a JSON tree) is checked as a borrowed one is; an escaped one too.
        let owned: Purpose = serde_json::from_value(serde_json::json!("marketing_email")).unwrap();
        assert_eq!(owned.as_str(), "marketing_email");
        assert!(serde_json::from_value::<Purpose>(serde_json::json!("Marketing")).is_err());
        assert!(serde_json::from_value::<EventType>(serde_json::json!("")).is_err());
        assert_eq!(serde_json::from_str::<EventType>("\"page\\u002eviewed\"").unwrap().as_str(), "page.viewed");
        assert!(serde_json::from_value::<EventType>(serde_json::json!(7)).is_err());
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

        /// Held inline up to 23 bytes and behind a pointer past that, a name writes, reads, compares
        /// and hashes as its text does, at every length allowed.
        #[test]
        fn names_of_any_length_behave_as_their_text(a in "[a-z0-9_-]{1,64}", b in "[a-z0-9_-]{1,64}") {
            use std::hash::BuildHasher;
            let (pa, pb) = (Purpose::parse(&a).unwrap(), Purpose::parse(&b).unwrap());
            let json = serde_json::to_string(&pa).unwrap();
            prop_assert_eq!(&json, &serde_json::to_string(&a).unwrap());
            prop_assert_eq!(serde_json::from_str::<Purpose>(&json).unwrap(), pa.clone());
            prop_assert_eq!(serde_json::from_value::<Purpose>(serde_json::Value::String(a.clone())).unwrap(), pa.clone());
            prop_assert_eq!(pa.cmp(&pb), a.cmp(&b));
            prop_assert_eq!(pa == pb, a == b);
            let hasher = std::collections::hash_map::RandomState::new();
            prop_assert_eq!(hasher.hash_one(&pa), hasher.hash_one(a.as_str()));
            let copy = pa.clone();
            prop_assert_eq!(copy.as_str(), a.as_str());
        }
    }
}
