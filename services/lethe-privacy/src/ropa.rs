//! The records of processing activities (GDPR Art. 30(1) (a)–(g), R-ROPA-1), generated from
//! `policies/`: one activity per purpose, with the data categories its events carry, their
//! retention, the recipients and their transfers.

use std::collections::{BTreeMap, BTreeSet};

use lethe_policy::Policies;
use serde::Serialize;

use crate::controller::ControllerFile;

/// The whole record, as exported to the DPO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordsOfProcessing {
    /// (a) the controller, its representative and the DPO.
    pub controller: serde_json::Value,
    pub activities: Vec<Activity>,
    /// (g) the technical and organisational security measures.
    pub security_measures: Vec<String>,
    /// SHA-256 of the policy content the record was generated from: purposes, categories, events
    /// and notices, as the policy crate hashes them.
    pub policy_notices: Vec<String>,
}

/// One processing activity: a purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Activity {
    pub purpose: String,
    pub name: String,
    /// (b) the purpose of the processing.
    pub description: String,
    pub legal_basis: String,
    pub requires_consent: bool,
    /// (c) categories of data subjects.
    pub data_subjects: Vec<String>,
    /// (c) categories of personal data, with (f) the time limit for erasure of each.
    pub data_categories: Vec<CategoryLine>,
    /// Event types processed for the purpose.
    pub event_types: Vec<String>,
    /// (d) categories of recipients.
    pub recipients: Vec<String>,
    /// (e) transfers to third countries.
    pub transfers: Vec<String>,
}

/// A data category of an activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CategoryLine {
    pub category: String,
    pub description: String,
    pub retention_days: u32,
    pub special_category: bool,
}

/// Builds the records of processing.
pub fn generate(policies: &Policies, controller: &ControllerFile) -> RecordsOfProcessing {
    let mut by_purpose: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for rule in policies.events() {
        let entry = by_purpose.entry(rule.purpose().as_str().to_owned()).or_default();
        entry.0.insert(rule.event_type().as_str().to_owned());
        for (_, category) in rule.fields() {
            entry.1.insert(category.as_str().to_owned());
        }
    }
    // The context every collected event carries (device class, coarse location, …) belongs to every
    // activity that collects events.
    let context: Vec<String> = policies.context_fields().map(|(_, c)| c.as_str().to_owned()).collect();
    for (_, categories) in by_purpose.values_mut() {
        categories.extend(context.iter().cloned());
    }
    if let Some(custom) = policies.custom() {
        let entry = by_purpose.entry(custom.purpose().as_str().to_owned()).or_default();
        entry.0.insert("custom events".to_owned());
        entry.1.insert(custom.category().as_str().to_owned());
        entry.1.extend(context.iter().cloned());
    }
    let activities = policies
        .purposes()
        .map(|p| {
            let (events, categories) = by_purpose.get(p.id().as_str()).cloned().unwrap_or_default();
            let data_categories = categories
                .iter()
                .filter_map(|c| policies.categories().find(|d| d.id().as_str() == c))
                .map(|d| CategoryLine {
                    category: d.id().as_str().to_owned(),
                    description: d.description().to_owned(),
                    retention_days: d.retention().days(),
                    special_category: d.is_special_category(),
                })
                .collect();
            let transfers = p
                .recipients()
                .iter()
                .filter_map(|r| controller.recipient_named(r))
                .map(|r| format!("{}: {}", r.name, r.third_country_transfers))
                .collect();
            Activity {
                purpose: p.id().as_str().to_owned(),
                name: p.name().to_owned(),
                description: p.description().to_owned(),
                legal_basis: format!("{} ({})", p.legal_basis().as_str(), p.legal_basis().article()),
                requires_consent: p.requires_consent(),
                data_subjects: controller.records.data_subjects.clone(),
                data_categories,
                event_types: events.into_iter().collect(),
                recipients: p.recipients().to_vec(),
                transfers,
            }
        })
        .collect();
    RecordsOfProcessing {
        controller: serde_json::json!({
            "name": controller.controller.name,
            "contact": controller.controller.contact,
            "address": controller.controller.address,
            "representative": controller.controller.representative,
            "dpo": { "name": controller.dpo.name, "contact": controller.dpo.contact },
        }),
        activities,
        security_measures: controller.records.security_measures.clone(),
        policy_notices: policies
            .notices()
            .map(|n| format!("{} v{} sha256:{}", n.id().as_str(), n.version().get(), n.content_hash()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// R-ROPA-1: every purpose is an activity; every field of every event lands in a category of
    /// its purpose's activity with a retention.
    #[test]
    fn r_ropa_1_every_event_field_is_accounted_for() {
        let policies = Policies::builtin().unwrap();
        let ropa = generate(&policies, &ControllerFile::builtin().unwrap());
        assert_eq!(ropa.activities.len(), policies.purposes().count());
        for rule in policies.events() {
            let activity = ropa.activities.iter().find(|a| a.purpose == rule.purpose().as_str()).unwrap();
            assert!(activity.event_types.iter().any(|e| e == rule.event_type().as_str()));
            for (field, category) in rule.fields() {
                let line = activity.data_categories.iter().find(|c| c.category == category.as_str());
                assert!(line.is_some_and(|l| l.retention_days > 0), "{}.{field}", rule.event_type());
            }
        }
        for (field, category) in policies.context_fields() {
            for a in ropa.activities.iter().filter(|a| !a.event_types.is_empty()) {
                assert!(a.data_categories.iter().any(|c| c.category == category.as_str()), "{field} in {}", a.purpose);
            }
        }
        let ads = ropa.activities.iter().find(|a| a.purpose == "sale_share").unwrap();
        assert!(ads.transfers.iter().any(|t| t.contains("United States")));
        assert!(!ropa.security_measures.is_empty());
    }
}
