//! The lifecycle: allowed and refused transitions, version numbers, one live and one canary per
//! name, and promotion retiring the previous live version in the same write.

use lethe_registry::{ModelId, RetireReason, Status, StatusKind};

use crate::helpers::{kek, name, name_key, subjects, t, Env};

#[derive(Debug, Clone, Copy)]
enum From {
    Candidate,
    Canary,
    Live,
    Retired,
}

/// A fresh model of its own name, brought to `from`.
fn model_in(env: &Env, model: &str, from: From) -> ModelId {
    let id = env.register(model, &subjects(0..3), b"bytes", &kek(1)).id;
    match from {
        From::Candidate => {}
        From::Canary => {
            env.reg.set_status(id, Status::Canary { share_permille: 50 }, t(2)).unwrap();
        }
        From::Live => {
            env.reg.set_status(id, Status::Live, t(2)).unwrap();
        }
        From::Retired => {
            env.reg.retire(id, RetireReason::Manual, t(2)).unwrap();
        }
    }
    id
}

#[test]
fn the_transition_table() {
    let env = Env::new();
    let canary = Status::Canary { share_permille: 200 };
    let retired = Status::Retired { at: t(0), reason: RetireReason::Manual };
    let ok = |k: StatusKind| Ok::<StatusKind, &str>(k);
    let table = [
        (From::Candidate, Status::Candidate, Err("invalid_transition")),
        (From::Candidate, canary, ok(StatusKind::Canary)),
        (From::Candidate, Status::Live, ok(StatusKind::Live)),
        (From::Candidate, retired, ok(StatusKind::Retired)),
        (From::Canary, Status::Candidate, ok(StatusKind::Candidate)),
        (From::Canary, canary, ok(StatusKind::Canary)),
        (From::Canary, Status::Live, ok(StatusKind::Live)),
        (From::Canary, retired, ok(StatusKind::Retired)),
        (From::Live, Status::Candidate, Err("invalid_transition")),
        (From::Live, canary, Err("invalid_transition")),
        (From::Live, Status::Live, Err("invalid_transition")),
        (From::Live, retired, ok(StatusKind::Retired)),
        (From::Retired, Status::Candidate, Err("model_retired")),
        (From::Retired, canary, Err("model_retired")),
        (From::Retired, Status::Live, Err("model_retired")),
        (From::Retired, retired, Err("model_retired")),
    ];
    for (i, (from, to, expected)) in table.into_iter().enumerate() {
        let model = format!("m{i}");
        let id = model_in(&env, &model, from);
        let before = env.reg.get(id).unwrap().unwrap();
        let got = env.reg.set_status(id, to, t(10)).map(|m| m.status.kind()).map_err(|e| e.code());
        assert_eq!(got, expected, "{from:?} -> {to:?}");
        let after = env.reg.get(id).unwrap().unwrap();
        if expected.is_err() {
            assert_eq!(after, before, "a refused transition changes nothing: {from:?} -> {to:?}");
            continue;
        }
        assert_eq!(after.status.kind(), expected.unwrap());
        // The name's pointers follow the status.
        let n = name(&model);
        assert_eq!(env.reg.live(&n).unwrap().map(|m| m.id), (after.status == Status::Live).then_some(id));
        assert_eq!(
            env.reg.canary(&n).unwrap().map(|m| m.id),
            matches!(after.status, Status::Canary { .. }).then_some(id)
        );
        if let Status::Canary { share_permille } = after.status {
            assert_eq!(share_permille, 200);
        }
        if let Status::Retired { at, reason } = after.status {
            assert_eq!((at, reason), (t(10), RetireReason::Manual), "the time of a transition is `now`");
        }
    }
}

#[test]
fn versions_are_numbered_per_name() {
    let env = Env::new();
    let e: Vec<u32> = (0..3).map(|_| env.register("engagement", &subjects(0..2), b"e", &kek(1)).version).collect();
    let c: Vec<u32> = (0..2).map(|_| env.register("content", &subjects(0..2), b"c", &kek(1)).version).collect();
    assert_eq!((e, c), (vec![1, 2, 3], vec![1, 2]));
    let listed: Vec<u32> = env.reg.versions(&name("engagement")).unwrap().iter().map(|m| m.version).collect();
    assert_eq!(listed, [1, 2, 3]);
    assert!(env.reg.versions(&name("recs-als")).unwrap().is_empty());
    assert_eq!(env.reg.all().unwrap().len(), 5);
    // Numbers are never reused, even after retirement and reopening.
    let first = env.reg.versions(&name("content")).unwrap()[1].id;
    env.reg.retire(first, RetireReason::Manual, t(3)).unwrap();
    let env = env.reopen();
    assert_eq!(env.register("content", &subjects(0..2), b"c", &kek(1)).version, 3);
}

#[test]
fn one_canary_per_name() {
    let env = Env::new();
    let a = env.register("engagement", &subjects(0..2), b"a", &kek(1)).id;
    let b = env.register("engagement", &subjects(0..2), b"b", &kek(1)).id;
    let other = env.register("content", &subjects(0..2), b"c", &kek(1)).id;
    env.reg.set_status(a, Status::Canary { share_permille: 100 }, t(2)).unwrap();
    let err = env.reg.set_status(b, Status::Canary { share_permille: 100 }, t(2)).unwrap_err();
    assert_eq!(err.code(), "canary_taken");
    // Another name has its own canary.
    env.reg.set_status(other, Status::Canary { share_permille: 100 }, t(2)).unwrap();
    // After a rollback the slot is free.
    env.reg.set_status(a, Status::Candidate, t(3)).unwrap();
    assert!(env.reg.canary(&name("engagement")).unwrap().is_none());
    env.reg.set_status(b, Status::Canary { share_permille: 10 }, t(4)).unwrap();
    assert_eq!(env.reg.canary(&name("engagement")).unwrap().unwrap().id, b);
    // A canary going live leaves the slot.
    env.reg.set_status(b, Status::Live, t(5)).unwrap();
    assert!(env.reg.canary(&name("engagement")).unwrap().is_none());
    assert_eq!(env.reg.live(&name("engagement")).unwrap().unwrap().id, b);
}

#[test]
fn bad_requests_are_refused() {
    let env = Env::new();
    let a = env.register("engagement", &subjects(0..2), b"a", &kek(1)).id;
    for share in [0, 1001] {
        let err = env.reg.set_status(a, Status::Canary { share_permille: share }, t(2)).unwrap_err();
        assert_eq!(err.code(), "invalid_canary_share");
    }
    let unknown = ModelId::from_bytes([0xab; 16]);
    assert_eq!(env.reg.set_status(unknown, Status::Live, t(2)).unwrap_err().code(), "model_not_found");
    assert_eq!(env.reg.retire(unknown, RetireReason::Manual, t(2)).unwrap_err().code(), "model_not_found");
    assert_eq!(env.reg.load_blob(unknown, &kek(1)).unwrap_err().code(), "model_not_found");
    assert!(env.reg.get(unknown).unwrap().is_none());
    assert_eq!(env.reg.retire(a, RetireReason::Manual, t(3)).unwrap().status.kind(), StatusKind::Retired);
    assert_eq!(env.reg.retire(a, RetireReason::Manual, t(4)).unwrap_err().code(), "model_retired");
}

#[test]
fn promotion_retires_the_previous_live_version_in_the_same_write() {
    let env = Env::new();
    let v1 = env.register("recs-als", &subjects(0..5), b"v1 factors", &kek(1)).id;
    let v2 = env.register("recs-als", &subjects(0..6), b"v2 factors", &kek(1)).id;
    let v3 = env.register("recs-als", &subjects(0..7), b"v3 factors", &kek(1)).id;
    env.reg.set_status(v1, Status::Live, t(2)).unwrap();
    env.reg.set_status(v3, Status::Canary { share_permille: 50 }, t(2)).unwrap();
    // v2 goes live straight from candidate; v1 is superseded; the canary stays canary.
    env.reg.set_status(v2, Status::Live, t(3)).unwrap();

    let env = env.reopen();
    let by_id = |id| env.reg.get(id).unwrap().unwrap();
    assert_eq!(by_id(v1).status, Status::Retired { at: t(3), reason: RetireReason::Superseded });
    assert_eq!(by_id(v2).status, Status::Live);
    assert_eq!(by_id(v3).status, Status::Canary { share_permille: 50 });
    assert_eq!(env.reg.live(&name("recs-als")).unwrap().unwrap().id, v2);
    // The superseded version's bytes, key and tags are gone with it.
    assert_eq!(env.reg.load_blob(v1, &kek(1)).unwrap_err().code(), "model_retired");
    for prefix in [b"k/", b"b/", b"s/"] {
        assert!(env.raw(prefix, v1).is_none());
    }
    assert!(by_id(v1).manifest.membership.is_scrubbed());
    assert_eq!(by_id(v1).manifest.subjects, 5, "the counts stay as history");
    assert_eq!(env.reg.load_blob(v2, &kek(1)).unwrap(), b"v2 factors");
    let live: Vec<_> = env.reg.all().unwrap().into_iter().filter(|m| m.status == Status::Live).collect();
    assert_eq!(live.len(), 1);
}

#[test]
fn a_promotion_that_fails_changes_nothing() {
    let env = Env::new();
    let v1 = env.register("engagement", &subjects(0..3), b"v1", &kek(1)).id;
    let v2 = env.register("engagement", &subjects(0..3), b"v2", &kek(1)).id;
    env.reg.set_status(v1, Status::Live, t(2)).unwrap();
    // The live version's record is damaged: retiring it inside the promotion fails.
    let good = env.raw(b"r/", v1).unwrap();
    env.put(crate::helpers::id_key(b"r/", v1), b"\x01{not json");
    assert_eq!(env.reg.set_status(v2, Status::Live, t(3)).unwrap_err().code(), "registry_corrupt");

    env.put(crate::helpers::id_key(b"r/", v1), &good);
    let env = env.reopen();
    assert_eq!(env.reg.get(v2).unwrap().unwrap().status, Status::Candidate);
    assert_eq!(env.reg.get(v1).unwrap().unwrap().status, Status::Live);
    assert_eq!(env.tree.get(name_key(b"l/", "engagement")).unwrap().unwrap()[1..], v1.as_bytes()[..]);
    assert_eq!(env.reg.load_blob(v1, &kek(1)).unwrap(), b"v1");
}

#[test]
fn retiring_the_live_version_leaves_the_name_without_one() {
    let env = Env::new();
    let v1 = env.register("content", &subjects(0..3), b"v1", &kek(1)).id;
    env.reg.set_status(v1, Status::Live, t(2)).unwrap();
    let retired = env.reg.retire(v1, RetireReason::RolledBack, t(3)).unwrap();
    assert_eq!(retired.status, Status::Retired { at: t(3), reason: RetireReason::RolledBack });
    assert!(env.reg.live(&name("content")).unwrap().is_none());
    assert_eq!(env.reg.versions(&name("content")).unwrap().len(), 1, "retired versions stay listed");
}
