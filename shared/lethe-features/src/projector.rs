//! The projector: folds the event log into feature views, item statistics and the catalog, under
//! consent.
//!
//! **Consent gating (invariant 3).** The projector folds every `consent.changed` record itself
//! (with `lethe-consent`) and keeps a subject only while its consent allows the personalization
//! purpose. An event feeds the subject's features only if, when it is applied:
//! 1. the latest personalization choice recorded *before it in the log* is a grant, and
//! 2. the event's own time is not before that grant's `collected_at`.
//!
//! So an analytics-only subject (no grant, or a denial) builds nothing and is not held at all, and
//! behavior from before the grant is never used, even when delivered later. This is fail-closed
//! for both readings of "consent at the event's time": an event is used only if consent held both
//! when it happened and when it was recorded.
//!
//! A `consent.changed` record that cannot be read counts as malformed *and* as a refusal
//! (invariant 8, fail closed): it may have been a withdrawal.
//!
//! **Withdrawal clears.** A record that takes personalization back (denial, withdrawal, a GPC
//! opt-out of the purpose) stops updates from then on *and* removes the subject's features and
//! its contribution to item statistics (R-CONSENT-2: processing for the purpose stops at once, and
//! serving must not personalize from what it collected). A later grant starts from nothing. The
//! vocabularies are not swept on withdrawal (only on erasure); they hold no pseudonym.
//!
//! **Erasure.** [`Projector::forget`] (and an `lethe.erasure_fence` event in the log) removes the
//! subject from the views, the ledgers and statistics, and sweeps every vocabulary string no
//! longer referenced, so nothing that came from the subject's payloads stays. The sweep walks every
//! subject once: tens of milliseconds at a million subjects (`examples/memory.rs` prints it);
//! inside [`Projector::catch_up`] the fences of a batch share one sweep at its end.
//!
//! Catalog and system event types contain `_` (`catalog.item_upserted`, `lethe.erasure_fence`),
//! which the collector's normalization of Segment event names never produces, so a site cannot
//! forge them through `/v1/track`.
//!
//! **Determinism (invariant 6).** [`Projector::apply`] reads no clock, no randomness and no
//! environment; hash map order never decides anything; interned ids are renumbered in the
//! snapshot. The same events in the same order give the same [`Projector::snapshot_bytes`], and the
//! order of different subjects' events does not matter except against catalog events (a product
//! view without a category takes the catalog's category at the time it is applied).
//!
//! **Not counted in the snapshot:** [`ProjectionStats`], which describe this process's work
//! (how many events were skipped and why), and the log position (carried by checkpoints).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;

use lethe_consent::{ConsentRecord, SubjectConsent, CONSENT_CHANGED};
use lethe_domain::schema::{types::ERASURE_FENCE, SchemaRegistry};
use lethe_domain::{EventBody, Position, Pseudonym, PseudonymMap, Purpose, RecordedEvent};
use lethe_eventlog::{EventStore, Note};
use lethe_policy::Policies;
use serde_json::{json, Value};

use crate::catalog::{Interaction, ItemCatalog, ItemUpsert, Touch};
use crate::memory::{hash_map_bytes, MemoryUsage};
use crate::observe::{observe, observe_receipt, Action, Context, Kind, Observation};
use crate::view::{Daypart, DeviceClass, FeatureView};
use crate::vocab::{Interner, LocationId, SegmentId};
use crate::{FeatureError, Result};

/// The purpose that gates personalization features.
pub const PERSONALIZATION: &str = "personalization";
/// Event type of a catalog upsert; the payload is an item body ([`crate::ItemUpsert::parse`]).
pub const ITEM_UPSERTED: &str = "catalog.item_upserted";
/// Event type of a catalog removal; the payload is `{"id": "…"}`.
pub const ITEM_REMOVED: &str = "catalog.item_removed";
/// Payloads larger than this are skipped as malformed (the collector stores far less).
pub const MAX_PAYLOAD: usize = 1 << 20;

/// What gates the projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectorConfig {
    personalization: Purpose,
    requires_consent: bool,
}

impl ProjectorConfig {
    /// Reads the gate from the policies: the `personalization` purpose and whether it needs
    /// consent.
    ///
    /// # Errors
    /// [`FeatureError::UnknownPurpose`] when the policies do not declare it (fail closed).
    pub fn from_policies(policies: &Policies) -> Result<Self> {
        let purpose =
            Purpose::parse(PERSONALIZATION).map_err(|_| FeatureError::UnknownPurpose(PERSONALIZATION.into()))?;
        let def = policies.purpose(&purpose).ok_or_else(|| FeatureError::UnknownPurpose(PERSONALIZATION.into()))?;
        Ok(Self { requires_consent: def.requires_consent(), personalization: purpose })
    }

    /// A gate on `purpose`; `requires_consent: false` admits every subject without a record.
    #[must_use]
    pub const fn new(purpose: Purpose, requires_consent: bool) -> Self {
        Self { personalization: purpose, requires_consent }
    }

    /// The gating purpose.
    #[must_use]
    pub const fn purpose(&self) -> &Purpose {
        &self.personalization
    }

    /// Whether the purpose needs consent.
    #[must_use]
    pub const fn requires_consent(&self) -> bool {
        self.requires_consent
    }
}

/// The catalogue of event versions and upcasters the projector reads payloads with.
static SCHEMA: std::sync::LazyLock<SchemaRegistry> = std::sync::LazyLock::new(SchemaRegistry::builtin);

/// What the decision engine knows of a decision receipt (`decision.served`) it appends: the
/// request's coarse context. It goes with the receipt as its note
/// ([`EventStore::append_batch_deferred_noted`]), and the views take it in place of decrypting and
/// parsing the receipt ([`Projector::takes_note`], [`Projector::prepare_noted`]), which is most
/// of what following the log costs them under decisions. It observes exactly what reading the
/// receipt does: the API tests check it against the receipts the engine writes
/// ([`ServedNote::agrees_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServedNote {
    device: Option<DeviceClass>,
    daypart: Daypart,
}

impl ServedNote {
    /// The note of a decision asked from `device` in `daypart`.
    #[must_use]
    pub const fn new(device: Option<DeviceClass>, daypart: Daypart) -> Self {
        Self { device, daypart }
    }

    fn observation(self) -> Observation {
        Observation {
            action: Action::Decision { segment: None },
            context: Context { device: self.device, daypart: Some(self.daypart), referrer: None, location: None },
        }
    }

    /// Whether the note observes what the projector reads in `receipt` (a `decision.served` event
    /// with its payload opened).
    #[must_use]
    pub fn agrees_with(&self, receipt: &RecordedEvent) -> bool {
        match (Kind::of(receipt.envelope.event_type.as_str()), &receipt.body) {
            (Some(kind @ Kind::DecisionServed), EventBody::Plain(p)) => {
                Projector::observation(receipt, kind, p) == Some(self.observation())
            }
            _ => false,
        }
    }
}

/// An event read from the log with what its payload observed ([`Projector::prepare`]).
#[derive(Debug)]
pub struct Prepared {
    event: RecordedEvent,
    observed: Observed,
}

/// Whether an event's payload was read ahead of applying it.
#[derive(Debug)]
enum Observed {
    /// Not read: it is read when applied, if it needs to be.
    Later,
    /// A behaviour event with a readable body, read: what it observed (`None`: the payload cannot
    /// be used).
    Read(Option<Observation>),
    /// A decision receipt left unopened, whose readable payload its note stands for.
    Noted(Observation),
}

/// What the projector did with the events it saw. Operational counters of this process: not part
/// of the snapshot, reset by a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProjectionStats {
    /// Events seen.
    pub events: u64,
    /// Events that changed features, consent state or the catalog.
    pub applied: u64,
    /// Behavior events skipped because personalization was not allowed for them.
    pub not_consented: u64,
    /// Events skipped because their payload was malformed (not JSON, missing fields, absurd numbers).
    pub malformed: u64,
    /// Events of types that feed nothing, and system records without a payload.
    pub ignored: u64,
    /// Events whose payload was shredded (erasure) or expired (retention).
    pub unreadable: u64,
    /// Events whose application panicked (a defect, not bad input): passed over, with their
    /// subject's features dropped ([`Projector::apply`]).
    pub failed: u64,
    /// Subjects whose features a withdrawal cleared.
    pub withdrawals: u64,
    /// Subjects erased.
    pub forgotten: u64,
}

/// One subject's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subject {
    /// `collected_at` of the grant in force (microseconds); events before it are not used.
    pub(crate) since: i64,
    pub(crate) view: FeatureView,
    /// Items touched, most recent first, at most [`crate::LEDGER_CAP`].
    pub(crate) ledger: Vec<Touch>,
}

/// Folds the event log into feature views, item statistics and the item catalog.
#[derive(Debug, Clone)]
pub struct Projector {
    pub(crate) config: ProjectorConfig,
    pub(crate) index: PseudonymMap<u32>,
    pub(crate) slots: Vec<Option<Subject>>,
    pub(crate) free: Vec<u32>,
    pub(crate) catalog: ItemCatalog,
    pub(crate) locations: Interner,
    pub(crate) segments: Interner,
    pub(crate) position: Position,
    pub(crate) stats: ProjectionStats,
    /// While a batch is applied (`apply_prepared`): erasures sweep the vocabularies once, at the end.
    defer_sweep: bool,
    sweep_pending: bool,
}

pub(crate) const MAX_SMALL_VOCAB: u32 = u16::MAX as u32;

impl Projector {
    /// An empty projector.
    #[must_use]
    pub fn new(config: ProjectorConfig) -> Self {
        Self {
            config,
            index: PseudonymMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            catalog: ItemCatalog::new(),
            locations: Interner::new("location", MAX_SMALL_VOCAB),
            segments: Interner::new("segment", MAX_SMALL_VOCAB),
            position: Position(0),
            stats: ProjectionStats::default(),
            defer_sweep: false,
            sweep_pending: false,
        }
    }

    /// Projects the whole log.
    ///
    /// # Errors
    /// [`FeatureError::Log`] when the log cannot be read.
    pub fn replay(store: &dyn EventStore, config: ProjectorConfig) -> Result<Self> {
        let mut p = Self::new(config);
        p.catch_up(store)?;
        Ok(p)
    }

    /// Applies every event after [`Self::position`] (after a restore: only what the checkpoint
    /// does not cover). Returns the new position.
    ///
    /// # Errors
    /// [`FeatureError::Log`] when the log cannot be read; the events before the failure stay
    /// applied and the position says how far.
    pub fn catch_up(&mut self, store: &dyn EventStore) -> Result<Position> {
        let mut outcome = Ok(());
        let events = store
            .read_all_opening(self.next(), Self::opens)
            .map_while(|event| event.map_err(|e| outcome = Err(e.into())).ok());
        self.apply_new(events);
        outcome.map(|()| self.position)
    }

    /// The position to read the log from: the one after [`Self::position`].
    #[must_use]
    pub const fn next(&self) -> Position {
        Position(self.position.0.saturating_add(1))
    }

    /// Whether the projector reads the payload of events of type `ty`: the consent records, the
    /// catalog's and the observed behaviour (an erasure fence has none). Any other event only
    /// moves [`Self::position`]; a reader may leave it sealed ([`EventStore::read_all_opening`]).
    #[must_use]
    pub fn opens(ty: &str) -> bool {
        matches!(ty, ERASURE_FENCE | CONSENT_CHANGED | ITEM_UPSERTED | ITEM_REMOVED) || Kind::of(ty).is_some()
    }

    /// What a behaviour event of `kind` observed, read from its payload; `None` when it cannot be
    /// read. Depends on nothing the events change.
    fn observation(event: &RecordedEvent, kind: Kind, payload: &[u8]) -> Option<Observation> {
        let env = &event.envelope;
        // A payload at its type's latest version needs no upcast: a receipt is read in part.
        let latest = SCHEMA.latest(&env.event_type).is_none_or(|l| env.schema_version.get() >= l);
        if let Some(o) = latest.then(|| observe_receipt(kind, payload)).flatten() {
            return o.ok();
        }
        SCHEMA.upcast(&env.event_type, env.schema_version.get(), payload).ok().and_then(|(_, v)| observe(kind, &v).ok())
    }

    /// Reads the payloads of `events`, the costly part of applying them, apart from any projector
    /// (the views do it without their lock); [`Self::apply_prepared`] then applies them as
    /// [`Self::apply_new`] would.
    #[must_use]
    pub fn prepare(events: Vec<RecordedEvent>) -> Vec<Prepared> {
        events.into_iter().map(Self::prepare_one).collect()
    }

    fn prepare_one(event: RecordedEvent) -> Prepared {
        let observed = match (Kind::of(event.envelope.event_type.as_str()), &event.body) {
            // A read that panics (a defect) is left to the apply, which contains it.
            (Some(kind), EventBody::Plain(p)) if p.len() <= MAX_PAYLOAD => {
                std::panic::catch_unwind(|| Self::observation(&event, kind, p)).map_or(Observed::Later, Observed::Read)
            }
            _ => Observed::Later,
        };
        Prepared { event, observed }
    }

    /// Whether the projector takes `note` in place of the payload of an event of type `ty`
    /// ([`EventStore::read_all_opening_noted`]): a decision receipt's [`ServedNote`].
    #[must_use]
    pub fn takes_note(ty: &str, note: &Note) -> bool {
        Kind::of(ty) == Some(Kind::DecisionServed) && note.is::<ServedNote>()
    }

    /// [`Self::prepare`] for events read by [`EventStore::read_all_opening_noted`] with
    /// [`Self::takes_note`]: an unopened decision receipt with its note observes what the note says.
    #[must_use]
    pub fn prepare_noted(events: Vec<(RecordedEvent, Option<Note>)>) -> Vec<Prepared> {
        events
            .into_iter()
            .map(|(event, note)| {
                let noted = note.as_ref().and_then(|n| n.downcast_ref::<ServedNote>()).copied();
                match noted {
                    Some(n)
                        if event.body == EventBody::Unopened
                            && Kind::of(event.envelope.event_type.as_str()) == Some(Kind::DecisionServed) =>
                    {
                        Prepared { event, observed: Observed::Noted(n.observation()) }
                    }
                    _ => Self::prepare_one(event),
                }
            })
            .collect()
    }

    /// [`Self::apply_new`] for events read by [`Self::prepare`].
    pub fn apply_prepared(&mut self, prepared: impl IntoIterator<Item = Prepared>) {
        // Erasure fences met on the way sweep the vocabularies once, when the batch ends, instead
        // of once each: a replay over many erasures stays linear.
        self.defer_sweep = true;
        for p in prepared {
            if p.event.envelope.position > self.position {
                self.apply_observed(&p.event, p.observed);
            }
        }
        self.defer_sweep = false;
        if std::mem::take(&mut self.sweep_pending) {
            self.sweep();
        }
    }

    /// Applies, in order, the events after [`Self::position`]; those at or before it are passed
    /// over. Events read from the log before this projector moved on (another caller caught it up,
    /// an erasure forgot a subject up to its fence) therefore change nothing.
    pub fn apply_new(&mut self, events: impl IntoIterator<Item = RecordedEvent>) {
        self.apply_prepared(events.into_iter().map(|event| Prepared { event, observed: Observed::Later }));
    }

    /// The highest log position applied.
    #[must_use]
    pub const fn position(&self) -> Position {
        self.position
    }

    /// The gate.
    #[must_use]
    pub const fn config(&self) -> &ProjectorConfig {
        &self.config
    }

    /// What the projector did with the events it saw.
    #[must_use]
    pub const fn stats(&self) -> ProjectionStats {
        self.stats
    }

    /// The item catalog and its statistics.
    #[must_use]
    pub const fn catalog(&self) -> &ItemCatalog {
        &self.catalog
    }

    /// The catalog, to upsert items from `PUT /v1/items` directly (not through the log). Items put
    /// this way are in snapshots and checkpoints but not in a rebuild from the log.
    pub fn catalog_mut(&mut self) -> &mut ItemCatalog {
        &mut self.catalog
    }

    /// A subject's features; `None` if it has none (no consent, withdrawn, erased, never seen).
    #[must_use]
    pub fn view(&self, subject: &Pseudonym) -> Option<&FeatureView> {
        self.subject(subject).map(|s| &s.view)
    }

    /// Every held subject's features, in no particular order and without their pseudonyms: for
    /// aggregates over the population, such as drift monitoring.
    pub fn feature_views(&self) -> impl Iterator<Item = &FeatureView> + '_ {
        self.slots.iter().flatten().map(|s| &s.view)
    }

    /// Item engagement per segment, summed over the held subjects (consenting ones only) without
    /// their pseudonyms: segment name → item → views + 2 × clicks + 5 × purchases. Popularity by
    /// segment, for a cold start.
    #[must_use]
    pub fn segment_engagement(&self) -> HashMap<String, HashMap<String, f64>> {
        let mut out: HashMap<String, HashMap<String, f64>> = HashMap::new();
        for s in self.slots.iter().flatten() {
            for seg in s.view.segments() {
                let Some(name) = self.segment_name(seg) else { continue };
                let items = out.entry(name.to_owned()).or_default();
                for t in &s.ledger {
                    let Some(item) = self.catalog.items.resolve(t.item) else { continue };
                    let w = f64::from(t.views) + 2.0 * f64::from(t.clicks) + 5.0 * f64::from(t.purchases);
                    *items.entry(item.to_owned()).or_default() += w;
                }
            }
        }
        out
    }

    /// The names of a held subject's segments.
    pub fn segments_of(&self, subject: &Pseudonym) -> Vec<String> {
        self.subject(subject)
            .map(|s| s.view.segments().filter_map(|id| self.segment_name(id).map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// Whether the projector holds anything of the subject (R-ERASE-3 checks this after erasure).
    #[must_use]
    pub fn holds(&self, subject: &Pseudonym) -> bool {
        self.index.contains_key(subject)
    }

    /// Subjects held.
    #[must_use]
    pub fn subjects(&self) -> usize {
        self.index.len()
    }

    /// The items a subject touched, most recent first: `(item, views, clicks, purchases)`. The
    /// row of the user–item matrix recommenders train on.
    pub fn interactions(&self, subject: &Pseudonym) -> impl Iterator<Item = (&str, u16, u16, u16)> + '_ {
        self.subject(subject)
            .into_iter()
            .flat_map(|s| s.ledger.iter())
            .filter_map(|t| Some((self.catalog.items.resolve(t.item)?, t.views, t.clicks, t.purchases)))
    }

    /// The name of a location id (`country` or `country/region`).
    #[must_use]
    pub fn location_name(&self, id: LocationId) -> Option<&str> {
        self.locations.resolve(u32::from(id.0))
    }

    /// The name of a segment id.
    #[must_use]
    pub fn segment_name(&self, id: SegmentId) -> Option<&str> {
        self.segments.resolve(u32::from(id.0))
    }

    fn subject(&self, p: &Pseudonym) -> Option<&Subject> {
        self.slots.get(*self.index.get(p)? as usize)?.as_ref()
    }

    /// Applies one event. Pure: the same events in the same order always give the same state.
    /// Never fails and never panics: an event that cannot be used is skipped and counted in
    /// [`Self::stats`]. A defect that panics while applying an event is contained as well: the
    /// event counts as `failed`, its subject is dropped as a withdrawal drops it (what the event
    /// changed before it failed is unknown: fail closed; the subject's next grant starts anew),
    /// and the projector goes on. So the views keep following the log, and a lock held around
    /// the projector is not poisoned.
    pub fn apply(&mut self, event: &RecordedEvent) {
        self.apply_observed(event, Observed::Later);
    }

    /// [`Self::apply`], with the observation of a behaviour event already read
    /// ([`Self::prepare`]) when `observed` says so.
    fn apply_observed(&mut self, event: &RecordedEvent, observed: Observed) {
        let applied = std::panic::catch_unwind(AssertUnwindSafe(|| self.apply_unguarded(event, observed)));
        if applied.is_err() {
            let env = &event.envelope;
            self.position = self.position.max(env.position);
            self.stats.failed += 1;
            // Strings the event brought may be interned: swept as after an erasure.
            self.remove_and_sweep(&env.subject);
        }
    }

    fn apply_unguarded(&mut self, event: &RecordedEvent, observed: Observed) {
        #[cfg(test)]
        tests::fail_here(event);
        let env = &event.envelope;
        self.position = self.position.max(env.position);
        self.stats.events += 1;
        let ty = env.event_type.as_str();
        if ty == ERASURE_FENCE {
            self.forget(&env.subject);
            return;
        }
        let payload: &[u8] = match &event.body {
            EventBody::Plain(p) => p,
            EventBody::Shredded | EventBody::Expired => {
                self.stats.unreadable += 1;
                return;
            }
            // A noted receipt: its note stands for the payload.
            EventBody::Unopened if matches!(observed, Observed::Noted(_)) => &[],
            EventBody::Empty | EventBody::Unopened => {
                self.stats.ignored += 1;
                return;
            }
        };
        if payload.len() > MAX_PAYLOAD {
            self.stats.malformed += 1;
            return;
        }
        match ty {
            CONSENT_CHANGED => self.apply_consent(env.subject, payload),
            ITEM_UPSERTED => {
                let ok = match ItemUpsert::parse(payload) {
                    Ok(items) => items.into_iter().try_for_each(|i| self.catalog.upsert_item(i).map(drop)).is_ok(),
                    Err(_) => false,
                };
                self.count(ok);
            }
            ITEM_REMOVED => {
                let id = serde_json::from_slice::<Value>(payload)
                    .ok()
                    .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned));
                if let Some(id) = &id {
                    self.catalog.remove(id);
                }
                self.count(id.is_some());
            }
            _ => match Kind::of(ty) {
                Some(kind) => self.apply_behavior(event, kind, payload, observed),
                None => self.stats.ignored += 1,
            },
        }
    }

    fn count(&mut self, ok: bool) {
        if ok {
            self.stats.applied += 1;
        } else {
            self.stats.malformed += 1;
        }
    }

    fn apply_consent(&mut self, subject: Pseudonym, payload: &[u8]) {
        let Ok(record) = serde_json::from_slice::<ConsentRecord>(payload) else {
            // Fail closed (invariant 8): a consent record that cannot be read may be a
            // withdrawal, so personalization stops until a readable grant.
            self.stats.malformed += 1;
            if self.config.requires_consent {
                self.remove(&subject);
            }
            return;
        };
        self.stats.applied += 1;
        if !self.config.requires_consent {
            return;
        }
        // lethe-consent's fold decides what this record says about the purpose (the last choice
        // for it in the record wins). With consent required, a verdict allows exactly when the
        // latest choice for the purpose is a grant (GPC only changes the reason of a refusal), so
        // the record's choice is all the gate needs.
        let mut folded = SubjectConsent::default();
        folded.apply(&record);
        let Some(choice) = folded.purposes.get(&self.config.personalization) else { return };
        if choice.granted {
            if !self.index.contains_key(&subject) {
                self.insert(subject, choice.since.0);
            }
        } else if self.remove(&subject) {
            self.stats.withdrawals += 1;
        }
    }

    fn insert(&mut self, subject: Pseudonym, since: i64) -> u32 {
        let s = Subject { since, view: FeatureView::default(), ledger: Vec::new() };
        let i = if let Some(i) = self.free.pop() {
            if let Some(slot) = self.slots.get_mut(i as usize) {
                *slot = Some(s);
            }
            i
        } else {
            self.slots.push(Some(s));
            u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
        };
        self.index.insert(subject, i);
        i
    }

    /// Removes a subject's features and ledger contributions. Returns whether it was held.
    fn remove(&mut self, subject: &Pseudonym) -> bool {
        let Some(i) = self.index.remove(subject) else { return false };
        if let Some(s) = self.slots.get_mut(i as usize).and_then(Option::take) {
            for t in s.ledger {
                self.catalog.subtract(t);
            }
        }
        self.free.push(i);
        // Trailing free slots are given back, so a projector emptied by erasures holds nothing.
        while matches!(self.slots.last(), Some(None)) {
            let last = u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX);
            self.slots.pop();
            self.free.retain(|f| *f != last);
        }
        true
    }

    /// Erases a subject from every view and index at once: its features, its ledger and its share
    /// of item statistics, then every vocabulary string nothing refers to any more. Returns
    /// whether anything of the subject was held.
    pub fn forget(&mut self, subject: &Pseudonym) -> bool {
        // Swept even when the subject was not held: strings its payloads brought may have
        // outlived an earlier withdrawal.
        let held = self.remove_and_sweep(subject);
        if held {
            self.stats.forgotten += 1;
        }
        held
    }

    /// Removes `subject` and sweeps the vocabularies of the strings no longer referenced (at the
    /// end of the batch, inside [`Self::apply_prepared`]). Whether the subject was held.
    fn remove_and_sweep(&mut self, subject: &Pseudonym) -> bool {
        let held = self.remove(subject);
        if self.defer_sweep {
            self.sweep_pending = true;
        } else {
            self.sweep();
        }
        held
    }

    /// Marks every vocabulary id in use: `[categories, items, locations, segments]`.
    pub(crate) fn marks(&self) -> [Vec<bool>; 4] {
        let mut cats = self.catalog.categories.marks();
        let mut items = self.catalog.items.marks();
        let mut locs = self.locations.marks();
        let mut segs = self.segments.marks();
        self.catalog.mark(&mut cats, &mut items);
        for s in self.slots.iter().flatten() {
            s.view.mark(&mut cats, &mut items, &mut locs, &mut segs);
            for t in &s.ledger {
                if let Some(m) = items.get_mut(t.item as usize) {
                    *m = true;
                }
            }
        }
        [cats, items, locs, segs]
    }

    /// Drops vocabulary strings nothing refers to.
    fn sweep(&mut self) {
        let [cats, items, locs, segs] = self.marks();
        self.catalog.categories.retain(&cats);
        self.catalog.items.retain(&items);
        self.locations.retain(&locs);
        self.segments.retain(&segs);
    }

    fn apply_behavior(&mut self, event: &RecordedEvent, kind: Kind, payload: &[u8], observed: Observed) {
        let env = &event.envelope;
        let slot = match self.index.get(&env.subject) {
            Some(i) => *i,
            None if !self.config.requires_consent => self.insert(env.subject, i64::MIN),
            None => {
                self.stats.not_consented += 1;
                return;
            }
        };
        let since = self.slots.get(slot as usize).and_then(Option::as_ref).map_or(i64::MAX, |s| s.since);
        if env.time.0 < since {
            self.stats.not_consented += 1;
            return;
        }
        let observation = match observed {
            Observed::Read(o) => o,
            Observed::Noted(o) => Some(o),
            Observed::Later => Self::observation(event, kind, payload),
        };
        let Some(o) = observation else {
            self.stats.malformed += 1;
            return;
        };
        // Intern first, so that a full vocabulary skips the event before anything changed.
        let Ok(ids) = self.intern(&o.action, o.context.location.as_deref()) else {
            self.stats.malformed += 1;
            return;
        };
        let Some(Some(subject)) = self.slots.get_mut(slot as usize) else { return };
        let catalog = &mut self.catalog;
        let v = &mut subject.view;
        let ledger = &mut subject.ledger;
        v.touch_context(
            env.time.0,
            o.context.device,
            o.context.daypart.unwrap_or_else(|| Daypart::of(env.time)),
            o.context.referrer,
        );
        if let Some(l) = ids.location {
            v.location = l;
        }
        match o.action {
            Action::View { .. } | Action::Click { .. } => {
                let view = matches!(o.action, Action::View { .. });
                if view {
                    v.views = v.views.saturating_add(1);
                } else {
                    v.clicks = v.clicks.saturating_add(1);
                }
                let category = ids.category.or_else(|| ids.item.map(|i| catalog.category_of(i))).filter(|c| *c != 0);
                if let Some(c) = category {
                    v.categories.record(c, view);
                }
                if let Some(i) = ids.item {
                    catalog.touch(ledger, i, if view { Interaction::View } else { Interaction::Click });
                }
            }
            Action::Scroll { percent } => {
                v.scroll_events = v.scroll_events.saturating_add(1);
                v.scroll_sum = v.scroll_sum.saturating_add(u32::from(percent));
                v.scroll_max = v.scroll_max.max(percent);
            }
            Action::Dwell { seconds } => {
                v.dwell_events = v.dwell_events.saturating_add(1);
                v.dwell_seconds = v.dwell_seconds.saturating_add(seconds);
            }
            Action::Session { seconds, pages } => {
                v.sessions = v.sessions.saturating_add(1);
                v.session_seconds = v.session_seconds.saturating_add(seconds);
                v.session_pages = v.session_pages.saturating_add(pages);
            }
            Action::Survey => v.surveys = v.surveys.saturating_add(1),
            Action::Purchase { cents, .. } => {
                v.purchases = v.purchases.saturating_add(1);
                v.purchase_cents = v.purchase_cents.saturating_add(cents);
                for i in ids.items.iter().rev() {
                    v.purchased.push(*i);
                }
                for i in &ids.items {
                    catalog.touch(ledger, *i, Interaction::Purchase);
                }
            }
            Action::Like(_) => {
                if let Some(i) = ids.item {
                    v.likes = v.likes.saturating_add(1);
                    v.disliked.remove(i);
                    v.liked.push(i);
                }
            }
            Action::Dislike(_) => {
                if let Some(i) = ids.item {
                    v.dislikes = v.dislikes.saturating_add(1);
                    v.liked.remove(i);
                    v.disliked.push(i);
                }
            }
            Action::Rating { score, review, .. } => {
                if let Some(s) = score {
                    v.ratings = v.ratings.saturating_add(1);
                    v.rating_sum = v.rating_sum.saturating_add(u32::from(s));
                }
                if review {
                    v.reviews = v.reviews.saturating_add(1);
                }
            }
            Action::Decision { .. } => {
                v.decisions = v.decisions.saturating_add(1);
                if let Some(s) = ids.segment {
                    v.segments.push(s);
                }
            }
            Action::Outcome => v.outcomes = v.outcomes.saturating_add(1),
            Action::Segment(_) => {
                if let Some(s) = ids.segment {
                    v.segments.push(s);
                }
            }
        }
        self.stats.applied += 1;
    }

    fn intern(&mut self, action: &Action, location: Option<&str>) -> Result<Ids> {
        let mut ids = Ids::default();
        let small = |id: u32, kind| u16::try_from(id).map_err(|_| FeatureError::VocabularyFull(kind));
        if let Some(l) = location {
            ids.location = Some(small(self.locations.intern(l)?, "location")?);
        }
        match action {
            Action::View { item, category } | Action::Click { item, category } => {
                if let Some(c) = category {
                    ids.category = Some(small(self.catalog.categories.intern(c)?, "category")?);
                }
                if let Some(i) = item {
                    ids.item = Some(self.catalog.items.intern(i)?);
                }
            }
            Action::Like(i) | Action::Dislike(i) => ids.item = Some(self.catalog.items.intern(i)?),
            Action::Purchase { items, .. } => {
                for i in items {
                    ids.items.push(self.catalog.items.intern(i)?);
                }
            }
            Action::Decision { segment: Some(s) } | Action::Segment(s) => {
                ids.segment = Some(small(self.segments.intern(s)?, "segment")?);
            }
            _ => {}
        }
        Ok(ids)
    }

    /// A subject's features as JSON with names resolved, for the access export (R-DSR-2);
    /// `None` if none are held.
    #[must_use]
    pub fn export(&self, subject: &Pseudonym) -> Option<Value> {
        let s = self.subject(subject)?;
        let v = &s.view;
        let item = |i: crate::ItemId| self.catalog.item_key(i).map(str::to_owned);
        let d = v.dwell();
        let sc = v.scroll();
        let se = v.sessions();
        let r = v.ratings();
        Some(json!({
            "consent_since_micros": s.since,
            "top_categories": v.top_categories().iter().map(|c| json!({
                "category": self.catalog.category_name(c.category), "views": c.views, "clicks": c.clicks,
            })).collect::<Vec<_>>(),
            "views": v.views(),
            "clicks": v.clicks(),
            "last_event_micros": v.last_event().map(|t| t.0),
            "dwell": {"events": d.events, "total_seconds": d.total_seconds},
            "scroll": {"events": sc.events, "mean_percent": sc.mean_percent, "max_percent": sc.max_percent},
            "sessions": {"count": se.count, "mean_seconds": se.mean_seconds, "mean_pages": se.mean_pages},
            "last_device": v.last_device().map(crate::DeviceClass::as_str),
            "devices": v.devices,
            "dayparts": v.dayparts(),
            "last_referrer": v.last_referrer().map(crate::ReferrerClass::as_str),
            "referrers": v.referrers(),
            "location": v.location().and_then(|l| self.location_name(l)),
            "purchases": {"count": v.purchases, "value_cents": v.purchase_cents},
            "recent_purchases": v.recent_purchases().filter_map(item).collect::<Vec<_>>(),
            "recently_liked": v.recently_liked().filter_map(item).collect::<Vec<_>>(),
            "recently_disliked": v.recently_disliked().filter_map(item).collect::<Vec<_>>(),
            "likes": v.likes, "dislikes": v.dislikes,
            "ratings": {"count": r.count, "mean": r.mean, "reviews": r.reviews},
            "surveys": v.surveys,
            "decisions": v.decisions, "outcomes": v.outcomes,
            "segments": v.segments().filter_map(|g| self.segment_name(g)).collect::<Vec<_>>(),
            "interactions": self.interactions(subject).map(|(i, views, clicks, purchases)| json!({
                "item": i, "views": views, "clicks": clicks, "purchases": purchases,
            })).collect::<Vec<_>>(),
        }))
    }

    /// What the projector holds in memory, counted from capacities.
    #[must_use]
    pub fn memory_usage(&self) -> MemoryUsage {
        let header = std::mem::size_of::<Vec<Touch>>();
        let ledger_heap: usize =
            self.slots.iter().flatten().map(|s| s.ledger.capacity() * std::mem::size_of::<Touch>()).sum();
        MemoryUsage {
            subjects: self.index.len(),
            index_bytes: hash_map_bytes::<Pseudonym, u32>(self.index.capacity()),
            view_bytes: self.slots.capacity() * (std::mem::size_of::<Option<Subject>>() - header)
                + self.free.capacity() * std::mem::size_of::<u32>(),
            ledger_bytes: self.slots.capacity() * header + ledger_heap,
            vocabulary_bytes: self.catalog.categories.heap_bytes()
                + self.catalog.items.heap_bytes()
                + self.locations.heap_bytes()
                + self.segments.heap_bytes(),
            catalog_bytes: self.catalog.heap_bytes(),
        }
    }

    /// Checks that every item statistic is the sum of the ledgers (a test and debugging aid).
    #[must_use]
    pub fn statistics_consistent(&self) -> bool {
        let mut sums: HashMap<u32, crate::ItemStats> = HashMap::new();
        for t in self.slots.iter().flatten().flat_map(|s| s.ledger.iter()) {
            let s = sums.entry(t.item).or_default();
            s.views += u32::from(t.views);
            s.clicks += u32::from(t.clicks);
            s.purchases += u32::from(t.purchases);
            s.users += 1;
        }
        sums == self.catalog.stats
    }
}

/// The interned ids of one observation.
#[derive(Debug, Default)]
struct Ids {
    category: Option<u16>,
    item: Option<u32>,
    items: Vec<u32>,
    location: Option<u16>,
    segment: Option<u16>,
}

/// The black-box tests' log builder, for the tests below.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../tests/features/helpers.rs"]
mod test_helpers;

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use lethe_domain::{Position, RecordedEvent};

    use super::test_helpers as helpers;
    use super::{FeatureView, Projector};
    use helpers::{Log, S, T0};

    thread_local! {
        /// The position whose apply panics on this thread: a defect, injected by a test.
        static FAIL_AT: Cell<Option<Position>> = const { Cell::new(None) };
    }

    /// Panics when `event` is the one this thread's test marked.
    pub(super) fn fail_here(event: &RecordedEvent) {
        if FAIL_AT.with(Cell::get) == Some(event.envelope.position) {
            panic!("a defect, injected at position {}", event.envelope.position.0);
        }
    }

    const GRANT: &[(&str, bool)] = &[("analytics", true), ("personalization", true)];

    /// A defect that panics while one event is applied is contained, on the path the views take
    /// (`prepare`, then `apply_prepared`): the event counts as failed and its subject is dropped as
    /// a withdrawal drops it (fail closed: R-CONSENT-2's clear, invariant 3), everything else is
    /// applied as it would be without the defect, and the subject's next grant starts anew.
    #[test]
    fn a_panic_while_applying_is_contained_and_fails_closed() {
        let (a, b) = (helpers::subject(1), helpers::subject(2));
        let mut log = Log::default();
        log.consent(a, T0, GRANT).consent(b, T0, GRANT).shopper(a, T0, 0).shopper(b, T0, 1);
        let clean = helpers::project(&log.events);
        let failing = log
            .events
            .iter()
            .find(|e| e.envelope.subject == a && e.envelope.event_type.as_str() == "product.viewed")
            .expect("a product view of a")
            .envelope
            .position;

        FAIL_AT.with(|f| f.set(Some(failing)));
        let contained = std::panic::catch_unwind(|| {
            let mut p = Projector::new(helpers::config());
            p.apply_prepared(Projector::prepare(log.events.clone()));
            p
        });
        FAIL_AT.with(|f| f.set(None));
        let mut p = contained.expect("the panic stays inside the projector");

        assert_eq!(p.stats().failed, 1);
        assert_eq!(clean.stats().failed, 0);
        assert!(clean.holds(&a));
        assert!(!p.holds(&a), "the subject of the failed event is dropped");
        // Compared with names resolved: dropping a renumbers the interned ids.
        assert!(p.export(&b).is_some());
        assert_eq!(p.export(&b), clean.export(&b), "the other subject's events are all applied");
        assert_eq!(p.position(), clean.position(), "the events after the failed one are applied");
        assert!(
            p.stats().not_consented > clean.stats().not_consented,
            "a's events after the failed one wait for a new grant"
        );

        let from = log.events.len();
        log.consent(a, T0 + 100 * S, GRANT).shopper(a, T0 + 100 * S, 0);
        p.apply_prepared(Projector::prepare(log.events[from..].to_vec()));
        assert_eq!(
            p.view(&a).map(FeatureView::views),
            clean.view(&a).map(FeatureView::views),
            "a new grant starts anew"
        );
        assert_eq!(p.stats().failed, 1);
    }
}
