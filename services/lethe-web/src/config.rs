//! `policies/sdk.toml` (the consent SDK's settings: Google Consent Mode mapping, banner strings,
//! slot deadlines, tracking) and the `/sdk/config.json` document built from it and the policies,
//! so that the banner shows exactly the purposes and the notice the consent ledger checks.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use lethe_domain::{EventType, Purpose};
use lethe_policy::{CcpaCategory, NoticeId, Policies};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The file name inside a policy folder.
pub const FILE: &str = "sdk.toml";

/// The only format this build reads.
pub const FORMAT: u32 = 1;

/// The seven Google Consent Mode v2 signals, each of which the mapping must list.
pub const SIGNALS: [&str; 7] = [
    "ad_storage",
    "ad_user_data",
    "ad_personalization",
    "analytics_storage",
    "functionality_storage",
    "personalization_storage",
    "security_storage",
];

/// The banner strings every locale falls back to; the notice's default locale must give them all.
pub const STRINGS: [&str; 12] = [
    "accept_all",
    "reject_all",
    "customize",
    "save",
    "close",
    "reopen",
    "preferences_title",
    "gpc_honored",
    "gpc_detail",
    "gpc_confirm",
    "gpc_confirm_yes",
    "gpc_confirm_no",
];

/// The event types the SDK sends on its own; the policies must declare them, with their fields.
pub const SDK_EVENTS: [&str; 5] = ["page.viewed", "element.clicked", "scroll.depth", "time.spent", "session.ended"];

const BUILTIN: &str = include_str!("../../../policies/sdk.toml");

/// A problem with `sdk.toml`, naming the file (and the line, or the key).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}:{line}: {message}")]
    Syntax { file: String, line: usize, message: String },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

/// A `Result` with [`ConfigError`].
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: u32,
    consent: ConsentSection,
    consent_mode: ConsentMode,
    tracking: Tracking,
    slots: SlotsSection,
    strings: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentSection {
    notice: String,
    jurisdiction: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentMode {
    signals: BTreeMap<String, Vec<String>>,
}

/// Tracking settings, as the SDK reads them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tracking {
    #[serde(rename(serialize = "flushIntervalMs"))]
    pub flush_interval_ms: u32,
    #[serde(rename(serialize = "batchSize"))]
    pub batch_size: u32,
    #[serde(rename(serialize = "maxQueue"))]
    pub max_queue: u32,
    #[serde(rename(serialize = "scrollDepths"))]
    pub scroll_depths: Vec<u8>,
    #[serde(rename(serialize = "sessionTimeoutMinutes"))]
    pub session_timeout_minutes: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotsSection {
    network_allowance_ms: u32,
    default_deadline_ms: u32,
}

/// A decision slot as the SDK needs to know it: the decision service's deadline and default variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotTiming {
    pub id: String,
    /// The decision service answers within this.
    pub deadline: Duration,
    /// The variant the page shows without a decision.
    pub default_variant: String,
}

/// The parsed and checked `sdk.toml`.
#[derive(Debug, Clone)]
pub struct SdkPolicy {
    file: String,
    parsed: File,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(1, |t| t.matches('\n').count() + 1)
}

impl SdkPolicy {
    /// Parses and checks the text of an `sdk.toml`; `file` names it in errors.
    ///
    /// # Errors
    /// Syntax errors with their line; invalid values with their key.
    pub fn parse(file: &str, text: &str) -> Result<Self> {
        let parsed: File = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: file.to_owned(),
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            message: e.message().to_owned(),
        })?;
        let policy = Self { file: file.to_owned(), parsed };
        policy.check()?;
        Ok(policy)
    }

    /// Reads `dir/sdk.toml`.
    ///
    /// # Errors
    /// As [`SdkPolicy::parse`], or the file cannot be read.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(FILE);
        let file = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        Self::parse(&file, &text)
    }

    /// The repository's `policies/sdk.toml`, built into this crate.
    ///
    /// # Errors
    /// Only if the embedded file is invalid, which this crate's tests rule out.
    pub fn builtin() -> Result<Self> {
        Self::parse("policies/sdk.toml (built in)", BUILTIN)
    }

    /// The file `lethe serve` uses: in the policy folder (`dir`, else `./policies`) when it has
    /// one, else the built-in copy.
    ///
    /// # Errors
    /// As [`SdkPolicy::load`].
    pub fn find(dir: Option<&Path>) -> Result<Self> {
        let dir = dir.unwrap_or(Path::new("policies"));
        if dir.join(FILE).exists() {
            Self::load(dir)
        } else {
            Self::builtin()
        }
    }

    fn invalid(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { file: self.file.clone(), message: message.into() }
    }

    /// The checks that need no other policy file.
    fn check(&self) -> Result<()> {
        let p = &self.parsed;
        if p.format != FORMAT {
            return Err(
                self.invalid(format!("format {} is not supported (this build reads format {FORMAT})", p.format))
            );
        }
        let j = &p.consent.jurisdiction;
        if j.is_empty() || j.len() > 16 || j.chars().any(char::is_control) {
            return Err(self.invalid("consent.jurisdiction must be 1 to 16 printable characters"));
        }
        for signal in SIGNALS {
            match p.consent_mode.signals.get(signal) {
                None => return Err(self.invalid(format!("consent_mode.signals.{signal} is missing"))),
                Some(purposes) if purposes.is_empty() => {
                    return Err(self.invalid(format!("consent_mode.signals.{signal} lists no purpose")))
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = p.consent_mode.signals.keys().find(|k| !SIGNALS.contains(&k.as_str())) {
            return Err(self.invalid(format!("consent_mode.signals.{extra} is not a Google Consent Mode v2 signal")));
        }
        let t = &p.tracking;
        if t.flush_interval_ms < 100 || t.batch_size == 0 || t.max_queue < t.batch_size {
            return Err(self.invalid("tracking: flush_interval_ms ≥ 100, batch_size ≥ 1, max_queue ≥ batch_size"));
        }
        if t.session_timeout_minutes == 0 {
            return Err(self.invalid("tracking.session_timeout_minutes must be at least 1"));
        }
        if t.scroll_depths.is_empty()
            || t.scroll_depths.iter().any(|d| *d == 0 || *d > 100)
            || !t.scroll_depths.windows(2).all(|w| w[0] < w[1])
        {
            return Err(self.invalid("tracking.scroll_depths must rise strictly, between 1 and 100"));
        }
        if !(1..=10_000).contains(&p.slots.default_deadline_ms) || p.slots.network_allowance_ms > 10_000 {
            return Err(
                self.invalid("slots: default_deadline_ms between 1 and 10000, network_allowance_ms at most 10000")
            );
        }
        Ok(())
    }

    /// The Consent Mode signals and the purposes each needs.
    pub fn signals(&self) -> &BTreeMap<String, Vec<String>> {
        &self.parsed.consent_mode.signals
    }

    /// How long the page waits for a decision in a slot the decision service declares.
    pub fn page_deadline_ms(&self, slot: &SlotTiming) -> u64 {
        let ms = u64::try_from(slot.deadline.as_millis()).unwrap_or(u64::MAX);
        ms.saturating_add(u64::from(self.parsed.slots.network_allowance_ms))
    }

    /// Builds the `/sdk/config.json` document, checking this file against the policies: the
    /// notice exists, the signals name declared purposes, the strings cover the notice's default
    /// locale and only its locales, and the events the SDK sends are declared. `slots` are those
    /// of the decision service (none when it is not mounted).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first mismatch.
    pub fn document(&self, policies: &Policies, slots: &[SlotTiming], sdk: Value) -> Result<Value> {
        let p = &self.parsed;
        let notice_id = NoticeId::parse(&p.consent.notice)
            .map_err(|e| self.invalid(format!("consent.notice `{}`: {e}", p.consent.notice)))?;
        let notice = policies
            .notice(&notice_id)
            .ok_or_else(|| self.invalid(format!("consent.notice: no notice `{}` in notices/", p.consent.notice)))?;
        for (signal, purposes) in &p.consent_mode.signals {
            for purpose in purposes {
                let known = Purpose::parse(purpose).ok().and_then(|id| policies.purpose(&id)).is_some();
                if !known {
                    return Err(self.invalid(format!(
                        "consent_mode.signals.{signal} needs `{purpose}`, which purposes.toml does not declare"
                    )));
                }
            }
        }
        let default_locale = notice.default_locale().as_str();
        let defaults = p.strings.get(default_locale).ok_or_else(|| {
            self.invalid(format!("strings.{default_locale} is missing (the notice's default locale)"))
        })?;
        if let Some(missing) = STRINGS.iter().find(|k| !defaults.contains_key(**k)) {
            return Err(self.invalid(format!("strings.{default_locale}.{missing} is missing")));
        }
        for (locale, strings) in &p.strings {
            if !notice.locales().any(|(l, _)| l.as_str() == locale) {
                return Err(self.invalid(format!("strings.{locale}: the notice has no locale `{locale}`")));
            }
            if let Some(unknown) = strings.keys().find(|k| !STRINGS.contains(&k.as_str())) {
                return Err(self.invalid(format!("strings.{locale}.{unknown} is not a banner string")));
            }
        }
        let mut fields = serde_json::Map::new();
        for t in SDK_EVENTS {
            let rule = EventType::parse(t).ok().and_then(|t| policies.event(&t));
            let Some(rule) = rule else {
                return Err(self.invalid(format!("the SDK sends `{t}`, which events.toml does not declare")));
            };
            let names: Vec<&str> = rule.fields().map(|(f, _)| f).collect();
            fields.insert(t.to_owned(), json!(names));
        }
        let texts: serde_json::Map<String, Value> = notice
            .locales()
            .map(|(locale, text)| {
                let labels: BTreeMap<&str, &str> = text.labels().map(|(p, l)| (p.as_str(), l)).collect();
                (locale.as_str().to_owned(), json!({"title": text.title(), "body": text.body(), "labels": labels}))
            })
            .collect();
        let purposes: Vec<Value> = policies
            .purposes()
            .map(|d| {
                json!({
                    "id": d.id().as_str(),
                    "name": d.name(),
                    "description": d.description(),
                    "requiresConsent": d.requires_consent(),
                    "legalBasis": d.legal_basis().as_str(),
                    "recipients": d.recipients(),
                })
            })
            .collect();
        let free: Vec<&str> = policies.purposes().filter(|d| !d.requires_consent()).map(|d| d.id().as_str()).collect();
        // R-GPC-1: the signal opts out of what the CCPA calls sale or sharing.
        let opt_out: Vec<&str> = policies
            .purposes()
            .filter(|d| d.ccpa_category() == Some(CcpaCategory::SaleOrSharing))
            .map(|d| d.id().as_str())
            .collect();
        let slots: serde_json::Map<String, Value> = slots
            .iter()
            .map(|s| {
                let timing = json!({"deadlineMs": self.page_deadline_ms(s), "defaultVariant": s.default_variant});
                (s.id.clone(), timing)
            })
            .collect();
        Ok(json!({
            "format": FORMAT,
            "sdk": sdk,
            "jurisdiction": p.consent.jurisdiction,
            "notice": {
                "id": notice.id().as_str(),
                "version": notice.version().get(),
                "contentHash": notice.content_hash(),
                "defaultLocale": default_locale,
                "purposes": notice.purposes().map(Purpose::as_str).collect::<Vec<_>>(),
                "texts": texts,
            },
            "purposes": purposes,
            "rules": {"free": free, "optOut": opt_out, "signals": p.consent_mode.signals},
            "strings": p.strings,
            "tracking": p.tracking,
            "fields": fields,
            "slots": {"defaultDeadlineMs": p.slots.default_deadline_ms, "slots": slots},
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_policies() -> Policies {
        Policies::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")).expect("policies")
    }

    #[test]
    fn the_builtin_file_is_valid_and_agrees_with_the_policies() {
        let sdk = SdkPolicy::builtin().unwrap();
        let hero = SlotTiming {
            id: "home-hero".into(),
            deadline: Duration::from_millis(50),
            default_variant: "default".into(),
        };
        let doc = sdk.document(&repo_policies(), &[hero], json!({})).unwrap();
        // R-GCM-1: all seven signals are mapped.
        let signals = doc["rules"]["signals"].as_object().unwrap();
        assert_eq!(signals.len(), 7);
        assert_eq!(doc["rules"]["optOut"], json!(["sale_share"]));
        assert_eq!(doc["rules"]["free"], json!(["necessary"]));
        let notice = repo_policies().notices().next().unwrap().clone();
        assert_eq!(doc["notice"]["contentHash"], notice.content_hash());
        assert!(doc["notice"]["texts"]["fr"]["labels"]["analytics"].is_string());
        assert!(doc["fields"]["element.clicked"].as_array().unwrap().contains(&json!("product_id")));
        // The page waits the service's deadline plus the network allowance.
        assert_eq!(doc["slots"]["slots"]["home-hero"], json!({"deadlineMs": 150, "defaultVariant": "default"}));
        assert_eq!(doc["slots"]["defaultDeadlineMs"], 150);
        assert_eq!(doc["tracking"]["scrollDepths"], json!([25, 50, 75, 100]));
    }

    #[test]
    fn mistakes_are_named() {
        let text = BUILTIN.replace("security_storage = [\"necessary\"]\n", "");
        let e = SdkPolicy::parse("sdk.toml", &text).unwrap_err().to_string();
        assert!(e.contains("consent_mode.signals.security_storage is missing"), "{e}");

        let text = BUILTIN.replace("ad_storage = [\"sale_share\"]", "ad_storage = [\"selling\"]");
        let e = SdkPolicy::parse("sdk.toml", &text).unwrap().document(&repo_policies(), &[], json!({})).unwrap_err();
        assert!(e.to_string().contains("needs `selling`"), "{e}");

        let text = BUILTIN.replace("[strings.fr]", "[strings.de]");
        let e = SdkPolicy::parse("sdk.toml", &text).unwrap().document(&repo_policies(), &[], json!({})).unwrap_err();
        assert!(e.to_string().contains("no locale `de`"), "{e}");

        let text = BUILTIN.replace("format = 1", "format = 1\nsurprise = true");
        let e = SdkPolicy::parse("sdk.toml", &text).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 8, .. }), "{e}");
    }
}
