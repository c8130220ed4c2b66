//! Test fixtures: a real recipient (actix-web on 127.0.0.1:0) that answers from a script and records what it
//! received, a closed port, fresh sled trees, and fast policies.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use lethe_domain::UtcMicros;
use lethe_outbox::{
    Deliverer, DeliveryConfig, Outbox, Recipient, RetryPolicy, WebhookSecret, DELIVERY_HEADER, SIGNATURE_HEADER,
    TOPIC_HEADER,
};

/// A fixed start time for schedules driven by `now`: 2023-11-14T22:13:20Z.
pub const T0: UtcMicros = UtcMicros(1_700_000_000_000_000);

pub const SECRET: &str = "whsec_test_0123456789abcdef";

pub fn secret() -> WebhookSecret {
    WebhookSecret::new(SECRET).unwrap()
}

pub fn secs(s: i64) -> i64 {
    s * 1_000_000
}

pub fn at(t: UtcMicros, plus_secs: i64) -> UtcMicros {
    UtcMicros(t.0 + secs(plus_secs))
}

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Option<String>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self { status, body: None }
    }

    pub fn with_body(status: u16, body: &str) -> Self {
        Self { status, body: Some(body.to_owned()) }
    }
}

/// A request as the recipient saw it.
#[derive(Clone, Debug)]
pub struct Captured {
    pub path: String,
    pub signature: Option<String>,
    pub delivery: Option<String>,
    pub topic: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

struct State {
    script: Mutex<VecDeque<Reply>>,
    default: Reply,
    delay: Duration,
    requests: Mutex<Vec<Captured>>,
    by_delivery: Mutex<HashMap<String, usize>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A running recipient server.
pub struct TestRecipient {
    pub addr: SocketAddr,
    state: web::Data<State>,
    handle: ServerHandle,
}

impl TestRecipient {
    /// Answers with `script` in order, then `default` forever; each answer after `delay`.
    pub async fn start(script: Vec<Reply>, default: Reply, delay: Duration) -> Self {
        let state = web::Data::new(State {
            script: Mutex::new(script.into()),
            default,
            delay,
            requests: Mutex::new(Vec::new()),
            by_delivery: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let app_state = state.clone();
        let server =
            HttpServer::new(move || App::new().app_data(app_state.clone()).default_service(web::post().to(hook)))
                .workers(2)
                .disable_signals()
                .shutdown_timeout(1)
                .bind(("127.0.0.1", 0))
                .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self { addr, state, handle }
    }

    /// Always answers `reply`, at once.
    pub async fn always(reply: Reply) -> Self {
        Self::start(Vec::new(), reply, Duration::ZERO).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How many requests carried each `Lethe-Delivery` id.
    pub fn by_delivery(&self) -> HashMap<String, usize> {
        self.state.by_delivery.lock().unwrap().clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

async fn hook(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let captured = Captured {
        path: req.path().to_owned(),
        signature: header(SIGNATURE_HEADER),
        delivery: header(DELIVERY_HEADER),
        topic: header(TOPIC_HEADER),
        content_type: header("content-type"),
        body: body.to_vec(),
    };
    if let Some(id) = &captured.delivery {
        *state.by_delivery.lock().unwrap().entry(id.clone()).or_default() += 1;
    }
    state.requests.lock().unwrap().push(captured);
    let reply = state.script.lock().unwrap().pop_front().unwrap_or_else(|| state.default.clone());
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut response = HttpResponse::build(actix_web::http::StatusCode::from_u16(reply.status).unwrap());
    match reply.body {
        Some(b) => response.content_type("application/json").body(b),
        None => response.finish(),
    }
}

/// An address where nothing listens (bound, then closed).
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/hook")
}

/// A temporary sled database and its outbox tree.
pub fn temp_tree() -> (sled::Db, sled::Tree) {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let tree = db.open_tree("outbox").unwrap();
    (db, tree)
}

pub fn recipient(id: &str, endpoint: &str) -> Recipient {
    Recipient::new(id, format!("Recipient {id}"), endpoint, Some(secret())).unwrap()
}

/// Doubling from 10 s, capped at 1 min, no jitter, 8 attempts.
pub fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 8,
        base_delay: Duration::from_secs(10),
        max_delay: Duration::from_secs(60),
        jitter: 0.0,
    }
}

pub fn fast_config() -> DeliveryConfig {
    DeliveryConfig {
        connect_timeout: Duration::from_secs(1),
        timeout: Duration::from_secs(3),
        ..DeliveryConfig::default()
    }
}

pub fn deliverer(outbox: &Outbox) -> Deliverer {
    Deliverer::new(outbox.clone(), fast_config()).unwrap()
}
