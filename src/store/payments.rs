//! Payments, their transfers and history, and the event outbox rows their transitions write.

use std::str::FromStr;

use alloy::primitives::{Address, U256};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Deserialize;
use tokio_postgres::Row;
use uuid::Uuid;

use super::idempotency::{self, Claim};
use super::StoreError;
use crate::domain::lifecycle::{self, Cause, Change, PaymentFacts, Sums};
use crate::domain::{Asset, HistoryEntry, Payment, PaymentException, PaymentStatus, Transfer};
use crate::models::{rfc3339, EventObject, PaymentObject};
use crate::telemetry::trace::current_traceparent;

/// A payment about to be inserted.
#[derive(Debug, Clone)]
pub struct NewPayment {
    /// Id (uuid v7).
    pub id: Uuid,
    /// Owner.
    pub merchant_id: Uuid,
    /// Chain name.
    pub chain: String,
    /// Chain id.
    pub chain_id: u64,
    /// Asset.
    pub asset: Asset,
    /// Derived deposit address.
    pub address: Address,
    /// Its derivation index in the merchant's account.
    pub derivation_index: u32,
    /// Requested amount.
    pub amount_raw: U256,
    /// Required depth.
    pub confirmations_required: u32,
    /// Merchant's order reference.
    pub order_id: Option<String>,
    /// Merchant's metadata object.
    pub metadata: Option<serde_json::Value>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry time.
    pub expires_at: DateTime<Utc>,
    /// Where the payer's page sends the payer once confirmed.
    pub return_url: Option<String>,
}

/// Filters for listing.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this status.
    pub status: Option<PaymentStatus>,
    /// Only this chain.
    pub chain: Option<String>,
    /// Only this order id.
    pub order_id: Option<String>,
    /// Only payments older than this one (ids are time ordered).
    pub starting_after: Option<Uuid>,
    /// Page size.
    pub limit: u32,
}

pub(crate) fn lower_hex(a: &Address) -> String {
    format!("{a:#x}")
}

fn to_i64(v: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(what))
}

fn to_i32(v: u32, what: &'static str) -> Result<i32, StoreError> {
    i32::try_from(v).map_err(|_| StoreError::Corrupt(what))
}

/// An `Idempotency-Key` claimed together with a payment insert, with the response the
/// insert will have answered (known before the statement runs).
#[derive(Debug, Clone)]
pub struct KeyClaim {
    /// The key as sent.
    pub key: String,
    /// Hash of the request (method, path, canonical body).
    pub request_hash: Vec<u8>,
    /// The response's status.
    pub status: u16,
    /// The response's body.
    pub body: Vec<u8>,
}

/// The address allocation, the payment and its creation history row, as one statement.
const INSERT_PAYMENT: &str = "WITH a AS ( \
       INSERT INTO deposit_addresses (merchant_id, derivation_index, address) \
       VALUES ($2, $8, $7) \
     ), p AS ( \
       INSERT INTO payments (id, merchant_id, chain, chain_id, asset_symbol, asset_contract, \
         asset_decimals, address, derivation_index, amount_raw, status, \
         confirmations_required, order_id, metadata, created_at, expires_at, traceparent, history, \
         return_url) \
       VALUES ($1, $2, $3, $4, $5, $6, $9, $7, $8, $10, 'pending', $11, $12, $13, $14, $15, $16, \
         jsonb_build_array(jsonb_build_object('from', NULL, 'to', 'pending', 'at', $14::timestamptz, \
           'reason', 'created')), $17) \
     ) \
     INSERT INTO payment_history (payment_id, from_status, to_status, reason, at, traceparent) \
     VALUES ($1, NULL, 'pending', 'created', $14, $16)";

/// The same with an idempotency key: the key row (with its response), the address, the
/// payment and its history are inserted only when the key is new, and the row a key
/// already has is returned when it was committed before this statement began. (Rows of a
/// data-modifying `WITH` are not visible to the rest of the statement, so the final
/// `SELECT` never sees this statement's own key row.)
const INSERT_PAYMENT_WITH_KEY: &str = "WITH k AS ( \
       INSERT INTO idempotency_keys (merchant_id, key, request_hash, response_status, response_body) \
       VALUES ($2, $18, $19, $20, $21) ON CONFLICT DO NOTHING RETURNING 1 \
     ), a AS ( \
       INSERT INTO deposit_addresses (merchant_id, derivation_index, address) \
       SELECT $2::uuid, $8::integer, $7::text FROM k \
     ), p AS ( \
       INSERT INTO payments (id, merchant_id, chain, chain_id, asset_symbol, asset_contract, \
         asset_decimals, address, derivation_index, amount_raw, status, \
         confirmations_required, order_id, metadata, created_at, expires_at, traceparent, history, \
         return_url) \
       SELECT $1::uuid, $2::uuid, $3::text, $4::bigint, $5::text, $6::text, $9::smallint, \
         $7::text, $8::integer, $10::numeric, 'pending', $11::integer, $12::text, $13::jsonb, \
         $14::timestamptz, $15::timestamptz, $16::text, \
         jsonb_build_array(jsonb_build_object('from', NULL, 'to', 'pending', \
           'at', $14::timestamptz, 'reason', 'created')), $17::text FROM k \
     ), h AS ( \
       INSERT INTO payment_history (payment_id, from_status, to_status, reason, at, traceparent) \
       SELECT $1::uuid, NULL, 'pending', 'created', $14::timestamptz, $16::text FROM k \
     ) \
     SELECT (SELECT count(*) FROM k), i.request_hash, i.response_status, i.response_body \
     FROM (VALUES (1)) AS one (x) \
     LEFT JOIN idempotency_keys i ON i.merchant_id = $2 AND i.key = $18";

/// Inserts a new payment in one statement, so one round trip and atomic without a
/// transaction. With `claim`, the key is claimed and its response stored in the same
/// statement, and nothing is inserted unless the key is new.
pub async fn create(
    c: &impl GenericClient,
    p: &NewPayment,
    claim: Option<&KeyClaim>,
) -> Result<Claim, StoreError> {
    super::timed("payments.insert", async move {
        let contract = p.asset.contract.as_ref().map(lower_hex);
        let address = lower_hex(&p.address);
        let decimals = i16::from(p.asset.decimals);
        let traceparent = current_traceparent();
        let chain_id = to_i64(p.chain_id, "chain_id")?;
        let index = to_i32(p.derivation_index, "derivation_index")?;
        let confirmations = to_i32(p.confirmations_required, "confirmations_required")?;
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
            &p.id,
            &p.merchant_id,
            &p.chain,
            &chain_id,
            &p.asset.symbol,
            &contract,
            &address,
            &index,
            &decimals,
            &p.amount_raw,
            &confirmations,
            &p.order_id,
            &p.metadata,
            &p.created_at,
            &p.expires_at,
            &traceparent,
            &p.return_url,
        ];
        let Some(k) = claim else {
            let stmt = c.prepare_cached(INSERT_PAYMENT).await?;
            c.execute(&stmt, &params).await?;
            return Ok(Claim::New);
        };
        let status =
            i16::try_from(k.status).map_err(|_| StoreError::Corrupt("idempotency_keys"))?;
        params.extend([
            &k.key as &(dyn tokio_postgres::types::ToSql + Sync),
            &k.request_hash,
            &status,
            &k.body,
        ]);
        let stmt = c.prepare_cached(INSERT_PAYMENT_WITH_KEY).await?;
        let row = c.query_one(&stmt, &params).await?;
        if row.get::<_, i64>(0) == 1 {
            return Ok(Claim::New);
        }
        match row.get::<_, Option<Vec<u8>>>(1) {
            Some(hash) => idempotency::judge(&k.request_hash, hash, row.get(2), row.get(3)),
            // Claimed by a request that committed after this statement began: read it now.
            None => idempotency::stored(c, p.merchant_id, &k.key, &k.request_hash).await,
        }
    })
    .await
}

/// The columns every payment read selects, with the transfers aggregated as JSON and the
/// history the row carries (a copy of `payment_history`, written with it), so that one
/// statement returns the whole aggregate.
const SELECT_PAYMENT: &str = "SELECT p.id, p.merchant_id, p.chain, p.chain_id, p.asset_symbol, \
  p.asset_contract, p.asset_decimals, p.address, p.amount_raw, p.amount_received_raw, p.status, \
  p.exception, p.confirmations_required, p.confirmations, p.order_id, p.metadata, p.created_at, \
  p.expires_at, p.detected_at, p.confirmed_at, p.settlement_status, p.settlement_tx_hash, \
  COALESCE((SELECT json_agg(json_build_object('tx_hash', t.tx_hash, 'log_index', t.log_index, \
      'from', t.from_address, 'amount_raw', t.amount_raw::text, 'block_number', t.block_number, \
      'block_hash', t.block_hash, 'removed', t.removed, 'counted', t.counted) \
      ORDER BY t.block_number, t.log_index) \
    FROM payment_transfers t WHERE t.payment_id = p.id), '[]'::json) AS transfers, \
  p.history, \
  p.settlement_reason, p.return_url \
  FROM payments p";

#[derive(Deserialize)]
struct TransferJson {
    tx_hash: String,
    log_index: i32,
    from: String,
    amount_raw: String,
    block_number: i64,
    block_hash: String,
    removed: bool,
    counted: bool,
}

#[derive(Deserialize)]
struct HistoryJson {
    from: Option<String>,
    to: String,
    at: DateTime<Utc>,
    reason: String,
}

fn parse_address(s: &str, what: &'static str) -> Result<Address, StoreError> {
    Address::from_str(s).map_err(|_| StoreError::Corrupt(what))
}

fn from_row(row: &Row) -> Result<Payment, StoreError> {
    let corrupt = || StoreError::Corrupt("payments");
    let contract: Option<String> = row.get(5);
    let decimals: i16 = row.get(6);
    let address: String = row.get(7);
    let status: String = row.get(10);
    let exception: Option<String> = row.get(11);
    let conf_req: i32 = row.get(12);
    let conf: i32 = row.get(13);
    let chain_id: i64 = row.get(3);
    let transfers: serde_json::Value = row.get(22);
    let history: serde_json::Value = row.get(23);
    let transfers: Vec<TransferJson> =
        serde_json::from_value(transfers).map_err(|_| StoreError::Corrupt("payment_transfers"))?;
    let history: Vec<HistoryJson> =
        serde_json::from_value(history).map_err(|_| StoreError::Corrupt("payment_history"))?;
    Ok(Payment {
        id: row.get(0),
        merchant_id: row.get(1),
        chain: row.get(2),
        chain_id: u64::try_from(chain_id).map_err(|_| corrupt())?,
        asset: Asset {
            symbol: row.get(4),
            contract: contract
                .as_deref()
                .map(|c| parse_address(c, "payments"))
                .transpose()?,
            decimals: u8::try_from(decimals).map_err(|_| corrupt())?,
        },
        address: parse_address(&address, "payments")?,
        amount_raw: row.get(8),
        amount_received_raw: row.get(9),
        status: status.parse().map_err(|_| corrupt())?,
        exception: exception
            .as_deref()
            .map(PaymentException::from_str)
            .transpose()
            .map_err(|_| corrupt())?,
        confirmations_required: u32::try_from(conf_req).map_err(|_| corrupt())?,
        confirmations: u32::try_from(conf).map_err(|_| corrupt())?,
        order_id: row.get(14),
        metadata: row.get(15),
        created_at: row.get(16),
        expires_at: row.get(17),
        detected_at: row.get(18),
        confirmed_at: row.get(19),
        settlement_status: row.get(20),
        settlement_tx_hash: row.get(21),
        settlement_reason: row.get(24),
        return_url: row.get(25),
        transfers: transfers
            .into_iter()
            .map(|t| {
                Ok(Transfer {
                    log_index: u32::try_from(t.log_index).ok(),
                    from: parse_address(&t.from, "payment_transfers")?,
                    amount_raw: U256::from_str_radix(&t.amount_raw, 10)
                        .map_err(|_| StoreError::Corrupt("payment_transfers"))?,
                    block_number: u64::try_from(t.block_number)
                        .map_err(|_| StoreError::Corrupt("payment_transfers"))?,
                    tx_hash: t.tx_hash,
                    block_hash: t.block_hash,
                    removed: t.removed,
                    counted: t.counted,
                })
            })
            .collect::<Result<_, StoreError>>()?,
        history: history
            .into_iter()
            .map(|h| {
                Ok(HistoryEntry {
                    from: h
                        .from
                        .as_deref()
                        .map(PaymentStatus::from_str)
                        .transpose()
                        .map_err(|_| StoreError::Corrupt("payment_history"))?,
                    to: h
                        .to
                        .parse()
                        .map_err(|_| StoreError::Corrupt("payment_history"))?,
                    at: h.at,
                    reason: h.reason,
                })
            })
            .collect::<Result<_, StoreError>>()?,
    })
}

/// One merchant's payment; `None` when it does not exist or belongs to someone else.
pub async fn get(
    c: &impl GenericClient,
    merchant_id: Uuid,
    id: Uuid,
) -> Result<Option<Payment>, StoreError> {
    super::timed("payments.get", async move {
        let stmt = c
            .prepare_cached(&format!(
                "{SELECT_PAYMENT} WHERE p.merchant_id = $1 AND p.id = $2"
            ))
            .await?;
        c.query_opt(&stmt, &[&merchant_id, &id])
            .await?
            .as_ref()
            .map(from_row)
            .transpose()
    })
    .await
}

/// Any merchant's payment by id, for the payer's page (whose address is the id).
pub async fn get_any(c: &impl GenericClient, id: Uuid) -> Result<Option<Payment>, StoreError> {
    super::timed("payments.get_any", async move {
        let stmt = c
            .prepare_cached(&format!("{SELECT_PAYMENT} WHERE p.id = $1"))
            .await?;
        c.query_opt(&stmt, &[&id])
            .await?
            .as_ref()
            .map(from_row)
            .transpose()
    })
    .await
}

/// A page of a merchant's payments, newest first, plus whether more follow.
pub async fn list(
    c: &impl GenericClient,
    merchant_id: Uuid,
    f: &ListFilter,
) -> Result<(Vec<Payment>, bool), StoreError> {
    super::timed("payments.list", async move {
        let stmt = c
            .prepare_cached(&format!(
                "{SELECT_PAYMENT} WHERE p.merchant_id = $1 \
             AND ($2::text IS NULL OR p.status = $2) \
             AND ($3::text IS NULL OR p.chain = $3) \
             AND ($4::text IS NULL OR p.order_id = $4) \
             AND ($5::uuid IS NULL OR p.id < $5) \
             ORDER BY p.id DESC LIMIT $6"
            ))
            .await?;
        let status = f.status.map(PaymentStatus::as_str);
        let limit = i64::from(f.limit) + 1;
        let rows = c
            .query(
                &stmt,
                &[
                    &merchant_id,
                    &status,
                    &f.chain,
                    &f.order_id,
                    &f.starting_after,
                    &limit,
                ],
            )
            .await?;
        let has_more = rows.len() > f.limit as usize;
        let page = rows
            .iter()
            .take(f.limit as usize)
            .map(from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((page, has_more))
    })
    .await
}

/// A change written to a payment, for metrics and logs.
#[derive(Debug, Clone)]
pub struct AppliedChange {
    /// The payment.
    pub payment_id: Uuid,
    /// Its chain.
    pub chain: String,
    /// Status before.
    pub from: PaymentStatus,
    /// Status after.
    pub to: PaymentStatus,
    /// The event written, if any.
    pub event: Option<&'static str>,
    /// Seconds from first detection to confirmation, when this change confirmed it.
    pub confirmation_latency: Option<f64>,
}

/// Writes `change` to a payment locked by the caller's transaction: status, exception and
/// amounts, and, when the change carries an event, the history row and the outbox event
/// with the updated payment object. They land together or not at all.
pub async fn write_change(
    c: &impl GenericClient,
    merchant_id: Uuid,
    id: Uuid,
    from: PaymentStatus,
    change: &Change,
) -> Result<Payment, StoreError> {
    super::timed("payments.write_change", async move {
    let stmt = c
        .prepare_cached(
            "UPDATE payments SET status = $3, exception = $4, amount_received_raw = $5, \
               detected_at = CASE WHEN $5::numeric > 0 THEN COALESCE(detected_at, now()) ELSE detected_at END, \
               confirmed_at = CASE WHEN $3 = 'confirmed' THEN COALESCE(confirmed_at, now()) ELSE confirmed_at END, \
               event_sequence = event_sequence + CASE WHEN $6 THEN 1 ELSE 0 END, \
               transitioned_at = CASE WHEN $6 THEN now() ELSE transitioned_at END, \
               history = CASE WHEN $6 THEN history || jsonb_build_array(jsonb_build_object( \
                 'from', $7::text, 'to', $3::text, 'at', now(), 'reason', $8::text)) \
                 ELSE history END, \
               confirmations = CASE WHEN $3 IN ('pending', 'partially_paid') THEN 0 ELSE confirmations END, \
               settlement_status = CASE WHEN $5::numeric > amount_received_raw \
                 AND settlement_status = 'swept' THEN 'unswept' ELSE settlement_status END, \
               updated_at = now() \
             WHERE merchant_id = $1 AND id = $2 RETURNING event_sequence",
        )
        .await?;
    let exception = change.exception.map(PaymentException::as_str);
    let row = c
        .query_one(
            &stmt,
            &[
                &merchant_id,
                &id,
                &change.status.as_str(),
                &exception,
                &change.received,
                &change.event.is_some(),
                &from.as_str(),
                &change.event.map(|(_, reason)| reason),
            ],
        )
        .await?;
    let sequence: i32 = row.get(0);
    if let Some((_, reason)) = change.event {
        c.execute(
            "INSERT INTO payment_history (payment_id, from_status, to_status, reason, traceparent) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &id,
                &from.as_str(),
                &change.status.as_str(),
                &reason,
                &current_traceparent(),
            ],
        )
        .await?;
    }
    let payment = get(c, merchant_id, id)
        .await?
        .ok_or(StoreError::Corrupt("payments"))?;
    if let Some((event_type, _)) = change.event {
        record_event(c, &payment, event_type, sequence).await?;
    }
    Ok(payment)
    })
    .await
}

/// Writes `payment`'s event number `sequence` to the outbox (the event with the payment as
/// it is now) and fans it out to the merchant's endpoints. Call in the transaction that
/// made the change.
async fn record_event(
    c: &impl GenericClient,
    payment: &Payment,
    event_type: &str,
    sequence: i32,
) -> Result<(), StoreError> {
    let event_id = format!("evt_{}", Uuid::now_v7().simple());
    let now = Utc::now();
    let payload = serde_json::to_value(EventObject {
        id: &event_id,
        kind: event_type,
        created_at: rfc3339(&now),
        sequence,
        data: PaymentObject::new(payment, None),
    })
    .map_err(|_| StoreError::Corrupt("events"))?;
    let (merchant_id, id) = (payment.merchant_id, payment.id);
    c.execute(
        "INSERT INTO events (id, merchant_id, payment_id, type, sequence, payload, created_at, traceparent) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &event_id,
            &merchant_id,
            &id,
            &event_type,
            &sequence,
            &payload,
            &now,
            &current_traceparent(),
        ],
    )
    .await?;
    super::webhooks::fan_out(c, merchant_id, id, &event_id, event_type, sequence).await?;
    Ok(())
}

/// Marks a payment's funds swept by `tx_hash` and announces `payment.swept`. Call in the
/// transaction that marks the sweep confirmed.
pub async fn settle(
    c: &impl GenericClient,
    id: Uuid,
    tx_hash: &str,
) -> Result<Payment, StoreError> {
    super::timed("payments.settle", async move {
        let row = c
            .query_one(
                "UPDATE payments SET settlement_status = 'swept', settlement_tx_hash = $2, \
               settlement_reason = NULL, event_sequence = event_sequence + 1, updated_at = now() \
             WHERE id = $1 RETURNING merchant_id, event_sequence",
                &[&id, &tx_hash],
            )
            .await?;
        let (merchant_id, sequence): (Uuid, i32) = (row.get(0), row.get(1));
        let payment = get(c, merchant_id, id)
            .await?
            .ok_or(StoreError::Corrupt("payments"))?;
        record_event(c, &payment, "payment.swept", sequence).await?;
        Ok(payment)
    })
    .await
}

/// Why a payment is recomputed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recompute {
    /// New transfers were recorded.
    Funds,
    /// A reorg removed or moved transfers.
    Reorg,
}

/// A payment locked for update, with what the lifecycle needs.
pub struct Locked {
    /// Owner.
    pub merchant_id: Uuid,
    /// Chain name.
    pub chain: String,
    /// What the lifecycle looks at.
    pub facts: PaymentFacts,
    detected_at: Option<DateTime<Utc>>,
}

async fn lock_facts(c: &impl GenericClient, id: Uuid) -> Result<Option<Locked>, StoreError> {
    lock_row(c, id, None).await
}

/// Locks a merchant's payment for a change the merchant asked for; `None` when the
/// merchant has no such payment.
pub async fn lock(
    c: &impl GenericClient,
    merchant_id: Uuid,
    id: Uuid,
) -> Result<Option<Locked>, StoreError> {
    super::timed("payments.lock", async move {
        lock_row(c, id, Some(merchant_id)).await
    })
    .await
}

async fn lock_row(
    c: &impl GenericClient,
    id: Uuid,
    merchant_id: Option<Uuid>,
) -> Result<Option<Locked>, StoreError> {
    let stmt = c
        .prepare_cached(
            "SELECT merchant_id, chain, status, exception, amount_raw, amount_received_raw, expires_at, detected_at \
             FROM payments WHERE id = $1 AND ($2::uuid IS NULL OR merchant_id = $2) FOR UPDATE",
        )
        .await?;
    let Some(r) = c.query_opt(&stmt, &[&id, &merchant_id]).await? else {
        return Ok(None);
    };
    let bad = || StoreError::Corrupt("payments");
    let status: String = r.get(2);
    let exception: Option<String> = r.get(3);
    Ok(Some(Locked {
        merchant_id: r.get(0),
        chain: r.get(1),
        facts: PaymentFacts {
            status: status.parse().map_err(|_| bad())?,
            exception: exception
                .as_deref()
                .map(PaymentException::from_str)
                .transpose()
                .map_err(|_| bad())?,
            amount: r.get(4),
            received: r.get(5),
            expires_at: r.get(6),
        },
        detected_at: r.get(7),
    }))
}

/// Locks a payment, applies `cause` and writes the result. `None` when nothing changed.
async fn apply_cause(
    c: &impl GenericClient,
    locked: Locked,
    id: Uuid,
    cause: Cause,
) -> Result<Option<AppliedChange>, StoreError> {
    // The chain and the clock are never refused; a refusal here would be a programming
    // error, and it changes nothing.
    let Ok(Some(change)) = lifecycle::apply(&locked.facts, cause) else {
        return Ok(None);
    };
    write_change(c, locked.merchant_id, id, locked.facts.status, &change).await?;
    let confirmation_latency = (change.status == PaymentStatus::Confirmed)
        .then(|| {
            locked
                .detected_at
                .map(|d| (Utc::now() - d).num_milliseconds() as f64 / 1000.0)
        })
        .flatten();
    Ok(Some(AppliedChange {
        payment_id: id,
        chain: locked.chain,
        from: locked.facts.status,
        to: change.status,
        event: change.event.map(|(e, _)| e),
        confirmation_latency,
    }))
}

/// Recomputes a payment's received sum from its counted, canonical transfers and applies
/// the lifecycle. Run inside the transaction that changed the transfers.
pub async fn recompute(
    c: &impl GenericClient,
    id: Uuid,
    why: Recompute,
) -> Result<Option<AppliedChange>, StoreError> {
    super::timed("payments.recompute", async move {
    let Some(locked) = lock_facts(c, id).await? else {
        return Ok(None);
    };
    // Transfers without a block time predate block-time tracking; they count as in time
    // only when they were not flagged late when found.
    let stmt = c
        .prepare_cached(
            "SELECT LEAST(COALESCE(sum(t.amount_raw), 0), $2::numeric), \
               LEAST(COALESCE(sum(t.amount_raw) FILTER (WHERE COALESCE(t.block_time <= p.expires_at, NOT t.late)), 0), $2::numeric) \
             FROM payments p LEFT JOIN payment_transfers t \
               ON t.payment_id = p.id AND t.counted AND NOT t.removed \
             WHERE p.id = $1",
        )
        .await?;
    let row = c.query_one(&stmt, &[&id, &U256::MAX]).await?;
    let sums = Sums {
        received: row.get(0),
        in_time: row.get(1),
    };
    let cause = match why {
        Recompute::Funds => Cause::Funds(sums),
        Recompute::Reorg => Cause::Reorg(sums),
    };
    apply_cause(c, locked, id, cause).await
    })
    .await
}

/// A processing payment and the blocks of its counted, canonical transfers.
#[derive(Debug, Clone)]
pub struct ProcessingPayment {
    /// The payment.
    pub id: Uuid,
    /// Required depth.
    pub confirmations_required: u32,
    /// Depth last recorded.
    pub confirmations: u32,
    /// `(block number, block hash)` of every counted, canonical transfer.
    pub transfer_blocks: Vec<(u64, String)>,
}

/// Processing payments on a chain.
pub async fn processing(
    c: &impl GenericClient,
    chain: &str,
) -> Result<Vec<ProcessingPayment>, StoreError> {
    super::timed("payments.processing", async move {
    let rows = c
        .query(
            "SELECT p.id, p.confirmations_required, p.confirmations, t.block_number, t.block_hash \
             FROM payments p JOIN payment_transfers t ON t.payment_id = p.id AND t.counted AND NOT t.removed \
             WHERE p.chain = $1 AND p.status = 'processing' ORDER BY p.id, t.block_number",
            &[&chain],
        )
        .await?;
    let bad = || StoreError::Corrupt("payments");
    let mut out: Vec<ProcessingPayment> = Vec::new();
    for r in rows {
        let id: Uuid = r.get(0);
        let n: i64 = r.get(3);
        let block = (u64::try_from(n).map_err(|_| bad())?, r.get::<_, String>(4));
        match out.last_mut() {
            Some(p) if p.id == id => p.transfer_blocks.push(block),
            _ => out.push(ProcessingPayment {
                id,
                confirmations_required: u32::try_from(r.get::<_, i32>(1)).map_err(|_| bad())?,
                confirmations: u32::try_from(r.get::<_, i32>(2)).map_err(|_| bad())?,
                transfer_blocks: vec![block],
            }),
        }
    }
    Ok(out)
    })
    .await
}

/// Records the depth of a payment's shallowest counted transfer.
pub async fn set_confirmations(
    c: &impl GenericClient,
    id: Uuid,
    confirmations: u32,
) -> Result<(), StoreError> {
    super::timed("payments.set_confirmations", async move {
        let n = i32::try_from(confirmations).unwrap_or(i32::MAX);
        c.execute(
            "UPDATE payments SET confirmations = $2 WHERE id = $1",
            &[&id, &n],
        )
        .await?;
        Ok(())
    })
    .await
}

/// Confirms a processing payment whose transfers were verified canonical and deep enough,
/// provided they are still exactly `verified` (a reorg in between leaves it processing).
pub async fn confirm(
    c: &impl GenericClient,
    id: Uuid,
    verified: &[(u64, String)],
    depth: u32,
) -> Result<Option<AppliedChange>, StoreError> {
    super::timed("payments.confirm", async move {
        let Some(locked) = lock_facts(c, id).await? else {
            return Ok(None);
        };
        let rows = c
            .query(
                "SELECT block_number, block_hash FROM payment_transfers \
             WHERE payment_id = $1 AND counted AND NOT removed ORDER BY block_number",
                &[&id],
            )
            .await?;
        let current: Vec<(u64, String)> = rows
            .iter()
            .map(|r| {
                (
                    u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
                    r.get::<_, String>(1),
                )
            })
            .collect();
        if current != verified {
            return Ok(None);
        }
        set_confirmations(c, id, depth).await?;
        apply_cause(c, locked, id, Cause::DeepEnough).await
    })
    .await
}

/// Open payments whose window has ended and whose every in-time block the scanner has
/// read: either it has scanned a block stamped at or after `expires_at`, or (with
/// `caught_up`) it has scanned everything up to the head. Funds in blocks not scanned yet
/// can then never be reported underpaid, then late.
pub async fn expirable(
    c: &impl GenericClient,
    chain: &str,
    caught_up: bool,
) -> Result<Vec<Uuid>, StoreError> {
    super::timed("payments.expirable", async move {
        let rows = c
            .query(
                "SELECT p.id FROM payments p LEFT JOIN chain_cursors cc ON cc.chain = p.chain \
             WHERE p.chain = $1 AND p.status IN ('pending', 'partially_paid') \
               AND p.expires_at <= now() AND ($2 OR cc.scanned_time >= p.expires_at) \
             ORDER BY p.expires_at LIMIT 1000",
                &[&chain, &caught_up],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    })
    .await
}

/// Confirmed payments on a chain whose counted funds a reorg took away.
pub async fn count_reversed(c: &impl GenericClient, chain: &str) -> Result<u64, StoreError> {
    super::timed("payments.count_reversed", async move {
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM payments WHERE chain = $1 \
               AND status = 'confirmed' AND amount_received_raw < amount_raw",
                &[&chain],
            )
            .await?
            .get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    })
    .await
}

/// Expires a payment if its window has ended.
pub async fn expire(c: &impl GenericClient, id: Uuid) -> Result<Option<AppliedChange>, StoreError> {
    super::timed("payments.expire", async move {
        let Some(locked) = lock_facts(c, id).await? else {
            return Ok(None);
        };
        apply_cause(c, locked, id, Cause::Clock { now: Utc::now() }).await
    })
    .await
}

/// Open payments (pending, partially paid, processing) on a chain.
pub async fn count_open(c: &impl GenericClient, chain: &str) -> Result<u64, StoreError> {
    super::timed("payments.count_open", async move {
        let stmt = c
            .prepare_cached(
                "SELECT count(*) FROM payments WHERE chain = $1 \
             AND status IN ('pending', 'partially_paid', 'processing')",
            )
            .await?;
        let n: i64 = c.query_one(&stmt, &[&chain]).await?.get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    })
    .await
}
