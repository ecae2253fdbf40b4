//! Chain metrics, one struct shared by the chain components.

use prometheus::{CounterVec, GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec, Registry};

use crate::telemetry::metrics::{cross, MetricsError};

/// RPC outcomes used as label values.
pub const RPC_OUTCOMES: [&str; 6] = [
    "ok",
    "rpc_error",
    "timeout",
    "connect_error",
    "http_error",
    "rate_limited",
];

/// Sweep outcomes used as label values.
pub const SWEEP_OUTCOMES: [&str; 3] = ["succeeded", "failed", "skipped"];

crate::declare_metrics! {
    /// RPC and chain-progress metrics, labelled by chain.
    pub struct ChainMetrics(chains: &[&str]) {
        configured: IntGaugeVec = "chain_configured" ["chain"],
            "1 for every configured chain.",
            zero = cross(&[chains]);
        head_block: IntGaugeVec = "chain_head_block" ["chain"],
            "Best head block seen.",
            zero = cross(&[chains]);
        last_scanned_block: IntGaugeVec = "scanner_last_scanned_block" ["chain"],
            "Last block the scanner processed.",
            zero = cross(&[chains]);
        lag_blocks: IntGaugeVec = "scanner_lag_blocks" ["chain"],
            "Blocks between the best head and the scanner.",
            zero = cross(&[chains]);
        rpc_requests: IntCounterVec = "rpc_requests_total" ["chain", "method", "outcome"],
            "RPC requests by method and outcome (ok, rpc_error, timeout, connect_error, http_error, rate_limited).",
            zero = cross(&[chains, &["eth_blockNumber"], &RPC_OUTCOMES]);
        rpc_duration: HistogramVec = "rpc_request_duration_seconds" ["chain", "method"],
            "RPC request duration.";
        lease_leader: IntGaugeVec = "chain_lease_leader" ["chain"],
            "1 while this replica holds the chain's lease and runs its workers, else 0.",
            zero = cross(&[chains]);
        fenced_writes: IntCounterVec = "chain_fenced_writes_total" ["chain"],
            "Chain worker writes the database refused because this replica's lease term was over (a paused or partitioned former leader); nothing was written.",
            zero = cross(&[chains]);
        lease_takeovers: IntCounterVec = "chain_lease_takeovers_total" ["chain"],
            "Terms of the chain's lease this replica began (each takes the lease over).",
            zero = cross(&[chains]);
        pending_payments: IntGaugeVec = "confirmer_pending_payments" ["chain"],
            "Open payments (pending, partially paid, processing).",
            zero = cross(&[chains]);
        sweeps: IntCounterVec = "sweeps_total" ["chain", "outcome"],
            "Sweeps by outcome (succeeded, failed, skipped).",
            zero = cross(&[chains, &SWEEP_OUTCOMES]);
        reversed_payments: IntGaugeVec = "payments_reversed" ["chain"],
            "Confirmed payments whose counted funds a reorg took away (critical when above 0).",
            zero = cross(&[chains]);
        sweeps_in_flight: IntGaugeVec = "sweeps_in_flight" ["chain"],
            "Sweeps signed and stored whose transaction is not confirmed yet.",
            zero = cross(&[chains]);
        oldest_sweep_age: GaugeVec = "sweep_oldest_in_flight_age_seconds" ["chain"],
            "Age of the oldest sweep in flight (0 when none).",
            zero = cross(&[chains]);
        unswept_payments: IntGaugeVec = "unswept_payments" ["chain"],
            "Confirmed payments whose funds are not swept yet (chains with a treasury).",
            zero = cross(&[chains]);
        oldest_unswept_age: GaugeVec = "unswept_oldest_age_seconds" ["chain"],
            "How long the oldest unswept confirmed payment has been confirmed (0 when none).",
            zero = cross(&[chains]);
        sweep_latency: HistogramVec = "sweep_latency_seconds" ["chain"],
            "Time from a payment's confirmation (or close) to its funds' sweep being confirmed.",
            buckets = vec![1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0, 604800.0];
        sweep_fees: CounterVec = "sweep_fees_wei_total" ["chain", "strategy"],
            "Fees paid by sweep transactions (seeds and deployments included), in wei.",
            zero = cross(&[chains, &["self_paid", "seeded", "delegated"]]);
        sweep_drops: IntCounterVec = "sweep_drops_total" ["chain"],
            "Sweep transactions no node knew any more, sent again from their stored bytes.",
            zero = cross(&[chains]);
        unswept_value: GaugeVec = "unswept_value" ["chain", "asset"],
            "Funds of closed payments not swept yet, by asset (native or token symbol), in raw units.";
        sweep_replacements: IntCounterVec = "sweep_replacements_total" ["chain"],
            "Stuck sweep transactions replaced with higher fees.",
            zero = cross(&[chains]);
        gas_tank_runway: GaugeVec = "gas_tank_runway_sweeps" ["chain"],
            "Sweep transactions the gas tank can still pay at its recent mean fee (at today's fee for a plain transfer before any).";
        gas_tank_nonce_drift: IntGaugeVec = "gas_tank_nonce_drift" ["chain"],
            "The tank's next nonce in our records minus the chain's, with nothing in flight (0 when they agree).",
            zero = cross(&[chains]);
        gas_tank_balance: GaugeVec = "gas_tank_balance_wei" ["chain"],
            "The gas tank's balance, in wei (it pays sweep gas for tokens).",
            zero = cross(&[chains]);
    }
}

impl ChainMetrics {
    /// Registers the metrics, every chain's label sets at zero and `chain_configured` at 1.
    pub fn new(r: &Registry, chains: &[&str]) -> Result<Self, MetricsError> {
        let m = Self::register(r, chains)?;
        for c in chains {
            m.configured.with_label_values(&[c]).set(1);
        }
        Ok(m)
    }
}
