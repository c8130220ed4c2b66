//! Consent notices: their texts per locale, and the content hash that a consent record cites.
//!
//! # The canonical form
//!
//! A notice's content hash is the lowercase hex SHA-256 of its canonical form, a byte string made of
//! records. A record is written `TAG ":" LEN ":" VALUE "\n"`, where `TAG` is one of the ASCII words
//! below, `VALUE` is UTF-8 text exactly as parsed from TOML (escapes resolved, no Unicode or
//! whitespace normalization) and `LEN` is the byte length of `VALUE` in decimal without leading
//! zeros. The records are, in this order:
//!
//! 1. `lethe-notice` = `1` (the version of this canonical form);
//! 2. `id` = the notice id;
//! 3. `version` = the notice version in decimal;
//! 4. `default_locale` = the default locale tag;
//! 5. for every locale (the default one and every translation) in ascending byte order of its tag:
//!    `locale` = the tag, `title` = the title, `body` = the body, then for every labelled purpose in
//!    ascending byte order of its id: `label` = the purpose id, `text` = the label.
//!
//! The form depends only on the notice's values, so reordering keys, reformatting the TOML or
//! moving comments leaves the hash unchanged, while any change of a text, the id or the version
//! changes it. The length prefixes make the encoding unambiguous whatever the texts contain.

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use lethe_domain::Purpose;
use sha2::{Digest, Sha256};

use crate::{Locale, NoticeId};

/// The version of the canonical form, written as its first record.
pub const CANONICAL_FORM_VERSION: &str = "1";

/// The texts of a notice in one locale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeText {
    pub(crate) title: String,
    pub(crate) body: String,
    pub(crate) labels: BTreeMap<Purpose, String>,
}

impl NoticeText {
    /// The title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The body text.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The short label of a purpose, if the notice asks about it.
    pub fn label(&self, purpose: &Purpose) -> Option<&str> {
        self.labels.get(purpose).map(String::as_str)
    }

    /// Every labelled purpose and its label, in purpose order.
    pub fn labels(&self) -> impl Iterator<Item = (&Purpose, &str)> {
        self.labels.iter().map(|(p, l)| (p, l.as_str()))
    }
}

/// A consent notice from `policies/notices/`, with its content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    id: NoticeId,
    version: NonZeroU32,
    default_locale: Locale,
    default_text: NoticeText,
    translations: BTreeMap<Locale, NoticeText>,
    content_hash: String,
}

impl Notice {
    /// Builds a notice and computes its hash. The loader has checked that the translations do not
    /// repeat the default locale and label the same purposes.
    pub(crate) fn new(
        id: NoticeId,
        version: NonZeroU32,
        default_locale: Locale,
        default_text: NoticeText,
        translations: BTreeMap<Locale, NoticeText>,
    ) -> Self {
        debug_assert!(!translations.contains_key(&default_locale));
        let mut notice = Self { id, version, default_locale, default_text, translations, content_hash: String::new() };
        notice.content_hash = hex::encode(Sha256::digest(notice.canonical_form()));
        notice
    }

    /// The notice id.
    pub fn id(&self) -> &NoticeId {
        &self.id
    }

    /// The notice version; a new version prompts again (R-CONSENT-3).
    pub const fn version(&self) -> NonZeroU32 {
        self.version
    }

    /// The locale of the default texts.
    pub fn default_locale(&self) -> &Locale {
        &self.default_locale
    }

    /// The lowercase hex SHA-256 of the [canonical form](self#the-canonical-form).
    pub fn content_hash(&self) -> &str {
        &self.content_hash
    }

    /// The purposes the notice asks about.
    pub fn purposes(&self) -> impl Iterator<Item = &Purpose> {
        self.default_text.labels.keys()
    }

    /// Every locale and its texts, in ascending order of the tag.
    pub fn locales(&self) -> impl Iterator<Item = (&Locale, &NoticeText)> {
        let mut all: Vec<_> = self.translations.iter().collect();
        all.push((&self.default_locale, &self.default_text));
        all.sort_by(|a, b| a.0.cmp(b.0));
        all.into_iter()
    }

    /// The texts in exactly this locale, if the notice has them.
    pub fn text(&self, locale: &Locale) -> Option<&NoticeText> {
        if *locale == self.default_locale {
            Some(&self.default_text)
        } else {
            self.translations.get(locale)
        }
    }

    /// The texts to show for a requested language tag: an exact match (ignoring case), else the
    /// first locale with the same primary language, else the default. Returns the locale served,
    /// which the consent record keeps.
    pub fn localized(&self, requested: &str) -> (&Locale, &NoticeText) {
        let language = requested.split('-').next().unwrap_or(requested);
        let exact = self.locales().find(|(l, _)| l.as_str().eq_ignore_ascii_case(requested));
        let same_language = || self.locales().find(|(l, _)| l.language().eq_ignore_ascii_case(language));
        exact.or_else(same_language).unwrap_or((&self.default_locale, &self.default_text))
    }

    /// The [canonical form](self#the-canonical-form) the content hash is computed over.
    pub fn canonical_form(&self) -> Vec<u8> {
        let mut out = Vec::new();
        record(&mut out, "lethe-notice", CANONICAL_FORM_VERSION);
        record(&mut out, "id", self.id.as_str());
        record(&mut out, "version", &self.version.to_string());
        record(&mut out, "default_locale", self.default_locale.as_str());
        for (locale, text) in self.locales() {
            record(&mut out, "locale", locale.as_str());
            record(&mut out, "title", &text.title);
            record(&mut out, "body", &text.body);
            for (purpose, label) in &text.labels {
                record(&mut out, "label", purpose.as_str());
                record(&mut out, "text", label);
            }
        }
        out
    }
}

fn record(out: &mut Vec<u8>, tag: &str, value: &str) {
    out.extend_from_slice(tag.as_bytes());
    out.push(b':');
    out.extend_from_slice(value.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(title: &str) -> NoticeText {
        NoticeText { title: title.to_owned(), body: "b".to_owned(), labels: BTreeMap::new() }
    }

    fn locale(tag: &str) -> Locale {
        Locale::parse(tag).unwrap()
    }

    #[test]
    fn localized_prefers_exact_then_language_then_default() {
        let translations = BTreeMap::from([(locale("fr"), texts("fr")), (locale("pt-BR"), texts("pt-BR"))]);
        let notice =
            Notice::new(NoticeId::parse("n").unwrap(), NonZeroU32::MIN, locale("en"), texts("en"), translations);
        assert_eq!(notice.localized("fr").1.title(), "fr");
        assert_eq!(notice.localized("FR-ca").1.title(), "fr");
        assert_eq!(notice.localized("pt-br").1.title(), "pt-BR");
        assert_eq!(notice.localized("pt-PT").0.as_str(), "pt-BR");
        assert_eq!(notice.localized("de").0.as_str(), "en");
        assert_eq!(notice.localized("").0.as_str(), "en");
        let order: Vec<_> = notice.locales().map(|(l, _)| l.as_str()).collect();
        assert_eq!(order, ["en", "fr", "pt-BR"]);
    }
}
