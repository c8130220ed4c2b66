//! Reading the policy files: their raw TOML shapes, line numbers, and every check within a file and
//! across files. Nothing here panics on any input; every problem becomes a located [`PolicyError`].

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::ops::Range;

use lethe_domain::schema::SchemaRegistry;
use lethe_domain::{EventType, Purpose, SchemaVersion};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use toml::Spanned;

use crate::{
    CategoryDef, CategoryId, CustomEvents, EventRule, LegalBasis, Locale, Location, Notice, NoticeId, NoticeText,
    PolicyError, PurposeDef, Retention,
};

/// The policy format this build reads and writes.
pub const FORMAT: i64 = 1;

/// One policy file: the name errors cite, and its text.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) file: String,
    pub(crate) text: String,
}

impl Source {
    fn line(&self, offset: usize) -> usize {
        let bytes = self.text.as_bytes();
        let end = offset.min(bytes.len());
        bytes[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    fn at(&self, span: &Range<usize>) -> Location {
        Location::new(&self.file, self.line(span.start))
    }

    fn at_value<T>(&self, value: &Spanned<T>) -> Location {
        self.at(&value.span())
    }
}

/// All the policy files.
#[derive(Debug)]
pub(crate) struct Sources {
    pub(crate) purposes: Source,
    pub(crate) categories: Source,
    pub(crate) events: Source,
    pub(crate) notices: Vec<Source>,
}

/// The validated content of [`Sources`].
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) purposes: BTreeMap<Purpose, PurposeDef>,
    pub(crate) categories: BTreeMap<CategoryId, CategoryDef>,
    pub(crate) events: BTreeMap<EventType, EventRule>,
    pub(crate) custom: Option<CustomEvents>,
    pub(crate) context: Fields,
    pub(crate) notices: BTreeMap<NoticeId, Notice>,
}

/// Parses and checks every file, collecting all problems. A file that does not parse is skipped by
/// the checks of other files that refer to it, so one typo does not cascade into many errors.
pub(crate) fn load(sources: &Sources) -> Result<Loaded, PolicyError> {
    let mut errors = Vec::new();
    let purposes = purposes(&sources.purposes, &mut errors);
    let categories = categories(&sources.categories, &mut errors);
    let events = events(&sources.events, purposes.as_ref(), categories.as_ref(), &mut errors);
    let mut notices = BTreeMap::<NoticeId, (Location, Notice)>::new();
    for source in &sources.notices {
        let Some((at, notice)) = notice(source, purposes.as_ref(), &mut errors) else { continue };
        if let Some((first, _)) = notices.get(notice.id()) {
            errors.push(duplicate(at, "notice", notice.id().as_str(), first));
        } else {
            notices.insert(notice.id().clone(), (at, notice));
        }
    }
    match (purposes, categories, events) {
        (Some(purposes), Some(categories), Some(events)) if errors.is_empty() => Ok(Loaded {
            purposes,
            categories,
            events: events.rules,
            custom: events.custom,
            context: events.context,
            notices: notices.into_iter().map(|(id, (_, n))| (id, n)).collect(),
        }),
        _ => Err(PolicyError::from_all(errors)),
    }
}

fn duplicate(at: Location, what: &'static str, id: &str, first: &Location) -> PolicyError {
    PolicyError::Duplicate { at, what, id: id.to_owned(), first: first.clone() }
}

/// Parses a file into `T` after checking its `format`, or records why it cannot.
fn parse<T: DeserializeOwned>(source: &Source, errors: &mut Vec<PolicyError>) -> Option<T> {
    #[derive(Deserialize)]
    struct Header {
        format: Option<Spanned<toml::Value>>,
    }
    let syntax = |e: toml::de::Error| PolicyError::Syntax {
        at: Location::new(&source.file, e.span().map_or(1, |s| source.line(s.start))),
        message: e.message().trim_end().to_owned(),
    };
    let header: Header = match toml::from_str(&source.text) {
        Ok(header) => header,
        Err(e) => {
            errors.push(syntax(e));
            return None;
        }
    };
    match &header.format {
        None => {
            errors.push(PolicyError::MissingFormat { at: Location::new(&source.file, 1), supported: FORMAT });
            return None;
        }
        Some(format) if format.get_ref().as_integer() != Some(FORMAT) => {
            errors.push(PolicyError::UnsupportedFormat {
                at: source.at_value(format),
                found: format.get_ref().to_string(),
                supported: FORMAT,
            });
            return None;
        }
        Some(_) => {}
    }
    toml::from_str(&source.text).map_err(|e| errors.push(syntax(e))).ok()
}

/// Records an error if a text is empty or blank; returns the text.
fn text(
    source: &Source,
    value: Spanned<String>,
    what: impl FnOnce() -> String,
    errors: &mut Vec<PolicyError>,
) -> String {
    if value.get_ref().trim().is_empty() {
        errors.push(PolicyError::EmptyText { at: source.at_value(&value), what: what() });
    }
    value.into_inner()
}

/// Looks a referenced id up in the ids a file declares. `known` is `None` when that file did not
/// parse; the reference is then parsed but not checked.
fn resolve<K: Ord, V>(
    raw: &str,
    parse: impl Fn(&str) -> Option<K>,
    known: Option<&BTreeMap<K, V>>,
) -> Result<Option<K>, ()> {
    match (parse(raw), known) {
        (Some(id), Some(known)) if known.contains_key(&id) => Ok(Some(id)),
        (_, Some(_)) => Err(()),
        (id, None) => Ok(id),
    }
}

// --- purposes.toml ---------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurposesFile {
    #[serde(rename = "format")]
    _format: IgnoredAny,
    #[serde(default)]
    purpose: Vec<RawPurpose>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurpose {
    id: Spanned<String>,
    name: Spanned<String>,
    description: Spanned<String>,
    legal_basis: LegalBasis,
    requires_consent: Spanned<bool>,
    recipients: Vec<Spanned<String>>,
    #[serde(default)]
    ccpa_category: Option<crate::CcpaCategory>,
}

fn purposes(source: &Source, errors: &mut Vec<PolicyError>) -> Option<BTreeMap<Purpose, PurposeDef>> {
    let file: PurposesFile = parse(source, errors)?;
    let mut out = BTreeMap::new();
    let mut seen = BTreeMap::<String, Location>::new();
    for raw in file.purpose {
        let at = source.at_value(&raw.id);
        let id = match Purpose::parse(raw.id.get_ref()) {
            Ok(id) => id,
            Err(e) => {
                errors.push(PolicyError::InvalidName { at, reason: e.to_string() });
                continue;
            }
        };
        if let Some(first) = seen.get(id.as_str()) {
            errors.push(duplicate(at, "purpose", id.as_str(), first));
            continue;
        }
        seen.insert(id.as_str().to_owned(), at);
        if raw.legal_basis == LegalBasis::Consent && !*raw.requires_consent.get_ref() {
            errors.push(PolicyError::ConsentNotRequired {
                at: source.at_value(&raw.requires_consent),
                purpose: id.to_string(),
            });
        }
        let name = text(source, raw.name, || format!("name of purpose `{id}`"), errors);
        let description = text(source, raw.description, || format!("description of purpose `{id}`"), errors);
        let recipients = raw
            .recipients
            .into_iter()
            .map(|r| text(source, r, || format!("a recipient of purpose `{id}`"), errors))
            .collect();
        let def = PurposeDef {
            id: id.clone(),
            name,
            description,
            legal_basis: raw.legal_basis,
            requires_consent: *raw.requires_consent.get_ref(),
            recipients,
            ccpa_category: raw.ccpa_category,
        };
        out.insert(id, def);
    }
    Some(out)
}

// --- data_categories.toml --------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CategoriesFile {
    #[serde(rename = "format")]
    _format: IgnoredAny,
    #[serde(default)]
    category: Vec<RawCategory>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategory {
    id: Spanned<String>,
    description: Spanned<String>,
    retention_days: Spanned<u32>,
    special_category: bool,
}

fn categories(source: &Source, errors: &mut Vec<PolicyError>) -> Option<BTreeMap<CategoryId, CategoryDef>> {
    let file: CategoriesFile = parse(source, errors)?;
    let mut out = BTreeMap::new();
    let mut seen = BTreeMap::<CategoryId, Location>::new();
    for raw in file.category {
        let at = source.at_value(&raw.id);
        let id = match CategoryId::parse(raw.id.get_ref()) {
            Ok(id) => id,
            Err(e) => {
                errors.push(PolicyError::InvalidName { at, reason: e.to_string() });
                continue;
            }
        };
        if let Some(first) = seen.get(&id) {
            errors.push(duplicate(at, "data category", id.as_str(), first));
            continue;
        }
        seen.insert(id.clone(), at);
        let description = text(source, raw.description, || format!("description of data category `{id}`"), errors);
        // An invalid category stays declared, so that references to it are not reported too;
        // the recorded error keeps these policies from being returned.
        let retention = Retention::from_days(*raw.retention_days.get_ref()).unwrap_or_else(|| {
            errors.push(PolicyError::Zero {
                at: source.at_value(&raw.retention_days),
                what: format!("retention_days of data category `{id}`"),
            });
            Retention::MIN
        });
        let def = CategoryDef { id: id.clone(), description, retention, special_category: raw.special_category };
        out.insert(id, def);
    }
    Some(out)
}

// --- events.toml -----------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsFile {
    #[serde(rename = "format")]
    _format: IgnoredAny,
    custom: Option<RawCustom>,
    context: Option<RawContext>,
    #[serde(default)]
    event: Vec<RawEvent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCustom {
    allow_custom: bool,
    purpose: Spanned<String>,
    category: Spanned<String>,
}

/// The `[context]` table: the fields the collector writes into every event, whatever its type.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContext {
    fields: BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    #[serde(rename = "type")]
    event_type: Spanned<String>,
    purpose: Spanned<String>,
    schema_version: Spanned<u16>,
    fields: BTreeMap<String, Spanned<String>>,
}

fn is_field_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

type Purposes = BTreeMap<Purpose, PurposeDef>;
type Categories = BTreeMap<CategoryId, CategoryDef>;
/// Field names and their data categories.
pub(crate) type Fields = BTreeMap<String, CategoryId>;

/// The validated content of `events.toml`.
struct Events {
    rules: BTreeMap<EventType, EventRule>,
    custom: Option<CustomEvents>,
    context: Fields,
}

fn events(
    source: &Source,
    purposes: Option<&Purposes>,
    categories: Option<&Categories>,
    errors: &mut Vec<PolicyError>,
) -> Option<Events> {
    let file: EventsFile = parse(source, errors)?;
    let schemas = SchemaRegistry::builtin();
    let custom = file.custom.and_then(|raw| custom(source, raw, purposes, categories, errors));
    let context = file
        .context
        .map_or_else(Fields::new, |raw| fields(source, raw.fields, "the [context] rule", categories, errors));
    let mut out = BTreeMap::new();
    let mut seen = BTreeMap::<EventType, Location>::new();
    for raw in file.event {
        let at = source.at_value(&raw.event_type);
        let event_type = match EventType::parse(raw.event_type.get_ref()) {
            Ok(t) => t,
            Err(e) => {
                errors.push(PolicyError::InvalidName { at, reason: e.to_string() });
                continue;
            }
        };
        if let Some(first) = seen.get(&event_type) {
            errors.push(duplicate(at, "event type", event_type.as_str(), first));
            continue;
        }
        seen.insert(event_type.clone(), at);
        let owner = format!("event `{event_type}`");
        let purpose = purpose_ref(source, &raw.purpose, &owner, purposes, errors);
        let schema_version = match SchemaVersion::new(*raw.schema_version.get_ref()) {
            Ok(v) => Some(v),
            Err(_) => {
                errors.push(PolicyError::Zero {
                    at: source.at_value(&raw.schema_version),
                    what: format!("schema_version of event `{event_type}`"),
                });
                None
            }
        };
        if let (Some(declared), Some(latest)) = (schema_version, schemas.latest(&event_type)) {
            if declared.get() != latest {
                errors.push(PolicyError::SchemaVersionMismatch {
                    at: source.at_value(&raw.schema_version),
                    event: event_type.to_string(),
                    declared: declared.get(),
                    latest,
                });
            }
        }
        let fields = fields(source, raw.fields, &owner, categories, errors);
        if let (Some(purpose), Some(schema_version)) = (purpose, schema_version) {
            out.insert(event_type.clone(), EventRule { event_type, purpose, schema_version, fields });
        }
    }
    Some(Events { rules: out, custom, context })
}

/// Checks the names and categories of a `fields` table; `owner` names the rule in errors. Fields
/// with a bad name or an unknown category are reported and left out.
fn fields(
    source: &Source,
    raw: BTreeMap<String, Spanned<String>>,
    owner: &str,
    categories: Option<&Categories>,
    errors: &mut Vec<PolicyError>,
) -> Fields {
    let mut fields = Fields::new();
    for (name, category) in raw {
        if !is_field_name(&name) {
            let shown: String = name.chars().take(80).collect();
            errors.push(PolicyError::InvalidName {
                at: source.at_value(&category),
                reason: format!("field `{shown}` of {owner} must be 1 to 64 characters of a-z, 0-9 or `_`"),
            });
            continue;
        }
        let owner = format!("field `{name}` of {owner}");
        if let Some(category) = category_ref(source, &category, &owner, categories, errors) {
            fields.insert(name, category);
        }
    }
    fields
}

fn custom(
    source: &Source,
    raw: RawCustom,
    purposes: Option<&Purposes>,
    categories: Option<&Categories>,
    errors: &mut Vec<PolicyError>,
) -> Option<CustomEvents> {
    let owner = "the [custom] rule";
    let purpose = purpose_ref(source, &raw.purpose, owner, purposes, errors);
    let category = category_ref(source, &raw.category, owner, categories, errors);
    let needs_no_consent = purpose
        .as_ref()
        .and_then(|p| purposes.and_then(|all| all.get(p)))
        .is_some_and(|def| !def.requires_consent() && def.legal_basis() != LegalBasis::Consent);
    if raw.allow_custom && needs_no_consent {
        errors.push(PolicyError::CustomWithoutConsent {
            at: source.at_value(&raw.purpose),
            purpose: raw.purpose.get_ref().clone(),
        });
    }
    Some(CustomEvents { allowed: raw.allow_custom, purpose: purpose?, category: category? })
}

fn purpose_ref(
    source: &Source,
    raw: &Spanned<String>,
    owner: &str,
    purposes: Option<&Purposes>,
    errors: &mut Vec<PolicyError>,
) -> Option<Purpose> {
    resolve(raw.get_ref(), |s| Purpose::parse(s).ok(), purposes).unwrap_or_else(|()| {
        errors.push(PolicyError::UnknownPurpose {
            at: source.at_value(raw),
            owner: owner.to_owned(),
            purpose: raw.get_ref().chars().take(80).collect(),
        });
        None
    })
}

fn category_ref(
    source: &Source,
    raw: &Spanned<String>,
    owner: &str,
    categories: Option<&Categories>,
    errors: &mut Vec<PolicyError>,
) -> Option<CategoryId> {
    resolve(raw.get_ref(), |s| CategoryId::parse(s).ok(), categories).unwrap_or_else(|()| {
        errors.push(PolicyError::UnknownCategory {
            at: source.at_value(raw),
            owner: owner.to_owned(),
            category: raw.get_ref().chars().take(80).collect(),
        });
        None
    })
}

// --- notices/*.toml --------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoticeFile {
    #[serde(rename = "format")]
    _format: IgnoredAny,
    id: Spanned<String>,
    version: Spanned<u32>,
    default_locale: Spanned<String>,
    title: Spanned<String>,
    body: Spanned<String>,
    labels: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    locales: BTreeMap<String, Spanned<RawTexts>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTexts {
    title: Spanned<String>,
    body: Spanned<String>,
    labels: BTreeMap<String, Spanned<String>>,
}

/// Parses one notice; returns it with the location of its id, for duplicate checks across files.
fn notice(source: &Source, purposes: Option<&Purposes>, errors: &mut Vec<PolicyError>) -> Option<(Location, Notice)> {
    let file: NoticeFile = parse(source, errors)?;
    let before = errors.len();
    let at = source.at_value(&file.id);
    let id = NoticeId::parse(file.id.get_ref())
        .map_err(|e| errors.push(PolicyError::InvalidName { at: at.clone(), reason: e.to_string() }))
        .ok();
    let shown_id = file.id.get_ref().chars().take(80).collect::<String>();
    let version = NonZeroU32::new(*file.version.get_ref());
    if version.is_none() {
        errors.push(PolicyError::Zero {
            at: source.at_value(&file.version),
            what: format!("version of notice `{shown_id}`"),
        });
    }
    let locale = |raw: &str, at: Location, errors: &mut Vec<PolicyError>| {
        Locale::parse(raw).map_err(|e| errors.push(PolicyError::InvalidName { at, reason: e.to_string() })).ok()
    };
    let default_locale = locale(file.default_locale.get_ref(), source.at_value(&file.default_locale), errors);
    let texts = NoticeTexts { source, notice: &shown_id, purposes };
    let default_text = texts.build(file.default_locale.get_ref(), file.title, file.body, file.labels, errors);
    let mut translations = BTreeMap::new();
    for (tag, raw) in file.locales {
        let at = source.at_value(&raw);
        let Some(tag_locale) = locale(&tag, at.clone(), errors) else { continue };
        if default_locale.as_ref() == Some(&tag_locale) {
            let first = source.at_value(&file.default_locale);
            errors.push(duplicate(at, "locale", &tag, &first));
            continue;
        }
        let raw = raw.into_inner();
        let text = texts.build(&tag, raw.title, raw.body, raw.labels, errors);
        for purpose in default_text.labels.keys().filter(|p| !text.labels.contains_key(*p)) {
            errors.push(PolicyError::MissingLabel {
                at: at.clone(),
                notice: shown_id.clone(),
                locale: tag.clone(),
                purpose: purpose.to_string(),
            });
        }
        for purpose in text.labels.keys().filter(|p| !default_text.labels.contains_key(*p)) {
            errors.push(PolicyError::ExtraLabel {
                at: at.clone(),
                notice: shown_id.clone(),
                locale: tag.clone(),
                purpose: purpose.to_string(),
            });
        }
        translations.insert(tag_locale, text);
    }
    match (id, version, default_locale) {
        (Some(id), Some(version), Some(default_locale)) if errors.len() == before => {
            Some((at, Notice::new(id, version, default_locale, default_text, translations)))
        }
        _ => None,
    }
}

/// Builds the texts of one locale of a notice.
struct NoticeTexts<'a> {
    source: &'a Source,
    notice: &'a str,
    purposes: Option<&'a Purposes>,
}

impl NoticeTexts<'_> {
    fn build(
        &self,
        locale: &str,
        title: Spanned<String>,
        body: Spanned<String>,
        raw_labels: BTreeMap<String, Spanned<String>>,
        errors: &mut Vec<PolicyError>,
    ) -> NoticeText {
        let (source, notice) = (self.source, self.notice);
        let title = text(source, title, || format!("title of notice `{notice}` ({locale})"), errors);
        let body = text(source, body, || format!("body of notice `{notice}` ({locale})"), errors);
        let mut labels = BTreeMap::new();
        for (purpose, label) in raw_labels {
            let Ok(resolved) = resolve(&purpose, |s| Purpose::parse(s).ok(), self.purposes) else {
                errors.push(PolicyError::UndeclaredLabel {
                    at: source.at_value(&label),
                    notice: notice.to_owned(),
                    purpose: purpose.chars().take(80).collect(),
                });
                continue;
            };
            let label = text(source, label, || format!("label of `{purpose}` in notice `{notice}` ({locale})"), errors);
            if let Some(purpose) = resolved {
                labels.insert(purpose, label);
            }
        }
        NoticeText { title, body, labels }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_counted_from_one_and_offsets_are_clamped() {
        let source = Source { file: "f.toml".to_owned(), text: "a\nb\n\nd".to_owned() };
        assert_eq!(source.line(0), 1);
        assert_eq!(source.line(1), 1);
        assert_eq!(source.line(2), 2);
        assert_eq!(source.line(5), 4);
        assert_eq!(source.line(usize::MAX), 4);
        assert_eq!(source.at(&(2..3)).to_string(), "f.toml:2");
    }
}
