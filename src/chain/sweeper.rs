//! The sweeper: moves confirmed funds to the treasury. (Sweeping lands with its own work;
//! for now a tick checks that the database answers.)

use std::time::Duration;

use crate::store::Store;
use crate::store::StoreError;
use crate::worker::Work;

/// One chain's sweeper.
pub struct Sweeper {
    store: Store,
    interval: Duration,
}

impl Sweeper {
    /// Builds a sweeper.
    pub fn new(store: Store, interval: Duration) -> Self {
        Self { store, interval }
    }
}

impl Work for Sweeper {
    type Error = StoreError;

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn tick_once(&mut self) -> Result<(), StoreError> {
        self.store.ping().await?;
        Ok(())
    }
}
