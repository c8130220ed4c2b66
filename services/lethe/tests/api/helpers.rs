//! `spawn_app()`: a running service on a free port, a fresh data directory, fresh keys, and typed
//! helpers to mint tokens and call the API.

use std::sync::Arc;
use std::time::Duration;

use lethe::app::{Application, Settings};
use lethe_auth::{AuthConfig, Issuer, Role, SigningKeys};
use lethe_collect::auth::Auth;
use lethe_collect::CollectState;
use lethe_crypto::{Keyring, MasterSource};
use lethe_domain::SubjectId;
use lethe_eventlog::{EventStore, LogConfig, SledEventLog};
use lethe_policy::Policies;
use lethe_privacy::controller::ControllerFile;
use lethe_privacy::{Privacy, PrivacyOptions};
use serde_json::{json, Value};

pub struct TestApp {
    pub address: String,
    pub store: Arc<dyn EventStore>,
    pub state: CollectState,
    pub privacy: Arc<Privacy>,
    pub engine: Arc<lethe_decide::Engine>,
    pub views: Arc<lethe_personalize::Views>,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(lethe_collect::ratelimit::Limits::default()).await
}

pub async fn spawn_app_with(limits: lethe_collect::ratelimit::Limits) -> TestApp {
    spawn_app_serving(limits, lethe::app::Part::ALL.to_vec()).await
}

pub async fn spawn_app_serving(limits: lethe_collect::ratelimit::Limits, parts: Vec<lethe::app::Part>) -> TestApp {
    spawn_app_configured(limits, parts, |_| {}).await
}

/// A service whose privacy part is set up by `configure` (controller file, options) before it starts.
pub async fn spawn_app_configured(
    limits: lethe_collect::ratelimit::Limits,
    parts: Vec<lethe::app::Part>,
    configure: impl FnOnce(&mut PrivacySetup),
) -> TestApp {
    spawn_app_set(limits, parts, configure, |_| {}).await
}

/// A service with the HTTP settings `settings` changed (timeouts, …).
pub async fn spawn_app_settings(settings: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_set(Default::default(), lethe::app::Part::ALL.to_vec(), |_| {}, settings).await
}

async fn spawn_app_set(
    limits: lethe_collect::ratelimit::Limits,
    parts: Vec<lethe::app::Part>,
    configure: impl FnOnce(&mut PrivacySetup),
    edit: impl FnOnce(&mut Settings),
) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let master = MasterSource::Hex(hex::encode(rand::random::<[u8; 32]>()));
    let store: Arc<dyn EventStore> =
        Arc::new(SledEventLog::open(LogConfig::new(dir.path(), master.clone())).expect("open log"));
    let policies =
        Policies::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")).expect("policies");
    let auth = Arc::new(Auth::new(SigningKeys::generate().expect("keys"), AuthConfig::default()));
    let mut state = CollectState::build(Arc::clone(&store), Arc::new(policies), auth).expect("state");
    state.limits = Arc::new(lethe_collect::ratelimit::RateLimiter::new(limits));
    let controller = ControllerFile::builtin().expect("controller file");
    let mut setup = PrivacySetup {
        options: PrivacyOptions::from_controller(&controller),
        controller,
        edge: lethe_collect::minimize::EdgeLocation::default(),
    };
    configure(&mut setup);
    state.edge = Arc::new(setup.edge.clone());
    let keyring = Keyring::open(dir.path(), &master).expect("key store");
    let privacy = Privacy::open(dir.path(), &keyring, state.clone(), setup.controller, setup.options).expect("privacy");
    let personalizer = lethe_personalize::Personalizer::open(
        dir.path(),
        &master,
        Arc::clone(&privacy),
        lethe_personalize::TrainConfig::default(),
    )
    .expect("model registry");
    privacy.register(personalizer.clone());
    let views = Arc::new(lethe_personalize::Views::replay(Arc::clone(&store), &state.policies).expect("views"));
    privacy.register(views.clone());
    personalizer.attach_views(Arc::clone(&views));
    let slots = lethe_decide::Slots::builtin(&state.policies).expect("slots");
    let engine =
        lethe_decide::Engine::open(slots, state.clone(), Arc::clone(&views), personalizer, Arc::clone(&privacy))
            .expect("decision engine");
    privacy.register(engine.clone());
    let decide = Arc::new(lethe_decide::DecideState { engine: Arc::clone(&engine), recommenders: Default::default() });
    let mut settings = Settings { listen: "127.0.0.1:0".into(), workers: 1, parts, ..Settings::default() };
    edit(&mut settings);
    let app = Application::build_with_decisions(&settings, state.clone(), Some(Arc::clone(&privacy)), Some(decide))
        .expect("build app");
    let address = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp { address, store, state, privacy, engine, views, client: reqwest::Client::new(), dir }
}

/// What a test may change before the privacy part opens.
pub struct PrivacySetup {
    pub controller: ControllerFile,
    pub options: PrivacyOptions,
    /// The location headers the edge sets (none by default).
    pub edge: lethe_collect::minimize::EdgeLocation,
}

impl TestApp {
    /// A second decision engine opened over this app's log and stores, with `state` as its
    /// collector state: what a restart rebuilds from the log.
    pub fn reopened_engine_with(&self, state: CollectState) -> Arc<lethe_decide::Engine> {
        let slots = lethe_decide::Slots::builtin(&state.policies).unwrap();
        let personalizer = Arc::clone(self.engine.personalizer());
        lethe_decide::Engine::open(slots, state, Arc::clone(&self.views), personalizer, Arc::clone(&self.privacy))
            .unwrap()
    }

    /// [`TestApp::reopened_engine_with`] this app's own collector state.
    pub fn reopened_engine(&self) -> Arc<lethe_decide::Engine> {
        self.reopened_engine_with(self.state.clone())
    }

    /// The decoded receipts of `event_type` in a subject's stream, once at least `at_least` are
    /// durable (the receipt writer is asynchronous: this waits for them).
    pub async fn receipts(&self, id: &str, event_type: &str, at_least: usize) -> Vec<Value> {
        let p = self.store.pseudonymize(&SubjectId::parse(id).unwrap());
        for _ in 0..100 {
            let found: Vec<Value> = self
                .store
                .read_stream(&p)
                .unwrap()
                .into_iter()
                .filter(|e| e.envelope.event_type.as_str() == event_type)
                .filter_map(|e| match e.body {
                    lethe_domain::EventBody::Plain(b) => serde_json::from_slice(&b).ok(),
                    _ => None,
                })
                .collect();
            if found.len() >= at_least {
                return found;
            }
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no {event_type} receipt for {id}");
    }

    /// A token of `role`; `subject` for subject tokens.
    pub fn token(&self, role: Role, subject: Option<&str>) -> String {
        let keys = self.state.auth.keys.read().expect("keys");
        let subject = subject.map(|s| SubjectId::parse(s).expect("id"));
        let site = (role == Role::Site).then_some("shop");
        let origins = if role == Role::Site { vec!["https://shop.example".to_owned()] } else { vec![] };
        Issuer::issue(&keys, &AuthConfig::default(), role, Duration::from_secs(600), subject.as_ref(), site, &origins)
            .expect("issue")
    }

    pub fn site(&self) -> String {
        self.token(Role::Site, None)
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = self.client.post(format!("{}{path}", self.address)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.client.get(format!("{}{path}", self.address));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> String {
        self.client.get(format!("{}/metrics", self.address)).send().await.unwrap().text().await.unwrap()
    }

    /// The current banner notice as the SDK would show it.
    pub fn notice(&self) -> Value {
        let n = self.state.policies.notices().next().expect("a notice");
        json!({"id": n.id().as_str(), "version": n.version().get(), "contentHash": n.content_hash()})
    }

    /// Records a banner choice for an anonymous id.
    pub async fn consent(&self, anonymous_id: &str, granted: &[&str], denied: &[&str]) -> (u16, Value) {
        let body = json!({
            "anonymousId": anonymous_id, "notice": self.notice(), "granted": granted, "denied": denied,
            "method": "banner", "jurisdiction": "EU", "locale": "en", "sdkVersion": "test"
        });
        self.post("/v1/consent", Some(&self.site()), &body).await
    }

    /// A track call from a browser that sends the GPC signal (`Sec-GPC: 1`): its status and body.
    pub async fn track_with_gpc(&self, anonymous_id: &str, event: &str, message_id: &str) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/v1/track", self.address))
            .bearer_auth(self.site())
            .header("Sec-GPC", "1")
            .json(&json!({"anonymousId": anonymous_id, "event": event, "messageId": message_id}))
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// How many events the log holds for an anonymous id.
    pub fn stored(&self, anonymous_id: &str) -> usize {
        let p = self.store.pseudonymize(&SubjectId::parse(anonymous_id).expect("id"));
        self.store.read_stream(&p).expect("read").len()
    }
}
