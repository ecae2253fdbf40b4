//! Money-path integrity on real anvil and real PostgreSQL: a lagging node is not a reorg,
//! closed payments stay accountable, reorgs are rolled back by transaction, lateness is
//! decided by block time, cancel waits for the scanner, throttled endpoints back off and
//! the chain's workers share one RPC client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ctrip::chain::scanner::Scanner;
use ctrip::chain::ChainRpc;
use ctrip::devnet::{Anvil, ANVIL_PAYER};
use ctrip::worker::Work;
use serde_json::{json, Value};

use crate::chain::{
    address_of, evs, harness, harness_on, past_harness, pay_later, pow10, raw_tx, stale_endpoint,
    Harness,
};
use crate::helpers::{expect_error, metric};
use crate::proxy::Proxy;

/// A scanner over the harness's chain with its own late-funds window.
fn scanner_with_window(h: &Harness, window: u64) -> Scanner {
    let s = &h.app.state;
    let chain = s.settings.chains[0].clone();
    let rpc = ChainRpc::new(
        &chain,
        Duration::from_secs(10),
        s.chain_status.clone(),
        h.app.metrics.chain.clone(),
    )
    .expect("rpc client");
    Scanner::new(
        chain,
        rpc,
        h.app.store.clone(),
        s.chain_status.clone(),
        h.app.metrics.chain.clone(),
        h.app.metrics.payments.clone(),
        s.log.clone(),
        window,
    )
}

async fn scan_with(scanner: &mut Scanner) {
    for _ in 0..200 {
        if scanner.scan_once().await.expect("scan").caught_up {
            return;
        }
    }
    panic!("scanner never caught up");
}

#[tokio::test]
async fn a_failover_to_a_node_behind_the_scanner_is_not_taken_for_a_reorg() {
    let anvil = Anvil::start(None).await.expect("anvil");
    let proxy = Proxy::start(format!("127.0.0.1:{}", anvil.port()).parse().expect("addr")).await;
    let direct = anvil.url();
    // The second endpoint answers from a node that is 30 blocks behind once the leader dies.
    let h = harness_on(anvil, vec![proxy.url()], |_| {}).await;
    h.dev.mine(40).await.expect("mine");
    let frozen = h.dev.head().await.expect("head") - 30;
    let stale = stale_endpoint(direct, frozen).await;
    let mut chain = h.app.state.settings.chains[0].clone();
    chain.rpc_urls = vec![
        ctrip::config::RpcUrl::parse(&proxy.url()).unwrap(),
        ctrip::config::RpcUrl::parse(&stale).unwrap(),
    ];
    chain.max_head_lag_blocks = 1000;
    let s = &h.app.state;
    let rpc = ChainRpc::new(
        &chain,
        Duration::from_secs(10),
        s.chain_status.clone(),
        h.app.metrics.chain.clone(),
    )
    .expect("rpc client");
    let mut scanner = Scanner::new(
        chain,
        rpc.clone(),
        h.app.store.clone(),
        s.chain_status.clone(),
        h.app.metrics.chain.clone(),
        h.app.metrics.payments.clone(),
        s.log.clone(),
        86_400,
    );
    let p = h
        .create(json!({"chain": "devchain", "asset": "native", "amount": "1"}))
        .await;
    h.dev
        .pay_native(ANVIL_PAYER, address_of(&p), pow10(18))
        .await
        .expect("pay");
    scan_with(&mut scanner).await;
    assert_eq!(h.get(&p).await["status"], "processing");
    let head = h.dev.head().await.expect("head");

    // The leading endpoint dies; the only one answering is behind the scanned head.
    drop(proxy);
    for _ in 0..3 {
        let r = scanner.scan_once().await.expect("scan");
        assert!(r.waiting_for_nodes, "{r:?}");
        assert_eq!(r.reorg_depth, 0);
        assert_eq!(r.scanned_to, Some(head));
    }
    assert_eq!(rpc.best_seen(), head, "the best head never goes down");
    let g = h.get(&p).await;
    assert_eq!(g["status"], "processing");
    assert_eq!(g["transfers"][0]["removed"], false);
    assert_eq!(h.events(&p).await, evs(&["payment.processing"]));
    let (_, d) = h.app.health_detail().await;
    let lag = &d["checks"]["devchain.head:lag"][0];
    assert_eq!(lag["status"], "warn", "{d}");
    assert!(
        lag["output"]
            .as_str()
            .unwrap_or("")
            .contains("behind the scanner"),
        "{d}"
    );
}

#[tokio::test]
async fn funds_after_confirmation_and_after_cancel_are_recorded_and_announced() {
    let mut h = harness().await;
    let confirmed = h
        .create(json!({"chain": "devchain", "asset": "native", "amount": "1", "confirmations": 1}))
        .await;
    let canceled = h
        .create(json!({"chain": "devchain", "asset": "native", "amount": "1"}))
        .await;
    h.dev
        .pay_native(ANVIL_PAYER, address_of(&confirmed), pow10(18))
        .await
        .expect("pay");
    h.scan().await;
    h.confirm().await;
    assert_eq!(h.get(&confirmed).await["status"], "confirmed");
    let id = canceled["id"].as_str().expect("id");
    let r = h.app.post(&format!("/v1/payments/{id}/cancel")).await;
    assert_eq!(r.status(), 200);

    // The customer pays twice, and another pays after the cancel.
    h.dev
        .pay_native(ANVIL_PAYER, address_of(&confirmed), pow10(18))
        .await
        .expect("pay");
    h.dev
        .pay_native(ANVIL_PAYER, address_of(&canceled), pow10(17))
        .await
        .expect("pay");
    h.scan().await;
    h.confirm().await;

    let g = h.get(&confirmed).await;
    assert_eq!(
        (g["status"].as_str(), g["exception"].as_str()),
        (Some("confirmed"), Some("overpaid"))
    );
    assert_eq!(g["amount_received"], "2");
    assert_eq!(g["transfers"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        h.events(&confirmed).await,
        evs(&[
            "payment.processing",
            "payment.confirmed",
            "payment.late_funds"
        ])
    );
    let g = h.get(&canceled).await;
    assert_eq!(
        (g["status"].as_str(), g["exception"].as_str()),
        (Some("canceled"), Some("paid_late"))
    );
    assert_eq!(g["amount_received"], "0.1");
    assert_eq!(
        h.events(&canceled).await,
        evs(&["payment.canceled", "payment.late_funds"])
    );
}

/// A native payment of 1 needing one confirmation, paid and confirmed through `scanner`;
/// returns it and the raw signed payment transaction.
async fn confirmed_payment(h: &mut Harness, scanner: &mut Scanner) -> (Value, String) {
    let p = h
        .create(json!({"chain": "devchain", "asset": "native", "amount": "1", "confirmations": 1}))
        .await;
    scan_with(scanner).await;
    let receipt = h
        .dev
        .pay_native(ANVIL_PAYER, address_of(&p), pow10(18))
        .await
        .expect("pay");
    let raw = raw_tx(&h.dev, &receipt["transactionHash"]).await;
    scan_with(scanner).await;
    h.confirm().await;
    assert_eq!(h.get(&p).await["status"], "confirmed");
    (p, raw)
}

#[tokio::test]
async fn a_reorg_reincluding_a_confirmed_payments_transfer_keeps_it_counted() {
    let mut h = harness().await;
    // Outside the late-funds window, so only the reorg re-check can restore the transfer.
    let mut scanner = scanner_with_window(&h, 0);
    let (p, raw) = confirmed_payment(&mut h, &mut scanner).await;
    let before = h.get(&p).await;

    // A one-block reorg that re-includes the very same transaction.
    h.dev
        .rpc("anvil_reorg", json!([1, [[raw, 0]]]))
        .await
        .expect("reorg");
    scan_with(&mut scanner).await;
    h.confirm().await;
    let g = h.get(&p).await;
    assert_eq!(
        (g["status"].as_str(), g["exception"].as_str()),
        (Some("confirmed"), None)
    );
    assert_eq!(g["amount_received"], "1");
    assert_eq!(g["transfers"][0]["removed"], false);
    assert_ne!(
        g["transfers"][0]["block_hash"],
        before["transfers"][0]["block_hash"]
    );
    assert_eq!(
        h.events(&p).await,
        evs(&["payment.processing", "payment.confirmed"])
    );
    let text = h.app.metrics_text().await;
    assert_eq!(
        metric(&text, "ctrip_payments_reversed{chain=\"devchain\"}"),
        Some(0.0)
    );
}

#[tokio::test]
async fn confirmed_funds_that_a_reorg_really_takes_away_are_a_critical_condition() {
    let mut h = harness().await;
    let mut scanner = scanner_with_window(&h, 0);
    let (p, _) = confirmed_payment(&mut h, &mut scanner).await;

    h.dev
        .rpc("anvil_reorg", json!([1, []]))
        .await
        .expect("reorg");
    scan_with(&mut scanner).await;
    h.confirm().await;
    let g = h.get(&p).await;
    assert_eq!(
        (g["status"].as_str(), g["exception"].as_str()),
        (Some("confirmed"), Some("underpaid"))
    );
    assert_eq!(g["amount_received_raw"], "0");
    assert_eq!(g["transfers"][0]["removed"], true);
    assert_eq!(
        h.events(&p).await,
        evs(&["payment.processing", "payment.confirmed", "payment.reorged"])
    );
    let text = h.app.metrics_text().await;
    assert_eq!(
        metric(&text, "ctrip_payments_reversed{chain=\"devchain\"}"),
        Some(1.0)
    );
    let (code, d) = h.app.health_detail().await;
    assert_eq!(
        code, 200,
        "a reversed payment warns; only the database fails"
    );
    let check = &d["checks"]["devchain.payments:reversed"][0];
    assert_eq!(check["status"], "warn", "{d}");
    assert_eq!(check["observedValue"], 1);
}

#[tokio::test]
async fn cancel_is_refused_while_the_scanner_lags_behind_the_head() {
    let anvil = Anvil::start(None).await.expect("anvil");
    let url = anvil.url();
    let mut h = harness_on(anvil, vec![url], |c| c.scan_batch_blocks = 2).await;
    let p = h
        .create(json!({"chain": "devchain", "asset": "native", "amount": "1"}))
        .await;
    h.scan().await;
    h.dev.mine(5).await.expect("mine");
    h.dev
        .pay_native(ANVIL_PAYER, address_of(&p), pow10(18))
        .await
        .expect("pay");
    // One small batch: the scanner now knows the head and is behind it.
    let r = h.scanner.scan_once().await.expect("scan");
    assert!(!r.caught_up);
    let id = p["id"].as_str().expect("id");
    let r = h.app.post(&format!("/v1/payments/{id}/cancel")).await;
    let err = expect_error(r, 409, "conflict").await;
    assert!(
        err["message"]
            .as_str()
            .unwrap_or("")
            .contains("not scanned"),
        "{err}"
    );
    // Once scanned, the funds are there and the payment cannot be canceled at all.
    h.scan().await;
    assert_eq!(h.get(&p).await["status"], "processing");
    let r = h.app.post(&format!("/v1/payments/{id}/cancel")).await;
    expect_error(r, 409, "conflict").await;
    // An unpaid payment on a scanned chain can be.
    let q = h
        .create(json!({"chain": "devchain", "asset": "native", "amount": "1"}))
        .await;
    let qid = q["id"].as_str().expect("id");
    let r = h.app.post(&format!("/v1/payments/{qid}/cancel")).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn lateness_is_decided_by_the_block_timestamp_not_by_scan_time() {
    let mut h = past_harness().await;
    let p = h
        .create(json!({"chain": "devchain", "asset": "native", "amount": "1"}))
        .await;
    h.scan().await;
    // Paid 10 s (chain time) before the window ends; the scanner trails the head by one
    // block when the confirmer runs.
    let paid_at = pay_later(&h, &p, 10).await;
    h.sql(
        &format!(
            "UPDATE payments SET expires_at = to_timestamp({}) WHERE id = $1::text::uuid",
            paid_at + 10
        ),
        &p,
    )
    .await;
    h.confirm().await;
    assert_eq!(h.get(&p).await["status"], "pending");
    h.scan().await;
    let g = h.get(&p).await;
    assert_eq!(
        (g["status"].as_str(), g["exception"].as_str()),
        (Some("processing"), None)
    );

    // A payment whose window ended before the block that paid it is late, however soon
    // the scanner saw it.
    let q = h
        .create(json!({"chain": "devchain", "asset": "native", "amount": "1"}))
        .await;
    h.scan().await;
    let t = crate::chain::head_time(&h.dev).await;
    h.sql(
        &format!("UPDATE payments SET expires_at = to_timestamp({t}) WHERE id = $1::text::uuid"),
        &q,
    )
    .await;
    h.confirm().await;
    assert_eq!(h.get(&q).await["status"], "expired");
    pay_later(&h, &q, 1).await;
    h.scan().await;
    let g = h.get(&q).await;
    assert_eq!(
        (g["status"].as_str(), g["exception"].as_str()),
        (Some("expired"), Some("paid_late"))
    );
}

/// A JSON-RPC endpoint in front of `target` that throttles every `eth_getLogs` (answering
/// like Infura does), counting them.
async fn throttling_endpoint(target: String, http_429: bool) -> (String, Arc<AtomicUsize>) {
    use warp::Filter;
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let client = reqwest::Client::new();
    let route = warp::post()
        .and(warp::body::json())
        .then(move |req: Value| {
            let (client, target, seen) = (client.clone(), target.clone(), seen.clone());
            async move {
                if req["method"] == "eth_getLogs" {
                    seen.fetch_add(1, Ordering::SeqCst);
                    if http_429 {
                        return warp::reply::with_status(
                            warp::reply::json(&json!({"error": "too many requests"})),
                            warp::http::StatusCode::TOO_MANY_REQUESTS,
                        );
                    }
                    return warp::reply::with_status(
                        warp::reply::json(&json!({"jsonrpc": "2.0", "id": req["id"],
                            "error": {"code": -32005, "message": "daily request count exceeded, request rate limited"}})),
                        warp::http::StatusCode::OK,
                    );
                }
                let v: Value = match client.post(&target).json(&req).send().await {
                    Ok(r) => r.json().await.unwrap_or(Value::Null),
                    Err(_) => Value::Null,
                };
                warp::reply::with_status(warp::reply::json(&v), warp::http::StatusCode::OK)
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (format!("http://127.0.0.1:{port}"), count)
}

async fn throttled_scan(http_429: bool) {
    let anvil = Anvil::start(None).await.expect("anvil");
    let direct = anvil.url();
    let (throttling, count) = throttling_endpoint(direct.clone(), http_429).await;
    // The throttling endpoint is preferred (listed first) until it throttles.
    let mut h = harness_on(anvil, vec![throttling, direct], |_| {}).await;
    let p = h
        .create(json!({"chain": "devchain", "asset": "native", "amount": "1"}))
        .await;
    h.dev.mine(200).await.expect("mine");
    h.dev
        .pay_native(ANVIL_PAYER, address_of(&p), pow10(18))
        .await
        .expect("pay");
    h.scan().await;
    assert_eq!(h.get(&p).await["status"], "processing");
    // Throttled once, then avoided: never split into more, smaller requests.
    assert_eq!(count.load(Ordering::SeqCst), 1);
    let text = h.app.metrics_text().await;
    assert_eq!(
        metric(
            &text,
            "ctrip_rpc_requests_total{chain=\"devchain\",method=\"eth_getLogs\",outcome=\"rate_limited\"}"
        ),
        Some(1.0),
        "{text}"
    );
    let status = h.app.state.chain_status.get("devchain").expect("status");
    assert_eq!(status.endpoints[0].consecutive_failures, 1);
}

#[tokio::test]
async fn a_rate_limit_error_backs_the_endpoint_off_instead_of_splitting_the_range() {
    throttled_scan(false).await;
}

#[tokio::test]
async fn http_429_backs_the_endpoint_off() {
    throttled_scan(true).await;
}

#[tokio::test]
async fn the_chain_workers_share_one_head_refresh() {
    let mut h = harness().await;
    let s = &h.app.state;
    let chain = s.settings.chains[0].clone();
    let rpc = ChainRpc::new(
        &chain,
        Duration::from_secs(10),
        s.chain_status.clone(),
        h.app.metrics.chain.clone(),
    )
    .expect("rpc client")
    .with_head_ttl(Duration::from_secs(3600));
    let (mut scanner, mut confirmer) = crate::chain::workers_on(&h.app, &chain, rpc.clone());
    assert!(rpc.same_client(&rpc.clone()));
    let series =
        "ctrip_rpc_requests_total{chain=\"devchain\",method=\"eth_blockNumber\",outcome=\"ok\"}";
    let before = metric(&h.app.metrics_text().await, series).unwrap_or(0.0);
    scanner.tick_once().await.expect("scan");
    confirmer.tick_once().await.expect("confirm");
    scanner.tick_once().await.expect("scan");
    let after = metric(&h.app.metrics_text().await, series).unwrap_or(0.0);
    assert_eq!(
        after - before,
        1.0,
        "one eth_blockNumber for the chain's workers"
    );
    // The harness's own scanner still refreshes (its client has no head cache).
    h.scan().await;
}
