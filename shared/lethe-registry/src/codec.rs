//! The stored formats of model records, membership records and name pointers. Every value starts with
//! a format byte; every past version is read, only the latest is written. The stored types live here
//! and are converted explicitly, so changing [`ModelVersion`] never changes the disk format by accident.
//!
//! Model record, version 1: `1 | JSON {"id", "name", "version", "algorithm", "status": {"kind":
//! "candidate"} | {"kind": "canary", "share_permille"} | {"kind": "live"} | {"kind": "retired", "at",
//! "reason": "superseded" | "unlearning" | "rolled_back" | "manual" | "expired"}, "created_at",
//! "metrics", "blob": {"digest", "len"}, "manifest": {"data_window": [from, to], "log_position",
//! "subjects", "membership": "held" | "scrubbed", "features", "hyperparameters", "metrics",
//! "code_version", "shards": [{"index", "subjects"}]}}`, times in microseconds since the Unix epoch
//! (UTC). The tags themselves are not in it.
//!
//! Membership record, version 1: `1 | salt (32) | tags (16 each, strictly ascending)`.
//!
//! Pointer (version index, live, canary), version 1: `1 | model id (16)`.

use std::collections::BTreeMap;

use lethe_domain::UtcMicros;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::membership::{Tag, TAG_LEN};
use crate::{
    BlobInfo, Manifest, Membership, MembershipSalt, ModelId, ModelName, ModelVersion, RegistryError, Result,
    RetireReason, ShardInfo, Status,
};

/// The model record version written by this build.
const MODEL_FORMAT: u8 = 1;
/// The membership record version written by this build.
const MEMBERSHIP_FORMAT: u8 = 1;
/// The pointer version written by this build.
const POINTER_FORMAT: u8 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelV1 {
    id: Uuid,
    name: String,
    version: u32,
    algorithm: String,
    status: StatusV1,
    created_at: i64,
    metrics: BTreeMap<String, f64>,
    blob: BlobV1,
    manifest: ManifestV1,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum StatusV1 {
    Candidate,
    Canary { share_permille: u16 },
    Live,
    Retired { at: i64, reason: ReasonV1 },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ReasonV1 {
    Superseded,
    Unlearning,
    RolledBack,
    Manual,
    Expired,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlobV1 {
    digest: String,
    len: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum MembershipStateV1 {
    Held,
    Scrubbed,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestV1 {
    data_window: [i64; 2],
    log_position: u64,
    subjects: u64,
    membership: MembershipStateV1,
    features: Vec<String>,
    hyperparameters: serde_json::Value,
    metrics: BTreeMap<String, f64>,
    code_version: String,
    shards: Vec<ShardV1>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShardV1 {
    index: u32,
    subjects: u64,
}

fn status_v1(s: Status) -> StatusV1 {
    match s {
        Status::Candidate => StatusV1::Candidate,
        Status::Canary { share_permille } => StatusV1::Canary { share_permille },
        Status::Live => StatusV1::Live,
        Status::Retired { at, reason } => StatusV1::Retired {
            at: at.0,
            reason: match reason {
                RetireReason::Superseded => ReasonV1::Superseded,
                RetireReason::Unlearning => ReasonV1::Unlearning,
                RetireReason::RolledBack => ReasonV1::RolledBack,
                RetireReason::Manual => ReasonV1::Manual,
                RetireReason::Expired => ReasonV1::Expired,
            },
        },
    }
}

fn from_status_v1(s: StatusV1) -> Status {
    match s {
        StatusV1::Candidate => Status::Candidate,
        StatusV1::Canary { share_permille } => Status::Canary { share_permille },
        StatusV1::Live => Status::Live,
        StatusV1::Retired { at, reason } => Status::Retired {
            at: UtcMicros(at),
            reason: match reason {
                ReasonV1::Superseded => RetireReason::Superseded,
                ReasonV1::Unlearning => RetireReason::Unlearning,
                ReasonV1::RolledBack => RetireReason::RolledBack,
                ReasonV1::Manual => RetireReason::Manual,
                ReasonV1::Expired => RetireReason::Expired,
            },
        },
    }
}

/// Encodes a model record (everything but the membership tags) in the current version.
///
/// # Errors
/// Only if JSON encoding fails, which validated values never do.
pub(crate) fn encode_model(m: &ModelVersion) -> Result<Vec<u8>> {
    encode_model_as(m, m.version)
}

/// Encodes a model record as [`encode_model`] does, under another version number (assigned inside
/// the transaction that stores it).
///
/// # Errors
/// As [`encode_model`].
pub(crate) fn encode_model_as(m: &ModelVersion, version: u32) -> Result<Vec<u8>> {
    let mf = &m.manifest;
    let stored = ModelV1 {
        id: m.id.as_uuid(),
        name: m.name.as_str().to_owned(),
        version,
        algorithm: m.algorithm.clone(),
        status: status_v1(m.status),
        created_at: m.created_at.0,
        metrics: m.metrics.clone(),
        blob: BlobV1 { digest: m.blob.digest.clone(), len: m.blob.len },
        manifest: ManifestV1 {
            data_window: [mf.data_window.0 .0, mf.data_window.1 .0],
            log_position: mf.log_position,
            subjects: mf.subjects,
            membership: if mf.membership.is_scrubbed() { MembershipStateV1::Scrubbed } else { MembershipStateV1::Held },
            features: mf.features.clone(),
            hyperparameters: mf.hyperparameters.clone(),
            metrics: mf.metrics.clone(),
            code_version: mf.code_version.clone(),
            shards: mf.shards.iter().map(|s| ShardV1 { index: s.index, subjects: s.subjects }).collect(),
        },
    };
    let mut out = vec![MODEL_FORMAT];
    serde_json::to_writer(&mut out, &stored).map_err(|_| RegistryError::Corrupt("model record does not encode"))?;
    Ok(out)
}

/// Where [`decode_model`] finds the membership tags.
#[derive(Clone, Copy)]
pub(crate) enum Tags<'a> {
    /// The stored membership record, if any (absent once retired).
    Stored(Option<&'a [u8]>),
    /// Not read: a held membership decodes as an empty placeholder. Only for reading a status or
    /// rewriting a record whose tags stay where they are; never hand such a value to a caller.
    NotLoaded,
}

/// Decodes a model record of any known version, with its membership tags. `id` is the id its key
/// names; a record naming another id is corrupt.
///
/// # Errors
/// `Corrupt` or `UnsupportedVersion` for anything that is not a consistent stored model.
pub(crate) fn decode_model(id: ModelId, bytes: &[u8], tags: Tags<'_>) -> Result<ModelVersion> {
    let (&version, rest) = bytes.split_first().ok_or(RegistryError::Corrupt("empty model record"))?;
    let s: ModelV1 = match version {
        1 => serde_json::from_slice(rest).map_err(|_| RegistryError::Corrupt("bad model record"))?,
        v => return Err(RegistryError::UnsupportedVersion { what: "model record", version: v }),
    };
    if s.id != id.as_uuid() {
        return Err(RegistryError::Corrupt("model record names another id"));
    }
    let name = ModelName::parse(&s.name).map_err(|_| RegistryError::Corrupt("bad model name in model record"))?;
    let status = from_status_v1(s.status);
    if let Status::Canary { share_permille } = status {
        if !(1..=1000).contains(&share_permille) {
            return Err(RegistryError::Corrupt("bad canary share in model record"));
        }
    }
    if s.blob.digest.len() != 64 || hex::decode(&s.blob.digest).is_err() {
        return Err(RegistryError::Corrupt("bad blob digest in model record"));
    }
    let m = s.manifest;
    let membership = match (m.membership, tags) {
        (MembershipStateV1::Held, Tags::Stored(Some(raw))) => decode_membership(raw)?,
        (MembershipStateV1::Held, Tags::Stored(None)) => {
            return Err(RegistryError::Corrupt("membership record missing"));
        }
        (MembershipStateV1::Held, Tags::NotLoaded) => {
            Membership::from_stored(MembershipSalt::from_bytes([0; 32]), Vec::new())
        }
        (MembershipStateV1::Scrubbed, Tags::Stored(None) | Tags::NotLoaded) => Membership::scrubbed(),
        (MembershipStateV1::Scrubbed, Tags::Stored(Some(_))) => {
            return Err(RegistryError::Corrupt("membership record of a scrubbed model"));
        }
    };
    if membership.is_scrubbed() != status.is_retired() {
        return Err(RegistryError::Corrupt("membership state disagrees with status"));
    }
    if matches!(tags, Tags::Stored(Some(_))) && membership.len() != m.subjects {
        return Err(RegistryError::Corrupt("membership record disagrees with the subject count"));
    }
    Ok(ModelVersion {
        id,
        name,
        version: s.version,
        algorithm: s.algorithm,
        status,
        created_at: UtcMicros(s.created_at),
        metrics: s.metrics,
        blob: BlobInfo { digest: s.blob.digest, len: s.blob.len },
        manifest: Manifest {
            data_window: (UtcMicros(m.data_window[0]), UtcMicros(m.data_window[1])),
            log_position: m.log_position,
            subjects: m.subjects,
            membership,
            features: m.features,
            hyperparameters: m.hyperparameters,
            metrics: m.metrics,
            code_version: m.code_version,
            shards: m.shards.into_iter().map(|s| ShardInfo { index: s.index, subjects: s.subjects }).collect(),
        },
    })
}

/// Encodes the tags of a held membership; `None` once scrubbed.
pub(crate) fn encode_membership(m: &Membership) -> Option<Vec<u8>> {
    let salt = m.salt()?;
    let tags = m.tags();
    let mut out = Vec::with_capacity(1 + 32 + tags.len() * TAG_LEN);
    out.push(MEMBERSHIP_FORMAT);
    out.extend_from_slice(salt.as_bytes());
    for t in tags {
        out.extend_from_slice(t);
    }
    Some(out)
}

/// Splits a stored membership into its salt and its raw, validated tag bytes.
///
/// # Errors
/// Unknown format byte; `Corrupt` when truncated, ragged or not strictly ascending (a binary
/// search over unsorted tags could miss a member).
pub(crate) fn split_membership(bytes: &[u8]) -> Result<(MembershipSalt, &[u8])> {
    let (&version, rest) = bytes.split_first().ok_or(RegistryError::Corrupt("empty membership record"))?;
    if version != MEMBERSHIP_FORMAT {
        return Err(RegistryError::UnsupportedVersion { what: "membership record", version });
    }
    if rest.len() < 32 || (rest.len() - 32) % TAG_LEN != 0 {
        return Err(RegistryError::Corrupt("membership record has a ragged length"));
    }
    let (salt, tags) = rest.split_at(32);
    let mut s = [0u8; 32];
    s.copy_from_slice(salt);
    let mut chunks = tags.chunks_exact(TAG_LEN);
    if let Some(mut prev) = chunks.next() {
        for t in chunks {
            if t <= prev {
                return Err(RegistryError::Corrupt("membership tags are not strictly ascending"));
            }
            prev = t;
        }
    }
    Ok((MembershipSalt::from_bytes(s), tags))
}

/// Decodes a stored membership.
///
/// # Errors
/// As [`split_membership`].
pub(crate) fn decode_membership(bytes: &[u8]) -> Result<Membership> {
    let (salt, raw) = split_membership(bytes)?;
    let tags: Vec<Tag> = raw
        .chunks_exact(TAG_LEN)
        .map(|c| {
            let mut t = [0u8; TAG_LEN];
            t.copy_from_slice(c);
            t
        })
        .collect();
    Ok(Membership::from_stored(salt, tags))
}

/// Encodes a pointer to a model.
pub(crate) fn encode_pointer(id: ModelId) -> [u8; 17] {
    let mut out = [0u8; 17];
    out[0] = POINTER_FORMAT;
    out[1..].copy_from_slice(id.as_bytes());
    out
}

/// Decodes a pointer to a model.
///
/// # Errors
/// Unknown format byte, or a length other than 17.
pub(crate) fn decode_pointer(bytes: &[u8]) -> Result<ModelId> {
    let (&version, rest) = bytes.split_first().ok_or(RegistryError::Corrupt("empty pointer"))?;
    if version != POINTER_FORMAT {
        return Err(RegistryError::UnsupportedVersion { what: "pointer", version });
    }
    let id: [u8; 16] = rest.try_into().map_err(|_| RegistryError::Corrupt("pointer has the wrong length"))?;
    Ok(ModelId::from_bytes(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lethe_domain::Pseudonym;

    /// A version-1 model record as written to disk. It must decode forever.
    const GOLDEN_V1: &str = concat!(
        r#"{"id":"01890a5d-ac96-774b-bcce-b302099a8057","name":"recs-als","version":3,"algorithm":"als","#,
        r#""status":{"kind":"retired","at":1700000100000000,"reason":"unlearning"},"created_at":1700000000000000,"#,
        r#""metrics":{"ndcg@10":0.3125},"blob":{"digest":"#,
        r#""e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","len":4096},"#,
        r#""manifest":{"data_window":[1690000000000000,1700000000000000],"log_position":81234,"subjects":2,"#,
        r#""membership":"scrubbed","features":["item","dwell"],"hyperparameters":{"factors":32,"reg":0.01},"#,
        r#""metrics":{"recall@20":0.5},"code_version":"d5dfd10","shards":[{"index":0,"subjects":1},"#,
        r#"{"index":1,"subjects":1}]}}"#
    );

    fn golden() -> ModelVersion {
        ModelVersion {
            id: "01890a5d-ac96-774b-bcce-b302099a8057".parse().unwrap(),
            name: ModelName::parse("recs-als").unwrap(),
            version: 3,
            algorithm: "als".into(),
            status: Status::Retired { at: UtcMicros(1_700_000_100_000_000), reason: RetireReason::Unlearning },
            created_at: UtcMicros(1_700_000_000_000_000),
            metrics: BTreeMap::from([("ndcg@10".to_owned(), 0.3125)]),
            blob: BlobInfo {
                digest: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
                len: 4096,
            },
            manifest: Manifest {
                data_window: (UtcMicros(1_690_000_000_000_000), UtcMicros(1_700_000_000_000_000)),
                log_position: 81_234,
                subjects: 2,
                membership: Membership::scrubbed(),
                features: vec!["item".into(), "dwell".into()],
                hyperparameters: serde_json::json!({"factors": 32, "reg": 0.01}),
                metrics: BTreeMap::from([("recall@20".to_owned(), 0.5)]),
                code_version: "d5dfd10".into(),
                shards: vec![ShardInfo { index: 0, subjects: 1 }, ShardInfo { index: 1, subjects: 1 }],
            },
        }
    }

    #[test]
    fn golden_v1_decodes_and_re_encodes_identically() {
        let mut stored = vec![1u8];
        stored.extend_from_slice(GOLDEN_V1.as_bytes());
        let g = golden();
        assert_eq!(decode_model(g.id, &stored, Tags::Stored(None)).unwrap(), g);
        assert_eq!(encode_model(&g).unwrap(), stored);
    }

    #[test]
    fn every_status_round_trips_with_its_membership() {
        let mut m = golden();
        m.manifest.membership = Membership::new(&[Pseudonym::from_bytes([1; 32]), Pseudonym::from_bytes([2; 32])]);
        for status in [Status::Candidate, Status::Canary { share_permille: 50 }, Status::Live] {
            m.status = status;
            let raw = encode_membership(&m.manifest.membership).unwrap();
            assert_eq!(decode_model(m.id, &encode_model(&m).unwrap(), Tags::Stored(Some(&raw))).unwrap(), m);
        }
    }

    #[test]
    fn rejects_garbage_and_inconsistent_records() {
        let g = golden();
        let id = g.id;
        let good = encode_model(&g).unwrap();
        assert_eq!(decode_model(id, &[], Tags::NotLoaded).unwrap_err().code(), "registry_corrupt");
        assert_eq!(decode_model(id, &[1, b'{'], Tags::NotLoaded).unwrap_err().code(), "registry_corrupt");
        assert_eq!(
            decode_model(id, &[7, b'{', b'}'], Tags::NotLoaded).unwrap_err().code(),
            "registry_unsupported_version"
        );
        // Filed under another id.
        assert!(decode_model(ModelId::from_bytes([0; 16]), &good, Tags::NotLoaded).is_err());
        // Retired but with tags; held but without them.
        assert!(decode_model(id, &good, Tags::Stored(Some(&[1; 33]))).is_err());
        let held = String::from_utf8(good[1..].to_vec()).unwrap().replace("\"scrubbed\"", "\"held\"");
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(held.as_bytes());
        assert!(decode_model(id, &bytes, Tags::Stored(None)).is_err());
        assert!(decode_model(id, &bytes, Tags::NotLoaded).is_err(), "held but retired");
        // A bad name, an unknown field.
        for (from, to) in [("recs-als", "Recs ALS"), ("\"len\":4096", "\"len\":4096,\"x\":1")] {
            let text = GOLDEN_V1.replace(from, to);
            let mut bytes = vec![1u8];
            bytes.extend_from_slice(text.as_bytes());
            assert_eq!(decode_model(id, &bytes, Tags::NotLoaded).unwrap_err().code(), "registry_corrupt", "{to}");
        }
    }

    #[test]
    fn membership_records_must_be_sorted_and_whole() {
        let m = Membership::new(&[Pseudonym::from_bytes([1; 32]), Pseudonym::from_bytes([2; 32])]);
        let raw = encode_membership(&m).unwrap();
        assert_eq!(decode_membership(&raw).unwrap(), m);
        assert!(decode_membership(&raw[..raw.len() - 1]).is_err());
        let mut swapped = raw.clone();
        let (head, tail) = swapped[33..].split_at_mut(TAG_LEN);
        head.swap_with_slice(tail);
        assert!(decode_membership(&swapped).is_err());
        let mut dup = raw[..33 + TAG_LEN].to_vec();
        dup.extend_from_slice(&raw[33..33 + TAG_LEN]);
        assert!(decode_membership(&dup).is_err());
        assert!(decode_membership(&[2; 33]).is_err());
        assert!(encode_membership(&Membership::scrubbed()).is_none());
    }

    #[test]
    fn pointers_round_trip() {
        let id = ModelId::from_bytes([9; 16]);
        assert_eq!(decode_pointer(&encode_pointer(id)).unwrap(), id);
        assert!(decode_pointer(&[1, 2, 3]).is_err());
        assert!(decode_pointer(&[]).is_err());
        let mut v2 = encode_pointer(id);
        v2[0] = 2;
        assert!(decode_pointer(&v2).is_err());
    }
}
