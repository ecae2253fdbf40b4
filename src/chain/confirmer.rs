//! The confirmer: counts each counted transfer's depth from the canonical head, confirms a
//! payment once every counted transfer is deep enough and still on the canonical chain,
//! and expires payments whose window ended, but only once the scanner has read every block
//! stamped before the window's end (funds may otherwise sit in blocks not scanned yet).
//! It also counts confirmed payments whose funds a reorg took away, a critical condition.

use std::time::Duration;

use slog::Logger;

use super::metrics::ChainMetrics;
use super::report_changes;
use super::rpc::ChainRpc;
use super::status::ChainStatusRegistry;
use super::TickError;
use crate::domain::metrics::PaymentMetrics;
use crate::store::{payments, Store, StoreError};
use crate::worker::Work;

/// One chain's confirmer.
pub struct Confirmer {
    chain: String,
    rpc: ChainRpc,
    store: Store,
    status: Option<ChainStatusRegistry>,
    metrics: ChainMetrics,
    payment_metrics: PaymentMetrics,
    log: Logger,
    interval: Duration,
    budget: Option<Duration>,
}

impl Confirmer {
    /// Builds a confirmer.
    pub fn new(
        chain: &str,
        rpc: ChainRpc,
        store: Store,
        metrics: ChainMetrics,
        payment_metrics: PaymentMetrics,
        log: Logger,
        interval: Duration,
    ) -> Self {
        Self {
            chain: chain.to_string(),
            rpc,
            store,
            status: None,
            metrics,
            payment_metrics,
            log,
            interval,
            budget: None,
        }
    }

    /// Counts confirmations against `budget` (on time or late) from now on.
    pub fn with_confirmation_budget(mut self, budget: Duration) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Publishes the count of reversed payments to `/health/detail` through `status`.
    pub fn with_status(mut self, status: ChainStatusRegistry) -> Self {
        self.status = Some(status);
        self
    }

    async fn confirm_deep_enough(&self, best: u64) -> Result<(), TickError> {
        let client = self.store.client().await?;
        for p in payments::processing(&client, &self.chain).await? {
            let depth = p
                .transfer_blocks
                .iter()
                .map(|(n, _)| if best >= *n { best - n + 1 } else { 0 })
                .min()
                .unwrap_or(0);
            let depth = u32::try_from(depth).unwrap_or(u32::MAX);
            if depth < p.confirmations_required {
                if depth != p.confirmations {
                    payments::set_confirmations(&client, p.id, depth).await?;
                }
                continue;
            }
            // Deep enough by number; confirm only if each block is still the canonical one.
            let mut canonical = true;
            for (n, hash) in &p.transfer_blocks {
                if format!("{:#x}", self.rpc.header(*n).await?.hash) != *hash {
                    canonical = false;
                    break;
                }
            }
            if !canonical {
                slog::info!(self.log, "transfer block no longer canonical; waiting for the scanner";
                    "payment_id" => %p.id);
                continue;
            }
            let mut c = self.store.client().await?;
            let tx = c.transaction().await.map_err(StoreError::from)?;
            let change = payments::confirm(&tx, p.id, &p.transfer_blocks, depth).await?;
            tx.commit().await.map_err(StoreError::from)?;
            if let Some(ch) = change {
                report_changes(&[ch], &self.payment_metrics, &self.log, self.budget);
            }
        }
        Ok(())
    }

    async fn expire_due(&self, caught_up: bool) -> Result<(), TickError> {
        let client = self.store.client().await?;
        let due = payments::expirable(&client, &self.chain, caught_up).await?;
        drop(client);
        for id in due {
            let mut c = self.store.client().await?;
            let tx = c.transaction().await.map_err(StoreError::from)?;
            let change = payments::expire(&tx, id).await?;
            tx.commit().await.map_err(StoreError::from)?;
            if let Some(ch) = change {
                report_changes(&[ch], &self.payment_metrics, &self.log, self.budget);
            }
        }
        Ok(())
    }
}

impl Work for Confirmer {
    type Error = TickError;

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn tick_once(&mut self) -> Result<(), TickError> {
        let best = self.rpc.refresh_heads().await?;
        let client = self.store.client().await?;
        let progress = crate::store::chain::progress(&client, &self.chain).await?;
        drop(client);
        // The scanner has read everything up to the head: no block stamped before a window's
        // end can still be unread. Otherwise only payments whose window ended before the
        // last scanned block's timestamp expire.
        let caught_up = progress.is_some_and(|p| p.next_block > best);
        self.expire_due(caught_up).await?;
        self.confirm_deep_enough(best).await?;
        let client = self.store.client().await?;
        let open = payments::count_open(&client, &self.chain).await?;
        self.metrics
            .pending_payments
            .with_label_values(&[self.chain.as_str()])
            .set(i64::try_from(open).unwrap_or(i64::MAX));
        let reversed = payments::count_reversed(&client, &self.chain).await?;
        self.metrics
            .reversed_payments
            .with_label_values(&[self.chain.as_str()])
            .set(i64::try_from(reversed).unwrap_or(i64::MAX));
        if let Some(status) = &self.status {
            status.update(&self.chain, |s| s.reversed_payments = reversed);
        }
        Ok(())
    }
}
