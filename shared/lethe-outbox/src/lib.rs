//! Lethe's outbox: durable, signed webhook notifications to the recipients of a subject's data, with
//! retries, dead letters and recorded acknowledgements, so that an erasure reaches every recipient
//! (GDPR Art. 19) and the record shows who acknowledged it, when.
//!
//! Flow: [`Outbox::open`] on a sled tree with the configured [`Recipient`]s and a [`RetryPolicy`];
//! [`Outbox::enqueue`] / [`Outbox::enqueue_all`] durably store a [`Message`] per recipient; a
//! [`Deliverer`] posts due messages ([`Deliverer::deliver_due`], or the background loop
//! [`Deliverer::run`], woken by each enqueue), signs them (`Lethe-Signature`, Stripe's scheme), and
//! records each [`Attempt`]: 2xx delivers (keeping the JSON answer as the acknowledgement), 4xx other than
//! 408/429 dead-letters at once, anything else retries with capped exponential backoff until
//! `max_attempts`. Recipients check requests with [`verify_signature`].
//!
//! Time is passed in (`now`), never read from the clock by the state machine, so schedules are
//! reproducible and tests drive retries without sleeping.
//!
//! **Privacy:** message bodies and acknowledgements are stored in plaintext in the sled tree, and sled
//! keeps old bytes in its files: a body must carry no external identifier and no personal data (see
//! [`Message`]). Logs carry message ids, recipient ids, topics, statuses and timings; never bodies,
//! acknowledgements, secrets or endpoint URLs.
#![forbid(unsafe_code)]

mod codec;
mod deliver;
mod error;
mod message;
mod recipient;
mod retry;
mod signature;
mod store;

pub use deliver::{Deliverer, DeliveryConfig, DeliveryReport};
pub use error::{OutboxError, Result};
pub use message::{
    Attempt, Disposition, Envelope, Message, MessageId, MessageState, Outcome, StateKind, Topic, MAX_ACK_BYTES,
    MAX_BODY_BYTES, MAX_OUTCOME_CHARS,
};
pub use recipient::{Recipient, WebhookSecret};
pub use retry::RetryPolicy;
pub use signature::{
    signature_header, verify_signature, DEFAULT_TOLERANCE, DELIVERY_HEADER, SIGNATURE_HEADER, TOPIC_HEADER,
};
pub use store::{Outbox, Stats};
