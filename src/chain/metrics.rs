//! Chain metrics, one struct shared by the chain components.

use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec, Registry};

use crate::telemetry::metrics::{counter_vec, gauge_vec, histogram_vec, latency_buckets};

/// RPC and chain-progress metrics, labelled by chain.
#[derive(Clone)]
pub struct ChainMetrics {
    /// `ctrip_chain_head_block{chain}`
    pub head_block: IntGaugeVec,
    /// `ctrip_scanner_last_scanned_block{chain}`
    pub last_scanned_block: IntGaugeVec,
    /// `ctrip_scanner_lag_blocks{chain}`
    pub lag_blocks: IntGaugeVec,
    /// `ctrip_rpc_requests_total{chain,method,outcome}`
    pub rpc_requests: IntCounterVec,
    /// `ctrip_rpc_request_duration_seconds{chain,method}`
    pub rpc_duration: HistogramVec,
    /// `ctrip_confirmer_pending_payments{chain}`
    pub pending_payments: IntGaugeVec,
    /// `ctrip_sweeps_total{chain,outcome}`
    pub sweeps: IntCounterVec,
    /// `ctrip_payments_reversed{chain}`
    pub reversed_payments: IntGaugeVec,
}

/// RPC outcomes used as label values.
pub const RPC_OUTCOMES: [&str; 6] = [
    "ok",
    "rpc_error",
    "timeout",
    "connect_error",
    "http_error",
    "rate_limited",
];

impl ChainMetrics {
    /// Registers the metrics and initialises every chain's label sets to zero.
    pub fn new(r: &Registry, chains: &[String]) -> Self {
        let m = Self {
            head_block: gauge_vec(r, "chain_head_block", "Best head block seen.", &["chain"]),
            last_scanned_block: gauge_vec(
                r,
                "scanner_last_scanned_block",
                "Last block the scanner processed.",
                &["chain"],
            ),
            lag_blocks: gauge_vec(
                r,
                "scanner_lag_blocks",
                "Blocks between the best head and the scanner.",
                &["chain"],
            ),
            rpc_requests: counter_vec(
                r,
                "rpc_requests_total",
                "RPC requests by method and outcome.",
                &["chain", "method", "outcome"],
            ),
            rpc_duration: histogram_vec(
                r,
                "rpc_request_duration_seconds",
                "RPC request duration.",
                &["chain", "method"],
                latency_buckets(),
            ),
            pending_payments: gauge_vec(
                r,
                "confirmer_pending_payments",
                "Open payments (pending, partially paid, processing).",
                &["chain"],
            ),
            sweeps: counter_vec(
                r,
                "sweeps_total",
                "Sweeps by outcome.",
                &["chain", "outcome"],
            ),
            reversed_payments: gauge_vec(
                r,
                "payments_reversed",
                "Confirmed payments whose counted funds a reorg took away (critical).",
                &["chain"],
            ),
        };
        for c in chains {
            let c = c.as_str();
            for g in [
                &m.head_block,
                &m.last_scanned_block,
                &m.lag_blocks,
                &m.pending_payments,
                &m.reversed_payments,
            ] {
                g.with_label_values(&[c]).set(0);
            }
            for outcome in RPC_OUTCOMES {
                m.rpc_requests
                    .with_label_values(&[c, "eth_blockNumber", outcome])
                    .inc_by(0);
            }
            for outcome in ["succeeded", "failed", "skipped"] {
                m.sweeps.with_label_values(&[c, outcome]).inc_by(0);
            }
        }
        m
    }
}
