//! Chains: the RPC client, the live status each chain exposes to health and metrics, and
//! the chain workers (scanner, confirmer, sweeper).

pub mod confirmer;
pub mod lease;
pub mod metrics;
pub mod rpc;
pub mod scanner;
pub mod status;
pub mod sweeper;

pub use rpc::{ChainRpc, RpcError};
pub use status::{ChainStatus, ChainStatusRegistry, EndpointStatus};

use slog::Logger;

use crate::domain::metrics::PaymentMetrics;
use crate::store::payments::AppliedChange;
use crate::store::StoreError;
use crate::worker::Retryable;

/// Why a chain worker's tick did not complete.
#[derive(Debug, thiserror::Error)]
pub enum TickError {
    /// A chain RPC failed.
    #[error("rpc: {0}")]
    Rpc(#[from] RpcError),
    /// The database failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The chain view changed mid-tick (a reorg in progress); retried next tick.
    #[error("inconsistent chain view: {0}")]
    Inconsistent(&'static str),
    /// A key could not sign (nothing a retry would fix).
    #[error("signing: {0}")]
    Signing(#[from] crate::wallet::WalletError),
}

impl Retryable for TickError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::Rpc(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
            Self::Inconsistent(_) => true,
            Self::Signing(e) => e.is_retryable(),
        }
    }

    fn is_fenced(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_fenced())
    }
}

/// Counts and logs payment changes written by a chain worker.
/// `budget` is the chain's on-time confirmation budget (the confirmation SLO).
pub(crate) fn report_changes(
    changes: &[AppliedChange],
    metrics: &PaymentMetrics,
    log: &Logger,
    budget: Option<std::time::Duration>,
) {
    for ch in changes {
        if ch.from != ch.to {
            metrics
                .transitions
                .with_label_values(&[ch.chain.as_str(), ch.to.as_str()])
                .inc();
        }
        if let Some(secs) = ch.confirmation_latency {
            metrics
                .confirmation_latency
                .with_label_values(&[ch.chain.as_str()])
                .observe(secs);
            if let Some(budget) = budget {
                let on_time = if secs <= budget.as_secs_f64() {
                    "true"
                } else {
                    "false"
                };
                metrics
                    .confirmations
                    .with_label_values(&[ch.chain.as_str(), on_time])
                    .inc();
            }
        }
        slog::info!(log, "payment updated";
            "payment_id" => %ch.payment_id, "chain" => &ch.chain,
            "from" => ch.from.as_str(), "to" => ch.to.as_str(), "event" => ch.event.unwrap_or("none"));
    }
}
