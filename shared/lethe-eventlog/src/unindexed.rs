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

use crate::store::IndexedRuns;

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
    /// Runs indexed since the log opened, and the entries written for them.
    indexed: IndexedRuns,
}

/// What the writer indexes with its next group: the subjects taken, each with the number of its
/// waiting runs (all of them), and the marks to remove.
#[derive(Debug, Default)]
pub(crate) struct IndexPlan {
    pub subjects: Vec<(Pseudonym, usize)>,
    pub cleared: Vec<u64>,
}

impl Unindexed {
    /// Runs waiting.
    pub fn len(&self) -> usize {
        self.runs
    }

    /// Runs indexed since the log opened, and the entries written for them.
    pub fn indexed_so_far(&self) -> IndexedRuns {
        self.indexed
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

    /// Takes the subjects with a run waiting in the oldest marked chunks, each with all its waiting
    /// runs, until at most `keep` runs would be left waiting (and at most `max_entries` subjects):
    /// `index` is given each subject taken and its runs, to write their entries. Changes nothing:
    /// the writer applies what `index` wrote, then [`Unindexed::indexed`] drops what the plan took.
    ///
    /// A chunk lists every subject that had a run in it; one whose runs were indexed since (with an
    /// older chunk's) is passed over. Its runs there are gone, and the runs it has now are younger:
    /// they wait for a chunk of their own to be the oldest, so that it is indexed with as many runs
    /// as it gathers in that time, not with the few it gathered since its last entry.
    pub fn plan(&self, keep: usize, max_entries: usize, mut index: impl FnMut(&Pseudonym, &[RunRef])) -> IndexPlan {
        let mut plan = IndexPlan::default();
        if self.runs <= keep {
            return plan;
        }
        // Room for every subject it may take at once (each takes at least one of the runs past
        // `keep`): a list of thousands regrown step by step takes fresh memory at each step.
        plan.subjects.reserve(max_entries.min(self.by_subject.len()).min(self.runs - keep));
        let mut taken = PseudonymSet::default();
        let mut left: HashMap<u64, u32> = HashMap::new();
        let mut runs = self.runs;
        for (&pos, (_, subjects)) in &self.chunks {
            if runs <= keep || plan.subjects.len() >= max_entries {
                break;
            }
            for s in subjects {
                let Some(waiting) = self.by_subject.get(s) else { continue };
                if !waiting.iter().any(|r| r.pos == pos) || !taken.insert(*s) {
                    continue;
                }
                runs -= waiting.len();
                for r in waiting {
                    *left.entry(r.pos).or_insert_with(|| self.chunks.get(&r.pos).map_or(0, |c| c.0)) -= 1;
                }
                index(s, waiting);
                plan.subjects.push((*s, waiting.len()));
            }
        }
        plan.cleared = left.into_iter().filter(|&(_, n)| n == 0).map(|(pos, _)| pos).collect();
        plan.cleared.sort_unstable();
        plan
    }

    /// Drops the runs a plan indexed (applied to the log). A plan takes all of a subject's waiting
    /// runs, and only the writer adds runs, after this: so each planned subject goes whole.
    pub fn indexed(&mut self, plan: &IndexPlan) {
        for &(s, taken) in &plan.subjects {
            let Some(waiting) = self.by_subject.remove(&s) else { continue };
            debug_assert_eq!(waiting.len(), taken, "a plan takes all of a subject's waiting runs");
            self.indexed.runs += waiting.len() as u64;
            self.indexed.entries += waiting.len().div_ceil(MAX_RUNS_PER_ENTRY) as u64;
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

    /// A plan, and the runs it gave to be indexed, by subject.
    fn planned(u: &Unindexed, keep: usize, max_entries: usize) -> (IndexPlan, Vec<(Pseudonym, Vec<RunRef>)>) {
        let mut given = Vec::new();
        let plan = u.plan(keep, max_entries, |s, runs| given.push((*s, runs.to_vec())));
        assert_eq!(
            plan.subjects,
            given.iter().map(|(s, r)| (*s, r.len())).collect::<Vec<_>>(),
            "the plan lists what it gave"
        );
        (plan, given)
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
        let (plan, mut given) = planned(&u, 3, 100);
        given.sort_unstable_by_key(|(p, _)| *p);
        assert_eq!(given, vec![(s(1), vec![run(1, 10), run(2, 20)]), (s(2), vec![run(1, 10)])]);
        assert_eq!(plan.cleared, vec![10], "chunk 20 still holds c's run");
        // Planning changes nothing.
        assert_eq!(u.len(), 5);
        u.indexed(&plan);
        assert_eq!(u.len(), 2);
        assert!(u.runs_of(&s(1)).is_empty());
        assert_eq!(u.runs_of(&s(3)), vec![run(1, 20), run(2, 30)]);

        // Nothing to do under the limit.
        assert!(planned(&u, 2, 100).1.is_empty());
        let (plan, given) = planned(&u, 0, 100);
        assert_eq!(given.len(), 1);
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
        assert_eq!(planned(&u, 0, 4).1.len(), 10, "a chunk's subjects are taken together");
        for i in 0..10 {
            u.add(s(100 + i), run(1, 20 + u64::from(i)));
        }
        let taken = planned(&u, 0, 4).1.len();
        assert!(taken >= 4);
        assert!(taken < 20);
    }

    #[test]
    fn a_subject_indexed_since_its_run_in_a_chunk_waits_for_its_own_oldest_chunk() {
        let mut u = Unindexed::default();
        // chunk 10: a; chunk 20: a, b; a goes with chunk 10, its run in 20 with it.
        u.add(s(1), run(1, 10));
        u.add(s(1), run(2, 20));
        u.add(s(2), run(1, 20));
        let (first, given) = planned(&u, 1, 100);
        assert_eq!(given, vec![(s(1), vec![run(1, 10), run(2, 20)])]);
        assert_eq!(first.cleared, vec![10], "chunk 20 still holds b's run");
        u.indexed(&first);
        // a's next run lands in chunk 30; chunk 20 still lists a.
        u.add(s(1), run(3, 30));
        u.add(s(3), run(1, 30));
        assert_eq!(u.len(), 3);
        // Chunk 20 is now the oldest: only b waits there, and a's young run stays.
        let (second, given) = planned(&u, 2, 100);
        assert_eq!(given, vec![(s(2), vec![run(1, 20)])]);
        assert_eq!(second.cleared, vec![20]);
        u.indexed(&second);
        assert_eq!(u.runs_of(&s(1)), vec![run(3, 30)]);
        assert_eq!(u.chunks().collect::<Vec<_>>(), vec![30]);
    }
}
