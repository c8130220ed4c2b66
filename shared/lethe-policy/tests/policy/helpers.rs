//! A small, valid policy directory in a tempdir, with edits that break it one rule at a time.

use std::fs;
use std::path::{Path, PathBuf};

use lethe_policy::{Policies, PolicyError};

pub const PURPOSES: &str = r#"format = 1

[[purpose]]
id = "necessary"
name = "Necessary"
description = "Runs the site."
legal_basis = "legitimate_interests"
requires_consent = false
recipients = ["the site operator"]

[[purpose]]
id = "analytics"
name = "Analytics"
description = "Measures use."
legal_basis = "consent"
requires_consent = true
recipients = ["the site operator"]
ccpa_category = "business_purpose"
"#;

pub const CATEGORIES: &str = r#"format = 1

[[category]]
id = "behavior"
description = "What a visitor does."
retention_days = 395
special_category = false

[[category]]
id = "device_context"
description = "Device class."
retention_days = 30
special_category = false
"#;

pub const EVENTS: &str = r#"format = 1

[custom]
allow_custom = true
purpose = "analytics"
category = "behavior"

[[event]]
type = "page.viewed"
purpose = "analytics"
schema_version = 2
fields = { host = "behavior", path = "behavior", referrer_class = "device_context" }

[[event]]
type = "lethe.erasure_fence"
purpose = "necessary"
schema_version = 1
fields = {}
"#;

pub const BANNER: &str = r#"format = 1
id = "banner"
version = 1
default_locale = "en"
title = "Your choices"
body = "We ask first."

[labels]
necessary = "Necessary"
analytics = "Analytics"

[locales.fr]
title = "Vos choix"
body = "Nous demandons d'abord."

[locales.fr.labels]
necessary = "Nécessaire"
analytics = "Mesure d'audience"
"#;

/// A policy directory holding the small valid set above.
pub struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("notices")).unwrap();
        let fixture = Self { dir };
        fixture.write("purposes.toml", PURPOSES);
        fixture.write("data_categories.toml", CATEGORIES);
        fixture.write("events.toml", EVENTS);
        fixture.write("notices/banner.toml", BANNER);
        fixture
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) {
        fs::write(self.file(name), text).unwrap();
    }

    /// Replaces the one occurrence of `old` in a file.
    pub fn edit(&self, name: &str, old: &str, new: &str) -> &Self {
        let text = fs::read_to_string(self.file(name)).unwrap();
        assert_eq!(text.matches(old).count(), 1, "`{old}` must occur once in {name}");
        self.write(name, &text.replacen(old, new, 1));
        self
    }

    pub fn load(&self) -> Result<Policies, PolicyError> {
        Policies::load(self.path())
    }

    /// Loads, expecting exactly one problem, and returns it with its message.
    pub fn single_error(&self) -> (String, &'static str) {
        let err = self.load().expect_err("the edited policies must not load");
        assert_eq!(err.errors().len(), 1, "expected one problem, got:\n{err}");
        (err.to_string(), err.code())
    }

    /// Loads, expecting one problem in `file` at `line`, and returns its message.
    pub fn error_at(&self, file: &str, line: usize, code: &str) -> String {
        let (message, actual_code) = self.single_error();
        let prefix = format!("{}:{line}: ", self.file(file).display());
        assert!(message.starts_with(&prefix), "expected `{prefix}…`, got `{message}`");
        assert_eq!(actual_code, code, "{message}");
        message
    }
}
