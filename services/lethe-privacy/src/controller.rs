//! `policies/controller.toml`: the controller and its DPO, the clock request deadlines run on, the
//! recipients notified of erasures, and the security measures of the records of processing.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The built-in copy of the repository's `policies/controller.toml`.
const BUILTIN: &str = include_str!("../../../policies/controller.toml");

/// The parsed controller file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerFile {
    pub format: u32,
    pub controller: Party,
    pub dpo: Contact,
    pub requests: RequestSettings,
    #[serde(default, rename = "recipient")]
    pub recipients: Vec<RecipientDef>,
    pub records: Records,
}

/// The controller (GDPR Art. 30(1)(a)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Party {
    pub name: String,
    pub contact: String,
    pub address: String,
    pub representative: String,
}

/// A contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub name: String,
    pub contact: String,
}

/// How requests are timed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSettings {
    pub time_zone: String,
    #[serde(default)]
    pub holidays: Vec<String>,
    pub erasure_finality_minutes: u32,
}

/// A recipient of personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientDef {
    pub id: String,
    /// The name purposes.toml uses for it.
    pub name: String,
    pub third_country_transfers: String,
    /// Where erasure notices go; empty or absent: nowhere (the controller itself, or by hand).
    #[serde(default)]
    pub webhook: Option<String>,
}

/// Parts of the records of processing that are not in the other policy files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Records {
    pub data_subjects: Vec<String>,
    pub security_measures: Vec<String>,
}

/// A controller file that does not load.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

impl ControllerFile {
    /// The built-in copy.
    ///
    /// # Errors
    /// Only if the embedded file is invalid, which this crate's tests rule out.
    pub fn builtin() -> Result<Self, ControllerError> {
        Self::parse("policies/controller.toml", BUILTIN)
    }

    /// `controller.toml` in a policy folder, or the built-in copy when the folder has none.
    ///
    /// # Errors
    /// The file cannot be read or does not parse.
    pub fn load(dir: &Path) -> Result<Self, ControllerError> {
        let path = dir.join("controller.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&path.display().to_string(), &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::builtin(),
            Err(e) => Err(ControllerError::Invalid { file: path.display().to_string(), message: e.to_string() }),
        }
    }

    /// Parses and checks a controller file.
    ///
    /// # Errors
    /// Syntax, an unknown format, a bad time zone or holiday, a duplicate recipient id.
    pub fn parse(file: &str, text: &str) -> Result<Self, ControllerError> {
        let invalid = |message: String| ControllerError::Invalid { file: file.to_owned(), message };
        let mut parsed: Self = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if parsed.format != 1 {
            return Err(invalid(format!("unknown format {}; this Lethe reads format 1", parsed.format)));
        }
        let mut ids = std::collections::HashSet::new();
        for r in &mut parsed.recipients {
            if !ids.insert(r.id.clone()) {
                return Err(invalid(format!("recipient `{}` is declared twice", r.id)));
            }
            let var = format!("LETHE_RECIPIENT_{}_WEBHOOK", r.id.to_uppercase().replace('-', "_"));
            if let Ok(url) = std::env::var(&var) {
                r.webhook = Some(url);
            }
            if r.webhook.as_deref().is_some_and(str::is_empty) {
                r.webhook = None;
            }
            if let Some(url) = &r.webhook {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(invalid(format!("recipient `{}`: webhook must be an http(s) URL", r.id)));
                }
            }
        }
        Ok(parsed)
    }

    /// The recipient declared under a purposes.toml recipient name.
    pub fn recipient_named(&self, name: &str) -> Option<&RecipientDef> {
        self.recipients.iter().find(|r| r.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_file_loads_and_names_every_purpose_recipient() {
        let c = ControllerFile::builtin().unwrap();
        let policies = lethe_policy::Policies::builtin().unwrap();
        for p in policies.purposes() {
            for r in p.recipients() {
                assert!(c.recipient_named(r).is_some(), "R-ROPA-1: recipient `{r}` of `{}` is not declared", p.id());
            }
        }
    }

    #[test]
    fn bad_files_are_refused_with_the_file_named() {
        let good = BUILTIN;
        let err = ControllerFile::parse("x.toml", &good.replace("format = 1", "format = 9")).unwrap_err();
        assert!(err.to_string().starts_with("x.toml: unknown format 9"), "{err}");
        let err = ControllerFile::parse("x.toml", &format!("{good}\nsurprise = 1\n")).unwrap_err();
        assert!(err.to_string().contains("surprise"), "{err}");
        let dup =
            format!("{good}\n[[recipient]]\nid = \"ad-partners\"\nname = \"x\"\nthird_country_transfers = \"none\"\n");
        assert!(ControllerFile::parse("x.toml", &dup).unwrap_err().to_string().contains("twice"));
    }
}
