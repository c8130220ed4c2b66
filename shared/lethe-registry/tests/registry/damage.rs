//! Damaged stored values give typed errors, never a panic, and a failed write changes nothing.

use lethe_registry::{ModelId, Registry, RetireReason, Status};
use proptest::prelude::*;

use crate::helpers::{id_key, kek, name, name_key, pseudonym, subjects, t, Env};

fn corrupt_or_version(code: &str) -> bool {
    code == "registry_corrupt" || code == "registry_unsupported_version"
}

#[test]
fn damaged_model_records() {
    let env = Env::new();
    let a = env.register("recs-als", &subjects(0..3), b"a", &kek(1)).id;
    env.reg.set_status(a, Status::Live, t(2)).unwrap();
    let good = env.raw(b"r/", a).unwrap();
    let other = env.register("content", &subjects(0..3), b"c", &kek(1)).id;
    let other_record = env.raw(b"r/", other).unwrap().to_vec();
    for (bad, code) in [
        (vec![], "registry_corrupt"),
        (vec![9, b'{', b'}'], "registry_unsupported_version"),
        (b"\x01{\"id\":".to_vec(), "registry_corrupt"),
        (good[..good.len() - 1].to_vec(), "registry_corrupt"),
        (other_record.clone(), "registry_corrupt"), // a record filed under another id
    ] {
        env.put(id_key(b"r/", a), &bad);
        assert_eq!(env.reg.get(a).unwrap_err().code(), code);
        assert_eq!(env.reg.all().unwrap_err().code(), code);
        assert_eq!(env.reg.live(&name("recs-als")).unwrap_err().code(), code);
        assert_eq!(env.reg.versions(&name("recs-als")).unwrap_err().code(), code);
        assert_eq!(env.reg.set_status(a, Status::Candidate, t(3)).unwrap_err().code(), code);
        assert_eq!(env.reg.retire(a, RetireReason::Manual, t(3)).unwrap_err().code(), code);
        assert_eq!(env.reg.load_blob(a, &kek(1)).unwrap_err().code(), code);
    }
    env.put(id_key(b"r/", a), &good);
    assert_eq!(env.reg.load_blob(a, &kek(1)).unwrap(), b"a", "a failed retirement destroyed nothing");
}

#[test]
fn damaged_memberships_fail_the_queries_that_need_them() {
    let env = Env::new();
    let a = env.register("recs-als", &subjects(0..4), b"a", &kek(1)).id;
    let good = env.raw(b"s/", a).unwrap().to_vec();
    let mut unsorted = good.clone();
    let (x, y) = unsorted[33..].split_at_mut(16);
    x[..16].swap_with_slice(&mut y[..16]);
    for bad in [vec![], vec![2; 33], good[..good.len() - 3].to_vec(), good[..20].to_vec(), unsorted] {
        env.put(id_key(b"s/", a), &bad);
        assert!(corrupt_or_version(env.reg.get(a).unwrap_err().code()));
        // An unreadable membership could hide a subject from unlearning: the query fails.
        assert!(corrupt_or_version(env.reg.containing(&pseudonym(0)).unwrap_err().code()));
    }
    // Tags for fewer subjects than the record counts.
    env.put(id_key(b"s/", a), &good[..good.len() - 16]);
    assert_eq!(env.reg.get(a).unwrap_err().code(), "registry_corrupt");
    env.tree.remove(id_key(b"s/", a)).unwrap();
    assert_eq!(env.reg.get(a).unwrap_err().code(), "registry_corrupt");
    env.put(id_key(b"s/", a), &good);
    assert_eq!(env.reg.containing(&pseudonym(3)).unwrap(), vec![a]);
}

#[test]
fn damaged_keys_and_blobs() {
    let env = Env::new();
    let a = env.register("recs-als", &subjects(0..3), b"model a", &kek(1)).id;
    let b = env.register("content", &subjects(0..3), b"model b", &kek(1)).id;
    let key = env.raw(b"k/", a).unwrap().to_vec();
    let mut flipped = key.clone();
    flipped[40] ^= 1;
    let mut v2 = key.clone();
    v2[0] = 2;
    for (bad, code) in [
        (flipped, "registry_corrupt"),
        (key[..50].to_vec(), "registry_corrupt"),
        (vec![], "registry_corrupt"),
        (v2, "registry_unsupported_version"),
    ] {
        env.put(id_key(b"k/", a), &bad);
        assert_eq!(env.reg.load_blob(a, &kek(1)).unwrap_err().code(), code);
        // A rotation that meets a damaged key changes nothing.
        assert_eq!(env.reg.rotate_kek(&kek(1), &kek(2)).unwrap_err().code(), code);
        assert_eq!(env.reg.load_blob(b, &kek(1)).unwrap(), b"model b");
    }
    // A key moved to another model does not open there.
    env.put(id_key(b"k/", a), &env.raw(b"k/", b).unwrap());
    assert_eq!(env.reg.load_blob(a, &kek(1)).unwrap_err().code(), "registry_corrupt");
    env.put(id_key(b"k/", a), &key);

    let blob = env.raw(b"b/", a).unwrap().to_vec();
    let mut flipped = blob.clone();
    flipped[20] ^= 1;
    for bad in [flipped, blob[..5].to_vec(), vec![], env.raw(b"b/", b).unwrap().to_vec()] {
        env.put(id_key(b"b/", a), &bad);
        assert_eq!(env.reg.load_blob(a, &kek(1)).unwrap_err().code(), "registry_corrupt");
    }
    env.tree.remove(id_key(b"b/", a)).unwrap();
    assert_eq!(env.reg.load_blob(a, &kek(1)).unwrap_err().code(), "registry_corrupt");
    env.put(id_key(b"b/", a), &blob);
    assert_eq!(env.reg.load_blob(a, &kek(1)).unwrap(), b"model a");
}

#[test]
fn damaged_pointers_counters_and_markers() {
    let env = Env::new();
    let a = env.register("recs-als", &subjects(0..3), b"a", &kek(1)).id;
    let b = env.register("recs-als", &subjects(0..3), b"b", &kek(1)).id;
    // A live pointer that is garbage, or names a model that is not live.
    env.put(name_key(b"l/", "recs-als"), &[1, 2, 3]);
    assert_eq!(env.reg.live(&name("recs-als")).unwrap_err().code(), "registry_corrupt");
    assert_eq!(env.reg.set_status(b, Status::Live, t(2)).unwrap_err().code(), "registry_corrupt");
    let mut to_a = vec![1u8];
    to_a.extend_from_slice(a.as_bytes());
    env.put(name_key(b"l/", "recs-als"), &to_a);
    assert_eq!(env.reg.live(&name("recs-als")).unwrap_err().code(), "registry_corrupt");
    assert_eq!(env.reg.set_status(b, Status::Live, t(2)).unwrap_err().code(), "registry_corrupt");
    assert_eq!(env.reg.get(b).unwrap().unwrap().status, Status::Candidate);
    env.tree.remove(name_key(b"l/", "recs-als")).unwrap();
    env.put(name_key(b"c/", "recs-als"), &[7; 17]);
    assert_eq!(env.reg.canary(&name("recs-als")).unwrap_err().code(), "registry_unsupported_version");
    env.tree.remove(name_key(b"c/", "recs-als")).unwrap();

    // A damaged version counter or KEK record refuses registration and stores nothing.
    let count = env.reg.all().unwrap().len();
    env.put(name_key(b"x/", "recs-als"), &[1, 0]);
    let new = || crate::helpers::new_model("recs-als", &subjects(0..2), 0);
    assert_eq!(env.reg.register(new(), b"c", &kek(1), t(3)).unwrap_err().code(), "registry_corrupt");
    env.put(b"m/kek", &[5; 17]);
    env.put(name_key(b"x/", "recs-als"), &[1, 0, 0, 0, 2]);
    assert_eq!(env.reg.register(new(), b"c", &kek(1), t(3)).unwrap_err().code(), "registry_unsupported_version");
    assert_eq!(env.reg.all().unwrap().len(), count);

    // The layout marker.
    env.put(b"v/layout", &[2]);
    assert_eq!(Registry::open(env.tree.clone()).unwrap_err().code(), "registry_unsupported_version");
    let other = env.db.open_tree("not-a-registry").unwrap();
    other.insert(b"k", b"v").unwrap();
    assert_eq!(Registry::open(other).unwrap_err().code(), "registry_corrupt");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever bytes replace a stored value, every query answers with a value or an error.
    #[test]
    fn garbage_never_panics(which in 0usize..6, bytes in prop::collection::vec(any::<u8>(), 0..120), keep_format in any::<bool>()) {
        thread_local! {
            static ENV: (Env, ModelId) = {
                let env = Env::new();
                let id = env.register("recs-als", &subjects(0..5), b"model", &kek(1)).id;
                env.reg.set_status(id, Status::Live, t(2)).unwrap();
                (env, id)
            };
        }
        ENV.with(|(env, id)| {
            let key = match which {
                0 => id_key(b"r/", *id),
                1 => id_key(b"s/", *id),
                2 => id_key(b"k/", *id),
                3 => id_key(b"b/", *id),
                4 => name_key(b"l/", "recs-als"),
                _ => name_key(b"n/", "recs-als\0\0\0\0\x01"),
            };
            let saved = env.tree.get(&key).unwrap();
            let mut bad = bytes.clone();
            if keep_format && !bad.is_empty() {
                bad[0] = 1;
            }
            env.put(&key, &bad);
            let _ = env.reg.get(*id);
            let _ = env.reg.all();
            let _ = env.reg.live(&name("recs-als"));
            let _ = env.reg.versions(&name("recs-als"));
            let _ = env.reg.containing(&pseudonym(1));
            let _ = env.reg.load_blob(*id, &kek(1));
            match saved {
                Some(v) => env.put(&key, &v),
                None => {
                    env.tree.remove(&key).unwrap();
                }
            }
            assert_eq!(env.reg.load_blob(*id, &kek(1)).unwrap(), b"model");
        });
    }
}
