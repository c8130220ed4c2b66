//! The stored message format: one version byte, then JSON. Every past version is read; only the latest
//! is written. The stored types live here and are converted explicitly, so changing [`Message`] never
//! changes the disk format by accident.
//!
//! Version 1: `{"id", "recipient_id", "topic", "body", "created_at", "attempts": [{"at", "outcome":
//! {"kind": "status", "code", "excerpt"} | {"kind": "error", "message"}, "duration_ms"}], "state":
//! {"kind": "pending", "next_attempt_at"} | {"kind": "delivered", "at", "status", "ack"} | {"kind":
//! "dead_letter", "at", "last_error"}}`, times in microseconds since the Unix epoch (UTC).

use lethe_domain::UtcMicros;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Attempt, Message, MessageId, MessageState, OutboxError, Outcome, Result, Topic};

/// The version written by this build.
pub(crate) const CURRENT: u8 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageV1 {
    id: Uuid,
    recipient_id: String,
    topic: String,
    body: serde_json::Value,
    created_at: i64,
    attempts: Vec<AttemptV1>,
    state: StateV1,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttemptV1 {
    at: i64,
    outcome: OutcomeV1,
    duration_ms: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum OutcomeV1 {
    Status { code: u16, excerpt: Option<String> },
    Error { message: String },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum StateV1 {
    Pending { next_attempt_at: i64 },
    Delivered { at: i64, status: u16, ack: Option<serde_json::Value> },
    DeadLetter { at: i64, last_error: String },
}

/// Encodes a message in the current version.
pub(crate) fn encode(m: &Message) -> Result<Vec<u8>> {
    let stored = MessageV1 {
        id: m.id.as_uuid(),
        recipient_id: m.recipient_id.clone(),
        topic: m.topic.as_str().to_owned(),
        body: m.body.clone(),
        created_at: m.created_at.0,
        attempts: m
            .attempts
            .iter()
            .map(|a| AttemptV1 {
                at: a.at.0,
                outcome: match &a.outcome {
                    Outcome::Status { code, excerpt } => OutcomeV1::Status { code: *code, excerpt: excerpt.clone() },
                    Outcome::Error(message) => OutcomeV1::Error { message: message.clone() },
                },
                duration_ms: a.duration_ms,
            })
            .collect(),
        state: match &m.state {
            MessageState::Pending { next_attempt_at } => StateV1::Pending { next_attempt_at: next_attempt_at.0 },
            MessageState::Delivered { at, status, ack } => {
                StateV1::Delivered { at: at.0, status: *status, ack: ack.clone() }
            }
            MessageState::DeadLetter { at, last_error } => {
                StateV1::DeadLetter { at: at.0, last_error: last_error.clone() }
            }
        },
    };
    let mut out = vec![CURRENT];
    serde_json::to_writer(&mut out, &stored).map_err(|_| OutboxError::Encode)?;
    Ok(out)
}

/// Decodes a stored message of any known version.
pub(crate) fn decode(bytes: &[u8]) -> Result<Message> {
    let (&version, rest) = bytes.split_first().ok_or(OutboxError::Corrupt("empty message record"))?;
    match version {
        1 => from_v1(serde_json::from_slice(rest).map_err(|_| OutboxError::Corrupt("bad message record"))?),
        v => Err(OutboxError::UnsupportedVersion(v)),
    }
}

fn from_v1(s: MessageV1) -> Result<Message> {
    let topic = Topic::parse(&s.topic).map_err(|_| OutboxError::Corrupt("bad topic in message record"))?;
    Ok(Message {
        id: MessageId::from_bytes(s.id.into_bytes()),
        recipient_id: s.recipient_id,
        topic,
        body: s.body,
        created_at: UtcMicros(s.created_at),
        attempts: s
            .attempts
            .into_iter()
            .map(|a| {
                let outcome = match a.outcome {
                    OutcomeV1::Status { code, excerpt } => Outcome::Status { code, excerpt },
                    OutcomeV1::Error { message } => Outcome::Error(message),
                };
                Attempt { at: UtcMicros(a.at), outcome, duration_ms: a.duration_ms }
            })
            .collect(),
        state: match s.state {
            StateV1::Pending { next_attempt_at } => {
                MessageState::Pending { next_attempt_at: UtcMicros(next_attempt_at) }
            }
            StateV1::Delivered { at, status, ack } => MessageState::Delivered { at: UtcMicros(at), status, ack },
            StateV1::DeadLetter { at, last_error } => MessageState::DeadLetter { at: UtcMicros(at), last_error },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-1 record as written to disk. It must decode forever.
    const GOLDEN_V1: &str = concat!(
        r#"{"id":"01890a5d-ac96-774b-bcce-b302099a8057","recipient_id":"crm","topic":"subject.erased","#,
        r#""body":{"erasure":"req-1"},"created_at":1700000000000000,"attempts":["#,
        r#"{"at":1700000000000000,"outcome":{"kind":"status","code":503,"excerpt":"busy"},"duration_ms":12},"#,
        r#"{"at":1700000060000000,"outcome":{"kind":"error","message":"connect error"},"duration_ms":3},"#,
        r#"{"at":1700000180000000,"outcome":{"kind":"status","code":200,"excerpt":null},"duration_ms":7}],"#,
        r#""state":{"kind":"delivered","at":1700000180000000,"status":200,"ack":{"ok":true}}}"#
    );

    fn golden_message() -> Message {
        let t = |s: i64| UtcMicros(1_700_000_000_000_000 + s * 1_000_000);
        Message {
            id: "01890a5d-ac96-774b-bcce-b302099a8057".parse().unwrap(),
            recipient_id: "crm".into(),
            topic: Topic::subject_erased(),
            body: serde_json::json!({"erasure": "req-1"}),
            created_at: t(0),
            attempts: vec![
                Attempt {
                    at: t(0),
                    outcome: Outcome::Status { code: 503, excerpt: Some("busy".into()) },
                    duration_ms: 12,
                },
                Attempt { at: t(60), outcome: Outcome::Error("connect error".into()), duration_ms: 3 },
                Attempt { at: t(180), outcome: Outcome::Status { code: 200, excerpt: None }, duration_ms: 7 },
            ],
            state: MessageState::Delivered { at: t(180), status: 200, ack: Some(serde_json::json!({"ok": true})) },
        }
    }

    #[test]
    fn golden_v1_decodes_and_re_encodes_identically() {
        let mut stored = vec![1u8];
        stored.extend_from_slice(GOLDEN_V1.as_bytes());
        assert_eq!(decode(&stored).unwrap(), golden_message());
        assert_eq!(encode(&golden_message()).unwrap(), stored);
    }

    #[test]
    fn every_state_round_trips() {
        let mut m = golden_message();
        for state in [
            MessageState::Pending { next_attempt_at: UtcMicros(-5) },
            MessageState::DeadLetter { at: UtcMicros(9), last_error: "http status 400".into() },
            MessageState::Delivered { at: UtcMicros(1), status: 204, ack: None },
        ] {
            m.state = state;
            assert_eq!(decode(&encode(&m).unwrap()).unwrap(), m);
        }
    }

    #[test]
    fn rejects_garbage_and_unknown_versions() {
        assert!(matches!(decode(&[]), Err(OutboxError::Corrupt(_))));
        assert!(matches!(decode(&[1, b'{']), Err(OutboxError::Corrupt(_))));
        assert!(matches!(decode(&[2, b'{', b'}']), Err(OutboxError::UnsupportedVersion(2))));
        let mut bad_topic = vec![1u8];
        bad_topic.extend_from_slice(GOLDEN_V1.replace("subject.erased", "BAD TOPIC").as_bytes());
        assert!(matches!(decode(&bad_topic), Err(OutboxError::Corrupt(_))));
    }
}
