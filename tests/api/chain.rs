//! Chain ingestion and the payment lifecycle against a real anvil and a real PostgreSQL,
//! with the scanner and confirmer driven one tick at a time.

use std::time::Duration;

use alloy::primitives::{Address, U256};
use ctrip::chain::confirmer::Confirmer;
use ctrip::chain::scanner::{ScanReport, Scanner};
use ctrip::chain::ChainRpc;
use ctrip::config::ChainSettings;
use ctrip::devnet::{Anvil, DevChain, ANVIL_PAYER};
use ctrip::worker::Work;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_on, spawn_app_with, test_chain, TestApp, TKN, USDC};
use crate::proxy::Proxy;

const PAYER2: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

fn wei(s: &str) -> U256 {
    U256::from_str_radix(s, 10).expect("decimal")
}

pub(crate) fn pow10(n: u64) -> U256 {
    U256::from(10u64).pow(U256::from(n))
}

pub(crate) struct Harness {
    /// The separate signer, when the suite runs with `CTRIP_TEST_SIGNER=process`.
    pub signer: Option<crate::signer::SignerProcess>,
    pub anvil: Anvil,
    pub dev: DevChain,
    pub app: TestApp,
    pub scanner: Scanner,
    pub confirmer: Confirmer,
}

pub(crate) fn workers(app: &TestApp, chain: &ChainSettings) -> (Scanner, Confirmer) {
    let s = &app.state;
    let rpc = ChainRpc::new(
        chain,
        Duration::from_secs(10),
        s.chain_status.clone(),
        app.metrics.chain.clone(),
    )
    .expect("rpc client");
    workers_on(app, chain, rpc)
}

/// A scanner and a confirmer sharing `rpc`, as the supervision tree builds them.
pub(crate) fn workers_on(
    app: &TestApp,
    chain: &ChainSettings,
    rpc: ChainRpc,
) -> (Scanner, Confirmer) {
    let s = &app.state;
    let scanner = Scanner::new(
        chain.clone(),
        rpc.clone(),
        app.store.clone(),
        s.chain_status.clone(),
        app.metrics.chain.clone(),
        app.metrics.payments.clone(),
        s.log.clone(),
        86_400,
    );
    let confirmer = Confirmer::new(
        &chain.name,
        rpc,
        app.store.clone(),
        app.metrics.chain.clone(),
        app.metrics.payments.clone(),
        s.log.clone(),
        Duration::from_secs(1),
    )
    .with_status(s.chain_status.clone());
    (scanner, confirmer)
}

/// A fresh anvil with the two demo tokens deployed at the addresses the test chain config
/// names (anvil's first account, nonces 0 and 1), and a gateway without its actor tree.
pub(crate) async fn harness_on(
    anvil: Anvil,
    rpc_urls: Vec<String>,
    customize: impl FnOnce(&mut ChainSettings),
) -> Harness {
    // The same tests, with every signature from a separate `ctrip signer` and a gateway
    // holding no key, when asked for.
    let separate = std::env::var("CTRIP_TEST_SIGNER").as_deref() == Ok("process");
    harness_signed(anvil, rpc_urls, customize, separate).await
}

/// [`harness_on`], with a separate signer process when `separate`.
pub(crate) async fn harness_signed(
    anvil: Anvil,
    rpc_urls: Vec<String>,
    customize: impl FnOnce(&mut ChainSettings),
    separate: bool,
) -> Harness {
    let dev = DevChain::new(anvil.url());
    assert_eq!(
        dev.deploy_demo_token().await.expect("deploy"),
        TKN.parse::<Address>().expect("addr")
    );
    assert_eq!(
        dev.deploy_demo_token().await.expect("deploy"),
        USDC.parse::<Address>().expect("addr")
    );
    let mut chain = test_chain("devchain", 31337, &anvil.url());
    chain.rpc_urls = rpc_urls
        .into_iter()
        .map(|u| ctrip::config::RpcUrl::parse(&u).unwrap())
        .collect();
    customize(&mut chain);
    let c = chain.clone();
    let signer = if separate {
        Some(
            crate::signer::SignerProcess::start(
                std::slice::from_ref(&chain),
                &crate::signer::listed_treasuries(&chain.name),
            )
            .await,
        )
    } else {
        None
    };
    let socket = signer.as_ref().map(|s| s.socket.clone());
    let app = spawn_app_with(move |s| {
        s.chains = vec![c];
        if let Some(socket) = socket {
            s.signer.socket = Some(socket);
            s.wallet.mnemonic = ctrip::config::Secret::default();
        }
    })
    .await;
    let (scanner, confirmer) = workers(&app, &chain);
    Harness {
        signer,
        anvil,
        dev,
        app,
        scanner,
        confirmer,
    }
}

pub(crate) async fn harness() -> Harness {
    let anvil = Anvil::start(None).await.expect("anvil");
    let url = anvil.url();
    harness_on(anvil, vec![url], |_| {}).await
}

impl Harness {
    /// Scans until caught up with the head.
    pub async fn scan(&mut self) -> Vec<ScanReport> {
        let mut reports = Vec::new();
        for _ in 0..200 {
            let r = self.scanner.scan_once().await.expect("scan");
            reports.push(r);
            if r.caught_up {
                return reports;
            }
        }
        panic!("scanner never caught up");
    }

    pub async fn confirm(&mut self) {
        self.confirmer.tick_once().await.expect("confirmer tick");
    }

    pub async fn create(&self, body: Value) -> Value {
        let r = self.app.post_payment(&body).await;
        assert_eq!(r.status(), 201);
        r.json().await.expect("json")
    }

    pub async fn get(&self, p: &Value) -> Value {
        let id = p["id"].as_str().expect("id");
        self.app
            .get(&format!("/v1/payments/{id}"))
            .await
            .json()
            .await
            .expect("json")
    }

    pub async fn events(&self, p: &Value) -> Vec<(String, i32)> {
        let id = p["id"].as_str().expect("id");
        let c = self.app.store.client().await.expect("db");
        c.query(
            "SELECT type, sequence FROM events WHERE payment_id = $1::text::uuid ORDER BY sequence",
            &[&id],
        )
        .await
        .expect("events")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    }

    pub async fn sql(&self, q: &str, p: &Value) {
        let id = p["id"].as_str().expect("id");
        let c = self.app.store.client().await.expect("db");
        c.execute(q, &[&id]).await.expect("sql");
    }
}

pub(crate) fn address_of(p: &Value) -> Address {
    p["address"]
        .as_str()
        .expect("address")
        .parse()
        .expect("address")
}

pub(crate) fn evs(list: &[&str]) -> Vec<(String, i32)> {
    list.iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as i32 + 1))
        .collect()
}

#[tokio::test]
async fn native_payment_of_1e30_wei_confirms_after_exactly_n_blocks() {
    let mut h = harness().await;
    let p = h
        .create(json!({"chain": "devchain", "asset": "native", "amount": "1000000000000"}))
        .await;
    assert_eq!(p["amount_raw"], pow10(30).to_string());
    h.scan().await;
    h.dev
        .set_balance(ANVIL_PAYER, pow10(30) * U256::from(2u64))
        .await
        .expect("balance");
    let receipt = h
        .dev
        .pay_native(ANVIL_PAYER, address_of(&p), pow10(30))
        .await
        .expect("pay");
    let block = u64::from_str_radix(
        receipt["blockNumber"]
            .as_str()
            .unwrap_or("0x0")
            .trim_start_matches("0x"),
        16,
    )
    .unwrap_or(0);
    h.scan().await;
    let g = h.get(&p).await;
    assert_eq!(g["status"], "processing");
    assert_eq!(g["amount_received_raw"], pow10(30).to_string());
    assert_eq!(g["amount_received"], "1000000000000");
    assert_eq!(g["exception"], Value::Null);
    assert!(g["detected_at"].is_string());
    let t = &g["transfers"][0];
    assert_eq!(t["block_number"], block);
    assert_eq!(t["log_index"], Value::Null);
    assert_eq!(t["amount_raw"], pow10(30).to_string());
    assert_eq!(t["from"], ANVIL_PAYER);
    assert_eq!(t["tx_hash"], receipt["transactionHash"]);

    // confirmations = 3: depth 1 and 2 stay processing, depth 3 confirms.
    for depth in 1..=2 {
        h.confirm().await;
        let g = h.get(&p).await;
        assert_eq!(g["status"], "processing", "depth {depth}");
        assert_eq!(g["confirmations"], depth);
        h.dev.mine(1).await.expect("mine");
    }
    h.confirm().await;
    let g = h.get(&p).await;
    assert_eq!(g["status"], "confirmed");
    assert_eq!(g["confirmations"], 3);
    assert!(g["confirmed_at"].is_string());
    assert_eq!(g["amount_received_raw"], pow10(30).to_string());
    assert_eq!(
        h.events(&p).await,
        evs(&["payment.processing", "payment.confirmed"])
    );
    let history: Vec<&str> = g["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|x| x["to"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(history, ["pending", "processing", "confirmed"]);
}

#[tokio::test]
async fn erc20_payment_of_1e30_units_confirms() {
    let mut h = harness().await;
    let p = h.create(json!({"chain": "devchain", "asset": "TKN", "amount": "1000000000000", "confirmations": 2})).await;
    h.scan().await;
    let tkn: Address = TKN.parse().expect("addr");
    h.dev
        .mint(tkn, ANVIL_PAYER.parse().expect("addr"), pow10(30))
        .await
        .expect("mint");
    h.dev
        .pay_token(tkn, ANVIL_PAYER, address_of(&p), pow10(30))
        .await
        .expect("pay");
    h.scan().await;
    let g = h.get(&p).await;
    assert_eq!(g["status"], "processing");
    assert_eq!(g["amount_received_raw"], pow10(30).to_string());
    assert!(g["transfers"][0]["log_index"].is_u64());
    h.confirm().await;
    assert_eq!(h.get(&p).await["status"], "processing");
    h.dev.mine(1).await.expect("mine");
    h.confirm().await;
    let g = h.get(&p).await;
    assert_eq!(g["status"], "confirmed");
    assert_eq!(g["amount_received_raw"], pow10(30).to_string());
}

#[tokio::test]
async fn partial_overpaid_underpaid_late_and_wrong_token() {
    let mut h = harness().await;
    let tkn: Address = TKN.parse().expect("addr");
    let usdc: Address = USDC.parse().expect("addr");
    let payer: Address = ANVIL_PAYER.parse().expect("addr");
    h.dev.mint(tkn, payer, pow10(24)).await.expect("mint");
    h.dev.mint(usdc, payer, pow10(24)).await.expect("mint");
    let split = h
        .create(json!({"chain": "devchain", "asset": "native", "amount": "1"}))
        .await;
    let over = h
        .create(json!({"chain": "devchain", "asset": "TKN", "amount": "2"}))
        .await;
    let under = h
        .create(json!({"chain": "devchain", "asset": "native", "amount": "5"}))
        .await;
    let late = h
        .create(json!({"chain": "devchain", "asset": "native", "amount": "1"}))
        .await;
    let wrong = h
        .create(json!({"chain": "devchain", "asset": "TKN", "amount": "1"}))
        .await;
    h.scan().await;

    // Two transfers that together reach the amount.
    h.dev
        .pay_native(ANVIL_PAYER, address_of(&split), wei("400000000000000000"))
        .await
        .expect("pay");
    h.scan().await;
    let g = h.get(&split).await;
    assert_eq!(
        (g["status"].as_str(), g["amount_received"].as_str()),
        (Some("partially_paid"), Some("0.4"))
    );
    h.dev
        .pay_native(PAYER2, address_of(&split), wei("600000000000000000"))
        .await
        .expect("pay");
    h.scan().await;
    let g = h.get(&split).await;
    assert_eq!(
        (g["status"].as_str(), g["amount_received"].as_str()),
        (Some("processing"), Some("1"))
    );
    assert_eq!(g["transfers"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        h.events(&split).await,
        evs(&["payment.partially_paid", "payment.processing"])
    );

    // Overpayment.
    h.dev
        .pay_token(
            tkn,
            ANVIL_PAYER,
            address_of(&over),
            U256::from(3u64) * pow10(18),
        )
        .await
        .expect("pay");
    h.scan().await;
    let g = h.get(&over).await;
    assert_eq!(
        (g["status"].as_str(), g["exception"].as_str()),
        (Some("processing"), Some("overpaid"))
    );
    assert_eq!(g["amount_received"], "3");

    // Underpaid at expiry (the window is moved into the past rather than waited for).
    h.dev
        .pay_native(ANVIL_PAYER, address_of(&under), pow10(18))
        .await
        .expect("pay");
    h.scan().await;
    assert_eq!(h.get(&under).await["status"], "partially_paid");
    h.sql(
        "UPDATE payments SET expires_at = now() - interval '1 second' WHERE id = $1::text::uuid",
        &under,
    )
    .await;
    h.confirm().await;
    let g = h.get(&under).await;
    assert_eq!(
        (g["status"].as_str(), g["exception"].as_str()),
        (Some("expired"), Some("underpaid"))
    );
    assert_eq!(
        h.events(&under).await,
        evs(&["payment.partially_paid", "payment.expired"])
    );

    // Funds after expiry: recorded, flagged paid_late, with an event.
    h.sql(
        "UPDATE payments SET expires_at = now() - interval '1 second' WHERE id = $1::text::uuid",
        &late,
    )
    .await;
    h.confirm().await;
    let g = h.get(&late).await;
    assert_eq!(
        (g["status"].as_str(), g["exception"].as_str()),
        (Some("expired"), None)
    );
    h.dev
        .pay_native(ANVIL_PAYER, address_of(&late), pow10(18))
        .await
        .expect("pay");
    h.scan().await;
    let g = h.get(&late).await;
    assert_eq!(
        (g["status"].as_str(), g["exception"].as_str()),
        (Some("expired"), Some("paid_late"))
    );
    assert_eq!(g["amount_received"], "1");
    assert_eq!(
        h.events(&late).await,
        evs(&["payment.expired", "payment.late_funds"])
    );

    // Another token to a TKN payment's address: recorded, not counted.
    h.dev
        .pay_token(usdc, ANVIL_PAYER, address_of(&wrong), pow10(18))
        .await
        .expect("pay");
    h.scan().await;
    let g = h.get(&wrong).await;
    assert_eq!(g["status"], "pending");
    assert_eq!(g["amount_received_raw"], "0");
    let t = &g["transfers"][0];
    assert_eq!(t["counted"], false);
    assert_eq!(t["amount_raw"], pow10(18).to_string());
    assert!(h.events(&wrong).await.is_empty());
}

#[tokio::test]
async fn downtime_of_2000_blocks_is_backfilled_and_the_cursor_survives_restarts() {
    let mut h = harness().await;
    let tkn: Address = TKN.parse().expect("addr");
    h.dev
        .mint(tkn, ANVIL_PAYER.parse().expect("addr"), pow10(24))
        .await
        .expect("mint");
    let ps = [
        h.create(json!({"chain": "devchain", "asset": "native", "amount": "1"}))
            .await,
        h.create(json!({"chain": "devchain", "asset": "TKN", "amount": "7"}))
            .await,
        h.create(json!({"chain": "devchain", "asset": "native", "amount": "2"}))
            .await,
    ];
    h.scan().await;
    let cursor_before = h.dev.head().await.expect("head") + 1;

    // The gateway stops; the chain goes on.
    let db_url = h.app.db_url.clone();
    let key = h.app.api_key.clone();
    let chain = h.app.state.settings.chains[0].clone();
    drop(h.scanner);
    drop(h.confirmer);
    drop(h.app);
    h.dev.mine(700).await.expect("mine");
    h.dev
        .pay_native(ANVIL_PAYER, address_of(&ps[0]), pow10(18))
        .await
        .expect("pay");
    h.dev.mine(700).await.expect("mine");
    h.dev
        .pay_token(
            tkn,
            ANVIL_PAYER,
            address_of(&ps[1]),
            U256::from(7u64) * pow10(18),
        )
        .await
        .expect("pay");
    h.dev.mine(600).await.expect("mine");
    h.dev
        .pay_native(
            ANVIL_PAYER,
            address_of(&ps[2]),
            U256::from(2u64) * pow10(18),
        )
        .await
        .expect("pay");
    let head = h.dev.head().await.expect("head");
    assert!(head - cursor_before >= 2000);

    // It starts again on the same database.
    let c = chain.clone();
    let app = spawn_app_on(&db_url, move |s| s.chains = vec![c]).await;
    let client = app.store.client().await.expect("db");
    let cursor = ctrip::store::chain::cursor(&client, "devchain")
        .await
        .expect("cursor");
    assert_eq!(
        cursor,
        Some(cursor_before),
        "the cursor survived the restart"
    );
    let (mut scanner, _) = workers(&app, &chain);
    let mut scanned = Vec::new();
    loop {
        let r = scanner.scan_once().await.expect("scan");
        scanned.push(r.scanned_to.expect("scanned"));
        if r.caught_up {
            break;
        }
    }
    // Contiguous batches of at most 500 blocks, ending at the head.
    assert_eq!(scanned.last().copied(), Some(head));
    assert!(
        scanned
            .windows(2)
            .all(|w| w[1] > w[0] && w[1] - w[0] <= 500),
        "{scanned:?}"
    );
    assert_eq!(
        ctrip::store::chain::cursor(&client, "devchain")
            .await
            .expect("cursor"),
        Some(head + 1)
    );
    for p in &ps {
        let id = p["id"].as_str().expect("id");
        let g: Value = app
            .client
            .get(app.url(&format!("/v1/payments/{id}")))
            .bearer_auth(&key)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        assert_eq!(g["status"], "processing", "{g}");
    }
}

pub(crate) async fn raw_tx(dev: &DevChain, hash: &Value) -> String {
    dev.rpc("eth_getRawTransactionByHash", json!([hash]))
        .await
        .expect("raw tx")
        .as_str()
        .expect("hex")
        .to_string()
}

#[tokio::test]
async fn a_reorg_that_drops_a_counted_transfer_moves_the_payment_back() {
    let mut h = harness().await;
    let p = h
        .create(json!({"chain": "devchain", "asset": "native", "amount": "1"}))
        .await;
    h.scan().await;
    h.dev.mine(5).await.expect("mine");
    h.dev
        .pay_native(ANVIL_PAYER, address_of(&p), pow10(18))
        .await
        .expect("pay");
    h.scan().await;
    assert_eq!(h.get(&p).await["status"], "processing");
    // Replace the last two blocks with empty ones: the transfer is gone.
    h.dev
        .rpc("anvil_reorg", json!([2, []]))
        .await
        .expect("reorg");
    let reports = h.scan().await;
    assert!(reports.iter().any(|r| r.reorg_depth > 0), "{reports:?}");
    let g = h.get(&p).await;
    assert_eq!(g["status"], "pending");
    assert_eq!(g["amount_received_raw"], "0");
    assert_eq!(g["transfers"][0]["removed"], true);
    assert_eq!(
        h.events(&p).await,
        evs(&["payment.processing", "payment.reorged"])
    );
    // Depth is now plenty, yet nothing confirms a transfer that is not canonical.
    h.dev.mine(10).await.expect("mine");
    h.confirm().await;
    assert_eq!(h.get(&p).await["status"], "pending");
}

#[tokio::test]
async fn a_reorg_that_reincludes_the_transfer_keeps_it_counted_with_the_new_block_hash() {
    let mut h = harness().await;
    let p = h
        .create(json!({"chain": "devchain", "asset": "native", "amount": "1"}))
        .await;
    h.scan().await;
    h.dev.mine(5).await.expect("mine");
    let receipt = h
        .dev
        .pay_native(ANVIL_PAYER, address_of(&p), pow10(18))
        .await
        .expect("pay");
    let raw = raw_tx(&h.dev, &receipt["transactionHash"]).await;
    h.scan().await;
    let before = h.get(&p).await;
    assert_eq!(before["status"], "processing");
    // Rebuild the last 3 blocks with the same transaction in the first of them.
    h.dev
        .rpc("anvil_reorg", json!([3, [[raw, 0]]]))
        .await
        .expect("reorg");
    let reports = h.scan().await;
    assert!(reports.iter().any(|r| r.reorg_depth > 0), "{reports:?}");
    let g = h.get(&p).await;
    assert_eq!(g["status"], "processing");
    let t = &g["transfers"][0];
    assert_eq!(g["transfers"].as_array().map(Vec::len), Some(1));
    assert_eq!(t["removed"], false);
    assert_ne!(t["block_hash"], before["transfers"][0]["block_hash"]);
    let n = t["block_number"].as_u64().expect("n");
    let canonical = h
        .dev
        .rpc("eth_getBlockByNumber", json!([format!("0x{n:x}"), false]))
        .await
        .expect("block");
    assert_eq!(t["block_hash"], canonical["hash"]);
    // No flapping: the payment never left processing, so there was no event for the reorg.
    assert_eq!(h.events(&p).await, evs(&["payment.processing"]));
    h.dev.mine(3).await.expect("mine");
    h.confirm().await;
    assert_eq!(h.get(&p).await["status"], "confirmed");
}

#[tokio::test]
async fn the_confirmer_never_confirms_on_a_non_canonical_block() {
    let mut h = harness().await;
    let p = h
        .create(json!({"chain": "devchain", "asset": "native", "amount": "1", "confirmations": 2}))
        .await;
    h.scan().await;
    h.dev
        .pay_native(ANVIL_PAYER, address_of(&p), pow10(18))
        .await
        .expect("pay");
    h.scan().await;
    // The block is orphaned, and the chain grows past the required depth before the
    // scanner notices.
    h.dev
        .rpc("anvil_reorg", json!([1, []]))
        .await
        .expect("reorg");
    h.dev.mine(3).await.expect("mine");
    h.confirm().await;
    assert_eq!(h.get(&p).await["status"], "processing");
    h.scan().await;
    assert_eq!(h.get(&p).await["status"], "pending");
}

#[tokio::test]
async fn scanning_continues_on_the_other_endpoint_when_one_dies_mid_scan() {
    let anvil = Anvil::start(None).await.expect("anvil");
    let proxy = Proxy::start(format!("127.0.0.1:{}", anvil.port()).parse().expect("addr")).await;
    let direct = anvil.url();
    // The proxy is listed first, so it is preferred until it dies.
    let mut h = harness_on(anvil, vec![proxy.url(), direct], |c| {
        c.scan_batch_blocks = 300
    })
    .await;
    let p = h
        .create(json!({"chain": "devchain", "asset": "native", "amount": "1"}))
        .await;
    h.scanner.scan_once().await.expect("scan");
    h.dev.mine(1000).await.expect("mine");
    h.dev
        .pay_native(ANVIL_PAYER, address_of(&p), pow10(18))
        .await
        .expect("pay");
    h.dev.mine(500).await.expect("mine");
    // One batch through the proxy, then it dies.
    h.scanner.scan_once().await.expect("scan");
    drop(proxy);
    h.scan().await;
    assert_eq!(h.get(&p).await["status"], "processing");
    let (_, d) = h.app.health_detail().await;
    let rpc = d["checks"]["devchain.rpc:responseTime"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(rpc.len(), 2, "{d}");
    assert_eq!(rpc[0]["status"], "warn", "the dead endpoint shows: {d}");
    assert_eq!(rpc[1]["status"], "pass");
    assert!(d["checks"]["devchain.head:lag"][0]["observedValue"].is_u64());
    assert!(!d.to_string().contains("http://"));
    drop(h.anvil);
}

/// A JSON-RPC endpoint in front of anvil that reports a frozen head.
pub(crate) async fn stale_endpoint(target: String, frozen_head: u64) -> String {
    use warp::Filter;
    let client = reqwest::Client::new();
    let route = warp::post().and(warp::body::json()).then(move |req: Value| {
        let (client, target) = (client.clone(), target.clone());
        async move {
            if req["method"] == "eth_blockNumber" {
                return warp::reply::json(&json!({"jsonrpc": "2.0", "id": req["id"], "result": format!("0x{frozen_head:x}")}));
            }
            let v: Value = match client.post(&target).json(&req).send().await {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            warp::reply::json(&v)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(warp::serve(route).incoming(listener).run());
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn an_endpoint_serving_a_stale_head_is_avoided() {
    let anvil = Anvil::start(None).await.expect("anvil");
    let dev = DevChain::new(anvil.url());
    dev.mine(20).await.expect("mine");
    let stale = stale_endpoint(anvil.url(), 5).await;
    let mut chain = test_chain("devchain", 31337, &stale);
    chain.rpc_urls = vec![
        ctrip::config::RpcUrl::parse(&stale).unwrap(),
        ctrip::config::RpcUrl::parse(&anvil.url()).unwrap(),
    ];
    let c = chain.clone();
    let app = spawn_app_with(move |s| s.chains = vec![c]).await;
    let (mut scanner, _) = workers(&app, &chain);
    let p: Value = app.create_payment("1").await;
    dev.pay_native(ANVIL_PAYER, address_of(&p), pow10(18))
        .await
        .expect("pay");
    dev.mine(5).await.expect("mine");
    let head = dev.head().await.expect("head");
    loop {
        let r = scanner.scan_once().await.expect("scan");
        if r.caught_up {
            assert_eq!(r.scanned_to, Some(head));
            break;
        }
    }
    let g: Value = app
        .get(&format!("/v1/payments/{}", p["id"].as_str().unwrap_or("")))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(g["status"], "processing");
    let status = app.state.chain_status.get("devchain").expect("status");
    assert!(status.endpoints[0].lagging);
    assert!(!status.endpoints[1].lagging);
    let (_, d) = app.health_detail().await;
    let rpc = d["checks"]["devchain.rpc:responseTime"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(rpc[0]["status"], "warn");
    assert!(
        rpc[0]["output"].as_str().unwrap_or("").contains("lagging"),
        "{d}"
    );
    assert_eq!(rpc[1]["status"], "pass");
    assert_eq!(d["checks"]["devchain.head:lag"][0]["observedValue"], 0);
    // The stale endpoint was never asked for a block above its head.
    let text = app.metrics_text().await;
    assert!(text.contains("ctrip_rpc_requests_total{chain=\"devchain\",method=\"eth_getBlockByNumber\",outcome=\"ok\"}"));
}

/// A harness whose chain clock runs an hour behind the wall clock, so that a payment's
/// window can end between two blocks' timestamps and still lie in the past.
pub(crate) async fn past_harness() -> Harness {
    let ts = chrono::Utc::now().timestamp() - 3600;
    let anvil = Anvil::start_with(None, &["--timestamp".into(), ts.to_string()])
        .await
        .expect("anvil");
    let url = anvil.url();
    harness_on(anvil, vec![url], |_| {}).await
}

/// The head block's timestamp.
pub(crate) async fn head_time(dev: &DevChain) -> i64 {
    let b = dev
        .rpc("eth_getBlockByNumber", json!(["latest", false]))
        .await
        .expect("block");
    i64::from_str_radix(
        b["timestamp"]
            .as_str()
            .unwrap_or("0x0")
            .trim_start_matches("0x"),
        16,
    )
    .expect("timestamp")
}

/// Pays `p` natively in a block stamped `secs` after the head; returns that timestamp.
pub(crate) async fn pay_later(h: &Harness, p: &Value, secs: i64) -> i64 {
    let t = head_time(&h.dev).await + secs;
    h.dev
        .rpc("evm_setNextBlockTimestamp", json!([t]))
        .await
        .expect("timestamp");
    h.dev
        .pay_native(ANVIL_PAYER, address_of(p), pow10(18))
        .await
        .expect("pay");
    t
}

#[tokio::test]
async fn nothing_expires_while_the_scanner_lags_behind_the_head() {
    let mut h = past_harness().await;
    let p = h
        .create(json!({"chain": "devchain", "asset": "native", "amount": "1"}))
        .await;
    h.scan().await;
    // Paid in time, but the scanner has not seen it yet when the window ends (at the
    // payment block's timestamp, an hour ago by the wall clock).
    let paid_at = pay_later(&h, &p, 10).await;
    h.dev.mine(10).await.expect("mine");
    h.sql(
        &format!(
            "UPDATE payments SET expires_at = to_timestamp({paid_at}) WHERE id = $1::text::uuid"
        ),
        &p,
    )
    .await;
    h.confirm().await;
    assert_eq!(
        h.get(&p).await["status"],
        "pending",
        "expired while funds sat in unscanned blocks"
    );
    h.scan().await;
    let g = h.get(&p).await;
    assert_eq!(
        (g["status"].as_str(), g["exception"].as_str()),
        (Some("processing"), None)
    );
    assert_eq!(h.events(&p).await, evs(&["payment.processing"]));
}
