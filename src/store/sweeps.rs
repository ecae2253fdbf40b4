//! Sweeps, their items and attempts, and the nonce of every address we send from.
//!
//! An attempt is committed with its raw signed bytes before anything is broadcast: after a
//! crash the same bytes are sent again, never a second transaction signed.

use alloy::primitives::{Address, B256, U256};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::payments::{self, lower_hex};
use super::StoreError;
use crate::domain::Payment;
use crate::telemetry::trace::current_traceparent;

/// A confirmed payment whose funds wait on its deposit address.
#[derive(Debug, Clone)]
pub struct Sweepable {
    /// Payment.
    pub payment_id: Uuid,
    /// The token contract; `None` for the native asset.
    pub asset: Option<Address>,
    /// The deposit address.
    pub address: Address,
    /// The merchant's BIP-44 account (for the deposit key).
    pub account_index: u32,
    /// The payment's derivation index (for the deposit key).
    pub derivation_index: u32,
    /// Why it waits, if it was deferred before.
    pub reason: Option<String>,
    /// How long ago the payment was confirmed.
    pub confirmed_for: std::time::Duration,
    /// The merchant's own treasury on the chain, if it set one.
    pub treasury: Option<Address>,
}

/// Closed payments on `chain` holding funds that are neither swept nor in an active
/// sweep, oldest first: confirmed ones, and expired or canceled ones that were paid late
/// (their funds are ours to account for too).
pub async fn sweepable(
    c: &impl GenericClient,
    chain: &str,
    limit: i64,
) -> Result<Vec<Sweepable>, StoreError> {
    super::timed("sweeps.sweepable", async move {
    let stmt = c
        .prepare_cached(
            "SELECT p.id, p.address, m.account_index, p.derivation_index, p.settlement_reason, \
               COALESCE(EXTRACT(EPOCH FROM now() - COALESCE(p.confirmed_at, p.transitioned_at))::float8, 0), \
               p.asset_contract, mt.address \
             FROM payments p JOIN merchants m ON m.id = p.merchant_id \
             LEFT JOIN merchant_treasuries mt ON mt.merchant_id = p.merchant_id AND mt.chain = p.chain \
             WHERE p.chain = $1 AND p.status IN ('confirmed', 'expired', 'canceled') \
               AND p.amount_received_raw > 0 AND p.settlement_status IN ('unswept', 'skipped') \
               AND NOT EXISTS (SELECT 1 FROM sweep_items i WHERE i.active AND i.chain = p.chain \
                               AND i.address = p.address \
                               AND i.asset = COALESCE(p.asset_contract, 'native')) \
             ORDER BY COALESCE(p.confirmed_at, p.transitioned_at), p.id LIMIT $2",
        )
        .await?;
    let rows = c.query(&stmt, &[&chain, &limit]).await?;
    rows.iter()
        .map(|r| {
            let contract: Option<String> = r.get(6);
            let own: Option<String> = r.get(7);
            let address: String = r.get(1);
            let account: i32 = r.get(2);
            let index: i32 = r.get(3);
            Ok(Sweepable {
                payment_id: r.get(0),
                asset: contract
                    .map(|c| c.parse().map_err(|_| StoreError::Corrupt("payments")))
                    .transpose()?,
                address: address
                    .parse()
                    .map_err(|_| StoreError::Corrupt("payments"))?,
                account_index: u32::try_from(account)
                    .map_err(|_| StoreError::Corrupt("merchants"))?,
                derivation_index: u32::try_from(index)
                    .map_err(|_| StoreError::Corrupt("payments"))?,
                reason: r.get(4),
                confirmed_for: std::time::Duration::from_secs_f64(r.get::<_, f64>(5).max(0.0)),
                treasury: own
                    .map(|a| {
                        a.parse()
                            .map_err(|_| StoreError::Corrupt("merchant_treasuries"))
                    })
                    .transpose()?,
            })
        })
        .collect()
    })
    .await
}

/// Defers a payment's sweep, saying why (`skipped` until a later check lets it through).
pub async fn defer(
    c: &impl GenericClient,
    payment_id: Uuid,
    reason: &str,
) -> Result<(), StoreError> {
    super::timed("sweeps.defer", async move {
    c.execute(
        "UPDATE payments SET settlement_status = 'skipped', settlement_reason = $2, updated_at = now() \
         WHERE id = $1 AND settlement_status IN ('unswept', 'skipped')",
        &[&payment_id, &reason],
    )
    .await?;
    Ok(())
    })
    .await
}

/// A sweep about to be signed.
#[derive(Debug, Clone)]
pub struct NewSweep {
    /// Id.
    pub id: Uuid,
    /// Chain name.
    pub chain: String,
    /// `self_paid`, `delegated` or `seeded`.
    pub strategy: &'static str,
    /// Where the funds go.
    pub treasury: Address,
    /// The deposit address swept.
    pub address: Address,
    /// `None` for the native asset.
    pub asset: Option<Address>,
    /// What reaches the treasury.
    pub amount: U256,
    /// The payments it settles.
    pub payments: Vec<Uuid>,
}

fn asset_text(asset: Option<Address>) -> String {
    asset.as_ref().map_or_else(|| "native".into(), lower_hex)
}

/// Records a sweep and marks its payments `sweeping`. `false` when the address and asset
/// are already in an active sweep (nothing is written then).
pub async fn insert_sweep(c: &impl GenericClient, s: &NewSweep) -> Result<bool, StoreError> {
    super::timed("sweeps.insert_sweep", async move {
        c.execute(
            "INSERT INTO sweeps (id, chain, strategy, state, treasury, traceparent) \
         VALUES ($1, $2, $3, 'in_flight', $4, $5)",
            &[
                &s.id,
                &s.chain,
                &s.strategy,
                &lower_hex(&s.treasury),
                &current_traceparent(),
            ],
        )
        .await?;
        let inserted = c
            .execute(
                "INSERT INTO sweep_items (sweep_id, chain, address, asset, amount_raw) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (chain, address, asset) WHERE active DO NOTHING",
                &[
                    &s.id,
                    &s.chain,
                    &lower_hex(&s.address),
                    &asset_text(s.asset),
                    &s.amount,
                ],
            )
            .await?;
        if inserted == 0 {
            return Ok(false);
        }
        for p in &s.payments {
            c.execute(
                "INSERT INTO sweep_payments (sweep_id, payment_id) VALUES ($1, $2)",
                &[&s.id, p],
            )
            .await?;
            c.execute(
                "UPDATE payments SET settlement_status = 'sweeping', settlement_reason = NULL, \
               updated_at = now() WHERE id = $1",
                &[p],
            )
            .await?;
        }
        Ok(true)
    })
    .await
}

/// Locks `sender`'s nonce row on `chain` for this transaction and returns the nonce to
/// use: ours, or the chain's when the chain is ahead (something outside the gateway sent
/// from the address; our records then catch up rather than reuse a nonce).
pub async fn take_nonce(
    c: &impl GenericClient,
    chain: &str,
    sender: &Address,
    on_chain: u64,
) -> Result<u64, StoreError> {
    super::timed("sweeps.take_nonce", async move {
        let sender = lower_hex(sender);
        let on_chain = i64::try_from(on_chain).map_err(|_| StoreError::Corrupt("sender_nonces"))?;
        c.execute(
            "INSERT INTO sender_nonces (chain, address, next_nonce) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
            &[&chain, &sender, &on_chain],
        )
        .await?;
        let row = c
            .query_one(
                "SELECT next_nonce FROM sender_nonces WHERE chain = $1 AND address = $2 FOR UPDATE",
                &[&chain, &sender],
            )
            .await?;
        let ours: i64 = row.get(0);
        u64::try_from(ours.max(on_chain)).map_err(|_| StoreError::Corrupt("sender_nonces"))
    })
    .await
}

/// A signed transaction about to be stored.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    /// Id.
    pub id: Uuid,
    /// The sweep it belongs to.
    pub sweep_id: Uuid,
    /// Who signed it.
    pub sender: Address,
    /// Its nonce.
    pub nonce: u64,
    /// EIP-1559 fee cap.
    pub max_fee_per_gas: u128,
    /// EIP-1559 tip.
    pub max_priority_fee_per_gas: u128,
    /// Gas limit.
    pub gas_limit: u64,
    /// Value sent.
    pub value: U256,
    /// The raw signed transaction (EIP-2718 encoded).
    pub raw: Vec<u8>,
    /// Its hash.
    pub hash: B256,
    /// `sweep` (moves the funds) or `seed` (sends the gas a token transfer needs).
    pub purpose: &'static str,
}

/// Records a batched sweep of several (address, token, amount) items and marks its
/// payments `sweeping`. `false` when an item is already in an active sweep; the caller
/// then drops the transaction, so nothing is written.
pub async fn insert_batch(
    c: &impl GenericClient,
    id: Uuid,
    chain: &str,
    strategy: &str,
    treasury: &Address,
    items: &[(Address, Option<Address>, U256)],
    payments: &[Uuid],
) -> Result<bool, StoreError> {
    super::timed("sweeps.insert_batch", async move {
        c.execute(
            "INSERT INTO sweeps (id, chain, strategy, state, treasury, traceparent) \
         VALUES ($1, $2, $3, 'in_flight', $4, $5)",
            &[
                &id,
                &chain,
                &strategy,
                &lower_hex(treasury),
                &current_traceparent(),
            ],
        )
        .await?;
        for (address, asset, amount) in items {
            let inserted = c
                .execute(
                    "INSERT INTO sweep_items (sweep_id, chain, address, asset, amount_raw) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (chain, address, asset) WHERE active DO NOTHING",
                    &[
                        &id,
                        &chain,
                        &lower_hex(address),
                        &asset_text(*asset),
                        amount,
                    ],
                )
                .await?;
            if inserted == 0 {
                return Ok(false);
            }
        }
        for p in payments {
            c.execute(
                "INSERT INTO sweep_payments (sweep_id, payment_id) VALUES ($1, $2)",
                &[&id, p],
            )
            .await?;
            c.execute(
                "UPDATE payments SET settlement_status = 'sweeping', settlement_reason = NULL, \
               updated_at = now() WHERE id = $1",
                &[p],
            )
            .await?;
        }
        Ok(true)
    })
    .await
}

/// Whether a delegate deployment is in flight on `chain`.
pub async fn deploy_in_flight(c: &impl GenericClient, chain: &str) -> Result<bool, StoreError> {
    super::timed("sweeps.deploy_in_flight", async move {
        let row = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM sweep_attempts a JOIN sweeps s ON s.id = a.sweep_id \
             WHERE s.chain = $1 AND s.state = 'in_flight' AND a.purpose = 'deploy')",
                &[&chain],
            )
            .await?;
        Ok(row.get(0))
    })
    .await
}

/// Stores a signed attempt and moves the sender's nonce past it (the nonce row must be
/// locked by [`take_nonce`] in the same transaction).
pub async fn insert_attempt(
    c: &impl GenericClient,
    chain: &str,
    a: &NewAttempt,
) -> Result<(), StoreError> {
    super::timed("sweeps.insert_attempt", async move {
    insert_attempt_row(c, a).await?;
    let nonce = i64::try_from(a.nonce).map_err(|_| StoreError::Corrupt("sweep_attempts"))?;
    c.execute(
        "UPDATE sender_nonces SET next_nonce = GREATEST(next_nonce, $3::bigint + 1), updated_at = now() \
         WHERE chain = $1 AND address = $2",
        &[&chain, &lower_hex(&a.sender), &nonce],
    )
    .await?;
    Ok(())
    })
    .await
}

/// One attempt of an in-flight sweep.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Id.
    pub id: Uuid,
    /// Its sweep.
    pub sweep_id: Uuid,
    /// The raw signed bytes, re-sent as they are.
    pub raw: Vec<u8>,
    /// `0x`-prefixed hash.
    pub hash: String,
    /// `signed`, `broadcast`, `mined`, or `replaced` (a later attempt with the same nonce
    /// pays more; this one may still be mined, so its receipt is still looked for).
    pub state: String,
    /// Where it was mined, as last seen.
    pub block: Option<(u64, String)>,
    /// Its nonce.
    pub nonce: u64,
    /// Its fee cap.
    pub max_fee_per_gas: u128,
    /// Its tip.
    pub max_priority_fee_per_gas: u128,
    /// How long ago it was signed.
    pub age: std::time::Duration,
    /// `sweep`, `seed` or `deploy`.
    pub purpose: String,
    /// Value sent.
    pub value: U256,
    /// Gas limit.
    pub gas_limit: u64,
}

/// The live attempts of `chain`'s in-flight sweeps, oldest sweep first.
pub async fn in_flight(c: &impl GenericClient, chain: &str) -> Result<Vec<Attempt>, StoreError> {
    super::timed("sweeps.in_flight", async move {
    let stmt = c
        .prepare_cached(
            "SELECT a.id, a.sweep_id, a.raw_tx, a.tx_hash, a.state, a.block_number, a.block_hash, \
               a.nonce, a.max_fee_per_gas, a.max_priority_fee_per_gas, \
               EXTRACT(EPOCH FROM now() - a.created_at)::float8, a.purpose, a.value_raw, a.gas_limit \
             FROM sweep_attempts a JOIN sweeps s ON s.id = a.sweep_id \
             WHERE s.chain = $1 AND s.state = 'in_flight' \
               AND (a.state IN ('signed', 'broadcast', 'mined', 'replaced') \
                    OR (a.purpose = 'seed' AND a.state = 'confirmed')) \
             ORDER BY s.created_at, a.created_at",
        )
        .await?;
    let rows = c.query(&stmt, &[&chain]).await?;
    rows.iter()
        .map(|r| {
            let number: Option<i64> = r.get(5);
            let hash: Option<String> = r.get(6);
            let corrupt = || StoreError::Corrupt("sweep_attempts");
            let nonce: i64 = r.get(7);
            let fee: U256 = r.get(8);
            let tip: U256 = r.get(9);
            Ok(Attempt {
                nonce: u64::try_from(nonce).map_err(|_| corrupt())?,
                max_fee_per_gas: u128::try_from(fee).map_err(|_| corrupt())?,
                max_priority_fee_per_gas: u128::try_from(tip).map_err(|_| corrupt())?,
                age: std::time::Duration::from_secs_f64(r.get::<_, f64>(10).max(0.0)),
                purpose: r.get(11),
                value: r.get(12),
                gas_limit: u64::try_from(r.get::<_, i64>(13)).map_err(|_| corrupt())?,
                id: r.get(0),
                sweep_id: r.get(1),
                raw: r.get(2),
                hash: r.get(3),
                state: r.get(4),
                block: match (number, hash) {
                    (Some(n), Some(h)) => Some((
                        u64::try_from(n).map_err(|_| StoreError::Corrupt("sweep_attempts"))?,
                        h,
                    )),
                    _ => None,
                },
            })
        })
        .collect()
    })
    .await
}

/// Records what the chain says of an attempt: `broadcast` (sent, or back from a reorged
/// block), or `mined` in a block.
pub async fn mark_attempt(
    c: &impl GenericClient,
    id: Uuid,
    state: &str,
    block: Option<(u64, &str)>,
) -> Result<(), StoreError> {
    super::timed("sweeps.mark_attempt", async move {
        let number = block
            .map(|(n, _)| i64::try_from(n))
            .transpose()
            .map_err(|_| StoreError::Corrupt("sweep_attempts"))?;
        let hash = block.map(|(_, h)| h.to_string());
        c.execute(
            "UPDATE sweep_attempts SET state = $2, block_number = $3, block_hash = $4, \
           broadcast_at = COALESCE(broadcast_at, now()) WHERE id = $1",
            &[&id, &state, &number, &hash],
        )
        .await?;
        Ok(())
    })
    .await
}

/// Marks a sweep confirmed by `attempt` (its other attempts are replaced), frees its
/// items, settles its payments and announces `payment.swept` for each, all in the caller's
/// transaction. Returns the settled payments.
pub async fn confirm(
    c: &impl GenericClient,
    sweep_id: Uuid,
    attempt_id: Uuid,
    tx_hash: &str,
) -> Result<Vec<Payment>, StoreError> {
    super::timed("sweeps.confirm", async move {
        let updated = c
            .execute(
                "UPDATE sweeps SET state = 'confirmed', tx_hash = $2, confirmed_at = now() \
             WHERE id = $1 AND state = 'in_flight'",
                &[&sweep_id, &tx_hash],
            )
            .await?;
        if updated == 0 {
            return Ok(Vec::new());
        }
        c.execute(
        "UPDATE sweep_attempts SET state = CASE WHEN id = $2 THEN 'confirmed' ELSE 'replaced' END \
         WHERE sweep_id = $1 AND purpose = (SELECT purpose FROM sweep_attempts WHERE id = $2)",
        &[&sweep_id, &attempt_id],
    )
    .await?;
        c.execute(
            "UPDATE sweep_items SET active = false WHERE sweep_id = $1",
            &[&sweep_id],
        )
        .await?;
        let rows = c
            .query(
                "SELECT payment_id FROM sweep_payments WHERE sweep_id = $1 ORDER BY payment_id",
                &[&sweep_id],
            )
            .await?;
        let mut settled = Vec::with_capacity(rows.len());
        for r in rows {
            settled.push(payments::settle(c, r.get(0), tx_hash).await?);
        }
        Ok(settled)
    })
    .await
}

/// Confirmed payments on `chain` whose funds are not swept, and how long ago the oldest was
/// confirmed, in seconds.
pub async fn unswept_stats(c: &impl GenericClient, chain: &str) -> Result<(i64, f64), StoreError> {
    super::timed("sweeps.unswept_stats", async move {
    let row = c
        .query_one(
            "SELECT count(*), \
               COALESCE(EXTRACT(EPOCH FROM now() - min(COALESCE(confirmed_at, transitioned_at)))::float8, 0) \
             FROM payments WHERE chain = $1 AND status IN ('confirmed', 'expired', 'canceled') \
               AND amount_received_raw > 0 AND settlement_status IN ('unswept', 'skipped', 'sweeping')",
            &[&chain],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
    })
    .await
}

/// In-flight sweeps of `chain` and the age of the oldest, in seconds.
pub async fn in_flight_stats(
    c: &impl GenericClient,
    chain: &str,
) -> Result<(i64, f64), StoreError> {
    super::timed("sweeps.in_flight_stats", async move {
        let row = c
        .query_one(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) \
             FROM sweeps WHERE chain = $1 AND state = 'in_flight'",
            &[&chain],
        )
        .await?;
        Ok((row.get(0), row.get(1)))
    })
    .await
}

/// What signing for an existing sweep needs: its strategy, treasury, asset and the
/// deposit key.
#[derive(Debug, Clone)]
pub struct SweepContext {
    /// `self_paid`, `delegated` or `seeded`.
    pub strategy: String,
    /// The token contract; `None` for the native asset.
    pub asset: Option<Address>,
    /// Where the funds go.
    pub treasury: Address,
    /// The deposit address (the sender).
    pub address: Address,
    /// The merchant's BIP-44 account.
    pub account_index: u32,
    /// The payment's derivation index.
    pub derivation_index: u32,
}

/// The strategy, asset, sender and key of a sweep.
pub async fn context(
    c: &impl GenericClient,
    sweep_id: Uuid,
) -> Result<Option<SweepContext>, StoreError> {
    super::timed("sweeps.context", async move {
        let row = c
            .query_opt(
                "SELECT s.treasury, p.address, m.account_index, p.derivation_index, s.strategy, \
               p.asset_contract \
             FROM sweeps s JOIN sweep_payments sp ON sp.sweep_id = s.id \
               JOIN payments p ON p.id = sp.payment_id JOIN merchants m ON m.id = p.merchant_id \
             WHERE s.id = $1 LIMIT 1",
                &[&sweep_id],
            )
            .await?;
        row.map(|r| {
            let corrupt = || StoreError::Corrupt("sweeps");
            let treasury: String = r.get(0);
            let address: String = r.get(1);
            let account: i32 = r.get(2);
            let index: i32 = r.get(3);
            let contract: Option<String> = r.get(5);
            Ok(SweepContext {
                strategy: r.get(4),
                asset: contract
                    .map(|a| a.parse().map_err(|_| corrupt()))
                    .transpose()?,
                treasury: treasury.parse().map_err(|_| corrupt())?,
                address: address.parse().map_err(|_| corrupt())?,
                account_index: u32::try_from(account).map_err(|_| corrupt())?,
                derivation_index: u32::try_from(index).map_err(|_| corrupt())?,
            })
        })
        .transpose()
    })
    .await
}

/// Marks a seed attempt confirmed; its sweep stays in flight for the transfer.
pub async fn seed_confirmed(c: &impl GenericClient, attempt_id: Uuid) -> Result<(), StoreError> {
    super::timed("sweeps.seed_confirmed", async move {
        c.execute(
            "UPDATE sweep_attempts SET state = 'confirmed' WHERE id = $1 AND purpose = 'seed'",
            &[&attempt_id],
        )
        .await?;
        Ok(())
    })
    .await
}

/// Whether a sweep has a transfer attempt already (so a confirmed seed is not followed by
/// a second transfer).
pub async fn has_transfer(c: &impl GenericClient, sweep_id: Uuid) -> Result<bool, StoreError> {
    super::timed("sweeps.has_transfer", async move {
    let row = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM sweep_attempts WHERE sweep_id = $1 AND purpose = 'sweep')",
            &[&sweep_id],
        )
        .await?;
    Ok(row.get(0))
    })
    .await
}

/// Stores a replacement (same nonce, higher fees) and marks the sweep's earlier live
/// attempts `replaced`, in one transaction; the caller then broadcasts it.
pub async fn insert_replacement(c: &impl GenericClient, a: &NewAttempt) -> Result<(), StoreError> {
    super::timed("sweeps.insert_replacement", async move {
        c.execute(
            "UPDATE sweep_attempts SET state = 'replaced' \
         WHERE sweep_id = $1 AND purpose = $2 AND state IN ('signed', 'broadcast')",
            &[&a.sweep_id, &a.purpose],
        )
        .await?;
        insert_attempt_row(c, a).await
    })
    .await
}

/// A payment's deposit address, as the audit sees it.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Payment.
    pub payment_id: Uuid,
    /// Its deposit address.
    pub address: Address,
    /// The payment's token; `None` for the native asset.
    pub asset: Option<Address>,
    /// Payment status.
    pub status: String,
    /// Settlement status.
    pub settlement: String,
}

/// Every deposit address issued on `chain`, oldest first.
pub async fn issued(c: &impl GenericClient, chain: &str) -> Result<Vec<Issued>, StoreError> {
    super::timed("sweeps.issued", async move {
        let rows = c
            .query(
                "SELECT id, address, asset_contract, status, settlement_status FROM payments \
             WHERE chain = $1 ORDER BY id",
                &[&chain],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let corrupt = || StoreError::Corrupt("payments");
                let address: String = r.get(1);
                let asset: Option<String> = r.get(2);
                Ok(Issued {
                    payment_id: r.get(0),
                    address: address.parse().map_err(|_| corrupt())?,
                    asset: asset
                        .map(|a| a.parse().map_err(|_| corrupt()))
                        .transpose()?,
                    status: r.get(3),
                    settlement: r.get(4),
                })
            })
            .collect()
    })
    .await
}

/// Puts a closed payment whose funds are still on its address back in line for a sweep.
/// `false` when it is open or already waiting.
pub async fn requeue(c: &impl GenericClient, payment_id: Uuid) -> Result<bool, StoreError> {
    super::timed("sweeps.requeue", async move {
        let n = c
            .execute(
                "UPDATE payments SET settlement_status = 'unswept', settlement_reason = NULL, \
               updated_at = now() \
             WHERE id = $1 AND status IN ('confirmed', 'expired', 'canceled') \
               AND settlement_status IN ('swept', 'skipped')",
                &[&payment_id],
            )
            .await?;
        Ok(n > 0)
    })
    .await
}

/// Writes one signed attempt, `signed`, with its raw bytes.
async fn insert_attempt_row(c: &impl GenericClient, a: &NewAttempt) -> Result<(), StoreError> {
    let nonce = i64::try_from(a.nonce).map_err(|_| StoreError::Corrupt("sweep_attempts"))?;
    let gas = i64::try_from(a.gas_limit).map_err(|_| StoreError::Corrupt("sweep_attempts"))?;
    c.execute(
        "INSERT INTO sweep_attempts (id, sweep_id, sender, nonce, max_fee_per_gas, \
           max_priority_fee_per_gas, gas_limit, value_raw, raw_tx, tx_hash, state, purpose) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'signed', $11)",
        &[
            &a.id,
            &a.sweep_id,
            &lower_hex(&a.sender),
            &nonce,
            &U256::from(a.max_fee_per_gas),
            &U256::from(a.max_priority_fee_per_gas),
            &gas,
            &a.value,
            &a.raw,
            &format!("{:#x}", a.hash),
            &a.purpose,
        ],
    )
    .await?;
    Ok(())
}

/// What the gas tank's signals need on `chain`: our next nonce for it (`None` before its
/// first transaction), how many of its attempts are in flight, and the mean worst-case fee
/// of its last 50 confirmed transactions, in wei (`None` without history).
pub async fn tank_stats(
    c: &impl GenericClient,
    chain: &str,
    tank: &Address,
) -> Result<(Option<u64>, i64, Option<f64>), StoreError> {
    super::timed("sweeps.tank_stats", async move {
        let tank = lower_hex(tank);
        let row = c
            .query_one(
                "SELECT (SELECT next_nonce FROM sender_nonces WHERE chain = $1 AND address = $2), \
               (SELECT count(*) FROM sweep_attempts a JOIN sweeps s ON s.id = a.sweep_id \
                 WHERE s.chain = $1 AND a.sender = $2 AND s.state = 'in_flight' \
                   AND a.state IN ('signed', 'broadcast', 'mined', 'replaced')), \
               (SELECT avg(gas_limit * max_fee_per_gas)::float8 FROM ( \
                  SELECT a.gas_limit, a.max_fee_per_gas FROM sweep_attempts a \
                  JOIN sweeps s ON s.id = a.sweep_id \
                  WHERE s.chain = $1 AND a.sender = $2 AND a.state = 'confirmed' \
                  ORDER BY a.created_at DESC LIMIT 50) recent)",
                &[&chain, &tank],
            )
            .await?;
        let next: Option<i64> = row.get(0);
        Ok((
            next.map(|n| u64::try_from(n).unwrap_or(0)),
            row.get(1),
            row.get(2),
        ))
    })
    .await
}

/// Funds of closed payments on `chain` not swept yet, by token (`None`: native), raw units.
pub async fn unswept_value(
    c: &impl GenericClient,
    chain: &str,
) -> Result<Vec<(Option<Address>, f64)>, StoreError> {
    super::timed("sweeps.unswept_value", async move {
    let rows = c
        .query(
            "SELECT asset_contract, sum(amount_received_raw)::float8 FROM payments \
             WHERE chain = $1 AND status IN ('confirmed', 'expired', 'canceled') \
               AND amount_received_raw > 0 AND settlement_status IN ('unswept', 'skipped', 'sweeping') \
             GROUP BY asset_contract",
            &[&chain],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let asset: Option<String> = r.get(0);
            Ok((
                asset
                    .map(|a| a.parse().map_err(|_| StoreError::Corrupt("payments")))
                    .transpose()?,
                r.get(1),
            ))
        })
        .collect()
    })
    .await
}

/// The strategy of a sweep.
pub async fn strategy(c: &impl GenericClient, sweep_id: Uuid) -> Result<String, StoreError> {
    super::timed("sweeps.strategy", async move {
        let row = c
            .query_one("SELECT strategy FROM sweeps WHERE id = $1", &[&sweep_id])
            .await?;
        Ok(row.get(0))
    })
    .await
}

/// The deposit addresses of a batched sweep with their tokens and keys (account, index).
pub async fn batch_members(
    c: &impl GenericClient,
    sweep_id: Uuid,
) -> Result<Vec<(Address, Option<Address>, u32, u32)>, StoreError> {
    super::timed("sweeps.batch_members", async move {
        let rows = c
            .query(
                "SELECT p.address, p.asset_contract, m.account_index, p.derivation_index \
             FROM sweep_payments sp JOIN payments p ON p.id = sp.payment_id \
             JOIN merchants m ON m.id = p.merchant_id WHERE sp.sweep_id = $1 ORDER BY p.id",
                &[&sweep_id],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let corrupt = || StoreError::Corrupt("sweep_payments");
                let address: String = r.get(0);
                let token: Option<String> = r.get(1);
                Ok((
                    address.parse().map_err(|_| corrupt())?,
                    token
                        .map(|t| t.parse().map_err(|_| corrupt()))
                        .transpose()?,
                    u32::try_from(r.get::<_, i32>(2)).map_err(|_| corrupt())?,
                    u32::try_from(r.get::<_, i32>(3)).map_err(|_| corrupt())?,
                ))
            })
            .collect()
    })
    .await
}
