//! The stored format of events, its versions, and the associated data and nonce that seal each
//! payload. The value of an `e/` key is a *chunk* of records with consecutive positions, stored under
//! the position of its first record, as `format byte | body`:
//!
//! - format 4 (written since layout 5): the events of one group commit, of any number of subjects,
//!   as *runs*. A run is the events of one append request (one subject, consecutive sequences):
//!   `subject (32) | first seq (u64 BE) | count (u32 BE) | length (u32 BE) | count format-2 record
//!   bodies (postcard), length bytes`, and the runs follow each other to the end of the value. A
//!   reader of one subject's events walks the run headers and decodes only that subject's runs
//!   ([`stream_records`]); the writer splits a group into several chunks once one would pass
//!   [`CHUNK_MAX_RECORDS`] records or about [`CHUNK_MAX_BYTES`] bytes.
//! - format 3 (layouts 3 and 4): the events of one append request (one subject), a postcard list of
//!   format-2 records.
//! - formats 1 and 2 (layouts 1 and 2): a single record, read as a chunk of one.
//!
//! - format 5 is not a chunk: it is the pointer an `e/` value holds when the chunk's bytes are in a
//!   chunk file (layout 7, `chunk_files`); the log resolves it before anything here reads the bytes.
//!
//! Writers write format 4 ([`ChunkWriter`], [`encode_chunk`]); readers accept every format
//! ([`decode_chunk`], [`stream_records`]). Each record inside a chunk is sealed on its own, with its
//! own envelope (which names its subject and key id) as associated data.
//!
//! Nonce scheme: `incarnation (u32 BE) | seq (u64 BE)`. A subject's data key seals only that
//! subject's events; the writer hands out each `seq` of a subject once per incarnation, and the
//! incarnation counter is durably incremented every time the log is opened for writing (and the
//! writer stops for good after a failed write). An event that was sealed but never acknowledged (a
//! crash before the fsync) may see its `seq` handed out again, but only under a new incarnation, so
//! no (key, nonce) pair ever seals two plaintexts. Sharing a chunk between subjects changes nothing
//! here: every record keeps its own subject, key id and nonce.

use lethe_crypto::{DataKey, Nonce, NONCE_LEN};
use lethe_domain::{
    EventBody, EventEnvelope, EventType, KeyId, Position, Pseudonym, Purpose, RecordedEvent, SchemaVersion, Seq,
    UtcMicros,
};
use serde::{Deserialize, Serialize};

use crate::{LogError, Result};

/// The format of one record inside a chunk (and of a single-record value).
pub const RECORD_FORMAT: u8 = 2;
/// The format of the chunk values written today: the runs of one group commit, any subjects.
pub const CHUNK_FORMAT: u8 = 4;
/// The format of the chunks of layouts 3 and 4: the events of one append request.
pub const CHUNK_FORMAT_V3: u8 = 3;
/// A chunk takes no further run once it holds this many records (a single larger request still
/// gets a chunk of its own), so that reading one subject's events never walks a huge value.
pub const CHUNK_MAX_RECORDS: usize = 512;
/// A chunk takes no further run once it would pass about this many bytes. Small on purpose: sharing
/// pays for small requests (a run of many events amortizes its own insert), while a single-subject
/// read fetches the whole value and walks its run headers.
pub const CHUNK_MAX_BYTES: usize = 64 * 1024;
/// The header of a run in a format-4 chunk: subject, first seq, count, length.
const RUN_HEADER: usize = 32 + 8 + 4 + 4;

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
    /// As bytes, not as a sequence of `u8`: the same postcard encoding (a length, then the bytes),
    /// read and written in one copy instead of byte by byte.
    #[serde(with = "serde_bytes")]
    sealed: Vec<u8>,
}

/// [`RecordV2`] by reference, for encoding without copies; same wire format.
#[derive(Serialize)]
struct RecordV2Ref<'a> {
    envelope: &'a EventEnvelope,
    nonce: &'a Nonce,
    #[serde(with = "serde_bytes")]
    sealed: &'a [u8],
}

/// Format 1 predates key generations (retention periods): every payload was sealed under the
/// subject's first key, generation 0.
#[derive(Serialize, Deserialize)]
struct RecordV1 {
    envelope: EnvelopeV1,
    nonce: Nonce,
    #[serde(with = "serde_bytes")]
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

impl From<&EventEnvelope> for EnvelopeV1 {
    fn from(e: &EventEnvelope) -> Self {
        Self {
            position: e.position,
            subject: e.subject,
            seq: e.seq,
            event_type: e.event_type.clone(),
            schema_version: e.schema_version,
            purpose: e.purpose.clone(),
            time: e.time,
        }
    }
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
    // Written into one buffer with room for an envelope, not grown step by step: the log computes
    // this for every event it seals or opens.
    let mut out = Vec::with_capacity(AAD_CAPACITY);
    out.extend_from_slice(b"lethe-event");
    out.push(format);
    let written = if format == 1 {
        postcard::to_io(&EnvelopeV1::from(envelope), &mut out)
    } else {
        postcard::to_io(envelope, &mut out)
    };
    written.expect("envelopes serialize");
    out
}

/// The bytes [`aad`] is first given room for: its prefix and an envelope with type and purpose names
/// of ordinary length (a longer one grows it).
const AAD_CAPACITY: usize = 192;

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

    /// The event, its payload opened as by [`StoredRecord::open`] but in the record's own buffer.
    ///
    /// # Errors
    /// As [`StoredRecord::open`].
    pub fn into_event(self, key: &DataKey) -> Result<RecordedEvent> {
        let aad = aad(self.format, &self.envelope);
        let plain = key.open_in_place(&self.nonce, &aad, self.sealed)?;
        Ok(RecordedEvent { envelope: self.envelope, body: EventBody::Plain(plain) })
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

/// Builds a format-4 chunk value from runs (the records of one append request each).
#[derive(Debug)]
pub struct ChunkWriter {
    buf: Vec<u8>,
    records: usize,
}

impl Default for ChunkWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkWriter {
    /// An empty chunk.
    pub fn new() -> Self {
        Self::with_buffer(Vec::new())
    }

    /// An empty chunk written into `buf`, emptied first (its room stays): the log's writer gives it
    /// the buffers of chunks it wrote out, so that a chunk does not take fresh memory.
    pub fn with_buffer(mut buf: Vec<u8>) -> Self {
        buf.clear();
        buf.reserve(16 * 1024);
        buf.push(CHUNK_FORMAT);
        Self { buf, records: 0 }
    }

    /// Whether no run was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Records pushed so far.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Whether `run` may join this chunk without passing [`CHUNK_MAX_RECORDS`] or (about)
    /// [`CHUNK_MAX_BYTES`]. An empty chunk takes any run.
    pub fn fits(&self, run: &[StoredRecord]) -> bool {
        let bytes: usize = RUN_HEADER + run.iter().map(|r| r.sealed.len() + 96).sum::<usize>();
        self.is_empty() || (self.records + run.len() <= CHUNK_MAX_RECORDS && self.buf.len() + bytes <= CHUNK_MAX_BYTES)
    }

    /// Appends a run: the records of one append request, all of one subject with consecutive
    /// sequences, in current record format.
    ///
    /// # Panics
    /// On an empty run, or one whose records break those rules (a bug of the caller).
    pub fn push_run(&mut self, run: &[StoredRecord]) {
        let first = &run.first().expect("a run holds at least one record").envelope;
        assert!(
            run.iter().enumerate().all(|(i, r)| r.format == RECORD_FORMAT
                && r.envelope.subject == first.subject
                && r.envelope.seq.0 == first.seq.0 + i as u64),
            "a run holds current-format records of one subject with consecutive sequences"
        );
        let count = u32::try_from(run.len()).expect("a run fits in u32");
        self.buf.extend_from_slice(first.subject.as_bytes());
        self.buf.extend_from_slice(&first.seq.0.to_be_bytes());
        self.buf.extend_from_slice(&count.to_be_bytes());
        let len_at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        for r in run {
            let body = RecordV2Ref { envelope: &r.envelope, nonce: &r.nonce, sealed: &r.sealed };
            postcard::to_io(&body, &mut self.buf).expect("records serialize");
        }
        let len = u32::try_from(self.buf.len() - len_at - 4).expect("a run fits in 4 GiB");
        self.buf[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
        self.records += run.len();
    }

    /// The chunk value.
    pub fn finish(self) -> Vec<u8> {
        debug_assert!(!self.is_empty(), "a chunk holds at least one run");
        self.buf
    }
}

/// Encodes records with consecutive positions as one format-4 chunk value, a run for each stretch of
/// one subject's consecutive sequences.
///
/// # Panics
/// On an empty slice or a record not in the current record format.
pub fn encode_chunk(records: &[StoredRecord]) -> Vec<u8> {
    let mut w = ChunkWriter::new();
    let mut start = 0;
    for i in 1..=records.len() {
        let ends = i == records.len() || {
            let (prev, next) = (&records[i - 1].envelope, &records[i].envelope);
            next.subject != prev.subject || next.seq.0 != prev.seq.0 + 1
        };
        if ends {
            w.push_run(&records[start..i]);
            start = i;
        }
    }
    w.finish()
}

/// Encodes records in chunk format 3 (one request, one subject). Kept so that tests can produce the
/// golden fixture and the data directories of an old layout; Lethe no longer writes it.
#[doc(hidden)]
pub fn encode_v3_for_fixtures(records: &[StoredRecord]) -> Vec<u8> {
    let refs: Vec<RecordV2Ref<'_>> =
        records.iter().map(|r| RecordV2Ref { envelope: &r.envelope, nonce: &r.nonce, sealed: &r.sealed }).collect();
    let mut out = vec![CHUNK_FORMAT_V3];
    postcard::to_io(&refs, &mut out).expect("chunks serialize");
    out
}

/// Whether a chunk value may hold the events of several subjects (format 4). Values of formats 1–3
/// hold one subject's events only.
pub fn is_shared_chunk(bytes: &[u8]) -> bool {
    bytes.first() == Some(&CHUNK_FORMAT)
}

/// One run of a format-4 chunk, its records still encoded.
struct Run<'a> {
    subject: Pseudonym,
    first_seq: u64,
    count: u32,
    body: &'a [u8],
}

impl Run<'_> {
    /// Whether the run holds any of `subject`'s sequences `first..first + count`.
    fn overlaps(&self, subject: &Pseudonym, first: u64, count: u32) -> bool {
        self.subject == *subject
            && self.first_seq < first.saturating_add(u64::from(count))
            && first < self.first_seq.saturating_add(u64::from(self.count))
    }

    /// Decodes the records and checks them against the header: each of the run's subject, with the
    /// header's sequences, filling the run's bytes exactly.
    fn decode(&self) -> Result<Vec<StoredRecord>> {
        let bad = |why: String| LogError::Corrupt(format!("chunk format {CHUNK_FORMAT}: {why}"));
        let mut rest = self.body;
        let mut out = Vec::with_capacity(self.count as usize);
        for i in 0..u64::from(self.count) {
            let (r, tail): (RecordV2, _) = postcard::take_from_bytes(rest).map_err(|e| bad(e.to_string()))?;
            rest = tail;
            if r.envelope.subject != self.subject || Some(r.envelope.seq.0) != self.first_seq.checked_add(i) {
                return Err(bad(format!(
                    "a record at position {} does not match its run (subject or sequence)",
                    r.envelope.position.0
                )));
            }
            out.push(StoredRecord { envelope: r.envelope, nonce: r.nonce, sealed: r.sealed, format: RECORD_FORMAT });
        }
        if !rest.is_empty() {
            return Err(bad("bytes left over after a run's records".into()));
        }
        Ok(out)
    }
}

/// The runs of a format-4 chunk (without the format byte), checked for framing only.
fn runs(body: &[u8]) -> impl Iterator<Item = Result<Run<'_>>> {
    let mut rest = body;
    let mut first = true;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return if std::mem::take(&mut first) { Some(Err(LogError::Corrupt("empty chunk".into()))) } else { None };
        }
        first = false;
        let bad = |why: &str| LogError::Corrupt(format!("chunk format {CHUNK_FORMAT}: {why}"));
        if rest.len() < RUN_HEADER {
            rest = &[];
            return Some(Err(bad("truncated run header")));
        }
        let (head, tail) = rest.split_at(RUN_HEADER);
        let subject = Pseudonym::from_bytes(head[..32].try_into().expect("32 bytes"));
        let first_seq = u64::from_be_bytes(head[32..40].try_into().expect("8 bytes"));
        let count = u32::from_be_bytes(head[40..44].try_into().expect("4 bytes"));
        let len = u32::from_be_bytes(head[44..48].try_into().expect("4 bytes")) as usize;
        if count == 0 || first_seq == 0 || len > tail.len() {
            rest = &[];
            return Some(Err(bad("malformed run header")));
        }
        let (run, tail) = tail.split_at(len);
        rest = tail;
        Some(Ok(Run { subject, first_seq, count, body: run }))
    })
}

/// The runs of a format-4 chunk as `(subject, first seq, count)`, without decoding their records.
///
/// # Errors
/// [`LogError::Corrupt`] for a value of another format or a malformed run header.
pub fn run_heads(bytes: &[u8]) -> Result<Vec<(Pseudonym, u64, u32)>> {
    if !is_shared_chunk(bytes) {
        return Err(LogError::Corrupt("expected a chunk of format 4".into()));
    }
    runs(&bytes[1..]).map(|r| r.map(|r| (r.subject, r.first_seq, r.count))).collect()
}

/// Decodes an `e/` value of any known format into its records, in position order.
///
/// # Errors
/// [`LogError::Corrupt`] for an unknown format, undecodable bytes, an empty chunk, or a format-4 run
/// whose records do not match its header.
pub fn decode_chunk(bytes: &[u8]) -> Result<Vec<StoredRecord>> {
    match bytes.first() {
        Some(&CHUNK_FORMAT) => {
            let mut out = Vec::new();
            for run in runs(&bytes[1..]) {
                out.extend(run?.decode()?);
            }
            Ok(out)
        }
        Some(&CHUNK_FORMAT_V3) => {
            let records: Vec<RecordV2> = postcard::from_bytes(&bytes[1..])
                .map_err(|e| LogError::Corrupt(format!("chunk format {CHUNK_FORMAT_V3}: {e}")))?;
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

/// The records a stream index entry `subject, first_seq → chunk, count` points to, read from the
/// chunk value: exactly `count` records of `subject` with the sequences `first_seq..`, never a
/// record of another subject. In a format-4 chunk only the subject's runs are decoded.
///
/// # Errors
/// [`LogError::Corrupt`] when the chunk does not decode, or does not hold exactly those records; for
/// formats 1–3 also when it holds a record of another subject.
pub fn stream_records(bytes: &[u8], subject: &Pseudonym, first_seq: u64, count: u32) -> Result<Vec<StoredRecord>> {
    let records = if is_shared_chunk(bytes) {
        let mut out = Vec::with_capacity(count as usize);
        for run in runs(&bytes[1..]) {
            let run = run?;
            if run.overlaps(subject, first_seq, count) {
                let last = first_seq.saturating_add(u64::from(count));
                out.extend(run.decode()?.into_iter().filter(|r| (first_seq..last).contains(&r.envelope.seq.0)));
            }
        }
        out
    } else {
        let records = decode_chunk(bytes)?;
        if records.iter().any(|r| r.envelope.subject != *subject) {
            return Err(LogError::Corrupt("the chunk belongs to another subject".into()));
        }
        records
    };
    let exact = records.len() == count as usize
        && records.iter().zip(first_seq..).all(|(r, seq)| r.envelope.subject == *subject && r.envelope.seq.0 == seq);
    if !exact {
        return Err(LogError::Corrupt(format!(
            "the chunk does not hold the {count} events from sequence {first_seq} its stream index entry names"
        )));
    }
    Ok(records)
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
    let body = RecordV1 { envelope: EnvelopeV1::from(envelope), nonce, sealed };
    let mut out = vec![1u8];
    out.extend(postcard::to_stdvec(&body).expect("records serialize"));
    out
}

#[cfg(test)]
mod tests {
    use lethe_domain::{EventEnvelope, EventType, KeyId, Position, Pseudonym, Purpose, SchemaVersion, Seq, UtcMicros};

    use super::*;

    fn run(subject: u8, first_seq: u64, n: u64, sealed: usize) -> Vec<StoredRecord> {
        (0..n)
            .map(|i| StoredRecord {
                envelope: EventEnvelope {
                    position: Position(first_seq + i),
                    subject: Pseudonym::from_bytes([subject; 32]),
                    seq: Seq(first_seq + i),
                    event_type: EventType::parse("test.recorded").expect("valid type"),
                    schema_version: SchemaVersion::new(1).expect("valid version"),
                    purpose: Purpose::parse("analytics").expect("valid purpose"),
                    time: UtcMicros(1_700_000_000_000_000),
                    key_id: KeyId(0),
                },
                nonce: nonce(1, Seq(first_seq + i)),
                sealed: vec![7; sealed],
                format: RECORD_FORMAT,
            })
            .collect()
    }

    #[test]
    fn a_chunk_takes_runs_up_to_its_record_and_byte_limits() {
        let mut w = ChunkWriter::new();
        let big = run(1, 1, CHUNK_MAX_RECORDS as u64 + 100, 16);
        assert!(w.fits(&big), "an empty chunk takes a run of any size");
        let mut w2 = ChunkWriter::new();
        w2.push_run(&big);
        assert!(!w2.fits(&run(2, 1, 1, 16)), "nothing joins a run past the record limit");

        w.push_run(&run(1, 1, CHUNK_MAX_RECORDS as u64 - 1, 16));
        assert!(w.fits(&run(2, 1, 1, 16)), "up to the record limit");
        assert!(!w.fits(&run(2, 1, 2, 16)), "not past it");

        let mut w = ChunkWriter::new();
        w.push_run(&run(1, 1, 1, CHUNK_MAX_BYTES / 2));
        assert!(w.fits(&run(2, 1, 1, CHUNK_MAX_BYTES / 4)));
        assert!(!w.fits(&run(2, 1, 1, CHUNK_MAX_BYTES / 2)), "not past the byte limit");
    }

    #[test]
    fn runs_round_trip_and_reads_take_only_their_subject() {
        let (a, b, c) = (run(1, 1, 3, 20), run(2, 5, 2, 20), run(1, 4, 1, 20));
        let mut w = ChunkWriter::new();
        for r in [&a, &b, &c] {
            w.push_run(r);
        }
        let bytes = w.finish();
        let all: Vec<_> = [a.clone(), b.clone(), c.clone()].concat();
        assert_eq!(decode_chunk(&bytes).expect("decode"), all);
        // encode_chunk finds the same runs from the records alone.
        assert_eq!(decode_chunk(&encode_chunk(&all)).expect("decode"), all);
        let s1 = Pseudonym::from_bytes([1; 32]);
        assert_eq!(stream_records(&bytes, &s1, 1, 3).expect("a"), a);
        assert_eq!(stream_records(&bytes, &s1, 4, 1).expect("c"), c);
        assert_eq!(stream_records(&bytes, &Pseudonym::from_bytes([2; 32]), 5, 2).expect("b"), b);
        // Runs are found by subject and sequences, not by their boundaries: an entry spanning two
        // runs of its subject reads both, and never the other subject's run between them.
        assert_eq!(stream_records(&bytes, &s1, 1, 4).expect("a and c"), [a.clone(), c.clone()].concat());
        assert_eq!(stream_records(&bytes, &s1, 2, 2).expect("a part of a run"), a[1..].to_vec());
        assert!(stream_records(&bytes, &s1, 1, 5).is_err(), "more than the chunk holds");
        assert!(stream_records(&bytes, &Pseudonym::from_bytes([3; 32]), 1, 1).is_err(), "a subject not in it");
    }

    /// The sealed bytes are written as postcard bytes: the encoding the log has always had for them
    /// as a sequence of `u8` (a length, then one byte each), so that records written before read the
    /// same.
    #[test]
    fn sealed_bytes_keep_the_encoding_of_a_sequence_of_bytes() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct AsSequence {
            envelope: EventEnvelope,
            nonce: Nonce,
            sealed: Vec<u8>,
        }
        for len in [0, 1, 127, 128, 300, 70_000] {
            let r = run(4, 9, 1, len).remove(0);
            let as_sequence = AsSequence { envelope: r.envelope.clone(), nonce: r.nonce, sealed: r.sealed.clone() };
            let old = postcard::to_stdvec(&as_sequence).expect("encode");
            let new = postcard::to_stdvec(&RecordV2Ref { envelope: &r.envelope, nonce: &r.nonce, sealed: &r.sealed })
                .expect("encode");
            assert_eq!(new, old, "{len} sealed bytes");
            let read: RecordV2 = postcard::from_bytes(&old).expect("decode");
            assert_eq!((read.envelope, read.nonce, read.sealed), (r.envelope.clone(), r.nonce, r.sealed.clone()));
            let back: AsSequence = postcard::from_bytes(&new).expect("decode");
            assert_eq!(back, as_sequence);
        }
    }
}
