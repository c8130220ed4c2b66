//! Names declared by the policy files: data categories, notices and locales.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// A name that does not parse into one of the policy crate's identifier types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} `{raw}` must be {rule}")]
pub struct NameError {
    kind: &'static str,
    raw: String,
    rule: &'static str,
}

const ID_RULE: &str = "1 to 64 characters of a-z, 0-9, `_` or `-`";
const LOCALE_RULE: &str = "a language tag such as `en`, `fr` or `pt-BR`";

fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `ll` or `lll`, then `-` subtags of 1 to 8 letters or digits; at most 35 bytes.
fn is_locale(s: &str) -> bool {
    let mut parts = s.split('-');
    let language_ok =
        parts.next().is_some_and(|l| (2..=3).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_lowercase()));
    language_ok
        && s.len() <= 35
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn cut(raw: &str) -> String {
    raw.chars().take(80).collect()
}

macro_rules! policy_name {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $check:path, $rule:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses a name.
            ///
            /// # Errors
            /// The name does not follow the rule given in the error message.
            pub fn parse(raw: &str) -> Result<Self, NameError> {
                if $check(raw) {
                    Ok(Self(raw.to_owned()))
                } else {
                    Err(NameError { kind: $kind, raw: cut(raw), rule: $rule })
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
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

policy_name!(
    /// A category of personal data declared in `policies/data_categories.toml`, such as `behavior`.
    CategoryId,
    "data category",
    is_id,
    ID_RULE
);
policy_name!(
    /// The id of a notice under `policies/notices/`, such as `banner`.
    NoticeId,
    "notice id",
    is_id,
    ID_RULE
);
policy_name!(
    /// A language tag a notice is written in, such as `en` or `pt-BR`.
    Locale,
    "locale",
    is_locale,
    LOCALE_RULE
);

impl Locale {
    /// The primary language subtag (`pt` for `pt-BR`).
    pub fn language(&self) -> &str {
        self.0.split('-').next().unwrap_or(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_their_alphabet() {
        assert!(CategoryId::parse("consent_records").is_ok());
        assert!(CategoryId::parse("").is_err());
        assert!(CategoryId::parse("Behavior").is_err());
        assert!(CategoryId::parse(&"x".repeat(65)).is_err());
        assert!(NoticeId::parse("banner-v2").is_ok());
        assert!(NoticeId::parse("ban ner").is_err());
    }

    #[test]
    fn locales_are_language_tags() {
        for ok in ["en", "fr", "pt-BR", "zh-Hant-TW", "gsw"] {
            assert!(Locale::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "e", "EN", "en_US", "en-", "-en", "english", "en-toolongsubtag"] {
            assert!(Locale::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Locale::parse("pt-BR").map(|l| l.language().to_owned()), Ok("pt".to_owned()));
    }

    #[test]
    fn name_errors_say_what_is_wrong() {
        let err = CategoryId::parse("Bad Name").unwrap_err();
        assert_eq!(err.to_string(), "data category `Bad Name` must be 1 to 64 characters of a-z, 0-9, `_` or `-`");
    }
}
