//! The repository's `policies/` and its built-in copy.

use std::path::PathBuf;

use lethe_domain::{EventType, Purpose};
use lethe_policy::{CategoryId, CcpaCategory, LegalBasis, NoticeId, Policies};

fn repo_policies() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

fn t(s: &str) -> EventType {
    EventType::parse(s).unwrap()
}

fn p(s: &str) -> Purpose {
    Purpose::parse(s).unwrap()
}

#[test]
fn repo_policies_load_and_validate() {
    let policies = Policies::load(&repo_policies()).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<_> = policies.purposes().map(|d| d.id().as_str()).collect();
    assert_eq!(ids, ["analytics", "necessary", "personalization", "sale_share"]);
    for def in policies.purposes() {
        let consent = def.legal_basis() == LegalBasis::Consent;
        assert!(!consent || def.requires_consent(), "{}", def.id());
    }
    assert!(!policies.purpose(&Purpose::necessary()).unwrap().requires_consent());
    assert_eq!(policies.purpose(&p("sale_share")).unwrap().ccpa_category(), Some(CcpaCategory::SaleOrSharing));
    for category in policies.categories() {
        assert!(category.retention().days() > 0);
        assert!(!category.is_special_category());
    }
}

#[test]
fn repo_declares_every_event_type_of_the_product() {
    let policies = Policies::load(&repo_policies()).unwrap();
    for name in [
        "page.viewed",
        "element.clicked",
        "scroll.depth",
        "time.spent",
        "session.ended",
        "purchase.completed",
        "item.liked",
        "item.disliked",
        "item.rated",
        "review.submitted",
        "survey.answered",
        "consent.changed",
        "identify",
        "decision.served",
        "outcome.recorded",
        "lethe.erasure_fence",
        "catalog.item_upserted",
        "catalog.item_removed",
    ] {
        assert!(policies.event(&t(name)).is_some(), "{name} is not declared");
    }
    assert_eq!(policies.purpose_for(&t("consent.changed")), Some(&Purpose::necessary()));
    let fields = ["host", "path", "title", "referrer_class", "email"];
    assert_eq!(policies.fields_unclassified(&t("page.viewed"), fields), ["email"]);
}

/// R-ROPA-1: the fields the collector writes into every event are classified by `[context]`.
#[test]
fn repo_classifies_the_collectors_context_fields() {
    let policies = Policies::load(&repo_policies()).unwrap();
    let fields: Vec<_> = policies.context_fields().map(|(name, category)| (name, category.as_str())).collect();
    assert_eq!(
        fields,
        [
            ("country", "location_coarse"),
            ("daypart", "device_context"),
            ("device_class", "device_context"),
            ("event", "behavior"),
            ("message_id", "behavior"),
            ("referrer_class", "device_context"),
            ("region", "location_coarse"),
            ("subject_is_user", "identifiers_pseudonymous"),
        ]
    );
    // Identify keeps the linked pseudonym and classifies no trait such as an e-mail address.
    let identify = t("identify");
    assert!(policies.fields_unclassified(&identify, ["linked_anonymous"]).is_empty());
    assert_eq!(policies.fields_unclassified(&identify, ["email", "name"]), ["email", "name"]);
}

#[test]
fn every_data_category_is_used_by_some_event() {
    let policies = Policies::load(&repo_policies()).unwrap();
    for category in policies.categories() {
        let used = policies.events().any(|rule| rule.fields().any(|(_, c)| c == category.id()));
        assert!(used, "data category `{}` classifies no field", category.id());
    }
}

#[test]
fn builtin_is_the_repo_copy() {
    let builtin = Policies::builtin().unwrap_or_else(|e| panic!("{e}"));
    let loaded = Policies::load(&repo_policies()).unwrap();
    assert_eq!(builtin, loaded, "a file under policies/ is not embedded by Policies::builtin");
    let banner = builtin.notice(&NoticeId::parse("banner").unwrap()).unwrap();
    assert_eq!(banner.content_hash().len(), 64);
    assert_eq!(banner.version().get(), 1);
    assert!(banner.localized("fr-CA").1.title().starts_with("Vos choix"));
}

#[test]
fn custom_events_fall_back_to_the_declared_purpose() {
    let policies = Policies::builtin().unwrap();
    let custom = t("wishlist.shared");
    assert_eq!(policies.purpose_for(&custom), Some(&p("analytics")));
    assert_eq!(policies.category_of(&custom, "anything"), Some(&CategoryId::parse("behavior").unwrap()));
    assert!(policies.fields_unclassified(&custom, ["a", "b"]).is_empty());
    // Lethe's own namespace never falls back.
    let reserved = t("lethe.something_else");
    assert_eq!(policies.purpose_for(&reserved), None);
    assert_eq!(policies.fields_unclassified(&reserved, ["a"]), ["a"]);
}

#[test]
fn retention_is_per_category() {
    let policies = Policies::builtin().unwrap();
    let behavior = CategoryId::parse("behavior").unwrap();
    let retention = policies.retention_for(&behavior).unwrap();
    assert_eq!(retention.days(), 395);
    assert_eq!(retention.as_duration().as_secs(), 395 * 86_400);
    assert_eq!(policies.retention_for(&CategoryId::parse("nope").unwrap()), None);
}
