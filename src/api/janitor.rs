//! The janitor: purges idempotency keys older than a day, so the table (and the rotated
//! webhook secrets kept in stored responses) does not grow without bound.

use std::time::Duration;

use slog::Logger;

use crate::store::idempotency::{purge_older_than, KEY_TTL_HOURS};
use crate::store::Store;
use crate::store::StoreError;
use crate::worker::Work;

/// Periodic database housekeeping.
pub struct Janitor {
    store: Store,
    interval: Duration,
    log: Logger,
}

impl Janitor {
    /// Builds a janitor that runs every `interval`.
    pub fn new(store: Store, interval: Duration, log: Logger) -> Self {
        Self {
            store,
            interval,
            log,
        }
    }

    /// One purge; returns how many keys were deleted.
    pub async fn purge_once(&self) -> Result<u64, StoreError> {
        let client = self.store.client().await?;
        let n = purge_older_than(&client, KEY_TTL_HOURS).await?;
        if n > 0 {
            slog::info!(self.log, "idempotency keys purged"; "purged" => n);
        }
        Ok(n)
    }
}

impl Work for Janitor {
    type Error = StoreError;

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn tick_once(&mut self) -> Result<(), StoreError> {
        self.purge_once().await.map(|_| ())
    }
}
