//! Every validation rule: a broken copy of a valid policy set fails with an error naming the file
//! and the exact line.

use std::fs;

use crate::helpers::{Fixture, BANNER, CATEGORIES, EVENTS, PURPOSES};

#[test]
fn the_fixture_itself_is_valid() {
    let policies = Fixture::new().load().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(policies.purposes().count(), 2);
    assert_eq!(policies.notices().count(), 1);
}

#[test]
fn wrong_format_version() {
    let f = Fixture::new();
    f.edit("events.toml", "format = 1", "format = 2");
    let message = f.error_at("events.toml", 1, "policy_format_unsupported");
    assert!(message.ends_with("policy format `2` is not supported (this build reads format 1)"), "{message}");
}

#[test]
fn format_must_be_the_integer_one() {
    let f = Fixture::new();
    f.edit("data_categories.toml", "format = 1", "\n\nformat = \"1\"");
    let message = f.error_at("data_categories.toml", 3, "policy_format_unsupported");
    assert!(message.contains("policy format `\"1\"`"), "{message}");
}

#[test]
fn missing_format() {
    let f = Fixture::new();
    f.edit("purposes.toml", "format = 1\n", "");
    f.error_at("purposes.toml", 1, "policy_format_missing");
}

#[test]
fn event_needs_unknown_purpose() {
    let f = Fixture::new();
    f.edit("events.toml", "purpose = \"analytics\"\nschema_version", "purpose = \"analitics\"\nschema_version");
    let message = f.error_at("events.toml", 10, "policy_unknown_purpose");
    let expected =
        format!("{}:10: event `page.viewed` needs unknown purpose `analitics`", f.file("events.toml").display());
    assert_eq!(message, expected);
}

#[test]
fn custom_rule_needs_unknown_purpose() {
    let f = Fixture::new();
    f.edit("events.toml", "purpose = \"analytics\"\ncategory", "purpose = \"nope\"\ncategory");
    let message = f.error_at("events.toml", 5, "policy_unknown_purpose");
    assert!(message.ends_with("the [custom] rule needs unknown purpose `nope`"), "{message}");
}

#[test]
fn field_has_unknown_data_category() {
    let f = Fixture::new();
    f.edit("events.toml", "referrer_class = \"device_context\"", "referrer_class = \"device\"");
    let message = f.error_at("events.toml", 12, "policy_unknown_category");
    assert!(
        message.ends_with("field `referrer_class` of event `page.viewed` has unknown data category `device`"),
        "{message}"
    );
}

#[test]
fn field_on_its_own_line_is_located() {
    let f = Fixture::new();
    f.edit(
        "events.toml",
        "fields = { host = \"behavior\", path = \"behavior\", referrer_class = \"device_context\" }",
        "[event.fields]\nhost = \"behavior\"\npath = \"behaviour\"\nreferrer_class = \"device_context\"",
    );
    f.error_at("events.toml", 14, "policy_unknown_category");
}

/// The fixture with a `[context]` table appended after its last event; returns the line of its
/// first field.
fn with_context(f: &Fixture, fields: &str) -> usize {
    f.write("events.toml", &format!("{EVENTS}\n[context.fields]\n{fields}"));
    EVENTS.lines().count() + 3
}

#[test]
fn context_fields_are_classified() {
    let f = Fixture::new();
    assert_eq!(f.load().unwrap().context_fields().count(), 0, "[context] is optional");
    with_context(&f, "message_id = \"behavior\"\ndevice_class = \"device_context\"\n");
    let policies = f.load().unwrap_or_else(|e| panic!("{e}"));
    let fields: Vec<_> = policies.context_fields().map(|(name, c)| (name, c.as_str())).collect();
    assert_eq!(fields, [("device_class", "device_context"), ("message_id", "behavior")]);
    assert_eq!(policies.category_of_context("message_id").map(|c| c.as_str()), Some("behavior"));
    assert_eq!(policies.category_of_context("email"), None);
    // Context fields classify the collector's fields, not an event's payload.
    let page = lethe_domain::EventType::parse("page.viewed").unwrap();
    assert_eq!(policies.fields_unclassified(&page, ["message_id"]), ["message_id"]);
}

#[test]
fn context_field_has_unknown_data_category() {
    let f = Fixture::new();
    let line = with_context(&f, "message_id = \"behavior\"\ndevice_class = \"device\"\n");
    let message = f.error_at("events.toml", line + 1, "policy_unknown_category");
    let expected = format!(
        "{}:{}: field `device_class` of the [context] rule has unknown data category `device`",
        f.file("events.toml").display(),
        line + 1
    );
    assert_eq!(message, expected);
    // The inline form is located too.
    let f = Fixture::new();
    f.write("events.toml", &format!("{EVENTS}\n[context]\nfields = {{ daypart = \"behaviour\" }}\n"));
    f.error_at("events.toml", EVENTS.lines().count() + 3, "policy_unknown_category");
}

#[test]
fn context_field_name_that_does_not_parse() {
    let f = Fixture::new();
    let line = with_context(&f, "\"Device Class\" = \"device_context\"\n");
    let message = f.error_at("events.toml", line, "policy_invalid_name");
    assert!(message.contains("field `Device Class` of the [context] rule must be"), "{message}");
}

#[test]
fn context_table_with_an_unknown_key() {
    let f = Fixture::new();
    f.write("events.toml", &format!("{EVENTS}\n[context]\nfield = {{ daypart = \"behavior\" }}\n"));
    let message = f.error_at("events.toml", EVENTS.lines().count() + 3, "policy_syntax");
    assert!(message.contains("field"), "{message}");
}

#[test]
fn custom_rule_has_unknown_data_category() {
    let f = Fixture::new();
    f.edit("events.toml", "category = \"behavior\"", "category = \"behaviour\"");
    f.error_at("events.toml", 6, "policy_unknown_category");
}

#[test]
fn duplicate_purpose() {
    let f = Fixture::new();
    let extra = "\n[[purpose]]\nid = \"analytics\"\nname = \"Again\"\ndescription = \"Again.\"\n\
                 legal_basis = \"consent\"\nrequires_consent = true\nrecipients = []\n";
    f.write("purposes.toml", &format!("{PURPOSES}{extra}"));
    let message = f.error_at("purposes.toml", 21, "policy_duplicate_id");
    let first = format!("(first declared at {}:12)", f.file("purposes.toml").display());
    assert!(message.ends_with(&format!("duplicate purpose `analytics` {first}")), "{message}");
}

#[test]
fn duplicate_data_category() {
    let f = Fixture::new();
    let extra =
        "\n[[category]]\nid = \"behavior\"\ndescription = \"Again.\"\nretention_days = 1\nspecial_category = false\n";
    f.write("data_categories.toml", &format!("{CATEGORIES}{extra}"));
    let message = f.error_at("data_categories.toml", 16, "policy_duplicate_id");
    assert!(message.contains("duplicate data category `behavior`"), "{message}");
}

#[test]
fn duplicate_event_type() {
    let f = Fixture::new();
    let extra = "\n[[event]]\ntype = \"page.viewed\"\npurpose = \"analytics\"\nschema_version = 2\nfields = {}\n";
    f.write("events.toml", &format!("{EVENTS}{extra}"));
    let message = f.error_at("events.toml", 21, "policy_duplicate_id");
    assert!(message.contains("duplicate event type `page.viewed`"), "{message}");
}

#[test]
fn duplicate_notice_id_across_files() {
    let f = Fixture::new();
    f.write("notices/cookie_wall.toml", &BANNER.replace("title = \"Your choices\"", "title = \"Other\""));
    let message = f.error_at("notices/cookie_wall.toml", 2, "policy_duplicate_id");
    let first = format!("(first declared at {}:2)", f.file("notices/banner.toml").display());
    assert!(message.ends_with(&format!("duplicate notice `banner` {first}")), "{message}");
}

#[test]
fn duplicate_locale() {
    let f = Fixture::new();
    f.edit("notices/banner.toml", "[locales.fr]", "[locales.en]");
    f.edit("notices/banner.toml", "[locales.fr.labels]", "[locales.en.labels]");
    f.error_at("notices/banner.toml", 12, "policy_duplicate_id");
}

#[test]
fn consent_basis_without_requiring_consent() {
    let f = Fixture::new();
    f.edit("purposes.toml", "requires_consent = true", "requires_consent = false");
    let message = f.error_at("purposes.toml", 16, "policy_consent_not_required");
    assert!(message.ends_with("purpose `analytics` has legal basis `consent` but `requires_consent = false`"));
}

#[test]
fn event_type_that_does_not_parse() {
    let f = Fixture::new();
    f.edit("events.toml", "type = \"page.viewed\"", "type = \"Page Viewed\"");
    let message = f.error_at("events.toml", 9, "policy_invalid_name");
    assert!(message.contains("event type `Page Viewed` must be"), "{message}");
}

#[test]
fn purpose_and_category_ids_that_do_not_parse() {
    let f = Fixture::new();
    let extra = "\n[[category]]\nid = \"Bad Id\"\ndescription = \"x\"\nretention_days = 1\nspecial_category = false\n";
    f.write("data_categories.toml", &format!("{CATEGORIES}{extra}"));
    f.error_at("data_categories.toml", 16, "policy_invalid_name");
}

#[test]
fn field_name_that_does_not_parse() {
    let f = Fixture::new();
    f.edit("events.toml", "path = \"behavior\"", "\"Path\" = \"behavior\"");
    let message = f.error_at("events.toml", 12, "policy_invalid_name");
    assert!(message.contains("field `Path` of event `page.viewed`"), "{message}");
}

#[test]
fn notice_label_for_undeclared_purpose() {
    let f = Fixture::new();
    f.edit(
        "notices/banner.toml",
        "analytics = \"Analytics\"\n",
        "analytics = \"Analytics\"\nmarketing = \"Marketing\"\n",
    );
    let message = f.error_at("notices/banner.toml", 11, "policy_undeclared_label");
    assert!(message.ends_with("notice `banner` has a label for undeclared purpose `marketing`"), "{message}");
}

#[test]
fn translation_without_a_label_of_the_default_locale() {
    let f = Fixture::new();
    f.edit("notices/banner.toml", "analytics = \"Mesure d'audience\"\n", "");
    let message = f.error_at("notices/banner.toml", 12, "policy_missing_label");
    assert!(message.ends_with("locale `fr` of notice `banner` has no label for purpose `analytics`"), "{message}");
}

#[test]
fn translation_with_a_label_the_default_locale_lacks() {
    let f = Fixture::new();
    f.edit("notices/banner.toml", "analytics = \"Analytics\"\n", "");
    // The removed line moves `[locales.fr]` up to line 11.
    f.error_at("notices/banner.toml", 11, "policy_extra_label");
}

#[test]
fn invalid_locale() {
    let f = Fixture::new();
    f.edit("notices/banner.toml", "default_locale = \"en\"", "default_locale = \"EN\"");
    let message = f.error_at("notices/banner.toml", 4, "policy_invalid_name");
    assert!(message.contains("locale `EN` must be a language tag"), "{message}");
}

#[test]
fn zero_retention() {
    let f = Fixture::new();
    f.edit("data_categories.toml", "retention_days = 30", "retention_days = 0");
    let message = f.error_at("data_categories.toml", 12, "policy_zero_value");
    assert!(message.ends_with("retention_days of data category `device_context` must be at least 1"), "{message}");
}

#[test]
fn negative_retention_is_a_type_error_on_its_line() {
    let f = Fixture::new();
    f.edit("data_categories.toml", "retention_days = 30", "retention_days = -30");
    f.error_at("data_categories.toml", 12, "policy_syntax");
}

#[test]
fn zero_schema_and_notice_versions() {
    let f = Fixture::new();
    f.edit("events.toml", "schema_version = 1", "schema_version = 0");
    f.error_at("events.toml", 17, "policy_zero_value");
    let f = Fixture::new();
    f.edit("notices/banner.toml", "version = 1", "version = 0");
    f.error_at("notices/banner.toml", 3, "policy_zero_value");
}

#[test]
fn schema_version_must_match_the_domain_catalogue() {
    let f = Fixture::new();
    f.edit("events.toml", "schema_version = 2", "schema_version = 1");
    let message = f.error_at("events.toml", 11, "policy_schema_version_mismatch");
    assert!(message.ends_with("event `page.viewed` declares schema_version 1, but Lethe writes version 2"));
}

#[test]
fn custom_events_must_need_consent() {
    let f = Fixture::new();
    f.edit("events.toml", "purpose = \"analytics\"\ncategory", "purpose = \"necessary\"\ncategory");
    f.error_at("events.toml", 5, "policy_custom_without_consent");
    // Not allowed at all, the fallback purpose does not matter.
    f.edit("events.toml", "allow_custom = true", "allow_custom = false");
    let policies = f.load().unwrap();
    let custom = lethe_domain::EventType::parse("wishlist.shared").unwrap();
    assert_eq!(policies.purpose_for(&custom), None);
    assert_eq!(policies.fields_unclassified(&custom, ["a"]), ["a"]);
}

#[test]
fn empty_text() {
    let f = Fixture::new();
    f.edit("notices/banner.toml", "title = \"Vos choix\"", "title = \"  \"");
    let message = f.error_at("notices/banner.toml", 13, "policy_empty_text");
    assert!(message.ends_with("title of notice `banner` (fr) is empty"), "{message}");
}

#[test]
fn toml_syntax_error() {
    let f = Fixture::new();
    f.edit("events.toml", "schema_version = 2", "schema_version = = 2");
    f.error_at("events.toml", 11, "policy_syntax");
}

#[test]
fn unknown_key_is_a_typo() {
    let f = Fixture::new();
    f.edit("data_categories.toml", "retention_days = 30", "retention_day = 30");
    let message = f.error_at("data_categories.toml", 12, "policy_syntax");
    assert!(message.contains("retention_day"), "{message}");
}

#[test]
fn unknown_legal_basis() {
    let f = Fixture::new();
    f.edit("purposes.toml", "legal_basis = \"consent\"", "legal_basis = \"consnt\"");
    f.error_at("purposes.toml", 15, "policy_syntax");
}

#[test]
fn missing_key_points_at_its_table() {
    let f = Fixture::new();
    f.edit("data_categories.toml", "retention_days = 30\n", "");
    let message = f.error_at("data_categories.toml", 9, "policy_syntax");
    assert!(message.contains("retention_days"), "{message}");
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let f = Fixture::new();
    f.edit("purposes.toml", "requires_consent = true", "requires_consent = false");
    f.edit("data_categories.toml", "retention_days = 30", "retention_days = 0");
    f.edit("events.toml", "type = \"page.viewed\"", "type = \"Page Viewed\"");
    f.edit("notices/banner.toml", "analytics = \"Analytics\"\n", "analytics = \"Analytics\"\nads = \"Ads\"\n");
    let err = f.load().unwrap_err();
    let codes: Vec<_> = err.errors().iter().map(|e| e.code()).collect();
    assert_eq!(
        codes,
        ["policy_consent_not_required", "policy_zero_value", "policy_invalid_name", "policy_undeclared_label"]
    );
    let lines: Vec<_> = err.errors().iter().map(|e| e.location().unwrap().line()).collect();
    assert_eq!(lines, [16, 12, 9, 11]);
    assert_eq!(err.code(), "policy_invalid");
    assert_eq!(err.to_string().lines().count(), 4);
}

#[test]
fn a_broken_file_does_not_cascade() {
    let f = Fixture::new();
    f.edit("purposes.toml", "[[purpose]]\nid = \"analytics\"", "[[purpose]\nid = \"analytics\"");
    // Events and the notice refer to purposes, but only the syntax error is reported.
    f.error_at("purposes.toml", 11, "policy_syntax");
}

#[test]
fn missing_files_are_reported() {
    let f = Fixture::new();
    fs::remove_file(f.file("events.toml")).unwrap();
    fs::remove_dir_all(f.file("notices")).unwrap();
    let err = f.load().unwrap_err();
    let all: Vec<_> = err.errors().iter().map(|e| (e.code(), e.to_string())).collect();
    assert_eq!(all.len(), 2, "{err}");
    assert!(all.iter().all(|(code, _)| *code == "policy_unreadable"));
    assert!(all[0].1.contains("events.toml"));
    assert!(all[1].1.contains("notices"));
}

#[test]
fn no_panic_on_garbage() {
    let inputs =
        ["", "\u{0}", "format = 1\n[[purpose]]", "format = 1\npurpose = 3", "[[[", "format = 99999999999999999999"];
    for text in inputs {
        for file in ["purposes.toml", "data_categories.toml", "events.toml", "notices/banner.toml"] {
            let f = Fixture::new();
            f.write(file, text);
            let err = f.load().unwrap_err();
            assert!(err.errors().iter().all(|e| e.location().is_some_and(|l| l.line() >= 1)), "{err}");
        }
    }
}
