//! The payment aggregate: what a payment is, independent of how it is shown.

use alloy::primitives::{Address, U256};
use chrono::{DateTime, Utc};
use uuid::Uuid;

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
    /// Why the funds wait (`skipped`: the fee would eat too much of them).
    pub settlement_reason: Option<String>,
    /// Where the payer's page sends the payer once confirmed.
    pub return_url: Option<String>,
    /// Transfers, oldest first.
    pub transfers: Vec<Transfer>,
    /// Status history, oldest first.
    pub history: Vec<HistoryEntry>,
}
