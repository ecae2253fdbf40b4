//! Chain ingestion benchmark against a real anvil and PostgreSQL:
//!
//! 1. Backfill: 10,000 blocks holding 1,000 transfers (native and ERC-20) to 1,000 watched
//!    deposit addresses, scanned from a cold cursor: blocks/s and transfers/s. With
//!    `BENCH_OPEN_PAYMENTS=100000`, that many more open payments (half native, half token)
//!    are watched during the backfill without being paid.
//! 2. Detection latency: with the real actor tree running (scanner tick = poll interval),
//!    the time from a transfer's block being mined to its payment reading `processing`.
//!
//! ```text
//! scripts/bench.sh chain_backfill      # or: cargo bench --bench chain_backfill
//! ```
//! Environment: `CTRIP_TEST_DATABASE_URL`, `BENCH_PAYMENTS` (default 1000), `BENCH_BLOCKS`
//! (default 10000), `BENCH_OPEN_PAYMENTS` (default 0), `BENCH_LATENCY_SAMPLES` (default 20),
//! `BENCH_POLL_MS` (default 1000).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use ctrip::app::Application;
use ctrip::chain::scanner::Scanner;
use ctrip::chain::ChainRpc;
use ctrip::config::{ChainSettings, RpcUrl, Secret, Settings, StartBlock, TokenSettings};
use ctrip::devnet::{Anvil, DevChain, ANVIL_PAYER};
use ctrip::telemetry::{build_logger, LogSink};
use ctrip::wallet::HdWallet;

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn settings(db: &str, chain: ChainSettings, tree: bool) -> Settings {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut s = Settings::load_layers(&dir, None, None, false).unwrap();
    s.database.url = Secret::new(db);
    // A fresh wallet: deposit addresses never coincide with anvil's funded accounts.
    s.wallet.mnemonic = Secret::new(HdWallet::generate_mnemonic().as_str());
    s.admin.token = Secret::new("bench-admin-token-0123456789");
    s.server.bind = "127.0.0.1:0".parse().unwrap();
    s.telemetry.log_level = "warning".parse().unwrap();
    s.supervision.enabled = tree;
    s.webhooks.workers = 1;
    s.chains = vec![chain];
    s.validate().unwrap();
    s
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench());
}

async fn create_payments(
    base: &str,
    key: &str,
    n: usize,
    token: bool,
) -> Vec<(String, Address, bool)> {
    let client = reqwest::Client::new();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let is_token = token && i % 2 == 1;
        let body = serde_json::json!({
            "chain": "bench", "asset": if is_token { "DEMO" } else { "native" }, "amount": "1",
            "expires_in": 86400,
        });
        let v: serde_json::Value = client
            .post(format!("{base}/v1/payments"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out.push((
            v["id"].as_str().unwrap().to_string(),
            v["address"].as_str().unwrap().parse().unwrap(),
            is_token,
        ));
    }
    out
}

/// Unpaid payments, created through the API 32 at a time.
async fn create_open_payments(base: &str, key: &str, n: usize) {
    use futures::StreamExt;
    let client = reqwest::Client::new();
    futures::stream::iter(0..n)
        .for_each_concurrent(32, |i| {
            let client = client.clone();
            async move {
                let body = serde_json::json!({
                    "chain": "bench", "asset": if i % 2 == 1 { "DEMO" } else { "native" },
                    "amount": "1", "expires_in": 86400,
                });
                let r = client
                    .post(format!("{base}/v1/payments"))
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        })
        .await;
}

async fn bench() {
    let payments: usize = env_or("BENCH_PAYMENTS", 1000);
    let open_payments: usize = env_or("BENCH_OPEN_PAYMENTS", 0);
    let blocks: u64 = env_or("BENCH_BLOCKS", 10_000);
    let samples: usize = env_or("BENCH_LATENCY_SAMPLES", 20);
    let poll_ms: u64 = env_or("BENCH_POLL_MS", 1000);
    let maintenance = std::env::var("CTRIP_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());

    // ---- backfill --------------------------------------------------------------------
    let anvil = Anvil::start(None).await.unwrap();
    let dev = DevChain::new(anvil.url());
    let token = dev.deploy_demo_token().await.unwrap();
    let payer: Address = ANVIL_PAYER.parse().unwrap();
    dev.mint(token, payer, U256::from(10u64).pow(U256::from(30u64)))
        .await
        .unwrap();
    let start = dev.head().await.unwrap() + 1;
    let chain = ChainSettings {
        name: "bench".into(),
        chain_id: 31337,
        rpc_urls: vec![RpcUrl::parse(&anvil.url()).unwrap()],
        native_symbol: "ETH".into(),
        confirmations: 12,
        block_time: std::time::Duration::from_millis(1000),
        poll_interval: Some(Duration::from_millis(poll_ms)),
        max_head_lag_blocks: 5,
        scan_batch_blocks: 500,
        start_block: StartBlock::Number(start),
        treasury: None,
        tokens: vec![TokenSettings {
            symbol: "DEMO".into(),
            address: token,
            decimals: 18,
            min_sweep_raw: None,
        }],
        sweep: Default::default(),
    };
    let db = ctrip::devnet::create_database(&maintenance, "ctrip_bench")
        .await
        .unwrap();
    let s = settings(&db, chain.clone(), false);
    let (log, _guard) = build_logger(&s.telemetry, LogSink::Stdout);
    let app = Application::build(s, log, true).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let metrics = app.metrics().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let merchant = ctrip::ops::create_merchant(&state.store, "bench")
        .await
        .unwrap();

    println!(
        "cTrip chain ingestion benchmark: {payments} watched addresses, {blocks} blocks, 2 cores"
    );
    let t = Instant::now();
    let created = create_payments(&base, &merchant.api_key, payments, true).await;
    let gap = (blocks / payments as u64).max(1);
    for (_, address, is_token) in &created {
        if *is_token {
            dev.pay_token(
                token,
                ANVIL_PAYER,
                *address,
                U256::from(10u64).pow(U256::from(18u64)),
            )
            .await
            .unwrap();
        } else {
            dev.pay_native(
                ANVIL_PAYER,
                *address,
                U256::from(10u64).pow(U256::from(18u64)),
            )
            .await
            .unwrap();
        }
        if gap > 1 {
            dev.mine(gap - 1).await.unwrap();
        }
    }
    if open_payments > 0 {
        let t = Instant::now();
        create_open_payments(&base, &merchant.api_key, open_payments).await;
        println!(
            "setup: {open_payments} more open payments (half native, half token) in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    let head = dev.head().await.unwrap();
    println!(
        "setup: {} blocks with {} transfers in {:.1} s",
        head + 1 - start,
        created.len(),
        t.elapsed().as_secs_f64()
    );

    let watched = payments + open_payments;
    let rpc = ChainRpc::new(
        &chain,
        Duration::from_secs(10),
        state.chain_status.clone(),
        metrics.chain.clone(),
    )
    .expect("rpc client");
    let mut scanner = Scanner::new(
        chain.clone(),
        rpc,
        state.store.clone(),
        state.chain_status.clone(),
        metrics.chain.clone(),
        metrics.payments.clone(),
        state.log.clone(),
        86_400,
    );
    let t = Instant::now();
    let mut transfers = 0;
    loop {
        let r = scanner.scan_once().await.unwrap();
        transfers += r.transfers;
        if r.caught_up {
            break;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let scanned = head + 1 - start;
    println!(
        "backfill: {scanned} blocks, {transfers} transfers, {watched} watched addresses in {secs:.2} s = {:.0} blocks/s, {:.0} transfers/s",
        scanned as f64 / secs,
        transfers as f64 / secs
    );
    let c = state.store.client().await.unwrap();
    let processing: i64 = c
        .query_one(
            "SELECT count(*) FROM payments WHERE status = 'processing'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    println!("backfill: {processing} of {payments} payments detected");
    drop(anvil);

    // ---- detection latency with the actor tree --------------------------------------
    let anvil = Anvil::start(None).await.unwrap();
    let dev = DevChain::new(anvil.url());
    let mut chain = chain.clone();
    chain.rpc_urls = vec![RpcUrl::parse(&anvil.url()).unwrap()];
    chain.tokens.clear();
    chain.start_block = StartBlock::Latest;
    let db = ctrip::devnet::create_database(&maintenance, "ctrip_bench")
        .await
        .unwrap();
    let s = settings(&db, chain, true);
    let (log, _guard2) = build_logger(&s.telemetry, LogSink::Stdout);
    let app = Application::build(s, log, true).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let merchant = ctrip::ops::create_merchant(&state.store, "bench")
        .await
        .unwrap();
    let mut latencies = Vec::new();
    for (id, address, _) in create_payments(&base, &merchant.api_key, samples, false).await {
        let id: uuid::Uuid = id.parse().unwrap();
        dev.pay_native(
            ANVIL_PAYER,
            address,
            U256::from(1u64) * U256::from(10u64).pow(U256::from(18u64)),
        )
        .await
        .unwrap();
        let mined = Instant::now();
        loop {
            let c = state.store.client().await.unwrap();
            let status: String = c
                .query_one("SELECT status FROM payments WHERE id = $1", &[&id])
                .await
                .unwrap()
                .get(0);
            if status == "processing" {
                latencies.push(mined.elapsed());
                break;
            }
            assert!(
                mined.elapsed() < Duration::from_secs(60),
                "not detected within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // De-correlate the next transfer from the scanner's tick phase.
        tokio::time::sleep(Duration::from_millis(137)).await;
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1000.0
    };
    println!(
        "detection latency (mined -> processing), scanner tick {poll_ms} ms, {} samples: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        latencies.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}
