//! Test harness: a real gateway on a random port, backed by a fresh database on the
//! PostgreSQL server at CTRIP_TEST_DATABASE_URL (default: the local server on 5432).

use std::sync::{Arc, Mutex};

use ctrip::app::Application;
use ctrip::config::{ChainSettings, RpcUrl, Secret, Settings, StartBlock, TokenSettings};
use ctrip::store::Store;
use ctrip::telemetry::{build_logger, LogSink};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use uuid::Uuid;

/// The well-known development mnemonic (anvil's default accounts).
pub const TEST_MNEMONIC: &str = "test test test test test test test test test test test junk";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// An 18-decimal demo token and a 6-decimal one.
pub const TKN: &str = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
pub const USDC: &str = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512";

pub fn maintenance_url() -> String {
    std::env::var("CTRIP_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn test_chain(name: &str, chain_id: u64, rpc: &str) -> ChainSettings {
    ChainSettings {
        name: name.into(),
        chain_id,
        rpc_urls: vec![RpcUrl::parse(rpc).unwrap()],
        poll_interval: None,
        max_head_lag_blocks: 5,
        scan_batch_blocks: 500,
        native_symbol: "ETH".into(),
        confirmations: 3,
        block_time: std::time::Duration::from_millis(1000),
        start_block: StartBlock::Number(0),
        treasury: None,
        tokens: vec![
            TokenSettings {
                symbol: "TKN".into(),
                address: TKN.parse().unwrap(),
                decimals: 18,
                min_sweep_raw: None,
            },
            TokenSettings {
                symbol: "USDC".into(),
                address: USDC.parse().unwrap(),
                decimals: 6,
                min_sweep_raw: None,
            },
        ],
        sweep: Default::default(),
    }
}

/// Creates an empty database on the server behind `maintenance` and returns its URL.
pub async fn create_database(maintenance: &str) -> String {
    ctrip::devnet::create_database(maintenance, "ctrip_test")
        .await
        .expect("the test PostgreSQL server answers (see scripts/test.sh)")
}

pub fn base_settings(database_url: &str) -> Settings {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut s =
        Settings::load_layers(&dir, Some("test"), None, false).expect("shipped config loads");
    s.database.url = Secret::new(database_url);
    s.database.pool_size = 16;
    s.wallet.mnemonic = Secret::new(TEST_MNEMONIC);
    s.admin.token = Secret::new(ADMIN_TOKEN);
    s.server.bind = "127.0.0.1:0".parse().unwrap();
    s.chains = vec![test_chain("devchain", 31337, "http://127.0.0.1:9")];
    // API tests run without the actor tree; the supervision tests turn it on.
    s.supervision.enabled = false;
    s
}

pub struct TestApp {
    pub state: ctrip::api::AppState,
    pub metrics: ctrip::app::Metrics,
    pub db_url: String,
    pub address: String,
    pub client: reqwest::Client,
    pub store: Store,
    pub merchant_id: Uuid,
    pub api_key: String,
    pub logs: Arc<Mutex<Vec<u8>>>,
    /// The span exporter; flush it before reading what a collector received.
    pub tracing: ctrip::telemetry::trace::Tracing,
    /// What signs for the gateway (in-process, or the separate signer's client).
    pub signer: Arc<dyn ctrip::wallet::Signer>,
    shutdown: Option<oneshot::Sender<()>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    let url = create_database(&maintenance_url()).await;
    spawn_app_on(&url, customize).await
}

pub async fn spawn_app_on(database_url: &str, customize: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = base_settings(database_url);
    customize(&mut settings);
    settings.validate().expect("test settings are valid");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (log, _) = build_logger(&settings.telemetry, LogSink::Buffer(logs.clone()));
    let app = Application::build(settings, log, true)
        .await
        .expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let store = app.state().store.clone();
    let state = app.state().clone();
    let metrics = app.metrics().clone();
    let tracing = app.tracing();
    let signer = app.signer();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    // With the well-known test mnemonic, BIP-44 account 0 holds anvil's funded default
    // accounts; a placeholder merchant takes it so test deposit addresses never coincide
    // with a payer.
    let client = store.client().await.expect("db");
    let taken: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM merchants WHERE account_index = 0)",
            &[],
        )
        .await
        .expect("query")
        .get(0);
    drop(client);
    if !taken {
        ctrip::ops::create_merchant(&store, "Account zero placeholder")
            .await
            .expect("placeholder merchant");
    }
    let created = ctrip::ops::create_merchant(&store, "Test merchant")
        .await
        .expect("merchant");
    TestApp {
        state,
        metrics,
        db_url: database_url.to_string(),
        address,
        client: reqwest::Client::new(),
        store,
        merchant_id: created.merchant.id,
        api_key: created.api_key,
        logs,
        tracing,
        signer,
        shutdown: Some(tx),
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn native_body(amount: &str) -> Value {
    json!({"chain": "devchain", "asset": "native", "amount": amount})
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_payment(&self, body: &Value) -> reqwest::Response {
        self.post_payment_as(&self.api_key, body, None).await
    }

    pub async fn post_payment_as(
        &self,
        key: &str,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url("/v1/payments"))
            .bearer_auth(key)
            .json(body);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        req.send().await.expect("request sent")
    }

    pub async fn create_payment(&self, amount: &str) -> Value {
        let r = self.post_payment(&native_body(amount)).await;
        assert_eq!(r.status(), 201);
        r.json().await.expect("json")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post(&self, path: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .expect("request sent")
    }

    pub fn log_text(&self) -> String {
        let buf = self.logs.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Neither the mnemonic nor any raw API key may ever reach the logs.
    pub fn assert_logs_clean(&self, extra_keys: &[&str]) {
        let text = self.log_text();
        assert!(!text.is_empty(), "the app logged nothing at all");
        assert!(!text.contains(TEST_MNEMONIC), "mnemonic leaked into logs");
        assert!(
            !text.contains("test test test"),
            "mnemonic fragment leaked into logs"
        );
        assert!(!text.contains(&self.api_key), "API key leaked into logs");
        assert!(
            !text.contains("ck_live_"),
            "an API key prefix leaked into logs"
        );
        for k in extra_keys {
            assert!(!text.contains(k), "API key leaked into logs");
        }
    }
}

/// Checks the contract's error shape and returns the error object.
pub async fn expect_error(r: reqwest::Response, status: u16, kind: &str) -> Value {
    let got = r.status().as_u16();
    assert!(r.headers().contains_key("x-request-id"));
    let text = r.text().await.expect("error body");
    assert_eq!(got, status, "unexpected status; body: {text}");
    let body: Value = serde_json::from_str(&text).expect("error body is JSON");
    let err = body.get("error").cloned().expect("error object");
    assert_eq!(err["type"], kind, "{body}");
    assert!(err["message"].is_string(), "{body}");
    err
}

impl TestApp {
    pub async fn health_detail(&self) -> (u16, Value) {
        let r = self
            .client
            .get(self.url("/health/detail"))
            .send()
            .await
            .expect("sent");
        let status = r.status().as_u16();
        (status, r.json().await.expect("health json"))
    }

    pub async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("sent")
            .text()
            .await
            .expect("text")
    }
}

/// The value of one sample line of the Prometheus text format, e.g.
/// `ctrip_actor_up{chain="a",actor="scanner"}` (labels in exposition order).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Polls `check` until it returns Some, or panics after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The `ctrip` binary as a child process, run from the repository with no `CTRIP_ENV`.
pub fn ctrip() -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_ctrip"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("CTRIP_ENV")
        .kill_on_drop(true);
    c
}
