//! The scanner: walks the chain block by block behind a persistent cursor and records every
//! transfer to a watched deposit address.
//!
//! - The cursor lives in PostgreSQL and moves only in the transaction that writes the
//!   range's transfers, block hashes and payment transitions: a crash or an RPC error never
//!   skips a block, and downtime of any length is backfilled.
//! - Native transfers come from each block's transactions (matched on `to`); ERC-20
//!   transfers from `eth_getLogs` for `Transfer` to watched addresses, any contract (a
//!   token other than the payment's asset is recorded, not counted). A log range refused
//!   as too large is split.
//! - Recent block hashes are kept. When the stored parent no longer matches the chain, the
//!   scanner walks back to the common ancestor; the same transaction that marks the
//!   orphaned transfers removed also records the new canonical range, so a transfer
//!   re-included in another block stays counted (with its new block hash) and the payment
//!   does not flap.

use std::time::Duration;

use alloy::primitives::{b256, Address, B256, U256};
use futures::stream::{self, StreamExt, TryStreamExt};
use slog::Logger;

use super::metrics::ChainMetrics;
use super::report_changes;
use super::rpc::{ChainRpc, RpcBlock, RpcError, RpcLog};
use super::status::ChainStatusRegistry;
use crate::config::{ChainSettings, StartBlock};
use crate::store::chain::{self as store_chain, FoundTransfer, RangeCommit, StoredBlock, Watched};
use crate::store::Store;
use crate::supervision::worker::{Work, WorkError};
use crate::telemetry::metrics::PaymentMetrics;

/// `keccak256("Transfer(address,address,uint256)")`
pub const TRANSFER_TOPIC: B256 =
    b256!("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");

/// Watched addresses per `eth_getLogs` topic filter.
const ADDRESSES_PER_LOG_QUERY: usize = 500;
/// Blocks fetched concurrently.
const BLOCK_FETCH_CONCURRENCY: usize = 16;

/// One chain's scanner.
pub struct Scanner {
    chain: ChainSettings,
    rpc: ChainRpc,
    store: Store,
    status: ChainStatusRegistry,
    metrics: ChainMetrics,
    payment_metrics: PaymentMetrics,
    log: Logger,
    late_window_seconds: u64,
    caught_up: bool,
}

/// What one tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScanReport {
    /// The last block scanned (the new cursor minus one).
    pub scanned_to: Option<u64>,
    /// Transfers recorded.
    pub transfers: usize,
    /// Reorg depth handled this tick (0 when none).
    pub reorg_depth: u64,
    /// Whether the scanner reached the best head.
    pub caught_up: bool,
}

impl Scanner {
    /// Builds a scanner.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        chain: ChainSettings,
        rpc: ChainRpc,
        store: Store,
        status: ChainStatusRegistry,
        metrics: ChainMetrics,
        payment_metrics: PaymentMetrics,
        log: Logger,
        late_window_seconds: u64,
    ) -> Self {
        Self {
            chain,
            rpc,
            store,
            status,
            metrics,
            payment_metrics,
            log,
            late_window_seconds,
            caught_up: false,
        }
    }

    fn keep_blocks(&self) -> u64 {
        256u64.max(u64::from(self.chain.confirmations) * 2)
    }

    async fn fetch_blocks(&self, from: u64, to: u64) -> Result<Vec<RpcBlock>, RpcError> {
        if from > to {
            return Ok(Vec::new());
        }
        stream::iter(from..=to)
            .map(|n| self.rpc.block(n))
            .buffered(BLOCK_FETCH_CONCURRENCY)
            .try_collect()
            .await
    }

    /// `Transfer` logs to watched addresses in `from..=to`, splitting ranges the provider
    /// refuses as too large.
    async fn fetch_transfer_logs(
        &self,
        from: u64,
        to: u64,
        watched: &std::collections::HashMap<Address, Watched>,
    ) -> Result<Vec<RpcLog>, RpcError> {
        let targets: Vec<B256> = watched.keys().map(|a| a.into_word()).collect();
        let mut out = Vec::new();
        for chunk in targets.chunks(ADDRESSES_PER_LOG_QUERY) {
            let topics = vec![Some(vec![TRANSFER_TOPIC]), None, Some(chunk.to_vec())];
            let mut ranges = vec![(from, to)];
            while let Some((a, b)) = ranges.pop() {
                match self.rpc.logs(a, b, topics.clone()).await {
                    Ok(logs) => out.extend(logs),
                    Err(e) if e.is_range_too_large() && a < b => {
                        let mid = a + (b - a) / 2;
                        ranges.push((mid + 1, b));
                        ranges.push((a, mid));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    /// Walks back from the newest remembered block to the first one the chain still has.
    async fn find_ancestor(&self, best: u64) -> Result<u64, WorkError> {
        let client = self.store.client().await?;
        let remembered = store_chain::recent_blocks(&client, &self.chain.name).await?;
        for b in &remembered {
            if b.number > best {
                continue;
            }
            if self.rpc.header(b.number).await?.hash == b.hash {
                return Ok(b.number);
            }
        }
        let oldest = remembered.last().map_or(0, |b| b.number);
        slog::error!(self.log, "reorg deeper than the remembered block hashes; rescanning from the oldest";
            "remembered" => remembered.len());
        Ok(oldest.saturating_sub(1))
    }

    /// One step: reorg check, then scan up to `scan_batch_blocks` and commit.
    pub async fn scan_once(&mut self) -> Result<ScanReport, WorkError> {
        let name = self.chain.name.clone();
        let best = self.rpc.refresh_heads().await?;
        let client = self.store.client().await?;
        let cursor = match store_chain::cursor(&client, &name).await? {
            Some(c) => c,
            None => {
                let start = match self.chain.start_block {
                    StartBlock::Latest => best,
                    StartBlock::Number(n) => n,
                };
                store_chain::init_cursor(&client, &name, start).await?
            }
        };
        let mut parent = match cursor.checked_sub(1) {
            Some(p) => store_chain::stored_block(&client, &name, p).await?,
            None => None,
        };
        drop(client);

        let mut from = cursor;
        let mut rollback = None;
        if let Some(p) = &parent {
            let orphaned = p.number > best || self.rpc.header(p.number).await?.hash != p.hash;
            if orphaned {
                let ancestor = self.find_ancestor(best).await?;
                slog::warn!(self.log, "chain reorganisation"; "ancestor" => ancestor, "depth" => p.number - ancestor);
                rollback = Some(ancestor);
                from = ancestor + 1;
                let client = self.store.client().await?;
                parent = store_chain::stored_block(&client, &name, ancestor).await?;
            }
        }
        if from > best && rollback.is_none() {
            self.caught_up = true;
            self.publish(cursor.saturating_sub(1).min(best), best);
            return Ok(ScanReport {
                scanned_to: cursor.checked_sub(1),
                caught_up: true,
                ..Default::default()
            });
        }
        let to = best.min(from + self.chain.scan_batch_blocks - 1);
        let blocks = self.fetch_blocks(from, to).await?;
        let mut prev_hash = parent.as_ref().map(|p| p.hash);
        for b in &blocks {
            if prev_hash.is_some_and(|h| h != b.parent_hash) {
                return Err(WorkError::Inconsistent(
                    "the chain changed while the range was fetched",
                ));
            }
            prev_hash = Some(b.hash);
        }

        let client = self.store.client().await?;
        let watched = store_chain::watched(&client, &name, self.late_window_seconds).await?;
        drop(client);
        let mut found = Vec::new();
        for b in &blocks {
            for tx in &b.transactions {
                let (Some(to_addr), false) = (tx.to, tx.value.is_zero()) else {
                    continue;
                };
                if let Some(w) = watched.get(&to_addr) {
                    found.push(FoundTransfer {
                        payment_id: w.payment_id,
                        tx_hash: tx.hash,
                        log_index: None,
                        from: tx.from,
                        to: to_addr,
                        asset: None,
                        amount: tx.value,
                        block_number: b.number.to(),
                        block_hash: b.hash,
                        counted: w.asset.is_none(),
                    });
                }
            }
        }
        if !watched.is_empty() && !blocks.is_empty() {
            for log in self.fetch_transfer_logs(from, to, &watched).await? {
                if log.removed
                    || log.topics.len() != 3
                    || log.topics[0] != TRANSFER_TOPIC
                    || log.data.len() != 32
                {
                    continue;
                }
                let recipient = Address::from_word(log.topics[2]);
                let Some(w) = watched.get(&recipient) else {
                    continue;
                };
                let n: u64 = log.block_number.to();
                let block = n.checked_sub(from).and_then(|i| blocks.get(i as usize));
                if block.map(|b| b.hash) != Some(log.block_hash) {
                    return Err(WorkError::Inconsistent(
                        "a log's block is not the fetched block",
                    ));
                }
                found.push(FoundTransfer {
                    payment_id: w.payment_id,
                    tx_hash: log.transaction_hash,
                    log_index: Some(log.log_index.to()),
                    from: Address::from_word(log.topics[1]),
                    to: recipient,
                    asset: Some(log.address),
                    amount: U256::from_be_slice(&log.data),
                    block_number: n,
                    block_hash: log.block_hash,
                    counted: w.asset == Some(log.address),
                });
            }
        }

        let stored: Vec<StoredBlock> = blocks
            .iter()
            .map(|b| StoredBlock {
                number: b.number.to(),
                hash: b.hash,
                parent_hash: b.parent_hash,
            })
            .collect();
        let mut client = self.store.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(crate::store::StoreError::from)?;
        let outcome = store_chain::commit_range(
            &tx,
            &RangeCommit {
                chain: &name,
                expected_cursor: cursor,
                rollback_to: rollback,
                blocks: &stored,
                transfers: &found,
                keep_blocks: self.keep_blocks(),
            },
        )
        .await?;
        tx.commit().await.map_err(crate::store::StoreError::from)?;
        if !outcome.committed {
            slog::info!(
                self.log,
                "cursor moved by another scanner; skipping this range"
            );
            return Ok(ScanReport::default());
        }
        if outcome.removed > 0 {
            slog::warn!(self.log, "transfers removed by a reorg"; "removed" => outcome.removed);
        }
        report_changes(&outcome.changes, &self.payment_metrics, &self.log);
        let scanned_to = stored
            .last()
            .map_or_else(|| rollback.unwrap_or(0), |b| b.number);
        self.caught_up = scanned_to >= best;
        self.publish(scanned_to, best);
        Ok(ScanReport {
            scanned_to: Some(scanned_to),
            transfers: found.len(),
            reorg_depth: match (rollback, parent.is_some()) {
                (Some(a), _) => cursor.saturating_sub(1).saturating_sub(a),
                _ => 0,
            },
            caught_up: self.caught_up,
        })
    }

    fn publish(&self, scanned: u64, best: u64) {
        let chain = self.chain.name.as_str();
        self.status
            .update(chain, |s| s.scanned_head = Some(scanned));
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.metrics
            .last_scanned_block
            .with_label_values(&[chain])
            .set(g(scanned));
        self.metrics
            .lag_blocks
            .with_label_values(&[chain])
            .set(g(best.saturating_sub(scanned)));
    }
}

impl Work for Scanner {
    /// Back-to-back while behind the head, the poll interval once caught up.
    fn interval(&self) -> Duration {
        if self.caught_up {
            self.chain.poll_interval()
        } else {
            Duration::ZERO
        }
    }

    async fn tick_once(&mut self) -> Result<(), WorkError> {
        self.scan_once().await.map(|_| ())
    }
}
