//! Sweeping confirmed funds to the treasury, against real anvil and PostgreSQL.

use std::time::Duration;

use alloy::primitives::{Address, U256};
use ctrip::chain::sweeper::Sweeper;
use ctrip::chain::ChainRpc;
use ctrip::devnet::{Anvil, ANVIL_PAYER};
use ctrip::worker::{Retryable, Work};
use serde_json::{json, Value};

use crate::chain::{address_of, harness_on, harness_signed, pow10, Harness};

const TREASURY: &str = "0x000000000000000000000000000000000000bEEF";

fn treasury() -> Address {
    TREASURY.parse().expect("address")
}

async fn swept_harness(customize: impl FnOnce(&mut ctrip::config::ChainSettings)) -> Harness {
    let anvil = Anvil::start(None).await.expect("anvil");
    let url = anvil.url();
    harness_on(anvil, vec![url], |c| {
        c.treasury = Some(treasury());
        c.confirmations = 1;
        customize(c);
    })
    .await
}

/// A harness sweeping to [`TREASURY`] whose every signature comes from a separate
/// `ctrip signer` process, on an anvil started with `args`.
async fn separately_signed(args: &[String]) -> Harness {
    let anvil = Anvil::start_with(None, args).await.expect("anvil");
    let url = anvil.url();
    harness_signed(
        anvil,
        vec![url],
        |c| {
            c.treasury = Some(treasury());
            c.confirmations = 1;
        },
        true,
    )
    .await
}

fn sweeper(h: &Harness) -> Sweeper {
    let chain = h.app.state.settings.chains[0].clone();
    let rpc = ChainRpc::new(
        &chain,
        Duration::from_secs(10),
        h.app.state.chain_status.clone(),
        h.app.metrics.chain.clone(),
    )
    .expect("rpc client");
    Sweeper::new(
        chain,
        rpc,
        h.app.store.clone(),
        h.app.signer.clone(),
        h.app.metrics.chain.clone(),
        h.app.state.log.clone(),
        Duration::from_secs(1),
    )
    .with_status(h.app.state.chain_status.clone())
}

async fn balance(h: &Harness, who: Address) -> U256 {
    let v = h
        .dev
        .rpc("eth_getBalance", json!([who, "latest"]))
        .await
        .expect("balance");
    U256::from_str_radix(v.as_str().expect("hex").trim_start_matches("0x"), 16).expect("hex")
}

async fn nonce(h: &Harness, who: Address) -> u64 {
    let v = h
        .dev
        .rpc("eth_getTransactionCount", json!([who, "latest"]))
        .await
        .expect("nonce");
    u64::from_str_radix(v.as_str().expect("hex").trim_start_matches("0x"), 16).expect("hex")
}

/// A native payment of `eth` (decimal, as the API takes it) = `wei`, paid and confirmed.
async fn confirmed_native(h: &mut Harness, eth: &str, wei: U256) -> Value {
    let p = h
        .create(json!({"chain": "devchain", "asset": "native", "amount": eth, "confirmations": 1}))
        .await;
    h.scan().await;
    h.dev
        .pay_native(ANVIL_PAYER, address_of(&p), wei)
        .await
        .expect("pay");
    h.scan().await;
    h.confirm().await;
    assert_eq!(h.get(&p).await["status"], "confirmed");
    p
}

async fn attempts(h: &Harness) -> Vec<(String, i64, String)> {
    let c = h.app.store.client().await.expect("db");
    c.query(
        "SELECT tx_hash, nonce, state FROM sweep_attempts ORDER BY created_at",
        &[],
    )
    .await
    .expect("attempts")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

#[tokio::test]
async fn a_native_payment_is_swept_self_paid_leaving_only_fee_change_and_is_announced() {
    let mut h = swept_harness(|_| {}).await;
    let paid = pow10(18);
    let p = confirmed_native(&mut h, "1", paid).await;
    let deposit = address_of(&p);
    assert_eq!(h.get(&p).await["settlement"]["status"], "unswept");

    let mut s = sweeper(&h);
    s.tick_once().await.expect("tick");
    assert_eq!(h.get(&p).await["settlement"]["status"], "sweeping");
    // Automine put it in a block; the next tick sees it one confirmation deep.
    s.tick_once().await.expect("tick");

    let g = h.get(&p).await;
    assert_eq!(g["settlement"]["status"], "swept", "{g}");
    let sent = attempts(&h).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(g["settlement"]["tx_hash"], sent[0].0.as_str());
    assert_eq!((sent[0].1, sent[0].2.as_str()), (0, "confirmed"));
    assert_eq!(
        h.events(&p).await.last().map(|e| e.0.clone()),
        Some("payment.swept".to_string())
    );

    // The treasury got everything but the fee reserve; what stays on the deposit address
    // is the unspent part of that reserve, less than the reserve itself.
    let received = balance(&h, treasury()).await;
    let left = balance(&h, deposit).await;
    assert!(received > U256::ZERO && received < paid);
    let reserve = paid - received;
    assert!(left < reserve, "left {left}, reserve {reserve}");
    assert!(reserve <= U256::from(21_000u64) * U256::from(500_000_000_000u64));
    // A self-paid native address is never delegated: it still has no code.
    let code = h
        .dev
        .rpc("eth_getCode", json!([deposit, "latest"]))
        .await
        .expect("code");
    assert_eq!(code, "0x");

    // Nothing more to do: no second sweep.
    s.tick_once().await.expect("tick");
    assert_eq!(attempts(&h).await.len(), 1);
    assert_eq!(nonce(&h, deposit).await, 1);
    // What it cost and how long it took are reported.
    let text = h.app.metrics_text().await;
    let fees = crate::helpers::metric(
        &text,
        "ctrip_sweep_fees_wei_total{chain=\"devchain\",strategy=\"self_paid\"}",
    )
    .expect("fees");
    assert!(fees > 0.0 && fees < 21_000.0 * 500e9, "{fees}");
    assert_eq!(
        crate::helpers::metric(
            &text,
            "ctrip_sweep_latency_seconds_count{chain=\"devchain\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        crate::helpers::metric(
            &text,
            "ctrip_unswept_value{asset=\"ETH\",chain=\"devchain\"}"
        ),
        Some(0.0)
    );
}

#[tokio::test]
async fn a_sweep_stored_before_a_crash_is_sent_once_from_its_stored_bytes() {
    let mut h = swept_harness(|_| {}).await;
    let p = confirmed_native(&mut h, "1", pow10(18)).await;
    let deposit = address_of(&p);

    // The first process signs and commits, then dies before broadcasting.
    let first = sweeper(&h);
    assert_eq!(first.plan_once().await.expect("plan"), 1);
    drop(first);
    let stored = attempts(&h).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].2, "signed");
    assert_eq!(nonce(&h, deposit).await, 0, "nothing was broadcast");

    // After the restart the stored bytes go out; no second sweep is signed.
    let mut second = sweeper(&h);
    second.tick_once().await.expect("tick");
    second.tick_once().await.expect("tick");
    let after = attempts(&h).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(
        after[0].0, stored[0].0,
        "the same transaction, not a new one"
    );
    assert_eq!(after[0].2, "confirmed");
    assert_eq!(nonce(&h, deposit).await, 1);
    assert_eq!(h.get(&p).await["settlement"]["status"], "swept");
}

#[tokio::test]
async fn a_sweep_broadcast_before_a_crash_is_recognised_and_confirmed_once() {
    let mut h = swept_harness(|_| {}).await;
    let p = confirmed_native(&mut h, "1", pow10(18)).await;

    // Signed, committed and broadcast, but the process died before recording the send.
    let first = sweeper(&h);
    assert_eq!(first.plan_once().await.expect("plan"), 1);
    drop(first);
    let c = h.app.store.client().await.expect("db");
    let raw: Vec<u8> = c
        .query_one("SELECT raw_tx FROM sweep_attempts", &[])
        .await
        .expect("raw")
        .get(0);
    drop(c);
    h.dev
        .rpc(
            "eth_sendRawTransaction",
            json!([format!("0x{}", hex::encode(&raw))]),
        )
        .await
        .expect("broadcast");

    let mut second = sweeper(&h);
    second.tick_once().await.expect("tick");
    second.tick_once().await.expect("tick");
    let after = attempts(&h).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].2, "confirmed");
    assert_eq!(
        h.events(&p)
            .await
            .iter()
            .filter(|e| e.0 == "payment.swept")
            .count(),
        1
    );
}

#[tokio::test]
async fn dust_waits_with_its_reason_and_is_swept_once_fees_fall() {
    let mut h = swept_harness(|c| c.sweep.fee_multiple = 10).await;
    // Base fee 100 gwei: the fee reserve is 21,000 × (2 × 100 gwei + tip) ≈ 0.0042 ETH,
    // more than a tenth of 0.01 ETH.
    h.dev
        .rpc("anvil_setNextBlockBaseFeePerGas", json!(["0x174876e800"]))
        .await
        .expect("base fee");
    h.dev.mine(1).await.expect("mine");
    let p = confirmed_native(&mut h, "0.01", pow10(16)).await;
    let mut s = sweeper(&h);
    s.tick_once().await.expect("tick");
    let g = h.get(&p).await;
    assert_eq!(g["settlement"]["status"], "skipped", "{g}");
    assert!(
        g["settlement"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("dust")),
        "{g}"
    );
    assert!(attempts(&h).await.is_empty());
    let text = h.app.metrics_text().await;
    assert_eq!(
        crate::helpers::metric(
            &text,
            "ctrip_unswept_value{asset=\"ETH\",chain=\"devchain\"}"
        ),
        Some(1e16)
    );

    // Fees fall: the same funds are now worth sweeping.
    h.dev
        .rpc("anvil_setNextBlockBaseFeePerGas", json!(["0x3b9aca00"]))
        .await
        .expect("base fee");
    h.dev.mine(12).await.expect("mine");
    s.tick_once().await.expect("tick");
    s.tick_once().await.expect("tick");
    let g = h.get(&p).await;
    assert_eq!(g["settlement"]["status"], "swept", "{g}");
    assert_eq!(g["settlement"]["reason"], Value::Null);
}

#[tokio::test]
async fn the_gas_tank_has_its_own_key_and_its_balance_is_reported() {
    let h = swept_harness(|_| {}).await;
    let tank = h
        .app
        .signer
        .address(ctrip::wallet::KeyRef::GasTank)
        .await
        .expect("tank");
    h.dev
        .set_balance(&tank.to_checksum(None), pow10(18))
        .await
        .expect("fund");
    let mut s = sweeper(&h);
    s.tick_once().await.expect("tick");
    let text = h.app.metrics_text().await;
    assert_eq!(
        crate::helpers::metric(&text, "ctrip_gas_tank_balance_wei{chain=\"devchain\"}"),
        Some(1e18)
    );
    let (code, detail) = h.app.health_detail().await;
    assert_eq!(code, 200);
    let tank = &detail["checks"]["devchain.gasTank:balance"][0];
    assert_eq!(tank["observedValue"], "1000000000000000000", "{detail}");
    let backlog = &detail["checks"]["devchain.sweeper:backlog"][0];
    assert_eq!(backlog["status"], "pass", "{detail}");
    assert_eq!(backlog["observedValue"], 0);
}

#[tokio::test]
async fn a_stuck_sweep_is_replaced_with_both_fees_an_eighth_higher_and_only_the_replacement_lands()
{
    let mut h = swept_harness(|_| {}).await;
    let p = confirmed_native(&mut h, "1", pow10(18)).await;
    h.dev
        .rpc("evm_setAutomine", json!([false]))
        .await
        .expect("automine off");
    let mut s = sweeper(&h);
    s.tick_once().await.expect("tick");
    let first = attempts(&h).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].2, "broadcast");

    // No block comes; the attempt grows old (its clock is the database's, moved back here
    // instead of waiting).
    let c = h.app.store.client().await.expect("db");
    c.execute(
        "UPDATE sweep_attempts SET created_at = now() - interval '1 hour'",
        &[],
    )
    .await
    .expect("age");
    s.tick_once().await.expect("tick");
    let both = attempts(&h).await;
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!(both[0].1, both[1].1, "same nonce");
    assert_eq!(
        (both[0].2.as_str(), both[1].2.as_str()),
        ("replaced", "broadcast")
    );
    let fees = c
        .query(
            "SELECT max_fee_per_gas::text, max_priority_fee_per_gas::text FROM sweep_attempts ORDER BY created_at",
            &[],
        )
        .await
        .expect("fees");
    let num = |r: &tokio_postgres::Row, i: usize| -> u128 {
        r.get::<_, String>(i).parse().expect("number")
    };
    let (old, new) = (&fees[0], &fees[1]);
    assert!(num(new, 0) * 8 >= num(old, 0) * 9, "fee cap +12.5 %");
    assert!(num(new, 1) * 8 >= num(old, 1) * 9, "tip +12.5 %");
    drop(c);

    h.dev.mine(1).await.expect("mine");
    s.tick_once().await.expect("tick");
    let done = attempts(&h).await;
    assert_eq!(
        (done[0].2.as_str(), done[1].2.as_str()),
        ("replaced", "confirmed")
    );
    let receipt = |hash: String| {
        let dev = &h.dev;
        async move {
            dev.rpc("eth_getTransactionReceipt", json!([hash]))
                .await
                .expect("receipt")
        }
    };
    assert_eq!(receipt(done[0].0.clone()).await, Value::Null);
    assert_ne!(receipt(done[1].0.clone()).await, Value::Null);
    let g = h.get(&p).await;
    assert_eq!(g["settlement"]["status"], "swept");
    assert_eq!(g["settlement"]["tx_hash"], done[1].0.as_str());
}

#[tokio::test]
async fn a_dropped_sweep_is_sent_again_from_its_stored_bytes() {
    let mut h = swept_harness(|_| {}).await;
    let p = confirmed_native(&mut h, "1", pow10(18)).await;
    h.dev
        .rpc("evm_setAutomine", json!([false]))
        .await
        .expect("automine off");
    let mut s = sweeper(&h);
    s.tick_once().await.expect("tick");
    let sent = attempts(&h).await;
    h.dev
        .rpc("anvil_dropTransaction", json!([sent[0].0]))
        .await
        .expect("drop");
    // The next tick finds no receipt and re-sends the same bytes; the block mines them.
    s.tick_once().await.expect("tick");
    h.dev.mine(1).await.expect("mine");
    s.tick_once().await.expect("tick");
    let done = attempts(&h).await;
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0, sent[0].0);
    assert_eq!(done[0].2, "confirmed");
    assert_eq!(h.get(&p).await["settlement"]["status"], "swept");
    let text = h.app.metrics_text().await;
    assert_eq!(
        crate::helpers::metric(&text, "ctrip_sweep_drops_total{chain=\"devchain\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_sweep_whose_block_is_reorged_out_is_sent_again_and_announced_once() {
    let mut h = swept_harness(|c| c.confirmations = 2).await;
    let p = confirmed_native(&mut h, "1", pow10(18)).await;
    let mut s = sweeper(&h);
    s.tick_once().await.expect("tick");
    s.tick_once().await.expect("tick");
    assert_eq!(attempts(&h).await[0].2, "mined");
    // The sweep's block is replaced by an empty one before it is deep enough.
    h.dev
        .rpc("anvil_reorg", json!([1, []]))
        .await
        .expect("reorg");
    s.tick_once().await.expect("tick");
    h.dev.mine(2).await.expect("mine");
    s.tick_once().await.expect("tick");
    s.tick_once().await.expect("tick");
    let done = attempts(&h).await;
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].2, "confirmed");
    assert_eq!(h.get(&p).await["settlement"]["status"], "swept");
    assert_eq!(
        h.events(&p)
            .await
            .iter()
            .filter(|e| e.0 == "payment.swept")
            .count(),
        1
    );
}

async fn token_balance(h: &Harness, token: &str, who: Address) -> U256 {
    let data = format!("0x70a08231{:0>64}", hex::encode(who.as_slice()));
    let v = h
        .dev
        .rpc("eth_call", json!([{"to": token, "data": data}, "latest"]))
        .await
        .expect("call");
    U256::from_str_radix(v.as_str().expect("hex").trim_start_matches("0x"), 16).expect("hex")
}

/// A harness on an anvil of `hardfork`, sweeping to [`TREASURY`].
async fn hardfork_harness(hardfork: &str, confirmations: u32) -> Harness {
    let anvil = Anvil::start_with(None, &["--hardfork".into(), hardfork.into()])
        .await
        .expect("anvil");
    let url = anvil.url();
    harness_on(anvil, vec![url], |c| {
        c.treasury = Some(treasury());
        c.confirmations = confirmations;
    })
    .await
}

/// Gives the gas tank 1 ETH.
async fn fund_tank(h: &Harness) {
    let tank = gas_tank(h).await;
    h.dev
        .set_balance(&tank.to_checksum(None), pow10(18))
        .await
        .expect("fund the tank");
}

async fn gas_tank(h: &Harness) -> Address {
    h.app
        .signer
        .address(ctrip::wallet::KeyRef::GasTank)
        .await
        .expect("tank")
}

/// A TKN payment of 1,000 TKN, paid and confirmed.
async fn confirmed_token(h: &mut Harness) -> Value {
    let amount = pow10(21);
    let p = h
        .create(json!({"chain": "devchain", "asset": "TKN", "amount": "1000", "confirmations": 1}))
        .await;
    h.scan().await;
    let tkn: Address = crate::helpers::TKN.parse().expect("address");
    h.dev
        .mint(tkn, ANVIL_PAYER.parse().expect("payer"), amount)
        .await
        .expect("mint");
    h.dev
        .pay_token(tkn, ANVIL_PAYER, address_of(&p), amount)
        .await
        .expect("pay");
    h.scan().await;
    h.confirm().await;
    assert_eq!(h.get(&p).await["status"], "confirmed");
    p
}

async fn purposes(h: &Harness) -> Vec<(String, String)> {
    let c = h.app.store.client().await.expect("db");
    c.query(
        "SELECT purpose, state FROM sweep_attempts ORDER BY created_at",
        &[],
    )
    .await
    .expect("attempts")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test]
async fn on_a_chain_without_eip7702_a_token_payment_is_swept_by_seeding_and_the_transfer_waits_for_the_seed(
) {
    let mut h = hardfork_harness("cancun", 2).await;
    let p = confirmed_token(&mut h).await;
    let deposit = address_of(&p);
    fund_tank(&h).await;

    let mut s = sweeper(&h);
    s.tick_once().await.expect("tick");
    // Only the seed is signed: the transfer waits until the seed is confirmed.
    assert_eq!(
        purposes(&h).await,
        vec![("seed".to_string(), "broadcast".to_string())]
    );
    assert_eq!(h.get(&p).await["settlement"]["status"], "sweeping");
    // Mined (automine) but one block deep of the two required: still no transfer.
    s.tick_once().await.expect("tick");
    assert_eq!(purposes(&h).await.len(), 1);
    h.dev.mine(1).await.expect("mine");
    s.tick_once().await.expect("tick");
    let after = purposes(&h).await;
    assert_eq!(after[0], ("seed".to_string(), "confirmed".to_string()));
    assert_eq!(after[1].0, "sweep");
    h.dev.mine(2).await.expect("mine");
    s.tick_once().await.expect("tick");

    let g = h.get(&p).await;
    assert_eq!(g["settlement"]["status"], "swept", "{g}");
    // The seed stays confirmed: it is not a replaced attempt of the transfer.
    assert_eq!(
        purposes(&h).await,
        vec![
            ("seed".to_string(), "confirmed".to_string()),
            ("sweep".to_string(), "confirmed".to_string())
        ]
    );
    assert_eq!(
        token_balance(&h, crate::helpers::TKN, treasury()).await,
        pow10(21)
    );
    assert_eq!(
        token_balance(&h, crate::helpers::TKN, deposit).await,
        U256::ZERO
    );
    // The seed covered the transfer at the fee cap; what is left is its unspent part.
    let left = balance(&h, deposit).await;
    assert!(left < pow10(16), "{left}");
    assert_eq!(
        h.events(&p)
            .await
            .iter()
            .filter(|e| e.0 == "payment.swept")
            .count(),
        1
    );
}

#[tokio::test]
async fn an_empty_gas_tank_makes_no_attempt_and_fails_nothing_and_a_refill_resumes() {
    let mut h = swept_harness(|_| {}).await;
    let p = confirmed_token(&mut h).await;
    let mut s = sweeper(&h);
    s.tick_once().await.expect("an empty tank is not an error");
    assert!(purposes(&h).await.is_empty());
    let g = h.get(&p).await;
    assert_eq!(g["settlement"]["status"], "skipped", "{g}");
    assert!(g["settlement"]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("gas tank")));
    let text = h.app.metrics_text().await;
    assert_eq!(
        crate::helpers::metric(&text, "ctrip_gas_tank_balance_wei{chain=\"devchain\"}"),
        Some(0.0)
    );
    // A runway of zero: what CtripGasTankRunwayLow alerts on.
    assert_eq!(
        crate::helpers::metric(&text, "ctrip_gas_tank_runway_sweeps{chain=\"devchain\"}"),
        Some(0.0)
    );

    let tank = gas_tank(&h).await;
    h.dev
        .set_balance(&tank.to_checksum(None), pow10(18))
        .await
        .expect("refill");
    for _ in 0..3 {
        s.tick_once().await.expect("tick");
    }
    assert_eq!(h.get(&p).await["settlement"]["status"], "swept");
}

#[tokio::test]
async fn funds_that_arrive_after_a_sweep_are_swept_too() {
    let mut h = swept_harness(|_| {}).await;
    let p = confirmed_native(&mut h, "1", pow10(18)).await;
    let mut s = sweeper(&h);
    s.tick_once().await.expect("tick");
    s.tick_once().await.expect("tick");
    assert_eq!(h.get(&p).await["settlement"]["status"], "swept");
    let before = balance(&h, treasury()).await;

    // The payer sends the same amount again to the already swept address.
    h.dev
        .pay_native(ANVIL_PAYER, address_of(&p), pow10(18))
        .await
        .expect("pay again");
    h.scan().await;
    assert_eq!(h.get(&p).await["settlement"]["status"], "unswept");
    s.tick_once().await.expect("tick");
    s.tick_once().await.expect("tick");
    let g = h.get(&p).await;
    assert_eq!(g["settlement"]["status"], "swept", "{g}");
    assert!(balance(&h, treasury()).await > before + pow10(17) * U256::from(9u64));
    let swept: Vec<_> = h
        .events(&p)
        .await
        .into_iter()
        .filter(|e| e.0 == "payment.swept")
        .collect();
    assert_eq!(swept.len(), 2);
    assert_eq!(attempts(&h).await.len(), 2);
}

#[tokio::test]
async fn an_expired_payment_paid_late_is_swept() {
    let mut h = swept_harness(|_| {}).await;
    let p = h
        .create(json!({"chain": "devchain", "asset": "native", "amount": "1", "expires_in": 60}))
        .await;
    h.scan().await;
    h.sql(
        "UPDATE payments SET expires_at = now() - interval '1 minute', created_at = now() - interval '2 minutes' WHERE id = $1::text::uuid",
        &p,
    )
    .await;
    h.confirm().await;
    assert_eq!(h.get(&p).await["status"], "expired");
    h.dev
        .pay_native(ANVIL_PAYER, address_of(&p), pow10(18))
        .await
        .expect("pay late");
    h.scan().await;
    h.confirm().await;
    let mut s = sweeper(&h);
    s.tick_once().await.expect("tick");
    s.tick_once().await.expect("tick");
    let g = h.get(&p).await;
    assert_eq!(g["settlement"]["status"], "swept", "{g}");
}

/// `ctrip serve` crashes (aborts: no cleanup, like kill -9) at `point` of its first sweep,
/// then is started again: the sweep is on chain exactly once, with no nonce skipped.
async fn sweep_survives_a_crash_at(point: &str) {
    let anvil = Anvil::start(None).await.expect("anvil");
    let dev = ctrip::devnet::DevChain::new(anvil.url());
    let db = crate::helpers::create_database(&crate::helpers::maintenance_url()).await;
    let dir = std::env::temp_dir().join(format!("ctrip-crash-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
bind = "127.0.0.1:0"
[telemetry]
access_log_level = "off"
[supervision]
restart_backoff_min_ms = 100
tick_retry_min_ms = 50
tick_retry_max_ms = 500
[[chains]]
name = "devchain"
chain_id = 31337
rpc_urls = ["{}"]
confirmations = 1
block_time_ms = 250
start_block = 0
treasury = "{TREASURY}"
"#,
            anvil.url()
        ),
    )
    .expect("config");
    let mut gateway = crate::chaos::Gateway {
        config,
        db: db.clone(),
        child: None,
        base: String::new(),
        env: vec![("CTRIP_TEST_CRASH".into(), point.into())],
        lines: Default::default(),
    };
    gateway.start().await;
    let store =
        ctrip::store::Store::new(&crate::helpers::base_settings(&db).database).expect("store");
    // Account 0 of the test mnemonic holds anvil's funded accounts: a placeholder takes it.
    ctrip::ops::create_merchant(&store, "placeholder")
        .await
        .expect("merchant");
    let merchant = ctrip::ops::create_merchant(&store, "shop")
        .await
        .expect("merchant");
    let client = reqwest::Client::new();
    let p: Value = client
        .post(format!("{}/v1/payments", gateway.base))
        .bearer_auth(&merchant.api_key)
        .json(&json!({"chain": "devchain", "asset": "native", "amount": "1", "confirmations": 1}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let deposit = address_of(&p);
    dev.pay_native(ANVIL_PAYER, deposit, pow10(18))
        .await
        .expect("pay");

    // The gateway confirms the payment, signs its sweep and dies at the crash point.
    let mut child = gateway.child.take().expect("running");
    let status = tokio::time::timeout(Duration::from_secs(90), child.wait())
        .await
        .expect("the gateway reaches the crash point")
        .expect("wait");
    assert!(!status.success(), "{status:?}");
    let c = store.client().await.expect("db");
    let stored: Vec<(String, String)> = c
        .query("SELECT tx_hash, state FROM sweep_attempts", &[])
        .await
        .expect("attempts")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(
        stored[0].1, "signed",
        "the crash came before the send was recorded"
    );
    let sent_before_crash = u64::from(point == "sweep_sent");
    let count = |who: Address| {
        let dev = &dev;
        async move {
            let v = dev
                .rpc("eth_getTransactionCount", json!([who, "latest"]))
                .await
                .expect("nonce");
            u64::from_str_radix(v.as_str().expect("hex").trim_start_matches("0x"), 16).expect("hex")
        }
    };
    assert_eq!(count(deposit).await, sent_before_crash);

    // After the restart the stored bytes go out (or are recognised as out): once.
    gateway.env.clear();
    gateway.start().await;
    let id = p["id"].as_str().expect("id").to_string();
    let base = gateway.base.clone();
    let key = merchant.api_key.clone();
    let swept =
        crate::helpers::eventually(90, "the sweep to be confirmed after the restart", || {
            let (client, base, key, id) = (client.clone(), base.clone(), key.clone(), id.clone());
            async move {
                let p: Value = client
                    .get(format!("{base}/v1/payments/{id}"))
                    .bearer_auth(&key)
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                (p["settlement"]["status"] == "swept").then_some(p)
            }
        })
        .await;
    assert_eq!(swept["settlement"]["tx_hash"], stored[0].0.as_str());
    let after: i64 = c
        .query_one("SELECT count(*) FROM sweep_attempts", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(after, 1, "nothing was signed twice");
    assert_eq!(count(deposit).await, 1, "one transaction, no nonce skipped");
    gateway.stop(true).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_gateway_killed_between_committing_a_sweep_and_sending_it_sends_it_once_after_restart() {
    sweep_survives_a_crash_at("sweep_committed").await;
}

#[tokio::test]
async fn a_gateway_killed_right_after_sending_a_sweep_confirms_it_once_after_restart() {
    sweep_survives_a_crash_at("sweep_sent").await;
}

/// A TKN payment of 1,000 TKN paid to its own address and confirmed, on `h`.
async fn paid_token(h: &mut Harness) -> Value {
    confirmed_token(h).await
}

#[tokio::test]
async fn three_token_payments_are_swept_in_one_eip7702_transaction_with_no_gas_on_the_deposits() {
    let mut h = hardfork_harness("prague", 1).await;
    fund_tank(&h).await;
    // A real merchant endpoint, to see payment.swept arrive.
    let rx = crate::webhooks::Receiver::start(Duration::ZERO).await;
    crate::webhooks::create_endpoint(&h.app, json!({"url": rx.url})).await;
    let mut ps = Vec::new();
    for _ in 0..3 {
        ps.push(paid_token(&mut h).await);
    }
    let mut s = sweeper(&h);
    // The first tick deploys the delegate; the next ones sweep all three in one go.
    for _ in 0..4 {
        s.tick_once().await.expect("tick");
    }
    let delegate = ctrip::chain::sweeper::delegate_address(treasury());
    let mut hashes = Vec::new();
    for p in &ps {
        let g = h.get(p).await;
        assert_eq!(g["settlement"]["status"], "swept", "{g}");
        hashes.push(
            g["settlement"]["tx_hash"]
                .as_str()
                .expect("hash")
                .to_string(),
        );
        let deposit = address_of(p);
        assert_eq!(
            balance(&h, deposit).await,
            U256::ZERO,
            "no gas ever on a deposit"
        );
        let code = h
            .dev
            .rpc("eth_getCode", json!([deposit, "latest"]))
            .await
            .expect("code");
        assert_eq!(
            code.as_str().expect("hex").to_lowercase(),
            format!("0xef0100{}", hex::encode(delegate.as_slice()))
        );
        assert!(h.events(p).await.iter().any(|e| e.0 == "payment.swept"));
    }
    hashes.dedup();
    assert_eq!(hashes.len(), 1, "one transaction for the three");
    let mut d = crate::webhooks::dispatcher(&h.app);
    for _ in 0..4 {
        d.dispatch_once().await.expect("dispatch");
    }
    let mut swept: Vec<String> = rx
        .received()
        .iter()
        .map(|r| r.json())
        .filter(|e| e["type"] == "payment.swept")
        .map(|e| e["data"]["id"].as_str().unwrap_or("").to_string())
        .collect();
    swept.sort();
    let mut ids: Vec<String> = ps
        .iter()
        .map(|p| p["id"].as_str().expect("id").to_string())
        .collect();
    ids.sort();
    assert_eq!(
        swept, ids,
        "the endpoint received payment.swept for each payment"
    );
    // The tank's records agree with the chain, and its runway is known now.
    let text = h.app.metrics_text().await;
    assert_eq!(
        crate::helpers::metric(&text, "ctrip_gas_tank_nonce_drift{chain=\"devchain\"}"),
        Some(0.0)
    );
    let runway = crate::helpers::metric(&text, "ctrip_gas_tank_runway_sweeps{chain=\"devchain\"}")
        .expect("runway");
    assert!(runway.is_finite() && runway > 1.0, "{runway}");
    let receipt = h
        .dev
        .rpc("eth_getTransactionReceipt", json!([hashes[0]]))
        .await
        .expect("receipt");
    assert_eq!(receipt["type"], "0x4");
    assert_eq!(
        token_balance(&h, crate::helpers::TKN, treasury()).await,
        pow10(21) * U256::from(3u64)
    );

    // More tokens to an address already delegated: swept again with no new
    // authorization (a plain type-2 call to the delegate).
    let first = address_of(&ps[0]);
    let tkn: Address = crate::helpers::TKN.parse().expect("address");
    h.dev
        .mint(tkn, ANVIL_PAYER.parse().expect("payer"), pow10(21))
        .await
        .expect("mint");
    h.dev
        .pay_token(tkn, ANVIL_PAYER, first, pow10(21))
        .await
        .expect("pay again");
    h.scan().await;
    for _ in 0..3 {
        s.tick_once().await.expect("tick");
    }
    let g = h.get(&ps[0]).await;
    assert_eq!(g["settlement"]["status"], "swept", "{g}");
    let again = g["settlement"]["tx_hash"]
        .as_str()
        .expect("hash")
        .to_string();
    assert_ne!(again, hashes[0]);
    let receipt = h
        .dev
        .rpc("eth_getTransactionReceipt", json!([again]))
        .await
        .expect("receipt");
    assert_eq!(receipt["type"], "0x2", "no authorization the second time");
    assert_eq!(balance(&h, first).await, U256::ZERO);
    assert_eq!(
        token_balance(&h, crate::helpers::TKN, treasury()).await,
        pow10(21) * U256::from(4u64)
    );
}

#[tokio::test]
async fn the_audit_finds_funds_left_on_any_issued_address_and_requeues_them() {
    let mut h = swept_harness(|_| {}).await;
    let p = confirmed_native(&mut h, "1", pow10(18)).await;
    let mut s = sweeper(&h);
    s.tick_once().await.expect("tick");
    s.tick_once().await.expect("tick");
    assert_eq!(h.get(&p).await["settlement"]["status"], "swept");
    let chain = h.app.state.settings.chains[0].clone();
    let rpc = ChainRpc::new(
        &chain,
        Duration::from_secs(10),
        h.app.state.chain_status.clone(),
        h.app.metrics.chain.clone(),
    )
    .expect("rpc");

    // Funds sent to the swept address that no scan has seen yet (or that came by a way
    // the scanner does not watch) are still found.
    h.dev
        .set_balance(&address_of(&p).to_checksum(None), pow10(18))
        .await
        .expect("funds");
    let found = ctrip::chain::sweeper::audit(&chain, &rpc, &h.app.store)
        .await
        .expect("audit");
    let native: Vec<_> = found
        .iter()
        .filter(|f| f.address == address_of(&p) && f.asset == "native")
        .collect();
    assert_eq!(native.len(), 1, "{found:?}");
    assert_eq!(native[0].amount, pow10(18));
    assert!(native[0].own_asset);

    let c = h.app.store.client().await.expect("db");
    let id: uuid::Uuid = p["id"].as_str().expect("id").parse().expect("uuid");
    assert!(ctrip::store::sweeps::requeue(&c, id)
        .await
        .expect("requeue"));
    drop(c);
    s.tick_once().await.expect("tick");
    s.tick_once().await.expect("tick");
    assert_eq!(h.get(&p).await["settlement"]["status"], "swept");
    assert_eq!(attempts(&h).await.len(), 2);
}

#[tokio::test]
async fn a_merchant_sets_its_own_treasury_and_its_sweeps_go_there() {
    let mut h = swept_harness(|_| {}).await;
    let own: Address = "0x000000000000000000000000000000000000cafE"
        .parse()
        .expect("address");
    let put = |body: Value, chain: &str| {
        h.app
            .client
            .put(h.app.url(&format!("/v1/treasuries/{chain}")))
            .bearer_auth(&h.app.api_key)
            .json(&body)
            .send()
    };
    let e = crate::helpers::expect_error(
        put(json!({"address": "0x12"}), "devchain")
            .await
            .expect("put"),
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(e["param"], "address");
    let e = crate::helpers::expect_error(
        put(json!({"address": Address::ZERO}), "devchain")
            .await
            .expect("put"),
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(e["param"], "address");
    crate::helpers::expect_error(
        put(json!({"address": own}), "nochain").await.expect("put"),
        404,
        "not_found",
    )
    .await;
    let r = put(json!({"address": own}), "devchain").await.expect("put");
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.expect("json");
    assert_eq!(t["source"], "merchant");
    assert_eq!(t["address"], own.to_checksum(None));
    let list: Value = h
        .app
        .get("/v1/treasuries")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["data"][0]["address"], own.to_checksum(None));

    let p = confirmed_native(&mut h, "1", pow10(18)).await;
    let mut s = sweeper(&h);
    s.tick_once().await.expect("tick");
    s.tick_once().await.expect("tick");
    assert_eq!(h.get(&p).await["settlement"]["status"], "swept");
    assert!(balance(&h, own).await > pow10(17) * U256::from(9u64));
    assert_eq!(balance(&h, treasury()).await, U256::ZERO);

    // Back to the chain's treasury.
    let r = h
        .app
        .client
        .delete(h.app.url("/v1/treasuries/devchain"))
        .bearer_auth(&h.app.api_key)
        .send()
        .await
        .expect("delete");
    let t: Value = r.json().await.expect("json");
    assert_eq!(t["source"], "chain");
    assert_eq!(t["address"], treasury().to_checksum(None));
}

#[tokio::test]
async fn on_an_op_stack_chain_the_l1_data_fee_is_reserved_too() {
    let mut h = swept_harness(|c| c.sweep.l1_fee = ctrip::config::L1FeeMode::Op).await;
    // anvil has no GasPriceOracle: a stand-in that charges 0.001 ETH per transaction.
    let oracle = include_str!("../../contracts/MockGasPriceOracle.bin").trim();
    h.dev
        .rpc(
            "anvil_setCode",
            json!([
                "0x420000000000000000000000000000000000000F",
                format!("0x{oracle}")
            ]),
        )
        .await
        .expect("oracle");
    let paid = pow10(18);
    let p = confirmed_native(&mut h, "1", paid).await;
    let mut s = sweeper(&h);
    s.tick_once().await.expect("tick");
    s.tick_once().await.expect("tick");
    assert_eq!(h.get(&p).await["settlement"]["status"], "swept");
    // The reserve covers gas and the L1 fee; anvil charges no L1 fee, so it stays behind.
    let left = balance(&h, address_of(&p)).await;
    assert!(left >= pow10(15), "{left}");
    assert!(balance(&h, treasury()).await <= paid - pow10(15));
}

#[tokio::test]
async fn a_stuck_seed_is_replaced_with_higher_fees_and_the_sweep_completes() {
    let mut h = hardfork_harness("cancun", 1).await;
    let p = confirmed_token(&mut h).await;
    fund_tank(&h).await;
    h.dev
        .rpc("evm_setAutomine", json!([false]))
        .await
        .expect("automine off");
    let mut s = sweeper(&h);
    s.tick_once().await.expect("tick");
    assert_eq!(
        purposes(&h).await,
        vec![("seed".to_string(), "broadcast".to_string())]
    );
    let c = h.app.store.client().await.expect("db");
    c.execute(
        "UPDATE sweep_attempts SET created_at = now() - interval '1 hour'",
        &[],
    )
    .await
    .expect("age");
    s.tick_once().await.expect("tick");
    assert_eq!(
        purposes(&h).await,
        vec![
            ("seed".to_string(), "replaced".to_string()),
            ("seed".to_string(), "broadcast".to_string())
        ]
    );
    let fees = c
        .query(
            "SELECT max_fee_per_gas::text, max_priority_fee_per_gas::text, nonce FROM sweep_attempts ORDER BY created_at",
            &[],
        )
        .await
        .expect("fees");
    let num = |r: &tokio_postgres::Row, i: usize| -> u128 {
        r.get::<_, String>(i).parse().expect("number")
    };
    assert!(num(&fees[1], 0) * 8 >= num(&fees[0], 0) * 9);
    assert!(num(&fees[1], 1) * 8 >= num(&fees[0], 1) * 9);
    assert_eq!(fees[0].get::<_, i64>(2), fees[1].get::<_, i64>(2));
    drop(c);
    // The replacement lands; the transfer follows and lands too.
    for _ in 0..3 {
        h.dev.mine(1).await.expect("mine");
        s.tick_once().await.expect("tick");
    }
    let g = h.get(&p).await;
    assert_eq!(g["settlement"]["status"], "swept", "{g}");
    assert_eq!(
        token_balance(&h, crate::helpers::TKN, treasury()).await,
        pow10(21)
    );
}

#[tokio::test]
async fn token_funds_below_the_token_minimum_wait_with_their_reason() {
    let mut h = swept_harness(|c| {
        c.tokens[0].min_sweep_raw = Some(pow10(21) * U256::from(2u64));
    })
    .await;
    let p = confirmed_token(&mut h).await;
    fund_tank(&h).await;
    let mut s = sweeper(&h);
    // (The first tick deploys the EIP-7702 delegate; the next ones judge the funds.)
    for _ in 0..3 {
        s.tick_once().await.expect("tick");
    }
    let g = h.get(&p).await;
    assert_eq!(g["settlement"]["status"], "skipped", "{g}");
    assert!(g["settlement"]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("min_sweep_raw")));
    assert!(!purposes(&h)
        .await
        .iter()
        .any(|(purpose, _)| purpose == "sweep"));
}

#[tokio::test]
async fn a_stuck_eip7702_batch_is_replaced_with_higher_fees_and_lands() {
    let mut h = hardfork_harness("prague", 1).await;
    fund_tank(&h).await;
    let ps = vec![paid_token(&mut h).await, paid_token(&mut h).await];
    let mut s = sweeper(&h);
    // The delegate is deployed with automine on; then blocks stop, and the batch is sent.
    s.tick_once().await.expect("tick");
    h.dev
        .rpc("evm_setAutomine", json!([false]))
        .await
        .expect("automine off");
    s.tick_once().await.expect("tick");
    let batch = |h: &Harness| {
        let store = h.app.store.clone();
        async move {
            let c = store.client().await.expect("db");
            c.query(
                "SELECT state FROM sweep_attempts WHERE purpose = 'sweep' ORDER BY created_at",
                &[],
            )
            .await
            .expect("attempts")
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(batch(&h).await, vec!["broadcast".to_string()]);
    let c = h.app.store.client().await.expect("db");
    c.execute(
        "UPDATE sweep_attempts SET created_at = now() - interval '1 hour' WHERE purpose = 'sweep'",
        &[],
    )
    .await
    .expect("age");
    drop(c);
    s.tick_once().await.expect("tick");
    assert_eq!(
        batch(&h).await,
        vec!["replaced".to_string(), "broadcast".to_string()]
    );
    h.dev.mine(1).await.expect("mine");
    s.tick_once().await.expect("tick");
    for p in &ps {
        let g = h.get(p).await;
        assert_eq!(g["settlement"]["status"], "swept", "{g}");
        assert_eq!(balance(&h, address_of(p)).await, U256::ZERO);
    }
    assert_eq!(
        batch(&h).await,
        vec!["replaced".to_string(), "confirmed".to_string()]
    );
    assert_eq!(
        token_balance(&h, crate::helpers::TKN, treasury()).await,
        pow10(21) * U256::from(2u64)
    );
}

#[tokio::test]
async fn sweeps_survive_the_separate_signer_being_killed_mid_way_and_nothing_is_signed_twice() {
    let mut h = separately_signed(&["--hardfork".into(), "cancun".into()]).await;
    let native = confirmed_native(&mut h, "1", pow10(18)).await;
    let token = confirmed_token(&mut h).await;
    fund_tank(&h).await;
    let mut s = sweeper(&h);

    // The signer dies before anything is signed: the tick fails as retryable, and nothing
    // is half-stored (no sweep, no attempt, no nonce taken).
    h.signer.as_mut().expect("separate signer").kill().await;
    let e = s.tick_once().await.expect_err("no signer, no sweep");
    assert!(e.is_retryable(), "{e}");
    assert!(attempts(&h).await.is_empty());
    let c = h.app.store.client().await.expect("db");
    let sweeps: i64 = c
        .query_one("SELECT count(*) FROM sweeps", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(sweeps, 0);

    // Back: the native sweep and the token's seed are signed, stored and sent.
    h.signer.as_mut().expect("separate signer").restart().await;
    s.tick_once().await.expect("tick");
    assert_eq!(
        purposes(&h)
            .await
            .iter()
            .map(|p| p.0.as_str())
            .collect::<Vec<_>>(),
        vec!["sweep", "seed"]
    );
    // Killed again mid-sweep: the seed is confirmed, the token transfer not yet signed.
    h.signer.as_mut().expect("separate signer").kill().await;
    let mut failed = false;
    for _ in 0..3 {
        if let Err(e) = s.tick_once().await {
            assert!(e.is_retryable(), "{e}");
            failed = true;
        }
    }
    assert!(
        failed,
        "the transfer could not be signed without the signer"
    );
    assert_eq!(
        purposes(&h).await.len(),
        2,
        "nothing signed while it was away"
    );
    h.signer.as_mut().expect("separate signer").restart().await;
    for _ in 0..4 {
        s.tick_once().await.expect("tick");
        h.dev.mine(1).await.expect("mine");
    }
    assert_eq!(h.get(&native).await["settlement"]["status"], "swept");
    assert_eq!(h.get(&token).await["settlement"]["status"], "swept");
    assert_eq!(
        token_balance(&h, crate::helpers::TKN, treasury()).await,
        pow10(21)
    );
    // One attempt per transaction, each signed once, with no nonce gap on any sender.
    let sent = purposes(&h).await;
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(sent.iter().all(|p| p.1 == "confirmed"), "{sent:?}");
    let tank = gas_tank(&h).await;
    assert_eq!(nonce(&h, tank).await, 1, "one seed from the tank");
    assert_eq!(nonce(&h, address_of(&native)).await, 1);
    assert_eq!(nonce(&h, address_of(&token)).await, 1);
    let signer = h.signer.as_ref().expect("separate signer");
    let signed = signer
        .audit_lines()
        .iter()
        .filter(|e| e["op"] == "sign_transaction" && e["decision"] == "signed")
        .count();
    assert_eq!(signed, 3, "each transaction signed exactly once");
}

#[tokio::test]
async fn a_sweep_the_separate_signer_refuses_waits_with_its_reason_and_the_others_go_on() {
    let mut h = separately_signed(&[]).await;
    // The merchant points its treasury at an address the signer was never told about
    // (as a compromised API could).
    let unlisted: Address = "0x000000000000000000000000000000000000dEaD"
        .parse()
        .expect("address");
    let r = h
        .app
        .client
        .put(h.app.url("/v1/treasuries/devchain"))
        .bearer_auth(&h.app.api_key)
        .json(&json!({"address": unlisted}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    let refused = confirmed_native(&mut h, "1", pow10(18)).await;
    // Another merchant's payment, to the chain's treasury.
    let other = ctrip::ops::create_merchant(&h.app.store, "other")
        .await
        .expect("merchant");
    let r = h
        .app
        .post_payment_as(
            &other.api_key,
            &json!({"chain": "devchain", "asset": "native", "amount": "1", "confirmations": 1}),
            None,
        )
        .await;
    assert_eq!(r.status(), 201);
    let fine: Value = r.json().await.expect("json");
    h.scan().await;
    h.dev
        .pay_native(ANVIL_PAYER, address_of(&fine), pow10(18))
        .await
        .expect("pay");
    h.scan().await;
    h.confirm().await;

    let mut s = sweeper(&h);
    s.tick_once()
        .await
        .expect("a refusal does not fail the tick");
    s.tick_once().await.expect("tick");
    let g: Value = h
        .app
        .client
        .get(h.app.url(&format!(
            "/v1/payments/{}",
            fine["id"].as_str().expect("id")
        )))
        .bearer_auth(&other.api_key)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(g["settlement"]["status"], "swept", "{g}");
    let g = h.get(&refused).await;
    assert_eq!(g["settlement"]["status"], "skipped", "{g}");
    assert!(
        g["settlement"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("the signer refused this sweep"),
        "{g}"
    );
    assert_eq!(
        balance(&h, unlisted).await,
        U256::ZERO,
        "nothing reached it"
    );
    let audit = h.signer.as_ref().expect("signer").audit_lines();
    assert!(audit.iter().any(|e| e["decision"] == "refused"
        && e["reason"]
            .as_str()
            .unwrap_or("")
            .contains("not a treasury")));
}
