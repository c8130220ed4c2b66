//! The validated policy data: purposes, data categories, retention and event rules.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use lethe_domain::{EventType, Purpose, SchemaVersion};
use serde::{Deserialize, Serialize};

use crate::CategoryId;

/// The lawful basis of a purpose (GDPR Art. 6(1)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalBasis {
    Consent,
    Contract,
    LegalObligation,
    VitalInterests,
    PublicTask,
    LegitimateInterests,
}

impl LegalBasis {
    /// The name used in the policy files.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Consent => "consent",
            Self::Contract => "contract",
            Self::LegalObligation => "legal_obligation",
            Self::VitalInterests => "vital_interests",
            Self::PublicTask => "public_task",
            Self::LegitimateInterests => "legitimate_interests",
        }
    }

    /// The provision of the GDPR it rests on, for records of processing.
    pub const fn article(self) -> &'static str {
        match self {
            Self::Consent => "GDPR Art. 6(1)(a)",
            Self::Contract => "GDPR Art. 6(1)(b)",
            Self::LegalObligation => "GDPR Art. 6(1)(c)",
            Self::VitalInterests => "GDPR Art. 6(1)(d)",
            Self::PublicTask => "GDPR Art. 6(1)(e)",
            Self::LegitimateInterests => "GDPR Art. 6(1)(f)",
        }
    }
}

/// How the CCPA classifies processing for a purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CcpaCategory {
    /// A business purpose (§1798.140(e)); no opt-out right applies.
    BusinessPurpose,
    /// Selling, or sharing for cross-context behavioral advertising (§1798.120): opted out of by
    /// "Do Not Sell or Share" and by a Global Privacy Control signal.
    SaleOrSharing,
}

/// A processing purpose from `purposes.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurposeDef {
    pub(crate) id: Purpose,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) legal_basis: LegalBasis,
    pub(crate) requires_consent: bool,
    pub(crate) recipients: Vec<String>,
    pub(crate) ccpa_category: Option<CcpaCategory>,
}

impl PurposeDef {
    /// The purpose's id.
    pub fn id(&self) -> &Purpose {
        &self.id
    }

    /// A short human name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The human description shown to data subjects.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The lawful basis.
    pub const fn legal_basis(&self) -> LegalBasis {
        self.legal_basis
    }

    /// Whether processing for this purpose needs the subject's consent. Always true when the legal
    /// basis is consent.
    pub const fn requires_consent(&self) -> bool {
        self.requires_consent
    }

    /// Categories of recipients of the data (GDPR Art. 13(1)(e)).
    pub fn recipients(&self) -> &[String] {
        &self.recipients
    }

    /// The CCPA classification, if declared.
    pub const fn ccpa_category(&self) -> Option<CcpaCategory> {
        self.ccpa_category
    }
}

/// How long data of a category is kept, in whole days (at least one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Retention(NonZeroU32);

impl Retention {
    /// A retention of `days` days; `None` for zero.
    pub const fn from_days(days: u32) -> Option<Self> {
        match NonZeroU32::new(days) {
            Some(d) => Some(Self(d)),
            None => None,
        }
    }

    /// The shortest retention: one day.
    pub const MIN: Self = Self(NonZeroU32::MIN);

    /// The retention in days.
    pub const fn days(self) -> u32 {
        self.0.get()
    }

    /// The retention as a duration of 24-hour days.
    pub const fn as_duration(self) -> Duration {
        Duration::from_secs(self.0.get() as u64 * 86_400)
    }
}

/// A category of personal data from `data_categories.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryDef {
    pub(crate) id: CategoryId,
    pub(crate) description: String,
    pub(crate) retention: Retention,
    pub(crate) special_category: bool,
}

impl CategoryDef {
    /// The category's id.
    pub fn id(&self) -> &CategoryId {
        &self.id
    }

    /// What the category holds.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// How long its data is kept.
    pub const fn retention(&self) -> Retention {
        self.retention
    }

    /// Whether it is a special category of personal data (GDPR Art. 9).
    pub const fn is_special_category(&self) -> bool {
        self.special_category
    }
}

/// What `events.toml` says about one event type: the purpose it needs, its latest schema version
/// and the data category of every payload field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRule {
    pub(crate) event_type: EventType,
    pub(crate) purpose: Purpose,
    pub(crate) schema_version: SchemaVersion,
    pub(crate) fields: BTreeMap<String, CategoryId>,
}

impl EventRule {
    /// The event type.
    pub fn event_type(&self) -> &EventType {
        &self.event_type
    }

    /// The purpose the subject must have granted for the event to be stored.
    pub fn purpose(&self) -> &Purpose {
        &self.purpose
    }

    /// The latest schema version of the payload.
    pub const fn schema_version(&self) -> SchemaVersion {
        self.schema_version
    }

    /// Payload fields and their data categories, in field-name order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &CategoryId)> {
        self.fields.iter().map(|(name, category)| (name.as_str(), category))
    }

    /// The data category of one payload field, if the field is declared.
    pub fn category_of(&self, field: &str) -> Option<&CategoryId> {
        self.fields.get(field)
    }
}

/// The `[custom]` rule of `events.toml`: how event types a site sends without declaring them are
/// treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomEvents {
    pub(crate) allowed: bool,
    pub(crate) purpose: Purpose,
    pub(crate) category: CategoryId,
}

impl CustomEvents {
    /// Event types in this namespace are Lethe's own and never fall back to the custom rule.
    pub const RESERVED_PREFIX: &'static str = "lethe.";

    /// Whether undeclared event types are accepted at all (`allow_custom`).
    pub const fn allowed(&self) -> bool {
        self.allowed
    }

    /// The purpose undeclared event types are stored under.
    pub fn purpose(&self) -> &Purpose {
        &self.purpose
    }

    /// The data category of every field of an undeclared event type.
    pub fn category(&self) -> &CategoryId {
        &self.category
    }

    /// Whether this rule covers an undeclared event type.
    pub fn covers(&self, event_type: &EventType) -> bool {
        self.allowed && !event_type.as_str().starts_with(Self::RESERVED_PREFIX)
    }
}
