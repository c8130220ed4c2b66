//! The registry: model records, membership tags, wrapped data keys and sealed bytes in one sled tree,
//! with the lifecycle state machine over them.
//!
//! Layout of the tree (layout version 1, marked by `v/layout`); every value starts with its format
//! byte:
//!
//! | key | value |
//! |---|---|
//! | `v/layout` | `1` |
//! | `m/kek` | `1` \| fingerprint of the current KEK (16) |
//! | `r/` + model id (16) | model record ([`crate::codec`]: `1` \| JSON, without tags) |
//! | `s/` + model id | membership: `1` \| salt (32) \| sorted tags (16 each); removed at retirement |
//! | `k/` + model id | wrapped data key (77 bytes, see `seal`); removed at retirement |
//! | `b/` + model id | sealed model bytes; removed at retirement |
//! | `n/` + name + `0x00` + version (u32 BE) | `1` \| model id: the versions of a name, in order |
//! | `x/` + name | `1` \| last version number (u32 BE) |
//! | `l/` + name | `1` \| model id of the live version |
//! | `c/` + name | `1` \| model id of the canary |
//!
//! Contracts: every write (a registration, a change of status with the retirement it causes, a
//! retirement, a KEK rotation) is one sled transaction, so a crash leaves all or none of it, and
//! returns after an fsync (acknowledged means durable). Reads of one model see one consistent state.

use std::fmt;

use lethe_crypto::SecretBytes;
use lethe_domain::{Pseudonym, UtcMicros};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use crate::codec::{self, Tags};
use crate::model::validate_metrics;
use crate::seal::{self, Fingerprint, FINGERPRINT_LEN};
use crate::{
    BlobInfo, Membership, ModelId, ModelName, ModelVersion, NewModel, RegistryError, Result, RetireReason, Status,
};

/// Largest model accepted by [`Registry::register`], in bytes (256 MiB).
pub const MAX_BLOB_LEN: usize = 256 * 1024 * 1024;
/// Longest algorithm label, in bytes.
pub const MAX_ALGORITHM_LEN: usize = 64;

const LAYOUT_KEY: &[u8] = b"v/layout";
const LAYOUT_VERSION: u8 = 1;
const KEK_KEY: &[u8] = b"m/kek";
const KEK_FORMAT: u8 = 1;
const COUNTER_FORMAT: u8 = 1;

const MODEL_PREFIX: &[u8] = b"r/";
const MEMBERSHIP_PREFIX: &[u8] = b"s/";
const KEY_PREFIX: &[u8] = b"k/";
const BLOB_PREFIX: &[u8] = b"b/";
const VERSION_PREFIX: &[u8] = b"n/";
const COUNTER_PREFIX: &[u8] = b"x/";
const LIVE_PREFIX: &[u8] = b"l/";
const CANARY_PREFIX: &[u8] = b"c/";

fn id_key(prefix: &[u8], id: ModelId) -> [u8; 18] {
    let mut k = [0u8; 18];
    k[..2].copy_from_slice(prefix);
    k[2..].copy_from_slice(id.as_bytes());
    k
}

fn id_from_key(k: &[u8]) -> Result<ModelId> {
    let id: [u8; 16] = k.get(2..).and_then(|b| b.try_into().ok()).ok_or(RegistryError::Corrupt("bad model key"))?;
    Ok(ModelId::from_bytes(id))
}

fn name_key(prefix: &[u8], name: &ModelName) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + name.as_str().len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(name.as_str().as_bytes());
    k
}

fn versions_prefix(name: &ModelName) -> Vec<u8> {
    let mut k = name_key(VERSION_PREFIX, name);
    k.push(0);
    k
}

fn version_key(name: &ModelName, version: u32) -> Vec<u8> {
    let mut k = versions_prefix(name);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn encode_counter(version: u32) -> [u8; 5] {
    let mut out = [COUNTER_FORMAT; 5];
    out[1..].copy_from_slice(&version.to_be_bytes());
    out
}

fn decode_counter(bytes: &[u8]) -> Result<u32> {
    match bytes {
        [COUNTER_FORMAT, rest @ ..] => {
            rest.try_into().map(u32::from_be_bytes).map_err(|_| RegistryError::Corrupt("bad version counter"))
        }
        [v, ..] => Err(RegistryError::UnsupportedVersion { what: "version counter", version: *v }),
        [] => Err(RegistryError::Corrupt("empty version counter")),
    }
}

fn encode_kek(fp: &Fingerprint) -> [u8; 1 + FINGERPRINT_LEN] {
    let mut out = [KEK_FORMAT; 1 + FINGERPRINT_LEN];
    out[1..].copy_from_slice(fp);
    out
}

fn decode_kek(bytes: &[u8]) -> Result<Fingerprint> {
    match bytes {
        [KEK_FORMAT, rest @ ..] => rest.try_into().map_err(|_| RegistryError::Corrupt("bad kek fingerprint record")),
        [v, ..] => Err(RegistryError::UnsupportedVersion { what: "kek fingerprint record", version: *v }),
        [] => Err(RegistryError::Corrupt("empty kek fingerprint record")),
    }
}

fn is_label(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len()) && !s.chars().any(char::is_control)
}

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<RegistryError>>;

fn abort<T>(e: RegistryError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

/// Turns a decoding result into a transaction result.
fn tx<T>(r: Result<T>) -> TxResult<T> {
    r.map_err(ConflictableTransactionError::Abort)
}

/// Reads a model record inside a transaction, without its tags (see [`Tags::NotLoaded`]).
fn load_meta(tx: &TransactionalTree, id: ModelId) -> TxResult<ModelVersion> {
    match tx.get(id_key(MODEL_PREFIX, id))? {
        Some(bytes) => self::tx(codec::decode_model(id, &bytes, Tags::NotLoaded)),
        None => abort(RegistryError::NotFound(id)),
    }
}

fn read_pointer(tx: &TransactionalTree, key: &[u8]) -> TxResult<Option<ModelId>> {
    tx.get(key)?.map(|v| self::tx(codec::decode_pointer(&v))).transpose()
}

/// Retires a model inside a transaction: status, pointers, and the destruction of its membership
/// tags, data key record and sealed bytes.
fn retire_in(tx: &TransactionalTree, id: ModelId, reason: RetireReason, now: UtcMicros) -> TxResult<()> {
    let mut m = load_meta(tx, id)?;
    if m.status.is_retired() {
        return abort(RegistryError::ModelRetired(id));
    }
    for prefix in [LIVE_PREFIX, CANARY_PREFIX] {
        let key = name_key(prefix, &m.name);
        if read_pointer(tx, &key)? == Some(id) {
            tx.remove(key)?;
        }
    }
    m.status = Status::Retired { at: now, reason };
    m.manifest.membership = Membership::scrubbed();
    tx.insert(&id_key(MODEL_PREFIX, id)[..], self::tx(codec::encode_model(&m))?)?;
    for prefix in [MEMBERSHIP_PREFIX, KEY_PREFIX, BLOB_PREFIX] {
        tx.remove(&id_key(prefix, id)[..])?;
    }
    Ok(())
}

/// The model registry over a caller-opened sled tree. Cheap to clone (the tree is a shared handle).
///
/// The registry key-encryption key (KEK) is passed in by the caller on every call that needs it
/// and never stored; the registry keeps only its fingerprint, to refuse a wrong one with
/// [`RegistryError::WrongKek`].
///
/// All methods block on sled (and on fsync for writes): from async code, call them in
/// `spawn_blocking`.
#[derive(Clone)]
pub struct Registry {
    tree: sled::Tree,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").field("tree", &String::from_utf8_lossy(&self.tree.name())).finish()
    }
}

impl Registry {
    /// Opens the registry in `tree`, marking an empty tree with the current layout.
    ///
    /// # Errors
    /// [`RegistryError::UnsupportedVersion`] for a newer layout; `Corrupt` for a non-empty tree
    /// without a layout marker; `Storage` when sled fails.
    pub fn open(tree: sled::Tree) -> Result<Self> {
        match tree.get(LAYOUT_KEY)? {
            Some(v) => match v.as_ref() {
                [LAYOUT_VERSION] => {}
                [version, ..] => return Err(RegistryError::UnsupportedVersion { what: "layout", version: *version }),
                [] => return Err(RegistryError::Corrupt("empty layout marker")),
            },
            None if tree.is_empty() => {
                tree.insert(LAYOUT_KEY, &[LAYOUT_VERSION])?;
                tree.flush()?;
            }
            None => return Err(RegistryError::Corrupt("registry tree has no layout marker")),
        }
        Ok(Self { tree })
    }

    /// Registers a trained model as a [`Status::Candidate`] with the next version number of its
    /// name, storing `blob` (the model bytes) sealed under a fresh data key wrapped under `kek`.
    ///
    /// # Errors
    /// `InvalidAlgorithm`, `InvalidManifest`, `InvalidMetric` or `BlobTooLarge` for bad input;
    /// `WrongKek` when `kek` is not the KEK the registry's keys are wrapped under;
    /// `VersionsExhausted`; `Storage`. Nothing is stored on error.
    pub fn register(&self, new: NewModel, blob: &[u8], kek: &SecretBytes, now: UtcMicros) -> Result<ModelVersion> {
        let NewModel { name, algorithm, manifest, metrics } = new;
        if !is_label(&algorithm, MAX_ALGORITHM_LEN) {
            return Err(RegistryError::InvalidAlgorithm);
        }
        manifest.validate()?;
        validate_metrics(&metrics)?;
        if blob.len() > MAX_BLOB_LEN {
            return Err(RegistryError::BlobTooLarge { max: MAX_BLOB_LEN });
        }
        let membership = codec::encode_membership(&manifest.membership)
            .ok_or(RegistryError::InvalidManifest("membership is scrubbed"))?;
        let id = ModelId::generate();
        let key = SecretBytes::random();
        let (sealed, digest) = seal::seal_blob(&key, id, blob);
        let wrapped = seal::wrap(kek, id, &key);
        drop(key);
        let fp = seal::fingerprint(kek);
        let mut model = ModelVersion {
            id,
            name,
            version: 0,
            algorithm,
            status: Status::Candidate,
            created_at: now,
            manifest,
            metrics,
            blob: BlobInfo { digest, len: blob.len() as u64 },
        };
        let counter_key = name_key(COUNTER_PREFIX, &model.name);
        let version = self.tree.transaction(|t| {
            match t.get(KEK_KEY)? {
                Some(v) if tx(decode_kek(&v))? != fp => return abort(RegistryError::WrongKek),
                Some(_) => {}
                None => {
                    t.insert(KEK_KEY, &encode_kek(&fp)[..])?;
                }
            }
            let last = match t.get(&counter_key)? {
                Some(v) => tx(decode_counter(&v))?,
                None => 0,
            };
            let Some(version) = last.checked_add(1) else {
                return abort(RegistryError::VersionsExhausted(model.name.to_string()));
            };
            t.insert(&counter_key[..], &encode_counter(version)[..])?;
            t.insert(&id_key(MODEL_PREFIX, id)[..], tx(codec::encode_model_as(&model, version))?)?;
            t.insert(version_key(&model.name, version), &codec::encode_pointer(id)[..])?;
            t.insert(&id_key(MEMBERSHIP_PREFIX, id)[..], membership.as_slice())?;
            t.insert(&id_key(KEY_PREFIX, id)[..], wrapped.as_slice())?;
            t.insert(&id_key(BLOB_PREFIX, id)[..], sealed.as_slice())?;
            Ok(version)
        })?;
        self.tree.flush()?;
        model.version = version;
        Ok(model)
    }

    /// Moves a model to another status, following the lifecycle of [`Status`]:
    ///
    /// - candidate → canary: refused with `CanaryTaken` while another version of the name is canary;
    /// - canary → canary: changes the traffic share;
    /// - candidate or canary → live: the previous live version of the name (if any) is retired as
    ///   [`RetireReason::Superseded`] in the same transaction, and a promoted canary stops being canary;
    /// - canary → candidate: a rollback;
    /// - any → retired: as [`Registry::retire`] (the time recorded is `now`, not the status's `at`).
    ///
    /// Returns the model as stored afterwards.
    ///
    /// # Errors
    /// `NotFound`; `ModelRetired` for a retired model; `InvalidCanaryShare` outside `1..=1000`;
    /// `CanaryTaken`; `InvalidTransition` for any other change (live → candidate, a status to
    /// itself…); `Corrupt` when a record or pointer involved does not decode (then nothing changed).
    pub fn set_status(&self, id: ModelId, new: Status, now: UtcMicros) -> Result<ModelVersion> {
        match new {
            Status::Retired { reason, .. } => return self.retire(id, reason, now),
            Status::Canary { share_permille } if !(1..=1000).contains(&share_permille) => {
                return Err(RegistryError::InvalidCanaryShare(share_permille));
            }
            _ => {}
        }
        self.tree.transaction(|t| {
            let mut m = load_meta(t, id)?;
            let live_key = name_key(LIVE_PREFIX, &m.name);
            let canary_key = name_key(CANARY_PREFIX, &m.name);
            match (m.status, new) {
                (Status::Retired { .. }, _) => return abort(RegistryError::ModelRetired(id)),
                (Status::Candidate, Status::Canary { .. }) => {
                    if let Some(holder) = read_pointer(t, &canary_key)? {
                        if holder != id {
                            return abort(RegistryError::CanaryTaken { name: m.name.to_string(), holder });
                        }
                    }
                    t.insert(&canary_key[..], &codec::encode_pointer(id)[..])?;
                }
                (Status::Canary { .. }, Status::Canary { .. }) => {}
                (Status::Candidate | Status::Canary { .. }, Status::Live) => {
                    if let Some(previous) = read_pointer(t, &live_key)? {
                        if previous != id {
                            let p = load_meta(t, previous)?;
                            if p.status != Status::Live || p.name != m.name {
                                return abort(RegistryError::Corrupt("live pointer names a model that is not live"));
                            }
                            retire_in(t, previous, RetireReason::Superseded, now)?;
                        }
                    }
                    if read_pointer(t, &canary_key)? == Some(id) {
                        t.remove(&canary_key[..])?;
                    }
                    t.insert(&live_key[..], &codec::encode_pointer(id)[..])?;
                }
                (Status::Canary { .. }, Status::Candidate) => {
                    if read_pointer(t, &canary_key)? == Some(id) {
                        t.remove(&canary_key[..])?;
                    }
                }
                (from, to) => return abort(RegistryError::InvalidTransition { from: from.kind(), to: to.kind() }),
            }
            m.status = new;
            t.insert(&id_key(MODEL_PREFIX, id)[..], tx(codec::encode_model(&m))?)?;
            Ok(())
        })?;
        self.tree.flush()?;
        self.get(id)?.ok_or(RegistryError::NotFound(id))
    }

    /// Retires a model for good and destroys what it holds of its subjects: its sealed bytes, its
    /// data key record and its membership tags are removed in the same transaction as the status
    /// change, and it stops being live or canary. The record stays, with its manifest's counts,
    /// metrics and digest, as history. Returns the model as stored afterwards.
    ///
    /// **Destruction is final only after a KEK rotation.** sled keeps removed and overwritten bytes
    /// in its files for a while (sled issue #1512), so the wrapped data key may still be on disk.
    /// It is wrapped under the registry KEK: call [`Registry::rotate_kek`] and then destroy the old
    /// KEK, exactly like the event log's epochs. Until then, whoever holds the old KEK and the files
    /// could recover the model bytes. The leftover membership tags name no subject by themselves:
    /// linking one to a subject takes that subject's pseudonym.
    ///
    /// # Errors
    /// `NotFound`; `ModelRetired` when already retired; `Corrupt` when its record does not decode;
    /// `Storage`.
    pub fn retire(&self, id: ModelId, reason: RetireReason, now: UtcMicros) -> Result<ModelVersion> {
        self.tree.transaction(|t| retire_in(t, id, reason, now))?;
        self.tree.flush()?;
        self.get(id)?.ok_or(RegistryError::NotFound(id))
    }

    /// Re-wraps every surviving data key from `old` to `new` and records `new` as the registry KEK,
    /// in one transaction. Returns how many keys were re-wrapped. Once it returns, `old` wraps
    /// nothing the registry still uses: the caller destroys it, and with it every data key that a
    /// retirement removed but sled's files still hold. Idempotent: a repeated call with the same
    /// pair re-wraps nothing and returns 0.
    ///
    /// # Errors
    /// `KekUnchanged` when `old` equals `new`; `WrongKek` when `old` is not the registry's KEK (or a
    /// key is wrapped under neither); `Corrupt` when a key record does not decode or open; then
    /// nothing changed.
    pub fn rotate_kek(&self, old: &SecretBytes, new: &SecretBytes) -> Result<usize> {
        let (fp_old, fp_new) = (seal::fingerprint(old), seal::fingerprint(new));
        if fp_old == fp_new {
            return Err(RegistryError::KekUnchanged);
        }
        let mut total = 0;
        loop {
            let mut pending = Vec::new();
            for kv in self.tree.scan_prefix(KEY_PREFIX) {
                let (k, v) = kv?;
                if seal::parse_wrapped(&v)?.fingerprint != fp_new {
                    pending.push(id_from_key(&k)?);
                }
            }
            let current = self.tree.get(KEK_KEY)?.map(|v| decode_kek(&v)).transpose()?;
            // A registration that raced the previous pass may have wrapped one more key under the old
            // KEK; the registry now refuses the old KEK, so the loop ends.
            if pending.is_empty() && current == Some(fp_new) {
                break;
            }
            total += self.tree.transaction(|t| {
                if let Some(v) = t.get(KEK_KEY)? {
                    let fp = tx(decode_kek(&v))?;
                    if fp != fp_old && fp != fp_new {
                        return abort(RegistryError::WrongKek);
                    }
                }
                let mut n = 0;
                for &id in &pending {
                    let key = id_key(KEY_PREFIX, id);
                    // Retired since the scan: nothing to re-wrap.
                    let Some(v) = t.get(key)? else { continue };
                    let w = tx(seal::parse_wrapped(&v))?;
                    if w.fingerprint == fp_new {
                        continue;
                    }
                    let data_key = tx(seal::unwrap(old, id, &w))?;
                    t.insert(&key[..], seal::wrap(new, id, &data_key))?;
                    n += 1;
                }
                t.insert(KEK_KEY, &encode_kek(&fp_new)[..])?;
                Ok(n)
            })?;
        }
        self.tree.flush()?;
        Ok(total)
    }

    /// Opens a model's sealed bytes.
    ///
    /// # Errors
    /// `NotFound`; `ModelRetired` once retired (the bytes and key are destroyed); `KeyDestroyed` when
    /// the data key record is gone from a model that is not retired; `WrongKek`; `Corrupt` when the
    /// sealed bytes are missing, differ from the recorded digest or fail authentication.
    pub fn load_blob(&self, id: ModelId, kek: &SecretBytes) -> Result<Vec<u8>> {
        let (record, wrapped, sealed) = self.tree.transaction(|t| {
            Ok((t.get(id_key(MODEL_PREFIX, id))?, t.get(id_key(KEY_PREFIX, id))?, t.get(id_key(BLOB_PREFIX, id))?))
        })?;
        let record = record.ok_or(RegistryError::NotFound(id))?;
        let m = codec::decode_model(id, &record, Tags::NotLoaded)?;
        if m.status.is_retired() {
            return Err(RegistryError::ModelRetired(id));
        }
        let wrapped = wrapped.ok_or(RegistryError::KeyDestroyed(id))?;
        let data_key = seal::unwrap(kek, id, &seal::parse_wrapped(&wrapped)?)?;
        let sealed = sealed.ok_or(RegistryError::Corrupt("sealed blob missing"))?;
        if seal::digest(&sealed) != m.blob.digest {
            return Err(RegistryError::Corrupt("sealed blob differs from its digest"));
        }
        let plain = seal::open_blob(&data_key, id, &sealed)?;
        if plain.len() as u64 != m.blob.len {
            return Err(RegistryError::Corrupt("model bytes differ from the recorded length"));
        }
        Ok(plain)
    }

    /// One model version, with its membership tags.
    ///
    /// # Errors
    /// `Corrupt` or `UnsupportedVersion` when its records do not decode; `Storage`.
    pub fn get(&self, id: ModelId) -> Result<Option<ModelVersion>> {
        let (record, tags) =
            self.tree.transaction(|t| Ok((t.get(id_key(MODEL_PREFIX, id))?, t.get(id_key(MEMBERSHIP_PREFIX, id))?)))?;
        record.map(|r| codec::decode_model(id, &r, Tags::Stored(tags.as_deref()))).transpose()
    }

    fn pointed(&self, prefix: &[u8], name: &ModelName, want: fn(&Status) -> bool) -> Result<Option<ModelVersion>> {
        let Some(p) = self.tree.get(name_key(prefix, name))? else {
            return Ok(None);
        };
        let id = codec::decode_pointer(&p)?;
        let m = self.get(id)?.ok_or(RegistryError::Corrupt("pointer names a missing model"))?;
        if &m.name != name || !want(&m.status) {
            return Err(RegistryError::Corrupt("pointer disagrees with the model's status"));
        }
        Ok(Some(m))
    }

    /// The live version of a name, if any.
    ///
    /// # Errors
    /// `Corrupt` when the live pointer or the record it names does not decode or is not live.
    pub fn live(&self, name: &ModelName) -> Result<Option<ModelVersion>> {
        self.pointed(LIVE_PREFIX, name, |s| *s == Status::Live)
    }

    /// The canary version of a name, if any.
    ///
    /// # Errors
    /// As [`Registry::live`].
    pub fn canary(&self, name: &ModelName) -> Result<Option<ModelVersion>> {
        self.pointed(CANARY_PREFIX, name, |s| matches!(s, Status::Canary { .. }))
    }

    /// Every version of a name, oldest first, retired ones included.
    ///
    /// # Errors
    /// `Corrupt` when an index entry or record does not decode; `Storage`.
    pub fn versions(&self, name: &ModelName) -> Result<Vec<ModelVersion>> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(versions_prefix(name)) {
            let (_, v) = kv?;
            let id = codec::decode_pointer(&v)?;
            out.push(self.get(id)?.ok_or(RegistryError::Corrupt("version index names a missing model"))?);
        }
        Ok(out)
    }

    /// Every model of every name, in registration order (by id), retired ones included. Loads every
    /// membership: meant for operators and tests, not hot paths.
    ///
    /// # Errors
    /// As [`Registry::get`].
    pub fn all(&self) -> Result<Vec<ModelVersion>> {
        let mut out = Vec::new();
        for k in self.tree.scan_prefix(MODEL_PREFIX).keys() {
            let id = id_from_key(&k?)?;
            // Model records are never removed, so every listed id resolves.
            if let Some(m) = self.get(id)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// The models not yet retired whose training subjects include `subject`, in registration order:
    /// what an erasure or a withdrawal of consent must retire or retrain (invariant 5). A binary
    /// search over each model's stored tags; no model is decoded.
    ///
    /// # Errors
    /// `Corrupt` when a membership record does not decode (a damaged membership would otherwise
    /// hide a subject, so the whole query fails); `Storage`.
    pub fn containing(&self, subject: &Pseudonym) -> Result<Vec<ModelId>> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(MEMBERSHIP_PREFIX) {
            let (k, v) = kv?;
            let (salt, tags) = codec::split_membership(&v)?;
            if Membership::stored_contains(&salt, tags, subject) {
                out.push(id_from_key(&k)?);
            }
        }
        Ok(out)
    }
}
