//! The scanner: walks the chain block by block behind a persistent cursor and records every
//! transfer to a watched deposit address.
//!
//! - The cursor lives in PostgreSQL and moves only in the transaction that writes the
//!   range's transfers, block hashes and payment transitions: a crash or an RPC error never
//!   skips a block, and downtime of any length is backfilled.
//! - Native transfers come from each block's transactions (matched on `to`). ERC-20
//!   transfers come from `eth_getLogs` filtered by the configured token contracts, with
//!   recipients matched locally, so the query does not grow with the watched set; while
//!   the set is small, a second query by recipient topic also records tokens nobody
//!   configured (recorded, not counted). A log range refused as too large is split; a
//!   throttled endpoint backs off instead.
//! - Recent block hashes are kept. A reorg is only ever proven by a block hash that differs
//!   at a height an endpoint serves: when every answering endpoint is behind the cursor
//!   (a failover to a slower node), the scanner waits. On a reorg it walks back to the
//!   common ancestor and rescans at least up to the old tip in the same transaction that
//!   marks the orphaned transfers removed, watching every orphaned transfer's address
//!   whatever its payment's status, so a transfer re-included in another block stays
//!   counted (with its new block hash) and the payment does not flap.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use alloy::primitives::{b256, Address, B256, U256};
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use slog::Logger;

use super::metrics::ChainMetrics;
use super::report_changes;
use super::rpc::{ChainRpc, RpcBlock, RpcError, RpcLog};
use super::status::ChainStatusRegistry;
use super::TickError;
use crate::config::{ChainSettings, StartBlock};
use crate::domain::metrics::PaymentMetrics;
use crate::store::chain::{self as store_chain, FoundTransfer, RangeCommit, StoredBlock, Watched};
use crate::store::Store;
use crate::worker::Work;

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
    tokens: Vec<Address>,
    caught_up: bool,
    waiting: bool,
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
    /// Every answering endpoint was behind the cursor; the scanner waited.
    pub waiting_for_nodes: bool,
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
            rpc,
            store,
            status,
            metrics,
            payment_metrics,
            log,
            late_window_seconds,
            tokens: chain.tokens.iter().map(|t| t.address).collect(),
            chain,
            caught_up: false,
            waiting: false,
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

    /// `eth_getLogs` for `from..=to`, splitting ranges the provider refuses as too large.
    async fn logs_split(
        &self,
        from: u64,
        to: u64,
        contracts: &[Address],
        topics: &[Option<Vec<B256>>],
    ) -> Result<Vec<RpcLog>, RpcError> {
        let mut out = Vec::new();
        let mut ranges = vec![(from, to)];
        while let Some((a, b)) = ranges.pop() {
            match self
                .rpc
                .logs(a, b, contracts.to_vec(), topics.to_vec())
                .await
            {
                Ok(logs) => out.extend(logs),
                Err(e) if e.is_range_too_large() && a < b => {
                    let mid = a + (b - a) / 2;
                    ranges.push((mid + 1, b));
                    ranges.push((a, mid));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// `Transfer` logs in `from..=to` that may concern watched addresses: every transfer of
    /// a configured token (recipients are matched by the caller), plus, while the watched
    /// set is small enough for one topic filter, transfers of any contract to it.
    async fn fetch_transfer_logs(
        &self,
        from: u64,
        to: u64,
        watched: &HashMap<Address, Watched>,
    ) -> Result<Vec<RpcLog>, RpcError> {
        let mut out = Vec::new();
        if !self.tokens.is_empty() {
            out.extend(
                self.logs_split(from, to, &self.tokens, &[Some(vec![TRANSFER_TOPIC])])
                    .await?,
            );
        }
        if watched.len() <= ADDRESSES_PER_LOG_QUERY {
            let targets: Vec<B256> = watched.keys().map(|a| a.into_word()).collect();
            let topics = [Some(vec![TRANSFER_TOPIC]), None, Some(targets)];
            out.extend(self.logs_split(from, to, &[], &topics).await?);
        }
        let mut seen = HashSet::with_capacity(out.len());
        out.retain(|l| seen.insert((l.transaction_hash, l.log_index)));
        Ok(out)
    }

    /// Walks back from the newest remembered block to the first one the chain still has.
    async fn find_ancestor(&self, served: u64) -> Result<u64, TickError> {
        let client = self.store.client().await?;
        let remembered = store_chain::recent_blocks(&client, &self.chain.name).await?;
        for b in &remembered {
            if b.number > served {
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
    pub async fn scan_once(&mut self) -> Result<ScanReport, TickError> {
        let name = self.chain.name.clone();
        let served = self.rpc.refresh_heads().await?;
        let best = self.rpc.best_seen();
        let client = self.store.client().await?;
        let cursor = match store_chain::cursor(&client, &name).await? {
            Some(c) => c,
            None => {
                let start = match self.chain.start_block {
                    StartBlock::Latest => served,
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
            if p.number > served {
                // Every endpoint answering now is behind what was already scanned: a
                // failover to a slower node, not evidence of a reorg. Wait for them.
                return self.wait_for_nodes(p.number, served, best).await;
            }
            if self.rpc.header(p.number).await?.hash != p.hash {
                let ancestor = self.find_ancestor(served).await?;
                slog::warn!(self.log, "chain reorganisation"; "ancestor" => ancestor, "depth" => p.number - ancestor);
                rollback = Some(ancestor);
                from = ancestor + 1;
                let client = self.store.client().await?;
                parent = store_chain::stored_block(&client, &name, ancestor).await?;
            }
        }
        self.set_waiting(false);
        if from > served && rollback.is_none() {
            self.caught_up = true;
            let client = self.store.client().await?;
            store_chain::record_head(&client, &name, served).await?;
            self.publish(cursor.saturating_sub(1).min(served), best);
            return Ok(ScanReport {
                scanned_to: cursor.checked_sub(1),
                caught_up: true,
                ..Default::default()
            });
        }
        let mut to = served.min(from + self.chain.scan_batch_blocks - 1);
        if rollback.is_some() {
            // Re-check every orphaned block's range in the same commit that removes its
            // transfers, so a re-included transfer is never briefly reported lost.
            to = to.max(cursor.saturating_sub(1).min(served));
        }
        let blocks = self.fetch_blocks(from, to).await?;
        let mut prev_hash = parent.as_ref().map(|p| p.hash);
        for b in &blocks {
            if prev_hash.is_some_and(|h| h != b.parent_hash) {
                return Err(TickError::Inconsistent(
                    "the chain changed while the range was fetched",
                ));
            }
            prev_hash = Some(b.hash);
        }

        // Read after the blocks are fetched: a payment created meanwhile cannot have been
        // paid in blocks that existed before its address was handed out.
        let client = self.store.client().await?;
        let watched =
            store_chain::watched(&client, &name, self.late_window_seconds, rollback).await?;
        drop(client);
        let found = self.find_transfers(from, &blocks, &watched).await?;

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
                head: served,
                scanned_time: blocks.last().map(block_time),
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
            slog::warn!(self.log, "transfers in orphaned blocks re-checked";
                "orphaned" => outcome.removed);
        }
        report_changes(
            &outcome.changes,
            &self.payment_metrics,
            &self.log,
            Some(self.chain.confirmation_budget()),
        );
        let scanned_to = stored
            .last()
            .map_or_else(|| rollback.unwrap_or(0), |b| b.number);
        self.caught_up = scanned_to >= served;
        self.publish(scanned_to, best);
        Ok(ScanReport {
            scanned_to: Some(scanned_to),
            transfers: found.len(),
            reorg_depth: match (rollback, parent.is_some()) {
                (Some(a), _) => cursor.saturating_sub(1).saturating_sub(a),
                _ => 0,
            },
            caught_up: self.caught_up,
            waiting_for_nodes: false,
        })
    }

    /// Native transfers from the blocks' transactions and token transfers from their logs,
    /// to watched addresses.
    async fn find_transfers(
        &self,
        from: u64,
        blocks: &[RpcBlock],
        watched: &HashMap<Address, Watched>,
    ) -> Result<Vec<FoundTransfer>, TickError> {
        let mut found = Vec::new();
        for b in blocks {
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
                        block_time: block_time(b),
                        counted: w.asset.is_none(),
                    });
                }
            }
        }
        let Some(last) = blocks.last() else {
            return Ok(found);
        };
        if watched.is_empty() {
            return Ok(found);
        }
        for log in self
            .fetch_transfer_logs(from, last.number.to(), watched)
            .await?
        {
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
            let Some(block) = block.filter(|b| b.hash == log.block_hash) else {
                return Err(TickError::Inconsistent(
                    "a log's block is not the fetched block",
                ));
            };
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
                block_time: block_time(block),
                counted: w.asset == Some(log.address),
            });
        }
        Ok(found)
    }

    /// Every answering endpoint is behind the block at the cursor: report the lag and wait
    /// a poll interval; nothing is rolled back.
    async fn wait_for_nodes(
        &mut self,
        scanned: u64,
        served: u64,
        best: u64,
    ) -> Result<ScanReport, TickError> {
        if !self.waiting {
            slog::warn!(self.log, "every answering RPC endpoint is behind the scanner; waiting";
                "scanned" => scanned, "served_head" => served, "best_seen" => best);
        }
        self.set_waiting(true);
        self.status
            .update(&self.chain.name, |s| s.nodes_behind = Some(served));
        self.caught_up = false;
        self.publish(scanned, best);
        Ok(ScanReport {
            scanned_to: Some(scanned),
            caught_up: false,
            waiting_for_nodes: true,
            ..Default::default()
        })
    }

    fn set_waiting(&mut self, on: bool) {
        if self.waiting && !on {
            slog::info!(self.log, "an RPC endpoint serves the scanned head again");
            self.status
                .update(&self.chain.name, |s| s.nodes_behind = None);
        }
        self.waiting = on;
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
    type Error = TickError;

    /// Back-to-back while behind the head, the poll interval once caught up or while
    /// waiting for the endpoints to reach the scanned head.
    fn interval(&self) -> Duration {
        if self.caught_up || self.waiting {
            self.chain.poll_interval()
        } else {
            Duration::ZERO
        }
    }

    async fn tick_once(&mut self) -> Result<(), TickError> {
        self.scan_once().await.map(|_| ())
    }
}

fn block_time(b: &RpcBlock) -> DateTime<Utc> {
    let secs = i64::try_from(b.timestamp.to::<u64>()).unwrap_or(i64::MAX);
    DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}
