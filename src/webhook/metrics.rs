//! Webhook metrics.

use prometheus::{Gauge, HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};

use crate::telemetry::metrics::{
    counter, counter_vec, float_gauge, gauge, histogram_vec, latency_buckets,
};

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

/// Webhook delivery metrics.
#[derive(Clone)]
pub struct WebhookMetrics {
    /// `ctrip_webhook_deliveries_total{outcome}` (one per attempt).
    pub deliveries: IntCounterVec,
    /// `ctrip_webhook_delivery_duration_seconds{outcome}`
    pub duration: HistogramVec,
    /// `ctrip_webhook_queue_depth`: undelivered deliveries (refreshed at scrape time).
    pub queue_depth: IntGauge,
    /// `ctrip_webhook_oldest_pending_age_seconds` (refreshed at scrape time).
    pub oldest_pending_age: Gauge,
    /// `ctrip_webhook_dead_total`
    pub dead: IntCounter,
}

impl WebhookMetrics {
    /// Registers the metrics, every outcome at zero.
    pub fn new(r: &Registry) -> Self {
        let m = Self {
            deliveries: counter_vec(
                r,
                "webhook_deliveries_total",
                "Webhook delivery attempts by outcome.",
                &["outcome"],
            ),
            duration: histogram_vec(
                r,
                "webhook_delivery_duration_seconds",
                "Webhook delivery attempt duration.",
                &["outcome"],
                latency_buckets(),
            ),
            queue_depth: gauge(r, "webhook_queue_depth", "Undelivered webhook deliveries."),
            oldest_pending_age: float_gauge(
                r,
                "webhook_oldest_pending_age_seconds",
                "Age of the oldest undelivered webhook delivery.",
            ),
            dead: counter(
                r,
                "webhook_dead_total",
                "Webhook deliveries that ran out of attempts.",
            ),
        };
        for o in OUTCOMES {
            m.deliveries.with_label_values(&[o]).inc_by(0);
        }
        m
    }
}
