//! Sealed model bytes: round trips, KEK checks and rotation, and destruction after retirement,
//! checked on the files sled leaves behind.
//!
//! Stored formats used here (documented in the crate): a wrapped data key is `1 | KEK fingerprint
//! (16) | nonce (12) | AES-256-GCM(KEK, data key) (48)` with associated data
//! `"lethe-registry/data-key" | 1 | model id`; `m/kek` is `1 | fingerprint`.

use lethe_crypto::DataKey;
use lethe_registry::{ModelId, RetireReason, SecretBytes, Status};
use sha2::{Digest, Sha256};

use crate::helpers::{files_under, find_any, id_key, kek, subjects, t, with_hex, Env};

const WRAPPED_LEN: usize = 77;

/// Opens a wrapped data key record the way an attacker holding `kek` would.
fn unwrap_record(record: &[u8], kek: &SecretBytes, id: ModelId) -> Option<[u8; 32]> {
    if record.len() < WRAPPED_LEN || record[0] != 1 {
        return None;
    }
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&record[17..29]);
    let mut aad = b"lethe-registry/data-key".to_vec();
    aad.push(1);
    aad.extend_from_slice(id.as_bytes());
    let key = DataKey::new(kek).open(&nonce, &aad, &record[29..WRAPPED_LEN]).ok()?;
    key.try_into().ok()
}

fn data_key(env: &Env, id: ModelId, kek: &SecretBytes) -> [u8; 32] {
    unwrap_record(&env.raw(b"k/", id).unwrap(), kek, id).unwrap()
}

/// Model bytes with a recognizable canary, like ALS user factors would be.
fn model_bytes(canary: &[u8], len: usize) -> Vec<u8> {
    canary.iter().copied().cycle().take(len).collect()
}

#[test]
fn sealed_bytes_round_trip_and_match_their_digest() {
    let env = Env::new();
    for len in [0, 1, 4_096, 300_000] {
        let bytes = model_bytes(b"CANARY-ROUND-TRIP-", len);
        let m = env.register("recs-als", &subjects(0..3), &bytes, &kek(1));
        assert_eq!(m.blob.len, len as u64);
        let sealed = env.raw(b"b/", m.id).unwrap();
        assert_eq!(m.blob.digest, hex::encode(Sha256::digest(&sealed)));
        assert_eq!(sealed.len(), 1 + 12 + len + 16);
        if len > 0 {
            assert!(find_any(&sealed, &[b"CANARY-ROUND-TRIP-".to_vec()]).is_empty(), "stored in plaintext");
        }
        assert_eq!(env.reg.load_blob(m.id, &kek(1)).unwrap(), bytes);
        assert_eq!(env.reg.load_blob(m.id, &kek(2)).unwrap_err().code(), "wrong_kek");
    }
    let ids: Vec<ModelId> = env.reg.all().unwrap().iter().map(|m| m.id).collect();
    let env = env.reopen();
    assert_eq!(env.reg.load_blob(ids[3], &kek(1)).unwrap(), model_bytes(b"CANARY-ROUND-TRIP-", 300_000));
}

#[test]
fn the_registry_holds_one_kek_and_rotation_rewraps_every_surviving_key() {
    let env = Env::new();
    let a = env.register("recs-als", &subjects(0..3), b"model a", &kek(1)).id;
    let b = env.register("engagement", &subjects(0..3), b"model b", &kek(1)).id;
    let c = env.register("content", &subjects(0..3), b"model c", &kek(1)).id;
    // A second KEK cannot sneak in.
    let err = env.reg.register(crate::helpers::new_model("content", &subjects(0..1), 0), b"x", &kek(2), t(1));
    assert_eq!(err.unwrap_err().code(), "wrong_kek");
    env.reg.retire(c, RetireReason::Manual, t(2)).unwrap();

    assert_eq!(env.reg.rotate_kek(&kek(1), &kek(1)).unwrap_err().code(), "kek_unchanged");
    assert_eq!(env.reg.rotate_kek(&kek(9), &kek(2)).unwrap_err().code(), "wrong_kek");
    assert_eq!(env.reg.load_blob(a, &kek(1)).unwrap(), b"model a", "a refused rotation changes nothing");

    assert_eq!(env.reg.rotate_kek(&kek(1), &kek(2)).unwrap(), 2);
    assert_eq!(env.reg.rotate_kek(&kek(1), &kek(2)).unwrap(), 0, "repeating a finished rotation is a no-op");
    let env = env.reopen();
    assert_eq!(env.reg.load_blob(a, &kek(2)).unwrap(), b"model a");
    assert_eq!(env.reg.load_blob(b, &kek(2)).unwrap(), b"model b");
    assert_eq!(env.reg.load_blob(a, &kek(1)).unwrap_err().code(), "wrong_kek");
    let late = crate::helpers::new_model("content", &subjects(0..1), 0);
    assert_eq!(env.reg.register(late.clone(), b"x", &kek(1), t(3)).unwrap_err().code(), "wrong_kek");
    let d = env.reg.register(late, b"model d", &kek(2), t(3)).unwrap().id;
    assert_eq!(env.reg.load_blob(d, &kek(2)).unwrap(), b"model d");
    // The old KEK opens nothing that is stored now.
    for id in [a, b, d] {
        assert!(unwrap_record(&env.raw(b"k/", id).unwrap(), &kek(1), id).is_none());
    }
}

#[test]
fn a_key_record_gone_from_a_model_in_service_is_a_typed_error() {
    let env = Env::new();
    let a = env.register("recs-als", &subjects(0..3), b"model a", &kek(1)).id;
    env.tree.remove(id_key(b"k/", a)).unwrap();
    assert_eq!(env.reg.load_blob(a, &kek(1)).unwrap_err().code(), "model_key_destroyed");
}

/// R-ERASE (invariant 5): after a retirement for unlearning and a KEK rotation, the files sled
/// leaves behind hold neither the model bytes nor the data key, and what is left of the key opens
/// under no KEK that still exists.
#[test]
fn retired_model_bytes_and_key_are_unrecoverable_after_rotation() {
    const CANARY_A: &[u8] = b"LETHE-CANARY-ALS-USER-FACTORS-A";
    const CANARY_B: &[u8] = b"LETHE-CANARY-ALS-USER-FACTORS-B";
    let env = Env::new();
    let erased = crate::helpers::pseudonym(0);
    let a = env.register("recs-als", &subjects(0..40), &model_bytes(CANARY_A, 200_000), &kek(1)).id;
    let b = env.register("engagement", &subjects(1..40), &model_bytes(CANARY_B, 20_000), &kek(1)).id;
    let key_a = data_key(&env, a, &kek(1));
    let key_b = data_key(&env, b, &kek(1));
    let fingerprint_1 = env.tree.get(b"m/kek").unwrap().unwrap()[1..].to_vec();

    // Unlearning: the erased subject's models are found and retired.
    assert_eq!(env.reg.containing(&erased).unwrap(), vec![a]);
    env.reg.set_status(a, Status::Live, t(2)).unwrap();
    env.reg.retire(a, RetireReason::Unlearning, t(3)).unwrap();
    assert_eq!(env.reg.load_blob(a, &kek(1)).unwrap_err().code(), "model_retired");
    assert!(env.reg.containing(&erased).unwrap().is_empty());
    assert_eq!(env.reg.rotate_kek(&kek(1), &kek(2)).unwrap(), 1);
    // The caller now destroys KEK 1: from here on only KEK 2 exists.
    let fingerprint_2 = env.tree.get(b"m/kek").unwrap().unwrap()[1..].to_vec();
    let dir = env.dir.path().to_path_buf();
    let Env { reg, tree, db, dir: _keep } = env;
    db.flush().unwrap();
    drop((reg, tree, db));

    let files = files_under(&dir);
    assert!(!files.is_empty());
    let needles = with_hex(&[CANARY_A, CANARY_B, &key_a, &key_b]);
    let (mut opens_a, mut opens_b, mut residue_a) = (0, 0, 0);
    for (path, bytes) in &files {
        assert!(find_any(bytes, &needles).is_empty(), "plaintext model bytes or a data key in {path:?}");
        // Every copy of a key record, current or left over by sled, by the fingerprint of its KEK.
        for (fingerprint, kek_n, counts_a, mut counts_b) in
            [(&fingerprint_2, 2, &mut opens_a, Some(&mut opens_b)), (&fingerprint_1, 1, &mut residue_a, None)]
        {
            for (pos, _) in bytes.windows(16).enumerate().filter(|(_, w)| *w == &fingerprint[..]) {
                let Some(record) = pos.checked_sub(1).and_then(|start| bytes.get(start..start + WRAPPED_LEN)) else {
                    continue;
                };
                *counts_a += usize::from(unwrap_record(record, &kek(kek_n), a) == Some(key_a));
                if let Some(counts_b) = counts_b.as_deref_mut() {
                    *counts_b += usize::from(unwrap_record(record, &kek(kek_n), b) == Some(key_b));
                }
            }
        }
    }
    assert!(opens_b >= 1, "positive control: the surviving key is found and opens under the current KEK");
    assert_eq!(opens_a, 0, "the retired model's key opens under no surviving KEK");
    eprintln!("copies of the retired key record left in sled's files, under the destroyed KEK only: {residue_a}");

    // Reopened, the registry still serves the surviving model under the current KEK.
    let db = crate::helpers::sled_open_retrying(&dir.join("db"));
    let reg = lethe_registry::Registry::open(db.open_tree(crate::helpers::TREE).unwrap()).unwrap();
    assert_eq!(reg.load_blob(b, &kek(2)).unwrap(), model_bytes(CANARY_B, 20_000));
    assert_eq!(reg.load_blob(a, &kek(2)).unwrap_err().code(), "model_retired");
}
