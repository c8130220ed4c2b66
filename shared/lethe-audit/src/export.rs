//! Exports for the DPO: JSONL that verifies without sled ([`AuditChain::export_jsonl`],
//! [`verify_jsonl`]) and CSV for reading ([`AuditChain::export_csv`]).
//!
//! # JSONL format `lethe-audit-jsonl-v1`
//!
//! One compact JSON object per line, each with a `type` first:
//!
//! 1. `{"type":"header","format":"lethe-audit-jsonl-v1","first_seq":k,"last_seq":n,"keys":[{"key_id":..,
//!    "public_key":hex}]}`: the range exported and the public keys of the checkpoints in it.
//! 2. Then, in sequence order, `{"type":"entry","seq",..,"time_micros",..,"kind",..,"actor",..,"subject",..,
//!    "detail",..,"content_digest",..,"prev_hash",..,"hash",..}` for `k ..= n`, each followed by
//!    `{"type":"checkpoint","seq",..,"hash",..,"time_micros",..,"key_id",..,"signature",..}` when one covers
//!    it. `detail` is the canonical JSON text as a string: exactly the bytes hashed, so a verifier in
//!    another language needs no JSON canonicalization.
//!
//! An export that starts at `k > 1` is verified from the `prev_hash` of entry `k`: it proves the range is
//! the chain's only where a trusted checkpoint covers it (see [`VerifyReport::last_signed_seq`]).
//! Verification also requires every line to be exactly as written (no re-spacing, no re-escaping), so
//! that one changed character anywhere fails, at that line's position.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};

use serde::{Deserialize, Serialize};

use crate::codec::{self, Body, StoredEntry, ENTRY_PREFIX};
use crate::record::canonical_json;
use crate::verify::{VerifyReport, Walk};
use crate::{AuditChain, AuditError, AuditVerifier, Checkpoint, Result};

/// The format name in the JSONL header.
pub const JSONL_FORMAT: &str = "lethe-audit-jsonl-v1";
/// Longest JSONL line accepted by [`verify_jsonl`].
pub const MAX_JSONL_LINE: usize = 1024 * 1024;

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportSummary {
    /// The first sequence number exported.
    pub first_seq: u64,
    /// The last sequence number exported (`first_seq - 1` when none was).
    pub last_seq: u64,
    /// Entries written.
    pub entries: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderLine {
    #[serde(rename = "type")]
    line_type: String,
    format: String,
    first_seq: u64,
    last_seq: u64,
    keys: Vec<KeyLine>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyLine {
    key_id: String,
    public_key: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryLine<S> {
    #[serde(rename = "type")]
    line_type: S,
    seq: u64,
    time_micros: i64,
    kind: S,
    actor: S,
    subject: Option<S>,
    detail: S,
    content_digest: Option<S>,
    prev_hash: String,
    hash: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointLine<S> {
    #[serde(rename = "type")]
    line_type: S,
    seq: u64,
    hash: String,
    time_micros: i64,
    key_id: S,
    signature: String,
}

impl AuditChain {
    /// Writes entries `from_seq ..=` head, with their checkpoints, as JSONL (see the module docs). Entries
    /// appended meanwhile are not included.
    ///
    /// # Errors
    /// [`AuditError::InvalidRange`] when `from_seq` is beyond head + 1; [`AuditError::Tampered`] for a
    /// stored value that does not decode; [`AuditError::Io`] when writing fails;
    /// [`AuditError::Storage`] when sled fails.
    pub fn export_jsonl<W: Write>(&self, writer: W, from_seq: u64) -> Result<ExportSummary> {
        let head = self.snapshot(None)?;
        self.write_jsonl(writer, from_seq, head.seq)
    }

    /// Signs a checkpoint over the head at `time_micros`, then exports `from_seq ..=` that head, so the
    /// export ends on a signature (its [`VerifyReport::unsigned_tail`] is 0).
    ///
    /// # Errors
    /// As [`AuditChain::export_jsonl`], and [`AuditError::EmptyChain`] when there is nothing to sign.
    pub fn export_jsonl_signed<W: Write>(&self, writer: W, from_seq: u64, time_micros: i64) -> Result<ExportSummary> {
        let head = self.snapshot(Some(time_micros))?;
        self.write_jsonl(writer, from_seq, head.seq)
    }

    fn write_jsonl<W: Write>(&self, writer: W, from_seq: u64, to_seq: u64) -> Result<ExportSummary> {
        let first_seq = from_seq.max(1);
        if first_seq > to_seq.saturating_add(1) {
            return Err(AuditError::InvalidRange);
        }
        let checkpoints: BTreeMap<u64, Checkpoint> =
            self.checkpoints_between(first_seq, to_seq)?.into_iter().map(|cp| (cp.seq, cp)).collect();
        let mut keys = BTreeMap::new();
        for cp in checkpoints.values() {
            if let Some(key) = self.verifier().key(&cp.key_id) {
                keys.insert(cp.key_id.clone(), hex::encode(key.as_bytes()));
            }
        }
        let mut w = std::io::BufWriter::new(writer);
        let header = HeaderLine {
            line_type: "header".to_owned(),
            format: JSONL_FORMAT.to_owned(),
            first_seq,
            last_seq: to_seq,
            keys: keys.into_iter().map(|(key_id, public_key)| KeyLine { key_id, public_key }).collect(),
        };
        write_line(&mut w, &header)?;
        let mut summary = ExportSummary { first_seq, last_seq: to_seq, entries: 0, checkpoints: 0 };
        if first_seq <= to_seq {
            let range = codec::prefixed_key(ENTRY_PREFIX, first_seq)..=codec::prefixed_key(ENTRY_PREFIX, to_seq);
            for item in self.tree().range(range) {
                let (key, value) = item?;
                let seq = codec::key_seq(ENTRY_PREFIX, &key)
                    .ok_or_else(|| AuditError::tampered(summary.last_seq, "malformed entry key"))?;
                let undecodable = |r: &str| AuditError::tampered(seq, format!("undecodable entry: {r}"));
                let stored = StoredEntry::split(&value).map_err(undecodable)?;
                let body = Body::decode(stored.body).map_err(undecodable)?;
                let line = EntryLine {
                    line_type: "entry",
                    seq: body.seq,
                    time_micros: body.time_micros,
                    kind: body.kind,
                    actor: body.actor,
                    subject: body.subject,
                    detail: body.detail,
                    content_digest: body.content_digest,
                    prev_hash: hex::encode(stored.prev),
                    hash: hex::encode(stored.hash),
                };
                write_line(&mut w, &line)?;
                summary.entries += 1;
                if let Some(cp) = checkpoints.get(&seq) {
                    let line = CheckpointLine {
                        line_type: "checkpoint",
                        seq: cp.seq,
                        hash: cp.hash.clone(),
                        time_micros: cp.time_micros,
                        key_id: cp.key_id.as_str(),
                        signature: cp.signature.clone(),
                    };
                    write_line(&mut w, &line)?;
                    summary.checkpoints += 1;
                }
            }
        }
        w.flush()?;
        Ok(summary)
    }

    /// Writes the entries with `from_micros <= time_micros < to_micros` as CSV for people to read (not to
    /// verify): `seq,time,kind,actor,subject,content_digest,detail,hash`, `time` in RFC 3339 UTC with
    /// microseconds, `detail` as canonical JSON. No cell can start with `=`, `+`, `-` or `@` (actors are
    /// role names, subjects and digests hex, details objects), so spreadsheets do not run them. Returns the
    /// number of entries written.
    ///
    /// # Errors
    /// [`AuditError::Tampered`] for a stored entry that does not decode; [`AuditError::Csv`] when writing
    /// fails; [`AuditError::Storage`] when sled fails.
    pub fn export_csv<W: Write>(&self, writer: W, from_micros: i64, to_micros: i64) -> Result<u64> {
        let mut w = csv::Writer::from_writer(writer);
        w.write_record(["seq", "time", "kind", "actor", "subject", "content_digest", "detail", "hash"])?;
        let mut n = 0;
        for entry in self.entries_between(from_micros, to_micros) {
            let e = entry?;
            w.write_record([
                e.seq.to_string(),
                rfc3339(e.time_micros),
                e.kind.as_str().to_owned(),
                e.actor,
                e.subject.unwrap_or_default(),
                e.content_digest.unwrap_or_default(),
                canonical_json(&e.detail),
                e.hash,
            ])?;
            n += 1;
        }
        w.flush()?;
        Ok(n)
    }
}

/// `2024-05-01T12:00:00.000000Z`; the raw microseconds for a time `time` cannot represent.
fn rfc3339(micros: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| micros.to_string())
}

fn write_line<W: Write, T: Serialize>(w: &mut W, line: &T) -> Result<()> {
    serde_json::to_writer(&mut *w, line).map_err(std::io::Error::from)?;
    w.write_all(b"\n")?;
    Ok(())
}

/// What a line claims to be, from its first bytes (a damaged line is placed by its surviving parts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineKind {
    Header,
    Entry,
    Checkpoint,
}

fn classify(line: &[u8]) -> LineKind {
    if line.starts_with(br#"{"type":"entry","#) {
        LineKind::Entry
    } else if line.starts_with(br#"{"type":"checkpoint","#) {
        LineKind::Checkpoint
    } else if line.starts_with(br#"{"type":"header","#) {
        LineKind::Header
    } else if contains(line, br#","signature":""#) && !contains(line, br#","detail":""#) {
        LineKind::Checkpoint
    } else {
        LineKind::Entry
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Parses `line` as `T` and requires it to be exactly the text `T` serializes to.
fn parse_exact<'a, T>(line: &'a [u8]) -> std::result::Result<T, &'static str>
where
    T: Deserialize<'a> + Serialize,
{
    let value: T = serde_json::from_slice(line).map_err(|_| "unreadable line")?;
    let again = serde_json::to_vec(&value).map_err(|_| "unreadable line")?;
    if again != line {
        return Err("line is not in canonical form");
    }
    Ok(value)
}

/// Prefixes a [`AuditError::Tampered`] reason with the line number.
fn at_line(line_no: u64) -> impl Fn(AuditError) -> AuditError {
    move |e| match e {
        AuditError::Tampered { seq, reason } => {
            AuditError::Tampered { seq, reason: format!("line {line_no}: {reason}") }
        }
        other => other,
    }
}

/// Reads one line (without its `\n`) into `buf`; `false` at the end of input.
fn read_line<R: BufRead>(reader: &mut R, buf: &mut Vec<u8>, line_no: u64, at_seq: u64) -> Result<bool> {
    buf.clear();
    let limit = u64::try_from(MAX_JSONL_LINE).unwrap_or(u64::MAX).saturating_add(1);
    let n = reader.by_ref().take(limit).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if buf.len() > MAX_JSONL_LINE {
        return Err(AuditError::tampered(at_seq, format!("line {line_no}: line too long")));
    }
    Ok(true)
}

/// Verifies a JSONL export (see the module docs) without sled: every entry's hash and link, the sequence
/// without gaps from the header's `first_seq` to its `last_seq`, every checkpoint's hash and signature,
/// and that every line is exactly as written. Trust comes from `verifier` alone: every key the header lists
/// must be trusted by it with the same public key.
///
/// # Errors
/// [`AuditError::Tampered`] at the first position that fails, its reason naming the line: an entry line
/// fails at the sequence number it should hold, a checkpoint line at the entry it follows, the header at 0.
/// [`AuditError::Io`] when reading fails.
pub fn verify_jsonl<R: Read>(reader: R, verifier: &AuditVerifier) -> Result<VerifyReport> {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    if !read_line(&mut reader, &mut buf, 1, 0)? {
        return Err(AuditError::tampered(0, "line 1: export is empty"));
    }
    let (header, declared) = check_header(&buf, verifier).map_err(at_line(1))?;
    let genesis = (header.first_seq == 1).then_some(codec::GENESIS);
    let mut walk = Walk::new(header.first_seq, genesis);
    let mut line_no = 1u64;
    loop {
        line_no += 1;
        let place = walk.last_entry().unwrap_or(header.first_seq);
        if !read_line(&mut reader, &mut buf, line_no, walk.next_seq())? {
            break;
        }
        match classify(&buf) {
            LineKind::Header => {
                return Err(AuditError::tampered(walk.next_seq(), format!("line {line_no}: second header")));
            }
            LineKind::Entry => {
                check_entry_line(&mut walk, &buf, header.last_seq).map_err(at_line(line_no))?;
            }
            LineKind::Checkpoint => {
                let cp = parse_exact::<CheckpointLine<String>>(&buf)
                    .and_then(|l| if l.line_type == "checkpoint" { Ok(l) } else { Err("not a checkpoint line") })
                    .map_err(|r| AuditError::tampered(place, format!("line {line_no}: {r}")))?;
                if !declared.contains(&cp.key_id) {
                    let reason = format!("line {line_no}: checkpoint key {:?} not listed in the header", cp.key_id);
                    return Err(AuditError::tampered(place, reason));
                }
                let stored = Checkpoint {
                    seq: cp.seq,
                    hash: cp.hash,
                    time_micros: cp.time_micros,
                    key_id: cp.key_id,
                    signature: cp.signature,
                }
                .to_stored()
                .map_err(|e| relocate(e, place))
                .map_err(at_line(line_no))?;
                walk.checkpoint(&stored, verifier).map_err(at_line(line_no))?;
            }
        }
    }
    let report = walk.report();
    if report.last_seq != header.last_seq {
        let reason = format!("line {line_no}: export ends before its declared last seq {}", header.last_seq);
        return Err(AuditError::tampered(walk.next_seq(), reason));
    }
    Ok(report)
}

/// Moves a [`AuditError::Tampered`] to `seq`.
fn relocate(e: AuditError, seq: u64) -> AuditError {
    match e {
        AuditError::Tampered { reason, .. } => AuditError::Tampered { seq, reason },
        other => other,
    }
}

fn check_header(line: &[u8], verifier: &AuditVerifier) -> Result<(HeaderLine, BTreeSet<String>)> {
    let header = parse_exact::<HeaderLine>(line).map_err(|r| AuditError::tampered(0, format!("header: {r}")))?;
    if header.line_type != "header" || header.format != JSONL_FORMAT {
        return Err(AuditError::tampered(0, "not a lethe-audit-jsonl-v1 header"));
    }
    if header.first_seq == 0 || header.last_seq < header.first_seq - 1 {
        return Err(AuditError::tampered(0, "header declares an impossible range"));
    }
    let mut declared = BTreeSet::new();
    for key in &header.keys {
        let trusted = verifier.key(&key.key_id).is_some_and(|k| hex::encode(k.as_bytes()) == key.public_key);
        if !trusted {
            return Err(AuditError::tampered(0, format!("header key {:?} is not trusted", key.key_id)));
        }
        declared.insert(key.key_id.clone());
    }
    Ok((header, declared))
}

/// Checks an entry line that should hold `walk.next_seq()`.
fn check_entry_line(walk: &mut Walk, line: &[u8], last_seq: u64) -> Result<()> {
    let expected = walk.next_seq();
    if expected > last_seq {
        return Err(AuditError::tampered(expected, "entry beyond the declared last seq"));
    }
    let e = parse_exact::<EntryLine<String>>(line)
        .and_then(|l| if l.line_type == "entry" { Ok(l) } else { Err("not an entry line") })
        .map_err(|r| AuditError::tampered(expected, r))?;
    let prev = codec::parse_hash(&e.prev_hash).ok_or_else(|| AuditError::tampered(expected, "prev_hash is not hex"))?;
    let hash = codec::parse_hash(&e.hash).ok_or_else(|| AuditError::tampered(expected, "hash is not hex"))?;
    let body = Body {
        seq: e.seq,
        time_micros: e.time_micros,
        kind: &e.kind,
        actor: &e.actor,
        subject: e.subject.as_deref(),
        detail: &e.detail,
        content_digest: e.content_digest.as_deref(),
    }
    .to_bytes();
    if codec::entry_hash(&prev, &body) != hash {
        return Err(AuditError::tampered(expected, "hash mismatch"));
    }
    if e.seq != expected {
        return Err(AuditError::tampered(expected, format!("entry {expected} missing (found {})", e.seq)));
    }
    walk.entry(expected, &prev, &hash)
}
