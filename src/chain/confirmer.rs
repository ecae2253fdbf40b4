//! The confirmer: counts confirmations and expires payments. (The lifecycle lands with the
//! chain-ingestion work; for now a tick measures the open payments of its chain.)

use std::time::Duration;

use super::metrics::ChainMetrics;
use crate::store::{payments, Store};
use crate::supervision::worker::{Work, WorkError};

/// One chain's confirmer.
pub struct Confirmer {
    chain: String,
    store: Store,
    metrics: ChainMetrics,
    interval: Duration,
}

impl Confirmer {
    /// Builds a confirmer.
    pub fn new(chain: &str, store: Store, metrics: ChainMetrics, interval: Duration) -> Self {
        Self {
            chain: chain.to_string(),
            store,
            metrics,
            interval,
        }
    }
}

impl Work for Confirmer {
    fn interval(&self) -> Duration {
        self.interval
    }

    async fn tick_once(&mut self) -> Result<(), WorkError> {
        let client = self.store.client().await?;
        let open = payments::count_open(&client, &self.chain).await?;
        self.metrics
            .pending_payments
            .with_label_values(&[self.chain.as_str()])
            .set(i64::try_from(open).unwrap_or(i64::MAX));
        Ok(())
    }
}
