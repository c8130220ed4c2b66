//! Membership: exactly the training subjects, no pseudonym stored, stable and even shards.

use std::collections::HashSet;

use lethe_domain::Pseudonym;
use lethe_registry::{Membership, RetireReason};
use proptest::prelude::*;

use crate::helpers::{find_any, kek, new_model, pseudonym, subjects, t, tree_bytes, with_hex, Env};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// No false negatives; a false positive needs a 128-bit tag collision (about n·2^-128), so none
    /// shows up here.
    #[test]
    fn membership_holds_exactly_the_training_subjects(
        members in prop::collection::vec(any::<[u8; 32]>(), 0..300),
        others in prop::collection::vec(any::<[u8; 32]>(), 0..300),
    ) {
        let members: Vec<Pseudonym> = members.into_iter().map(Pseudonym::from_bytes).collect();
        let m = Membership::new(&members);
        let distinct: HashSet<Pseudonym> = members.iter().copied().collect();
        prop_assert_eq!(m.len(), distinct.len() as u64);
        for p in &members {
            prop_assert!(m.contains(p));
        }
        for p in others.into_iter().map(Pseudonym::from_bytes) {
            prop_assert_eq!(m.contains(&p), distinct.contains(&p));
        }
    }
}

#[test]
fn containing_finds_exactly_the_models_a_subject_trained() {
    let env = Env::new();
    let a = env.register("recs-als", &subjects(0..1_500), b"a", &kek(1)).id;
    let b = env.register("engagement", &subjects(1_000..2_000), b"b", &kek(1)).id;
    let env = env.reopen();
    for i in (0..3_000).step_by(7).chain([0, 999, 1_000, 1_499, 1_500, 1_999, 2_000]) {
        let mut expected = Vec::new();
        if i < 1_500 {
            expected.push(a);
        }
        if (1_000..2_000).contains(&i) {
            expected.push(b);
        }
        assert_eq!(env.reg.containing(&pseudonym(i)).unwrap(), expected, "subject {i}");
    }
    // A retired model answers for nobody.
    env.reg.retire(a, RetireReason::Unlearning, t(5)).unwrap();
    assert_eq!(env.reg.containing(&pseudonym(1_200)).unwrap(), vec![b]);
    assert!(env.reg.containing(&pseudonym(10)).unwrap().is_empty());
    assert!(!env.reg.get(a).unwrap().unwrap().manifest.membership.contains(&pseudonym(10)));
    let kept = env.reg.get(b).unwrap().unwrap();
    assert!(kept.manifest.membership.contains(&pseudonym(1_999)));
    assert!(!kept.manifest.membership.contains(&pseudonym(2_000)));
}

#[test]
fn the_store_holds_no_pseudonym_in_any_form() {
    let env = Env::new();
    let trained = subjects(0..2_000);
    env.register("recs-als", &trained, b"a", &kek(1));
    env.reg.register(new_model("engagement", &trained[..500], 4), b"b", &kek(1), t(1)).unwrap();
    // Positive control: the scan finds a pseudonym that is stored.
    let planted = pseudonym(7);
    env.put(b"zz/control", planted.to_hex().as_bytes());
    let raw: Vec<&[u8]> = trained.iter().map(|p| &p.as_bytes()[..]).collect();
    let needles = with_hex(&raw);
    assert_eq!(find_any(&tree_bytes(&env.tree), &needles), vec![7 * 3 + 1]);
    env.tree.remove(b"zz/control").unwrap();
    assert!(find_any(&tree_bytes(&env.tree), &needles).is_empty());
}

#[test]
fn shards_are_stable_and_even() {
    const SHARDS: u32 = 8;
    const N: u64 = 8_000;
    let env = Env::new();
    let trained = subjects(0..N);
    let m = env.reg.register(new_model("recs-als", &trained, SHARDS), b"x", &kek(1), t(1)).unwrap();
    let shards = &m.manifest.shards;
    assert_eq!(shards.len(), SHARDS as usize);
    assert_eq!(shards.iter().map(|s| s.subjects).sum::<u64>(), N);
    let fair = N / u64::from(SHARDS);
    for s in shards {
        // 1,000 expected per shard, standard deviation about 30.
        assert!(s.subjects.abs_diff(fair) < fair / 5, "shard {} holds {}", s.index, s.subjects);
    }
    // The manifest's counts are the shards of its members.
    let mut counted = vec![0u64; SHARDS as usize];
    for p in &trained {
        counted[m.manifest.shard_of(p).unwrap() as usize] += 1;
    }
    assert_eq!(counted, shards.iter().map(|s| s.subjects).collect::<Vec<_>>());

    // Stable across reopening, and for a retrain that keeps the salt, non-members included.
    let env = env.reopen();
    let stored = env.reg.get(m.id).unwrap().unwrap();
    let salt = *stored.manifest.membership.salt().unwrap();
    let retrain = Membership::build(salt, &trained[1..]);
    for i in (0..N + 500).step_by(3) {
        let p = pseudonym(i);
        let shard = m.manifest.shard_of(&p).unwrap();
        assert!(shard < SHARDS);
        assert_eq!(stored.manifest.shard_of(&p), Some(shard));
        assert_eq!(retrain.shard_of(&p, SHARDS), Some(shard));
    }
    // An unsharded model has no shards.
    let plain = env.register("content", &trained[..10], b"y", &kek(1));
    assert_eq!(plain.manifest.shard_of(&trained[0]), None);
}

#[test]
fn manifests_that_lie_are_refused() {
    let env = Env::new();
    let trained = subjects(0..50);
    let refuse = |edit: &dyn Fn(&mut lethe_registry::NewModel), code: &str| {
        let mut new = new_model("recs-als", &trained, 4);
        edit(&mut new);
        let err = env.reg.register(new, b"x", &kek(1), t(1)).unwrap_err();
        assert_eq!(err.code(), code);
    };
    refuse(&|n| n.manifest.subjects += 1, "invalid_manifest");
    refuse(&|n| n.manifest.shards[0].subjects += 1, "invalid_manifest");
    refuse(&|n| n.manifest.shards.truncate(3), "invalid_manifest");
    refuse(&|n| n.manifest.data_window = (t(5), t(4)), "invalid_manifest");
    refuse(&|n| n.manifest.features.push(String::new()), "invalid_manifest");
    refuse(&|n| n.manifest.code_version = "a\nb".into(), "invalid_manifest");
    refuse(&|n| n.manifest.hyperparameters = serde_json::json!("x".repeat(70_000)), "invalid_manifest");
    refuse(
        &|n| {
            n.metrics.insert("auc".into(), f64::NAN);
        },
        "invalid_metric",
    );
    refuse(
        &|n| {
            n.manifest.metrics.insert(String::new(), 1.0);
        },
        "invalid_metric",
    );
    refuse(&|n| n.algorithm = String::new(), "invalid_algorithm");
    assert!(env.reg.all().unwrap().is_empty(), "nothing was stored");
}
