//! The error type of the policy crate: a problem in a policy file, located by file and line.

use std::fmt;

/// Where a problem is: the policy file (as given to [`crate::Policies::load`], or `policies/…` for
/// the built-in copy) and the 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    file: String,
    line: usize,
}

impl Location {
    pub(crate) fn new(file: &str, line: usize) -> Self {
        Self { file: file.to_owned(), line }
    }

    /// The policy file.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The 1-based line in [`Self::file`].
    pub const fn line(&self) -> usize {
        self.line
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// What can be wrong with the policy files. Every variant but [`PolicyError::Read`] and
/// [`PolicyError::Several`] points at a file and a line.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{at}: {message}")]
    Syntax { at: Location, message: String },
    #[error("{at}: missing `format = {supported}` at the top of the file")]
    MissingFormat { at: Location, supported: i64 },
    #[error("{at}: policy format `{found}` is not supported (this build reads format {supported})")]
    UnsupportedFormat { at: Location, found: String, supported: i64 },
    #[error("{at}: {reason}")]
    InvalidName { at: Location, reason: String },
    #[error("{at}: duplicate {what} `{id}` (first declared at {first})")]
    Duplicate { at: Location, what: &'static str, id: String, first: Location },
    #[error("{at}: purpose `{purpose}` has legal basis `consent` but `requires_consent = false`")]
    ConsentNotRequired { at: Location, purpose: String },
    #[error("{at}: {owner} needs unknown purpose `{purpose}`")]
    UnknownPurpose { at: Location, owner: String, purpose: String },
    #[error("{at}: {owner} has unknown data category `{category}`")]
    UnknownCategory { at: Location, owner: String, category: String },
    #[error(
        "{at}: custom events fall back to purpose `{purpose}`, which needs no consent; \
         name a purpose that requires consent"
    )]
    CustomWithoutConsent { at: Location, purpose: String },
    #[error("{at}: event `{event}` declares schema_version {declared}, but Lethe writes version {latest}")]
    SchemaVersionMismatch { at: Location, event: String, declared: u16, latest: u16 },
    #[error("{at}: notice `{notice}` has a label for undeclared purpose `{purpose}`")]
    UndeclaredLabel { at: Location, notice: String, purpose: String },
    #[error("{at}: locale `{locale}` of notice `{notice}` has no label for purpose `{purpose}`")]
    MissingLabel { at: Location, notice: String, locale: String, purpose: String },
    #[error(
        "{at}: locale `{locale}` of notice `{notice}` labels purpose `{purpose}`, \
         which the default locale does not label"
    )]
    ExtraLabel { at: Location, notice: String, locale: String, purpose: String },
    #[error("{at}: {what} must be at least 1")]
    Zero { at: Location, what: String },
    #[error("{at}: {what} is empty")]
    EmptyText { at: Location, what: String },
    #[error("{}", display_all(.0))]
    Several(Vec<PolicyError>),
}

fn display_all(errors: &[PolicyError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

impl PolicyError {
    /// A stable, machine-readable code for the problem.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Read { .. } => "policy_unreadable",
            Self::Syntax { .. } => "policy_syntax",
            Self::MissingFormat { .. } => "policy_format_missing",
            Self::UnsupportedFormat { .. } => "policy_format_unsupported",
            Self::InvalidName { .. } => "policy_invalid_name",
            Self::Duplicate { .. } => "policy_duplicate_id",
            Self::ConsentNotRequired { .. } => "policy_consent_not_required",
            Self::UnknownPurpose { .. } => "policy_unknown_purpose",
            Self::UnknownCategory { .. } => "policy_unknown_category",
            Self::CustomWithoutConsent { .. } => "policy_custom_without_consent",
            Self::SchemaVersionMismatch { .. } => "policy_schema_version_mismatch",
            Self::UndeclaredLabel { .. } => "policy_undeclared_label",
            Self::MissingLabel { .. } => "policy_missing_label",
            Self::ExtraLabel { .. } => "policy_extra_label",
            Self::Zero { .. } => "policy_zero_value",
            Self::EmptyText { .. } => "policy_empty_text",
            Self::Several(_) => "policy_invalid",
        }
    }

    /// Where the problem is; `None` for [`Self::Read`] and [`Self::Several`].
    pub fn location(&self) -> Option<&Location> {
        match self {
            Self::Read { .. } | Self::Several(_) => None,
            Self::Syntax { at, .. }
            | Self::MissingFormat { at, .. }
            | Self::UnsupportedFormat { at, .. }
            | Self::InvalidName { at, .. }
            | Self::Duplicate { at, .. }
            | Self::ConsentNotRequired { at, .. }
            | Self::UnknownPurpose { at, .. }
            | Self::UnknownCategory { at, .. }
            | Self::CustomWithoutConsent { at, .. }
            | Self::SchemaVersionMismatch { at, .. }
            | Self::UndeclaredLabel { at, .. }
            | Self::MissingLabel { at, .. }
            | Self::ExtraLabel { at, .. }
            | Self::Zero { at, .. }
            | Self::EmptyText { at, .. } => Some(at),
        }
    }

    /// Every single problem: the list of [`Self::Several`], or this error alone.
    pub fn errors(&self) -> &[PolicyError] {
        match self {
            Self::Several(all) => all,
            one => std::slice::from_ref(one),
        }
    }

    /// One error for a non-empty list of problems.
    pub(crate) fn from_all(mut all: Vec<PolicyError>) -> Self {
        debug_assert!(!all.is_empty(), "an error needs at least one problem");
        match all.pop() {
            Some(only) if all.is_empty() => only,
            Some(last) => {
                all.push(last);
                Self::Several(all)
            }
            None => Self::Several(all),
        }
    }
}

/// Result alias of the policy crate.
pub type Result<T, E = PolicyError> = std::result::Result<T, E>;
