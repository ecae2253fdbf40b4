//! Payment metrics, declared next to the status machine whose transitions they count.

use prometheus::{HistogramVec, IntCounterVec};

use super::PaymentStatus;
use crate::telemetry::metrics::cross;

fn statuses() -> Vec<&'static str> {
    PaymentStatus::ALL.iter().map(|s| s.as_str()).collect()
}

crate::declare_metrics! {
    /// Payment metrics.
    pub struct PaymentMetrics(chains: &[&str]) {
        created: IntCounterVec = "payments_created_total" ["chain"],
            "Payments created.",
            zero = cross(&[chains]);
        transitions: IntCounterVec = "payment_transitions_total" ["chain", "to"],
            "Payment status transitions by target status.",
            zero = cross(&[chains, &statuses()]);
        confirmation_latency: HistogramVec = "payment_confirmation_latency_seconds" ["chain"],
            "Time from first detection to confirmation.",
            buckets = vec![1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];
        confirmations: IntCounterVec = "payment_confirmations_total" ["chain", "on_time"],
            "Payments confirmed, by whether detection to confirmation took at most confirmations x block_time + 60 s.",
            zero = cross(&[chains, &["true", "false"]]);
    }
}
