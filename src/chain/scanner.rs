//! The scanner: follows the chain head. (Block scanning lands with the chain-ingestion
//! work; for now a tick reads the head and records it.)

use std::time::Duration;

use super::metrics::ChainMetrics;
use super::rpc::ChainRpc;
use super::status::ChainStatusRegistry;
use crate::supervision::worker::{Work, WorkError};

/// One chain's scanner.
pub struct Scanner {
    rpc: ChainRpc,
    status: ChainStatusRegistry,
    metrics: ChainMetrics,
    interval: Duration,
}

impl Scanner {
    /// Builds a scanner.
    pub fn new(
        rpc: ChainRpc,
        status: ChainStatusRegistry,
        metrics: ChainMetrics,
        interval: Duration,
    ) -> Self {
        Self {
            rpc,
            status,
            metrics,
            interval,
        }
    }
}

impl Work for Scanner {
    fn interval(&self) -> Duration {
        self.interval
    }

    async fn tick_once(&mut self) -> Result<(), WorkError> {
        let head = self.rpc.block_number().await?;
        let chain = self.rpc.chain().to_string();
        self.status.update(&chain, |s| s.scanned_head = Some(head));
        let best = self
            .status
            .get(&chain)
            .and_then(|s| s.best_head())
            .unwrap_or(head);
        let as_gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.metrics
            .head_block
            .with_label_values(&[chain.as_str()])
            .set(as_gauge(best));
        self.metrics
            .last_scanned_block
            .with_label_values(&[chain.as_str()])
            .set(as_gauge(head));
        self.metrics
            .lag_blocks
            .with_label_values(&[chain.as_str()])
            .set(as_gauge(best.saturating_sub(head)));
        Ok(())
    }
}
