//! Database pool metrics, refreshed at scrape time.

use prometheus::{IntGauge, IntGaugeVec};

use super::Store;
use crate::telemetry::metrics::cross;

crate::declare_metrics! {
    /// Database pool metrics.
    pub struct DbMetrics() {
        connections: IntGaugeVec = "db_pool_connections" ["state"],
            "Database pool connections by state (idle, in_use).",
            zero = cross(&[&["idle", "in_use"]]);
        waiting: IntGauge = "db_pool_waiting" [],
            "Tasks waiting for a pool connection.";
    }
}

impl DbMetrics {
    /// Copies the pool's current state into the gauges.
    pub fn refresh(&self, store: &Store) {
        let pool = store.pool_status();
        let idle = pool.available as i64;
        self.connections.with_label_values(&["idle"]).set(idle);
        self.connections
            .with_label_values(&["in_use"])
            .set(pool.size as i64 - idle);
        self.waiting.set(pool.waiting as i64);
    }
}
