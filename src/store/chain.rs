//! Chain ingestion state: the scan cursor, recent block hashes, the watched set, and the
//! one transaction that commits a scanned range with everything it found.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;

use alloy::primitives::{Address, B256, U256};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::payments::{recompute, AppliedChange, Recompute};
use super::StoreError;

fn hex32(h: &B256) -> String {
    format!("{h:#x}")
}

fn hex20(a: &Address) -> String {
    format!("{a:#x}")
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt("block number"))
}

/// A block the scanner has processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlock {
    /// Number.
    pub number: u64,
    /// Hash.
    pub hash: B256,
    /// Parent hash.
    pub parent_hash: B256,
}

/// The next block to scan, if the chain has a cursor.
pub async fn cursor(c: &impl GenericClient, chain: &str) -> Result<Option<u64>, StoreError> {
    super::timed("chain.cursor", async move {
        let row = c
            .query_opt(
                "SELECT next_block FROM chain_cursors WHERE chain = $1",
                &[&chain],
            )
            .await?;
        row.map(|r| {
            let n: i64 = r.get(0);
            u64::try_from(n).map_err(|_| StoreError::Corrupt("chain_cursors"))
        })
        .transpose()
    })
    .await
}

/// Creates the cursor at `next_block` unless one exists; returns the cursor.
pub async fn init_cursor(
    c: &impl GenericClient,
    chain: &str,
    next_block: u64,
) -> Result<u64, StoreError> {
    super::timed("chain.init_cursor", async move {
    c.execute(
        "INSERT INTO chain_cursors (chain, next_block) VALUES ($1, $2) ON CONFLICT (chain) DO NOTHING",
        &[&chain, &to_i64(next_block)?],
    )
    .await?;
    cursor(c, chain)
        .await?
        .ok_or(StoreError::Corrupt("chain_cursors"))
    })
    .await
}

fn block_of(r: &tokio_postgres::Row) -> Result<StoredBlock, StoreError> {
    let n: i64 = r.get(0);
    let h: String = r.get(1);
    let p: String = r.get(2);
    let bad = || StoreError::Corrupt("scanned_blocks");
    Ok(StoredBlock {
        number: u64::try_from(n).map_err(|_| bad())?,
        hash: B256::from_str(&h).map_err(|_| bad())?,
        parent_hash: B256::from_str(&p).map_err(|_| bad())?,
    })
}

/// The stored block `n`, if it was scanned and is still remembered.
pub async fn stored_block(
    c: &impl GenericClient,
    chain: &str,
    n: u64,
) -> Result<Option<StoredBlock>, StoreError> {
    super::timed("chain.stored_block", async move {
        c.query_opt(
            "SELECT number, hash, parent_hash FROM scanned_blocks WHERE chain = $1 AND number = $2",
            &[&chain, &to_i64(n)?],
        )
        .await?
        .as_ref()
        .map(block_of)
        .transpose()
    })
    .await
}

/// Every remembered block, newest first.
pub async fn recent_blocks(
    c: &impl GenericClient,
    chain: &str,
) -> Result<Vec<StoredBlock>, StoreError> {
    super::timed("chain.recent_blocks", async move {
    c.query(
        "SELECT number, hash, parent_hash FROM scanned_blocks WHERE chain = $1 ORDER BY number DESC",
        &[&chain],
    )
    .await?
    .iter()
    .map(block_of)
    .collect()
    })
    .await
}

/// A watched deposit address.
#[derive(Debug, Clone, Copy)]
pub struct Watched {
    /// The payment.
    pub payment_id: Uuid,
    /// Its asset's contract; `None` for native.
    pub asset: Option<Address>,
}

/// Addresses to watch on a chain: open payments; closed ones (confirmed, expired,
/// canceled) within the late-funds window of their last transition; and every payment with
/// a transfer a reorg removed within that window, or (with `reorg_floor`) a transfer above
/// the common ancestor of a reorg being rolled back now, so a transfer re-included in
/// another block is found again whatever its payment's status.
pub async fn watched(
    c: &impl GenericClient,
    chain: &str,
    late_window_seconds: u64,
    reorg_floor: Option<u64>,
) -> Result<HashMap<Address, Watched>, StoreError> {
    super::timed("chain.watched", async move {
    let stmt = c
        .prepare_cached(
            "SELECT id, address, asset_contract FROM payments WHERE chain = $1 AND \
               (status IN ('pending', 'partially_paid', 'processing') \
                OR (status IN ('confirmed', 'expired', 'canceled') \
                    AND transitioned_at > now() - make_interval(secs => $2))) \
             UNION \
             SELECT p.id, p.address, p.asset_contract FROM payment_transfers t \
               JOIN payments p ON p.id = t.payment_id \
             WHERE t.chain = $1 AND ((t.removed AND t.removed_at > now() - make_interval(secs => $2)) \
               OR (NOT t.removed AND t.block_number > $3))",
        )
        .await?;
    let window = late_window_seconds as f64;
    let floor = match reorg_floor {
        Some(f) => to_i64(f)?,
        None => i64::MAX,
    };
    let rows = c.query(&stmt, &[&chain, &window, &floor]).await?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let address: String = r.get(1);
        let asset: Option<String> = r.get(2);
        let bad = || StoreError::Corrupt("payments");
        out.insert(
            Address::from_str(&address).map_err(|_| bad())?,
            Watched {
                payment_id: r.get(0),
                asset: asset
                    .as_deref()
                    .map(Address::from_str)
                    .transpose()
                    .map_err(|_| bad())?,
            },
        );
    }
    Ok(out)
    })
    .await
}

/// Records the best head the scanner saw (the cancel guard compares the cursor with it).
pub async fn record_head(c: &impl GenericClient, chain: &str, head: u64) -> Result<(), StoreError> {
    super::timed("chain.record_head", async move {
        c.execute(
            "UPDATE chain_cursors SET head_block = $2 WHERE chain = $1 \
           AND head_block IS DISTINCT FROM $2",
            &[&chain, &to_i64(head)?],
        )
        .await?;
        Ok(())
    })
    .await
}

/// How far a chain is scanned, as the API and the confirmer see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanProgress {
    /// The next block to scan.
    pub next_block: u64,
    /// The best head the scanner last saw.
    pub head_block: Option<u64>,
}

impl ScanProgress {
    /// Whether every block up to the head the scanner last saw is scanned.
    pub fn caught_up(&self) -> bool {
        self.head_block.is_none_or(|h| self.next_block > h)
    }
}

/// The chain's scan progress; `None` when no scanner has run yet.
pub async fn progress(
    c: &impl GenericClient,
    chain: &str,
) -> Result<Option<ScanProgress>, StoreError> {
    super::timed("chain.progress", async move {
        let row = c
            .query_opt(
                "SELECT next_block, head_block FROM chain_cursors WHERE chain = $1",
                &[&chain],
            )
            .await?;
        row.map(|r| {
            let bad = || StoreError::Corrupt("chain_cursors");
            Ok(ScanProgress {
                next_block: u64::try_from(r.get::<_, i64>(0)).map_err(|_| bad())?,
                head_block: r
                    .get::<_, Option<i64>>(1)
                    .map(u64::try_from)
                    .transpose()
                    .map_err(|_| bad())?,
            })
        })
        .transpose()
    })
    .await
}

/// A transfer found in a scanned range.
#[derive(Debug, Clone)]
pub struct FoundTransfer {
    /// The payment whose address received it.
    pub payment_id: Uuid,
    /// Transaction.
    pub tx_hash: B256,
    /// Log index; `None` for a native transfer.
    pub log_index: Option<u64>,
    /// Sender.
    pub from: Address,
    /// Recipient (the deposit address).
    pub to: Address,
    /// Token contract; `None` for native.
    pub asset: Option<Address>,
    /// Amount.
    pub amount: U256,
    /// Block number.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: B256,
    /// The block's timestamp: funds are late when it is after the payment's window.
    pub block_time: DateTime<Utc>,
    /// Whether it is the payment's asset.
    pub counted: bool,
}

/// One scanned range, committed atomically.
#[derive(Debug)]
pub struct RangeCommit<'a> {
    /// Chain.
    pub chain: &'a str,
    /// The cursor the range was scanned from (an optimistic check against concurrent
    /// scanners of the same chain).
    pub expected_cursor: u64,
    /// A reorg was found: everything above this block is no longer canonical.
    pub rollback_to: Option<u64>,
    /// The scanned blocks, ascending (may be empty after a reorg to a shorter chain).
    pub blocks: &'a [StoredBlock],
    /// Transfers found in them.
    pub transfers: &'a [FoundTransfer],
    /// The best head seen this tick.
    pub head: u64,
    /// The timestamp of the last block in `blocks`.
    pub scanned_time: Option<DateTime<Utc>>,
    /// How many recent block hashes to remember.
    pub keep_blocks: u64,
}

/// What a commit did.
#[derive(Debug, Default)]
pub struct CommitOutcome {
    /// Whether the cursor moved (false: another scanner moved it first; nothing written).
    pub committed: bool,
    /// Transfers marked removed by a reorg.
    pub removed: u64,
    /// Payment changes written.
    pub changes: Vec<AppliedChange>,
}

/// Writes a scanned range: rolls back reorged transfers and blocks, records transfers and
/// block hashes, moves the cursor and recomputes every affected payment (each transition
/// with its history and outbox event). Run it in a transaction: the cursor moves only
/// together with the range's results.
pub async fn commit_range(
    c: &impl GenericClient,
    r: &RangeCommit<'_>,
) -> Result<CommitOutcome, StoreError> {
    super::timed("chain.commit_range", async move {
    let next = match (r.blocks.last(), r.rollback_to) {
        (Some(b), _) => b.number + 1,
        (None, Some(ancestor)) => ancestor + 1,
        (None, None) => return Ok(CommitOutcome::default()),
    };
    let moved = c
        .execute(
            "UPDATE chain_cursors SET next_block = $3, head_block = $4, \
               scanned_time = COALESCE($5, scanned_time), updated_at = now() \
             WHERE chain = $1 AND next_block = $2",
            &[
                &r.chain,
                &to_i64(r.expected_cursor)?,
                &to_i64(next)?,
                &to_i64(r.head)?,
                &r.scanned_time,
            ],
        )
        .await?;
    if moved != 1 {
        return Ok(CommitOutcome::default());
    }
    let mut reorged: BTreeSet<Uuid> = BTreeSet::new();
    let mut funded: BTreeSet<Uuid> = BTreeSet::new();
    let mut removed = 0;
    if let Some(ancestor) = r.rollback_to {
        let rows = c
            .query(
                "UPDATE payment_transfers SET removed = true, removed_at = now() \
                 WHERE chain = $1 AND block_number > $2 AND NOT removed RETURNING payment_id",
                &[&r.chain, &to_i64(ancestor)?],
            )
            .await?;
        removed = rows.len() as u64;
        reorged.extend(rows.iter().map(|row| row.get::<_, Uuid>(0)));
        c.execute(
            "DELETE FROM scanned_blocks WHERE chain = $1 AND number > $2",
            &[&r.chain, &to_i64(ancestor)?],
        )
        .await?;
    }
    if let Some(last) = r.blocks.last() {
        // Only the newest `keep_blocks` hashes are needed to find a common ancestor.
        let floor = last.number.saturating_sub(r.keep_blocks);
        let kept: Vec<&StoredBlock> = r.blocks.iter().filter(|b| b.number >= floor).collect();
        let numbers = kept
            .iter()
            .map(|b| to_i64(b.number))
            .collect::<Result<Vec<_>, _>>()?;
        let hashes: Vec<String> = kept.iter().map(|b| hex32(&b.hash)).collect();
        let parents: Vec<String> = kept.iter().map(|b| hex32(&b.parent_hash)).collect();
        let stmt = c
            .prepare_cached(
                "INSERT INTO scanned_blocks (chain, number, hash, parent_hash) \
                 SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[]) \
                 ON CONFLICT (chain, number) DO UPDATE SET hash = EXCLUDED.hash, parent_hash = EXCLUDED.parent_hash",
            )
            .await?;
        c.execute(&stmt, &[&r.chain, &numbers, &hashes, &parents])
            .await?;
        c.execute(
            "DELETE FROM scanned_blocks WHERE chain = $1 AND number < $2",
            &[&r.chain, &to_i64(floor)?],
        )
        .await?;
    }
    let insert_transfer = c
        .prepare_cached(
            "INSERT INTO payment_transfers (payment_id, chain, tx_hash, log_index, from_address, to_address, \
               asset_contract, amount_raw, block_number, block_hash, counted, block_time, late, traceparent) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
               $12 > (SELECT expires_at FROM payments WHERE id = $1), $13) \
             ON CONFLICT (chain, tx_hash, log_index) DO UPDATE SET block_number = EXCLUDED.block_number, \
               block_hash = EXCLUDED.block_hash, block_time = EXCLUDED.block_time, late = EXCLUDED.late, \
               removed = false, removed_at = NULL",
        )
        .await?;
    let traceparent = crate::telemetry::trace::current_traceparent();
    for t in r.transfers {
        let log_index: i32 = match t.log_index {
            None => -1,
            Some(i) => i32::try_from(i).map_err(|_| StoreError::Corrupt("log index"))?,
        };
        c.execute(
            &insert_transfer,
            &[
                &t.payment_id,
                &r.chain,
                &hex32(&t.tx_hash),
                &log_index,
                &hex20(&t.from),
                &hex20(&t.to),
                &t.asset.as_ref().map(hex20),
                &t.amount,
                &to_i64(t.block_number)?,
                &hex32(&t.block_hash),
                &t.counted,
                &t.block_time,
                &traceparent,
            ],
        )
        .await?;
        funded.insert(t.payment_id);
    }
    let mut changes = Vec::new();
    for id in &reorged {
        if let Some(ch) = recompute(c, *id, Recompute::Reorg).await? {
            changes.push(ch);
        }
    }
    for id in funded.difference(&reorged) {
        if let Some(ch) = recompute(c, *id, Recompute::Funds).await? {
            changes.push(ch);
        }
    }
    Ok(CommitOutcome {
        committed: true,
        removed,
        changes,
    })
    })
    .await
}
