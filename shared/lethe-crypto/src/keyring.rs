//! The key store on disk (`<data-dir>/keys/`): the manifest, one key-encryption key (KEK) file per
//! live epoch, and the pseudonym secret. Subject data keys are not kept here: the log stores them
//! wrapped under the current epoch's KEK, and this module wraps and unwraps them.
//!
//! Why epochs: the log's storage engine keeps removed and overwritten bytes in its files, so deleting
//! a wrapped data key destroys nothing. What destroys it is the loss of the KEK that wrapped it. A
//! rotation creates a new epoch, re-wraps every surviving data key under it, and then overwrites
//! and unlinks the old epoch's file, which holds the only copy of the old KEK. Stale wrapped keys
//! left in the log's files are then ciphertext under a key that no longer exists.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use lethe_domain::{KeyId, Pseudonym, SubjectId};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::master::{parse_hex_key, read_key_file, DEV_KEY_FILE};
use crate::shred::{destroy_file, sync_dir, write_atomic};
use crate::{CryptoError, DataKey, KdfParams, MasterSource, Nonce, Result, SecretBytes, NONCE_LEN, TAG_LEN};

/// Folder of the key store inside the data directory.
pub const KEYS_DIR: &str = "keys";
/// First bytes of every wrapped data key, so that forensic scans can find them.
pub const WRAPPED_KEY_MAGIC: &[u8; 4] = b"LWK1";
/// Length of an encoded wrapped data key.
pub const WRAPPED_KEY_LEN: usize = 4 + 4 + NONCE_LEN + 32 + TAG_LEN;

const MANIFEST: &str = "keyring.json";
const PSEUDONYM_FILE: &str = "pseudonym.key";
const MANIFEST_FORMAT: u32 = 1;
const SECRET_FILE_LEN: usize = 4 + 1 + 4 + NONCE_LEN + 32 + TAG_LEN;

/// A key-encryption-key epoch. Epochs only grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Epoch(pub u32);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A subject data key wrapped under one epoch's KEK. The associated data binds the subject's
/// pseudonym, the key generation and the epoch, so a wrapped key copied to another subject does not
/// unwrap.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub epoch: Epoch,
    nonce: Nonce,
    sealed: [u8; 32 + TAG_LEN],
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey").field("epoch", &self.epoch).finish_non_exhaustive()
    }
}

impl WrappedKey {
    /// Encodes as `LWK1 | epoch (u32 BE) | nonce | sealed key + tag`.
    pub fn to_bytes(&self) -> [u8; WRAPPED_KEY_LEN] {
        let mut out = [0u8; WRAPPED_KEY_LEN];
        out[..4].copy_from_slice(WRAPPED_KEY_MAGIC);
        out[4..8].copy_from_slice(&self.epoch.0.to_be_bytes());
        out[8..8 + NONCE_LEN].copy_from_slice(&self.nonce);
        out[8 + NONCE_LEN..].copy_from_slice(&self.sealed);
        out
    }

    /// Decodes [`Self::to_bytes`].
    ///
    /// # Errors
    /// Wrong length or magic.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != WRAPPED_KEY_LEN {
            return Err(CryptoError::MalformedWrappedKey("wrong length"));
        }
        if &bytes[..4] != WRAPPED_KEY_MAGIC {
            return Err(CryptoError::MalformedWrappedKey("wrong magic"));
        }
        let epoch = Epoch(u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes")));
        let nonce: Nonce = bytes[8..8 + NONCE_LEN].try_into().expect("12 bytes");
        let sealed = bytes[8 + NONCE_LEN..].try_into().expect("48 bytes");
        Ok(Self { epoch, nonce, sealed })
    }
}

fn dek_aad(subject: &Pseudonym, key_id: KeyId, epoch: Epoch) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + 32 + 8);
    aad.extend_from_slice(b"lethe-dek-v1");
    aad.extend_from_slice(subject.as_bytes());
    aad.extend_from_slice(&key_id.0.to_be_bytes());
    aad.extend_from_slice(&epoch.0.to_be_bytes());
    aad
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    /// Random identity of this key store; the log records it and refuses any other key store.
    #[serde(default)]
    id: String,
    current_epoch: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kdf: Option<KdfParams>,
    /// Nonce and ciphertext of a constant under the master secret, to tell a wrong secret apart.
    check: String,
}

const CHECK_AAD: &[u8] = b"lethe-master-check-v1";
const CHECK_PLAIN: &[u8] = b"lethe";

/// A new epoch created by [`Keyring::begin_rotation`], to be committed by [`Keyring::finish_rotation`]
/// once every surviving data key is durably re-wrapped under it.
#[derive(Debug)]
#[must_use = "a rotation is only final once finish_rotation destroys the old epoch"]
pub struct RotationPlan {
    pub from: Epoch,
    pub to: Epoch,
}

/// The open key store.
pub struct Keyring {
    dir: PathBuf,
    master: DataKey,
    current: Epoch,
    keks: BTreeMap<Epoch, (DataKey, SecretBytes)>,
    pseudonym_mac: Hmac<Sha256>,
    kdf: Option<KdfParams>,
    id: String,
    dev_key: bool,
    dev_key_created: bool,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("dir", &self.dir)
            .field("current", &self.current)
            .field("epochs", &self.keks.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// Opens the key store under `data_dir/keys`, creating it (and, with
    /// [`MasterSource::DevKeyFile`], a development master key) when it does not exist. Epoch files
    /// older than the manifest's current epoch are leftovers of an interrupted rotation and are
    /// destroyed here.
    ///
    /// # Errors
    /// Wrong or missing master secret, malformed key files, a missing current epoch, IO errors.
    pub fn open(data_dir: &Path, source: &MasterSource) -> Result<Self> {
        let dir = data_dir.join(KEYS_DIR);
        std::fs::create_dir_all(&dir).map_err(CryptoError::io(&dir))?;
        restrict_dir(&dir);
        let manifest_path = dir.join(MANIFEST);
        if manifest_path.exists() {
            Self::open_existing(data_dir, dir, source)
        } else {
            Self::create(data_dir, dir, source)
        }
    }

    fn resolve_master(
        data_dir: &Path,
        source: &MasterSource,
        kdf: Option<&KdfParams>,
        create: bool,
    ) -> Result<(SecretBytes, bool)> {
        match (source, kdf) {
            (MasterSource::Passphrase(p), Some(kdf)) => Ok((kdf.derive(p)?, false)),
            (MasterSource::Passphrase(_), None) => Err(CryptoError::InvalidMasterSecret(
                "this key store was not created from a passphrase; give its key instead".into(),
            )),
            (_, Some(_)) => Err(CryptoError::PassphraseRequired { dir: data_dir.join(KEYS_DIR) }),
            (MasterSource::KeyFile(path), None) => Ok((read_key_file(path)?, false)),
            (MasterSource::Hex(hex), None) => Ok((parse_hex_key(hex)?, false)),
            (MasterSource::DevKeyFile, None) => {
                let path = data_dir.join(DEV_KEY_FILE);
                if path.exists() {
                    Ok((read_key_file(&path)?, false))
                } else if create {
                    let key = SecretBytes::random();
                    write_atomic(&path, hex::encode(key.expose()).as_bytes())?;
                    Ok((key, true))
                } else {
                    Err(CryptoError::InvalidMasterSecret(
                        "no master secret: set LETHE_MASTER_KEY, LETHE_MASTER_KEY_FILE or LETHE_PASSPHRASE".into(),
                    ))
                }
            }
        }
    }

    fn create(data_dir: &Path, dir: PathBuf, source: &MasterSource) -> Result<Self> {
        let kdf = matches!(source, MasterSource::Passphrase(_)).then(KdfParams::fresh);
        let (master_secret, dev_key_created) = Self::resolve_master(data_dir, source, kdf.as_ref(), true)?;
        let master = DataKey::new(&master_secret);
        let epoch = Epoch(1);
        let kek = SecretBytes::random();
        write_secret_file(&master, &dir.join(epoch_file(epoch)), *b"LKEK", epoch.0, &kek)?;
        let pseudonym = SecretBytes::random();
        write_secret_file(&master, &dir.join(PSEUDONYM_FILE), *b"LPSK", 0, &pseudonym)?;
        let nonce: Nonce = crate::random_bytes();
        let mut check = nonce.to_vec();
        check.extend(master.seal(&nonce, CHECK_AAD, CHECK_PLAIN));
        let id = hex::encode(crate::random_bytes::<16>());
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            id: id.clone(),
            current_epoch: epoch.0,
            kdf: kdf.clone(),
            check: hex::encode(check),
        };
        write_manifest(&dir, &manifest)?;
        let mut keks = BTreeMap::new();
        keks.insert(epoch, (DataKey::new(&kek), kek));
        Ok(Self {
            dir,
            master,
            current: epoch,
            keks,
            pseudonym_mac: new_mac(&pseudonym),
            kdf,
            id,
            dev_key: matches!(source, MasterSource::DevKeyFile),
            dev_key_created,
        })
    }

    fn open_existing(data_dir: &Path, dir: PathBuf, source: &MasterSource) -> Result<Self> {
        let manifest_path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&manifest_path).map_err(CryptoError::io(&manifest_path))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| CryptoError::Malformed { path: manifest_path.clone(), reason: e.to_string() })?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(CryptoError::Malformed {
                path: manifest_path,
                reason: format!("key store format {} is not known to this version of Lethe", manifest.format),
            });
        }
        let (master_secret, _) = Self::resolve_master(data_dir, source, manifest.kdf.as_ref(), false)?;
        let master = DataKey::new(&master_secret);
        let check = hex::decode(&manifest.check).ok().filter(|c| c.len() > NONCE_LEN);
        let Some(check) = check else {
            return Err(CryptoError::Malformed { path: manifest_path, reason: "bad check value".into() });
        };
        let nonce: Nonce = check[..NONCE_LEN].try_into().expect("12 bytes");
        if master.open(&nonce, CHECK_AAD, &check[NONCE_LEN..]).ok().as_deref() != Some(CHECK_PLAIN) {
            return Err(CryptoError::WrongMasterSecret(dir));
        }
        let current = Epoch(manifest.current_epoch);
        let mut keks = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(CryptoError::io(&dir))? {
            let entry = entry.map_err(CryptoError::io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(n) = name.strip_prefix("epoch-").and_then(|s| s.strip_suffix(".kek")) else { continue };
            let Ok(n) = n.parse::<u32>() else { continue };
            let epoch = Epoch(n);
            let path = entry.path();
            if epoch < current {
                tracing::warn!(%epoch, "destroying the KEK of an epoch left behind by an interrupted rotation");
                destroy_file(&path)?;
                continue;
            }
            let kek = read_secret_file(&master, &path, *b"LKEK", epoch.0)?;
            keks.insert(epoch, (DataKey::new(&kek), kek));
        }
        if !keks.contains_key(&current) {
            return Err(CryptoError::MissingEpoch(current.0));
        }
        let pseudonym = read_secret_file(&master, &dir.join(PSEUDONYM_FILE), *b"LPSK", 0)?;
        let current = *keks.keys().next_back().expect("non-empty");
        Ok(Self {
            dir,
            master,
            current,
            keks,
            pseudonym_mac: new_mac(&pseudonym),
            kdf: manifest.kdf,
            id: manifest.id,
            dev_key: matches!(source, MasterSource::DevKeyFile),
            dev_key_created: false,
        })
    }

    /// Whether the master secret is the development key file next to the data.
    pub fn uses_dev_key(&self) -> bool {
        self.dev_key
    }

    /// The key store's random identity (empty for a store written before identities existed).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether this open created the development key file.
    pub fn dev_key_created(&self) -> bool {
        self.dev_key_created
    }

    /// The key store folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The keyed pseudonym of an external identifier: HMAC-SHA256 under the pseudonym secret.
    pub fn pseudonymize(&self, id: &SubjectId) -> Pseudonym {
        let mut mac = self.pseudonym_mac.clone();
        mac.update(b"lethe-subject-v1\0");
        mac.update(id.expose().as_bytes());
        Pseudonym::from_bytes(mac.finalize().into_bytes().into())
    }

    /// The epoch new data keys are wrapped under.
    pub fn current_epoch(&self) -> Epoch {
        self.current
    }

    /// Every epoch whose KEK is present. More than one means a rotation is under way or was
    /// interrupted before its old epoch was destroyed.
    pub fn epochs(&self) -> Vec<Epoch> {
        self.keks.keys().copied().collect()
    }

    /// Wraps a data key under the current epoch. Wrapping nonces are random: a KEK wraps far fewer
    /// than 2^32 keys in its lifetime, the bound under which random 96-bit nonces are safe.
    pub fn wrap(&self, subject: &Pseudonym, key_id: KeyId, dek: &SecretBytes) -> WrappedKey {
        let (kek, _) = &self.keks[&self.current];
        let nonce: Nonce = crate::random_bytes();
        let sealed = kek.seal(&nonce, &dek_aad(subject, key_id, self.current), dek.expose());
        let sealed = sealed.try_into().expect("32-byte key + 16-byte tag");
        WrappedKey { epoch: self.current, nonce, sealed }
    }

    /// Unwraps a data key.
    ///
    /// # Errors
    /// [`CryptoError::MissingEpoch`] when its epoch was destroyed; [`CryptoError::Decrypt`] when it
    /// belongs to another subject or key generation, or was altered.
    pub fn unwrap(&self, subject: &Pseudonym, key_id: KeyId, wrapped: &WrappedKey) -> Result<SecretBytes> {
        let (kek, _) = self.keks.get(&wrapped.epoch).ok_or(CryptoError::MissingEpoch(wrapped.epoch.0))?;
        let plain = kek.open(&wrapped.nonce, &dek_aad(subject, key_id, wrapped.epoch), &wrapped.sealed)?;
        let bytes: [u8; 32] = plain.as_slice().try_into().map_err(|_| CryptoError::Decrypt)?;
        Ok(SecretBytes::new(bytes))
    }

    /// Starts a rotation: creates and syncs the next epoch's KEK file and makes it current for
    /// wrapping. The old epoch stays readable until [`Self::finish_rotation`].
    ///
    /// # Errors
    /// IO errors writing the new epoch.
    pub fn begin_rotation(&mut self) -> Result<RotationPlan> {
        let from = self.current;
        let to = Epoch(from.0.checked_add(1).ok_or(CryptoError::Kdf("epoch counter exhausted".into()))?);
        let kek = SecretBytes::random();
        write_secret_file(&self.master, &self.dir.join(epoch_file(to)), *b"LKEK", to.0, &kek)?;
        self.keks.insert(to, (DataKey::new(&kek), kek));
        self.current = to;
        Ok(RotationPlan { from, to })
    }

    /// Completes a rotation. The caller promises that every surviving data key is durably wrapped
    /// under `plan.to`. The manifest moves to the new epoch, then every older epoch's file is
    /// overwritten, synced and unlinked.
    ///
    /// # Errors
    /// IO errors; the rotation is then completed at the next open.
    pub fn finish_rotation(&mut self, plan: RotationPlan) -> Result<()> {
        let mut manifest = self.read_manifest()?;
        manifest.current_epoch = plan.to.0;
        write_manifest(&self.dir, &manifest)?;
        let old: Vec<Epoch> = self.keks.keys().copied().filter(|e| *e < plan.to).collect();
        for epoch in old {
            destroy_file(&self.dir.join(epoch_file(epoch)))?;
            self.keks.remove(&epoch);
        }
        sync_dir(&self.dir)
    }

    fn read_manifest(&self) -> Result<Manifest> {
        let path = self.dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(CryptoError::io(&path))?;
        serde_json::from_str(&text).map_err(|e| CryptoError::Malformed { path, reason: e.to_string() })
    }

    /// The KEK of a live epoch. Exists for forensic tests that prove a destroyed epoch's key no longer
    /// appears anywhere; production code has no use for it.
    #[doc(hidden)]
    pub fn epoch_secret_for_forensics(&self, epoch: Epoch) -> Option<SecretBytes> {
        self.keks.get(&epoch).map(|(_, s)| s.clone())
    }

    /// Stores a secret of any size (for example the API signing keys) in `keys/<name>.sealed`,
    /// encrypted under the master secret with the name as associated data.
    ///
    /// # Errors
    /// A name that is not `[a-z0-9-]{1,32}`, or IO errors.
    pub fn put_blob(&self, name: &str, data: &[u8]) -> Result<()> {
        let path = self.blob_path(name)?;
        let nonce: Nonce = crate::random_bytes();
        let mut bytes = BLOB_MAGIC.to_vec();
        bytes.extend_from_slice(&nonce);
        bytes.extend(self.master.seal(&nonce, &blob_aad(name), data));
        write_atomic(&path, &bytes)
    }

    /// Reads a secret stored by [`Self::put_blob`]; `None` when there is none.
    ///
    /// # Errors
    /// A bad name, IO errors, or a file that does not open under the master secret.
    pub fn blob(&self, name: &str) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
        let path = self.blob_path(name)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CryptoError::io(&path)(e)),
        };
        let malformed = |reason: &str| CryptoError::Malformed { path: path.clone(), reason: reason.into() };
        if bytes.len() < 4 + NONCE_LEN + TAG_LEN || &bytes[..4] != BLOB_MAGIC {
            return Err(malformed("not a Lethe sealed file"));
        }
        let nonce: Nonce = bytes[4..4 + NONCE_LEN].try_into().expect("12 bytes");
        let plain = self
            .master
            .open(&nonce, &blob_aad(name), &bytes[4 + NONCE_LEN..])
            .map_err(|_| malformed("does not decrypt under the master secret"))?;
        Ok(Some(zeroize::Zeroizing::new(plain)))
    }

    /// The names of the blobs stored by [`Self::put_blob`] that start with `prefix`, sorted (as
    /// strings). A name whose sealed file is missing but whose temp file, left by an interrupted
    /// [`Self::put_blob`], holds a blob is listed too, so that [`Self::destroy_blob`] can remove it;
    /// [`Self::blob`] reads such a name as `None`.
    ///
    /// # Errors
    /// A prefix that no blob name can start with (not `[a-z0-9-]{0,32}`), or IO errors.
    pub fn blob_names(&self, prefix: &str) -> Result<Vec<String>> {
        if prefix.len() > 32 || !prefix.bytes().all(blob_name_byte) {
            return Err(CryptoError::InvalidMasterSecret(format!("bad sealed file name prefix `{prefix}`")));
        }
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(CryptoError::io(&self.dir))? {
            let entry = entry.map_err(CryptoError::io(&self.dir))?;
            let file = entry.file_name();
            let Some(file) = file.to_str() else { continue };
            let name = match (file.strip_suffix(BLOB_SUFFIX), file.strip_suffix(TEMP_SUFFIX)) {
                (Some(name), _) => name,
                (None, Some(name)) if is_blob_file(&entry.path()) => name,
                _ => continue,
            };
            if name.starts_with(prefix) && valid_blob_name(name) {
                names.push(name.to_owned());
            }
        }
        names.sort_unstable();
        names.dedup();
        Ok(names)
    }

    /// Destroys a blob stored by [`Self::put_blob`]: its sealed file is overwritten, synced and
    /// unlinked ([`destroy_file`]), and so is a temp file of the name left by an interrupted
    /// [`Self::put_blob`]. Returns whether the blob existed (its sealed file); destroying a blob
    /// that does not exist is not an error.
    ///
    /// # Errors
    /// A bad name, or IO errors: the blob may then still exist.
    pub fn destroy_blob(&self, name: &str) -> Result<bool> {
        let path = self.blob_path(name)?;
        let tmp = self.dir.join(format!("{name}{TEMP_SUFFIX}"));
        // A temp file of the name that is not a blob belongs to another writer of this folder.
        if is_blob_file(&tmp) {
            destroy_file(&tmp)?;
        }
        let existed = match std::fs::symlink_metadata(&path) {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(CryptoError::io(&path)(e)),
        };
        destroy_file(&path)?;
        Ok(existed)
    }

    fn blob_path(&self, name: &str) -> Result<PathBuf> {
        if !valid_blob_name(name) {
            return Err(CryptoError::InvalidMasterSecret(format!("bad sealed file name `{name}`")));
        }
        Ok(self.dir.join(format!("{name}{BLOB_SUFFIX}")))
    }

    /// The argon2id parameters, when the master secret comes from a passphrase.
    pub fn kdf(&self) -> Option<&KdfParams> {
        self.kdf.as_ref()
    }
}

fn new_mac(secret: &SecretBytes) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose()).expect("HMAC takes any key length")
}

fn epoch_file(epoch: Epoch) -> String {
    format!("epoch-{:010}.kek", epoch.0)
}

fn secret_aad(magic: [u8; 4], n: u32) -> Vec<u8> {
    let mut aad = b"lethe-secret-v1".to_vec();
    aad.extend_from_slice(&magic);
    aad.extend_from_slice(&n.to_be_bytes());
    aad
}

fn write_secret_file(master: &DataKey, path: &Path, magic: [u8; 4], n: u32, secret: &SecretBytes) -> Result<()> {
    let nonce: Nonce = crate::random_bytes();
    let mut bytes = Vec::with_capacity(SECRET_FILE_LEN);
    bytes.extend_from_slice(&magic);
    bytes.push(1);
    bytes.extend_from_slice(&n.to_be_bytes());
    bytes.extend_from_slice(&nonce);
    bytes.extend(master.seal(&nonce, &secret_aad(magic, n), secret.expose()));
    write_atomic(path, &bytes)
}

fn read_secret_file(master: &DataKey, path: &Path, magic: [u8; 4], n: u32) -> Result<SecretBytes> {
    let bytes = std::fs::read(path).map_err(CryptoError::io(path))?;
    let malformed = |reason: &str| CryptoError::Malformed { path: path.to_owned(), reason: reason.into() };
    if bytes.len() != SECRET_FILE_LEN || bytes[..4] != magic || bytes[4] != 1 {
        return Err(malformed("not a Lethe secret file of format 1"));
    }
    if bytes[5..9] != n.to_be_bytes() {
        return Err(malformed("file name and content disagree"));
    }
    let nonce: Nonce = bytes[9..9 + NONCE_LEN].try_into().expect("12 bytes");
    let plain = master
        .open(&nonce, &secret_aad(magic, n), &bytes[9 + NONCE_LEN..])
        .map_err(|_| malformed("does not decrypt under the master secret"))?;
    let arr: [u8; 32] = plain.as_slice().try_into().map_err(|_| malformed("wrong secret length"))?;
    Ok(SecretBytes::new(arr))
}

/// The file of a blob is `<name>.sealed`; [`write_atomic`] writes it as `<name>.tmp` first.
const BLOB_SUFFIX: &str = ".sealed";
const TEMP_SUFFIX: &str = ".tmp";
/// First bytes of a blob's file.
const BLOB_MAGIC: &[u8; 4] = b"LBLB";

fn blob_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
}

fn valid_blob_name(name: &str) -> bool {
    (1..=32).contains(&name.len()) && name.bytes().all(blob_name_byte)
}

/// Whether `path` is a file that starts as a blob does (a temp file of the manifest or of an epoch
/// also ends in `.tmp`).
fn is_blob_file(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok()
        && &magic == BLOB_MAGIC
}

fn blob_aad(name: &str) -> Vec<u8> {
    let mut aad = b"lethe-blob-v1:".to_vec();
    aad.extend_from_slice(name.as_bytes());
    aad
}

fn write_manifest(dir: &Path, m: &Manifest) -> Result<()> {
    let text = serde_json::to_string_pretty(m).expect("manifest serializes");
    write_atomic(&dir.join(MANIFEST), text.as_bytes())
}

#[cfg(unix)]
fn restrict_dir(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

#[cfg(not(unix))]
fn restrict_dir(_dir: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(n: u8) -> Pseudonym {
        Pseudonym::from_bytes([n; 32])
    }

    #[test]
    fn new_store_with_dev_key_reopens_with_the_same_pseudonyms() {
        let d = tempfile::tempdir().unwrap();
        let k = Keyring::open(d.path(), &MasterSource::DevKeyFile).unwrap();
        assert!(k.dev_key_created());
        let id = SubjectId::parse("user-42").unwrap();
        let p = k.pseudonymize(&id);
        drop(k);
        let k2 = Keyring::open(d.path(), &MasterSource::DevKeyFile).unwrap();
        assert!(!k2.dev_key_created());
        assert_eq!(k2.pseudonymize(&id), p);
        assert_ne!(k2.pseudonymize(&SubjectId::parse("user-43").unwrap()), p);
    }

    #[test]
    fn wrong_master_secret_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let key = hex::encode([1u8; 32]);
        Keyring::open(d.path(), &MasterSource::Hex(key)).unwrap();
        let err = Keyring::open(d.path(), &MasterSource::Hex(hex::encode([2u8; 32]))).unwrap_err();
        assert!(matches!(err, CryptoError::WrongMasterSecret(_)), "{err}");
    }

    #[test]
    fn passphrase_store_needs_its_passphrase() {
        let d = tempfile::tempdir().unwrap();
        let k = Keyring::open(d.path(), &MasterSource::Passphrase("s3cret phrase".into())).unwrap();
        assert_eq!(k.kdf().unwrap().m_kib, KdfParams::MIN_M_KIB);
        drop(k);
        assert!(Keyring::open(d.path(), &MasterSource::Passphrase("s3cret phrase".into())).is_ok());
        assert!(matches!(
            Keyring::open(d.path(), &MasterSource::Passphrase("wrong".into())),
            Err(CryptoError::WrongMasterSecret(_))
        ));
        assert!(matches!(
            Keyring::open(d.path(), &MasterSource::DevKeyFile),
            Err(CryptoError::PassphraseRequired { .. })
        ));
    }

    #[test]
    fn wrapped_keys_are_bound_to_subject_and_generation() {
        let d = tempfile::tempdir().unwrap();
        let k = Keyring::open(d.path(), &MasterSource::DevKeyFile).unwrap();
        let dek = SecretBytes::random();
        let w = k.wrap(&subject(1), KeyId(0), &dek);
        let w = WrappedKey::parse(&w.to_bytes()).unwrap();
        assert_eq!(k.unwrap(&subject(1), KeyId(0), &w).unwrap(), dek);
        assert!(k.unwrap(&subject(2), KeyId(0), &w).is_err());
        assert!(k.unwrap(&subject(1), KeyId(1), &w).is_err());
    }

    #[test]
    fn sealed_blobs_round_trip_and_are_not_plaintext() {
        let d = tempfile::tempdir().unwrap();
        let k = Keyring::open(d.path(), &MasterSource::DevKeyFile).unwrap();
        assert!(k.blob("api-keys").unwrap().is_none());
        k.put_blob("api-keys", b"private signing key material").unwrap();
        assert_eq!(k.blob("api-keys").unwrap().unwrap().as_slice(), b"private signing key material");
        let raw = std::fs::read(d.path().join(KEYS_DIR).join("api-keys.sealed")).unwrap();
        assert!(!raw.windows(7).any(|w| w == b"private"));
        assert!(k.put_blob("../escape", b"x").is_err());
    }

    #[test]
    fn blob_names_list_a_prefix_sorted_with_leftover_temp_files() {
        let d = tempfile::tempdir().unwrap();
        let k = Keyring::open(d.path(), &MasterSource::DevKeyFile).unwrap();
        assert_eq!(k.blob_names("views-key-").unwrap(), Vec::<String>::new());
        for name in ["views-key-2", "views-key-10", "api-keys", "views-key-1"] {
            k.put_blob(name, name.as_bytes()).unwrap();
        }
        // An interrupted put_blob leaves a temp file holding a blob; the manifest's temp file is not one.
        let dir = d.path().join(KEYS_DIR);
        std::fs::copy(dir.join("views-key-1.sealed"), dir.join("views-key-7.tmp")).unwrap();
        std::fs::write(dir.join("views-key-8.tmp"), b"{\"format\": 1}").unwrap();
        std::fs::write(dir.join("views-key-9.sealed.bak"), b"x").unwrap();
        assert_eq!(k.blob_names("views-key-").unwrap(), ["views-key-1", "views-key-10", "views-key-2", "views-key-7"]);
        assert_eq!(k.blob_names("api").unwrap(), ["api-keys"]);
        let all = k.blob_names("").unwrap();
        assert_eq!(all.len(), 5, "{all:?}");
        assert!(!all.iter().any(|n| n == "keyring" || n == "pseudonym"), "{all:?}");
        assert_eq!(k.blob("views-key-7").unwrap(), None, "a leftover temp file is not a stored blob");
        assert!(k.blob_names("../").is_err());
        assert!(k.blob_names("Views").is_err());
    }

    #[test]
    fn a_destroyed_blob_is_overwritten_unlinked_and_reads_as_none() {
        let d = tempfile::tempdir().unwrap();
        let k = Keyring::open(d.path(), &MasterSource::DevKeyFile).unwrap();
        k.put_blob("views-key-1", &[7u8; 32]).unwrap();
        k.put_blob("views-key-2", &[8u8; 32]).unwrap();
        let dir = d.path().join(KEYS_DIR);
        let path = dir.join("views-key-1.sealed");
        let sealed = std::fs::read(&path).unwrap();
        // A second name for the same inode sees what destroy_blob does to the file's bytes.
        let witness = d.path().join("witness");
        std::fs::hard_link(&path, &witness).unwrap();
        std::fs::copy(&path, dir.join("views-key-1.tmp")).unwrap();

        assert!(k.destroy_blob("views-key-1").unwrap());
        assert_eq!(k.blob("views-key-1").unwrap(), None);
        assert!(!path.exists());
        assert!(!dir.join("views-key-1.tmp").exists(), "the leftover temp file goes too");
        let after = std::fs::read(&witness).unwrap();
        assert_eq!(after.len(), sealed.len());
        assert!(after.iter().all(|b| *b == 0), "the sealed bytes are overwritten before the unlink");
        // Others are kept; destroying again, or what never existed, is fine and says so.
        assert_eq!(k.blob("views-key-2").unwrap().unwrap().as_slice(), &[8u8; 32]);
        assert_eq!(k.blob_names("views-key-").unwrap(), ["views-key-2"]);
        assert!(!k.destroy_blob("views-key-1").unwrap());
        assert!(!k.destroy_blob("never-stored").unwrap());
        // A temp file of the name that is not a blob is left to its writer.
        std::fs::write(dir.join("keyring.tmp"), b"{}").unwrap();
        assert!(!k.destroy_blob("keyring").unwrap());
        assert!(dir.join("keyring.tmp").exists());
        assert!(dir.join(MANIFEST).exists());
        // Bad names are refused and touch nothing.
        for bad in ["", "../keyring", "keyring.json", "Views-key-2", "a/b", &"x".repeat(33)] {
            assert!(k.destroy_blob(bad).is_err(), "{bad:?}");
        }
        assert!(dir.join(MANIFEST).exists());
        assert!(Keyring::open(d.path(), &MasterSource::DevKeyFile).is_ok());
    }

    #[test]
    fn rotation_destroys_the_old_epoch() {
        let d = tempfile::tempdir().unwrap();
        let mut k = Keyring::open(d.path(), &MasterSource::DevKeyFile).unwrap();
        let dek = SecretBytes::random();
        let old = k.wrap(&subject(1), KeyId(0), &dek);
        let plan = k.begin_rotation().unwrap();
        let rewrapped = k.wrap(&subject(1), KeyId(0), &k.unwrap(&subject(1), KeyId(0), &old).unwrap());
        k.finish_rotation(plan).unwrap();
        assert_eq!(k.epochs(), vec![Epoch(2)]);
        assert!(matches!(k.unwrap(&subject(1), KeyId(0), &old), Err(CryptoError::MissingEpoch(1))));
        drop(k);
        let k = Keyring::open(d.path(), &MasterSource::DevKeyFile).unwrap();
        assert_eq!(k.current_epoch(), Epoch(2));
        assert_eq!(k.unwrap(&subject(1), KeyId(0), &rewrapped).unwrap(), dek);
        assert!(!d.path().join(KEYS_DIR).join(epoch_file(Epoch(1))).exists());
    }

    #[test]
    fn interrupted_rotation_keeps_both_epochs_until_finished() {
        let d = tempfile::tempdir().unwrap();
        let mut k = Keyring::open(d.path(), &MasterSource::DevKeyFile).unwrap();
        let _plan = k.begin_rotation().unwrap();
        drop(k);
        let k = Keyring::open(d.path(), &MasterSource::DevKeyFile).unwrap();
        assert_eq!(k.epochs(), vec![Epoch(1), Epoch(2)]);
        assert_eq!(k.current_epoch(), Epoch(2));
    }
}
