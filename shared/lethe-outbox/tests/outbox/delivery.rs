//! Delivery against a real recipient: success with acknowledgement, retries, dead letters, concurrency.

use std::collections::HashSet;
use std::time::Duration;

use lethe_domain::UtcMicros;
use lethe_outbox::{
    verify_signature, Deliverer, DeliveryConfig, DeliveryReport, Envelope, MessageState, Outbox, OutboxError, Outcome,
    RetryPolicy, StateKind, Stats, Topic, DEFAULT_TOLERANCE,
};
use serde_json::json;

use crate::helpers::{
    at, closed_port_url, deliverer, policy, recipient, secret, secs, temp_tree, Reply, TestRecipient, T0,
};

fn report(attempted: usize, delivered: usize, retried: usize, dead_lettered: usize) -> DeliveryReport {
    DeliveryReport { attempted, delivered, retried, dead_lettered }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_on_first_try_signed_with_ack_recorded() {
    let server = TestRecipient::always(Reply::with_body(200, r#"{"received":true,"ref":"crm-77"}"#)).await;
    let (_db, tree) = temp_tree();
    let outbox = Outbox::open(tree, vec![recipient("crm", &server.url("/hooks/lethe"))], policy()).unwrap();
    let body = json!({"erasure_request": "er-1", "pseudonym": "9f2c"});
    let id = outbox.enqueue("crm", &Topic::subject_erased(), body.clone(), T0).unwrap();

    let r = deliverer(&outbox).deliver_due(T0).await.unwrap();
    assert_eq!(r, report(1, 1, 0, 0));

    let m = outbox.get(id).unwrap().unwrap();
    assert_eq!(
        m.state,
        MessageState::Delivered { at: T0, status: 200, ack: Some(json!({"received": true, "ref": "crm-77"})) }
    );
    assert_eq!(m.attempts.len(), 1);
    assert_eq!(m.attempts[0].outcome, Outcome::Status { code: 200, excerpt: None });
    assert_eq!(m.attempts[0].at, T0);
    assert_eq!(outbox.stats().unwrap(), Stats { pending: 0, delivered: 1, dead_letter: 0 });

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert_eq!(req.path, "/hooks/lethe");
    assert_eq!(req.delivery.as_deref(), Some(id.to_string().as_str()));
    assert_eq!(req.topic.as_deref(), Some("subject.erased"));
    assert_eq!(req.content_type.as_deref(), Some("application/json"));
    let header = req.signature.as_deref().expect("signed");
    verify_signature(&secret(), header, &req.body, UtcMicros::now(), DEFAULT_TOLERANCE).unwrap();

    // The signed body is the envelope.
    let envelope: Envelope = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(envelope.id, id);
    assert_eq!(envelope.topic, Topic::subject_erased());
    assert_eq!(envelope.created_at, T0.0);
    assert_eq!(envelope.data, body);

    // One changed byte and the signature no longer verifies.
    let mut tampered = req.body.clone();
    let pos = tampered.iter().position(|&b| b == b'9').unwrap();
    tampered[pos] = b'8';
    assert!(matches!(
        verify_signature(&secret(), header, &tampered, UtcMicros::now(), DEFAULT_TOLERANCE),
        Err(OutboxError::SignatureMismatch)
    ));

    // Nothing left to do.
    assert_eq!(deliverer(&outbox).deliver_due(at(T0, 3600)).await.unwrap(), report(0, 0, 0, 0));
    assert_eq!(server.requests().len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_without_json_is_delivered_without_ack() {
    let server = TestRecipient::start(
        vec![Reply::status(204), Reply::with_body(200, "not json")],
        Reply::status(200),
        Duration::ZERO,
    )
    .await;
    let (_db, tree) = temp_tree();
    let outbox = Outbox::open(tree, vec![recipient("crm", &server.url("/h"))], policy()).unwrap();
    let a = outbox.enqueue("crm", &Topic::subject_erased(), json!({"n": 1}), T0).unwrap();
    assert_eq!(deliverer(&outbox).deliver_due(T0).await.unwrap(), report(1, 1, 0, 0));
    let b = outbox.enqueue("crm", &Topic::subject_erased(), json!({"n": 2}), T0).unwrap();
    assert_eq!(deliverer(&outbox).deliver_due(T0).await.unwrap(), report(1, 1, 0, 0));
    assert_eq!(outbox.get(a).unwrap().unwrap().state, MessageState::Delivered { at: T0, status: 204, ack: None });
    assert_eq!(outbox.get(b).unwrap().unwrap().state, MessageState::Delivered { at: T0, status: 200, ack: None });
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_after_503s_then_delivered_with_history() {
    let server = TestRecipient::start(
        vec![Reply::with_body(503, "busy, try later"), Reply::status(503)],
        Reply::with_body(200, r#"{"ok":true}"#),
        Duration::ZERO,
    )
    .await;
    let (_db, tree) = temp_tree();
    let outbox = Outbox::open(tree, vec![recipient("crm", &server.url("/h"))], policy()).unwrap();
    let d = deliverer(&outbox);
    let id = outbox.enqueue("crm", &Topic::subject_erased(), json!({"erasure_request": "er-2"}), T0).unwrap();

    assert_eq!(d.deliver_due(T0).await.unwrap(), report(1, 0, 1, 0));
    assert_eq!(outbox.get(id).unwrap().unwrap().state, MessageState::Pending { next_attempt_at: at(T0, 10) });
    // Not due yet: nothing is sent.
    assert_eq!(d.deliver_due(at(T0, 9)).await.unwrap(), report(0, 0, 0, 0));
    assert_eq!(outbox.due(at(T0, 9)).unwrap().len(), 0);
    assert_eq!(outbox.due(at(T0, 10)).unwrap().len(), 1);

    assert_eq!(d.deliver_due(at(T0, 10)).await.unwrap(), report(1, 0, 1, 0));
    assert_eq!(outbox.get(id).unwrap().unwrap().state, MessageState::Pending { next_attempt_at: at(T0, 30) });
    assert_eq!(d.deliver_due(at(T0, 30)).await.unwrap(), report(1, 1, 0, 0));

    let m = outbox.get(id).unwrap().unwrap();
    assert_eq!(m.state, MessageState::Delivered { at: at(T0, 30), status: 200, ack: Some(json!({"ok": true})) });
    let history: Vec<_> = m.attempts.iter().map(|a| (a.at, a.outcome.clone())).collect();
    assert_eq!(
        history,
        vec![
            (T0, Outcome::Status { code: 503, excerpt: Some("busy, try later".into()) }),
            (at(T0, 10), Outcome::Status { code: 503, excerpt: None }),
            (at(T0, 30), Outcome::Status { code: 200, excerpt: None }),
        ]
    );
    // Each retry carries the same delivery id.
    assert_eq!(server.by_delivery().get(&id.to_string()), Some(&3));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_that_is_down_is_retried_with_growing_delays_then_dead_lettered() {
    let policy = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(5),
        jitter: 0.0,
    };
    let (_db, tree) = temp_tree();
    let outbox = Outbox::open(tree, vec![recipient("down", &closed_port_url())], policy).unwrap();
    let d = deliverer(&outbox);
    let id = outbox.enqueue("down", &Topic::subject_erased(), json!({"erasure_request": "er-3"}), T0).unwrap();

    let mut now = T0;
    let mut delays = Vec::new();
    for _ in 0..4 {
        assert_eq!(d.deliver_due(now).await.unwrap(), report(1, 0, 1, 0));
        let MessageState::Pending { next_attempt_at } = outbox.get(id).unwrap().unwrap().state else {
            panic!("still pending")
        };
        delays.push((next_attempt_at.0 - now.0) / secs(1));
        // Just before the next attempt nothing happens.
        assert_eq!(d.deliver_due(UtcMicros(next_attempt_at.0 - 1)).await.unwrap(), report(0, 0, 0, 0));
        now = next_attempt_at;
    }
    assert_eq!(delays, [1, 2, 4, 5], "doubling, capped at max_delay");
    assert_eq!(d.deliver_due(now).await.unwrap(), report(1, 0, 0, 1));

    let m = outbox.get(id).unwrap().unwrap();
    assert_eq!(m.attempts.len(), 5);
    for a in &m.attempts {
        let Outcome::Error(e) = &a.outcome else { panic!("connection errors, got {:?}", a.outcome) };
        assert!(e.starts_with("connect error"), "{e}");
        assert!(!e.contains("http://"), "no url in errors: {e}");
    }
    let MessageState::DeadLetter { at: dead_at, last_error } = &m.state else { panic!("dead letter") };
    assert_eq!(*dead_at, now);
    assert!(last_error.starts_with("connect error") && last_error.ends_with("after 5 attempts"), "{last_error}");
    assert_eq!(outbox.stats().unwrap(), Stats { pending: 0, delivered: 0, dead_letter: 1 });
    assert_eq!(d.deliver_due(at(now, 86_400)).await.unwrap(), report(0, 0, 0, 0));
    assert_eq!(outbox.list(Some(StateKind::DeadLetter)).unwrap(), vec![m]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_dead_lettered_without_retry_but_429_is_retried() {
    let server = TestRecipient::start(
        vec![Reply::with_body(400, r#"{"error":"unknown subject"}"#), Reply::status(429)],
        Reply::status(200),
        Duration::ZERO,
    )
    .await;
    let (_db, tree) = temp_tree();
    let outbox = Outbox::open(tree, vec![recipient("crm", &server.url("/h"))], policy()).unwrap();
    let d = deliverer(&outbox);

    let refused = outbox.enqueue("crm", &Topic::subject_erased(), json!({"n": 1}), T0).unwrap();
    assert_eq!(d.deliver_due(T0).await.unwrap(), report(1, 0, 0, 1));
    let m = outbox.get(refused).unwrap().unwrap();
    assert_eq!(m.state, MessageState::DeadLetter { at: T0, last_error: "http status 400".into() });
    assert_eq!(m.attempts.len(), 1);
    assert_eq!(
        m.attempts[0].outcome,
        Outcome::Status { code: 400, excerpt: Some(r#"{"error":"unknown subject"}"#.into()) }
    );

    let throttled = outbox.enqueue("crm", &Topic::subject_erased(), json!({"n": 2}), T0).unwrap();
    assert_eq!(d.deliver_due(T0).await.unwrap(), report(1, 0, 1, 0));
    assert_eq!(d.deliver_due(at(T0, 10)).await.unwrap(), report(1, 1, 0, 0));
    assert_eq!(outbox.get(throttled).unwrap().unwrap().attempts.len(), 2);

    // The refused message is never sent again.
    assert_eq!(d.deliver_due(at(T0, 86_400)).await.unwrap(), report(0, 0, 0, 0));
    assert_eq!(server.by_delivery().get(&refused.to_string()), Some(&1));
    assert_eq!(outbox.stats().unwrap(), Stats { pending: 0, delivered: 1, dead_letter: 1 });
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_messages_are_each_delivered_exactly_once_with_bounded_concurrency() {
    let server = TestRecipient::start(Vec::new(), Reply::with_body(200, "{}"), Duration::from_millis(15)).await;
    let (_db, tree) = temp_tree();
    let recipients = vec![
        recipient("a", &server.url("/a")),
        recipient("b", &server.url("/b")),
        recipient("excluded", &server.url("/never")),
    ];
    let outbox = Outbox::open(tree, recipients, policy()).unwrap();
    let mut ids = HashSet::new();
    for n in 0..100 {
        let batch = outbox
            .enqueue_all(&Topic::subject_erased(), |r| r.id() != "excluded", |r| json!({"n": n, "for": r.id()}), T0)
            .unwrap();
        assert_eq!(batch.len(), 2);
        ids.extend(batch);
    }
    assert_eq!(ids.len(), 200);
    assert_eq!(outbox.stats().unwrap().pending, 200);
    assert_eq!(outbox.due(T0).unwrap().len(), 200);

    let d = Deliverer::new(outbox.clone(), DeliveryConfig { concurrency: 8, ..crate::helpers::fast_config() }).unwrap();
    // Two passes at once: claims keep them from sending anything twice.
    let (r1, r2) = tokio::join!(d.deliver_due(T0), d.deliver_due(T0));
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    assert_eq!(r1.attempted + r2.attempted, 200);
    assert_eq!(r1.delivered + r2.delivered, 200);
    assert_eq!(d.deliver_due(at(T0, 3600)).await.unwrap(), report(0, 0, 0, 0));

    let seen = server.by_delivery();
    assert_eq!(seen.len(), 200);
    assert!(seen.values().all(|&n| n == 1), "each exactly once");
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), ids.iter().map(ToString::to_string).collect());
    assert!(server.requests().iter().all(|r| r.path != "/never"));
    // Two passes of at most 8 each.
    let peak = server.max_in_flight();
    assert!((2..=16).contains(&peak), "peak concurrency {peak}");
    assert_eq!(outbox.stats().unwrap(), Stats { pending: 0, delivered: 200, dead_letter: 0 });
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pass_keeps_at_most_concurrency_requests_in_flight() {
    let server = TestRecipient::start(Vec::new(), Reply::status(200), Duration::from_millis(20)).await;
    let (_db, tree) = temp_tree();
    let outbox = Outbox::open(tree, vec![recipient("a", &server.url("/a"))], policy()).unwrap();
    for n in 0..40 {
        outbox.enqueue("a", &Topic::subject_erased(), json!({"n": n}), T0).unwrap();
    }
    let d = Deliverer::new(outbox.clone(), DeliveryConfig { concurrency: 4, ..crate::helpers::fast_config() }).unwrap();
    assert_eq!(d.deliver_due(T0).await.unwrap(), report(40, 40, 0, 0));
    let peak = server.max_in_flight();
    assert!((2..=4).contains(&peak), "peak concurrency {peak}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_loop_delivers_an_enqueue_promptly_and_stops_on_shutdown() {
    let server = TestRecipient::always(Reply::with_body(200, r#"{"ok":1}"#)).await;
    let (_db, tree) = temp_tree();
    let outbox = Outbox::open(tree, vec![recipient("crm", &server.url("/h"))], RetryPolicy::default()).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // An interval far longer than the test: only the wake-up can explain a prompt delivery.
    let task = tokio::spawn(deliverer(&outbox).run(stopped, Duration::from_secs(3600)));
    tokio::time::sleep(Duration::from_millis(50)).await;

    let id =
        outbox.enqueue("crm", &Topic::subject_erased(), json!({"erasure_request": "er-9"}), UtcMicros::now()).unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if outbox.get(id).unwrap().unwrap().state.kind() == StateKind::Delivered {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(delivered.is_ok(), "delivered without waiting for the interval");

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("loop stops").unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_endpoint_is_spoken_to_over_tls() {
    // The recipient speaks plain HTTP; the rustls client's handshake must fail, and the failure is retried.
    let server = TestRecipient::always(Reply::status(200)).await;
    let (_db, tree) = temp_tree();
    let endpoint = format!("https://{}/h", server.addr);
    let outbox = Outbox::open(tree, vec![recipient("tls", &endpoint)], policy()).unwrap();
    let id = outbox.enqueue("tls", &Topic::subject_erased(), json!({}), T0).unwrap();
    assert_eq!(deliverer(&outbox).deliver_due(T0).await.unwrap(), report(1, 0, 1, 0));
    let m = outbox.get(id).unwrap().unwrap();
    let Outcome::Error(e) = &m.attempts[0].outcome else {
        panic!("a transport error, got {:?}", m.attempts[0].outcome)
    };
    assert!(e.starts_with("connect error"), "{e}");
    assert!(server.by_delivery().is_empty(), "nothing reached the handler in clear text");
    server.stop().await;
}
