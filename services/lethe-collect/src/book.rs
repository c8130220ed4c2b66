//! The in-memory projections collection needs: each subject's consent history (a projection of the
//! `consent.changed` events), the index of message ids already stored, for deduplication, and the
//! pseudonyms known to be signed-in accounts (a consent record or an event stored for a `userId`
//! says so), which a public site key may not act for as an `anonymousId` (R-DSR-4). All are
//! rebuilt from the log at start (they are never written to disk, so an erasure leaves nothing
//! of them behind) and kept current by the handlers after each durable append.

use std::collections::HashSet;
use std::sync::RwLock;

use lethe_consent::{ConsentHistory, ConsentRecord, Verdict, CONSENT_CHANGED};
use lethe_domain::{EventBody, Position, Pseudonym, PseudonymMap, PseudonymSet, Purpose};
use lethe_eventlog::EventStore;
use sha2::{Digest, Sha256};

/// A message id as the dedup index keeps it: 16 bytes of SHA-256 over the subject and the id.
type MessageKey = [u8; 16];

/// Told of every consent record added after start, with the subject it is about: stores that
/// learned from a subject check whether its consent still allows what they keep.
pub type ConsentListener = Box<dyn Fn(&Pseudonym) + Send + Sync>;

/// Consent histories, stored message ids and signed-in accounts, by pseudonym.
#[derive(Debug, Default)]
pub struct ConsentBook {
    consents: RwLock<PseudonymMap<ConsentHistory>>,
    messages: RwLock<PseudonymMap<HashSet<MessageKey>>>,
    /// Pseudonyms some consent record or event was stored for under a `userId`. An `anonymousId`
    /// and a `userId` with the same text share one pseudonym, so this is what tells a visitor's
    /// pseudonym from an account's.
    users: RwLock<PseudonymSet>,
    listeners: Listeners,
}

#[derive(Default)]
struct Listeners(RwLock<Vec<ConsentListener>>);

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} consent listeners", self.0.read().map_or(0, |l| l.len()))
    }
}

fn message_key(subject: &Pseudonym, message_id: &str) -> MessageKey {
    let mut h = Sha256::new();
    h.update(subject.as_bytes());
    h.update(message_id.as_bytes());
    h.finalize()[..16].try_into().expect("16 bytes")
}

impl ConsentBook {
    /// Rebuilds the book from the whole log.
    ///
    /// # Errors
    /// The log cannot be read.
    pub fn replay(store: &dyn EventStore) -> lethe_eventlog::Result<Self> {
        let book = Self::default();
        for event in store.read_all(Position(1)) {
            let event = event?;
            let EventBody::Plain(payload) = &event.body else { continue };
            let subject = event.envelope.subject;
            if event.envelope.event_type.as_str() == CONSENT_CHANGED {
                if let Ok(record) = serde_json::from_slice::<ConsentRecord>(payload) {
                    book.add_consent(subject, record);
                }
            } else if let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) {
                if v.get(crate::SUBJECT_IS_USER).and_then(serde_json::Value::as_bool) == Some(true) {
                    book.mark_user(subject);
                }
                if let Some(id) = v.get("message_id").and_then(|m| m.as_str()) {
                    book.messages
                        .write()
                        .expect("book lock")
                        .entry(subject)
                        .or_default()
                        .insert(message_key(&subject, id));
                }
            }
        }
        Ok(book)
    }

    /// Adds a durable consent record, then tells the listeners (outside the book's lock). A record
    /// made for a `userId` marks its subject as an account.
    pub fn add_consent(&self, subject: Pseudonym, record: ConsentRecord) {
        if record.subject_is_user {
            self.mark_user(subject);
        }
        self.consents.write().expect("book lock").entry(subject).or_default().push(record);
        for listener in self.listeners.0.read().expect("listeners lock").iter() {
            listener(&subject);
        }
    }

    /// Marks a subject as a signed-in account: an event was stored for it under a `userId`.
    pub fn mark_user(&self, subject: Pseudonym) {
        if !self.is_user(&subject) {
            self.users.write().expect("book lock").insert(subject);
        }
    }

    /// Whether a consent record or an event was stored for the subject under a `userId` (memory
    /// only: the decision path asks it). A site key may not act for it as an `anonymousId`.
    pub fn is_user(&self, subject: &Pseudonym) -> bool {
        self.users.read().expect("book lock").contains(subject)
    }

    /// Registers a listener of the consent records added from now on.
    pub fn listen(&self, listener: ConsentListener) {
        self.listeners.0.write().expect("listeners lock").push(listener);
    }

    /// A copy of the subject's history.
    pub fn history(&self, subject: &Pseudonym) -> ConsentHistory {
        self.consents.read().expect("book lock").get(subject).cloned().unwrap_or_default()
    }

    /// Runs `f` over the subject's history in place (no copy); `None` when the book has none.
    pub fn with_history<T>(&self, subject: &Pseudonym, f: impl FnOnce(Option<&ConsentHistory>) -> T) -> T {
        f(self.consents.read().expect("book lock").get(subject))
    }

    /// The verdict for a purpose, read in place (no copy of the history).
    pub fn verdict(
        &self,
        subject: &Pseudonym,
        purpose: &Purpose,
        requires_consent: bool,
        sale_share: &Purpose,
    ) -> Verdict {
        match self.consents.read().expect("book lock").get(subject) {
            Some(h) => h.verdict(purpose, requires_consent, sale_share),
            None => ConsentHistory::default().verdict(purpose, requires_consent, sale_share),
        }
    }

    /// Claims a message id before its append: false when it was stored (or is being stored) already.
    pub fn claim_message(&self, subject: &Pseudonym, message_id: &str) -> bool {
        self.messages.write().expect("book lock").entry(*subject).or_default().insert(message_key(subject, message_id))
    }

    /// Gives a claim back after a failed append.
    pub fn release_message(&self, subject: &Pseudonym, message_id: &str) {
        if let Some(ids) = self.messages.write().expect("book lock").get_mut(subject) {
            ids.remove(&message_key(subject, message_id));
        }
    }

    /// Forgets a subject (after an erasure): its consent history, its stored message ids and that
    /// it was an account. Returns whether the book held anything of it.
    pub fn forget(&self, subject: &Pseudonym) -> bool {
        let consents = self.consents.write().expect("book lock").remove(subject).is_some();
        let messages = self.messages.write().expect("book lock").remove(subject).is_some();
        let user = self.users.write().expect("book lock").remove(subject);
        consents || messages || user
    }

    /// Whether the book holds anything of the subject (R-ERASE-3 checks this after an erasure).
    pub fn holds(&self, subject: &Pseudonym) -> bool {
        self.consents.read().expect("book lock").contains_key(subject)
            || self.messages.read().expect("book lock").contains_key(subject)
            || self.is_user(subject)
    }

    /// How many subjects the book holds anything of.
    pub fn subjects(&self) -> usize {
        let consents = self.consents.read().expect("book lock");
        let messages = self.messages.read().expect("book lock");
        let users = self.users.read().expect("book lock");
        consents.len()
            + messages.keys().filter(|s| !consents.contains_key(*s)).count()
            + users.iter().filter(|s| !consents.contains_key(*s) && !messages.contains_key(*s)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::grant;

    /// R-DSR-4: a consent record for a `userId`, or a stored user-keyed event, makes the pseudonym
    /// an account's for good (a later anonymous record does not undo it); an erasure forgets it.
    #[test]
    fn r_dsr_4_the_book_keeps_which_pseudonyms_are_accounts() {
        let book = ConsentBook::default();
        let (anna, visitor, bob) =
            (Pseudonym::from_bytes([1; 32]), Pseudonym::from_bytes([2; 32]), Pseudonym::from_bytes([3; 32]));
        book.add_consent(anna, grant(&[], true));
        book.add_consent(anna, grant(&[], false));
        book.add_consent(visitor, grant(&[], false));
        book.mark_user(bob);
        assert!(book.is_user(&anna) && book.is_user(&bob));
        assert!(!book.is_user(&visitor));
        assert!(book.holds(&bob), "an account with nothing else is still held");
        assert_eq!(book.subjects(), 3);
        assert!(book.forget(&bob));
        assert!(!book.is_user(&bob) && !book.holds(&bob));
        assert!(book.forget(&anna));
        assert!(!book.is_user(&anna));
        assert_eq!(book.subjects(), 1);
    }
}
