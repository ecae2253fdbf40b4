//! Webhook delivery benchmark against a real gateway, PostgreSQL and a local HTTP receiver:
//!
//! 1. Drain: `BENCH_EVENTS` (default 5000) events are queued while no dispatcher runs; then
//!    a gateway with 8 dispatcher workers starts, and the time until the receiver has every
//!    event gives deliveries/s.
//! 2. Latency: with the pool running, `BENCH_LIVE_EVENTS` (default 1000) more events are
//!    created at a steady pace; the time from each event's `created_at` to its receipt gives
//!    p50/p99.
//!
//! ```text
//! scripts/bench.sh webhook_delivery      # or: cargo bench --bench webhook_delivery
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ctrip::app::Application;
use ctrip::config::{Secret, Settings};
use ctrip::telemetry::{build_logger, LogSink};
use ctrip::wallet::HdWallet;
use futures::StreamExt;
use warp::Filter;

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

type Seen = Arc<Mutex<HashMap<String, (chrono::DateTime<chrono::Utc>, String)>>>;

async fn receiver(seen: Seen) -> String {
    let route = warp::post()
        .and(warp::header::<String>("webhook-id"))
        .and(warp::body::bytes())
        .map(move |id: String, body: bytes::Bytes| {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let created = v["created_at"].as_str().unwrap_or("").to_string();
            seen.lock()
                .unwrap()
                .entry(id)
                .or_insert((chrono::Utc::now(), created));
            warp::reply()
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(warp::serve(route).incoming(listener).run());
    format!("http://127.0.0.1:{port}/hooks")
}

fn settings(db: &str, mnemonic: &str, tree: bool) -> Settings {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut s = Settings::load_layers(&dir, None, None, false).unwrap();
    s.database.url = Secret::new(db);
    s.wallet.mnemonic = Secret::new(mnemonic);
    s.admin.token = Secret::new("bench-admin-token-0123456789");
    s.server.bind = "127.0.0.1:0".parse().unwrap();
    s.telemetry.log_level = "error".parse().unwrap();
    s.supervision.enabled = tree;
    s.webhooks.workers = 8;
    s.webhooks.allow_private_targets = true;
    // No chains: only the webhook pool runs under the root supervisor. Payments need a
    // chain to be created, so one is configured but its RPC is never reached by the API.
    s.chains = vec![ctrip::config::ChainSettings {
        name: "bench".into(),
        chain_id: 31337,
        rpc_urls: vec![ctrip::config::RpcUrl::parse("http://127.0.0.1:9").unwrap()],
        native_symbol: "ETH".into(),
        confirmations: 2,
        block_time: std::time::Duration::from_millis(1000),
        poll_interval: Some(std::time::Duration::from_millis(15_000)),
        max_head_lag_blocks: 5,
        scan_batch_blocks: 500,
        start_block: ctrip::config::StartBlock::Latest,
        treasury: None,
        tokens: vec![],
        sweep: Default::default(),
    }];
    s.validate().unwrap();
    s
}

async fn events(base: &str, key: &str, n: usize, concurrency: usize) {
    let client = reqwest::Client::new();
    futures::stream::iter(0..n)
        .for_each_concurrent(concurrency, |_| {
            let (client, base, key) = (client.clone(), base.to_string(), key.to_string());
            async move {
                let p: serde_json::Value = client
                    .post(format!("{base}/v1/payments"))
                    .bearer_auth(&key)
                    .json(&serde_json::json!({"chain": "bench", "asset": "native", "amount": "1"}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let id = p["id"].as_str().unwrap();
                client
                    .post(format!("{base}/v1/payments/{id}/cancel"))
                    .bearer_auth(&key)
                    .send()
                    .await
                    .unwrap();
            }
        })
        .await;
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench());
}

async fn bench() {
    let n: usize = env_or("BENCH_EVENTS", 5000);
    let live: usize = env_or("BENCH_LIVE_EVENTS", 1000);
    let maintenance = std::env::var("CTRIP_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = ctrip::devnet::create_database(&maintenance, "ctrip_bench")
        .await
        .unwrap();
    let mnemonic = HdWallet::generate_mnemonic();
    let seen: Seen = Arc::default();
    let url = receiver(seen.clone()).await;

    // Queue n events with no dispatcher running.
    let s = settings(&db, &mnemonic, false);
    let (log, _g1) = build_logger(&s.telemetry, LogSink::Stdout);
    let app = Application::build(s, log, true).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let store = app.state().store.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stop_rx.await;
    }));
    let merchant = ctrip::ops::create_merchant(&store, "bench").await.unwrap();
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/webhook-endpoints"))
        .bearer_auth(&merchant.api_key)
        .json(&serde_json::json!({"url": url}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    events(&base, &merchant.api_key, n, 16).await;
    // A backlog builds up over minutes in production, with autovacuum keeping the planner's
    // statistics current; a freshly filled table has none, and plans the claim badly.
    store
        .client()
        .await
        .unwrap()
        .batch_execute("ANALYZE webhook_deliveries")
        .await
        .unwrap();
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();

    // Start the pool and time the drain.
    let s = settings(&db, &mnemonic, true);
    let (log, _g2) = build_logger(&s.telemetry, LogSink::Stdout);
    let app = Application::build(s, log, true).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let started = Instant::now();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    loop {
        if seen.lock().unwrap().len() >= n {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "drain took over 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "cTrip webhook delivery benchmark: 8 workers, 2 cores\ndrain: {n} deliveries in {secs:.2} s = {:.0} deliveries/s",
        n as f64 / secs
    );

    // Live latency: event created_at -> receipt.
    seen.lock().unwrap().clear();
    events(&base, &merchant.api_key, live, 2).await;
    let started = Instant::now();
    while seen.lock().unwrap().len() < live {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "live events not delivered"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut lat: Vec<f64> = seen
        .lock()
        .unwrap()
        .values()
        .filter_map(|(at, created)| {
            let c = chrono::DateTime::parse_from_rfc3339(created).ok()?;
            Some((*at - c.with_timezone(&chrono::Utc)).num_microseconds()? as f64 / 1000.0)
        })
        .collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "latency (event created -> received), {} events, poll interval 200 ms: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        lat.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}
