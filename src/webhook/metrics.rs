//! Webhook metrics.

use prometheus::{Gauge, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge};

use crate::telemetry::metrics::cross;

/// Delivery outcomes used as label values.
pub const OUTCOMES: [&str; 8] = [
    "success",
    "http_4xx",
    "http_5xx",
    "gone",
    "timeout",
    "connect_error",
    "refused",
    "error",
];

crate::declare_metrics! {
    /// Webhook delivery metrics.
    pub struct WebhookMetrics() {
        deliveries: IntCounterVec = "webhook_deliveries_total" ["outcome"],
            "Webhook delivery attempts by outcome (success, http_4xx, http_5xx, gone, timeout, connect_error, refused, error).",
            zero = cross(&[&OUTCOMES]);
        duration: HistogramVec = "webhook_delivery_duration_seconds" ["outcome"],
            "Webhook delivery attempt duration.";
        queue_depth: IntGauge = "webhook_queue_depth" [],
            "Undelivered webhook deliveries (refreshed at scrape time).";
        oldest_pending_age: Gauge = "webhook_oldest_pending_age_seconds" [],
            "Age of the oldest undelivered webhook delivery (refreshed at scrape time).";
        dead: IntCounter = "webhook_dead_total" [],
            "Webhook deliveries that ran out of attempts.";
        dispatch_lag: Histogram = "webhook_dispatch_lag_seconds" [],
            "Time from an event's outbox write to its first delivery attempt, per delivery.",
            buckets = vec![0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0];
    }
}
