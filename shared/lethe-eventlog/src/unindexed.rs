//! Runs of deferred appends that have no stream index entry yet (layout 6).
//!
//! A deferred append (a decision or outcome receipt) is one event of a subject met at random: its
//! own `s/` entry would cost a random B-tree insert, and often a leaf split, for every receipt. So
//! the writer leaves those runs out of the index: the group's batch marks each chunk holding one
//! with `u/<chunk pos>`, and the runs are kept here, in memory. Readers merge them with the index.
//! When more than [`crate::LogConfig::max_unindexed_runs`] are waiting, the writer indexes the
//! subjects of the oldest marked chunks, all of each subject's waiting runs in multi-run entries of
//! at most [`MAX_RUNS_PER_ENTRY`] runs ([`crate::layout::multi_stream_value`]), and removes the marks of the chunks
//! left with none, in the batch of its next group. At open the runs of the marked chunks that no
//! entry covers are read back from the chunks themselves, so a crash loses nothing that was durable.

use std::collections::{BTreeMap, HashMap};

use lethe_domain::{Pseudonym, PseudonymMap, PseudonymSet};

/// One run of a subject's consecutive events inside a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunRef {
    pub first_seq: u64,
    pub pos: u64,
    pub count: u32,
}

impl RunRef {
    /// The last sequence the run holds (runs hold at least one event: checked where they are read).
    pub fn last_seq(&self) -> u64 {
        self.first_seq.saturating_add(u64::from(self.count.max(1)) - 1)
    }
}

/// Most runs one multi-run entry holds (20 bytes each): a subject with more waiting gets several.
pub(crate) const MAX_RUNS_PER_ENTRY: usize = 1024;

/// The waiting runs, by subject and by chunk.
#[derive(Debug, Default)]
pub(crate) struct Unindexed {
    by_subject: PseudonymMap<Vec<RunRef>>,
    /// Marked chunk → (runs still waiting in it, subjects that had one: some may be indexed since).
    chunks: BTreeMap<u64, (u32, Vec<Pseudonym>)>,
    runs: usize,
}

/// What the writer indexes with its next group: all the waiting runs of each subject taken, and the
/// marks to remove.
#[derive(Debug, Default)]
pub(crate) struct IndexPlan {
    pub entries: Vec<(Pseudonym, Vec<RunRef>)>,
    pub cleared: Vec<u64>,
}

impl Unindexed {
    /// Runs waiting.
    pub fn len(&self) -> usize {
        self.runs
    }

    /// Adds a run not added before.
    pub fn add(&mut self, subject: Pseudonym, run: RunRef) {
        let runs = self.by_subject.entry(subject).or_default();
        // The writer hands out a subject's sequences in order; an open reads chunks in order.
        let in_order = runs.last().is_none_or(|last| last.first_seq < run.first_seq);
        runs.push(run);
        if !in_order {
            runs.sort_unstable_by_key(|r| r.first_seq);
        }
        let chunk = self.chunks.entry(run.pos).or_default();
        chunk.0 += 1;
        chunk.1.push(subject);
        self.runs += 1;
    }

    /// The waiting runs of `subject`, in sequence order.
    pub fn runs_of(&self, subject: &Pseudonym) -> Vec<RunRef> {
        self.by_subject.get(subject).cloned().unwrap_or_default()
    }

    /// The last sequence among `subject`'s waiting runs.
    pub fn last_seq(&self, subject: &Pseudonym) -> Option<u64> {
        self.by_subject.get(subject).and_then(|r| r.last()).map(RunRef::last_seq)
    }

    /// Every subject with waiting runs, and those runs.
    pub fn all(&self) -> impl Iterator<Item = (&Pseudonym, &Vec<RunRef>)> {
        self.by_subject.iter()
    }

    /// The marked chunks that still hold a waiting run.
    pub fn chunks(&self) -> impl Iterator<Item = u64> + '_ {
        self.chunks.keys().copied()
    }

    /// The subjects of the oldest marked chunks, each with all its waiting runs, until at most
    /// `keep` runs would be left waiting (and at most `max_entries` entries). Changes nothing: the
    /// writer applies the plan, then [`Unindexed::indexed`] drops what it indexed.
    pub fn plan(&self, keep: usize, max_entries: usize) -> IndexPlan {
        let mut plan = IndexPlan::default();
        if self.runs <= keep {
            return plan;
        }
        // Room for every entry it may take at once (each subject taken takes at least one of the runs
        // past `keep`): a list of thousands regrown step by step takes fresh memory at each step.
        plan.entries.reserve(max_entries.min(self.by_subject.len()).min(self.runs - keep));
        let mut taken = PseudonymSet::default();
        let mut left: HashMap<u64, u32> = HashMap::new();
        let mut runs = self.runs;
        for (_, subjects) in self.chunks.values() {
            if runs <= keep || plan.entries.len() >= max_entries {
                break;
            }
            for s in subjects {
                let Some(waiting) = self.by_subject.get(s) else { continue };
                if !taken.insert(*s) {
                    continue;
                }
                runs -= waiting.len();
                for r in waiting {
                    *left.entry(r.pos).or_insert_with(|| self.chunks.get(&r.pos).map_or(0, |c| c.0)) -= 1;
                }
                plan.entries.push((*s, waiting.clone()));
            }
        }
        plan.cleared = left.into_iter().filter(|&(_, n)| n == 0).map(|(pos, _)| pos).collect();
        plan.cleared.sort_unstable();
        plan
    }

    /// Drops the runs a plan indexed (applied to the log). A plan takes all of a subject's waiting
    /// runs, and only the writer adds runs, after this: so each planned subject goes whole.
    pub fn indexed(&mut self, plan: &IndexPlan) {
        for (s, runs) in &plan.entries {
            let Some(waiting) = self.by_subject.remove(s) else { continue };
            debug_assert_eq!(&waiting, runs, "a plan takes all of a subject's waiting runs");
            for r in &waiting {
                if let Some(c) = self.chunks.get_mut(&r.pos) {
                    c.0 = c.0.saturating_sub(1);
                    if c.0 == 0 {
                        self.chunks.remove(&r.pos);
                    }
                }
                self.runs -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: u8) -> Pseudonym {
        Pseudonym::from_bytes([b; 32])
    }

    fn run(first_seq: u64, pos: u64) -> RunRef {
        RunRef { first_seq, pos, count: 1 }
    }

    #[test]
    fn a_plan_takes_whole_subjects_from_the_oldest_chunks_and_clears_emptied_chunks() {
        let mut u = Unindexed::default();
        // chunk 10: a, b; chunk 20: a, c; chunk 30: c
        u.add(s(1), run(1, 10));
        u.add(s(2), run(1, 10));
        u.add(s(1), run(2, 20));
        u.add(s(3), run(1, 20));
        u.add(s(3), run(2, 30));
        assert_eq!(u.len(), 5);
        assert_eq!(u.last_seq(&s(1)), Some(2));

        // Keep at most 3: the oldest chunk's subjects, a and b, go with all their runs (3).
        let plan = u.plan(3, 100);
        let mut subjects: Vec<_> = plan.entries.iter().map(|(p, r)| (*p, r.len())).collect();
        subjects.sort_unstable_by_key(|(p, _)| *p);
        assert_eq!(subjects, vec![(s(1), 2), (s(2), 1)]);
        assert_eq!(plan.cleared, vec![10], "chunk 20 still holds c's run");
        // Planning changes nothing.
        assert_eq!(u.len(), 5);
        u.indexed(&plan);
        assert_eq!(u.len(), 2);
        assert!(u.runs_of(&s(1)).is_empty());
        assert_eq!(u.runs_of(&s(3)), vec![run(1, 20), run(2, 30)]);

        // Nothing to do under the limit.
        assert!(u.plan(2, 100).entries.is_empty());
        let plan = u.plan(0, 100);
        assert_eq!(plan.entries.len(), 1);
        assert_eq!(plan.cleared, vec![20, 30]);
        u.indexed(&plan);
        assert_eq!(u.len(), 0);
        assert!(u.chunks.is_empty());
    }

    #[test]
    fn runs_added_out_of_order_read_in_order() {
        let mut u = Unindexed::default();
        u.add(s(1), run(5, 20));
        u.add(s(1), run(2, 10));
        assert_eq!(u.runs_of(&s(1)), vec![run(2, 10), run(5, 20)]);
        assert_eq!(u.last_seq(&s(1)), Some(5));
    }

    #[test]
    fn a_plan_stops_at_its_entry_budget() {
        let mut u = Unindexed::default();
        for i in 0..10 {
            u.add(s(i), run(1, 10));
        }
        let plan = u.plan(0, 4);
        assert_eq!(plan.entries.len(), 10, "a chunk's subjects are taken together");
        for i in 0..10 {
            u.add(s(100 + i), run(1, 20 + u64::from(i)));
        }
        let plan = u.plan(0, 4);
        assert!(plan.entries.len() >= 4);
        assert!(plan.entries.len() < 20);
    }
}
