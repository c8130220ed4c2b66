//! Every persisted format stays readable (STYLE.md, "Every persisted format is versioned"): golden
//! fixtures of the stored formats 1, 2, 3 and 4 (`tests/fixtures/`, never regenerated), the
//! `page.viewed` payload upcaster (schema v2 drops query strings, which carry identifiers: invariant
//! 4), and the on-disk layout: an older layout is upgraded at open, a newer one is refused without
//! touching the data directory. Invariant 1 / R-CRYPTO-1: the fixtures open only with their key and
//! their exact envelope.

mod common;

use lethe_crypto::{DataKey, SecretBytes};
use lethe_domain::{EventEnvelope, EventType, KeyId, Position, Pseudonym, Purpose, SchemaVersion, Seq, UtcMicros};
use lethe_eventlog::codec::{self, StoredRecord};
use lethe_eventlog::{EventStore, IndexedRuns};

/// The inputs of the golden record fixtures. Never change them: a fixture is the record a past
/// version of Lethe wrote, and must be read as such forever.
struct FixtureInput {
    envelope: EventEnvelope,
    incarnation: u32,
    payload: &'static [u8],
}

fn fixture_key() -> DataKey {
    DataKey::new(&SecretBytes::new(std::array::from_fn(|i| i as u8)))
}

fn v1_input() -> FixtureInput {
    FixtureInput {
        envelope: EventEnvelope {
            position: Position(7),
            subject: Pseudonym::from_bytes([0x11; 32]),
            seq: Seq(3),
            event_type: EventType::parse("page.viewed").expect("valid type"),
            schema_version: SchemaVersion::new(1).expect("valid version"),
            purpose: Purpose::parse("analytics").expect("valid purpose"),
            time: UtcMicros(1_700_000_000_123_456),
            // Format 1 has no key generation: it is always 0.
            key_id: KeyId(0),
        },
        incarnation: 5,
        payload: br#"{"url":"https://shop.example/outdoor/tents?email=a@b.c#top","title":"Tents"}"#,
    }
}

fn v2_input() -> FixtureInput {
    FixtureInput {
        envelope: EventEnvelope {
            position: Position(8),
            subject: Pseudonym::from_bytes([0x22; 32]),
            seq: Seq(4),
            event_type: EventType::parse("page.viewed").expect("valid type"),
            schema_version: SchemaVersion::new(2).expect("valid version"),
            purpose: Purpose::parse("personalization").expect("valid purpose"),
            time: UtcMicros(1_700_000_000_654_321),
            key_id: KeyId(1),
        },
        incarnation: 6,
        payload: br#"{"host":"shop.example","path":"/outdoor/tents","title":"Tents"}"#,
    }
}

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read fixture {}: {e}", path.display()))
}

fn fixture_record(name: &str) -> Vec<u8> {
    hex::decode(fixture(name).trim()).expect("fixture is hex")
}

fn assert_fixture_reads(name: &str, format: u8, input: &FixtureInput) {
    let rec = codec::decode(&fixture_record(name)).expect("decode");
    assert_eq!(rec.format, format);
    assert_eq!(rec.envelope, input.envelope);
    assert_eq!(rec.nonce, codec::nonce(input.incarnation, input.envelope.seq));
    assert_eq!(rec.open(&fixture_key()).expect("open"), input.payload);

    // Only the right key and the exact envelope open it.
    let other_key = DataKey::new(&SecretBytes::new([0xee; 32]));
    assert!(rec.open(&other_key).is_err(), "{name} opens under another key");
    let mut moved = rec.clone();
    moved.envelope.position = Position(input.envelope.position.0 + 1);
    assert!(moved.open(&fixture_key()).is_err(), "{name} opens at another position");
    let mut flipped = rec;
    *flipped.sealed.last_mut().expect("sealed bytes") ^= 1;
    assert!(flipped.open(&fixture_key()).is_err(), "{name} opens with a flipped tag bit");
}

#[test]
fn the_format_1_fixture_still_decodes_and_opens() {
    assert_fixture_reads("record-format-1.hex", 1, &v1_input());
}

#[test]
fn the_format_2_fixture_still_decodes_and_opens() {
    assert_fixture_reads("record-format-2.hex", 2, &v2_input());
}

/// The writer is deterministic given key, nonce and envelope, so today's writer must produce the
/// format 2 fixture byte for byte. When the format changes this fails on purpose: add a fixture for
/// the new format and point this test at it; keep the old fixture and its reading test.
#[test]
fn the_writer_still_produces_the_fixture_bytes() {
    let i = v2_input();
    let written = StoredRecord::seal(i.envelope, &fixture_key(), i.incarnation, i.payload).encode();
    assert_eq!(written[0], codec::RECORD_FORMAT);
    assert_eq!(hex::encode(written), fixture("record-format-2.hex").trim());
    let i = v1_input();
    let written = codec::encode_v1_for_fixtures(&i.envelope, &fixture_key(), i.incarnation, i.payload);
    assert_eq!(hex::encode(written), fixture("record-format-1.hex").trim());
}

#[test]
fn an_unknown_record_format_is_refused_as_corrupt() {
    let mut bytes = fixture_record("record-format-2.hex");
    bytes[0] = codec::RECORD_FORMAT + 1;
    let err = codec::decode(&bytes).expect_err("unknown format");
    assert_eq!(err.code(), "log_corrupt", "{err}");
    assert!(codec::decode(&[]).is_err());
    let truncated = fixture_record("record-format-1.hex");
    assert!(codec::decode(&truncated[..truncated.len() / 2]).is_err());
}

#[test]
fn a_page_viewed_v1_payload_upcasts_to_the_v2_fixture() {
    let registry = lethe_domain::schema::SchemaRegistry::builtin();
    let page_viewed = EventType::parse(lethe_domain::schema::types::PAGE_VIEWED).expect("valid type");
    assert_eq!(registry.latest(&page_viewed), Some(2));
    let v1 = fixture("page_viewed.v1.json");
    let want: serde_json::Value = serde_json::from_str(&fixture("page_viewed.v2.json")).expect("v2 fixture is JSON");
    let (version, got) = registry.upcast(&page_viewed, 1, v1.as_bytes()).expect("upcast");
    assert_eq!((version, &got), (2, &want));
    assert!(!got.to_string().contains("jane.doe"), "the query string's identifier must not survive");
    // A payload already at the latest version is returned as it is.
    let (version, same) = registry.upcast(&page_viewed, 2, want.to_string().as_bytes()).expect("upcast v2");
    assert_eq!((version, same), (2, want));
    // The format 1 record fixture carries a v1 payload: reading it and upcasting gives a v2 shape.
    let i = v1_input();
    let rec = codec::decode(&fixture_record("record-format-1.hex")).expect("decode");
    let payload = rec.open(&fixture_key()).expect("open");
    let (version, body) =
        registry.upcast(&rec.envelope.event_type, i.envelope.schema_version.get(), &payload).expect("upcast");
    assert_eq!(version, 2);
    assert_eq!(body, serde_json::json!({"host": "shop.example", "path": "/outdoor/tents", "title": "Tents"}));
}

/// Raw keys of the log database, as `layout.rs` documents them.
const META_LAYOUT: &[u8] = b"m/layout";
const META_INCARNATION: &[u8] = b"m/incarnation";
const STREAMS: &[u8] = b"s/";
const EVENTS: &[u8] = b"e/";

fn raw_log(dir: &std::path::Path) -> sled::Db {
    common::raw_sled(&dir.join(lethe_eventlog::LOG_DIR))
}

fn stream_index(db: &sled::Db) -> Vec<(Vec<u8>, Vec<u8>)> {
    db.scan_prefix(STREAMS).map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("scan")).collect()
}

/// Subject A with three events, subject B with two and then erased (a fence in its stream).
fn seeded(dir: &std::path::Path) -> (Pseudonym, Pseudonym) {
    let log = common::open(dir);
    let a = common::pseudonym(&log, "layout-a");
    let b = common::pseudonym(&log, "layout-b");
    common::append(&log, a, &[b"a-1", b"a-2"]);
    common::append(&log, b, &[b"b-1", b"b-2"]);
    common::append(&log, a, &[b"a-3"]);
    log.erase(&b).expect("erase");
    (a, b)
}

#[test]
fn a_layout_1_data_directory_is_upgraded_at_open() {
    use lethe_domain::EventBody::{Empty, Plain, Shredded};
    let dir = common::temp_dir();
    let (a, b) = seeded(dir.path());
    // Turn it into layout 1: one single-format record per `e/` key, no per-subject stream index.
    let positions = {
        let db = raw_log(dir.path());
        let chunks: Vec<_> = db.scan_prefix(EVENTS).map(|kv| kv.expect("scan")).collect();
        assert_eq!(chunks.len(), 4, "three appends and a fence make four chunks");
        let mut positions = Vec::new();
        for (k, v) in chunks {
            db.remove(k).expect("remove");
            for rec in codec::decode_chunk(&v).expect("decode") {
                let pos = rec.envelope.position.0;
                let mut key = EVENTS.to_vec();
                key.extend_from_slice(&pos.to_be_bytes());
                db.insert(key, rec.encode()).expect("insert");
                positions.push((rec.envelope.subject, rec.envelope.seq.0, pos));
            }
        }
        for (k, _) in stream_index(&db) {
            db.remove(k).expect("remove");
        }
        db.insert(META_LAYOUT, &1u32.to_be_bytes()).expect("insert");
        db.flush().expect("flush");
        positions
    };
    assert_eq!(positions.len(), 6, "five events and a fence");
    {
        let log = common::open(dir.path());
        let bodies = |s| log.read_stream(s).expect("read_stream").into_iter().map(|e| e.body).collect::<Vec<_>>();
        assert_eq!(bodies(&a), vec![Plain(b"a-1".to_vec()), Plain(b"a-2".to_vec()), Plain(b"a-3".to_vec())]);
        assert_eq!(bodies(&b), vec![Shredded, Shredded, Empty]);
        let report = log.verify().expect("verify");
        assert!(report.ok(), "{report:?}");
        assert_eq!(log.read_all(Position(1)).count(), 6);
    }
    let db = raw_log(dir.path());
    assert_eq!(lethe_eventlog::layout::LAYOUT_VERSION, 7);
    assert_eq!(db.get(META_LAYOUT).expect("get").as_deref(), Some(&7u32.to_be_bytes()[..]));
    // The rebuilt index has one entry per event, pointing at its position.
    let mut expected: Vec<(Vec<u8>, Vec<u8>)> = positions
        .iter()
        .map(|(s, seq, pos)| {
            let mut k = STREAMS.to_vec();
            k.extend_from_slice(s.as_bytes());
            k.extend_from_slice(&seq.to_be_bytes());
            (k, pos.to_be_bytes().to_vec())
        })
        .collect();
    expected.sort();
    assert_eq!(stream_index(&db), expected, "the rebuilt index");
    drop(db);
    // And the upgraded directory takes new events.
    let log = common::open(dir.path());
    common::append(&log, a, &[b"a-4", b"a-5"]);
    assert_eq!(log.read_stream(&a).expect("read_stream").len(), 5);
    assert!(log.verify().expect("verify").ok());
}

#[test]
fn a_layout_newer_than_this_lethe_is_refused_untouched() {
    let dir = common::temp_dir();
    seeded(dir.path());
    let incarnation = {
        let db = raw_log(dir.path());
        db.insert(META_LAYOUT, &99u32.to_be_bytes()).expect("insert");
        db.flush().expect("flush");
        db.get(META_INCARNATION).expect("get").expect("incarnation").to_vec()
    };
    let config = lethe_eventlog::LogConfig::new(dir.path(), common::master());
    let err = lethe_eventlog::SledEventLog::open(config).expect_err("a newer layout must be refused");
    assert!(
        matches!(err, lethe_eventlog::LogError::LayoutTooNew { found: 99, supported } if supported == lethe_eventlog::layout::LAYOUT_VERSION),
        "{err}"
    );
    assert_eq!(err.code(), "layout_too_new");
    assert!(err.to_string().contains("upgrade"), "the message must tell to upgrade: {err}");
    let db = raw_log(dir.path());
    assert_eq!(db.get(META_LAYOUT).expect("get").as_deref(), Some(&99u32.to_be_bytes()[..]), "layout untouched");
    assert_eq!(db.get(META_INCARNATION).expect("get").as_deref(), Some(&incarnation[..]), "incarnation untouched");
}

/// A record of format 1 inside a live log (as a data directory from before key generations holds
/// them) reads back through the log, not only through the codec.
#[test]
fn a_format_1_record_in_a_live_log_reads_back() {
    let dir = common::temp_dir();
    let (a, _) = seeded(dir.path());
    let (key, head, incarnation) = {
        let log = common::open(dir.path());
        let key = log.forensic_data_key(&a, KeyId(0)).expect("A's key");
        (key, log.head().0, log.incarnation())
    };
    let envelope = EventEnvelope {
        position: Position(head + 1),
        subject: a,
        seq: Seq(4),
        event_type: EventType::parse("page.viewed").expect("valid type"),
        schema_version: SchemaVersion::new(1).expect("valid version"),
        purpose: Purpose::parse("analytics").expect("valid purpose"),
        time: UtcMicros(1_600_000_000_000_000),
        key_id: KeyId(0),
    };
    let payload = br#"{"url":"https://shop.example/a"}"#;
    {
        // An incarnation no open has used, so that the nonce is fresh under A's key.
        let record = codec::encode_v1_for_fixtures(&envelope, &DataKey::new(&key), incarnation + 1000, payload);
        let db = raw_log(dir.path());
        let mut event_key = b"e/".to_vec();
        event_key.extend_from_slice(&(head + 1).to_be_bytes());
        let mut stream_key = STREAMS.to_vec();
        stream_key.extend_from_slice(a.as_bytes());
        stream_key.extend_from_slice(&4u64.to_be_bytes());
        db.insert(event_key, record).expect("insert");
        db.insert(stream_key, &(head + 1).to_be_bytes()).expect("insert");
        db.flush().expect("flush");
    }
    let log = common::open(dir.path());
    let stream = log.read_stream(&a).expect("read_stream");
    assert_eq!(stream.len(), 4);
    assert_eq!(stream[3].envelope, envelope);
    assert_eq!(stream[3].body, lethe_domain::EventBody::Plain(payload.to_vec()));
    assert!(log.verify().expect("verify").ok());
}

/// The second record of the chunk fixture: the same subject's next event.
fn v3_second_input() -> FixtureInput {
    let mut envelope = v2_input().envelope;
    envelope.position = Position(9);
    envelope.seq = Seq(5);
    FixtureInput {
        envelope,
        incarnation: 6,
        payload: br#"{"host":"shop.example","path":"/outdoor/boots","title":"Boots"}"#,
    }
}

fn chunk_records() -> Vec<StoredRecord> {
    [v2_input(), v3_second_input()]
        .into_iter()
        .map(|i| StoredRecord::seal(i.envelope, &fixture_key(), i.incarnation, i.payload))
        .collect()
}

/// Format 3 is what layouts 3 and 4 wrote: the events of one append as one chunk.
#[test]
fn the_chunk_format_3_fixture_still_decodes_and_opens() {
    let bytes = fixture_record("chunk-format-3.hex");
    assert_eq!(bytes[0], codec::CHUNK_FORMAT_V3);
    assert!(!codec::is_shared_chunk(&bytes));
    let records = codec::decode_chunk(&bytes).expect("decode");
    let inputs = [v2_input(), v3_second_input()];
    assert_eq!(records.len(), inputs.len());
    for (rec, input) in records.iter().zip(&inputs) {
        assert_eq!(rec.envelope, input.envelope);
        assert_eq!(rec.nonce, codec::nonce(input.incarnation, input.envelope.seq));
        assert_eq!(rec.open(&fixture_key()).expect("open"), input.payload);
    }
    // Records inside a chunk are sealed on their own: swapping their ciphertexts breaks both.
    let mut swapped = records.clone();
    let (a, b) = swapped.split_at_mut(1);
    std::mem::swap(&mut a[0].sealed, &mut b[0].sealed);
    assert!(swapped.iter().all(|r| r.open(&fixture_key()).is_err()));
    // The format 3 encoder kept for fixtures produces it byte for byte.
    assert_eq!(codec::encode_v3_for_fixtures(&chunk_records()), bytes, "the format 3 encoder changed");
    // Read through a stream index entry: exactly the entry's events, of one subject.
    let subject = v2_input().envelope.subject;
    assert_eq!(codec::stream_records(&bytes, &subject, 4, 2).expect("entry").len(), 2);
    let other = Pseudonym::from_bytes([0x33; 32]);
    assert_eq!(codec::stream_records(&bytes, &other, 4, 2).expect_err("another subject").code(), "log_corrupt");
    assert!(codec::stream_records(&bytes, &subject, 4, 1).is_err(), "the entry names fewer events");
    assert!(codec::stream_records(&bytes, &subject, 4, 3).is_err(), "the entry names more events");
}

/// The third record of the format 4 fixture: another subject's first event, sealed under its own
/// key, a period key (retention 30 days), in the same group commit.
fn v4_other_subject_input() -> FixtureInput {
    FixtureInput {
        envelope: EventEnvelope {
            position: Position(10),
            subject: Pseudonym::from_bytes([0x33; 32]),
            seq: Seq(1),
            event_type: EventType::parse("product.clicked").expect("valid type"),
            schema_version: SchemaVersion::new(1).expect("valid version"),
            purpose: Purpose::parse("analytics").expect("valid purpose"),
            time: UtcMicros(1_700_000_000_777_777),
            key_id: KeyId(0x8000_0000 | (30 << 16) | 6558),
        },
        incarnation: 6,
        payload: br#"{"product_id":"tent-2p","category":"outdoor"}"#,
    }
}

fn other_subject_key() -> DataKey {
    DataKey::new(&SecretBytes::new(std::array::from_fn(|i| 0x40 + i as u8)))
}

/// The runs of the format 4 fixture: subject 0x22's append of two events, then subject 0x33's of one.
fn shared_chunk_runs() -> [Vec<StoredRecord>; 2] {
    let first = chunk_records();
    let i = v4_other_subject_input();
    let second = vec![StoredRecord::seal(i.envelope, &other_subject_key(), i.incarnation, i.payload)];
    [first, second]
}

/// Format 4 is what Lethe writes today: the events of one group commit, of several subjects, as one
/// chunk of runs (one run per append request).
#[test]
fn the_chunk_format_4_fixture_still_decodes_and_opens() {
    let bytes = fixture_record("chunk-format-4.hex");
    assert_eq!(bytes[0], codec::CHUNK_FORMAT);
    assert_eq!(codec::CHUNK_FORMAT, 4);
    assert!(codec::is_shared_chunk(&bytes));
    let other = v4_other_subject_input();
    assert_eq!(
        Some(other.envelope.key_id),
        KeyId::for_retention(30, other.envelope.time).ok(),
        "the fixture's key id is a 30-day period key"
    );
    let records = codec::decode_chunk(&bytes).expect("decode");
    let inputs = [(v2_input(), fixture_key()), (v3_second_input(), fixture_key()), (other, other_subject_key())];
    assert_eq!(records.len(), inputs.len());
    for (rec, (input, key)) in records.iter().zip(&inputs) {
        assert_eq!(rec.format, codec::RECORD_FORMAT);
        assert_eq!(rec.envelope, input.envelope, "each record keeps its own envelope and key id");
        assert_eq!(rec.nonce, codec::nonce(input.incarnation, input.envelope.seq));
        assert_eq!(rec.open(key).expect("open"), input.payload);
    }
    // A record opens only under its own subject's key, even next to another subject's records.
    assert!(records[2].open(&fixture_key()).is_err());
    assert!(records[0].open(&other_subject_key()).is_err());

    // Through a stream index entry: exactly that subject's events, never another's.
    let (s22, s33) = (Pseudonym::from_bytes([0x22; 32]), Pseudonym::from_bytes([0x33; 32]));
    let got = codec::stream_records(&bytes, &s22, 4, 2).expect("0x22's entry");
    assert_eq!(got.iter().map(|r| (r.envelope.subject, r.envelope.seq.0)).collect::<Vec<_>>(), [(s22, 4), (s22, 5)]);
    let got = codec::stream_records(&bytes, &s33, 1, 1).expect("0x33's entry");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].envelope, records[2].envelope);
    for (subject, seq, count) in [(s22, 4, 3), (s22, 3, 2), (s22, 1, 1), (s33, 1, 2), (s33, 4, 2)] {
        let err = codec::stream_records(&bytes, &subject, seq, count).expect_err("not what the chunk holds");
        assert_eq!(err.code(), "log_corrupt", "{err}");
    }
    let stranger = Pseudonym::from_bytes([0x44; 32]);
    assert!(codec::stream_records(&bytes, &stranger, 1, 1).is_err());

    // Today's writer produces the fixture byte for byte, from runs or from the records.
    let [first, second] = shared_chunk_runs();
    let mut w = codec::ChunkWriter::new();
    w.push_run(&first);
    w.push_run(&second);
    assert_eq!(w.records(), 3);
    assert_eq!(w.finish(), bytes, "the chunk format changed: add a new fixture");
    assert_eq!(codec::encode_chunk(&records), bytes);
}

/// The framing of format 4 is checked: a run header that names another subject or other sequences
/// than its records, a length that does not match them, or a cut value does not decode.
#[test]
fn a_damaged_format_4_chunk_is_refused_as_corrupt() {
    let bytes = fixture_record("chunk-format-4.hex");
    // The first run header starts after the format byte: subject (32), first seq (8), count (4), length (4).
    let second_run = 1 + 48 + u32::from_be_bytes(bytes[45..49].try_into().expect("4 bytes")) as usize;
    assert_eq!(&bytes[second_run..second_run + 32], &[0x33; 32], "the second run header");
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut b = bytes.clone();
    b[second_run..second_run + 32].copy_from_slice(&[0x22; 32]);
    cases.push(("a run header naming another subject", b));
    let mut b = bytes.clone();
    b[1 + 39] ^= 1; // first seq 4 -> 5
    cases.push(("a run header naming other sequences", b));
    let mut b = bytes.clone();
    b[1 + 43] = 3; // count 2 -> 3
    cases.push(("a run header counting more records", b));
    let mut b = bytes.clone();
    b[1 + 47] = b[1 + 47].wrapping_add(1);
    cases.push(("a run length that does not match its records", b));
    cases.push(("a cut value", bytes[..bytes.len() - 10].to_vec()));
    cases.push(("a cut run header", bytes[..second_run + 20].to_vec()));
    cases.push(("no run at all", vec![codec::CHUNK_FORMAT]));
    for (what, b) in cases {
        let err = codec::decode_chunk(&b).expect_err(what);
        assert_eq!(err.code(), "log_corrupt", "{what}: {err}");
    }
    // Reading one subject decodes only its runs, and checks what it returns: a run relabelled to
    // another subject is either not that subject's (and skipped) or fails on its records; another
    // subject's record is never returned.
    let (s22, s33) = (Pseudonym::from_bytes([0x22; 32]), Pseudonym::from_bytes([0x33; 32]));
    let mut b = bytes.clone();
    b[second_run..second_run + 32].copy_from_slice(&[0x22; 32]);
    let got = codec::stream_records(&b, &s22, 4, 2).expect("0x22's own run is intact");
    assert!(got.iter().all(|r| r.envelope.subject == s22));
    assert!(codec::stream_records(&b, &s33, 1, 1).is_err(), "0x33's run is gone");
    b[second_run + 39] = 5; // the relabelled run now claims 0x22's sequence 5
    assert!(codec::stream_records(&b, &s22, 4, 2).is_err(), "a record of 0x33 under a run of 0x22");
}

/// Single-record values of formats 1 and 2 read as chunks of one.
#[test]
fn single_record_fixtures_read_as_chunks_of_one() {
    for (name, input) in [("record-format-1.hex", v1_input()), ("record-format-2.hex", v2_input())] {
        let records = codec::decode_chunk(&fixture_record(name)).expect("decode");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].envelope, input.envelope);
    }
}

fn event_key(pos: u64) -> Vec<u8> {
    let mut k = EVENTS.to_vec();
    k.extend_from_slice(&pos.to_be_bytes());
    k
}

fn stream_entry(subject: &Pseudonym, seq: u64) -> Vec<u8> {
    let mut k = STREAMS.to_vec();
    k.extend_from_slice(subject.as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn stream_value(pos: u64, count: u32) -> Vec<u8> {
    [&pos.to_be_bytes()[..], &count.to_be_bytes()[..]].concat()
}

/// Every chunk of the log in data directory `dir`: (key position, its bytes), in key order. A chunk
/// kept in a chunk file is read from there.
fn chunks(db: &sled::Db, dir: &std::path::Path) -> Vec<(u64, Vec<u8>)> {
    let reader = lethe_eventlog::RawChunkReader::new(&dir.join(lethe_eventlog::LOG_DIR));
    db.scan_prefix(EVENTS)
        .map(|kv| {
            let (k, v) = kv.expect("scan");
            let bytes = reader.resolve(&v).expect("the chunk's bytes");
            (u64::from_be_bytes(k[2..].try_into().expect("8 bytes")), bytes)
        })
        .collect()
}

fn request(subject: Pseudonym, payloads: &[&str]) -> lethe_eventlog::AppendRequest {
    lethe_eventlog::AppendRequest {
        subject,
        expected: lethe_domain::ExpectedVersion::Any,
        events: payloads.iter().map(|p| common::event(p.as_bytes())).collect(),
    }
}

fn plain_bodies(log: &lethe_eventlog::SledEventLog, subject: &Pseudonym) -> Vec<Vec<u8>> {
    log.read_stream(subject)
        .expect("read_stream")
        .into_iter()
        .map(|e| {
            assert_eq!(e.envelope.subject, *subject, "read_stream returned another subject's event");
            match e.body {
                lethe_domain::EventBody::Plain(p) => p,
                other => panic!("unexpected body {other:?}"),
            }
        })
        .collect()
}

/// Layouts 4 → 5 → 6 → 7 only stamp the version: the format-3 chunks of a layout-4 directory read as
/// they are, and new group commits go into shared format-4 chunks next to them.
#[test]
fn a_layout_4_data_directory_is_upgraded_and_its_format_3_chunks_still_read() {
    use lethe_domain::EventBody::{Empty, Plain, Shredded};
    let dir = common::temp_dir();
    let (a, b) = seeded(dir.path());
    // Turn it into layout 4: every chunk in format 3 (each holds one append of one subject).
    {
        let db = raw_log(dir.path());
        let old = chunks(&db, dir.path());
        assert_eq!(old.len(), 4, "three appends and a fence make four chunks");
        for (pos, v) in old {
            assert!(codec::is_shared_chunk(&v), "layout 5 writes format 4");
            let records = codec::decode_chunk(&v).expect("decode");
            db.insert(event_key(pos), codec::encode_v3_for_fixtures(&records)).expect("insert");
        }
        db.insert(META_LAYOUT, &4u32.to_be_bytes()).expect("insert");
        db.flush().expect("flush");
    }
    {
        let log = common::open(dir.path());
        let bodies = |s| log.read_stream(s).expect("read_stream").into_iter().map(|e| e.body).collect::<Vec<_>>();
        assert_eq!(bodies(&a), vec![Plain(b"a-1".to_vec()), Plain(b"a-2".to_vec()), Plain(b"a-3".to_vec())]);
        assert_eq!(bodies(&b), vec![Shredded, Shredded, Empty]);
        assert!(log.verify().expect("verify").ok());
        // One group: a, a new subject c, a again.
        let c = common::pseudonym(&log, "layout-c");
        let results = log.append_batch(vec![request(a, &["a-4"]), request(c, &["c-1", "c-2"]), request(a, &["a-5"])]);
        let positions: Vec<_> = results.iter().map(|r| r.as_ref().expect("append").first_position.0).collect();
        assert_eq!(positions, [7, 8, 10]);
        assert_eq!(plain_bodies(&log, &a), [&b"a-1"[..], b"a-2", b"a-3", b"a-4", b"a-5"]);
        assert_eq!(plain_bodies(&log, &c), [&b"c-1"[..], b"c-2"]);
        let report = log.verify().expect("verify");
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.events, 10);
        assert_eq!(log.read_all(Position(1)).count(), 10);
    }
    let db = raw_log(dir.path());
    assert_eq!(db.get(META_LAYOUT).expect("get").as_deref(), Some(&7u32.to_be_bytes()[..]));
    let all = chunks(&db, dir.path());
    assert_eq!(all.len(), 5, "the group went into one chunk");
    assert!(all[..4].iter().all(|(_, v)| v[0] == codec::CHUNK_FORMAT_V3), "old chunks are not rewritten");
    let (pos, shared) = &all[4];
    assert_eq!((*pos, shared[0]), (7, codec::CHUNK_FORMAT));
    assert_eq!(codec::decode_chunk(shared).expect("decode").len(), 4);
    // Each request has its own index entry, pointing at the shared chunk.
    let c = {
        let k = stream_index(&db).into_iter().find(|(_, v)| v == &stream_value(7, 2)).expect("c's entry").0;
        Pseudonym::from_bytes(k[2..34].try_into().expect("32 bytes"))
    };
    assert_eq!(db.get(stream_entry(&a, 4)).expect("get").as_deref(), Some(&stream_value(7, 1)[..]));
    assert_eq!(db.get(stream_entry(&a, 5)).expect("get").as_deref(), Some(&stream_value(7, 1)[..]));
    assert_eq!(db.get(stream_entry(&c, 1)).expect("get").as_deref(), Some(&stream_value(7, 2)[..]));
}

/// A group commit of many subjects shares chunks of at most 512 records (or about 64 KB); a single
/// request larger than that gets a chunk of its own; a refused request in the group consumes no
/// position; every request keeps its own index entry and reads back alone.
#[test]
fn a_group_commit_of_many_subjects_shares_chunks_and_splits_large_ones() {
    let dir = common::temp_dir();
    let subjects: Vec<Pseudonym>;
    {
        let log = common::open(dir.path());
        subjects = (0..600).map(|i| common::pseudonym(&log, &format!("many-{i}"))).collect();
        common::append(&log, subjects[0], &[b"first"]);
        let payloads: Vec<String> = (0..600).map(|i| format!("e-{i}")).collect();
        let mut requests: Vec<_> = subjects.iter().zip(&payloads).map(|(s, p)| request(*s, &[p.as_str()])).collect();
        let mut refused = request(subjects[0], &["refused"]);
        refused.expected = lethe_domain::ExpectedVersion::NoStream;
        requests.insert(300, refused);
        requests.push(request(subjects[1], &["again-1", "again-2"]));
        let results = log.append_batch(requests);
        assert_eq!(results[300].as_ref().expect_err("refused").code(), "version_conflict");
        let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(ok.len(), 601);
        for w in ok.windows(2) {
            assert_eq!(w[1].first_position.0, w[0].last_position.0 + 1, "positions are gapless");
        }
        assert_eq!(log.head().0, 1 + 600 + 2);
        assert_eq!(plain_bodies(&log, &subjects[0]), [&b"first"[..], b"e-0"]);
        assert_eq!(plain_bodies(&log, &subjects[1]), [&b"e-1"[..], b"again-1", b"again-2"]);
        for (i, s) in subjects.iter().enumerate().skip(2) {
            assert_eq!(plain_bodies(&log, s), [format!("e-{i}").into_bytes()]);
        }
        let report = log.verify().expect("verify");
        assert!(report.ok(), "{report:?}");
        assert_eq!((report.events, report.subjects), (603, 600));

        // One request of 600 events between two small ones; then large payloads of many subjects.
        let big: Vec<String> = (0..600).map(|i| format!("big-{i}")).collect();
        let big: Vec<&str> = big.iter().map(String::as_str).collect();
        let results = log.append_batch(vec![
            request(subjects[2], &["s2"; 10]),
            request(subjects[3], &big),
            request(subjects[4], &["s4"]),
        ]);
        assert!(results.iter().all(Result::is_ok));
        let heavy = "x".repeat(20 * 1024);
        let results = log.append_batch(subjects[10..20].iter().map(|s| request(*s, &[heavy.as_str()])).collect());
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(plain_bodies(&log, &subjects[3]).len(), 601);
        assert_eq!(plain_bodies(&log, &subjects[15])[1], heavy.as_bytes());
        assert!(log.verify().expect("verify").ok());
    }
    let db = raw_log(dir.path());
    let all = chunks(&db, dir.path());
    let sizes: Vec<usize> = all.iter().map(|(_, v)| codec::decode_chunk(v).expect("decode").len()).collect();
    // The first append alone; the group of 602 events in a few shared chunks; then 10 | 600 | 1; then
    // ten events of 20 KB, a few to a chunk.
    assert_eq!(sizes[0], 1);
    let mut group = Vec::new();
    for &n in &sizes[1..] {
        if group.iter().sum::<usize>() >= 602 {
            break;
        }
        group.push(n);
    }
    assert_eq!(group.iter().sum::<usize>(), 602, "chunks do not straddle groups: {sizes:?}");
    assert!((2..=4).contains(&group.len()), "602 small events share a few chunks: {sizes:?}");
    let rest = &sizes[1 + group.len()..];
    assert_eq!(rest[..3], [10, 600, 1], "a request too large to share gets a chunk of its own: {sizes:?}");
    assert_eq!(rest[3..].iter().sum::<usize>(), 10);
    assert!(rest[3..].len() >= 4, "ten events of 20 KB need at least four chunks: {sizes:?}");
    assert!(rest[3..].iter().any(|&n| n > 1), "and share them: {sizes:?}");
    for (pos, v) in &all {
        assert_eq!(v[0], codec::CHUNK_FORMAT);
        let records = codec::decode_chunk(v).expect("decode");
        assert_eq!(records[0].envelope.position.0, *pos, "a chunk lives under its first position");
        let one_request = records.iter().all(|r| r.envelope.subject == records[0].envelope.subject);
        if !one_request {
            assert!(records.len() <= codec::CHUNK_MAX_RECORDS, "chunk at {pos}: {} records", records.len());
            assert!(v.len() <= codec::CHUNK_MAX_BYTES, "chunk at {pos}: {} bytes", v.len());
        }
    }
    assert_eq!(stream_index(&db).len(), 1 + 601 + 3 + 10, "one index entry per request");
}

/// Merges the chunks of a (positions 1–2) and b (position 3) into one chunk at position 1, in the
/// given encoding, and points b's index entry at it. Returns the two subjects.
fn merged_chunk(dir: &std::path::Path, encode: fn(&[StoredRecord]) -> Vec<u8>) -> (Pseudonym, Pseudonym) {
    let (a, b) = {
        let log = common::open(dir);
        let a = common::pseudonym(&log, "merge-a");
        let b = common::pseudonym(&log, "merge-b");
        common::append(&log, a, &[b"a-1", b"a-2"]);
        common::append(&log, b, &[b"b-1"]);
        (a, b)
    };
    let db = raw_log(dir);
    let all = chunks(&db, dir);
    assert_eq!(all.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [1, 3]);
    let records: Vec<_> = all.iter().flat_map(|(_, v)| codec::decode_chunk(v).expect("decode")).collect();
    db.remove(event_key(3)).expect("remove");
    db.insert(event_key(1), encode(&records)).expect("insert");
    db.insert(stream_entry(&b, 1), stream_value(1, 1)).expect("insert");
    db.flush().expect("flush");
    (a, b)
}

/// Subjects may share a chunk only in format 4; a chunk of formats 1–3 holding two subjects is
/// damage, reported by `verify` and refused by `read_stream`.
#[test]
fn only_a_format_4_chunk_may_hold_several_subjects() {
    let dir = common::temp_dir();
    let (a, b) = merged_chunk(dir.path(), codec::encode_chunk);
    {
        let log = common::open(dir.path());
        assert_eq!(plain_bodies(&log, &a), [&b"a-1"[..], b"a-2"]);
        assert_eq!(plain_bodies(&log, &b), [&b"b-1"[..]]);
        let report = log.verify().expect("verify");
        assert!(report.ok(), "{report:?}");
    }

    let dir = common::temp_dir();
    let (a, b) = merged_chunk(dir.path(), codec::encode_v3_for_fixtures);
    let log = common::open(dir.path());
    for s in [&a, &b] {
        let err = log.read_stream(s).expect_err("a format 3 chunk of two subjects");
        assert_eq!(err.code(), "log_corrupt", "{err}");
        assert!(err.to_string().contains("another subject"), "{err}");
    }
    let report = log.verify().expect("verify");
    assert!(report.problems.iter().any(|p| p.contains("mixes subjects")), "{:?}", report.problems);
    assert!(report.problems.iter().any(|p| p.contains("more than one append")), "{:?}", report.problems);
}

/// Each stream index entry must point at a chunk holding exactly its events: a wrong count, an
/// entry pointing at another subject's events, or an extra entry are reported by `verify`, and
/// `read_stream` refuses them rather than return another subject's events.
#[test]
fn a_stream_index_entry_that_does_not_match_its_chunk_is_reported() {
    type Damage = fn(&sled::Db, &Pseudonym, &Pseudonym);
    let cases: [(&str, Damage); 3] = [
        ("a count one too high", |db, _, b| {
            db.insert(stream_entry(b, 1), stream_value(1, 2)).expect("insert");
        }),
        ("an entry naming another subject's events", |db, a, b| {
            // b's entry moved to a's sequence 1 (a's own entry removed): it would read a's events.
            db.remove(stream_entry(a, 1)).expect("remove");
            db.insert(stream_entry(b, 1), stream_value(1, 2)).expect("insert");
            db.insert(stream_entry(b, 2), stream_value(1, 1)).expect("insert");
        }),
        ("an extra entry", |db, _, b| {
            db.insert(stream_entry(b, 2), stream_value(1, 1)).expect("insert");
        }),
    ];
    for (what, damage) in cases {
        let dir = common::temp_dir();
        let (a, b) = merged_chunk(dir.path(), codec::encode_chunk);
        {
            let db = raw_log(dir.path());
            damage(&db, &a, &b);
            db.flush().expect("flush");
        }
        let log = common::open(dir.path());
        match log.read_stream(&b) {
            Err(e) => assert_eq!(e.code(), "log_corrupt", "{what}: {e}"),
            Ok(events) => panic!("{what}: read {} events", events.len()),
        }
        let report = log.verify().expect("verify");
        assert!(!report.ok(), "{what}: verify found nothing");
    }
}

/// `append_batch_then` hands the results to a callback once they are durable: the events read back
/// when it runs, each request gets its own result (a refused one its error), and no caller thread
/// waits in between.
#[test]
fn append_batch_then_delivers_durable_results_to_a_callback() {
    let dir = common::temp_dir();
    let log = common::open(dir.path());
    let a = common::pseudonym(&log, "callback-a");
    let b = common::pseudonym(&log, "callback-b");
    common::append(&log, b, &[b"b-1"]);
    log.erase(&b).expect("erase");
    let (tx, rx) = std::sync::mpsc::channel();
    log.append_batch_then(
        vec![request(a, &["a-1", "a-2"]), request(b, &["b-2"]), request(a, &["a-3"])],
        Box::new(move |results| tx.send(results).expect("send")),
    );
    let results = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the callback ran");
    assert_eq!(results.len(), 3);
    let first = results[0].as_ref().expect("a's first request").first_position.0;
    assert_eq!(results[2].as_ref().expect("a's second request").first_position.0, first + 2);
    assert!(matches!(results[1], Err(lethe_eventlog::LogError::Erased(_))), "{:?}", results[1]);
    assert!(log.head().0 >= first + 2, "durable before the callback");
    assert_eq!(plain_bodies(&log, &a), [&b"a-1"[..], b"a-2", b"a-3"]);
}

fn open_deferring(dir: &std::path::Path, window: std::time::Duration) -> lethe_eventlog::SledEventLog {
    let mut config = lethe_eventlog::LogConfig::new(dir, common::master());
    config.defer_window = window;
    lethe_eventlog::SledEventLog::open(config).expect("open the log")
}

type Results = Vec<lethe_eventlog::Result<lethe_eventlog::Appended>>;

fn deferred(
    log: &lethe_eventlog::SledEventLog,
    req: lethe_eventlog::AppendRequest,
) -> std::sync::mpsc::Receiver<Results> {
    let (tx, rx) = std::sync::mpsc::channel();
    log.append_batch_deferred(vec![req], Box::new(move |results| tx.send(results).expect("send")));
    rx
}

/// A deferred append (decision receipts) is applied (after the writer's short linger for more) but
/// waits for its fsync: it is not
/// published or answered while the window runs, the next ordinary append's fsync carries it (its
/// callback runs first, with the earlier position), and closing the log makes a held one durable.
#[test]
fn deferred_appends_ride_on_the_next_fsync_and_closing_the_log_keeps_them() {
    let dir = common::temp_dir();
    let (a, b, first) = {
        let log = open_deferring(dir.path(), std::time::Duration::from_secs(600));
        let a = common::pseudonym(&log, "deferred-a");
        let b = common::pseudonym(&log, "deferred-b");
        let head = log.head();
        let rx = deferred(&log, request(a, &["a-1"]));
        assert!(rx.recv_timeout(std::time::Duration::from_millis(300)).is_err(), "answered before any fsync");
        assert_eq!(log.head(), head, "published before its fsync");
        assert!(plain_bodies(&log, &a).is_empty(), "readable before its fsync");

        let urgent = log.append_batch(vec![request(b, &["b-1"])]).pop().expect("one result").expect("b appended");
        let held = rx.try_recv().expect("answered by the same fsync").pop().expect("one result").expect("a appended");
        assert!(held.last_position < urgent.first_position, "{held:?} {urgent:?}");
        assert!(log.head() >= urgent.last_position);
        assert_eq!(plain_bodies(&log, &a), [&b"a-1"[..]]);

        let rx = deferred(&log, request(a, &["a-2"]));
        drop(log);
        let closed = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("answered on close");
        (a, b, closed[0].as_ref().expect("a-2 appended").first_position)
    };
    let log = common::open(dir.path());
    assert!(log.head() >= first, "the held append was flushed on close");
    assert_eq!(plain_bodies(&log, &a), [&b"a-1"[..], b"a-2"]);
    assert_eq!(plain_bodies(&log, &b), [&b"b-1"[..]]);
}

/// With nothing else written, a deferred append still becomes durable and is answered once its
/// window ends; a window of zero makes it an ordinary append.
#[test]
fn a_deferred_append_alone_is_answered_when_its_window_ends() {
    for window in [std::time::Duration::from_millis(50), std::time::Duration::ZERO] {
        let dir = common::temp_dir();
        let log = open_deferring(dir.path(), window);
        let a = common::pseudonym(&log, "alone");
        let rx = deferred(&log, request(a, &["a-1"]));
        let results = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("answered after the window");
        let appended = results[0].as_ref().expect("appended");
        assert!(log.head() >= appended.last_position, "{window:?}: answered before it was durable");
        assert_eq!(plain_bodies(&log, &a), [&b"a-1"[..]]);
    }
}

fn open_indexing_past(dir: &std::path::Path, max_unindexed: usize) -> lethe_eventlog::SledEventLog {
    let mut config = lethe_eventlog::LogConfig::new(dir, common::master());
    config.defer_window = std::time::Duration::ZERO;
    config.max_unindexed_runs = max_unindexed;
    lethe_eventlog::SledEventLog::open(config).expect("open the log")
}

fn marked_chunks(db: &sled::Db) -> Vec<u64> {
    db.scan_prefix(b"u/").map(|kv| u64::from_be_bytes(kv.expect("scan").0[2..].try_into().expect("8 bytes"))).collect()
}

/// Layout 6: a deferred append (a decision receipt) writes its chunk and a `u/` mark, not a stream
/// index entry; its run is read back (also after a crash-like reopen, from the marked chunk) and
/// verifies. Past the limit, the next group indexes every waiting run of the oldest chunk's subjects
/// in one multi-run entry per subject, keyed by its last run, and removes the marks it emptied.
#[test]
fn deferred_runs_wait_outside_the_index_and_are_indexed_in_bulk_past_the_limit() {
    let dir = common::temp_dir();
    let (a, b) = {
        let log = open_indexing_past(dir.path(), usize::MAX);
        let a = common::pseudonym(&log, "unindexed-a");
        let b = common::pseudonym(&log, "unindexed-b");
        common::append(&log, a, &[b"a-1"]);
        for payload in ["a-2", "a-3"] {
            let results = deferred(&log, request(a, &[payload])).recv().expect("answered");
            assert!(results[0].is_ok());
        }
        deferred(&log, request(b, &["b-1"])).recv().expect("answered")[0].as_ref().expect("b appended");
        common::append(&log, a, &[b"a-4"]);
        assert_eq!(plain_bodies(&log, &a), [&b"a-1"[..], b"a-2", b"a-3", b"a-4"]);
        assert!(log.verify().expect("verify").ok());
        assert_eq!(log.runs_waiting_for_index(), Some(3));
        (a, b)
    };
    {
        let db = raw_log(dir.path());
        // a-1 and a-4 have entries; a-2, a-3 and b-1 do not, and their chunks are marked.
        let index: Vec<Vec<u8>> = stream_index(&db).into_iter().map(|(k, _)| k).collect();
        assert_eq!(index, vec![stream_entry(&a, 1), stream_entry(&a, 4)]);
        assert_eq!(marked_chunks(&db).len(), 3, "one mark per chunk holding a deferred run");
    }
    // Reopened with no room: the runs are found again from the marks, and the next group indexes
    // them all.
    let log = open_indexing_past(dir.path(), 0);
    assert_eq!(log.runs_waiting_for_index(), Some(3), "read back from the marks");
    assert_eq!(log.waiting_runs_indexed(), Some(IndexedRuns::default()));
    assert_eq!(plain_bodies(&log, &a), [&b"a-1"[..], b"a-2", b"a-3", b"a-4"]);
    assert_eq!(plain_bodies(&log, &b), [&b"b-1"[..]]);
    assert_eq!(log.append_batch(vec![request(b, &["b-2"])]).pop().expect("one").expect("b-2").last_seq.0, 2);
    assert_eq!(log.runs_waiting_for_index(), Some(0));
    // a's two waiting runs share an entry; b's one has its own.
    assert_eq!(log.waiting_runs_indexed(), Some(IndexedRuns { runs: 3, entries: 2 }));
    assert_eq!(plain_bodies(&log, &a), [&b"a-1"[..], b"a-2", b"a-3", b"a-4"]);
    assert_eq!(plain_bodies(&log, &b), [&b"b-1"[..], b"b-2"]);
    let report = log.verify().expect("verify");
    assert!(report.ok(), "{report:?}");
    drop(log);
    let db = raw_log(dir.path());
    assert!(marked_chunks(&db).is_empty(), "every mark removed with the runs it held");
    // a's two waiting runs went into one entry under the last one's sequence (3).
    let multi = db.get(stream_entry(&a, 3)).expect("get").expect("a's multi-run entry");
    assert_eq!((multi[0], multi.len()), (b'M', 1 + 2 * 20));
    assert!(db.get(stream_entry(&a, 2)).expect("get").is_none());
    assert!(db.get(stream_entry(&b, 1)).expect("get").is_some());
}

/// Readers racing the writer while it indexes waiting runs in bulk (a limit of 2, so nearly every
/// group writes multi-run entries and drops runs from memory): every read of a stream is whole,
/// numbered 1, 2, 3… with no run missing or doubled, and never shorter than an earlier read.
#[test]
fn readers_racing_bulk_indexing_see_whole_streams() {
    let dir = common::temp_dir();
    let log = open_indexing_past(dir.path(), 2);
    let subjects: Vec<Pseudonym> = (0..4).map(|i| common::pseudonym(&log, &format!("race-{i}"))).collect();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut seen = [0usize; 4];
                    let mut reads = 0u64;
                    // At least one pass, however late the thread starts.
                    while reads == 0 || !done.load(std::sync::atomic::Ordering::Acquire) {
                        for (i, s) in subjects.iter().enumerate() {
                            let events = log.read_stream(s).expect("read_stream");
                            let seqs: Vec<u64> = events.iter().map(|e| e.envelope.seq.0).collect();
                            assert!(seqs.iter().copied().eq(1..=seqs.len() as u64), "a torn stream: {seqs:?}");
                            assert!(seqs.len() >= seen[i], "a stream shrank from {} to {}", seen[i], seqs.len());
                            seen[i] = seqs.len();
                            let state = log.subject_state(s).expect("subject_state");
                            if let lethe_eventlog::SubjectState::Active { events, .. } = state {
                                assert!(events as usize >= seqs.len(), "the head is behind a read");
                            }
                            reads += 1;
                        }
                    }
                    reads
                })
            })
            .collect();
        for round in 0..150 {
            let rxs: Vec<_> = subjects
                .iter()
                .enumerate()
                .filter(|(i, _)| (round + i) % 3 != 0)
                .map(|(_, s)| deferred(&log, request(*s, &["receipt"])))
                .collect();
            if round % 10 == 0 {
                common::append(&log, subjects[round % 4], &[b"ordinary"]);
            }
            for rx in rxs {
                rx.recv().expect("answered")[0].as_ref().expect("appended");
            }
        }
        done.store(true, std::sync::atomic::Ordering::Release);
        for r in readers {
            assert!(r.join().expect("reader") > 0);
        }
    });
    let report = log.verify().expect("verify");
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.events, log.head().0);
}

/// `verify` checks the marks: a chunk whose waiting run lost its mark is found (the run is neither
/// indexed nor waiting after a reopen), and so is a mark on a chunk with nothing waiting. A mark on
/// a chunk that is missing does not stop the log from opening: it reads, `verify` says what is
/// wrong, and writes are refused, so that no sequence is handed out twice.
#[test]
fn verify_checks_the_marks_and_a_damaged_mark_stops_writes_not_reads() {
    let dir = common::temp_dir();
    let a = {
        let log = open_indexing_past(dir.path(), usize::MAX);
        let a = common::pseudonym(&log, "marks-a");
        common::append(&log, a, &[b"a-1"]);
        deferred(&log, request(a, &["a-2"])).recv().expect("answered")[0].as_ref().expect("a-2");
        assert!(log.verify().expect("verify").ok());
        a
    };
    let marked = marked_chunks(&raw_log(dir.path()));
    assert_eq!(marked.len(), 1);
    // A stale mark (on a chunk whose runs all have entries: the first one's).
    {
        let db = raw_log(dir.path());
        db.insert(b"u/\0\0\0\0\0\0\0\x01", &[][..]).expect("insert");
        db.flush().expect("flush");
    }
    {
        let log = open_indexing_past(dir.path(), usize::MAX);
        let report = log.verify().expect("verify");
        assert!(report.problems.iter().any(|p| p.contains("chunk at 1 is marked but holds no run")), "{report:?}");
    }
    // The waiting run's mark removed: the run is lost to the index.
    {
        let db = raw_log(dir.path());
        db.remove(b"u/\0\0\0\0\0\0\0\x01").expect("remove");
        let mut k = b"u/".to_vec();
        k.extend_from_slice(&marked[0].to_be_bytes());
        db.remove(k).expect("remove");
        db.flush().expect("flush");
    }
    {
        let log = open_indexing_past(dir.path(), usize::MAX);
        let report = log.verify().expect("verify");
        assert!(report.problems.iter().any(|p| p.contains("stream index entry missing")), "{report:?}");
        assert_eq!(plain_bodies(&log, &a), [&b"a-1"[..]]);
    }
    // A mark on a missing chunk: the log opens, reads, reports, and refuses writes.
    {
        let db = raw_log(dir.path());
        db.insert(b"u/\0\0\0\0\0\0\x03\xe7", &[][..]).expect("insert");
        db.flush().expect("flush");
    }
    let log = open_indexing_past(dir.path(), usize::MAX);
    assert_eq!(plain_bodies(&log, &a), [&b"a-1"[..]]);
    let report = log.verify().expect("verify");
    assert!(report.problems.iter().any(|p| p.contains("chunk at 999 is marked unindexed but missing")), "{report:?}");
    let refused = log.append_batch(vec![request(a, &["a-3"])]).pop().expect("one result");
    assert!(matches!(refused, Err(lethe_eventlog::LogError::Poisoned)), "{refused:?}");
    assert!(!log.writable());
    // An erasure hands out a sequence too; a sweep and a rotation do not, and still run.
    assert!(matches!(log.erase(&a), Err(lethe_eventlog::LogError::Poisoned)));
    log.expire_keys(lethe_domain::UtcMicros::now()).expect("a sweep runs");
    log.rotate_keys().expect("a rotation runs");
}

/// A subject with more waiting runs than one entry holds gets several multi-run entries, each under
/// its own last run; a reopen finds the runs still waiting past them (one scan of the subject's
/// entries), and everything reads back and verifies.
#[test]
fn a_subject_with_many_waiting_runs_gets_several_entries() {
    let dir = common::temp_dir();
    let a = {
        let log = open_indexing_past(dir.path(), usize::MAX);
        let a = common::pseudonym(&log, "many-runs");
        common::append(&log, a, &[b"first"]);
        let payloads: Vec<String> = (0..1500).map(|i| format!("r-{i}")).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        log.append_batch_deferred(
            payloads.iter().map(|p| request(a, &[p.as_str()])).collect(),
            Box::new(move |r| tx.send(r).expect("send")),
        );
        assert!(rx.recv().expect("answered").iter().all(Result::is_ok));
        a
    };
    {
        // No room: the next group indexes all 1,500 (1,024 + 476), and leaves its own run waiting.
        let log = open_indexing_past(dir.path(), 0);
        deferred(&log, request(a, &["after"])).recv().expect("answered")[0].as_ref().expect("after");
        assert_eq!(plain_bodies(&log, &a).len(), 1502);
    }
    let db = raw_log(dir.path());
    let multi: Vec<usize> =
        stream_index(&db).into_iter().filter(|(_, v)| v[0] == b'M').map(|(_, v)| (v.len() - 1) / 20).collect();
    assert_eq!(multi, vec![1024, 476]);
    assert_eq!(marked_chunks(&db).len(), 1, "only the last run's chunk still waits");
    drop(db);
    let log = open_indexing_past(dir.path(), usize::MAX);
    let bodies = plain_bodies(&log, &a);
    assert_eq!(bodies.len(), 1502);
    assert_eq!((&bodies[1][..], &bodies[1500][..], &bodies[1501][..]), (&b"r-0"[..], &b"r-1499"[..], &b"after"[..]));
    let report = log.verify().expect("verify");
    assert!(report.ok(), "{report:?}");
    assert_eq!(log.append_batch(vec![request(a, &["last"])]).pop().expect("one").expect("last").last_seq.0, 1503);
}

/// A backup taken while receipts wait for the index restores them: the marks and chunks travel
/// with the log, and the restored log reads the waiting runs back at open. A subject whose only
/// events were waiting is counted among the subjects whose keys a restore could not recover.
#[test]
fn a_backup_keeps_the_runs_waiting_for_the_index() {
    let dir = common::temp_dir();
    let backups = common::temp_dir();
    let file = backups.path().join("waiting.lbk");
    let (a, b) = {
        let log = open_indexing_past(dir.path(), usize::MAX);
        let a = common::pseudonym(&log, "backup-a");
        let b = common::pseudonym(&log, "backup-b");
        common::append(&log, a, &[b"a-1"]);
        deferred(&log, request(a, &["a-2"])).recv().expect("answered")[0].as_ref().expect("a-2");
        deferred(&log, request(b, &["b-1"])).recv().expect("answered")[0].as_ref().expect("b-1");
        log.backup(&file).expect("backup");
        (a, b)
    };
    let target = common::temp_dir();
    copy_keys(dir.path(), target.path());
    let (log, report) = lethe_eventlog::restore(lethe_eventlog::LogConfig::new(target.path(), common::master()), &file)
        .expect("restore");
    assert_eq!(report.keys_unrecoverable, 0, "{report:?}");
    assert_eq!(plain_bodies(&log, &a), [&b"a-1"[..], b"a-2"]);
    assert_eq!(plain_bodies(&log, &b), [&b"b-1"[..]]);
    assert!(log.verify().expect("verify").ok());
    drop(log);
    // After a rotation destroyed the epoch that wrapped the backup's keys, a restore without the live
    // log recovers neither key: both subjects count, b known only from its waiting run's chunk.
    open_indexing_past(dir.path(), usize::MAX).rotate_keys().expect("rotate");
    let target = common::temp_dir();
    copy_keys(dir.path(), target.path());
    let (_, report) = lethe_eventlog::restore(lethe_eventlog::LogConfig::new(target.path(), common::master()), &file)
        .expect("restore");
    assert_eq!(report.keys_unrecoverable, 2, "{report:?}");
}

/// The key store of `from` copied to `to` (a restore needs the key store the backup belongs to).
fn copy_keys(from: &std::path::Path, to: &std::path::Path) {
    let keys = to.join("keys");
    std::fs::create_dir_all(&keys).expect("mkdir");
    for entry in std::fs::read_dir(from.join("keys")).expect("read keys") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), keys.join(entry.file_name())).expect("copy");
    }
}

/// A trickle of deferred appends (decision receipts) lingers in the writer (`LogConfig::defer_linger`):
/// appends sent apart share one group commit, so one chunk and one batch, and none is answered
/// before an ordinary append ends the wait and takes them along.
#[test]
fn deferred_appends_sent_apart_share_one_group_until_an_ordinary_append_comes() {
    use std::time::Duration;
    let dir = common::temp_dir();
    {
        let mut config = lethe_eventlog::LogConfig::new(dir.path(), common::master());
        config.defer_linger = Duration::from_secs(60);
        let log = lethe_eventlog::SledEventLog::open(config).expect("open");
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..3 {
            let s = common::pseudonym(&log, &format!("linger-{i}"));
            let tx = tx.clone();
            log.append_batch_deferred(vec![request(s, &["receipt"])], Box::new(move |r| tx.send(r).expect("send")));
            // Far longer than the defer window (20 ms): without the wait, each would be its own
            // group, and answered by now.
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(rx.try_recv().is_err(), "a deferred append was answered while the writer waited");
        let ordinary = common::pseudonym(&log, "linger-ordinary");
        log.append(request(ordinary, &["consent"])).expect("the ordinary append");
        for _ in 0..3 {
            let results = rx.recv_timeout(Duration::from_secs(10)).expect("answered with the ordinary append");
            assert!(results.iter().all(Result::is_ok), "{results:?}");
        }
    }
    let db = raw_log(dir.path());
    let all = chunks(&db, dir.path());
    assert_eq!(all.len(), 1, "the four appends are one group: one chunk");
    assert_eq!(codec::decode_chunk(&all[0].1).expect("decode").len(), 4);
}
