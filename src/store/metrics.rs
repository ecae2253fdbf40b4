//! Database pool metrics, refreshed at scrape time.

use prometheus::{Histogram, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec};

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
        acquire: Histogram = "db_pool_acquire_seconds" [],
            "Time to get a pooled connection (waiting for a free one included).";
        timeouts: IntCounterVec = "db_pool_timeouts_total" ["kind"],
            "Pool timeouts by kind (wait: no free connection; create: connecting; recycle: checking an idle one).",
            zero = cross(&[&["wait", "create", "recycle"]]);
        query_duration: HistogramVec = "db_query_duration_seconds" ["stmt"],
            "Statement duration by the statement's static name (never its text).";
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
