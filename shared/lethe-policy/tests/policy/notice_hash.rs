//! Notice content hashes: stable, sensitive to every text, blind to TOML formatting, and pinned by a
//! golden value.

use std::collections::BTreeSet;

use lethe_policy::{NoticeId, Policies};

use crate::helpers::{Fixture, BANNER};

fn banner_hash(f: &Fixture) -> String {
    let policies = f.load().unwrap_or_else(|e| panic!("{e}"));
    policies.notice(&NoticeId::parse("banner").unwrap()).unwrap().content_hash().to_owned()
}

fn hash_of(text: &str) -> String {
    let f = Fixture::new();
    f.write("notices/banner.toml", text);
    banner_hash(&f)
}

#[test]
fn hash_is_stable_for_the_same_content() {
    assert_eq!(hash_of(BANNER), hash_of(BANNER));
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let id = NoticeId::parse("banner").unwrap();
    let loaded = Policies::load(&repo).unwrap();
    let builtin = Policies::builtin().unwrap();
    assert_eq!(loaded.notice(&id).unwrap().content_hash(), builtin.notice(&id).unwrap().content_hash());
}

#[test]
fn hash_changes_with_every_text_and_the_version() {
    let edits = [
        ("id = \"banner\"", "id = \"banner2\""),
        ("version = 1", "version = 2"),
        ("default_locale = \"en\"", "default_locale = \"en-GB\""),
        ("title = \"Your choices\"", "title = \"Your choices!\""),
        ("body = \"We ask first.\"", "body = \"We ask first. \""),
        ("necessary = \"Necessary\"", "necessary = \"Needed\""),
        ("analytics = \"Analytics\"", "analytics = \"Audience\""),
        ("title = \"Vos choix\"", "title = \"Vos choix.\""),
        ("body = \"Nous demandons d'abord.\"", "body = \"Nous demandons.\""),
        ("necessary = \"Nécessaire\"", "necessary = \"Necessaire\""),
        ("analytics = \"Mesure d'audience\"", "analytics = \"Audience\""),
        ("[locales.fr]", "[locales.fr-CA]"),
    ];
    let mut hashes = BTreeSet::from([hash_of(BANNER)]);
    for (old, new) in edits {
        assert_eq!(BANNER.matches(old).count(), 1, "{old}");
        let edited = BANNER.replace(old, new).replace("[locales.fr.labels]", "[locales.fr-CA.labels]");
        let edited = if old == "[locales.fr]" { edited } else { edited.replace("fr-CA", "fr") };
        let id = if old.starts_with("id =") { "banner2" } else { "banner" };
        let f = Fixture::new();
        f.write("notices/banner.toml", &edited);
        let policies = f.load().unwrap_or_else(|e| panic!("{old}: {e}"));
        let hash = policies.notice(&NoticeId::parse(id).unwrap()).unwrap().content_hash().to_owned();
        assert!(hashes.insert(hash), "changing `{old}` did not change the hash");
    }
}

#[test]
fn hash_ignores_key_order_whitespace_comments_and_string_style() {
    let reordered = r#"
# The same notice, written differently.
format   =   1
body = 'We ask first.'
title = "Your\u0020choices"
labels = { analytics = "Analytics", necessary = "Necessary" }
version = 1

default_locale = "en"
id = """banner"""
locales.fr.labels.analytics = "Mesure d'audience"
locales.fr.labels.necessary = "N\u00e9cessaire"   # escaped
locales.fr.body = """
Nous demandons \
    d'abord."""
locales.fr.title = 'Vos choix'
"#;
    assert_eq!(hash_of(reordered), hash_of(BANNER));
}

const GOLDEN: &str = r#"format = 1
id = "golden"
version = 3
default_locale = "en"
title = "T"
body = "B"

[labels]
analytics = "A"

[locales.de]
title = "Ti"
body = "Bo"

[locales.de.labels]
analytics = "An"
"#;

#[test]
fn golden_hash_of_a_fixed_notice() {
    let f = Fixture::new();
    f.write("notices/golden.toml", GOLDEN);
    let policies = f.load().unwrap_or_else(|e| panic!("{e}"));
    let notice = policies.notice(&NoticeId::parse("golden").unwrap()).unwrap();
    let canonical = "lethe-notice:1:1\nid:6:golden\nversion:1:3\ndefault_locale:2:en\n\
                     locale:2:de\ntitle:2:Ti\nbody:2:Bo\nlabel:9:analytics\ntext:2:An\n\
                     locale:2:en\ntitle:1:T\nbody:1:B\nlabel:9:analytics\ntext:1:A\n";
    assert_eq!(String::from_utf8(notice.canonical_form()).unwrap(), canonical);
    assert_eq!(notice.content_hash(), "9444ee20f9059b678e68d933e77ba6637855bc2670398d9f28e37fd5f25b1d55");
}
