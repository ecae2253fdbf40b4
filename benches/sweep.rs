//! Sweeping benchmark: confirmed token payments swept to the treasury, once through the
//! EIP-7702 delegate (a Prague anvil) and once by seeding (a Cancun anvil). Reports the
//! transactions sent, the gas per swept address and the wall time. Run with:
//!
//! ```text
//! scripts/bench.sh sweep        # or: cargo bench --bench sweep
//! ```
//!
//! Environment: `CTRIP_TEST_DATABASE_URL`, `BENCH_SWEEP_PAYMENTS` (default 1000).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use ctrip::app::Application;
use ctrip::chain::sweeper::Sweeper;
use ctrip::chain::{confirmer::Confirmer, scanner::Scanner, ChainRpc};
use ctrip::config::{ChainSettings, RpcUrl, Secret, Settings, StartBlock, TokenSettings};
use ctrip::devnet::{Anvil, DevChain, ANVIL_PAYER};
use ctrip::telemetry::{build_logger, LogSink};
use ctrip::wallet::{HdWallet, KeyRef};
use ctrip::worker::Work;

const TREASURY: &str = "0x000000000000000000000000000000000000bEEF";

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let n: usize = env_or("BENCH_SWEEP_PAYMENTS", 1000);
            println!("cTrip sweeping benchmark: {n} confirmed token payments, 2 cores");
            run("delegated (EIP-7702, prague)", "prague", n).await;
            run("seeded (cancun)", "cancun", n).await;
        });
}

fn hex_u64(v: &serde_json::Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

async fn run(label: &str, hardfork: &str, n: usize) {
    let maintenance = std::env::var("CTRIP_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let anvil = Anvil::start_with(None, &["--hardfork".into(), hardfork.into()])
        .await
        .unwrap();
    let dev = DevChain::new(anvil.url());
    let token = dev.deploy_demo_token().await.unwrap();
    let payer: Address = ANVIL_PAYER.parse().unwrap();
    let one = U256::from(10u64).pow(U256::from(18u64));
    dev.mint(token, payer, one * U256::from(n as u64))
        .await
        .unwrap();
    let chain = ChainSettings {
        name: "bench".into(),
        chain_id: 31337,
        rpc_urls: vec![RpcUrl::parse(&anvil.url()).unwrap()],
        native_symbol: "ETH".into(),
        confirmations: 1,
        block_time: Duration::from_millis(1000),
        poll_interval: None,
        max_head_lag_blocks: 5,
        scan_batch_blocks: 500,
        start_block: StartBlock::Number(0),
        treasury: Some(TREASURY.parse().unwrap()),
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
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut s = Settings::load_layers(&dir, None, None, false).unwrap();
    s.database.url = Secret::new(&db);
    s.wallet.mnemonic = Secret::new(HdWallet::generate_mnemonic().as_str());
    s.admin.token = Secret::new("bench-admin-token-0123456789");
    s.server.bind = "127.0.0.1:0".parse().unwrap();
    s.telemetry.log_level = "error".parse().unwrap();
    s.supervision.enabled = false;
    s.chains = vec![chain.clone()];
    s.validate().unwrap();
    let (log, _guard) = build_logger(&s.telemetry, LogSink::Stdout);
    let app = Application::build(s, log.clone(), true).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let signer = app.signer();
    let metrics = app.metrics().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let merchant = ctrip::ops::create_merchant(&state.store, "bench")
        .await
        .unwrap();

    let t = Instant::now();
    let client = reqwest::Client::new();
    for _ in 0..n {
        let v: serde_json::Value = client
            .post(format!("{base}/v1/payments"))
            .bearer_auth(&merchant.api_key)
            .json(&serde_json::json!({"chain": "bench", "asset": "DEMO", "amount": "1", "confirmations": 1, "expires_in": 86400}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let address: Address = v["address"].as_str().unwrap().parse().unwrap();
        dev.pay_token(token, ANVIL_PAYER, address, one)
            .await
            .unwrap();
    }
    let rpc = ChainRpc::new(
        &chain,
        Duration::from_secs(10),
        state.chain_status.clone(),
        metrics.chain.clone(),
    )
    .unwrap();
    let mut scanner = Scanner::new(
        chain.clone(),
        rpc.clone(),
        state.store.clone(),
        state.chain_status.clone(),
        metrics.chain.clone(),
        metrics.payments.clone(),
        log.clone(),
        86_400,
    );
    loop {
        if scanner.scan_once().await.unwrap().caught_up {
            break;
        }
    }
    dev.mine(1).await.unwrap();
    let mut confirmer = Confirmer::new(
        "bench",
        rpc.clone(),
        state.store.clone(),
        metrics.chain.clone(),
        metrics.payments.clone(),
        log.clone(),
        Duration::from_secs(1),
    );
    confirmer.tick_once().await.unwrap();
    let tank = signer.address(KeyRef::GasTank).await.unwrap();
    dev.set_balance(&tank.to_checksum(None), one * U256::from(1000u64))
        .await
        .unwrap();
    println!(
        "  {label}: setup ({n} payments paid and confirmed) in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let mut sweeper = Sweeper::new(
        chain,
        rpc,
        state.store.clone(),
        signer.clone(),
        metrics.chain.clone(),
        log,
        Duration::from_secs(1),
    );
    let t = Instant::now();
    let store = state.store.clone();
    let swept = || {
        let store = store.clone();
        async move {
            let c = store.client().await.unwrap();
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM payments WHERE settlement_status = 'swept'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            n as usize
        }
    };
    let mut ticks = 0;
    while swept().await < n {
        sweeper.tick_once().await.unwrap();
        ticks += 1;
        assert!(ticks < 10 * n + 100, "the sweeper makes no progress");
    }
    let wall = t.elapsed();

    let c = state.store.client().await.unwrap();
    let rows = c
        .query(
            "SELECT tx_hash, purpose FROM sweep_attempts WHERE state = 'confirmed'",
            &[],
        )
        .await
        .unwrap();
    let mut gas = 0u64;
    let mut sweep_gas = 0u64;
    for r in &rows {
        let hash: String = r.get(0);
        let purpose: String = r.get(1);
        let receipt = dev
            .rpc("eth_getTransactionReceipt", serde_json::json!([hash]))
            .await
            .unwrap();
        let used = hex_u64(&receipt["gasUsed"]);
        gas += used;
        if purpose != "deploy" {
            sweep_gas += used;
        }
    }
    println!(
        "  {label}: {n} addresses swept in {:.1} s with {} transactions ({} ticks); gas {} in all, {} per swept address (the delegate's deployment excluded)",
        wall.as_secs_f64(),
        rows.len(),
        ticks,
        gas,
        sweep_gas / n as u64,
    );
    drop(anvil);
}
