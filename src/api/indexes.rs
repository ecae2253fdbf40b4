//! Derivation indexes for new payments, reserved from each merchant's sequence a block at
//! a time (`payments.address_reservation`), so that creating a payment costs one statement
//! rather than a sequence round trip plus the insert. Each replica reserves its own blocks;
//! the sequence never hands an index out twice, so replicas cannot collide. Indexes a
//! process reserved and did not use before it stopped are skipped for good.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use deadpool_postgres::GenericClient;

use crate::store::merchants::reserve_derivation_indexes;
use crate::store::StoreError;

/// Reserved, unused indexes per merchant account.
pub struct IndexReservations {
    block: u32,
    free: Mutex<HashMap<u32, VecDeque<u32>>>,
}

impl IndexReservations {
    /// Reserves `block` indexes at a time (at least one).
    pub fn new(block: u32) -> Self {
        Self {
            block: block.max(1),
            free: Mutex::new(HashMap::new()),
        }
    }

    fn pop(&self, account: u32) -> Option<u32> {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&account)
            .and_then(VecDeque::pop_front)
    }

    /// The account's next unused index, reserving a new block on `c` when none is left.
    pub async fn next(&self, c: &impl GenericClient, account: u32) -> Result<u32, StoreError> {
        if let Some(i) = self.pop(account) {
            return Ok(i);
        }
        let mut block = reserve_derivation_indexes(c, account, self.block).await?;
        if block.is_empty() {
            return Err(StoreError::Corrupt("deposit index sequence"));
        }
        let first = block.remove(0);
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(account)
            .or_default()
            .extend(block);
        Ok(first)
    }

    /// Returns an index that was certainly not used (its insert did not happen), so the
    /// next payment takes it and no gap is left.
    pub fn give_back(&self, account: u32, index: u32) {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(account)
            .or_default()
            .push_front(index);
    }
}
