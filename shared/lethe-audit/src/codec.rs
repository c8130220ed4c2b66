//! Byte layouts: the hash preimage of an entry, the signed checkpoint message, and the values stored in
//! the sled tree. Every decoder here is total: any input gives a value or a reason, never a panic.
//!
//! Integers are big-endian; a string is `u32` big-endian byte length + UTF-8 bytes; an optional string is
//! `0x00` (absent) or `0x01` + string.
//!
//! ```text
//! body            = seq u64 | time_micros i64 | kind str | actor str | subject opt | detail str | content_digest opt
//! hash(entry)     = SHA-256("lethe-audit-v1\0" | prev_hash [32] | body)
//! signed(cp)      = "lethe-audit-checkpoint-v1\0" | seq u64 | hash [32] | time_micros i64
//!
//! a/ seq u64      → 0x01 | prev_hash [32] | hash [32] | body
//! c/ seq u64      → 0x01 | seq u64 | hash [32] | time_micros i64 | key_id str | signature [64]
//! ```
//!
//! `kind` is the snake_case name of the [`AuditKind`](crate::AuditKind) and `detail` the canonical JSON
//! text of the detail object (compact, object keys sorted by their UTF-8 bytes at every depth).

use sha2::{Digest as _, Sha256};

/// A SHA-256 output.
pub(crate) type Hash = [u8; 32];

/// Domain separation for entry hashes.
pub(crate) const ENTRY_DOMAIN: &[u8] = b"lethe-audit-v1\0";
/// Domain separation for checkpoint signatures.
pub(crate) const CHECKPOINT_DOMAIN: &[u8] = b"lethe-audit-checkpoint-v1\0";
/// The `prev_hash` of entry 1.
pub(crate) const GENESIS: Hash = [0; 32];
/// The only stored value format written and read.
const VALUE_VERSION: u8 = 1;

pub(crate) const ENTRY_PREFIX: &[u8; 2] = b"a/";
pub(crate) const CHECKPOINT_PREFIX: &[u8; 2] = b"c/";

const ENTRY_HEADER_LEN: usize = 1 + 32 + 32;
const SIGNATURE_LEN: usize = 64;

/// SHA-256 of `bytes`: what a caller puts in [`AuditRecord::content_digest`](crate::AuditRecord) (hex) for
/// the ciphertext an entry refers to.
#[must_use]
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lowercase hex SHA-256 of `ciphertext`, ready for [`AuditRecord::content_digest`](crate::AuditRecord).
#[must_use]
pub fn content_digest(ciphertext: &[u8]) -> String {
    hex::encode(sha256(ciphertext))
}

/// `hash_n = SHA-256("lethe-audit-v1\0" || prev_hash || body)`.
pub(crate) fn entry_hash(prev: &Hash, body: &[u8]) -> Hash {
    Sha256::new().chain_update(ENTRY_DOMAIN).chain_update(prev).chain_update(body).finalize().into()
}

/// The message a checkpoint signature covers.
pub(crate) fn checkpoint_message(seq: u64, hash: &Hash, time_micros: i64) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 8 + 32 + 8);
    m.extend_from_slice(CHECKPOINT_DOMAIN);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&time_micros.to_be_bytes());
    m
}

pub(crate) fn prefixed_key(prefix: &[u8; 2], seq: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..2].copy_from_slice(prefix);
    k[2..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The sequence number in a `a/` or `c/` key, `None` when the key is not prefix + 8 bytes.
pub(crate) fn key_seq(prefix: &[u8; 2], key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(&prefix[..])?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// Lowercase hex to a 32-byte hash; anything else (upper case, wrong length) is `None`, so that two texts
/// never name the same hash.
pub(crate) fn parse_hash(text: &str) -> Option<Hash> {
    parse_lower_hex::<32>(text)
}

pub(crate) fn parse_lower_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !is_lower_hex(text) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

pub(crate) fn is_lower_hex(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The hashed fields of an entry, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Body<'a> {
    pub seq: u64,
    pub time_micros: i64,
    pub kind: &'a str,
    pub actor: &'a str,
    pub subject: Option<&'a str>,
    pub detail: &'a str,
    pub content_digest: Option<&'a str>,
}

impl<'a> Body<'a> {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.time_micros.to_be_bytes());
        put_str(out, self.kind);
        put_str(out, self.actor);
        put_opt(out, self.subject);
        put_str(out, self.detail);
        put_opt(out, self.content_digest);
    }

    pub(crate) fn to_bytes(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            16 + 4 * 5
                + 2
                + self.kind.len()
                + self.actor.len()
                + self.subject.map_or(0, str::len)
                + self.detail.len()
                + self.content_digest.map_or(0, str::len),
        );
        self.encode(&mut out);
        out
    }

    pub(crate) fn decode(bytes: &'a [u8]) -> Result<Self, &'static str> {
        let mut r = Reader(bytes);
        let body = Self {
            seq: r.u64()?,
            time_micros: r.i64()?,
            kind: r.str()?,
            actor: r.str()?,
            subject: r.opt()?,
            detail: r.str()?,
            content_digest: r.opt()?,
        };
        r.end()?;
        Ok(body)
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Callers bound every field far below 4 GiB (see `record::validate`); saturate rather than wrap.
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("truncated value");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        self.take(N)?.try_into().map_err(|_| "truncated value")
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.array::<1>()?[0])
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, &'static str> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn str(&mut self) -> Result<&'a str, &'static str> {
        let len = usize::try_from(u32::from_be_bytes(self.array()?)).map_err(|_| "length out of range")?;
        std::str::from_utf8(self.take(len)?).map_err(|_| "invalid utf-8")
    }

    fn opt(&mut self) -> Result<Option<&'a str>, &'static str> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.str()?)),
            _ => Err("invalid option tag"),
        }
    }

    fn end(&self) -> Result<(), &'static str> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err("trailing bytes")
        }
    }
}

/// A stored entry value, split but not checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoredEntry<'a> {
    pub prev: Hash,
    pub hash: Hash,
    pub body: &'a [u8],
}

impl<'a> StoredEntry<'a> {
    pub(crate) fn encode(prev: &Hash, hash: &Hash, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(ENTRY_HEADER_LEN + body.len());
        v.push(VALUE_VERSION);
        v.extend_from_slice(prev);
        v.extend_from_slice(hash);
        v.extend_from_slice(body);
        v
    }

    pub(crate) fn split(value: &'a [u8]) -> Result<Self, &'static str> {
        let mut r = Reader(value);
        if r.u8()? != VALUE_VERSION {
            return Err("unknown entry format version");
        }
        let prev = r.array()?;
        let hash = r.array()?;
        Ok(Self { prev, hash, body: r.0 })
    }
}

/// A stored checkpoint, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredCheckpoint {
    pub seq: u64,
    pub hash: Hash,
    pub time_micros: i64,
    pub key_id: String,
    pub signature: [u8; SIGNATURE_LEN],
}

impl StoredCheckpoint {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(1 + 8 + 32 + 8 + 4 + self.key_id.len() + SIGNATURE_LEN);
        v.push(VALUE_VERSION);
        v.extend_from_slice(&self.seq.to_be_bytes());
        v.extend_from_slice(&self.hash);
        v.extend_from_slice(&self.time_micros.to_be_bytes());
        put_str(&mut v, &self.key_id);
        v.extend_from_slice(&self.signature);
        v
    }

    pub(crate) fn decode(value: &[u8]) -> Result<Self, &'static str> {
        let mut r = Reader(value);
        if r.u8()? != VALUE_VERSION {
            return Err("unknown checkpoint format version");
        }
        let cp = Self {
            seq: r.u64()?,
            hash: r.array()?,
            time_micros: r.i64()?,
            key_id: r.str()?.to_owned(),
            signature: r.array()?,
        };
        r.end()?;
        Ok(cp)
    }
}

/// The chain head: the last sequence number and its hash (0 and [`GENESIS`] for an empty chain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub seq: u64,
    pub hash: Hash,
}

impl Head {
    pub(crate) const EMPTY: Self = Self { seq: 0, hash: GENESIS };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Body<'static> {
        Body {
            seq: 7,
            time_micros: -3,
            kind: "export",
            actor: "dpo",
            subject: Some("ab"),
            detail: "{}",
            content_digest: None,
        }
    }

    #[test]
    fn body_layout_is_the_documented_one() {
        let bytes = body().to_bytes();
        let mut want = Vec::new();
        want.extend_from_slice(&7u64.to_be_bytes());
        want.extend_from_slice(&(-3i64).to_be_bytes());
        want.extend_from_slice(b"\0\0\0\x06export\0\0\0\x03dpo\x01\0\0\0\x02ab\0\0\0\x02{}\0");
        assert_eq!(bytes, want);
        assert_eq!(Body::decode(&bytes), Ok(body()));
    }

    #[test]
    fn every_prefix_and_extension_of_a_body_is_rejected_without_panic() {
        let bytes = body().to_bytes();
        for n in 0..bytes.len() {
            assert!(Body::decode(&bytes[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Body::decode(&longer), Err("trailing bytes"));
    }

    #[test]
    fn hashes_are_lowercase_hex_only() {
        let h = hex::encode([0xab; 32]);
        assert_eq!(parse_hash(&h), Some([0xab; 32]));
        assert_eq!(parse_hash(&h.to_uppercase()), None);
        assert_eq!(parse_hash(&h[..62]), None);
        assert_eq!(parse_hash(""), None);
    }

    #[test]
    fn keys_carry_the_sequence_big_endian() {
        let k = prefixed_key(ENTRY_PREFIX, 258);
        assert_eq!(&k, b"a/\0\0\0\0\0\0\x01\x02");
        assert_eq!(key_seq(ENTRY_PREFIX, &k), Some(258));
        assert_eq!(key_seq(CHECKPOINT_PREFIX, &k), None);
        assert_eq!(key_seq(ENTRY_PREFIX, &k[..9]), None);
    }
}
