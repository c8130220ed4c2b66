//! Delivery: posts due messages to their recipients over HTTP(S) with bounded concurrency, records each
//! attempt, and runs as a background loop woken by enqueues.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lethe_domain::UtcMicros;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::signature::{signature_header, DELIVERY_HEADER, SIGNATURE_HEADER, TOPIC_HEADER};
use crate::{Attempt, Envelope, Message, Outbox, OutboxError, Outcome, Recipient, Result, StateKind, MAX_ACK_BYTES};

/// How much of a failure answer's body is read for the attempt's excerpt, in bytes.
const EXCERPT_READ_BYTES: usize = 1024;

/// Delivery settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// Longest wait for a connection (default 2 s).
    pub connect_timeout: Duration,
    /// Longest wait for a whole request, answer body included (default 5 s).
    pub timeout: Duration,
    /// Most requests in flight at once (default 8).
    pub concurrency: usize,
    /// Most messages claimed by one [`Deliverer::deliver_due`] pass (default 256); the background loop
    /// runs again at once when a pass is full.
    pub max_per_pass: usize,
    /// How long a claimed message is reserved for its delivery (default 5 min). It should exceed
    /// `max_per_pass / concurrency × timeout`, or a slow pass may see a concurrent one re-claim its messages.
    pub lease: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            concurrency: 8,
            max_per_pass: 256,
            lease: Duration::from_secs(300),
        }
    }
}

/// What one delivery pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Messages posted (or attempted: a connection error counts).
    pub attempted: usize,
    /// Messages acknowledged with 2xx.
    pub delivered: usize,
    /// Messages that failed and stay pending for a later attempt.
    pub retried: usize,
    /// Messages given up on in this pass.
    pub dead_lettered: usize,
}

/// Delivers an [`Outbox`]'s due messages. Cheap to clone.
///
/// Each request is `POST <endpoint>` with the [`Envelope`] as JSON and the headers `Content-Type:
/// application/json`, `Lethe-Delivery: <message id>`, `Lethe-Topic: <topic>` and, when the recipient has a
/// secret, `Lethe-Signature: t=<unix secs>,v1=<hex>` (see [`crate::verify_signature`]). The signature's `t`
/// is the wall clock at sending, whatever `now` drives the schedule. Redirects are not followed. Delivery is
/// at least once: a crash between a recipient's answer and its record repeats the request after the lease,
/// with the same `Lethe-Delivery` id.
#[derive(Debug, Clone)]
pub struct Deliverer {
    outbox: Outbox,
    client: reqwest::Client,
    config: Arc<DeliveryConfig>,
}

impl Deliverer {
    /// Builds a deliverer and its HTTP client (rustls, WebPKI roots).
    ///
    /// # Errors
    /// [`OutboxError::InvalidDeliveryConfig`] for zero concurrency, pass size or timeouts;
    /// [`OutboxError::HttpClient`] if the TLS backend cannot be initialised.
    pub fn new(outbox: Outbox, config: DeliveryConfig) -> Result<Self> {
        if config.concurrency == 0 {
            return Err(OutboxError::InvalidDeliveryConfig("concurrency must be at least 1"));
        }
        if config.max_per_pass == 0 {
            return Err(OutboxError::InvalidDeliveryConfig("max_per_pass must be at least 1"));
        }
        if config.timeout.is_zero() || config.connect_timeout.is_zero() {
            return Err(OutboxError::InvalidDeliveryConfig("timeouts must be positive"));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("lethe-outbox/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| OutboxError::HttpClient)?;
        Ok(Self { outbox, client, config: Arc::new(config) })
    }

    /// The outbox delivered from.
    #[must_use]
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Claims the messages due at `now` (at most `max_per_pass`), posts them with at most `concurrency`
    /// requests in flight, records every attempt, and reports. Retry times are computed from `now`.
    ///
    /// A message whose attempt could not be recorded (storage failure) is logged, counted as attempted only,
    /// and retried when its lease runs out.
    ///
    /// # Errors
    /// [`OutboxError::Storage`] (or a decoding error) if the due messages cannot be claimed; nothing was sent.
    pub async fn deliver_due(&self, now: UtcMicros) -> Result<DeliveryReport> {
        let outbox = self.outbox.clone();
        let (limit, lease) = (self.config.max_per_pass, self.config.lease);
        let claimed = tokio::task::spawn_blocking(move || outbox.claim_due(now, limit, lease))
            .await
            .map_err(|_| OutboxError::Task)??;
        let mut report = DeliveryReport::default();
        if claimed.is_empty() {
            return Ok(report);
        }
        let permits = Arc::new(Semaphore::new(self.config.concurrency));
        let mut tasks = JoinSet::new();
        for message in claimed {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { break };
            let this = self.clone();
            tasks.spawn(async move {
                let _permit = permit;
                this.deliver_one(message, now).await
            });
        }
        while let Some(joined) = tasks.join_next().await {
            report.attempted += 1;
            match joined {
                Ok(Some(StateKind::Delivered)) => report.delivered += 1,
                Ok(Some(StateKind::Pending)) => report.retried += 1,
                Ok(Some(StateKind::DeadLetter)) => report.dead_lettered += 1,
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "outbox delivery task failed"),
            }
        }
        tracing::debug!(
            attempted = report.attempted,
            delivered = report.delivered,
            retried = report.retried,
            dead_lettered = report.dead_lettered,
            "outbox delivery pass done"
        );
        Ok(report)
    }

    /// Posts one claimed message and records the attempt; the resulting state, or `None` if it could not
    /// be recorded.
    async fn deliver_one(&self, message: Message, now: UtcMicros) -> Option<StateKind> {
        let started = Instant::now();
        let (outcome, ack) = match self.outbox.recipient(&message.recipient_id) {
            Some(recipient) => self.post(recipient, &message).await,
            None => (Outcome::error("recipient is not configured"), None),
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let attempt = Attempt::new(now, outcome, duration_ms);
        let outbox = self.outbox.clone();
        let id = message.id;
        match tokio::task::spawn_blocking(move || outbox.record_attempt(id, attempt, ack)).await {
            Ok(Ok(m)) => Some(m.state.kind()),
            Ok(Err(e)) => {
                tracing::error!(message_id = %id, error = %e, code = e.code(), "outbox attempt could not be recorded");
                None
            }
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, "outbox attempt record task failed");
                None
            }
        }
    }

    /// Sends the request; the outcome and, for a 2xx with a JSON body, the acknowledgement.
    async fn post(&self, recipient: &Recipient, message: &Message) -> (Outcome, Option<serde_json::Value>) {
        let body = match Envelope::of(message).to_bytes() {
            Ok(b) => b,
            Err(e) => return (Outcome::error(&e.to_string()), None),
        };
        let mut request = self
            .client
            .post(recipient.endpoint().clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(DELIVERY_HEADER, message.id.to_string())
            .header(TOPIC_HEADER, message.topic.as_str());
        if let Some(secret) = recipient.secret() {
            let t = UtcMicros::now().0.div_euclid(1_000_000);
            match signature_header(secret, t, &body) {
                Ok(sig) => request = request.header(SIGNATURE_HEADER, sig),
                Err(e) => return (Outcome::error(&e.to_string()), None),
            }
        }
        let response = match request.body(body).send().await {
            Ok(r) => r,
            Err(e) => return (Outcome::error(&describe(&e)), None),
        };
        let code = response.status().as_u16();
        if response.status().is_success() {
            let (bytes, complete) = read_capped(response, MAX_ACK_BYTES).await;
            let ack = if complete && !bytes.is_empty() { serde_json::from_slice(&bytes).ok() } else { None };
            (Outcome::status(code, None), ack)
        } else {
            let (bytes, _) = read_capped(response, EXCERPT_READ_BYTES).await;
            (Outcome::status(code, Some(&String::from_utf8_lossy(&bytes))), None)
        }
    }

    /// Delivers due messages until `shutdown` turns true (or its sender is dropped): a pass at once, then
    /// whenever a message is enqueued, the soonest pending message falls due, or `interval` has passed,
    /// whichever comes first. A pass in progress finishes before the loop returns. Storage errors are logged
    /// and the loop goes on.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>, interval: Duration) {
        tracing::info!(
            interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            "outbox delivery started"
        );
        loop {
            if *shutdown.borrow() {
                break;
            }
            let wait = match self.deliver_due(UtcMicros::now()).await {
                Ok(report) if report.attempted >= self.config.max_per_pass => Duration::ZERO,
                Ok(_) => self.wait_for_next(interval),
                Err(e) => {
                    tracing::error!(error = %e, code = e.code(), "outbox delivery pass failed");
                    interval
                }
            };
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = tokio::time::sleep(wait) => {}
                () = self.outbox.enqueued() => {}
            }
        }
        tracing::info!("outbox delivery stopped");
    }

    /// The time until the soonest pending message is due, at most `interval`.
    fn wait_for_next(&self, interval: Duration) -> Duration {
        match self.outbox.next_due_at() {
            Ok(Some(at)) => {
                let until = at.0.saturating_sub(UtcMicros::now().0);
                Duration::from_micros(u64::try_from(until).unwrap_or(0)).min(interval)
            }
            Ok(None) => interval,
            Err(e) => {
                tracing::error!(error = %e, code = e.code(), "outbox due index could not be read");
                interval
            }
        }
    }
}

/// Reads at most `cap` bytes of the answer; `true` if that was all of it.
async fn read_capped(mut response: reqwest::Response, cap: usize) -> (Vec<u8>, bool) {
    let mut buf = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = cap - buf.len();
                if chunk.len() > room {
                    buf.extend_from_slice(&chunk[..room]);
                    return (buf, false);
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return (buf, true),
            Err(_) => return (buf, false),
        }
    }
}

/// A transport error as text, without the URL (which may carry a token): its kind and its causes.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect error"
    } else if e.is_body() || e.is_decode() {
        "body error"
    } else if e.is_request() {
        "request error"
    } else {
        "http error"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
