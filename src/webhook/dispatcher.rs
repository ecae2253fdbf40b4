//! A webhook dispatcher worker. (Delivery lands with the webhook work; for now a tick
//! checks that the outbox is readable.)

use std::time::Duration;

use crate::store::Store;
use crate::supervision::worker::{Work, WorkError};

/// One worker of the dispatcher pool.
pub struct Dispatcher {
    store: Store,
    interval: Duration,
}

impl Dispatcher {
    /// Builds a dispatcher worker.
    pub fn new(store: Store, interval: Duration) -> Self {
        Self { store, interval }
    }
}

impl Work for Dispatcher {
    fn interval(&self) -> Duration {
        self.interval
    }

    async fn tick_once(&mut self) -> Result<(), WorkError> {
        self.store.ping().await?;
        Ok(())
    }
}
