//! The events of Personalizer Rank calls, kept for their rewards: `eventId` → the decision, the
//! subject it was made for, whether the event is active, and a reward held until it is.
//!
//! Held by the engine, not by the HTTP layer, so that the engine rebuilds them at start from the
//! decision receipts (a personalized Rank call's receipt names its event) and forgets a subject's
//! events when it forgets the subject: a caller's `eventId` may well name the visitor.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use lethe_domain::Pseudonym;
use serde::Serialize;
use uuid::Uuid;

/// Most events kept for their rewards; past it the oldest gives way first.
pub const MAX_EVENTS: usize = 1_000_000;

/// The event a Rank call names: the caller's `eventId` (or, when it sent none, the decision's id)
/// and whether its activation is deferred. A personalized decision's receipt carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RankEvent {
    /// The caller's `eventId`; `None`: the decision's id stands for it ([`RankEvent::id_for`]).
    pub id: Option<String>,
    pub deferred: bool,
}

impl RankEvent {
    /// The event's id for `decision`: the caller's, or the decision's id without hyphens.
    pub fn id_for(&self, decision: Uuid) -> String {
        self.id.clone().unwrap_or_else(|| decision.simple().to_string())
    }
}

/// The events of Rank calls, at most a fixed number ([`MAX_EVENTS`] by default): past it the oldest
/// event gives way first, and a reward for it is then unknown.
#[derive(Debug)]
pub struct EventIds {
    capacity: usize,
    events: Mutex<Events>,
}

#[derive(Debug, Default)]
struct Events {
    by_id: HashMap<Arc<str>, Event>,
    /// Insertion order, each with its entry's number: an `eventId` sent again leaves its earlier
    /// place here, which eviction then passes over.
    order: VecDeque<(u64, Arc<str>)>,
    next: u64,
}

#[derive(Debug, Clone, Copy)]
struct Event {
    decision: Uuid,
    /// Whom the decision was for (`None`: no one in particular).
    subject: Option<Pseudonym>,
    number: u64,
    active: bool,
    /// The first reward sent while inactive (as for an active event, the first reward counts).
    held: Option<f64>,
}

/// What a reward does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reward {
    /// The event is active: record it for this decision.
    Record(Uuid),
    /// The event waits for `/activate`: held until then.
    Held,
}

impl Default for EventIds {
    fn default() -> Self {
        Self::with_capacity(MAX_EVENTS)
    }
}

impl EventIds {
    /// Keeps at most `capacity` events (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), events: Mutex::new(Events::default()) }
    }

    /// How many events are kept.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether no event is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The decision of an event.
    pub fn decision(&self, event_id: &str) -> Option<Uuid> {
        self.lock().by_id.get(event_id).map(|e| e.decision)
    }

    /// Whether an event is active (it was not deferred, or it was activated).
    pub fn is_active(&self, event_id: &str) -> Option<bool> {
        self.lock().by_id.get(event_id).map(|e| e.active)
    }

    /// The ids of a subject's events, oldest first.
    pub fn of_subject(&self, subject: &Pseudonym) -> Vec<String> {
        let events = self.lock();
        let mine =
            |id: &Arc<str>, n: u64| events.by_id.get(id).is_some_and(|e| e.number == n && e.subject == Some(*subject));
        events.order.iter().filter(|(n, id)| mine(id, *n)).map(|(_, id)| id.to_string()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Events> {
        self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps an event (an `eventId` sent again now names the new decision), forgetting the oldest
    /// past the capacity.
    pub fn insert(&self, event_id: &str, decision: Uuid, subject: Option<Pseudonym>, active: bool) {
        let mut events = self.lock();
        let events = &mut *events;
        let id: Arc<str> = Arc::from(event_id);
        let number = events.next;
        events.next += 1;
        events.by_id.insert(Arc::clone(&id), Event { decision, subject, number, active, held: None });
        events.order.push_back((number, id));
        while events.order.len() > self.capacity {
            let Some((n, old)) = events.order.pop_front() else { break };
            if events.by_id.get(&old).is_some_and(|e| e.number == n) {
                events.by_id.remove(&old);
            }
        }
    }

    /// A reward of `value` for an event: recorded if the event is active, else held.
    pub fn reward(&self, event_id: &str, value: f64) -> Option<Reward> {
        let mut events = self.lock();
        let e = events.by_id.get_mut(event_id)?;
        if e.active {
            return Some(Reward::Record(e.decision));
        }
        e.held.get_or_insert(value);
        Some(Reward::Held)
    }

    /// Activates an event: its decision and the reward held for it, if any (taken).
    pub fn activate(&self, event_id: &str) -> Option<(Uuid, Option<f64>)> {
        let mut events = self.lock();
        let e = events.by_id.get_mut(event_id)?;
        e.active = true;
        Some((e.decision, e.held.take()))
    }

    /// Keeps only the events whose decision `keep` still holds (the engine's attribution window,
    /// so that the events a restart rebuilds are the ones a running engine has): how many went.
    pub fn retain_decisions(&self, keep: impl Fn(&Uuid) -> bool) -> usize {
        self.retain(|e| keep(&e.decision))
    }

    /// Forgets every event of `subject` (its erasure): whether there was any.
    pub fn forget(&self, subject: &Pseudonym) -> bool {
        self.retain(|e| e.subject != Some(*subject)) > 0
    }

    /// Keeps the events `keep` accepts, and their places in the order: how many went.
    fn retain(&self, keep: impl Fn(&Event) -> bool) -> usize {
        let mut events = self.lock();
        let events = &mut *events;
        let before = events.by_id.len();
        events.by_id.retain(|_, e| keep(e));
        let gone = before - events.by_id.len();
        if gone > 0 {
            let by_id = &events.by_id;
            events.order.retain(|(n, id)| by_id.get(id).is_some_and(|e| e.number == *n));
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_events_give_way_first() {
        let ids = EventIds::with_capacity(3);
        let d: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        for (i, d) in d.iter().enumerate().take(3) {
            ids.insert(&format!("e{i}"), *d, None, true);
        }
        assert_eq!(ids.len(), 3);
        ids.insert("e3", d[3], None, true);
        assert_eq!((ids.len(), ids.decision("e0")), (3, None), "the oldest went first, alone");
        assert_eq!((ids.decision("e1"), ids.decision("e3")), (Some(d[1]), Some(d[3])));
        // An eventId sent again names the new decision and is not evicted by its earlier place.
        ids.insert("e1", d[4], None, true);
        assert_eq!(ids.decision("e1"), Some(d[4]));
        assert_eq!((ids.decision("e2"), ids.decision("e3")), (Some(d[2]), Some(d[3])));
        ids.insert("e5", d[0], None, true);
        assert_eq!(ids.decision("e1"), Some(d[4]), "its earlier place was passed over");
        assert_eq!(ids.len(), 3);
        assert!(ids.events.lock().unwrap().order.len() <= 3, "the order is bounded too");
    }

    #[test]
    fn a_deferred_event_holds_its_reward_until_activated() {
        let ids = EventIds::with_capacity(10);
        let (live, deferred) = (Uuid::new_v4(), Uuid::new_v4());
        ids.insert("live", live, None, true);
        ids.insert("deferred", deferred, None, false);
        assert_eq!(ids.reward("live", 1.0), Some(Reward::Record(live)));
        assert_eq!(ids.reward("deferred", 0.7), Some(Reward::Held));
        assert_eq!(ids.reward("deferred", 0.2), Some(Reward::Held));
        assert_eq!(ids.is_active("deferred"), Some(false));
        assert_eq!(ids.activate("deferred"), Some((deferred, Some(0.7))), "the first reward held");
        assert_eq!(ids.is_active("deferred"), Some(true));
        assert_eq!(ids.reward("deferred", 1.0), Some(Reward::Record(deferred)));
        assert_eq!(ids.activate("deferred"), Some((deferred, None)), "nothing held twice");
        assert_eq!((ids.reward("nope", 1.0), ids.activate("nope")), (None, None));
    }

    #[test]
    fn events_go_with_their_decisions() {
        let ids = EventIds::with_capacity(10);
        let (kept, gone) = (Uuid::new_v4(), Uuid::new_v4());
        ids.insert("kept", kept, None, true);
        ids.insert("gone", gone, None, true);
        ids.insert("gone-too", gone, None, false);
        assert_eq!(ids.retain_decisions(|d| *d == kept), 2);
        assert_eq!((ids.len(), ids.decision("kept"), ids.decision("gone")), (1, Some(kept), None));
        assert_eq!(ids.events.lock().unwrap().order.len(), 1);
        assert_eq!(ids.retain_decisions(|_| true), 0);
    }

    #[test]
    fn r_erase_forgetting_a_subject_drops_her_events_and_only_hers() {
        let ids = EventIds::with_capacity(10);
        let (ann, bo) = (Pseudonym::from_bytes([1; Pseudonym::LEN]), Pseudonym::from_bytes([2; Pseudonym::LEN]));
        ids.insert("ann-1", Uuid::new_v4(), Some(ann), true);
        ids.insert("bo-1", Uuid::new_v4(), Some(bo), true);
        ids.insert("anyone", Uuid::new_v4(), None, true);
        ids.insert("ann-2", Uuid::new_v4(), Some(ann), false);
        // An eventId sent again for someone else belongs to its latest decision only.
        ids.insert("bo-1", Uuid::new_v4(), Some(ann), true);
        assert_eq!(ids.of_subject(&ann), ["ann-1", "ann-2", "bo-1"]);
        assert!(ids.forget(&ann));
        assert_eq!((ids.len(), ids.of_subject(&ann).len()), (1, 0));
        assert!(ids.decision("anyone").is_some());
        assert!(ids.events.lock().unwrap().order.len() == 1, "her places in the order went too");
        assert!(!ids.forget(&ann), "nothing left of her");
        assert!(!ids.forget(&bo), "bo's event was sent again for ann");
    }
}
