//! R-AUDIT-1: one flipped byte anywhere in the stored chain fails verification at its position, never with
//! a panic; removed entries fail at the gap.

use lethe_audit::verify_tree;

use crate::{chain, checkpoint_key, entry_key, tampered_at, Fixture};

/// Runs both verifications (live chain and offline tree) and returns the position they agree on.
fn fails_at(f: &Fixture) -> u64 {
    let live = tampered_at(f.chain.verify());
    let offline = tampered_at(verify_tree(&f.tree, f.chain.verifier()));
    assert_eq!(live, offline, "live and offline verification disagree");
    live
}

/// R-AUDIT-1: every byte of several entries and checkpoints, flipped three ways, fails at that entry's or
/// checkpoint's sequence number; restoring the byte restores verification.
#[test]
fn r_audit_1_any_flipped_byte_fails_at_its_seq() {
    let f = chain(12, 4);
    let targets = [
        (entry_key(1), 1),
        (entry_key(5), 5),
        (entry_key(8), 8),
        (entry_key(12), 12),
        (checkpoint_key(4), 4),
        (checkpoint_key(12), 12),
    ];
    for (key, seq) in targets {
        let original = f.tree.get(&key).expect("get").expect("stored");
        // Checkpoint bytes that reach the Ed25519 check cost a full verification each (slow in debug
        // builds), so checkpoints get one mask per byte.
        let masks: &[u8] = if key.starts_with(b"c/") { &[0x01] } else { &[0x01, 0x80, 0xff] };
        for i in 0..original.len() {
            for &mask in masks {
                let mut bad = original.to_vec();
                bad[i] ^= mask;
                f.tree.insert(&key, bad).expect("insert");
                assert_eq!(fails_at(&f), seq, "byte {i} ^ {mask:#x} of {key:?}");
            }
        }
        f.tree.insert(&key, original).expect("restore");
    }
    f.chain.verify().expect("restored chain verifies");
}

/// R-AUDIT-1: a stored value cut short at any length, or with bytes added, fails at its seq.
#[test]
fn r_audit_1_truncated_or_extended_values_fail_at_their_seq() {
    let f = chain(8, 4);
    for (key, seq) in [(entry_key(3), 3), (checkpoint_key(4), 4)] {
        let original = f.tree.get(&key).expect("get").expect("stored");
        for n in 0..original.len() {
            f.tree.insert(&key, &original[..n]).expect("insert");
            assert_eq!(fails_at(&f), seq, "cut to {n} bytes");
        }
        f.tree.insert(&key, [&original[..], b"x"].concat()).expect("insert");
        assert_eq!(fails_at(&f), seq, "extended");
        f.tree.insert(&key, original).expect("restore");
    }
    f.chain.verify().expect("restored chain verifies");
}

/// R-AUDIT-1: deleting an entry in the middle fails at the missing seq.
#[test]
fn r_audit_1_deleted_middle_entry_fails_at_its_seq() {
    let f = chain(10, 4);
    f.tree.remove(entry_key(6)).expect("remove");
    assert_eq!(fails_at(&f), 6);
}

/// R-AUDIT-1: deleting the last entry fails there (the live chain knows its head; offline, the checkpoint
/// covering it does), and so do entries moved to other positions.
#[test]
fn r_audit_1_deleted_last_or_swapped_entries_fail() {
    let f = chain(10, 5);
    let last = f.tree.remove(entry_key(10)).expect("remove").expect("stored");
    assert_eq!(fails_at(&f), 10);
    f.tree.insert(entry_key(10), last).expect("restore");
    let (a, b) = (f.tree.get(entry_key(3)).expect("get"), f.tree.get(entry_key(4)).expect("get"));
    f.tree.insert(entry_key(3), b.expect("stored")).expect("insert");
    f.tree.insert(entry_key(4), a.expect("stored")).expect("insert");
    assert_eq!(fails_at(&f), 3);
}

/// R-AUDIT-1: an entry added after the end by someone else than the chain fails offline verification, and
/// the live chain, which did not append it, does not vouch for it.
#[test]
fn r_audit_1_entry_beyond_the_head_fails_offline() {
    let f = chain(5, 0);
    let copy = f.tree.get(entry_key(5)).expect("get").expect("stored");
    f.tree.insert(entry_key(6), copy).expect("insert");
    assert_eq!(tampered_at(verify_tree(&f.tree, f.chain.verifier())), 6);
    assert_eq!(f.chain.verify().expect("live chain verifies up to its head").last_seq, 5);
}
