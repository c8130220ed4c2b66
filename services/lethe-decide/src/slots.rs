//! `policies/slots.toml`: the declared decision slots, their variants, defaults, deadlines and the
//! purpose that personalizing them needs. Loaded once at start and validated against the policies.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use lethe_domain::Purpose;
use lethe_policy::Policies;
use serde::{Deserialize, Serialize};

/// The built-in copy of the repository's `policies/slots.toml`.
const BUILTIN: &str = include_str!("../../../policies/slots.toml");

/// Longest deadline a slot may declare.
pub const MAX_DEADLINE_MS: u64 = 10_000;
/// Most variants a slot may declare (and most candidates a request may send).
pub const MAX_CANDIDATES: usize = 500;

/// A slot file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct SlotsError {
    pub file: String,
    pub message: String,
}

/// What a slot shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotKind {
    Banner,
    Recommendations,
    CallToAction,
}

/// The content of a variant, as the SDK renders it when the page has no template for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Content {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// One candidate of a slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub id: String,
    /// The content category it promotes, matched against the subject's engaged categories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(flatten)]
    pub content: Content,
}

/// The canary rule's settings (see `lethe_bandit::CanaryRule`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanarySettings {
    /// Impressions each version needs before a verdict.
    pub min_impressions: u64,
    /// Largest tolerated relative drop of the canary's CTR below the live version's.
    pub max_relative_drop: f64,
    /// The one-sided z threshold of the significance test.
    pub z: f64,
}

impl CanarySettings {
    /// Checks the settings as the rule needs them.
    ///
    /// # Errors
    /// What is out of range.
    pub fn check(&self) -> Result<(), String> {
        if self.min_impressions == 0 {
            return Err("min_impressions must be at least 1".into());
        }
        if !(self.max_relative_drop.is_finite() && (0.0..1.0).contains(&self.max_relative_drop)) {
            return Err("max_relative_drop must be in [0, 1)".into());
        }
        if !(self.z.is_finite() && self.z > 0.0) {
            return Err("z must be positive".into());
        }
        Ok(())
    }
}

impl Default for CanarySettings {
    fn default() -> Self {
        Self { min_impressions: 1_000, max_relative_drop: 0.05, z: 1.96 }
    }
}

/// A declared slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub id: String,
    pub kind: SlotKind,
    /// The purpose a subject must have granted for a personalized answer.
    pub purpose: Purpose,
    /// After this, the answer is the fallback.
    pub deadline: Duration,
    /// Index of the default variant in `variants`.
    pub default: usize,
    /// Share of personalized decisions that explore.
    pub epsilon: f64,
    /// Whether an opt-out of sale/share (or GPC) also turns personalization off.
    pub honor_opt_out: bool,
    /// Whether a request may bring its own candidates (the Personalizer API's actions).
    pub open_candidates: bool,
    pub variants: Vec<Variant>,
}

impl Slot {
    /// The default variant.
    pub fn default_variant(&self) -> &Variant {
        &self.variants[self.default]
    }

    /// The registry name of the slot's decision policy versions.
    pub fn model_name(&self) -> String {
        format!("decide-{}", self.id)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    format: u32,
    #[serde(default)]
    canary: CanarySettings,
    #[serde(default)]
    slot: Vec<RawSlot>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlot {
    id: String,
    kind: SlotKind,
    purpose: String,
    deadline_ms: u64,
    default: String,
    #[serde(default)]
    epsilon: f64,
    #[serde(default = "yes")]
    honor_opt_out: bool,
    #[serde(default)]
    open_candidates: bool,
    #[serde(default)]
    variant: Vec<Variant>,
}

const fn yes() -> bool {
    true
}

/// The declared slots.
#[derive(Debug, Clone, PartialEq)]
pub struct Slots {
    slots: Vec<Slot>,
    /// The canary rule for every slot.
    pub canary: CanarySettings,
}

/// Whether `s` may name a slot or variant: `[a-z][a-z0-9-]{0,47}` (a slot id becomes part of a
/// model name).
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.len() <= 48
}

impl Slots {
    /// The built-in copy, checked against `policies`.
    ///
    /// # Errors
    /// The embedded file does not match the policies.
    pub fn builtin(policies: &Policies) -> Result<Self, SlotsError> {
        Self::parse("policies/slots.toml", BUILTIN, policies)
    }

    /// `slots.toml` in a policy folder, or the built-in copy when the folder has none.
    ///
    /// # Errors
    /// The file cannot be read, does not parse, or names an undeclared purpose.
    pub fn load(dir: &Path, policies: &Policies) -> Result<Self, SlotsError> {
        let path = dir.join("slots.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&path.display().to_string(), &text, policies),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::builtin(policies),
            Err(e) => Err(SlotsError { file: path.display().to_string(), message: e.to_string() }),
        }
    }

    /// Parses and checks a slot file.
    ///
    /// # Errors
    /// Syntax, an unknown format, a bad id, a duplicate, a default that is not a variant, a
    /// deadline or exploration share out of range, an undeclared purpose.
    pub fn parse(file: &str, text: &str, policies: &Policies) -> Result<Self, SlotsError> {
        let invalid = |message: String| SlotsError { file: file.to_owned(), message };
        let raw: RawFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if raw.format != 1 {
            return Err(invalid(format!("unknown format {}; this Lethe reads format 1", raw.format)));
        }
        let c = raw.canary;
        if let Err(e) = c.check() {
            return Err(invalid(format!("canary: {e}")));
        }
        let mut seen = HashSet::new();
        let mut slots = Vec::with_capacity(raw.slot.len());
        for s in raw.slot {
            let at = |m: String| invalid(format!("slot `{}`: {m}", s.id));
            if !is_name(&s.id) {
                return Err(at("an id is a lowercase letter, then lowercase letters, digits and `-`".into()));
            }
            if !seen.insert(s.id.clone()) {
                return Err(at("declared twice".into()));
            }
            let purpose = Purpose::parse(&s.purpose).map_err(|e| at(e.to_string()))?;
            if policies.purpose(&purpose).is_none() {
                return Err(at(format!("purpose `{purpose}` is not declared in purposes.toml")));
            }
            if s.deadline_ms == 0 || s.deadline_ms > MAX_DEADLINE_MS {
                return Err(at(format!("deadline_ms must be 1..={MAX_DEADLINE_MS}")));
            }
            if !(s.epsilon.is_finite() && (0.0..=1.0).contains(&s.epsilon)) {
                return Err(at("epsilon must be in [0, 1]".into()));
            }
            if s.variant.is_empty() || s.variant.len() > MAX_CANDIDATES {
                return Err(at(format!("a slot has 1..={MAX_CANDIDATES} variants")));
            }
            let mut ids = HashSet::new();
            for v in &s.variant {
                if v.id.is_empty() || v.id.len() > 128 || !ids.insert(v.id.as_str()) {
                    return Err(at(format!("variant `{}`: empty, too long or declared twice", v.id)));
                }
            }
            let default = s
                .variant
                .iter()
                .position(|v| v.id == s.default)
                .ok_or_else(|| at(format!("default `{}` is not one of its variants", s.default)))?;
            slots.push(Slot {
                id: s.id,
                kind: s.kind,
                purpose,
                deadline: Duration::from_millis(s.deadline_ms),
                default,
                epsilon: s.epsilon,
                honor_opt_out: s.honor_opt_out,
                open_candidates: s.open_candidates,
                variants: s.variant,
            });
        }
        Ok(Self { slots, canary: c })
    }

    /// A slot by id.
    pub fn get(&self, id: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.id == id)
    }

    /// The index of a slot.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.id == id)
    }

    /// Every slot, in file order.
    pub fn all(&self) -> &[Slot] {
        &self.slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies() -> Policies {
        Policies::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")).expect("policies")
    }

    #[test]
    fn the_repository_slots_load_and_ship_the_seed_example() {
        let slots = Slots::builtin(&policies()).unwrap();
        let hero = slots.get("home-hero").expect("home-hero");
        assert_eq!(hero.kind, SlotKind::Banner);
        assert_eq!(hero.default_variant().id, "default");
        assert!(hero.variants.iter().any(|v| v.id == "outdoor-gear" && v.category.as_deref() == Some("outdoor")));
        assert_eq!(hero.model_name(), "decide-home-hero");
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let p = policies();
        let base = |extra: &str| format!("format = 1\n[[slot]]\nid = \"s\"\nkind = \"banner\"\n{extra}");
        let cases = [
            (base("purpose = \"personalization\"\ndeadline_ms = 10\ndefault = \"x\"\n[[slot.variant]]\nid = \"a\""), "default"),
            (base("purpose = \"nope\"\ndeadline_ms = 10\ndefault = \"a\"\n[[slot.variant]]\nid = \"a\""), "not declared"),
            (base("purpose = \"personalization\"\ndeadline_ms = 0\ndefault = \"a\"\n[[slot.variant]]\nid = \"a\""), "deadline"),
            (
                base("purpose = \"personalization\"\ndeadline_ms = 5\nepsilon = 2.0\ndefault = \"a\"\n[[slot.variant]]\nid = \"a\""),
                "epsilon",
            ),
            (base("purpose = \"personalization\"\ndeadline_ms = 5\ndefault = \"a\""), "variants"),
            ("format = 2".to_owned(), "format"),
            ("format = 1\n[[slot]]\nid = \"Bad Id\"\nkind = \"banner\"\npurpose = \"personalization\"\ndeadline_ms = 5\ndefault = \"a\"\n[[slot.variant]]\nid = \"a\"".to_owned(), "an id is"),
        ];
        for (text, needle) in cases {
            let e = Slots::parse("slots.toml", &text, &p).expect_err(&text);
            assert!(e.to_string().contains(needle), "{e} should mention {needle}");
        }
    }
}
