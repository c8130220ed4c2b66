//! Every persisted format stays readable (STYLE.md, "Every persisted format is versioned"): golden
//! fixtures of the stored formats 1, 2 and 3 (`tests/fixtures/`, never regenerated), the
//! `page.viewed` payload upcaster (schema v2 drops query strings, which carry identifiers: invariant
//! 4), and the on-disk layout: an older layout is upgraded at open, a newer one is refused without
//! touching the data directory. Invariant 1 / R-CRYPTO-1: the fixtures open only with their key and
//! their exact envelope.

mod common;

use lethe_crypto::{DataKey, SecretBytes};
use lethe_domain::{EventEnvelope, EventType, KeyId, Position, Pseudonym, Purpose, SchemaVersion, Seq, UtcMicros};
use lethe_eventlog::codec::{self, StoredRecord};
use lethe_eventlog::EventStore;

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
    assert_eq!(lethe_eventlog::layout::LAYOUT_VERSION, 4);
    assert_eq!(db.get(META_LAYOUT).expect("get").as_deref(), Some(&4u32.to_be_bytes()[..]));
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

/// Format 3 is what Lethe writes today: the events of one append as one chunk.
#[test]
fn the_chunk_format_3_fixture_still_decodes_and_opens() {
    let bytes = fixture_record("chunk-format-3.hex");
    assert_eq!(bytes[0], codec::CHUNK_FORMAT);
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
    // Today's writer produces the fixture byte for byte.
    assert_eq!(codec::encode_chunk(&chunk_records()), bytes, "the chunk format changed: add a new fixture");
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
