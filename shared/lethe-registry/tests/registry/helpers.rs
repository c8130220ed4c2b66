//! A registry in a temporary directory, subjects, manifests and byte scans.

use std::collections::{BTreeMap, HashMap};

use lethe_domain::{Pseudonym, UtcMicros};
use lethe_registry::{Manifest, Membership, ModelId, ModelName, ModelVersion, NewModel, Registry, SecretBytes};
use sha2::{Digest, Sha256};

pub const TREE: &str = "models";

/// A registry over a sled database in its own directory. Fields drop in order: registry, tree,
/// database, directory.
pub struct Env {
    pub reg: Registry,
    pub tree: sled::Tree,
    pub db: sled::Db,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Self::at(tempfile::tempdir().unwrap())
    }

    fn at(dir: tempfile::TempDir) -> Self {
        let db = sled_open_retrying(&dir.path().join("db"));
        let tree = db.open_tree(TREE).unwrap();
        let reg = Registry::open(tree.clone()).unwrap();
        Self { reg, tree, db, dir }
    }

    /// Closes the database and opens it again from its files.
    pub fn reopen(self) -> Self {
        let Self { reg, tree, db, dir } = self;
        db.flush().unwrap();
        drop((reg, tree, db));
        Self::at(dir)
    }

    /// Registers a model of `name` trained on `subjects`, with `blob` as its bytes.
    pub fn register(&self, name: &str, subjects: &[Pseudonym], blob: &[u8], kek: &SecretBytes) -> ModelVersion {
        self.reg.register(new_model(name, subjects, 0), blob, kek, t(1)).unwrap()
    }

    /// The raw stored value of a key made of a two-byte prefix and a model id.
    pub fn raw(&self, prefix: &[u8], id: ModelId) -> Option<sled::IVec> {
        self.tree.get(id_key(prefix, id)).unwrap()
    }

    pub fn put(&self, key: impl AsRef<[u8]>, value: &[u8]) {
        self.tree.insert(key.as_ref(), value).unwrap();
    }
}

pub fn id_key(prefix: &[u8], id: ModelId) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

pub fn name_key(prefix: &[u8], name: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn kek(n: u8) -> SecretBytes {
    SecretBytes::new([n; 32])
}

pub fn t(micros: i64) -> UtcMicros {
    UtcMicros(1_800_000_000_000_000 + micros)
}

/// The `i`-th test subject: SHA-256 of a label, so subjects look like real pseudonyms.
pub fn pseudonym(i: u64) -> Pseudonym {
    let mut h = Sha256::new();
    h.update(b"subject-");
    h.update(i.to_be_bytes());
    Pseudonym::from_bytes(h.finalize().into())
}

pub fn subjects(range: std::ops::Range<u64>) -> Vec<Pseudonym> {
    range.map(pseudonym).collect()
}

pub fn name(s: &str) -> ModelName {
    ModelName::parse(s).unwrap()
}

pub fn manifest(subjects: &[Pseudonym], shards: u32) -> Manifest {
    let membership = Membership::new(subjects);
    Manifest {
        data_window: (t(-1_000), t(0)),
        log_position: 4_242,
        subjects: membership.len(),
        shards: membership.shard_counts(shards),
        membership,
        features: vec!["item".into(), "dwell_ms".into()],
        hyperparameters: serde_json::json!({"factors": 16, "reg": 0.05, "iterations": 10}),
        metrics: BTreeMap::from([("ndcg@10".to_owned(), 0.27)]),
        code_version: "test-0.1.0".into(),
    }
}

pub fn new_model(model: &str, subjects: &[Pseudonym], shards: u32) -> NewModel {
    NewModel {
        name: name(model),
        algorithm: "als".into(),
        manifest: manifest(subjects, shards),
        metrics: BTreeMap::from([("auc".to_owned(), 0.71), ("logloss".to_owned(), 0.43)]),
    }
}

/// The indexes of the needles that occur in `haystack`.
pub fn find_any(haystack: &[u8], needles: &[Vec<u8>]) -> Vec<usize> {
    const HEAD: usize = 8;
    let mut by_head: HashMap<&[u8], Vec<usize>> = HashMap::new();
    for (i, n) in needles.iter().enumerate() {
        assert!(n.len() >= HEAD);
        by_head.entry(&n[..HEAD]).or_default().push(i);
    }
    let mut found = Vec::new();
    for (pos, w) in haystack.windows(HEAD).enumerate() {
        if let Some(candidates) = by_head.get(w) {
            for &i in candidates {
                if haystack[pos..].starts_with(&needles[i]) {
                    found.push(i);
                }
            }
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// Each byte string as itself, lowercase hex and uppercase hex.
pub fn with_hex(raw: &[&[u8]]) -> Vec<Vec<u8>> {
    raw.iter().flat_map(|b| [b.to_vec(), hex::encode(b).into_bytes(), hex::encode_upper(b).into_bytes()]).collect()
}

/// Every stored key and value of the tree, concatenated.
pub fn tree_bytes(tree: &sled::Tree) -> Vec<u8> {
    let mut out = Vec::new();
    for kv in tree.iter() {
        let (k, v) = kv.unwrap();
        out.extend_from_slice(&k);
        out.push(0xff);
        out.extend_from_slice(&v);
        out.push(0xff);
    }
    out
}

pub use lethe_testkit::{file_contents_under as files_under, sled_open_retrying};
