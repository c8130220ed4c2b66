//! `spawn_app()`: a running service on a free port, a fresh data directory and fresh keys.

use std::sync::Arc;

use lethe::app::{Application, Settings};
use lethe_crypto::MasterSource;
use lethe_eventlog::{EventStore, LogConfig, SledEventLog};

pub struct TestApp {
    pub address: String,
    pub store: Arc<dyn EventStore>,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let master = MasterSource::Hex(hex::encode(rand::random::<[u8; 32]>()));
    let store: Arc<dyn EventStore> =
        Arc::new(SledEventLog::open(LogConfig::new(dir.path(), master)).expect("open log"));
    let settings = Settings { listen: "127.0.0.1:0".into(), workers: 1 };
    let app = Application::build(&settings, Arc::clone(&store)).expect("build app");
    let address = format!("http://127.0.0.1:{}", app.port());
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp { address, store, client: reqwest::Client::new(), _dir: dir }
}
