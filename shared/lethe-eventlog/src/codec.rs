//! The stored format of events, its versions, and the associated data and nonce that seal each
//! payload. The value of an `e/` key is a *chunk*: the events of one append request (one subject,
//! consecutive positions and sequences), as `format byte | postcard body`. Format 3 is a chunk of
//! records; formats 1 and 2 hold a single record and read as a chunk of one. Writers write chunks
//! ([`encode_chunk`]); readers accept every format ([`decode_chunk`]). Each record inside a chunk is
//! sealed on its own, with its own envelope as associated data.
//!
//! Nonce scheme: `incarnation (u32 BE) | seq (u64 BE)`. A subject's data key seals only that
//! subject's events; the writer hands out each `seq` of a subject once per incarnation, and the
//! incarnation counter is durably incremented every time the log is opened for writing (and the
//! writer stops for good after a failed write). An event that was sealed but never acknowledged (a
//! crash before the fsync) may see its `seq` handed out again, but only under a new incarnation, so
//! no (key, nonce) pair ever seals two plaintexts.

use lethe_crypto::{DataKey, Nonce, NONCE_LEN};
use lethe_domain::{EventEnvelope, EventType, KeyId, Position, Pseudonym, Purpose, SchemaVersion, Seq, UtcMicros};
use serde::{Deserialize, Serialize};

use crate::{LogError, Result};

/// The format of one record inside a chunk (and of a single-record value).
pub const RECORD_FORMAT: u8 = 2;
/// The format of a chunk value.
pub const CHUNK_FORMAT: u8 = 3;

/// A stored record: envelope, nonce, sealed payload (empty for system records such as fences).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub envelope: EventEnvelope,
    pub nonce: Nonce,
    pub sealed: Vec<u8>,
    /// The record format it was read from; the associated data depends on it.
    pub format: u8,
}

#[derive(Serialize, Deserialize)]
struct RecordV2 {
    envelope: EventEnvelope,
    nonce: Nonce,
    sealed: Vec<u8>,
}

/// [`RecordV2`] by reference, for encoding without copies; same wire format.
#[derive(Serialize)]
struct RecordV2Ref<'a> {
    envelope: &'a EventEnvelope,
    nonce: &'a Nonce,
    sealed: &'a [u8],
}

/// Format 1 predates key generations (retention periods): every payload was sealed under the
/// subject's first key, generation 0.
#[derive(Serialize, Deserialize)]
struct RecordV1 {
    envelope: EnvelopeV1,
    nonce: Nonce,
    sealed: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct EnvelopeV1 {
    position: Position,
    subject: Pseudonym,
    seq: Seq,
    event_type: EventType,
    schema_version: SchemaVersion,
    purpose: Purpose,
    time: UtcMicros,
}

/// The nonce of an event's payload.
pub fn nonce(incarnation: u32, seq: Seq) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[..4].copy_from_slice(&incarnation.to_be_bytes());
    n[4..].copy_from_slice(&seq.0.to_be_bytes());
    n
}

/// The associated data of a payload: the whole envelope, so a ciphertext moved to another position,
/// subject, sequence, type, version, purpose, time or key fails to open.
pub fn aad(format: u8, envelope: &EventEnvelope) -> Vec<u8> {
    let mut out = b"lethe-event".to_vec();
    out.push(format);
    let body = if format == 1 {
        postcard::to_stdvec(&EnvelopeV1 {
            position: envelope.position,
            subject: envelope.subject,
            seq: envelope.seq,
            event_type: envelope.event_type.clone(),
            schema_version: envelope.schema_version,
            purpose: envelope.purpose.clone(),
            time: envelope.time,
        })
    } else {
        postcard::to_stdvec(envelope)
    };
    out.extend(body.expect("envelopes serialize"));
    out
}

impl StoredRecord {
    /// Seals a payload into a record of the current format.
    pub fn seal(envelope: EventEnvelope, key: &DataKey, incarnation: u32, payload: &[u8]) -> Self {
        let nonce = nonce(incarnation, envelope.seq);
        let sealed = key.seal(&nonce, &aad(RECORD_FORMAT, &envelope), payload);
        Self { envelope, nonce, sealed, format: RECORD_FORMAT }
    }

    /// A record with no payload (erasure fences).
    pub fn system(envelope: EventEnvelope) -> Self {
        Self { envelope, nonce: [0; NONCE_LEN], sealed: Vec::new(), format: RECORD_FORMAT }
    }

    /// Opens the payload.
    ///
    /// # Errors
    /// [`LogError::Crypto`] when the key or any envelope field does not match.
    pub fn open(&self, key: &DataKey) -> Result<Vec<u8>> {
        Ok(key.open(&self.nonce, &aad(self.format, &self.envelope), &self.sealed)?)
    }

    /// Encodes in the current format. Records read from an older format are re-encoded only by
    /// migrations, never by ordinary writes (the log is append-only).
    pub fn encode(&self) -> Vec<u8> {
        let body = RecordV2Ref { envelope: &self.envelope, nonce: &self.nonce, sealed: &self.sealed };
        let mut out = Vec::with_capacity(self.sealed.len() + 96);
        out.push(RECORD_FORMAT);
        postcard::to_io(&body, &mut out).expect("records serialize");
        out
    }
}

/// Encodes the records of one request as a chunk value.
pub fn encode_chunk(records: &[StoredRecord]) -> Vec<u8> {
    debug_assert!(records.iter().all(|r| r.format == RECORD_FORMAT), "chunks hold current-format records");
    let refs: Vec<RecordV2Ref<'_>> =
        records.iter().map(|r| RecordV2Ref { envelope: &r.envelope, nonce: &r.nonce, sealed: &r.sealed }).collect();
    let mut out = Vec::with_capacity(records.iter().map(|r| r.sealed.len() + 96).sum::<usize>() + 4);
    out.push(CHUNK_FORMAT);
    postcard::to_io(&refs, &mut out).expect("chunks serialize");
    out
}

/// Decodes an `e/` value of any known format into its records.
///
/// # Errors
/// [`LogError::Corrupt`] for an unknown format, undecodable bytes or an empty chunk.
pub fn decode_chunk(bytes: &[u8]) -> Result<Vec<StoredRecord>> {
    match bytes.first() {
        Some(&CHUNK_FORMAT) => {
            let records: Vec<RecordV2> = postcard::from_bytes(&bytes[1..])
                .map_err(|e| LogError::Corrupt(format!("chunk format {CHUNK_FORMAT}: {e}")))?;
            if records.is_empty() {
                return Err(LogError::Corrupt("empty chunk".into()));
            }
            Ok(records
                .into_iter()
                .map(|r| StoredRecord { envelope: r.envelope, nonce: r.nonce, sealed: r.sealed, format: RECORD_FORMAT })
                .collect())
        }
        _ => Ok(vec![decode(bytes)?]),
    }
}

/// Decodes a single record of any known record format (1 or 2).
///
/// # Errors
/// [`LogError::Corrupt`] for an unknown format or undecodable bytes.
pub fn decode(bytes: &[u8]) -> Result<StoredRecord> {
    let (&format, body) = bytes.split_first().ok_or_else(|| LogError::Corrupt("empty record".into()))?;
    let bad = |e: postcard::Error| LogError::Corrupt(format!("record format {format}: {e}"));
    match format {
        2 => {
            let r: RecordV2 = postcard::from_bytes(body).map_err(bad)?;
            Ok(StoredRecord { envelope: r.envelope, nonce: r.nonce, sealed: r.sealed, format })
        }
        1 => {
            let r: RecordV1 = postcard::from_bytes(body).map_err(bad)?;
            let e = r.envelope;
            let envelope = EventEnvelope {
                position: e.position,
                subject: e.subject,
                seq: e.seq,
                event_type: e.event_type,
                schema_version: e.schema_version,
                purpose: e.purpose,
                time: e.time,
                key_id: KeyId(0),
            };
            Ok(StoredRecord { envelope, nonce: r.nonce, sealed: r.sealed, format })
        }
        other => Err(LogError::Corrupt(format!("unknown record format {other}"))),
    }
}

/// Encodes a record in format 1. Kept so that tests can produce the golden fixture of an old
/// format; Lethe never writes it.
#[doc(hidden)]
pub fn encode_v1_for_fixtures(envelope: &EventEnvelope, key: &DataKey, incarnation: u32, payload: &[u8]) -> Vec<u8> {
    let nonce = nonce(incarnation, envelope.seq);
    let sealed = key.seal(&nonce, &aad(1, envelope), payload);
    let body = RecordV1 {
        envelope: EnvelopeV1 {
            position: envelope.position,
            subject: envelope.subject,
            seq: envelope.seq,
            event_type: envelope.event_type.clone(),
            schema_version: envelope.schema_version,
            purpose: envelope.purpose.clone(),
            time: envelope.time,
        },
        nonce,
        sealed,
    };
    let mut out = vec![1u8];
    out.extend(postcard::to_stdvec(&body).expect("records serialize"));
    out
}
