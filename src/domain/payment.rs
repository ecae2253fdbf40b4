//! The payment aggregate and its wire representation, shared by API responses and webhook
//! event payloads.

use alloy::primitives::{Address, U256};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::amount::format_units;
use super::status::{PaymentException, PaymentStatus};

/// The asset a payment is denominated in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    /// `ETH`-like native symbol or a token symbol.
    pub symbol: String,
    /// Token contract; `None` for the chain's native asset.
    pub contract: Option<Address>,
    /// Decimals used to render amounts.
    pub decimals: u8,
}

/// One on-chain transfer to a payment's deposit address.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Transaction hash, `0x`-prefixed lowercase hex.
    pub tx_hash: String,
    /// Log index for ERC-20 transfers, `None` for native ones.
    pub log_index: Option<u32>,
    /// Sender.
    pub from: Address,
    /// Amount in raw units.
    pub amount_raw: U256,
    /// Block number.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: String,
    /// Whether a reorg removed it from the canonical chain.
    pub removed: bool,
    /// Whether it counts toward the payment (false for another asset).
    pub counted: bool,
}

/// One recorded status transition.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// Previous status; `None` for creation.
    pub from: Option<PaymentStatus>,
    /// New status.
    pub to: PaymentStatus,
    /// When.
    pub at: DateTime<Utc>,
    /// Why, e.g. `created`, `canceled_by_merchant`.
    pub reason: String,
}

/// A payment with its transfers and history.
#[derive(Debug, Clone)]
pub struct Payment {
    /// Payment id (uuid v7, so ids sort by creation time).
    pub id: Uuid,
    /// Owner.
    pub merchant_id: Uuid,
    /// Chain name.
    pub chain: String,
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Asset.
    pub asset: Asset,
    /// Deposit address.
    pub address: Address,
    /// Requested amount, raw units.
    pub amount_raw: U256,
    /// Sum of counted, canonical transfers, raw units.
    pub amount_received_raw: U256,
    /// Current status.
    pub status: PaymentStatus,
    /// Exception flag.
    pub exception: Option<PaymentException>,
    /// Depth every counted transfer must reach.
    pub confirmations_required: u32,
    /// Depth of the shallowest counted transfer, as last seen by the confirmer.
    pub confirmations: u32,
    /// Merchant's order reference.
    pub order_id: Option<String>,
    /// Merchant's free-form metadata.
    pub metadata: Option<serde_json::Value>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// End of the payment window.
    pub expires_at: DateTime<Utc>,
    /// First detection of funds.
    pub detected_at: Option<DateTime<Utc>>,
    /// Confirmation time.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// `unswept`, `sweeping`, `swept` or `skipped`.
    pub settlement_status: String,
    /// Sweep transaction.
    pub settlement_tx_hash: Option<String>,
    /// Transfers, oldest first.
    pub transfers: Vec<Transfer>,
    /// Status history, oldest first.
    pub history: Vec<HistoryEntry>,
}

/// RFC 3339 UTC with `Z`, as the contract wants.
pub fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

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
}

#[derive(Debug, Serialize, ToSchema)]
struct AssetObject {
    symbol: String,
    contract: Option<String>,
    decimals: u8,
}

#[derive(Debug, Serialize, ToSchema)]
struct SettlementObject {
    status: String,
    tx_hash: Option<String>,
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

impl Payment {
    /// Renders the contract's payment object. `head` is the chain's canonical head, when
    /// known, for per-transfer confirmation counts.
    pub fn to_object(&self, head: Option<u64>) -> PaymentObject {
        let d = self.asset.decimals;
        PaymentObject {
            id: self.id.to_string(),
            object: "payment",
            chain: self.chain.clone(),
            chain_id: self.chain_id,
            asset: AssetObject {
                symbol: self.asset.symbol.clone(),
                contract: self.asset.contract.as_ref().map(checksum),
                decimals: d,
            },
            address: checksum(&self.address),
            amount: format_units(self.amount_raw, d),
            amount_raw: self.amount_raw.to_string(),
            amount_received: format_units(self.amount_received_raw, d),
            amount_received_raw: self.amount_received_raw.to_string(),
            status: self.status.as_str(),
            exception: self.exception.map(PaymentException::as_str),
            confirmations_required: self.confirmations_required,
            confirmations: self.confirmations,
            order_id: self.order_id.clone(),
            metadata: self.metadata.clone(),
            created_at: rfc3339(&self.created_at),
            expires_at: rfc3339(&self.expires_at),
            detected_at: self.detected_at.as_ref().map(rfc3339),
            confirmed_at: self.confirmed_at.as_ref().map(rfc3339),
            settlement: SettlementObject {
                status: self.settlement_status.clone(),
                tx_hash: self.settlement_tx_hash.clone(),
            },
            transfers: self
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
            history: self
                .history
                .iter()
                .map(|h| HistoryObject {
                    from: h.from.map(PaymentStatus::as_str),
                    to: h.to.as_str(),
                    at: rfc3339(&h.at),
                    reason: h.reason.clone(),
                })
                .collect(),
        }
    }
}
