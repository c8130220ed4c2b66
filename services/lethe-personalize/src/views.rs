//! The live feature views of `lethe serve`: a [`Projector`] rebuilt from the log at start (views
//! are never written to disk in plaintext), kept current by [`Views::catch_up`], and an
//! [`ErasureHook`] so that an erasure removes the subject from every view at once and the access
//! export includes the subject's features.

use std::sync::RwLock;

use lethe_domain::{Pseudonym, Purpose};
use lethe_eventlog::EventStore;
use lethe_features::{Projector, ProjectorConfig};
use lethe_policy::Policies;
use lethe_privacy::ErasureHook;

/// The feature views, shared by the handlers and the background catch-up.
pub struct Views {
    projector: RwLock<Projector>,
    store: std::sync::Arc<dyn EventStore>,
}

impl std::fmt::Debug for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Views").finish_non_exhaustive()
    }
}

impl Views {
    /// Replays the whole log into fresh views.
    ///
    /// # Errors
    /// The policies lack the personalization purpose, or the log cannot be read.
    pub fn replay(
        store: std::sync::Arc<dyn EventStore>,
        policies: &Policies,
    ) -> Result<Self, lethe_features::FeatureError> {
        let projector = Projector::replay(store.as_ref(), ProjectorConfig::from_policies(policies)?)?;
        Ok(Self { projector: RwLock::new(projector), store })
    }

    /// Applies the events appended since the last call.
    ///
    /// # Errors
    /// The log cannot be read.
    pub fn catch_up(&self) -> Result<(), lethe_features::FeatureError> {
        self.projector.write().expect("views lock").catch_up(self.store.as_ref()).map(|_| ())
    }

    /// Whether the views hold anything of the subject.
    pub fn holds(&self, subject: &Pseudonym) -> bool {
        self.projector.read().expect("views lock").holds(subject)
    }

    /// How many subjects have views.
    pub fn subjects(&self) -> usize {
        self.projector.read().expect("views lock").subjects()
    }

    /// Runs `f` over the projector.
    pub fn with<T>(&self, f: impl FnOnce(&Projector) -> T) -> T {
        f(&self.projector.read().expect("views lock"))
    }
}

impl ErasureHook for Views {
    fn name(&self) -> &str {
        "feature_views"
    }

    fn forget(&self, subject: &Pseudonym) -> Result<bool, String> {
        // Events up to the fence are applied first, so that nothing of the subject arrives after.
        let mut p = self.projector.write().expect("views lock");
        p.catch_up(self.store.as_ref()).map_err(|e| e.to_string())?;
        Ok(p.forget(subject))
    }

    fn withdrawn(&self, _subject: &Pseudonym, _purposes: &[Purpose]) -> Result<(), String> {
        // The withdrawal's consent record is in the log already: applying it clears the features.
        self.catch_up().map_err(|e| e.to_string())
    }

    fn export(&self, subject: &Pseudonym) -> Option<serde_json::Value> {
        let _ = self.catch_up();
        self.projector.read().expect("views lock").export(subject)
    }
}
