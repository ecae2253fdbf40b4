//! Payments, their transfers and history, and the event outbox rows their transitions write.

use std::str::FromStr;

use alloy::primitives::{Address, U256};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Deserialize;
use tokio_postgres::Row;
use uuid::Uuid;

use super::StoreError;
use crate::domain::{Asset, HistoryEntry, Payment, PaymentException, PaymentStatus, Transfer};

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

fn lower_hex(a: &Address) -> String {
    format!("{a:#x}")
}

fn to_i64(v: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(what))
}

fn to_i32(v: u32, what: &'static str) -> Result<i32, StoreError> {
    i32::try_from(v).map_err(|_| StoreError::Corrupt(what))
}

/// Inserts the address allocation, the payment and its creation history row in one
/// statement (so one round trip, and atomic even outside a transaction).
pub async fn insert(c: &impl GenericClient, p: &NewPayment) -> Result<(), StoreError> {
    let stmt = c
        .prepare_cached(
            "WITH a AS ( \
               INSERT INTO deposit_addresses (merchant_id, derivation_index, address) \
               VALUES ($2, $8, $7) \
             ), p AS ( \
               INSERT INTO payments (id, merchant_id, chain, chain_id, asset_symbol, asset_contract, \
                 asset_decimals, address, derivation_index, amount_raw, status, \
                 confirmations_required, order_id, metadata, created_at, expires_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $9, $7, $8, $10, 'pending', $11, $12, $13, $14, $15) \
             ) \
             INSERT INTO payment_history (payment_id, from_status, to_status, reason, at) \
             VALUES ($1, NULL, 'pending', 'created', $14)",
        )
        .await?;
    let contract = p.asset.contract.as_ref().map(lower_hex);
    let address = lower_hex(&p.address);
    let decimals = i16::from(p.asset.decimals);
    c.execute(
        &stmt,
        &[
            &p.id,
            &p.merchant_id,
            &p.chain,
            &to_i64(p.chain_id, "chain_id")?,
            &p.asset.symbol,
            &contract,
            &address,
            &to_i32(p.derivation_index, "derivation_index")?,
            &decimals,
            &p.amount_raw,
            &to_i32(p.confirmations_required, "confirmations_required")?,
            &p.order_id,
            &p.metadata,
            &p.created_at,
            &p.expires_at,
        ],
    )
    .await?;
    Ok(())
}

/// The columns every payment read selects, with transfers and history aggregated as JSON
/// so that one statement returns the whole aggregate.
const SELECT_PAYMENT: &str = "SELECT p.id, p.merchant_id, p.chain, p.chain_id, p.asset_symbol, \
  p.asset_contract, p.asset_decimals, p.address, p.amount_raw, p.amount_received_raw, p.status, \
  p.exception, p.confirmations_required, p.confirmations, p.order_id, p.metadata, p.created_at, \
  p.expires_at, p.detected_at, p.confirmed_at, p.settlement_status, p.settlement_tx_hash, \
  COALESCE((SELECT json_agg(json_build_object('tx_hash', t.tx_hash, 'log_index', t.log_index, \
      'from', t.from_address, 'amount_raw', t.amount_raw::text, 'block_number', t.block_number, \
      'block_hash', t.block_hash, 'removed', t.removed, 'counted', t.counted) \
      ORDER BY t.block_number, t.log_index) \
    FROM payment_transfers t WHERE t.payment_id = p.id), '[]'::json) AS transfers, \
  COALESCE((SELECT json_agg(json_build_object('from', h.from_status, 'to', h.to_status, \
      'at', h.at, 'reason', h.reason) ORDER BY h.id) \
    FROM payment_history h WHERE h.payment_id = p.id), '[]'::json) AS history \
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
}

/// A page of a merchant's payments, newest first, plus whether more follow.
pub async fn list(
    c: &impl GenericClient,
    merchant_id: Uuid,
    f: &ListFilter,
) -> Result<(Vec<Payment>, bool), StoreError> {
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
}

/// Locks a merchant's payment row for a status change; returns its status and received sum.
pub async fn lock(
    c: &impl GenericClient,
    merchant_id: Uuid,
    id: Uuid,
) -> Result<Option<(PaymentStatus, U256)>, StoreError> {
    let row = c
        .query_opt(
            "SELECT status, amount_received_raw FROM payments \
             WHERE merchant_id = $1 AND id = $2 FOR UPDATE",
            &[&merchant_id, &id],
        )
        .await?;
    row.map(|r| {
        let s: String = r.get(0);
        Ok((
            s.parse().map_err(|_| StoreError::Corrupt("payments"))?,
            r.get(1),
        ))
    })
    .transpose()
}

/// Records one transition of a locked payment: sets the status, appends the history row
/// and writes the outbox event carrying the updated payment object. Callers run it inside
/// the transaction that holds the row lock, so the three land together or not at all.
pub async fn transition(
    c: &impl GenericClient,
    merchant_id: Uuid,
    id: Uuid,
    from: PaymentStatus,
    to: PaymentStatus,
    reason: &str,
    event_type: &str,
) -> Result<Payment, StoreError> {
    let row = c
        .query_one(
            "UPDATE payments SET status = $3, event_sequence = event_sequence + 1, updated_at = now() \
             WHERE merchant_id = $1 AND id = $2 RETURNING event_sequence",
            &[&merchant_id, &id, &to.as_str()],
        )
        .await?;
    let sequence: i32 = row.get(0);
    c.execute(
        "INSERT INTO payment_history (payment_id, from_status, to_status, reason) VALUES ($1, $2, $3, $4)",
        &[&id, &from.as_str(), &to.as_str(), &reason],
    )
    .await?;
    let payment = get(c, merchant_id, id)
        .await?
        .ok_or(StoreError::Corrupt("payments"))?;
    let event_id = format!("evt_{}", Uuid::now_v7().simple());
    let now = Utc::now();
    let payload = serde_json::json!({
        "id": event_id,
        "type": event_type,
        "created_at": crate::domain::payment::rfc3339(&now),
        "sequence": sequence,
        "data": payment.to_object(None),
    });
    c.execute(
        "INSERT INTO events (id, merchant_id, payment_id, type, sequence, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &event_id,
            &merchant_id,
            &id,
            &event_type,
            &sequence,
            &payload,
            &now,
        ],
    )
    .await?;
    Ok(payment)
}

/// Open payments (pending, partially paid, processing) on a chain.
pub async fn count_open(c: &impl GenericClient, chain: &str) -> Result<u64, StoreError> {
    let stmt = c
        .prepare_cached(
            "SELECT count(*) FROM payments WHERE chain = $1 \
             AND status IN ('pending', 'partially_paid', 'processing')",
        )
        .await?;
    let n: i64 = c.query_one(&stmt, &[&chain]).await?.get(0);
    Ok(u64::try_from(n).unwrap_or(0))
}
