//! The payment object of the contract: one renderer for the HTTP responses and the
//! webhook event bodies, so the two can never drift apart.

use alloy::primitives::Address;
use serde::Serialize;
use utoipa::ToSchema;

use super::rfc3339;
use crate::domain::{format_units, Payment, PaymentException, PaymentStatus};

fn checksum(a: &Address) -> String {
    a.to_checksum(None)
}

/// The JSON payment object.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Payment)]
pub struct PaymentObject {
    id: String,
    object: &'static str,
    chain: String,
    chain_id: u64,
    asset: AssetObject,
    address: String,
    amount: String,
    amount_raw: String,
    amount_received: String,
    amount_received_raw: String,
    status: &'static str,
    exception: Option<&'static str>,
    confirmations_required: u32,
    confirmations: u32,
    order_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
    created_at: String,
    expires_at: String,
    detected_at: Option<String>,
    confirmed_at: Option<String>,
    settlement: SettlementObject,
    transfers: Vec<TransferObject>,
    history: Vec<HistoryObject>,
    /// Where the payer's page sends the payer once confirmed.
    return_url: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct AssetObject {
    symbol: String,
    contract: Option<String>,
    decimals: u8,
}

#[derive(Debug, Serialize, ToSchema)]
struct SettlementObject {
    /// `unswept`, `sweeping`, `swept`, or `skipped` while the funds wait (see `reason`).
    status: String,
    /// The sweep transaction, once swept.
    tx_hash: Option<String>,
    /// Why the funds wait, when `skipped`.
    reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct TransferObject {
    tx_hash: String,
    log_index: Option<u32>,
    from: String,
    amount: String,
    amount_raw: String,
    block_number: u64,
    block_hash: String,
    confirmations: u64,
    removed: bool,
    counted: bool,
}

#[derive(Debug, Serialize, ToSchema)]
struct HistoryObject {
    from: Option<&'static str>,
    to: &'static str,
    at: String,
    reason: String,
}

impl PaymentObject {
    /// Renders a payment. `head` is the chain's canonical head, when known, for
    /// per-transfer confirmation counts.
    pub fn new(payment: &Payment, head: Option<u64>) -> Self {
        let p = payment;
        let d = p.asset.decimals;
        Self {
            id: p.id.to_string(),
            object: "payment",
            chain: p.chain.clone(),
            chain_id: p.chain_id,
            asset: AssetObject {
                symbol: p.asset.symbol.clone(),
                contract: p.asset.contract.as_ref().map(checksum),
                decimals: d,
            },
            address: checksum(&p.address),
            amount: format_units(p.amount_raw, d),
            amount_raw: p.amount_raw.to_string(),
            amount_received: format_units(p.amount_received_raw, d),
            amount_received_raw: p.amount_received_raw.to_string(),
            status: p.status.as_str(),
            exception: p.exception.map(PaymentException::as_str),
            confirmations_required: p.confirmations_required,
            confirmations: p.confirmations,
            order_id: p.order_id.clone(),
            metadata: p.metadata.clone(),
            created_at: rfc3339(&p.created_at),
            expires_at: rfc3339(&p.expires_at),
            detected_at: p.detected_at.as_ref().map(rfc3339),
            confirmed_at: p.confirmed_at.as_ref().map(rfc3339),
            settlement: SettlementObject {
                status: p.settlement_status.clone(),
                tx_hash: p.settlement_tx_hash.clone(),
                reason: p.settlement_reason.clone(),
            },
            transfers: p
                .transfers
                .iter()
                .map(|t| TransferObject {
                    tx_hash: t.tx_hash.clone(),
                    log_index: t.log_index,
                    from: checksum(&t.from),
                    amount: format_units(t.amount_raw, d),
                    amount_raw: t.amount_raw.to_string(),
                    block_number: t.block_number,
                    block_hash: t.block_hash.clone(),
                    confirmations: match head {
                        Some(h) if !t.removed && h >= t.block_number => h - t.block_number + 1,
                        _ => 0,
                    },
                    removed: t.removed,
                    counted: t.counted,
                })
                .collect(),
            history: p
                .history
                .iter()
                .map(|h| HistoryObject {
                    from: h.from.map(PaymentStatus::as_str),
                    to: h.to.as_str(),
                    at: rfc3339(&h.at),
                    reason: h.reason.clone(),
                })
                .collect(),
            return_url: p.return_url.clone(),
        }
    }
}
