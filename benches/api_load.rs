//! Load driver for `POST /v1/payments` and `GET /v1/payments/{id}` against a real gateway
//! (real HTTP over loopback, real PostgreSQL). Run with:
//!
//! ```text
//! scripts/bench.sh            # or: cargo bench --bench api_load
//! ```
//!
//! Environment: `CTRIP_TEST_DATABASE_URL` (server to create the bench database on),
//! `BENCH_CONCURRENCY` (default 32), `BENCH_SECONDS` per phase (default 10),
//! `BENCH_OTLP_ENDPOINT` (export spans there, e.g. to `tests/tools/otlp_receiver.py
//! --quiet`; unset: tracing off) to measure what tracing costs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ctrip::app::Application;
use ctrip::config::{ChainSettings, RpcUrl, Secret, Settings, StartBlock};
use ctrip::telemetry::{build_logger, LogSink};

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

struct Phase {
    name: &'static str,
    latencies_us: Vec<u64>,
    errors: u64,
    elapsed: Duration,
}

impl Phase {
    fn report(&mut self) {
        self.latencies_us.sort_unstable();
        let n = self.latencies_us.len();
        let pct = |p: f64| {
            if n == 0 {
                0.0
            } else {
                self.latencies_us[((n as f64 * p) as usize).min(n - 1)] as f64 / 1000.0
            }
        };
        println!(
            "{:<28} {:>8} ok {:>4} err  {:>9.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   max {:>7.2} ms",
            self.name,
            n,
            self.errors,
            n as f64 / self.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            pct(1.0),
        );
    }
}

/// Runs `concurrency` workers calling `op` until `seconds` elapse.
async fn run_phase<F, Fut>(name: &'static str, concurrency: usize, seconds: u64, op: F) -> Phase
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..concurrency {
        let op = op.clone();
        let stop = stop.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if op(w, i).await {
                    lat.push(t.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
                i += 1;
            }
            (lat, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut phase = Phase {
        name,
        latencies_us: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for h in handles {
        let (lat, errors) = h.await.unwrap();
        phase.latencies_us.extend(lat);
        phase.errors += errors;
    }
    phase.elapsed = start.elapsed();
    phase
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench());
}

async fn bench() {
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 32);
    let seconds: u64 = env_or("BENCH_SECONDS", 10);
    let maintenance = std::env::var("CTRIP_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = ctrip::devnet::create_database(&maintenance, "ctrip_bench")
        .await
        .unwrap();

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut s = Settings::load_layers(&dir, None, None, false).unwrap();
    s.database.url = Secret::new(db);
    s.database.pool_size = env_or("BENCH_POOL_SIZE", 16);
    s.wallet.mnemonic = Secret::new("test test test test test test test test test test test junk");
    s.admin.token = Secret::new("bench-admin-token-0123456789");
    s.server.bind = "127.0.0.1:0".parse().unwrap();
    s.telemetry.log_level = "warning".parse().unwrap();
    s.chains = vec![ChainSettings {
        name: "devchain".into(),
        chain_id: 31337,
        rpc_urls: vec![RpcUrl::parse("http://127.0.0.1:9").unwrap()],
        poll_interval: None,
        max_head_lag_blocks: 5,
        scan_batch_blocks: 500,
        native_symbol: "ETH".into(),
        confirmations: 3,
        block_time: std::time::Duration::from_millis(1000),
        start_block: StartBlock::Latest,
        treasury: None,
        tokens: vec![],
        sweep: Default::default(),
    }];
    if let Ok(endpoint) = std::env::var("BENCH_OTLP_ENDPOINT") {
        s.telemetry.otlp_endpoint = Some(endpoint.parse().unwrap());
    }
    let tracing_on = s.telemetry.otlp_endpoint.is_some();
    s.validate().unwrap();
    let (log, _guard) = build_logger(&s.telemetry, LogSink::Stdout);
    let app = Application::build(s, log, true).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let store = app.state().store.clone();
    let metrics = app.metrics().clone();
    let tracing = app.tracing();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let merchant = ctrip::ops::create_merchant(&store, "bench").await.unwrap();
    let key = Arc::new(format!("Bearer {}", merchant.api_key));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();

    println!(
        "cTrip API load: concurrency {concurrency}, {seconds} s per phase, tracing {}, {} cores",
        if tracing_on { "on (OTLP)" } else { "off" },
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let body = r#"{"chain":"devchain","asset":"native","amount":"0.25","order_id":"bench"}"#;
    let ids = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (c, k, b, ids2) = (client.clone(), key.clone(), base.clone(), ids.clone());
    let mut create = run_phase("POST /v1/payments", concurrency, seconds, move |_, _| {
        let (c, k, b, ids) = (c.clone(), k.clone(), b.clone(), ids2.clone());
        async move {
            let r = c
                .post(format!("{b}/v1/payments"))
                .header("authorization", k.as_str())
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            match r {
                Ok(r) if r.status() == 201 => {
                    let v: serde_json::Value = r.json().await.unwrap_or_default();
                    if let Some(id) = v["id"].as_str() {
                        ids.lock().unwrap().push(id.to_string());
                    }
                    true
                }
                _ => false,
            }
        }
    })
    .await;
    create.report();

    let ids: Arc<Vec<String>> = Arc::new(ids.lock().unwrap().clone());
    let (c, k, b) = (client.clone(), key.clone(), base.clone());
    let mut read = run_phase(
        "GET /v1/payments/{id}",
        concurrency,
        seconds,
        move |w, i| {
            let (c, k, b, ids) = (c.clone(), k.clone(), b.clone(), ids.clone());
            async move {
                let id = &ids[(w * 7919 + i as usize * 104_729) % ids.len()];
                let r = c
                    .get(format!("{b}/v1/payments/{id}"))
                    .header("authorization", k.as_str())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                    _ => false,
                }
            }
        },
    )
    .await;
    read.report();
    if tracing_on {
        tracing.flush();
        let t = &metrics.trace;
        println!(
            "spans exported: {}   export batches ok {} / failed {}",
            t.spans.get(),
            t.exports.with_label_values(&["ok"]).get(),
            t.exports.with_label_values(&["error"]).get(),
        );
    }
}
